//! End-to-end tests: the real `cronmgr` binary against a temporary database.

mod alerts;
mod harness;
mod jobs;
mod runner;
mod schedule;
