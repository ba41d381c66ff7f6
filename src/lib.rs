//! cronmgr: one trustworthy place for a host's scheduled work.
//!
//! Data flows one way: the CLI edits the [`store`], the [`runner`] claims due slots from it and
//! spawns [`executor`]s in child processes, and records what happened back into the store.

pub mod access;
pub mod alert;
pub mod cli;
pub mod config;
pub mod crontab;
pub mod duration;
pub mod executor;
pub mod exit;
pub mod host;
pub mod jobfile;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod output;
pub mod runner;
pub mod schedule;
pub mod store;
pub mod web;

pub use exit::ExitCode;

/// Run one parsed command line.
pub fn run(line: cli::CommandLine) -> exit::Result<ExitCode> {
    cli::dispatch(line)
}
