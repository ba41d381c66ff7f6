//! Read-only summaries for `status` and `metrics` (`stats` has its own module): every query is
//! bounded by an index (the last day through `started_at`, one job through `(job_id,
//! started_at)`, counters from `job_run_counts`), so they stay fast on a history of millions of
//! executions.

use std::collections::BTreeMap;

use super::sql::{params, OptionalExtension};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{fmt_time, parse_enum, parse_opt_time, parse_time, Result, Status, Store};

/// Totals for the dashboard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusTotals {
    pub jobs: u64,
    pub active: u64,
    pub running: u64,
    /// Executions started since `since`, by status.
    pub recent_by_status: BTreeMap<String, u64>,
    /// Failed or timed out since `since`.
    pub failed_recent: u64,
    /// Mean duration of executions that ran since `since`.
    pub mean_duration_ms: Option<f64>,
    /// successes / (successes + failures + timeouts) since `since`.
    pub success_rate: Option<f64>,
}

/// An execution without its output: for lists that must stay light.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionBrief {
    pub id: i64,
    pub job: String,
    pub system: String,
    pub status: Status,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i32>,
    /// Who cancelled it (`cronmgr kill`), if anyone.
    pub cancelled_by: Option<String>,
}

/// A job's counters for Prometheus.
#[derive(Debug, Clone, Serialize)]
pub struct JobCounts {
    pub job: String,
    pub system: String,
    pub is_active: bool,
    pub failure_streak: u32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<i64>,
    /// Finished executions since the job was created, by status (not reduced by retention).
    pub runs: BTreeMap<String, u64>,
}

/// Executions since ?2 by status. `+e.status` keeps the planner off the status index (a scan of
/// the whole history): the scan is bounded by `executions(started_at)` instead.
const RECENT_BY_STATUS: &str =
    "SELECT e.status, count(*), CAST(sum(e.duration_ms) AS BIGINT) FROM executions e \
     JOIN jobs j ON j.id = e.job_id \
     WHERE e.started_at >= ?2 AND (CAST(?1 AS TEXT) IS NULL OR j.system = ?1) GROUP BY +e.status";

impl Store {
    pub fn status_totals(
        &self,
        system: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<StatusTotals> {
        let mut t = StatusTotals::default();
        (t.jobs, t.active) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(is_active), 0) FROM jobs WHERE CAST(?1 AS TEXT) IS NULL OR system = ?1",
            [system],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        t.running = self.conn.query_row(
            "SELECT count(*) FROM executions e JOIN jobs j ON j.id = e.job_id \
             WHERE e.status = 'running' AND (CAST(?1 AS TEXT) IS NULL OR j.system = ?1)",
            [system],
            |r| r.get(0),
        )?;
        // `+e.status` is SQLite's way to keep an index out; PostgreSQL has no unary + on text.
        let sql = match self.backend() {
            super::Backend::Sqlite => RECENT_BY_STATUS.to_string(),
            super::Backend::Postgres => {
                RECENT_BY_STATUS.replace("GROUP BY +e.status", "GROUP BY e.status")
            }
        };
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![system, fmt_time(since)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        let (mut ran, mut ran_ms, mut ok, mut bad) = (0u64, 0i64, 0u64, 0u64);
        for row in rows {
            let (status, n, ms) = row?;
            if matches!(
                status.as_str(),
                "success" | "failed" | "timeout" | "interrupted"
            ) {
                ran += n;
                ran_ms += ms.unwrap_or(0);
            }
            match status.as_str() {
                "success" => ok += n,
                "failed" | "timeout" => bad += n,
                _ => {}
            }
            t.recent_by_status.insert(status, n);
        }
        t.failed_recent = bad;
        t.mean_duration_ms = (ran > 0).then(|| ran_ms as f64 / ran as f64);
        t.success_rate = (ok + bad > 0).then(|| ok as f64 / (ok + bad) as f64);
        Ok(t)
    }

    /// The newest executions, without their output.
    pub fn recent_executions(
        &self,
        system: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionBrief>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, j.name, j.system, e.status, e.scheduled_for, e.started_at, e.duration_ms, e.exit_code, \
                    e.cancelled_by \
             FROM executions e JOIN jobs j ON j.id = e.job_id WHERE CAST(?1 AS TEXT) IS NULL OR j.system = ?1 \
             ORDER BY e.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![system, limit as i64], |r| {
            Ok(ExecutionBrief {
                id: r.get(0)?,
                job: r.get(1)?,
                system: r.get(2)?,
                status: parse_enum(&r.get::<_, String>(3)?)?,
                scheduled_for: parse_time(&r.get::<_, String>(4)?)?,
                started_at: parse_opt_time(r.get(5)?)?,
                duration_ms: r.get(6)?,
                exit_code: r.get(7)?,
                cancelled_by: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// The next runs of active jobs: (system, job, instant), soonest first.
    pub fn upcoming(
        &self,
        system: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT system, name, next_run_at FROM jobs WHERE is_active = 1 AND next_run_at IS NOT NULL \
             AND (CAST(?1 AS TEXT) IS NULL OR system = ?1) ORDER BY next_run_at LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![system, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, parse_time(&r.get::<_, String>(2)?)?))
        })?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// Every job's counters (all systems).
    pub fn job_counts(&self) -> Result<Vec<JobCounts>> {
        let mut jobs: Vec<(i64, JobCounts)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, system, name, is_active, failure_streak, last_success_at FROM jobs ORDER BY system, name",
            )?;
            let rows = stmt.query_map((), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    JobCounts {
                        system: r.get(1)?,
                        job: r.get(2)?,
                        is_active: r.get(3)?,
                        failure_streak: r.get(4)?,
                        last_success_at: parse_opt_time(r.get(5)?)?,
                        last_duration_ms: None,
                        runs: BTreeMap::new(),
                    },
                ))
            })?;
            rows.collect::<super::sql::Result<_>>()?
        };
        let mut counts = self
            .conn
            .prepare_cached("SELECT status, count FROM job_run_counts WHERE job_id = ?1")?;
        let mut last = self.conn.prepare_cached(
            "SELECT duration_ms FROM executions WHERE job_id = ?1 \
             AND status IN ('success', 'failed', 'timeout') ORDER BY id DESC LIMIT 1",
        )?;
        for (id, c) in &mut jobs {
            let rows = counts.query_map([*id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
            for row in rows {
                let (status, n) = row?;
                c.runs.insert(status, n);
            }
            if let Some(d) = last.query_row([*id], |r| r.get(0)).optional()? {
                c.last_duration_ms = d;
            }
        }
        Ok(jobs.into_iter().map(|(_, c)| c).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_day_is_read_through_the_start_ordered_covering_index() {
        let store = Store::open_in_memory().unwrap();
        if store.sqlite_only("reads SQLite's query plan") {
            return;
        }
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {RECENT_BY_STATUS}"))
            .unwrap()
            .query_map(params!["default", "2026-01-01T00:00:00.000Z"], |r| r.get(3))
            .unwrap()
            .collect::<crate::store::sql::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("executions_started_stats (started_at>?)"),
            "{plan}"
        );
    }
}
