//! The runner's housekeeping: noticing changes made behind its back, retention in small
//! batches, the WAL's checkpoints, and reporting its own state (the `runner_state` row that
//! `cronmgr status` reads, the metrics textfile). Each part says when it is next due.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::model::bounds;
use crate::store::{Checkpointer, CommitProbe, Settings, Store, StoreError};

/// The runner looks for changes made behind its back (and runs host checks) this often at most.
pub const MINUTE: Duration = Duration::from_secs(60);
/// A start due this soon after the minute's housekeeping goes first; the housekeeping runs right
/// after it. Its work never delays a job.
const YIELD: Duration = Duration::from_millis(250);
/// How often the runner trims history (and once at start).
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per retention batch.
const PRUNE_BATCH: usize = 500;
/// The runner state and the metrics file are rewritten at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// How busy the runner is, as `runner_state` and the metrics file show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub running: u32,
    pub queued: u32,
    pub capacity: u32,
}

pub struct Housekeeping {
    /// When the minute's housekeeping last ran.
    last: Instant,
    /// The change marker as last read, and whether anyone committed since (see [`CommitProbe`]).
    data_version: i64,
    commits: CommitProbe,
    /// A reload failed (the database could not be read): try again at the next turn.
    pub reload_failed: bool,
    prune_pending: bool,
    last_prune: Instant,
    /// During a retention cycle: per system, the jobs still over their keep_executions.
    prune_quota: Option<HashMap<String, Vec<i64>>>,
    /// When the runner state and metrics file were last written, and whether they lag behind.
    reported: Instant,
    stale: bool,
    /// The load as last written to `runner_state`.
    last_load: Option<Load>,
    /// The WAL's checkpoints, on a thread of their own (SQLite), so no claim waits for one.
    checkpointer: Option<Checkpointer>,
}

impl Housekeeping {
    pub fn new(store: &Store, mono: Instant) -> Housekeeping {
        Housekeeping {
            // The first housekeeping comes half a minute after start-up, the others a minute
            // apart: the first look for changes made behind the runner's back and the first
            // overload sample (covering those 30 s, see docs/alerts.md) come that soon.
            last: mono.checked_sub(MINUTE / 2).unwrap_or(mono),
            data_version: 0,
            commits: store.commit_probe(),
            reload_failed: false,
            prune_pending: true,
            last_prune: mono,
            prune_quota: None,
            reported: mono,
            stale: false,
            last_load: None,
            checkpointer: None,
        }
    }

    /// Start checkpointing on a thread of its own (SQLite).
    pub fn start_checkpoints(&mut self, store: &Store) {
        self.checkpointer = match store.checkpoint_in_background() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint thread; commits checkpoint the WAL themselves");
                None
            }
        };
    }

    /// After a turn's writes: checkpoint if the WAL grew enough.
    pub fn after_writes(&mut self, store: &Store) {
        if let Some(c) = &mut self.checkpointer {
            if let Some(frames) = self.commits.wal_frames() {
                c.after_turn(store, frames);
            }
        }
    }

    /// Take the database's state as seen (after a reload).
    pub fn seen(&mut self, store: &Store) -> Result<(), StoreError> {
        self.commits.moved(); // what the next check compares with
        self.data_version = store.change_marker()?;
        Ok(())
    }

    /// Whether another connection changed jobs or settings since the last look. Asks SQLite
    /// only when something was committed.
    pub fn changed(&mut self, store: &Store) -> Result<bool, StoreError> {
        if !self.commits.moved() {
            return Ok(false);
        }
        let version = store.change_marker()?;
        let changed = version != self.data_version;
        self.data_version = version;
        Ok(changed)
    }

    /// How long until the minute's housekeeping, which waits for a start due at about the same
    /// moment (`next_start_in`): the earlier of the two, except that a start at most [`YIELD`]
    /// after the housekeeping's time is waited for alone.
    pub fn next_wake(&self, mono: Instant, next_start_in: Option<Duration>) -> Duration {
        let due_in = MINUTE.saturating_sub(mono.saturating_duration_since(self.last));
        match next_start_in {
            Some(start) if start <= due_in + YIELD => start,
            _ => due_in,
        }
    }

    /// Whether the minute's housekeeping runs now: it is due, and no start is due within
    /// [`YIELD`] (the start first; this runs right after it). Taken as done when true.
    pub fn minute_due(&mut self, mono: Instant, next_start_in: Option<Duration>) -> bool {
        if mono.saturating_duration_since(self.last) < MINUTE
            || next_start_in.is_some_and(|start| start <= YIELD)
        {
            return false;
        }
        self.last = mono;
        true
    }

    /// Whether a retention batch is waiting (the loop wakes soon for it).
    pub fn prune_pending(&self) -> bool {
        self.prune_pending
    }

    /// An hour since the last retention cycle: start one.
    pub fn retention_due(&mut self, mono: Instant) -> bool {
        if mono.saturating_duration_since(self.last_prune) < RETENTION_EVERY {
            return false;
        }
        self.last_prune = mono;
        true
    }

    /// Delete one small batch of history beyond each system's retention. True when a cycle
    /// just ended (the caller gives memory back).
    pub fn prune_step(
        &mut self,
        store: &Store,
        settings: &HashMap<String, Settings>,
        now: DateTime<Utc>,
    ) -> bool {
        let keep_of = |s: &Settings| {
            if s.keep_executions == 0 {
                u64::MAX >> 1
            } else {
                s.keep_executions
            }
        };
        // A retention cycle starts by finding the jobs over their quota, once.
        let quotas = self.prune_quota.get_or_insert_with(HashMap::new);
        if quotas.is_empty() {
            for (system, s) in settings {
                match store.over_quota(system, keep_of(s)) {
                    Ok(jobs) => {
                        quotas.insert(system.clone(), jobs);
                    }
                    Err(e) => {
                        tracing::warn!(system, error = %e, "retention failed; will try later")
                    }
                }
            }
        }
        let mut more = false;
        for (system, s) in settings {
            let days = i64::try_from(s.cleanup_days.min(bounds::MAX_DAYS)).unwrap_or(0);
            let older = (days > 0)
                .then(|| now.checked_sub_signed(chrono::Duration::days(days)))
                .flatten();
            let quota = quotas.entry(system.clone()).or_default();
            match store.prune_batch(system, keep_of(s), older, PRUNE_BATCH, quota) {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(system, deleted = n, "retention");
                    }
                    more |= n == PRUNE_BATCH || !quota.is_empty();
                }
                Err(e) => tracing::warn!(system, error = %e, "retention failed; will try later"),
            }
        }
        self.prune_pending = more;
        // The cycle is done (the next one finds the quotas again).
        !more && self.prune_quota.take().is_some()
    }

    /// An execution ended: whether to report now (at most once a second; else later, when
    /// [`Housekeeping::report_late`] says so).
    pub fn report_due(&mut self, mono: Instant) -> bool {
        if mono.saturating_duration_since(self.reported) >= REPORT_EVERY {
            self.reported = mono;
            true
        } else {
            self.stale = true;
            false
        }
    }

    /// A report put off by [`Housekeeping::report_due`] is due now.
    pub fn report_late(&mut self, mono: Instant) -> bool {
        if self.stale && mono.saturating_duration_since(self.reported) >= REPORT_EVERY {
            self.stale = false;
            self.reported = mono;
            true
        } else {
            false
        }
    }

    /// How long until a put-off report is due.
    pub fn report_wake(&self, mono: Instant) -> Option<Duration> {
        self.stale
            .then(|| REPORT_EVERY.saturating_sub(mono.saturating_duration_since(self.reported)))
    }

    /// Whether the load differs from what `runner_state` last got (an idle minute writes nothing).
    pub fn load_changed(&self, load: Load) -> bool {
        self.last_load != Some(load)
    }

    /// Tell `cronmgr status` who we are and how busy we are.
    pub fn write_state(
        &mut self,
        store: &Store,
        load: Load,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let state = crate::store::RunnerState {
            pid: std::process::id(),
            started_at,
            updated_at: now,
            running: load.running,
            queued: load.queued,
            capacity: load.capacity,
        };
        match store.put_runner_state(&state) {
            Ok(()) => self.last_load = Some(load),
            Err(e) => tracing::warn!(error = %e, "could not record the runner's state"),
        }
    }
}

/// Rewrite the metrics textfile `path` (`up`: false as the runner stops).
pub fn write_metrics(
    store: &Store,
    path: Option<&Path>,
    up: bool,
    load: Load,
    started_at: DateTime<Utc>,
) {
    let Some(path) = path else {
        return;
    };
    let view = crate::metrics::RunnerView {
        up,
        started_at: Some(started_at),
        running: u64::from(load.running),
        queued: u64::from(load.queued),
        capacity: u64::from(load.capacity),
        // The textfile is this runner's, read by this host's node_exporter.
        fleet: None,
    };
    let written = crate::metrics::render(store, &view)
        .map_err(anyhow::Error::from)
        .and_then(|text| Ok(crate::metrics::write_atomic(path, &text)?));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "could not write the metrics file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn housekeeping_gives_way_to_a_start_due_at_the_same_moment() {
        let store = Store::open_in_memory().unwrap();
        let m0 = Instant::now();
        let mut h = Housekeeping::new(&store, m0);
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        // The first comes half a minute after start.
        assert_eq!(h.next_wake(m0, None), s(30));
        let at = m0 + s(20);
        // Nothing due: wake for the housekeeping; a start long after: the housekeeping first.
        assert_eq!(h.next_wake(at, Some(s(30))), s(10));
        // A start 100 ms after the housekeeping's time: one wake-up, for the start.
        assert_eq!(h.next_wake(at, Some(s(10) + ms(100))), s(10) + ms(100));
        // A start before it: that comes first anyway.
        assert_eq!(h.next_wake(at, Some(s(2))), s(2));
        let due = m0 + s(30);
        assert_eq!(h.next_wake(due, Some(ms(250))), ms(250));
        assert_eq!(h.next_wake(due, Some(ms(251))), ms(0));
        // Due now: it waits only for a start within the yield.
        assert!(!h.minute_due(m0 + s(29), None), "not yet");
        assert!(!h.minute_due(due, Some(ms(0))));
        assert!(!h.minute_due(due, Some(ms(250))));
        // Right after a start, an every-second job's next start (~1 s) lets it run.
        assert!(h.minute_due(due, Some(ms(999))));
        assert!(!h.minute_due(due + s(1), None), "done for this minute");
        assert!(h.minute_due(due + s(60), None));
    }

    #[test]
    fn reports_come_at_most_once_a_second_and_none_is_lost() {
        let store = Store::open_in_memory().unwrap();
        let m0 = Instant::now();
        let mut h = Housekeeping::new(&store, m0);
        let ms = Duration::from_millis;
        assert_eq!(h.report_wake(m0), None);
        assert!(!h.report_due(m0 + ms(500)), "too soon: put off");
        assert_eq!(h.report_wake(m0 + ms(500)), Some(ms(500)));
        assert!(!h.report_late(m0 + ms(900)));
        assert!(h.report_late(m0 + ms(1000)));
        assert!(!h.report_late(m0 + ms(3000)), "nothing put off");
        assert!(h.report_due(m0 + ms(2000)));
    }
}
