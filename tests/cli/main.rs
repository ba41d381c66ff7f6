//! End-to-end tests: the real `cronmgr` binary against a temporary database.

mod alerts;
mod executors;
mod faults;
mod fleet;
mod hardening;
mod harness;
mod jobs;
mod jobsd;
mod limits;
mod migrate;
mod packaging;
mod runner;
mod schedule;
