//! The runner's writes to executions: claiming a slot (on a fleet, with the database enforcing
//! overlap and caps), recording the pid and the end, cancels and interrupts, and the job's
//! last/next run that go with a claim. Each is one transaction, or part of a [`Batch`].

use chrono::{DateTime, Utc};

use super::{Cancelling, Fence, NewExecution};
use crate::store::sql::{params, Connection, OptionalExtension};
use crate::store::{
    fmt_time, parse_enum, parse_time, Backend, Finish, Result, Status, Store, StoreError,
};

/// The statuses an end caused by a cancel's signal is recorded with, before it is known to be one.
pub(super) const CANCELLABLE_ENDS: &str = "('failed', 'timeout', 'interrupted')";

/// A chain's claim (`caused_by` = ?10) stands only when the causing execution's end is recorded
/// as one a chain fires on: on a fleet, a runner declared lost whose parent was recorded
/// `interrupted` by another fires nothing, and the (job, cause, attempt) key keeps one start per
/// cause. The parent's end lands before the claim, in the same transaction (the recorder's order).
/// (The casts type a NULL cause for PostgreSQL, which cannot infer it from `IS NULL`.)
const CAUSE_ENDED: &str = "(CAST(?10 AS BIGINT) IS NULL OR EXISTS (SELECT 1 FROM executions c \
     WHERE c.id = CAST(?10 AS BIGINT) AND c.status IN ('success', 'failed', 'timeout')))";

/// The running executions' jobs, read first (`OFFSET 0` keeps the planner from folding it into
/// a join that probes every job of the system): a fleet has tens running, a system thousands
/// of jobs.
pub(super) const RUNNING: &str = "SELECT job_id FROM executions WHERE status = 'running' OFFSET 0";

/// The actor as `cancelled_by` records it: the audit log's user, and who they were before sudo.
fn actor_label(actor: &crate::store::Actor) -> String {
    match &actor.sudo_user {
        Some(s) => format!("{} (sudo from {s})", actor.user),
        None => actor.user.clone(),
    }
}

impl Store {
    /// Claim a slot: insert its row unless (job, scheduled_for, attempt) is taken. Returns the new
    /// row's id, or None when another runner (or an earlier pass) already has the slot.
    pub fn claim(&self, new: &NewExecution) -> Result<Option<i64>> {
        self.batch(|b| b.claim(new))
    }

    /// Claim a slot and, in the same transaction, record that the job started now and when it
    /// runs next. None when the slot is already taken.
    pub fn claim_run(
        &self,
        new: &NewExecution,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Option<i64>> {
        self.batch(|b| b.claim_run(new, next_run_at))
    }

    /// Claim several slots in one transaction (a burst of due jobs); one result per input.
    pub fn claim_many(&self, news: &[NewExecution]) -> Result<Vec<Option<i64>>> {
        self.batch(|b| {
            b.fence(&Fence::for_claims(news.iter()))?;
            news.iter().map(|n| b.claim(n)).collect()
        })
    }

    /// Record the pid (== process group) of a spawned execution.
    pub fn set_pid(&self, id: i64, pid: u32) -> Result<()> {
        self.batch(|b| b.set_pid(id, pid))
    }

    /// Record how an execution ended.
    pub fn finish(&self, id: i64, finish: &Finish) -> Result<()> {
        self.batch(|b| b.finish(id, finish))
    }

    /// Several of the runner's writes in one transaction: all land or none does. No writers'
    /// lock: on PostgreSQL the transaction locks only the rows it touches, in the fleet's
    /// order (see [`Fence`]), so one stalled member delays no other beyond those rows.
    pub fn batch<T>(&self, f: impl FnOnce(&Batch<'_>) -> Result<T>) -> Result<T> {
        self.write_unlocked(|conn| {
            f(&Batch {
                conn,
                fenced: std::cell::Cell::new(false),
            })
        })
    }

    /// Set a job's last and next run instants.
    pub fn set_job_runs(
        &self,
        job_id: i64,
        last_run_at: Option<DateTime<Utc>>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.write_unlocked(|conn| {
            conn.prepare_cached(
                "UPDATE jobs SET last_run_at = coalesce(?2, last_run_at), next_run_at = ?3 WHERE id = ?1",
            )?
            .execute(params![job_id, last_run_at.map(fmt_time), next_run_at.map(fmt_time)])?;
            Ok(())
        })
    }

    /// Mark an execution left running by a dead runner as interrupted.
    pub fn interrupt(&self, id: i64, now: DateTime<Utc>, why: &str) -> Result<()> {
        self.write_unlocked(|conn| interrupt_in(conn, id, now, why))
    }

    /// Ask for a running execution to be cancelled by `by`: mark it (`cancelled_by`) and record
    /// `event` in the audit log, in one transaction, unless someone asked already or it ended.
    /// The caller signals its process group only after [`Cancelling::Requested`]; whoever then
    /// records its end (the runner, `run-now`, start-up recovery, a fleet's reaping) records it
    /// `cancelled`.
    pub fn request_cancel(
        &self,
        id: i64,
        by: crate::store::By<'_>,
        event: &crate::store::AuditEvent<'_>,
        now: DateTime<Utc>,
    ) -> Result<Cancelling> {
        let who = actor_label(by.actor);
        self.write(|conn| {
            let (status, already): (String, Option<String>) = conn
                .query_row(
                    "SELECT status, cancelled_by FROM executions WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or(StoreError::ExecutionNotFound(id))?;
            let status: Status = parse_enum(&status)?;
            match (status, already) {
                (Status::Running | Status::Cancelled, Some(by)) => Ok(Cancelling::Already {
                    by,
                    ended: status == Status::Cancelled,
                }),
                (Status::Running, None) => {
                    conn.prepare_cached(
                        "UPDATE executions SET cancelled_by = ?2 \
                         WHERE id = ?1 AND status = 'running' AND cancelled_by IS NULL",
                    )?
                    .execute(params![id, who])?;
                    crate::store::audit::insert(conn, by, event, now)?;
                    Ok(Cancelling::Requested { by: who.clone() })
                }
                (status, _) => Ok(Cancelling::NotRunning(status)),
            }
        })
    }
}

/// The runner's writes, inside one transaction (see [`Store::batch`]).
pub struct Batch<'c> {
    conn: &'c Connection,
    /// The transaction took its locks up front ([`Batch::fence`]); else each fleet claim takes
    /// its own.
    pub(super) fenced: std::cell::Cell<bool>,
}

impl Batch<'_> {
    pub(super) fn conn(&self) -> &Connection {
        self.conn
    }

    pub fn claim(&self, new: &NewExecution) -> Result<Option<i64>> {
        if new.fleet.is_some() && new.status == Status::Running {
            self.fence_one(new)?;
        }
        claim(self.conn, new)
    }

    /// A fleet claim in a transaction that took no locks up front takes its own.
    fn fence_one(&self, new: &NewExecution) -> Result<()> {
        if self.fenced.get() {
            return Ok(());
        }
        self.fence(&Fence::for_claims(std::iter::once(new)))
    }

    pub fn claim_run(
        &self,
        new: &NewExecution,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Option<i64>> {
        if self.conn.backend() == Backend::Postgres && new.fleet.is_some() {
            self.fence_one(new)?;
            return claim_fleet(self.conn, new, Some(next_run_at));
        }
        let id = self.claim(new)?;
        if id.is_some() {
            self.conn
                .prepare_cached(
                    "UPDATE jobs SET last_run_at = coalesce(?2, last_run_at), next_run_at = ?3 WHERE id = ?1",
                )?
                .execute(params![
                    new.job_id,
                    new.started_at.map(fmt_time),
                    next_run_at.map(fmt_time)
                ])?;
        }
        Ok(id)
    }

    pub fn set_pid(&self, id: i64, pid: u32) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE executions SET pid = ?2 WHERE id = ?1")?
            .execute(params![id, pid])?;
        Ok(())
    }

    pub fn finish(&self, id: i64, finish: &Finish) -> Result<()> {
        self.finish_with_pid(id, finish, None)
    }

    /// As [`Batch::finish`], also setting the pid (None keeps the recorded one).
    pub fn finish_with_pid(&self, id: i64, finish: &Finish, pid: Option<u32>) -> Result<()> {
        let n = self
            .conn
            .prepare_cached(
                &format!(
                    // A cancel asked for (`cancelled_by`) makes the end its signal caused a
                    // `cancelled` one, whoever records it; a success is what it is.
                    "UPDATE executions SET \
                     status = CASE WHEN cancelled_by IS NOT NULL AND ?2 IN {CANCELLABLE_ENDS} \
                         THEN 'cancelled' ELSE ?2 END, \
                     error_message = CASE WHEN cancelled_by IS NOT NULL AND ?2 IN {CANCELLABLE_ENDS} \
                         THEN 'cancelled by ' || cancelled_by ELSE ?6 END, \
                     finished_at = ?3, duration_ms = ?4, output = ?5, \
                     exit_code = ?7, memory_used_mb = ?8, cpu_used_percent = ?9, \
                     pid = coalesce(?10, pid), is_memory_upper_bound = ?11, \
                     is_cpu_quota_enforced = ?12 WHERE id = ?1 AND status = 'running'"
                ),
            )?
            .execute(params![
                id,
                finish.status.as_str(),
                fmt_time(finish.finished_at),
                finish.duration_ms,
                finish.output,
                finish.error_message,
                finish.exit_code,
                finish.memory_used_mb,
                finish.cpu_used_percent,
                pid,
                finish.memory_upper_bound,
                finish.cpu_quota_enforced,
            ])?;
        if n == 0 {
            // Ended already: another runner declared this one lost and marked it interrupted
            // (the first word stands), or the row is gone.
            let status: Option<String> = self
                .conn
                .query_row("SELECT status FROM executions WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            match status {
                Some(status) => tracing::warn!(
                    execution = id,
                    %status,
                    "the execution was already recorded as ended; keeping that record"
                ),
                None => return Err(StoreError::ExecutionNotFound(id)),
            }
        }
        Ok(())
    }

    pub fn set_next_runs(&self, updates: &[(i64, Option<DateTime<Utc>>)]) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached("UPDATE jobs SET next_run_at = ?2 WHERE id = ?1")?;
        for (id, next) in updates {
            stmt.execute(params![id, next.map(fmt_time)])?;
        }
        Ok(())
    }
}

/// Mark a running execution interrupted at `now`, inside the caller's transaction.
pub(in crate::store) fn interrupt_in(
    conn: &Connection,
    id: i64,
    now: DateTime<Utc>,
    why: &str,
) -> Result<()> {
    let since: Option<String> = conn
        .query_row(
            "SELECT coalesce(started_at, scheduled_for) FROM executions \
             WHERE id = ?1 AND status = 'running'",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(since) = since else {
        return Ok(());
    };
    let duration_ms = (now - parse_time(&since)?).num_milliseconds().max(0);
    // Asked to be cancelled (its process group may have been signalled before the runner
    // could record the end): a cancelled end, not an interrupted one.
    conn.prepare_cached(
        "UPDATE executions SET \
         status = CASE WHEN cancelled_by IS NULL THEN 'interrupted' ELSE 'cancelled' END, \
         error_message = CASE WHEN cancelled_by IS NULL THEN ?3 ELSE 'cancelled by ' || cancelled_by END, \
         finished_at = ?2, duration_ms = ?4 WHERE id = ?1 AND status = 'running'",
    )?
    .execute(params![id, fmt_time(now), why, duration_ms])?;
    Ok(())
}

/// A fleet runner's claim on PostgreSQL in one round trip: the overlap and cap checks, the
/// insert, and the job's last/next run, as one statement (a burst makes thousands of these).
///
/// With `run`, the job's last and next run are set as well (a runner's claim, see
/// [`Batch::claim_run`]); without, only the execution row is written.
fn claim_fleet(
    conn: &Connection,
    new: &NewExecution,
    run: Option<Option<DateTime<Utc>>>,
) -> Result<Option<i64>> {
    let rules = new.fleet.as_ref().expect("fleet rules");
    let (system, cap) = match &rules.cap {
        Some((system, cap)) => (system.as_str(), *cap as i64),
        None => ("", -1),
    };
    let (id, busy, host, load): (Option<i64>, Option<i64>, Option<String>, i64) = conn.query_row(
        &format!("WITH busy AS ( \
             SELECT e.id, r.host FROM executions e LEFT JOIN runners r ON r.id = e.runner_id \
             WHERE ?10 = 1 AND e.job_id = ?1 AND e.status = 'running' LIMIT 1), \
         load AS ( \
             SELECT count(*) AS n FROM ({RUNNING}) e JOIN jobs j ON j.id = e.job_id \
             WHERE ?11 >= 0 AND j.system = ?12), \
         ins AS ( \
             INSERT INTO executions (job_id, status, scheduled_for, started_at, triggered_by, \
                 attempt, error_message, runner_pid, runner_id, caused_by) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, CAST(?15 AS BIGINT) \
             WHERE NOT EXISTS (SELECT 1 FROM busy) AND (?11 < 0 OR (SELECT n FROM load) < ?11) \
                 AND (CAST(?15 AS BIGINT) IS NULL OR EXISTS (SELECT 1 FROM executions c \
                     WHERE c.id = CAST(?15 AS BIGINT) AND c.status IN ('success', 'failed', 'timeout'))) \
             ON CONFLICT DO NOTHING RETURNING id), \
         upd AS ( \
             UPDATE jobs SET last_run_at = coalesce(?4, last_run_at), next_run_at = ?13 \
             WHERE id = ?1 AND ?14 = 1 AND EXISTS (SELECT 1 FROM ins) RETURNING id) \
         SELECT (SELECT id FROM ins), (SELECT id FROM busy), (SELECT host FROM busy), \
                (SELECT n FROM load) + (SELECT count(*) FROM upd) * 0"),
        params![
            new.job_id,
            new.status.as_str(),
            fmt_time(new.scheduled_for),
            new.started_at.map(fmt_time),
            new.triggered_by.as_str(),
            new.attempt,
            new.error_message,
            new.runner_pid,
            new.runner_id,
            rules.exclusive as i64,
            cap,
            system,
            run.flatten().map(fmt_time),
            run.is_some() as i64,
            new.caused_by,
        ],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    if id.is_some() {
        return Ok(id);
    }
    if let Some(other) = busy {
        let mut skipped = new.clone();
        skipped.status = Status::Skipped;
        skipped.fleet = None;
        skipped.error_message = Some(still_going(other, host));
        claim(conn, &skipped)?;
        return Ok(None);
    }
    if cap >= 0 && load >= cap {
        return Err(StoreError::FleetFull {
            system: system.to_string(),
            cap: cap as u32,
        });
    }
    Ok(None) // another runner has the slot
}

/// Why a slot of a job that forbids overlap was skipped: execution `other` (on `host`) runs it.
pub(super) fn still_going(other: i64, host: Option<String>) -> String {
    format!(
        "the previous run (execution {other}{}) is still going (allow_concurrent = false)",
        host.map(|h| format!(" on {h}")).unwrap_or_default()
    )
}

pub(super) fn claim(conn: &Connection, new: &NewExecution) -> Result<Option<i64>> {
    // Fleet rules are the database's to enforce only when runners share it (PostgreSQL); an
    // SQLite database has one runner, which enforces them itself.
    if new.fleet.is_some() && new.status == Status::Running && conn.backend() == Backend::Postgres {
        return claim_fleet(conn, new, None);
    }
    let id = conn
        .prepare_cached(
            &format!(
                "INSERT INTO executions (job_id, status, scheduled_for, started_at, triggered_by, \
                 attempt, error_message, runner_pid, runner_id, finished_at, duration_ms, caused_by) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                     CASE WHEN ?2 = 'running' THEN NULL ELSE coalesce(?4, ?3) END, \
                     CASE WHEN ?2 = 'running' THEN NULL ELSE 0 END, CAST(?10 AS BIGINT) \
                 WHERE {CAUSE_ENDED} \
                 ON CONFLICT DO NOTHING RETURNING id"
            ),
        )?
        .query_row(params![
            new.job_id,
            new.status.as_str(),
            fmt_time(new.scheduled_for),
            new.started_at.map(fmt_time),
            new.triggered_by.as_str(),
            new.attempt,
            new.error_message,
            new.runner_pid,
            new.runner_id,
            new.caused_by,
            ],
            |r| r.get(0),
        )
        .optional()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::{cancelled_message, ExecutionFilter};
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_slot_is_claimed_once() {
        let (store, job) = setup();
        assert!(store.claim(&new(&job, t0(), 1)).unwrap().is_some());
        assert!(store.claim(&new(&job, t0(), 1)).unwrap().is_none());
        assert!(store.claim(&new(&job, t0(), 2)).unwrap().is_some());
        assert_eq!(store.running(Some(job.id)).unwrap().len(), 2);
    }

    #[test]
    fn finish_and_read_back() {
        let (store, job) = setup();
        let id = store.claim(&new(&job, t0(), 1)).unwrap().unwrap();
        store
            .finish(
                id,
                &Finish {
                    status: Status::Success,
                    finished_at: t0() + Duration::seconds(2),
                    duration_ms: 2000,
                    output: "hello\n".into(),
                    error_message: None,
                    exit_code: Some(0),
                    memory_used_mb: Some(1.5),
                    cpu_used_percent: Some(3.0),
                    memory_upper_bound: Some(true),
                    cpu_quota_enforced: Some(false),
                },
            )
            .unwrap();
        let e = store.execution(id).unwrap();
        assert_eq!(e.status, Status::Success);
        assert_eq!(e.memory_upper_bound, Some(true));
        assert_eq!(e.cpu_quota_enforced, Some(false));
        assert_eq!(e.output.as_deref(), Some("hello\n"));
        assert_eq!(e.job, "j");
        let hist = store
            .executions(&ExecutionFilter {
                status: Some(Status::Success),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(hist.len(), 1);
    }

    #[test]
    fn a_late_end_does_not_overwrite_an_interrupted_record() {
        let (store, job) = setup();
        let id = store.claim(&new(&job, t0(), 1)).unwrap().unwrap();
        store
            .interrupt(id, t0() + Duration::seconds(40), "runner lost")
            .unwrap();
        let end = Finish {
            status: Status::Success,
            finished_at: t0() + Duration::seconds(50),
            duration_ms: 50_000,
            output: "done\n".into(),
            error_message: None,
            exit_code: Some(0),
            memory_used_mb: None,
            cpu_used_percent: None,
            memory_upper_bound: None,
            cpu_quota_enforced: None,
        };
        store.finish(id, &end).unwrap();
        let e = store.execution(id).unwrap();
        assert_eq!(e.status, Status::Interrupted);
        assert_eq!(e.error_message.as_deref(), Some("runner lost"));
        assert_eq!(e.duration_ms, Some(40_000));
        assert!(matches!(
            store.finish(id + 100, &end),
            Err(StoreError::ExecutionNotFound(_))
        ));
    }

    fn by(actor: &crate::store::Actor) -> crate::store::By<'_> {
        crate::store::By {
            actor,
            action: "kill",
        }
    }

    fn kill_event() -> crate::store::AuditEvent<'static> {
        crate::store::AuditEvent {
            system: "default",
            target: Some("j"),
            refused: false,
            reason: Some("execution 1".into()),
            diff: serde_json::json!({}),
        }
    }

    fn alice() -> crate::store::Actor {
        crate::store::Actor {
            uid: 1000,
            user: "root".into(),
            sudo_user: Some("alice".into()),
        }
    }

    fn audit_rows(store: &Store) -> i64 {
        store
            .conn
            .query_row(
                "SELECT count(*) FROM audit WHERE action = 'kill'",
                (),
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn a_cancel_is_asked_once_audited_once_and_recorded_cancelled_by_whoever_ends_it() {
        let (store, job) = setup();
        let actor = alice();
        let id = store.claim(&new(&job, t0(), 1)).unwrap().unwrap();
        let first = store
            .request_cancel(id, by(&actor), &kill_event(), t0())
            .unwrap();
        let who = "root (sudo from alice)".to_string();
        assert_eq!(first, Cancelling::Requested { by: who.clone() });
        let again = store
            .request_cancel(id, by(&actor), &kill_event(), t0())
            .unwrap();
        assert_eq!(
            again,
            Cancelling::Already {
                by: who.clone(),
                ended: false
            }
        );
        assert_eq!(audit_rows(&store), 1, "one audit row for two requests");
        assert_eq!(
            store.cancelled_by(id).unwrap().as_deref(),
            Some(who.as_str())
        );

        // Whoever records the end saw a signal, not a cancel: the row says cancelled anyway.
        store.finish(id, &ended(Status::Failed)).unwrap();
        let e = store.execution(id).unwrap();
        assert_eq!(e.status, Status::Cancelled);
        assert_eq!(e.cancelled_by.as_deref(), Some(who.as_str()));
        assert_eq!(e.error_message, Some(cancelled_message(&who)));
        assert_eq!(e.exit_code, Some(143));
        assert_eq!(
            store
                .request_cancel(id, by(&actor), &kill_event(), t0())
                .unwrap(),
            Cancelling::Already {
                by: who.clone(),
                ended: true
            }
        );
        assert_eq!(audit_rows(&store), 1);
        // The Prometheus counters count it under its own status.
        let counted: i64 = store
            .conn
            .query_row(
                "SELECT count FROM job_run_counts WHERE job_id = ?1 AND status = 'cancelled'",
                [job.id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(counted, 1);
    }

    #[test]
    fn a_cancelled_run_that_succeeded_anyway_is_a_success_and_other_ends_refuse_a_cancel() {
        let (store, job) = setup();
        let actor = alice();
        let id = store.claim(&new(&job, t0(), 1)).unwrap().unwrap();
        store
            .request_cancel(id, by(&actor), &kill_event(), t0())
            .unwrap();
        store.finish(id, &ended(Status::Success)).unwrap();
        assert_eq!(store.execution(id).unwrap().status, Status::Success);
        let other = store.claim(&new(&job, t0(), 2)).unwrap().unwrap();
        store.finish(other, &ended(Status::Failed)).unwrap();
        assert_eq!(
            store
                .request_cancel(other, by(&actor), &kill_event(), t0())
                .unwrap(),
            Cancelling::NotRunning(Status::Failed)
        );
        assert!(store.execution(other).unwrap().cancelled_by.is_none());
        assert!(matches!(
            store.request_cancel(other + 100, by(&actor), &kill_event(), t0()),
            Err(StoreError::ExecutionNotFound(_))
        ));
        assert_eq!(audit_rows(&store), 1);
    }

    #[test]
    fn a_cancelled_run_left_running_by_a_dead_runner_is_recovered_as_cancelled() {
        let (store, job) = setup();
        let actor = alice();
        let id = store.claim(&new(&job, t0(), 1)).unwrap().unwrap();
        store
            .request_cancel(id, by(&actor), &kill_event(), t0())
            .unwrap();
        store
            .interrupt(id, t0() + Duration::seconds(9), "runner lost")
            .unwrap();
        let e = store.execution(id).unwrap();
        assert_eq!(e.status, Status::Cancelled);
        assert_eq!(e.duration_ms, Some(9000));
        assert_eq!(
            e.error_message.as_deref(),
            Some("cancelled by root (sudo from alice)")
        );
    }
}
