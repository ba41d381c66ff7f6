//! The runner's clock, passed in so tests can move time.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// The wall clock (`now`: slots, rows) and the monotonic clock (`mono`: timers, grace periods,
/// and the reference that tells a clock change from time passing).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    fn mono(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock shifted by a number of seconds read from a file: the fault suite uses it to
/// jump the runner's clock without touching the machine's (`CRONMGR_CLOCK_OFFSET_FILE`).
///
/// A test hook that costs production nothing: without that variable the runner uses
/// [`SystemClock`]. With it, the file is read once here and again only on [`reload`], which the
/// runner's signal thread calls on SIGUSR1 (the nudge that wakes the runner) before passing the
/// signal on; `now()` reads one atomic, no file.
///
/// [`reload`]: OffsetFileClock::reload
pub struct OffsetFileClock {
    path: std::path::PathBuf,
    offset_ms: AtomicI64,
}

impl OffsetFileClock {
    /// The clock, with the offset the file holds now (0 when it is missing or not a number).
    pub fn new(path: std::path::PathBuf) -> OffsetFileClock {
        let clock = OffsetFileClock {
            path,
            offset_ms: AtomicI64::new(0),
        };
        clock.reload();
        clock
    }

    /// Read the file again.
    pub fn reload(&self) {
        let offset = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        self.offset_ms
            .store((offset * 1000.0) as i64, Ordering::Relaxed);
    }
}

impl Clock for OffsetFileClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Production pays nothing for the test hook: after start-up the clock reads no file; a
    /// new offset counts only once the runner is woken (SIGUSR1) and reloads it.
    #[test]
    fn the_offset_file_is_read_at_start_and_on_reload_not_on_every_now() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("offset");
        std::fs::write(&file, "0").unwrap();
        let clock = OffsetFileClock::new(file.clone());
        let near = |t: DateTime<Utc>, secs: i64| {
            (t - Utc::now() - chrono::Duration::seconds(secs))
                .num_seconds()
                .abs()
                < 5
        };
        assert!(near(clock.now(), 0));
        std::fs::write(&file, "7200").unwrap();
        assert!(near(clock.now(), 0), "now() read the file again");
        clock.reload();
        assert!(near(clock.now(), 7200));
        std::fs::write(&file, "not a number").unwrap();
        clock.reload();
        assert!(near(clock.now(), 0));
    }
}
