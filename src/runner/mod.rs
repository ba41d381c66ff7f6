//! The runner: due selection, claiming, worker threads, timeouts, retries, signals, sd_notify.

pub mod lock;
pub mod process;

pub use lock::{nudge, runner_pid, RunnerLock};
