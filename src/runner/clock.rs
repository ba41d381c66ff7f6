//! The runner's clock, passed in so tests can move time.

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock shifted by a number of seconds read from a file on each call: the fault suite
/// uses it to jump the runner's clock without touching the machine's (`CRONMGR_CLOCK_OFFSET_FILE`).
pub struct OffsetFileClock(pub std::path::PathBuf);

impl Clock for OffsetFileClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        Utc::now() + chrono::Duration::milliseconds((offset * 1000.0) as i64)
    }
}
