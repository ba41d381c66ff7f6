//! Retention of executions: the jobs over their `keep_executions` quota, deleting in bounded
//! batches (by age and by count; running executions never), and counting what would go.

use chrono::{DateTime, Utc};

use crate::store::sql::params;
use crate::store::{fmt_time, Backend, OptionalRow, Result, Store};

impl Store {
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
        Ok(rows.collect::<crate::store::sql::Result<_>>()?)
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
                Backend::Sqlite => "INDEXED BY executions_at",
                Backend::Postgres => "",
            };
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT id FROM executions {hint} \
                 WHERE coalesce(started_at, scheduled_for) < ?1 AND status != 'running' \
                   AND job_id IN (SELECT id FROM jobs WHERE system = ?2) LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![fmt_time(cutoff), system, batch as i64], |r| {
                r.get(0)
            })?;
            ids = rows.collect::<crate::store::sql::Result<_>>()?;
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
                rows.collect::<crate::store::sql::Result<_>>()?
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::ExecutionFilter;
    use chrono::Duration;

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
