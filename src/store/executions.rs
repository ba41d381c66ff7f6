//! Executions: claiming a slot, recording its end, reading history, retention.

use super::sql::{params, Connection, OptionalExtension, Row, ToValue, Value};
use chrono::{DateTime, Utc};

use super::{
    fmt_time, parse_enum, parse_opt_time, parse_time, Execution, Finish, OptionalRow, Result,
    Status, Store, StoreError, Trigger,
};

const COLUMNS: &str = "e.id, e.job_id, j.name, j.system, e.status, e.scheduled_for, e.started_at, \
     e.finished_at, e.duration_ms, e.output, e.error_message, e.exit_code, e.triggered_by, e.attempt, \
     e.memory_used_mb, e.cpu_used_percent, e.pid, e.runner_pid, e.cancelled_by";

/// The statuses an end caused by a cancel's signal is recorded with, before it is known to be one.
const CANCELLABLE_ENDS: &str = "('failed', 'timeout', 'interrupted')";

/// A row the runner inserts to claim a slot (or to record a slot it will not run).
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub job_id: i64,
    pub status: Status,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub triggered_by: Trigger,
    pub attempt: u32,
    pub error_message: Option<String>,
    pub runner_pid: Option<u32>,
    /// The runner (row of `runners`) that claims it.
    pub runner_id: Option<i64>,
    /// Rules the database enforces for a fleet of runners sharing it (PostgreSQL).
    pub fleet: Option<FleetRules>,
}

/// What a claim checks against every runner's executions, not just the claiming runner's own.
#[derive(Debug, Clone)]
pub struct FleetRules {
    /// The job allows no overlap: if any runner is running it, the slot is recorded `skipped`.
    pub exclusive: bool,
    /// At most this many executions of the job's system running across the fleet; when full
    /// the claim fails with [`StoreError::FleetFull`] and the slot waits.
    pub cap: Option<(String, u32)>,
}

/// Which executions `history` shows, newest first.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub system: Option<String>,
    pub job: Option<String>,
    pub status: Option<Status>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<usize>,
}

fn from_row(row: &Row<'_>) -> super::sql::Result<Execution> {
    Ok(Execution {
        id: row.get(0)?,
        job_id: row.get(1)?,
        job: row.get(2)?,
        system: row.get(3)?,
        status: parse_enum(&row.get::<_, String>(4)?)?,
        scheduled_for: parse_time(&row.get::<_, String>(5)?)?,
        started_at: parse_opt_time(row.get(6)?)?,
        finished_at: parse_opt_time(row.get(7)?)?,
        duration_ms: row.get(8)?,
        output: row.get(9)?,
        error_message: row.get(10)?,
        exit_code: row.get(11)?,
        triggered_by: parse_enum(&row.get::<_, String>(12)?)?,
        attempt: row.get(13)?,
        memory_used_mb: row.get(14)?,
        cpu_used_percent: row.get(15)?,
        pid: row.get(16)?,
        runner_pid: row.get(17)?,
        cancelled_by: row.get(18)?,
    })
}

/// The error message of a cancelled execution (the SQL below builds the same text).
pub fn cancelled_message(by: &str) -> String {
    format!("cancelled by {by}")
}

/// The actor as `cancelled_by` records it: the audit log's user, and who they were before sudo.
fn actor_label(actor: &super::Actor) -> String {
    match &actor.sudo_user {
        Some(s) => format!("{} (sudo from {s})", actor.user),
        None => actor.user.clone(),
    }
}

/// What a request to cancel an execution found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelling {
    /// Marked cancelled by this request (and audited): now signal its process group.
    Requested { by: String },
    /// Someone asked already: nothing was written. `ended`: its end is recorded (`cancelled`).
    Already { by: String, ended: bool },
    /// It ended otherwise (or never ran): nothing was written.
    NotRunning(Status),
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
        self.batch(|b| news.iter().map(|n| b.claim(n)).collect())
    }

    /// Record the pid (== process group) of a spawned execution.
    pub fn set_pid(&self, id: i64, pid: u32) -> Result<()> {
        self.batch(|b| b.set_pid(id, pid))
    }

    /// Record how an execution ended.
    pub fn finish(&self, id: i64, finish: &Finish) -> Result<()> {
        self.batch(|b| b.finish(id, finish))
    }

    /// Several of the runner's writes in one transaction: all land or none does.
    pub fn batch<T>(&self, f: impl FnOnce(&Batch<'_>) -> Result<T>) -> Result<T> {
        self.write(|conn| f(&Batch { conn }))
    }

    /// Set a job's last and next run instants.
    pub fn set_job_runs(
        &self,
        job_id: i64,
        last_run_at: Option<DateTime<Utc>>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.write(|conn| {
            conn.prepare_cached(
                "UPDATE jobs SET last_run_at = coalesce(?2, last_run_at), next_run_at = ?3 WHERE id = ?1",
            )?
            .execute(params![job_id, last_run_at.map(fmt_time), next_run_at.map(fmt_time)])?;
            Ok(())
        })
    }

    pub fn execution(&self, id: i64) -> Result<Execution> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM executions e JOIN jobs j ON j.id = e.job_id WHERE e.id = ?1"
            ))?
            .query_row([id], from_row)
            .opt()?
            .ok_or(StoreError::ExecutionNotFound(id))
    }

    /// Executions, newest first.
    pub fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>> {
        let mut sql =
            format!("SELECT {COLUMNS} FROM executions e JOIN jobs j ON j.id = e.job_id WHERE 1=1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(system) = &filter.system {
            args.push(system.clone().to_value());
            sql.push_str(&format!(" AND j.system = ?{}", args.len()));
        }
        if let Some(job) = &filter.job {
            args.push(job.clone().to_value());
            sql.push_str(&format!(" AND j.name = ?{}", args.len()));
        }
        if let Some(status) = filter.status {
            args.push(status.as_str().to_value());
            sql.push_str(&format!(" AND e.status = ?{}", args.len()));
        }
        if let Some(since) = filter.since {
            args.push(fmt_time(since).to_value());
            // Through the executions_at index: a range of recent rows, not the whole history.
            sql.push_str(&format!(
                " AND e.id IN (SELECT id FROM executions WHERE coalesce(started_at, scheduled_for) >= ?{})",
                args.len()
            ));
        }
        sql.push_str(" ORDER BY e.id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(args, from_row)?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// The status of each job's newest execution (bookkeeping rows included), by job id.
    pub fn last_statuses(
        &self,
        system: Option<&str>,
    ) -> Result<std::collections::HashMap<i64, Status>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.job_id, e.status FROM executions e \
             JOIN (SELECT job_id, max(id) AS id FROM executions GROUP BY job_id) last ON last.id = e.id \
             JOIN jobs j ON j.id = e.job_id WHERE CAST(?1 AS TEXT) IS NULL OR j.system = ?1",
        )?;
        let rows = stmt.query_map([system], |r| {
            Ok((r.get::<_, i64>(0)?, parse_enum(&r.get::<_, String>(1)?)?))
        })?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// Executions still marked running (optionally of one job).
    pub fn running(&self, job_id: Option<i64>) -> Result<Vec<Execution>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM executions e JOIN jobs j ON j.id = e.job_id \
             WHERE e.status = 'running' AND (CAST(?1 AS BIGINT) IS NULL OR e.job_id = ?1) ORDER BY e.id"
        ))?;
        let rows = stmt.query_map([job_id], from_row)?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// Mark an execution left running by a dead runner as interrupted.
    pub fn interrupt(&self, id: i64, now: DateTime<Utc>, why: &str) -> Result<()> {
        self.write(|conn| interrupt_in(conn, id, now, why))
    }

    /// Ask for a running execution to be cancelled by `by`: mark it (`cancelled_by`) and record
    /// `event` in the audit log, in one transaction, unless someone asked already or it ended.
    /// The caller signals its process group only after [`Cancelling::Requested`]; whoever then
    /// records its end (the runner, `run-now`, start-up recovery, a fleet's reaping) records it
    /// `cancelled`.
    pub fn request_cancel(
        &self,
        id: i64,
        by: super::By<'_>,
        event: &super::AuditEvent<'_>,
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
                    super::audit::insert(conn, by, event, now)?;
                    Ok(Cancelling::Requested { by: who.clone() })
                }
                (status, _) => Ok(Cancelling::NotRunning(status)),
            }
        })
    }

    /// Who asked for the execution to be cancelled, if anyone (None too when it is gone).
    pub fn cancelled_by(&self, id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT cancelled_by FROM executions WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// The jobs of a system holding more than `keep` executions: what keep-N retention works
    /// through, batch by batch. One pass over the job index; the runner computes it once per
    /// retention cycle, not per batch.
    pub fn over_quota(&self, system: &str, keep: u64) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.job_id FROM executions e JOIN jobs j ON j.id = e.job_id \
             WHERE j.system = ?1 GROUP BY e.job_id HAVING count(*) > ?2 ORDER BY e.job_id DESC",
        )?;
        let rows = stmt.query_map(params![system, keep.min(i64::MAX as u64) as i64], |r| {
            r.get(0)
        })?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// Delete at most `batch` executions that are older than `older_than` (by start) or beyond
    /// the newest `keep` of a job in `over_quota` (from [`Store::over_quota`]; jobs are taken off
    /// it as they are done). Running executions are never deleted. Every query reads an index
    /// range, so a batch costs about the same on a small or a huge history.
    pub fn prune_batch(
        &self,
        system: &str,
        keep: u64,
        older_than: Option<DateTime<Utc>>,
        batch: usize,
        over_quota: &mut Vec<i64>,
    ) -> Result<usize> {
        // The audit log's retention rides along, so the runner's hourly retention trims it.
        self.prune_audit(system, Utc::now(), batch)?;
        let mut ids: Vec<i64> = Vec::new();
        if let Some(cutoff) = older_than {
            // SQLite is told which index reads the range; PostgreSQL's planner finds it.
            let hint = match self.backend() {
                super::Backend::Sqlite => "INDEXED BY executions_at",
                super::Backend::Postgres => "",
            };
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT id FROM executions {hint} \
                 WHERE coalesce(started_at, scheduled_for) < ?1 AND status != 'running' \
                   AND job_id IN (SELECT id FROM jobs WHERE system = ?2) LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![fmt_time(cutoff), system, batch as i64], |r| {
                r.get(0)
            })?;
            ids = rows.collect::<super::sql::Result<_>>()?;
        }
        let keep = keep.min(i64::MAX as u64) as i64;
        while ids.len() < batch {
            let Some(&job) = over_quota.last() else {
                break;
            };
            // The newest execution beyond the `keep` newest: it and everything older go.
            let threshold: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT id FROM executions WHERE job_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                )?
                .query_row(params![job, keep], |r| r.get(0))
                .opt()?;
            let Some(threshold) = threshold else {
                over_quota.pop();
                continue;
            };
            let room = batch - ids.len();
            let more: Vec<i64> = {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT id FROM executions WHERE job_id = ?1 AND id <= ?2 AND status != 'running' \
                     ORDER BY id LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![job, threshold, room as i64], |r| r.get(0))?;
                rows.collect::<super::sql::Result<_>>()?
            };
            if more.len() < room {
                over_quota.pop();
            }
            if more.is_empty() {
                continue;
            }
            ids.extend(more);
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(0);
        }
        self.write(|conn| {
            let mut stmt = conn.prepare_cached("DELETE FROM executions WHERE id = ?1")?;
            for id in &ids {
                stmt.execute([id])?;
            }
            Ok(ids.len())
        })
    }

    /// How many executions retention would delete for the system now.
    pub fn prune_count(
        &self,
        system: &str,
        keep: u64,
        older_than: Option<DateTime<Utc>>,
    ) -> Result<usize> {
        let sql = format!(
            "SELECT count(*) FROM ({}) AS doomed",
            prune_select(usize::MAX >> 1)
        );
        Ok(self.conn.query_row(
            &sql,
            params![system, keep as i64, older_than.map(fmt_time)],
            |r| r.get::<_, i64>(0),
        )? as usize)
    }
}

/// Executions of a system beyond the newest `?2` of their job, or older than `?3`.
fn prune_select(batch: usize) -> String {
    format!(
        "SELECT id FROM ( \
           SELECT e.id, e.status, coalesce(e.started_at, e.scheduled_for) AS at, \
                  row_number() OVER (PARTITION BY e.job_id ORDER BY e.id DESC) AS rn \
           FROM executions e JOIN jobs j ON j.id = e.job_id WHERE j.system = ?1) AS ranked \
         WHERE status != 'running' AND (rn > ?2 OR (?3 IS NOT NULL AND at < ?3)) \
         ORDER BY id LIMIT {batch}"
    )
}

/// The runner's writes, inside one transaction (see [`Store::batch`]).
pub struct Batch<'c> {
    conn: &'c Connection,
}

impl Batch<'_> {
    pub fn claim(&self, new: &NewExecution) -> Result<Option<i64>> {
        claim(self.conn, new)
    }

    pub fn claim_run(
        &self,
        new: &NewExecution,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Option<i64>> {
        if self.conn.backend() == super::Backend::Postgres && new.fleet.is_some() {
            return claim_fleet(self.conn, new, Some(next_run_at));
        }
        let id = claim(self.conn, new)?;
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
                     pid = coalesce(?10, pid) WHERE id = ?1 AND status = 'running'"
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
pub(super) fn interrupt_in(
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

/// One execution, inside the caller's transaction.
pub(super) fn execution_in(conn: &Connection, id: i64) -> Result<Execution> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM executions e JOIN jobs j ON j.id = e.job_id WHERE e.id = ?1"
    ))?
    .query_row([id], from_row)
    .opt()?
    .ok_or(StoreError::ExecutionNotFound(id))
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
        "WITH busy AS ( \
             SELECT e.id, r.host FROM executions e LEFT JOIN runners r ON r.id = e.runner_id \
             WHERE ?10 = 1 AND e.job_id = ?1 AND e.status = 'running' LIMIT 1), \
         load AS ( \
             SELECT count(*) AS n FROM executions e JOIN jobs j ON j.id = e.job_id \
             WHERE ?11 >= 0 AND e.status = 'running' AND j.system = ?12), \
         ins AS ( \
             INSERT INTO executions (job_id, status, scheduled_for, started_at, triggered_by, \
                 attempt, error_message, runner_pid, runner_id) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 \
             WHERE NOT EXISTS (SELECT 1 FROM busy) AND (?11 < 0 OR (SELECT n FROM load) < ?11) \
             ON CONFLICT (job_id, scheduled_for, attempt) DO NOTHING RETURNING id), \
         upd AS ( \
             UPDATE jobs SET last_run_at = coalesce(?4, last_run_at), next_run_at = ?13 \
             WHERE id = ?1 AND ?14 = 1 AND EXISTS (SELECT 1 FROM ins) RETURNING id) \
         SELECT (SELECT id FROM ins), (SELECT id FROM busy), (SELECT host FROM busy), \
                (SELECT n FROM load) + (SELECT count(*) FROM upd) * 0",
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
        skipped.error_message = Some(format!(
            "the previous run (execution {other}{}) is still going (allow_concurrent = false)",
            host.map(|h| format!(" on {h}")).unwrap_or_default()
        ));
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

fn claim(conn: &Connection, new: &NewExecution) -> Result<Option<i64>> {
    // Fleet rules are the database's to enforce only when runners share it (PostgreSQL); an
    // SQLite database has one runner, which enforces them itself.
    if new.fleet.is_some()
        && new.status == Status::Running
        && conn.backend() == super::Backend::Postgres
    {
        return claim_fleet(conn, new, None);
    }
    let id = conn
        .prepare_cached(
            "INSERT INTO executions (job_id, status, scheduled_for, started_at, triggered_by, attempt, \
             error_message, runner_pid, runner_id, finished_at, duration_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                     CASE WHEN ?2 = 'running' THEN NULL ELSE coalesce(?4, ?3) END, \
                     CASE WHEN ?2 = 'running' THEN NULL ELSE 0 END) \
             ON CONFLICT (job_id, scheduled_for, attempt) DO NOTHING RETURNING id",
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
            ],
            |r| r.get(0),
        )
        .optional()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Job;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
    }

    fn setup() -> (Store, Job) {
        let store = Store::open_in_memory().unwrap();
        let job = store
            .insert_job(
                &Job::new("default", "j", "* * * * *", "shell"),
                t0(),
                crate::store::test_by(),
            )
            .unwrap();
        (store, job)
    }

    fn new(job: &Job, at: DateTime<Utc>, attempt: u32) -> NewExecution {
        NewExecution {
            job_id: job.id,
            status: Status::Running,
            scheduled_for: at,
            started_at: Some(at),
            triggered_by: Trigger::Schedule,
            attempt,
            error_message: None,
            runner_pid: None,
            runner_id: None,
            fleet: None,
        }
    }

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
                },
            )
            .unwrap();
        let e = store.execution(id).unwrap();
        assert_eq!(e.status, Status::Success);
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

    fn ended(status: Status) -> Finish {
        Finish {
            status,
            finished_at: t0() + Duration::seconds(3),
            duration_ms: 3000,
            output: String::new(),
            error_message: Some("killed by signal 15 (SIGTERM)".into()),
            exit_code: Some(143),
            memory_used_mb: None,
            cpu_used_percent: None,
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

    #[test]
    fn migration_6_keeps_every_row_index_and_trigger_of_a_version_5_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let objects = |c: &rusqlite::Connection| -> Vec<String> {
            let mut stmt = c
                .prepare(
                    "SELECT type || ' ' || name || ': ' || CASE type WHEN 'table' THEN '' ELSE sql END \
                     FROM sqlite_master \
                     WHERE tbl_name = 'executions' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
                )
                .unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<rusqlite::Result<_>>().unwrap()
        };
        let before = {
            let c = rusqlite::Connection::open(&path).unwrap();
            for m in &crate::store::MIGRATIONS[..5] {
                c.execute_batch(m).unwrap();
            }
            c.pragma_update(None, "application_id", crate::store::APPLICATION_ID)
                .unwrap();
            c.pragma_update(None, "user_version", 5).unwrap();
            c.execute_batch(
                "INSERT INTO jobs (id, system, name, schedule, command, created_at, updated_at) \
                 VALUES (7, 'default', 'j', '* * * * *', 'shell', 'x', 'x'); \
                 INSERT INTO executions (id, job_id, status, scheduled_for, started_at, triggered_by, \
                     attempt, pid, runner_pid, runner_id) \
                 VALUES (41, 7, 'success', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', \
                         'schedule', 1, 10, 11, 12), \
                        (42, 7, 'running', '2026-01-01T00:01:00.000Z', '2026-01-01T00:01:00.000Z', \
                         'schedule', 1, 20, 21, 22);",
            )
            .unwrap();
            objects(&c)
        };
        assert_eq!(
            before.len(),
            9,
            "6 indexes, 2 triggers, the table: {before:?}"
        );
        let store = Store::open(&path).unwrap();
        assert_eq!(objects(store.sqlite().unwrap()), before);
        let kept = store.execution(41).unwrap();
        assert_eq!(
            (kept.status, kept.pid, kept.runner_pid, kept.cancelled_by),
            (Status::Success, Some(10), Some(11), None)
        );
        // The triggers still count ends; the next id follows the kept ones.
        store.finish(42, &ended(Status::Cancelled)).unwrap();
        let counted: i64 = store
            .conn
            .query_row(
                "SELECT count FROM job_run_counts WHERE job_id = 7 AND status = 'cancelled'",
                (),
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(counted, 1);
        let job = Job {
            id: 7,
            ..Job::new("default", "j", "* * * * *", "shell")
        };
        assert_eq!(store.claim(&new(&job, t0(), 1)).unwrap(), Some(43));
    }

    #[test]
    fn prune_keeps_newest_and_running() {
        let (store, job) = setup();
        for i in 0..10 {
            let id = store
                .claim(&new(&job, t0() + Duration::minutes(i), 1))
                .unwrap()
                .unwrap();
            if i < 9 {
                store.interrupt(id, t0(), "test").unwrap();
            }
        }
        assert_eq!(store.prune_count("default", 3, None).unwrap(), 7);
        let mut quota = store.over_quota("default", 3).unwrap();
        assert_eq!(quota, vec![job.id]);
        assert_eq!(
            store
                .prune_batch("default", 3, None, 4, &mut quota)
                .unwrap(),
            4
        );
        assert_eq!(
            store
                .prune_batch("default", 3, None, 100, &mut quota)
                .unwrap(),
            3
        );
        assert!(quota.is_empty());
        assert_eq!(
            store
                .prune_batch("default", 3, None, 100, &mut quota)
                .unwrap(),
            0
        );
        assert_eq!(store.running(None).unwrap().len(), 1);
        let left = store.executions(&ExecutionFilter::default()).unwrap();
        assert_eq!(left.len(), 3);
        assert!(
            left.iter().all(|e| e.id >= 8),
            "the newest are kept: {left:?}"
        );
    }

    #[test]
    fn prune_by_age_reads_when_each_execution_started() {
        let (store, job) = setup();
        for i in 0..6 {
            let id = store
                .claim(&new(&job, t0() + Duration::days(i), 1))
                .unwrap()
                .unwrap();
            store
                .interrupt(id, t0() + Duration::days(i), "test")
                .unwrap();
        }
        let cutoff = t0() + Duration::days(4);
        assert_eq!(store.prune_count("default", 1000, Some(cutoff)).unwrap(), 4);
        let mut quota = store.over_quota("default", 1000).unwrap();
        assert!(quota.is_empty());
        assert_eq!(
            store
                .prune_batch("default", 1000, Some(cutoff), 100, &mut quota)
                .unwrap(),
            4
        );
        assert_eq!(
            store.executions(&ExecutionFilter::default()).unwrap().len(),
            2
        );
    }
}
