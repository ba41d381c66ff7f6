//! Executions: the types the runner and `history` speak (a claim, a filter, a cancel's outcome)
//! and the reads (one execution, history, the running ones, each job's last status). The writes
//! (claims, ends, cancels, interrupts) are in `claims`, retention in `retention`.

mod burst;
mod claims;
mod ends;
mod fence;
mod retention;

use super::sql::{OptionalExtension, Row, ToValue, Value};
use chrono::{DateTime, Utc};

pub(super) use claims::interrupt_in;
pub use claims::Batch;
pub use fence::{cap_key, Fence};

use super::{
    fmt_time, parse_enum, parse_opt_time, parse_time, Connection, Execution, OptionalRow, Result,
    Status, Store, StoreError, Trigger,
};

const COLUMNS: &str = "e.id, e.job_id, j.name, j.system, e.status, e.scheduled_for, e.started_at, \
     e.finished_at, e.duration_ms, e.output, e.error_message, e.exit_code, e.triggered_by, e.attempt, \
     e.memory_used_mb, e.cpu_used_percent, e.pid, e.runner_pid, e.cancelled_by, \
     e.is_memory_upper_bound, e.is_cpu_quota_enforced, e.caused_by";

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
    /// A chain's start: the execution whose end triggered it. The claim then also requires that
    /// execution to have ended with a status a chain fires on (success, failed, timeout), so a
    /// runner whose end was overruled (declared lost, recorded interrupted) fires nothing.
    pub caused_by: Option<i64>,
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
        memory_upper_bound: row.get(19)?,
        cpu_quota_enforced: row.get(20)?,
        caused_by: row.get(21)?,
    })
}

/// The error message of a cancelled execution (the SQL below builds the same text).
pub fn cancelled_message(by: &str) -> String {
    format!("cancelled by {by}")
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

    /// Who asked for the execution to be cancelled, if anyone (None too when it is gone).
    /// How many of job `job_id`'s schedule slots from `first` to `last` (both included) have a
    /// first attempt's row: run, skipped, or missed, by any runner. A fleet's runner back from a
    /// pause records as missed only the others.
    pub fn slots_with_rows(
        &self,
        job_id: i64,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
    ) -> Result<usize> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(DISTINCT scheduled_for) FROM executions WHERE job_id = ?1 \
                 AND attempt = 1 AND triggered_by = 'schedule' \
                 AND scheduled_for >= ?2 AND scheduled_for <= ?3",
            )?
            .query_row(
                super::sql::params![job_id, fmt_time(first), fmt_time(last)],
                |r| r.get(0),
            )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub fn cancelled_by(&self, id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT cancelled_by FROM executions WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .flatten())
    }
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

#[cfg(test)]
mod fixtures {
    use super::*;
    use crate::store::{Finish, Job};
    use chrono::{Duration, TimeZone};

    pub(super) fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
    }

    pub(super) fn setup() -> (Store, Job) {
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

    pub(super) fn new(job: &Job, at: DateTime<Utc>, attempt: u32) -> NewExecution {
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
            caused_by: None,
        }
    }

    pub(super) fn ended(status: Status) -> Finish {
        Finish {
            status,
            finished_at: t0() + Duration::seconds(3),
            duration_ms: 3000,
            output: String::new(),
            error_message: Some("killed by signal 15 (SIGTERM)".into()),
            exit_code: Some(143),
            memory_used_mb: None,
            cpu_used_percent: None,
            memory_upper_bound: None,
            cpu_quota_enforced: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::store::Job;

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
        // Later migrations add indexes of their own (7: executions_job_status).
        let mut after = objects(store.sqlite().unwrap());
        after.retain(|o| {
            !o.starts_with("index executions_job_status:")
                && !o.starts_with("index executions_chain_key:") // 9
                && !o.starts_with("index executions_caused_by:") // 11
        });
        // 11 replaces executions_started_at by an index that begins with the same column.
        let mut before = before;
        for o in &mut before {
            if o.starts_with("index executions_started_at:") {
                *o = "index executions_started_stats: CREATE INDEX executions_started_stats\n    \
                      ON executions (started_at, job_id, status, duration_ms, memory_used_mb, cpu_used_percent)"
                    .to_string();
            }
        }
        before.sort();
        assert_eq!(after, before);
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
}
