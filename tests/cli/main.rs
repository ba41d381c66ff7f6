//! End-to-end tests: the real `cronmgr` binary against a temporary database.

mod harness;
mod jobs;
mod jobsd;
mod runner;
mod schedule;
