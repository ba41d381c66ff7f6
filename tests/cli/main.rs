//! End-to-end tests: the real `cronmgr` binary against a temporary database.

mod alerts;
mod cancel;
mod cgroups;
mod edges;
mod envsafety;
mod executors;
mod faults;
mod fleet;
mod hardening;
mod harness;
mod history_csv;
mod hostimport;
mod jobs;
mod jobsd;
mod limits;
mod migrate;
mod misc;
mod packaging;
mod quickstart;
mod run_now_alerts;
mod runfiles;
mod runner;
mod schedule;
mod skips;
mod tables;
mod treewalk;
