//! The runner: due selection, claiming, worker threads, timeouts, retries, signals, sd_notify.

pub mod process;
