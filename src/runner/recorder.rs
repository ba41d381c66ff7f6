//! The runner's writes, kept in order and never lost when the database cannot take them.
//!
//! Another process may hold SQLite's write lock for seconds, or the disk may be full. Jobs must
//! still start on time and every record must land once the database is writable again. So:
//! - a slot is claimed in the database when it can be; when the database refuses the write, the
//!   claim goes to a small journal file next to it (`<db>.claims`, under `flock`, fsync'd) and the
//!   execution starts with a provisional (negative) id;
//! - every write the database refuses waits in a queue, in order, and is retried until it lands;
//!   a provisional id becomes the real row id when its claim lands;
//! - a runner that dies with claims in the journal leaves them to the next one, which records them
//!   as interrupted.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::store::{Finish, NewExecution, Status, Store, StoreError};

mod journal;
use journal::Journal;

/// One write the runner needs to make (named `Record` so it does not shadow `io::Write`).
#[derive(Debug, Clone)]
pub enum Record {
    /// A claim made in the journal, to insert as the execution's row.
    Claim {
        provisional: i64,
        new: NewExecution,
        next_run_at: Option<DateTime<Utc>>,
    },
    /// A bookkeeping row (skipped, missed).
    Row(NewExecution),
    Pid {
        execution: i64,
        pid: u32,
    },
    Finish {
        execution: i64,
        finish: Finish,
        /// Set by [`Recorder::write`] when the execution's `Pid` write was still queued: it is
        /// dropped and its pid lands with the end, in one statement instead of two.
        pid: Option<u32>,
    },
    NextRuns(Vec<(i64, Option<DateTime<Utc>>)>),
}

/// `new` with its cause as a row id, when the cause was a provisional id that has landed (see
/// [`Recorder::resolve`]); a cause still provisional stays as it is, and is resolved when its
/// claim lands ahead of this one.
fn with_cause(new: &NewExecution, resolve: &dyn Fn(i64) -> Option<i64>) -> NewExecution {
    let mut new = new.clone();
    if let Some(cause) = new.caused_by.filter(|c| *c < 0) {
        new.caused_by = Some(resolve(cause).unwrap_or(cause));
    }
    new
}

/// Is this a refusal that passes (lock, full disk, I/O, a lost or restarting database), as
/// opposed to a write that can never land? See [`StoreError::is_transient`].
pub fn transient(e: &StoreError) -> bool {
    e.is_transient()
}

pub struct Recorder {
    pending: VecDeque<Record>,
    /// Pids of executions spawned in a burst, held until the given instant: most of those
    /// executions end sooner, and their pid lands with their end, one write instead of two
    /// ([`Recorder::spawned`]).
    young_pids: Vec<(i64, u32, Instant)>,
    /// Provisional id -> row id, once the claim has landed.
    ids: HashMap<i64, i64>,
    next_provisional: i64,
    journal: Journal,
    /// Since when writes have been failing, and why (for logs and alerts).
    failing: Option<(Instant, String)>,
    /// Whether the connection's lock wait is cut to zero because writes are waiting.
    lock_wait_short: bool,
    /// A refusal that ended, for the caller to alert on ([`Recorder::take_outage`]).
    ended: Option<Outage>,
    /// Whether the last refusal was the database being out of reach.
    unreachable: bool,
}

/// A time the database refused writes, now over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub lasted: std::time::Duration,
    /// The last reason given.
    pub why: String,
    /// The database could not be reached (connection lost, server down or restarting), as
    /// opposed to reached and refusing (locked, full).
    pub unreachable: bool,
    /// How many records waited and landed when it ended.
    pub held: usize,
}

impl Recorder {
    pub fn new(db: &Path) -> Recorder {
        Recorder {
            pending: VecDeque::new(),
            young_pids: Vec::new(),
            ids: HashMap::new(),
            next_provisional: -1,
            journal: Journal::new(db),
            failing: None,
            lock_wait_short: false,
            ended: None,
            unreachable: false,
        }
    }

    /// While writes wait, every other write fails at once instead of stalling the loop on the
    /// lock (the alert bookkeeping of a run ending then is lost, the execution records are
    /// not); else a write waits up to `wait` for the lock.
    pub fn sync_lock_wait(&mut self, store: &Store, wait: std::time::Duration) {
        let failing = self.is_failing();
        if failing != self.lock_wait_short {
            let wait = if failing {
                std::time::Duration::ZERO
            } else {
                wait
            };
            if let Err(e) = store.set_lock_wait(wait) {
                tracing::warn!(error = %e, "could not set the lock wait");
            }
            self.lock_wait_short = failing;
        }
    }

    /// True while the database refuses writes (queued writes wait, claims go to the journal).
    pub fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// True on a database shared by a fleet (PostgreSQL): no claim journal.
    pub fn shared(&self) -> bool {
        self.journal.shared
    }

    /// The writes that wait to land now (not the young pids, which wait on purpose).
    pub fn backlog(&self) -> usize {
        self.pending.len()
    }

    /// Execution `execution` was spawned with `pid`: its pid lands with its end if it ends
    /// within `hold`, else then (at the first write after, see [`Recorder::pid_due_in`]).
    pub fn spawned(&mut self, execution: i64, pid: u32, hold: std::time::Duration) {
        self.young_pids
            .push((execution, pid, Instant::now() + hold));
    }

    /// How long until a held pid is due to land; None when none is held.
    pub fn pid_due_in(&self) -> Option<std::time::Duration> {
        let due = self.young_pids.iter().map(|(_, _, at)| *at).min()?;
        Some(due.saturating_duration_since(Instant::now()))
    }

    /// Queue the held pids that are due (every one with `all`, when the runner stops).
    pub fn release_pids(&mut self, all: bool) {
        let now = Instant::now();
        let pending = &mut self.pending;
        self.young_pids.retain(|&(execution, pid, at)| {
            let due = all || at <= now;
            if due {
                pending.push_back(Record::Pid { execution, pid });
            }
            !due
        });
    }

    /// Since when the database has refused writes, and the last reason.
    #[cfg(test)]
    pub fn failing(&self) -> Option<&(Instant, String)> {
        self.failing.as_ref()
    }

    /// The refusal that ended since the last call, if one did.
    pub fn take_outage(&mut self) -> Option<Outage> {
        self.ended.take()
    }

    /// The row id for an id the runner handed out (provisional ids map once their claim landed).
    pub fn row_id(&self, id: i64) -> i64 {
        self.ids.get(&id).copied().unwrap_or(id)
    }

    /// Claim a slot. Some(id) to run it (a provisional negative id when the database could not
    /// take the claim now), None when it is already claimed elsewhere.
    ///
    /// On a database shared by a fleet there is no journal (a local file cannot keep another
    /// host from running the slot): a claim the database cannot take now is a transient Err,
    /// and the caller keeps the slot waiting ([`Recorder::shared`]).
    pub fn claim(
        &mut self,
        store: &Store,
        new: &NewExecution,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Option<i64>, StoreError> {
        if self.journal.has(new)? {
            return Ok(None);
        }
        let new = &with_cause(new, &|id| self.resolve(id, &[]));
        // A chain whose parent's claim has not landed yet waits behind it (journal and queue).
        let cause_waits = new.caused_by.is_some_and(|c| c < 0);
        if (!self.is_failing() || self.journal.shared) && !cause_waits {
            match store.claim_run(new, next_run_at) {
                Ok(claimed) => {
                    self.landed(Vec::new(), 0);
                    return Ok(claimed);
                }
                Err(e) if transient(&e) => {
                    self.note_failure(&e);
                    if self.journal.shared {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match self.journal.claim(new) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                // Nowhere durable to claim the slot (the disk is full): do not run it, and say so
                // once the database takes writes again.
                tracing::error!(error = %e, job_id = new.job_id, "cannot claim the slot anywhere; not running it");
                self.failing
                    .get_or_insert_with(|| (Instant::now(), e.to_string()));
                self.pending.push_back(Record::Row(NewExecution {
                    status: Status::Skipped,
                    error_message: Some(format!(
                        "skipped: the slot could not be claimed (database refused the write, claim journal: {e})"
                    )),
                    ..new.clone()
                }));
                return Ok(None);
            }
        }
        let provisional = self.next_provisional;
        self.next_provisional -= 1;
        tracing::warn!(
            execution = provisional,
            "the database is not taking writes: slot claimed in {} and started on time",
            self.journal.path.display()
        );
        self.pending.push_back(Record::Claim {
            provisional,
            new: new.clone(),
            next_run_at,
        });
        Ok(Some(provisional))
    }

    /// Queue a write; [`Recorder::flush`] makes the queued writes in one transaction.
    pub fn write(&mut self, mut write: Record) {
        if let Record::Finish { execution, pid, .. } = &mut write {
            if let Some(i) = (self.young_pids.iter()).position(|(e, _, _)| e == execution) {
                *pid = Some(self.young_pids.swap_remove(i).1);
            }
            // A quick job ends before its pid landed (in a burst, most do).
            let queued = self
                .pending
                .iter()
                .rposition(|w| matches!(w, Record::Pid { execution: e, .. } if e == execution));
            if let Some(Record::Pid { pid: queued, .. }) =
                queued.and_then(|i| self.pending.remove(i))
            {
                *pid = Some(queued);
            }
        }
        self.pending.push_back(write);
    }

    /// Claim at most `want` of `slots`, in order, after the queued writes: one transaction when
    /// the database takes it, the journal for each slot when it does not. One result per slot
    /// considered, as [`Recorder::claim`]: a prefix of `slots`, up to the `want`-th claimed (the
    /// slots past it are spares, see [`crate::store::Batch::claim_runs`]; they were not tried).
    pub fn claim_many(
        &mut self,
        store: &Store,
        slots: &[(NewExecution, Option<DateTime<Utc>>)],
        want: usize,
    ) -> Vec<Result<Option<i64>, StoreError>> {
        self.release_pids(false);
        let try_db = !self.is_failing() || self.journal.shared;
        if try_db && !slots.is_empty() && self.journal.is_empty() {
            // The queued writes (ends and pids of earlier executions) go in the same transaction
            // on SQLite: in a burst each loop turn then commits once, not once for them and
            // once for claims.
            let shared = self.journal.shared;
            if shared {
                // On a fleet's database the queued ends and pids land first, in a transaction
                // of their own: a claim holds its systems' cap locks until it commits, and
                // ending a turn's executions inside it (a trigger counts each end) kept every
                // other runner's claims waiting that much longer. Should that fail, they go
                // with the claims below, as on SQLite.
                self.flush(store);
            }
            let fence = crate::store::Fence::for_claims(slots.iter().map(|(new, _)| new));
            let batch = self.land_with(store, fence, |b, resolve| {
                if shared {
                    // One statement for the turn's claims, a result for each.
                    let resolved: Vec<_> = slots
                        .iter()
                        .map(|(new, next)| (with_cause(new, resolve), *next))
                        .collect();
                    return b.claim_runs(&resolved, want);
                }
                let (mut out, mut left) = (Vec::with_capacity(want), want);
                for (new, next) in slots {
                    if left == 0 {
                        break;
                    }
                    let claimed = b.claim_run(&with_cause(new, resolve), *next)?;
                    left -= usize::from(claimed.is_some());
                    out.push(Ok(claimed));
                }
                Ok(out)
            });
            match batch {
                Ok(ids) => return ids,
                // Shared: no journal to fall back on, and each slot alone would meet the same
                // refusal: every slot waits for the next try.
                Err(e) if transient(&e) && self.journal.shared => {
                    self.note_failure(&e);
                    let unreachable = e.is_unreachable();
                    let why = e.to_string();
                    let since = self.failing.as_ref().map(|f| f.0.elapsed());
                    return slots
                        .iter()
                        .map(|_| {
                            Err(match unreachable {
                                true => StoreError::Unreachable {
                                    db: crate::store::display_db(store.path()),
                                    since: since.unwrap_or_default(),
                                    why: why.clone(),
                                },
                                false => StoreError::Busy(why.clone()),
                            })
                        })
                        .collect();
                }
                Err(e) if transient(&e) => self.note_failure(&e),
                // The fleet declared this runner lost: no slot is its to claim; the queued
                // writes (ends) land on their own.
                Err(StoreError::NotInFleet { runner }) => {
                    self.flush(store);
                    return slots
                        .iter()
                        .map(|_| Err(StoreError::NotInFleet { runner }))
                        .collect();
                }
                // A bad one among them: land the queue on its own (which finds a bad write),
                // then claim each slot on its own below.
                Err(_) => {
                    self.flush(store);
                }
            }
        }
        let mut out = Vec::with_capacity(want);
        let mut left = want;
        for (new, next) in slots {
            if left == 0 {
                break;
            }
            let claimed = self.claim(store, new, *next);
            left -= usize::from(matches!(claimed, Ok(Some(_))));
            out.push(claimed);
        }
        out
    }

    /// Make every queued write, in order, in one transaction. True when nothing waits any more.
    pub fn flush(&mut self, store: &Store) -> bool {
        self.release_pids(false);
        if self.pending.is_empty() {
            return true;
        }
        match self.land_with(store, crate::store::Fence::default(), |_, _| Ok(())) {
            Ok(()) => true,
            Err(e) if transient(&e) => {
                self.note_failure(&e);
                false
            }
            // One of them can never land: find it by writing them one at a time.
            Err(_) => self.flush_one_by_one(store),
        }
    }

    /// Make every queued write, in order, then `then`, all in one transaction; the queue is
    /// empty when it lands, untouched when it does not.
    ///
    /// On a fleet's database the transaction first takes every row lock it will need, in the
    /// fleet's order ([`crate::store::Fence`]): `fence` for what `then` claims, and the jobs
    /// of the queued ends and next runs.
    fn land_with<T>(
        &mut self,
        store: &Store,
        mut fence: crate::store::Fence,
        then: impl FnOnce(
            &crate::store::Batch<'_>,
            &dyn Fn(i64) -> Option<i64>,
        ) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut ids = Vec::new();
        for write in &self.pending {
            match write {
                Record::Finish { execution, .. } => fence.executions.push(self.row_id(*execution)),
                Record::NextRuns(runs) => fence.jobs.extend(runs.iter().map(|(job, _)| *job)),
                Record::Claim { new, .. } => fence.jobs.push(new.job_id),
                Record::Row(_) | Record::Pid { .. } => {}
            }
        }
        let out = store.batch(|b| {
            b.fence(&fence)?;
            if self.journal.shared {
                self.apply_grouped(b)?;
            } else {
                for write in &self.pending {
                    self.apply_in(b, write, &mut ids)?;
                }
            }
            then(b, &|id| self.resolve(id, &ids))
        })?;
        self.ids.extend(ids);
        let held = self.pending.len();
        let claims: Vec<NewExecution> = self
            .pending
            .drain(..)
            .filter_map(|w| match w {
                Record::Claim { new, .. } => Some(new),
                _ => None,
            })
            .collect();
        self.landed(claims, held);
        Ok(out)
    }

    fn landed(&mut self, claims: Vec<NewExecution>, held: usize) {
        if !claims.is_empty() {
            if let Err(e) = self.journal.forget(&claims) {
                tracing::warn!(error = %e, "could not trim the claim journal");
            }
        }
        if self.pending.is_empty() {
            if let Some((since, why)) = self.failing.take() {
                tracing::warn!(
                    waited_ms = since.elapsed().as_millis() as u64,
                    "the database takes writes again; every waiting record has landed"
                );
                let unreachable = self.unreachable;
                self.ended = Some(Outage {
                    lasted: since.elapsed(),
                    why,
                    unreachable,
                    held,
                });
            }
        }
    }

    fn flush_one_by_one(&mut self, store: &Store) -> bool {
        let mut landed_claims = Vec::new();
        let held = self.pending.len();
        while let Some(write) = self.pending.front().cloned() {
            match self.apply(store, &write) {
                Ok(()) => {
                    if let Record::Claim { new, .. } = &write {
                        landed_claims.push(new.clone());
                    }
                    self.pending.pop_front();
                }
                Err(e) if transient(&e) => {
                    self.note_failure(&e);
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, ?write, "dropping a record the database can never take");
                    self.pending.pop_front();
                }
            }
        }
        self.landed(landed_claims, held);
        self.pending.is_empty()
    }

    fn apply(&mut self, store: &Store, write: &Record) -> Result<(), StoreError> {
        let mut ids = Vec::new();
        store.batch(|b| self.apply_in(b, write, &mut ids))?;
        self.ids.extend(ids);
        Ok(())
    }

    /// One write inside a transaction; provisional ids that landed go to `ids`.
    /// The queued writes on a fleet's database: its pids in one statement and its ends in one,
    /// the rest one by one. Their order does not matter there: no claim is queued (there is no
    /// journal), a queued pid is of an execution whose end is not queued (an end takes the
    /// queued pid along), and each write touches its own row.
    fn apply_grouped(&self, b: &crate::store::Batch<'_>) -> Result<(), StoreError> {
        let mut pids = Vec::new();
        let mut ends = Vec::new();
        for write in &self.pending {
            match write {
                Record::Pid { execution, pid } => pids.push((*execution, *pid)),
                Record::Finish {
                    execution,
                    finish,
                    pid,
                } => ends.push((*execution, finish, *pid)),
                other => self.apply_in(b, other, &mut Vec::new())?,
            }
        }
        b.set_pids(&pids)?;
        b.finish_many(&ends)
    }

    fn apply_in(
        &self,
        b: &crate::store::Batch<'_>,
        write: &Record,
        ids: &mut Vec<(i64, i64)>,
    ) -> Result<(), StoreError> {
        match write {
            Record::Claim {
                provisional,
                new,
                next_run_at,
            } => {
                let new = with_cause(new, &|id| self.resolve(id, ids));
                match b.claim_run(&new, *next_run_at)? {
                    Some(id) => ids.push((*provisional, id)),
                    None => {
                        // Someone else recorded the same slot meanwhile: it ran twice. Say so.
                        tracing::error!(
                            job_id = new.job_id,
                            slot = %crate::output::utc(new.scheduled_for),
                            "a slot claimed in the journal was also claimed in the database"
                        );
                    }
                }
                Ok(())
            }
            Record::Row(new) => b.claim(new).map(|_| ()),
            Record::Pid { execution, pid } => match self.resolve(*execution, ids) {
                Some(id) => b.set_pid(id, *pid),
                None => Ok(()),
            },
            Record::Finish {
                execution,
                finish,
                pid,
            } => match self.resolve(*execution, ids) {
                Some(id) => match b.finish_with_pid(id, finish, *pid) {
                    Err(StoreError::ExecutionNotFound(_)) => Ok(()), // its job was removed
                    other => other,
                },
                None => Ok(()),
            },
            Record::NextRuns(updates) => b.set_next_runs(updates),
        }
    }

    /// The row id of an execution, or None for a provisional one whose claim never landed.
    fn resolve(&self, id: i64, landing: &[(i64, i64)]) -> Option<i64> {
        if id > 0 {
            return Some(id);
        }
        self.ids
            .get(&id)
            .copied()
            .or_else(|| landing.iter().find(|(p, _)| *p == id).map(|(_, r)| *r))
    }

    fn note_failure(&mut self, e: &StoreError) {
        if self.journal.shared && e.is_contention() {
            // Another member held a row or cap lock this write needed: the fleet is working,
            // not failing. The write is kept and tried at the next turn, with the usual wait.
            tracing::debug!(error = %e, "a write met another runner's lock; trying again at the next turn");
            return;
        }
        self.unreachable = e.is_unreachable();
        if self.failing.is_none() {
            tracing::error!(error = %e, "the database refuses writes; recording is queued until it takes them");
            self.failing = Some((Instant::now(), e.to_string()));
        } else if let Some(f) = self.failing.as_mut() {
            f.1 = e.to_string();
        }
    }

    /// At start-up: claims left in the journal by runners that died are recorded as interrupted.
    pub fn recover(&mut self, store: &Store, now: DateTime<Utc>) -> Result<(), StoreError> {
        let orphans = self.journal.orphans()?;
        if orphans.is_empty() {
            return Ok(());
        }
        let mut done = Vec::new();
        for (new, pid) in orphans {
            let row = NewExecution {
                status: Status::Interrupted,
                error_message: Some(format!(
                    "interrupted: claimed while the database was unavailable by runner pid {pid}, which stopped before recording it"
                )),
                started_at: new.started_at.or(Some(now)),
                ..new.clone()
            };
            store.claim(&row)?;
            done.push(new);
        }
        tracing::warn!(
            count = done.len(),
            "recorded journal claims of a runner that died"
        );
        self.journal.forget(&done).map_err(StoreError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Job;
    use crate::store::Trigger;
    use chrono::TimeZone;
    use std::path::PathBuf;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
    }

    fn new(job_id: i64, secs: i64) -> NewExecution {
        NewExecution {
            job_id,
            status: Status::Running,
            scheduled_for: t0() + chrono::Duration::seconds(secs),
            started_at: Some(t0() + chrono::Duration::seconds(secs)),
            triggered_by: Trigger::Schedule,
            attempt: 1,
            error_message: None,
            runner_pid: Some(std::process::id()),
            runner_id: None,
            fleet: None,
            caused_by: None,
        }
    }

    /// A database in a temporary folder, with one job.
    fn store_with_job() -> (tempfile::TempDir, PathBuf, Store, Job) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let store = Store::open(&db).unwrap();
        let job = store
            .insert_job(
                &Job::new("default", "j", "* * * * * *", "shell"),
                t0(),
                crate::store::test_by(),
            )
            .unwrap();
        (dir, db, store, job)
    }

    #[test]
    fn claims_and_records_wait_while_the_database_is_locked_then_land_in_order() {
        let (dir, db, store, job) = store_with_job();
        store
            .set_lock_wait(std::time::Duration::from_millis(50))
            .unwrap();
        let mut rec = Recorder::new(&db);

        // Another connection holds the write lock.
        let other = rusqlite::Connection::open(&db).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let id = rec.claim(&store, &new(job.id, 0), None).unwrap().unwrap();
        assert!(id < 0, "a provisional id while locked");
        assert!(rec.is_failing());
        // The same slot cannot be claimed twice, journal or not.
        assert_eq!(rec.claim(&store, &new(job.id, 0), None).unwrap(), None);
        rec.write(Record::Pid {
            execution: id,
            pid: 4242,
        });
        rec.write(Record::Finish {
            execution: id,
            finish: success("done"),
            pid: None,
        });
        assert!(!rec.flush(&store));
        assert!(rec.failing().is_some());

        other.execute_batch("COMMIT").unwrap();
        assert!(rec.flush(&store));
        let row = store.execution(rec.row_id(id)).unwrap();
        assert_eq!(row.status, Status::Success);
        assert_eq!(row.pid, Some(4242));
        assert_eq!(row.output.as_deref(), Some("done"));
        // The journal is empty again, and a later claim goes straight to the database.
        assert_eq!(
            std::fs::read_to_string(dir.path().join("c.db.claims")).unwrap(),
            ""
        );
        assert!(rec.claim(&store, &new(job.id, 1), None).unwrap().unwrap() > 0);
    }

    fn success(output: &str) -> Finish {
        Finish {
            status: Status::Success,
            finished_at: t0(),
            duration_ms: 5,
            output: output.into(),
            error_message: None,
            exit_code: Some(0),
            memory_used_mb: None,
            cpu_used_percent: None,
            memory_upper_bound: None,
            cpu_quota_enforced: None,
        }
    }

    /// A pid spawned in a burst waits for its execution's end and lands with it, no write of
    /// its own; one whose execution outlives the hold lands with the first write after it.
    #[test]
    fn a_young_pid_lands_with_its_end_or_once_its_hold_is_over() {
        let (_dir, db, store, job) = store_with_job();
        let mut rec = Recorder::new(&db);
        let quick = rec.claim(&store, &new(job.id, 0), None).unwrap().unwrap();
        let slow = rec.claim(&store, &new(job.id, 1), None).unwrap().unwrap();
        let hold = std::time::Duration::from_millis(40);
        rec.spawned(quick, 4242, hold);
        rec.spawned(slow, 4343, hold);
        assert!(rec.pid_due_in().is_some_and(|d| d <= hold));
        assert_eq!(rec.backlog(), 0, "held pids are not a backlog to hurry");
        assert!(rec.flush(&store));
        assert_eq!(store.execution(slow).unwrap().pid, None, "held");
        rec.write(Record::Finish {
            execution: quick,
            finish: success("done"),
            pid: None,
        });
        assert_eq!(rec.backlog(), 1, "the end, its pid with it");
        assert!(rec.flush(&store));
        assert_eq!(store.execution(quick).unwrap().pid, Some(4242));
        assert_eq!(store.execution(slow).unwrap().pid, None, "still held");
        std::thread::sleep(hold);
        assert_eq!(rec.pid_due_in(), Some(std::time::Duration::ZERO));
        assert!(rec.flush(&store));
        assert_eq!(store.execution(slow).unwrap().pid, Some(4343));
        assert_eq!(rec.pid_due_in(), None);
    }

    #[test]
    fn claims_land_in_one_transaction_with_the_queued_writes() {
        let (_dir, db, store, job) = store_with_job();
        let mut rec = Recorder::new(&db);
        let first = rec.claim(&store, &new(job.id, 0), None).unwrap().unwrap();
        rec.write(Record::Pid {
            execution: first,
            pid: 4242,
        });
        rec.write(Record::Finish {
            execution: first,
            finish: success("one"),
            pid: None,
        });
        // Count the commits: each one makes another connection's data_version move.
        let other = rusqlite::Connection::open(&db).unwrap();
        let version = || -> i64 {
            other
                .query_row("PRAGMA data_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(rec.backlog(), 1, "the pid goes with the end");
        let before = version();
        let claimed = rec.claim_many(&store, &[(new(job.id, 1), None), (new(job.id, 2), None)], 2);
        assert_eq!(
            version(),
            before + 1,
            "one commit for the queue and both claims"
        );
        assert!(claimed.iter().all(|c| matches!(c, Ok(Some(id)) if *id > 0)));
        assert_eq!(rec.backlog(), 0);
        let row = store.execution(first).unwrap();
        assert_eq!((row.status, row.pid), (Status::Success, Some(4242)));

        // A queued end whose execution is gone (its job was removed) changes nothing, and does
        // not keep the claims from landing.
        rec.write(Record::Finish {
            execution: 999_999,
            finish: success("lost"),
            pid: None,
        });
        let claimed = rec.claim_many(&store, &[(new(job.id, 3), None)], 1);
        assert!(matches!(claimed[..], [Ok(Some(id))] if id > 0));
        assert_eq!(rec.backlog(), 0);
        assert_eq!(store.executions(&Default::default()).unwrap().len(), 4);
    }

    #[test]
    fn a_dead_runners_journal_claims_become_interrupted_rows() {
        let (dir, db, store, job) = store_with_job();
        let slot = crate::store::fmt_time(t0());
        std::fs::write(
            dir.path().join("c.db.claims"),
            format!("{} {slot} 1 999999999 {slot} schedule\n", job.id),
        )
        .unwrap();
        let mut rec = Recorder::new(&db);
        rec.recover(&store, t0()).unwrap();
        let rows = store.executions(&Default::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, Status::Interrupted);
        assert!(
            rows[0]
                .error_message
                .as_deref()
                .unwrap()
                .contains("journal")
                || rows[0]
                    .error_message
                    .as_deref()
                    .unwrap()
                    .contains("database was unavailable")
        );
    }

    #[test]
    fn the_journal_is_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("c.db.claims")).unwrap();
        let journal = Journal::new(&db);
        assert!(journal.claim(&new(1, 0)).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }
}
