//! Diagnostics to stderr through `tracing`: `-v`/`-q` and `RUST_LOG`, no colours unless a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `verbose` raises the level, `quiet` lowers it to errors only.
pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,cronmgr::runner=info",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
