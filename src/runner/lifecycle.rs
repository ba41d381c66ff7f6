//! The runner's lifecycle: what a signal asks for, the stop and its grace period, and watching the
//! wall clock against the monotonic one for jumps (a clock change, a suspended machine).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::calendar::Gap;
use super::notify::Notifier;
use super::{execute, process};
use crate::host::pid_alive;
use crate::store::{Store, StoreError};

/// Wall-clock drift against the monotonic clock beyond this is a clock change (or sleep).
const JUMP: chrono::Duration = chrono::Duration::seconds(5);
/// Forward jumps under this run the fixed-time jobs of the gap once (as cronie does).
pub const SMALL_JUMP: chrono::Duration = chrono::Duration::hours(3);

/// What a signal asks the runner to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// SIGTERM/SIGINT: no new starts; wait for what runs, up to the grace period.
    Stop,
    /// A second stop signal: stop what runs now.
    StopNow,
    /// SIGHUP: read the config file and the jobs again.
    ReloadConfig,
    /// SIGUSR1 (a CLI's nudge after a change): read the jobs again.
    ReloadJobs,
    Ignore,
}

pub fn command(sig: i32, stopping: bool) -> Command {
    match sig {
        libc::SIGTERM | libc::SIGINT if stopping => Command::StopNow,
        libc::SIGTERM | libc::SIGINT => Command::Stop,
        libc::SIGHUP => Command::ReloadConfig,
        libc::SIGUSR1 => Command::ReloadJobs,
        _ => Command::Ignore,
    }
}

/// How the wall clock moved since the last look, beyond what the monotonic clock saw pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jump {
    None,
    /// Forward: the slots in between form a gap of this kind.
    Forward(Gap),
    /// Back by `by`; `large` when it is a correction (every job follows it).
    Back {
        by: chrono::Duration,
        large: bool,
    },
}

/// The stop in progress, if any.
#[derive(Default)]
pub struct Stop {
    deadline: Option<Instant>,
    killed: bool,
}

impl Stop {
    pub fn stopping(&self) -> bool {
        self.deadline.is_some()
    }

    /// Stop starting, and stop what runs once `grace` has passed (from `mono`).
    pub fn begin(&mut self, mono: Instant, grace: Duration) {
        self.deadline = Some(mono + grace);
    }

    /// The grace period is over now.
    pub fn hurry(&mut self, mono: Instant) {
        self.deadline = Some(mono);
    }

    /// True once, when the grace period has run out with executions still running: time to
    /// stop them.
    pub fn kill_due(&mut self, mono: Instant, running: usize) -> bool {
        match self.deadline {
            Some(deadline) if !self.killed && mono >= deadline && running > 0 => {
                self.killed = true;
                true
            }
            _ => false,
        }
    }

    /// How long until the grace period runs out (while it matters).
    pub fn next_wake(&self, mono: Instant) -> Option<Duration> {
        match self.deadline {
            Some(deadline) if !self.killed => Some(deadline.saturating_duration_since(mono)),
            _ => None,
        }
    }
}

/// The wall clock as last seen, with the monotonic clock's reading at that moment.
pub struct ClockWatch {
    wall: DateTime<Utc>,
    mono: Instant,
}

impl ClockWatch {
    pub fn new(wall: DateTime<Utc>, mono: Instant) -> ClockWatch {
        ClockWatch { wall, mono }
    }

    /// Compare the wall clock with the monotonic one: a drift means a clock change or a sleep.
    pub fn check(&mut self, wall: DateTime<Utc>, mono: Instant) -> Jump {
        let expected = self.wall
            + chrono::Duration::from_std(mono.saturating_duration_since(self.mono))
                .unwrap_or_default();
        self.wall = wall;
        self.mono = mono;
        let drift = wall - expected;
        if drift > JUMP {
            Jump::Forward(if drift < SMALL_JUMP {
                Gap::SmallJump(drift)
            } else {
                Gap::LargeJump(drift)
            })
        } else if drift < -JUMP {
            Jump::Back {
                by: -drift,
                large: -drift >= SMALL_JUMP,
            }
        } else {
            Jump::None
        }
    }
}

/// Who this runner is and where it is in its life: registered, started, stopping; what it
/// tells systemd.
pub struct Lifecycle {
    /// This runner's row in `runners`.
    pub runner_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    /// systemd was told READY (status lines come after it).
    pub ready: bool,
    pub stop: Stop,
    pub watch: ClockWatch,
    pub notifier: Notifier,
}

impl Lifecycle {
    pub fn new(now: DateTime<Utc>, mono: Instant) -> Lifecycle {
        Lifecycle {
            runner_id: None,
            started_at: now,
            ready: false,
            stop: Stop::default(),
            watch: ClockWatch::new(now, mono),
            notifier: Notifier::from_env(),
        }
    }
}

/// Executions left running by a runner (or run-now) that died: stop their process groups and
/// mark them interrupted. On a shared database (`fleet`), only those of this host's dead runners
/// (other hosts' are reaped after their lease by the fleet's tick).
pub fn recover(
    store: &Store,
    fleet: bool,
    me: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let host = crate::host::hostname();
    for e in store.running(None)? {
        if fleet {
            let owner = store.runner_of(e.id)?;
            let dead_here = owner
                .as_ref()
                .is_some_and(|r| r.host == host && Some(r.id) != me && !pid_alive(r.pid));
            if !dead_here {
                continue;
            }
        }
        if e.runner_pid
            .is_some_and(|p| p != std::process::id() && pid_alive(p))
        {
            continue; // still owned by a live runner (two runners forced onto one database)
        }
        if let Some(pid) = e.pid {
            // A pid can be reused: only stop a group whose leader started with the execution.
            if process::group_is_executions(pid, e.started_at) && process::group_alive(pid) {
                tracing::warn!(execution = e.id, pid, "stopping orphaned process group");
                process::kill_group(pid, execute::KILL_GRACE);
            }
        }
        let why = match e.runner_pid {
            Some(p) => format!("interrupted: the runner (pid {p}) stopped before it finished"),
            None => "interrupted: the runner stopped before it finished".to_string(),
        };
        store.interrupt(e.id, now, &why)?;
        tracing::warn!(execution = e.id, job = %e.job, "marked interrupted");
    }
    if let Some(me) = me {
        stop_leftovers(store, &host, me)?;
    }
    Ok(())
}

/// Whatever their row says: process groups of this database's executions that a runner of this
/// host started and did not see end, because it died (kill -9, a crash), and that another
/// runner (the fleet's reaping, after the lease) or an earlier start already marked
/// interrupted. The job's own process died with its runner ([`process`]'s PR_SET_PDEATHSIG);
/// what it started in its group had no one to stop it. Only this database's rows, only groups
/// whose leader started with the execution (or is gone while the group lives): another
/// database's runner's children on this host are not touched.
fn stop_leftovers(store: &Store, host: &str, me: i64) -> Result<(), StoreError> {
    for (e, runner_pid) in store.interrupted_on_host(host, me)? {
        if pid_alive(runner_pid) {
            continue; // that runner lives (it was declared lost, and rejoined): its own
        }
        let Some(pid) = e.pid else { continue };
        if process::group_is_executions(pid, e.started_at) && process::group_alive(pid) {
            tracing::warn!(
                execution = e.id,
                job = %e.job,
                pid,
                "stopping the process group of an execution its dead runner left (already interrupted)"
            );
            process::kill_group(pid, execute::KILL_GRACE);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_watch_tells_drift_from_time_passing() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let m0 = Instant::now();
        let mut w = ClockWatch::new(t0, m0);
        let s = |n| Duration::from_secs(n);
        let cd = chrono::Duration::seconds;
        // Ten seconds pass on both clocks: no jump; 4 s of drift is noise.
        assert_eq!(w.check(t0 + cd(10), m0 + s(10)), Jump::None);
        assert_eq!(w.check(t0 + cd(24), m0 + s(20)), Jump::None);
        // The wall clock gains an hour in 1 s: a small forward jump of ~1 h.
        assert_eq!(
            w.check(t0 + cd(3625), m0 + s(21)),
            Jump::Forward(Gap::SmallJump(cd(3600)))
        );
        // Four hours: large (a sleep, or a big change).
        assert_eq!(
            w.check(t0 + cd(3625 + 4 * 3600), m0 + s(21)),
            Jump::Forward(Gap::LargeJump(cd(4 * 3600)))
        );
        // Back by a minute, then by a day.
        let now = t0 + cd(3625 + 4 * 3600);
        assert_eq!(
            w.check(now - cd(60), m0 + s(21)),
            Jump::Back {
                by: cd(60),
                large: false
            }
        );
        assert_eq!(
            w.check(now - cd(60 + 86_400), m0 + s(21)),
            Jump::Back {
                by: cd(86_400),
                large: true
            }
        );
    }

    #[test]
    fn a_stop_kills_once_after_its_grace_period() {
        let m0 = Instant::now();
        let mut stop = Stop::default();
        assert!(!stop.stopping());
        assert_eq!(stop.next_wake(m0), None);
        stop.begin(m0, Duration::from_secs(30));
        assert!(stop.stopping());
        assert_eq!(stop.next_wake(m0), Some(Duration::from_secs(30)));
        assert!(!stop.kill_due(m0 + Duration::from_secs(29), 2));
        assert!(
            !stop.kill_due(m0 + Duration::from_secs(31), 0),
            "nothing to kill"
        );
        assert!(stop.kill_due(m0 + Duration::from_secs(31), 2));
        assert!(!stop.kill_due(m0 + Duration::from_secs(32), 2), "only once");
        assert_eq!(stop.next_wake(m0), None);
        // A second signal: at once.
        let mut stop = Stop::default();
        stop.begin(m0, Duration::from_secs(30));
        stop.hurry(m0 + Duration::from_secs(1));
        assert!(stop.kill_due(m0 + Duration::from_secs(1), 1));
    }

    #[test]
    fn signals_map_to_commands() {
        assert_eq!(command(libc::SIGTERM, false), Command::Stop);
        assert_eq!(command(libc::SIGINT, true), Command::StopNow);
        assert_eq!(command(libc::SIGHUP, false), Command::ReloadConfig);
        assert_eq!(command(libc::SIGUSR1, true), Command::ReloadJobs);
        assert_eq!(command(libc::SIGPIPE, false), Command::Ignore);
    }
}
