//! Progress bars (indicatif) for long runs: only when stdout is a terminal, drawn on stderr.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Below this many items a run is quick: no bar.
const LONG: u64 = 20;

/// A bar over `len` items, hidden unless stdout is a terminal and the run is long.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if len < LONG || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
