//! A PostgreSQL connection that comes back: the store notices that its connection closed (a
//! server restart, a failover, a network cut found by the TCP keepalives) and connects again,
//! with a capped, jittered backoff so a fleet of runners neither busy-loops nor reconnects in
//! lockstep. Errors that will not pass by waiting (authentication refused, a schema newer
//! than this binary) are kept as fatal, for the runner to stop on with a clear message.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// The first retry waits about this long; each failure doubles it, up to [`BACKOFF_CAP`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two attempts: once the server is back, a runner notices within it.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// The wait before attempt `failures + 1`: [`BACKOFF_FIRST`] doubled per failure, capped, then
/// scaled by `jitter` in [0.5, 1.0] ("equal jitter": never less than half the step).
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let step = BACKOFF_FIRST
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_CAP);
    step.mul_f64(jitter.clamp(0.5, 1.0))
}

/// A jitter factor in [0.5, 1.0) that differs between processes and calls (no RNG crate: the
/// clock's nanoseconds and the pid, mixed).
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut x = nanos ^ ((std::process::id() as u64) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    0.5 + (x % 1_000_000) as f64 / 2_000_000.0
}

/// The state of the store's link to PostgreSQL.
#[derive(Default)]
pub struct Link {
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    /// Since when the connection has been down, and why.
    down: Option<(Instant, String)>,
    failures: u32,
    next_try: Option<Instant>,
    /// The lock wait the owner asked for, set again on each new session.
    lock_wait: Option<Duration>,
    /// An error that will not pass: the runner stops on it.
    fatal: Option<String>,
}

/// What to do about a closed connection now.
pub enum Attempt {
    /// Try to connect.
    Now,
    /// Not yet (the backoff runs): down since, and why.
    Wait(Instant, String),
}

impl Link {
    /// The connection was found closed (or failed to come back): when may the next try be?
    pub fn attempt(&self, why: impl FnOnce() -> String) -> Attempt {
        let mut s = self.state.borrow_mut();
        let now = Instant::now();
        if s.down.is_none() {
            s.down = Some((now, why()));
        }
        match s.next_try {
            Some(at) if at > now => {
                let (since, why) = s.down.clone().unwrap_or((now, String::new()));
                let _ = at;
                Attempt::Wait(since, why)
            }
            _ => Attempt::Now,
        }
    }

    /// A try failed: wait longer before the next.
    pub fn failed(&self, why: String) -> (Instant, Duration) {
        let mut s = self.state.borrow_mut();
        let now = Instant::now();
        let wait = backoff(s.failures, jitter());
        s.failures = s.failures.saturating_add(1);
        s.next_try = Some(now + wait);
        let since = s.down.as_ref().map_or(now, |d| d.0);
        s.down = Some((since, why));
        (since, wait)
    }

    /// Connected again: how long it was down.
    pub fn restored(&self) -> Option<Duration> {
        let mut s = self.state.borrow_mut();
        s.failures = 0;
        s.next_try = None;
        s.down.take().map(|(since, _)| since.elapsed())
    }

    pub fn set_fatal(&self, why: String) {
        self.state.borrow_mut().fatal = Some(why);
    }

    pub fn fatal(&self) -> Option<String> {
        self.state.borrow().fatal.clone()
    }

    pub fn remember_lock_wait(&self, wait: Duration) {
        self.state.borrow_mut().lock_wait = Some(wait);
    }

    pub fn lock_wait(&self) -> Option<Duration> {
        self.state.borrow().lock_wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_is_capped_and_never_under_half_its_step() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(5, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(0, 0.0), Duration::from_millis(125));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn a_closed_link_waits_its_backoff_between_tries_and_forgets_it_when_back() {
        let link = Link::default();
        assert!(matches!(link.attempt(|| "closed".into()), Attempt::Now));
        let (_, wait) = link.failed("refused".into());
        assert!(wait >= Duration::from_millis(125), "{wait:?}");
        match link.attempt(|| unreachable!("already down")) {
            Attempt::Wait(_, why) => assert_eq!(why, "refused"),
            Attempt::Now => panic!("tried again before the backoff passed"),
        }
        std::thread::sleep(wait);
        assert!(matches!(link.attempt(|| "x".into()), Attempt::Now));
        assert!(link.restored().is_some());
        assert!(link.restored().is_none());
        assert!(matches!(link.attempt(|| "again".into()), Attempt::Now));
    }
}
