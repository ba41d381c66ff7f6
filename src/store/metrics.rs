//! Read-only summaries for `status`, `stats` and `metrics`: every query is bounded by an index
//! (the last day through `started_at`, one job through `(job_id, started_at)`, counters from
//! `job_run_counts`), so they stay fast on a history of millions of executions.

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

/// One job over a period.
#[derive(Debug, Clone, Serialize)]
pub struct JobStats {
    pub job: String,
    pub system: String,
    pub runs: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// Stopped by a person (`cronmgr kill`): not a run, not a failure, counted apart.
    pub cancelled: u64,
    pub success_rate: Option<f64>,
    pub mean_duration_ms: Option<f64>,
    pub p95_duration_ms: Option<i64>,
    pub mean_memory_mb: Option<f64>,
    pub mean_cpu_percent: Option<f64>,
    pub failure_streak: u32,
    pub last_success_at: Option<DateTime<Utc>>,
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

/// One status's executions since ?4 of the jobs `stats` shows: read from the covering index
/// `executions_job_status`, one range per job, no table row (see migration 8). A status at a
/// time, so no text column crosses per row.
const STATS_ROWS: &str = "SELECT job_id, duration_ms, memory_used_mb, cpu_used_percent FROM executions \
     WHERE job_id IN (SELECT id FROM jobs WHERE system = ?1 AND (CAST(?2 AS TEXT) IS NULL OR name = ?2)) \
       AND status = ?3 AND started_at >= ?4";

/// The statuses `stats` reads: the ends of runs, and cancels (counted apart).
const STATS_STATUSES: [Status; 5] = [
    Status::Success,
    Status::Failed,
    Status::Timeout,
    Status::Interrupted,
    Status::Cancelled,
];

/// One job's executions of the period, as `stats` sums them up.
#[derive(Default)]
struct Tally {
    runs: u64,
    succeeded: u64,
    failed: u64,
    timed_out: u64,
    cancelled: u64,
    durations: Vec<i64>,
    memory: (f64, usize),
    cpu: (f64, usize),
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

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

    /// Per-job statistics of the executions started since `since`.
    pub fn job_stats(
        &self,
        system: &str,
        job: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<JobStats>> {
        let jobs: Vec<(i64, String, u32, Option<String>)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, name, failure_streak, last_success_at FROM jobs \
                 WHERE system = ?1 AND (CAST(?2 AS TEXT) IS NULL OR name = ?2) ORDER BY name",
            )?;
            let rows = stmt.query_map(params![system, job], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect::<super::sql::Result<_>>()?
        };
        let mut tallies: std::collections::HashMap<i64, Tally> =
            jobs.iter().map(|j| (j.0, Tally::default())).collect();
        let mut stmt = self.conn.prepare_cached(STATS_ROWS)?;
        for status in STATS_STATUSES {
            let rows = stmt.query_map(
                params![system, job, status.as_str(), fmt_time(since)],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<f64>>(2)?,
                        r.get::<_, Option<f64>>(3)?,
                    ))
                },
            )?;
            for row in rows {
                let (id, d, m, c) = row?;
                let Some(t) = tallies.get_mut(&id) else {
                    continue;
                };
                if status == Status::Cancelled {
                    t.cancelled += 1;
                    continue;
                }
                t.runs += 1;
                match status {
                    Status::Success => t.succeeded += 1,
                    Status::Failed => t.failed += 1,
                    Status::Timeout => t.timed_out += 1,
                    _ => {}
                }
                t.durations.extend(d);
                if let Some(m) = m {
                    t.memory = (t.memory.0 + m, t.memory.1 + 1);
                }
                if let Some(c) = c {
                    t.cpu = (t.cpu.0 + c, t.cpu.1 + 1);
                }
            }
        }
        let mean = |(sum, n): (f64, usize)| (n > 0).then(|| sum / n as f64);
        let mut out = Vec::with_capacity(jobs.len());
        for (id, name, streak, last_success) in jobs {
            let mut t = tallies.remove(&id).unwrap_or_default();
            t.durations.sort_unstable();
            let total: f64 = t.durations.iter().map(|d| *d as f64).sum();
            out.push(JobStats {
                job: name,
                system: system.to_string(),
                runs: t.runs,
                succeeded: t.succeeded,
                failed: t.failed,
                timed_out: t.timed_out,
                cancelled: t.cancelled,
                success_rate: (t.runs > 0).then(|| t.succeeded as f64 / t.runs as f64),
                mean_duration_ms: mean((total, t.durations.len())),
                p95_duration_ms: percentile(&t.durations, 95.0),
                mean_memory_mb: mean(t.memory),
                mean_cpu_percent: mean(t.cpu),
                failure_streak: streak,
                last_success_at: parse_opt_time(last_success)?,
            });
        }
        Ok(out)
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
    fn the_last_day_is_read_through_the_started_at_index() {
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
            plan.contains("executions_started_at (started_at>?)"),
            "{plan}"
        );
    }

    #[test]
    fn stats_read_each_status_through_the_covering_index() {
        let store = Store::open_in_memory().unwrap();
        if store.sqlite_only("reads SQLite's query plan") {
            return;
        }
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {STATS_ROWS}"))
            .unwrap()
            .query_map(
                params![
                    "default",
                    Option::<String>::None,
                    "success",
                    "2026-01-01T00:00:00.000Z"
                ],
                |r| r.get(3),
            )
            .unwrap()
            .collect::<crate::store::sql::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains(
                "USING COVERING INDEX executions_job_status (job_id=? AND status=? AND started_at>?)"
            ),
            "{plan}"
        );
    }

    #[test]
    fn stats_count_each_status_and_take_means_and_the_nearest_rank_p95_of_the_period() {
        use crate::store::{Finish, Job, NewExecution, Trigger};
        use chrono::{Duration, TimeZone};
        let store = Store::open_in_memory().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        let by = crate::store::test_by();
        let a = store
            .insert_job(&Job::new("default", "a", "* * * * *", "shell"), t0, by)
            .unwrap();
        store
            .insert_job(&Job::new("default", "b", "* * * * *", "shell"), t0, by)
            .unwrap();
        store
            .insert_job(&Job::new("other", "a", "* * * * *", "shell"), t0, by)
            .unwrap();
        // Job a: 20 runs from t0 on, one a minute, the k-th taking k*100 ms; one before the period.
        let ends: Vec<(i64, Status)> = (0..20)
            .map(|k| {
                let status = match k % 10 {
                    3 => Status::Failed,
                    5 => Status::Timeout,
                    7 => Status::Interrupted,
                    9 => Status::Cancelled,
                    _ => Status::Success,
                };
                (k, status)
            })
            .chain([(-5, Status::Failed)])
            .collect();
        for (k, status) in ends {
            let at = t0 + Duration::minutes(k);
            let id = store
                .claim(&NewExecution {
                    job_id: a.id,
                    status: Status::Running,
                    scheduled_for: at,
                    started_at: Some(at),
                    triggered_by: Trigger::Schedule,
                    attempt: 1,
                    error_message: None,
                    runner_pid: None,
                    runner_id: None,
                    fleet: None,
                    caused_by: None,
                })
                .unwrap()
                .unwrap();
            store
                .finish(
                    id,
                    &Finish {
                        status,
                        finished_at: at + Duration::seconds(1),
                        duration_ms: (k + 1) * 100,
                        output: String::new(),
                        error_message: None,
                        exit_code: None,
                        memory_used_mb: (k % 2 == 0).then_some(2.0 + k as f64),
                        cpu_used_percent: Some(10.0),
                        memory_upper_bound: None,
                        cpu_quota_enforced: None,
                    },
                )
                .unwrap();
        }
        let stats = store.job_stats("default", None, t0).unwrap();
        assert_eq!(
            stats.iter().map(|s| s.job.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let s = &stats[0];
        // k % 10: 3 failed, 5 timeout, 7 interrupted, 9 cancelled, the rest success.
        assert_eq!(
            (s.runs, s.succeeded, s.failed, s.timed_out, s.cancelled),
            (18, 12, 2, 2, 2)
        );
        assert_eq!(s.success_rate, Some(12.0 / 18.0));
        // Durations of the 18 runs (cancelled ones left out): (k + 1) * 100 for k not 9 or 19.
        let mut d: Vec<i64> = (0..20)
            .filter(|k| k % 10 != 9)
            .map(|k| (k + 1) * 100)
            .collect();
        d.sort_unstable();
        let mean = d.iter().sum::<i64>() as f64 / d.len() as f64;
        assert_eq!(s.mean_duration_ms, Some(mean));
        assert_eq!(s.p95_duration_ms, percentile(&d, 95.0));
        assert_eq!(s.p95_duration_ms, Some(1900));
        // Memory only on even k, cancelled ones left out (none is even).
        let mem: Vec<f64> = (0..20)
            .filter(|k| k % 2 == 0)
            .map(|k| 2.0 + k as f64)
            .collect();
        assert_eq!(
            s.mean_memory_mb,
            Some(mem.iter().sum::<f64>() / mem.len() as f64)
        );
        assert_eq!(s.mean_cpu_percent, Some(10.0));
        let empty = &stats[1];
        assert_eq!(
            (
                empty.runs,
                empty.success_rate,
                empty.p95_duration_ms,
                empty.mean_memory_mb
            ),
            (0, None, None, None)
        );
        let one = store
            .job_stats("default", Some("a"), t0 + Duration::minutes(15))
            .unwrap();
        assert_eq!((one.len(), one[0].runs, one[0].cancelled), (1, 4, 1));
    }

    #[test]
    fn nearest_rank_percentile() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[1, 2], 95.0), Some(2));
        assert_eq!(percentile(&[], 95.0), None);
    }
}
