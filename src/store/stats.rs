//! `stats`: per job, over a period, the runs by status, the success rate, the mean and the
//! nearest-rank p95 of durations, mean memory and CPU. It needs every execution of the period
//! (the p95 needs each duration), read from an index that holds the columns it needs: the
//! ranges of a few jobs, or the whole period in start order (see [`STATS_PERIOD`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sql::params;
use super::{fmt_time, parse_opt_time, Result, Status, Store};

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

/// One status's executions since ?4 of the jobs `stats` shows: read from the covering index
/// `executions_job_status`, one range per job, no table row (see migration 8). A status at a
/// time, so no text column crosses per row. For one job, or a few: the period of every job
/// ([`STATS_PERIOD`]) would be read to find theirs.
const STATS_ROWS: &str = "SELECT job_id, duration_ms, memory_used_mb, cpu_used_percent FROM executions \
     WHERE job_id IN (SELECT id FROM jobs WHERE system = ?1 AND (CAST(?2 AS TEXT) IS NULL OR name = ?2)) \
       AND status = ?3 AND started_at >= ?4";

/// Every execution started since ?1, from the covering index `executions_started_stats`
/// (migration 11): one contiguous range in start order, no seek per job and status (the
/// ranges of [`STATS_ROWS`] touched four times the pages), no table row. The rows of other
/// systems' jobs, and of statuses `stats` does not count, are skipped by the caller (a filter in
/// SQL costs more per row than the skip).
const STATS_PERIOD: &str = "SELECT job_id, status, duration_ms, memory_used_mb, cpu_used_percent \
     FROM executions WHERE started_at >= ?1";

/// Up to this many jobs, `stats` reads their ranges of `executions_job_status`; beyond, the
/// period of every job through `executions_started_stats`. Both give the same figures: a
/// range of one job and status costs a seek of a few pages, where the period costs its size.
const STATS_RANGES_UP_TO: usize = 32;

/// The statuses `stats` reads: the ends of runs, and cancels (counted apart).
const STATS_STATUSES: [Status; 5] = [
    Status::Success,
    Status::Failed,
    Status::Timeout,
    Status::Interrupted,
    Status::Cancelled,
];

/// `status`, if it is one of [`STATS_STATUSES`].
fn counted(status: Option<&[u8]>) -> Option<Status> {
    let status = status?;
    STATS_STATUSES
        .into_iter()
        .find(|s| s.as_str().as_bytes() == status)
}

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

impl Tally {
    /// One execution with status `status` (one of [`STATS_STATUSES`]).
    fn add(
        &mut self,
        status: Status,
        duration: Option<i64>,
        memory: Option<f64>,
        cpu: Option<f64>,
    ) {
        if status == Status::Cancelled {
            self.cancelled += 1;
            return;
        }
        self.runs += 1;
        match status {
            Status::Success => self.succeeded += 1,
            Status::Failed => self.failed += 1,
            Status::Timeout => self.timed_out += 1,
            _ => {}
        }
        self.durations.extend(duration);
        if let Some(m) = memory {
            self.memory = (self.memory.0 + m, self.memory.1 + 1);
        }
        if let Some(c) = cpu {
            self.cpu = (self.cpu.0 + c, self.cpu.1 + 1);
        }
    }
}

/// The tallies of a set of jobs, found by job id: a table indexed from the smallest id when
/// the ids are dense (they are rows of one table: usually), a hash map otherwise.
enum Tallies {
    Dense {
        first: i64,
        slots: Vec<Option<Tally>>,
    },
    Sparse(std::collections::HashMap<i64, Tally>),
}

impl Tallies {
    fn new(ids: impl Iterator<Item = i64> + Clone) -> Tallies {
        let (n, min, max) = ids
            .clone()
            .fold((0usize, i64::MAX, i64::MIN), |(n, lo, hi), id| {
                (n + 1, lo.min(id), hi.max(id))
            });
        if n > 0 && max.abs_diff(min) < 4 * n as u64 + 64 {
            let mut slots: Vec<Option<Tally>> = Vec::new();
            slots.resize_with(max.abs_diff(min) as usize + 1, || None);
            for id in ids {
                slots[(id - min) as usize] = Some(Tally::default());
            }
            Tallies::Dense { first: min, slots }
        } else {
            Tallies::Sparse(ids.map(|id| (id, Tally::default())).collect())
        }
    }

    fn get_mut(&mut self, id: i64) -> Option<&mut Tally> {
        match self {
            Tallies::Dense { first, slots } => {
                let at = usize::try_from(id.checked_sub(*first)?).ok()?;
                slots.get_mut(at)?.as_mut()
            }
            Tallies::Sparse(map) => map.get_mut(&id),
        }
    }

    fn take(&mut self, id: i64) -> Tally {
        self.get_mut(id).map(std::mem::take).unwrap_or_default()
    }
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
        let mut tallies = Tallies::new(jobs.iter().map(|j| j.0));
        if job.is_some() || jobs.len() <= STATS_RANGES_UP_TO {
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
                    if let Some(t) = tallies.get_mut(id) {
                        t.add(status, d, m, c);
                    }
                }
            }
        } else if !jobs.is_empty() {
            self.tally_period(since, &mut tallies)?;
        }
        let mean = |(sum, n): (f64, usize)| (n > 0).then(|| sum / n as f64);
        let mut out = Vec::with_capacity(jobs.len());
        for (id, name, streak, last_success) in jobs {
            let mut t = tallies.take(id);
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

    /// Tally every execution of the period ([`STATS_PERIOD`]) into the jobs of `tallies`. On
    /// SQLite the rows are read straight from rusqlite: at 100,000 rows the store's row layer
    /// (a type check and a conversion per column) was a third of the time.
    fn tally_period(&self, since: DateTime<Utc>, tallies: &mut Tallies) -> Result<()> {
        let since = fmt_time(since);
        if let Some(conn) = self.sqlite() {
            use rusqlite::types::ValueRef;
            let mut stmt = conn.prepare_cached(STATS_PERIOD)?;
            let mut rows = stmt.query([&since])?;
            while let Some(r) = rows.next()? {
                let ValueRef::Integer(id) = r.get_ref(0)? else {
                    continue;
                };
                let Some(t) = tallies.get_mut(id) else {
                    continue;
                };
                let Some(status) = counted(r.get_ref(1)?.as_bytes().ok()) else {
                    continue;
                };
                let real = |v: ValueRef<'_>| match v {
                    ValueRef::Real(f) => Some(f),
                    ValueRef::Integer(i) => Some(i as f64),
                    _ => None,
                };
                let duration = match r.get_ref(2)? {
                    ValueRef::Integer(i) => Some(i),
                    _ => None,
                };
                t.add(status, duration, real(r.get_ref(3)?), real(r.get_ref(4)?));
            }
            return Ok(());
        }
        let mut stmt = self.conn.prepare_cached(STATS_PERIOD)?;
        let rows = stmt.query_map(params![since], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<f64>>(3)?,
                r.get::<_, Option<f64>>(4)?,
            ))
        })?;
        for row in rows {
            let (id, status, d, m, c) = row?;
            if let (Some(t), Some(status)) = (tallies.get_mut(id), counted(Some(status.as_bytes())))
            {
                t.add(status, d, m, c);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
