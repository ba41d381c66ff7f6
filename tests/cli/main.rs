//! End-to-end tests: the real `cronmgr` binary against a temporary database.

mod alerts;
mod cancel;
mod edges;
mod envsafety;
mod executors;
mod faults;
mod fleet;
mod hardening;
mod harness;
mod jobs;
mod jobsd;
mod limits;
mod migrate;
mod misc;
mod packaging;
mod quickstart;
mod runfiles;
mod runner;
mod schedule;
mod skips;
mod tables;
mod treewalk;
mod web;
