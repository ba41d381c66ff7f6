//! A loop turn's pids and ends in one statement each (PostgreSQL): in a burst a runner records
//! dozens of them per turn, and on a server every statement is a round trip the loop waits for.
//! SQLite writes them one by one (a statement there is a function call).

use super::claims::{Batch, CANCELLABLE_ENDS};
use crate::store::sql::OptionalExtension;
use crate::store::{fmt_time, Backend, Finish, Result, StoreError};

/// How many executions one statement carries: a bound on its size (its JSON parameter).
const CHUNK: usize = 500;

/// An execution's end as a loop turn records it: the row, its end, and its pid when that had
/// not landed yet.
pub type End<'a> = (i64, &'a Finish, Option<u32>);

impl Batch<'_> {
    /// Record several executions' ends. An end whose row is no longer `running` (another runner
    /// declared this one lost and marked it interrupted) is not written over it; an end whose
    /// row is gone (its job was removed) is dropped.
    pub fn finish_many(&self, ends: &[End<'_>]) -> Result<()> {
        if self.conn().backend() != Backend::Postgres {
            for (id, finish, pid) in ends {
                match self.finish_with_pid(*id, finish, *pid) {
                    Err(StoreError::ExecutionNotFound(_)) => {}
                    other => other?,
                }
            }
            return Ok(());
        }
        for chunk in ends.chunks(CHUNK) {
            self.finish_chunk(chunk)?;
        }
        Ok(())
    }

    fn finish_chunk(&self, ends: &[End<'_>]) -> Result<()> {
        // One JSON parameter: the same statement text whatever the turn's number of ends, so
        // the server plans it once per session.
        let rows: Vec<serde_json::Value> = ends
            .iter()
            .map(|(id, f, pid)| {
                serde_json::json!({
                    "id": id,
                    "status": f.status.as_str(),
                    "finished_at": fmt_time(f.finished_at),
                    "duration_ms": f.duration_ms,
                    "output": f.output,
                    "error_message": f.error_message,
                    "exit_code": f.exit_code,
                    "memory_used_mb": f.memory_used_mb,
                    "cpu_used_percent": f.cpu_used_percent,
                    "pid": pid,
                    "upper_bound": f.memory_upper_bound.map(i64::from),
                    "quota_enforced": f.cpu_quota_enforced.map(i64::from),
                })
            })
            .collect();
        // As `Batch::finish_with_pid`, for every row at once.
        let sql = format!(
            "UPDATE executions e SET \
             status = CASE WHEN e.cancelled_by IS NOT NULL AND v.status IN {CANCELLABLE_ENDS} \
                 THEN 'cancelled' ELSE v.status END, \
             error_message = CASE WHEN e.cancelled_by IS NOT NULL AND v.status IN {CANCELLABLE_ENDS} \
                 THEN 'cancelled by ' || e.cancelled_by ELSE v.error_message END, \
             finished_at = v.finished_at, duration_ms = v.duration_ms, output = v.output, \
             exit_code = v.exit_code, memory_used_mb = v.memory_used_mb, \
             cpu_used_percent = v.cpu_used_percent, pid = coalesce(v.pid, e.pid), \
             is_memory_upper_bound = v.upper_bound, is_cpu_quota_enforced = v.quota_enforced \
             FROM json_to_recordset(CAST(CAST(?1 AS TEXT) AS JSON)) AS v(id BIGINT, status TEXT, \
                 finished_at TEXT, duration_ms BIGINT, output TEXT, error_message TEXT, \
                 exit_code INTEGER, memory_used_mb DOUBLE PRECISION, \
                 cpu_used_percent DOUBLE PRECISION, pid BIGINT, upper_bound INTEGER, \
                 quota_enforced INTEGER) \
             WHERE e.id = v.id AND e.status = 'running' RETURNING e.id"
        );
        let landed: Vec<i64> = self
            .conn()
            .prepare_cached(&sql)?
            .query_map([serde_json::Value::from(rows).to_string()], |r| r.get(0))?
            .collect::<crate::store::sql::Result<_>>()?;
        if landed.len() == ends.len() {
            return Ok(());
        }
        let landed: std::collections::HashSet<i64> = landed.into_iter().collect();
        for (id, ..) in ends.iter().filter(|(id, ..)| !landed.contains(id)) {
            // Ended already (the first word stands), or gone with its job.
            let status: Option<String> = self
                .conn()
                .prepare_cached("SELECT status FROM executions WHERE id = ?1")?
                .query_row([*id], |r| r.get(0))
                .optional()?;
            if let Some(status) = status {
                tracing::warn!(
                    execution = id,
                    %status,
                    "the execution was already recorded as ended; keeping that record"
                );
            }
        }
        Ok(())
    }

    /// Record several spawned executions' pids (== process groups).
    pub fn set_pids(&self, pids: &[(i64, u32)]) -> Result<()> {
        if self.conn().backend() != Backend::Postgres || pids.len() == 1 {
            for (id, pid) in pids {
                self.set_pid(*id, *pid)?;
            }
            return Ok(());
        }
        // Two lists of integers as parameters: the same text for any number of pids, so the
        // server plans it once per session. (Not JSON, as the ends: the planner takes a JSON
        // list for 100 rows and would join by a sequential scan of `executions`; it takes an
        // unnested parameter for 10, and probes the primary key.)
        for chunk in pids.chunks(CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|(id, _)| id.to_string()).collect();
            let pids: Vec<String> = chunk.iter().map(|(_, pid)| pid.to_string()).collect();
            self.conn()
                .prepare_cached(
                    "UPDATE executions e SET pid = v.pid \
                     FROM unnest(CAST(string_to_array(CAST(?1 AS TEXT), ',') AS BIGINT[]), \
                         CAST(string_to_array(CAST(?2 AS TEXT), ',') AS BIGINT[])) AS v(id, pid) \
                     WHERE e.id = v.id",
                )?
                .execute([ids.join(","), pids.join(",")])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::store::{Actor, AuditEvent, By, Status};
    use chrono::Duration;

    #[test]
    fn a_turns_ends_land_at_once_and_keep_what_others_recorded_first() {
        let (store, job) = setup();
        let ids: Vec<i64> = (1..=4)
            .map(|a| store.claim(&new(&job, t0(), a)).unwrap().unwrap())
            .collect();
        // 2 was declared lost meanwhile; 3 was asked to be cancelled.
        store
            .interrupt(ids[1], t0() + Duration::seconds(1), "runner lost")
            .unwrap();
        let actor = Actor {
            uid: 0,
            user: "root".into(),
            sudo_user: None,
        };
        let event = AuditEvent {
            system: "default",
            target: Some("j"),
            refused: false,
            reason: None,
            diff: serde_json::json!({}),
        };
        let by = By {
            actor: &actor,
            action: "kill",
        };
        store.request_cancel(ids[2], by, &event, t0()).unwrap();
        let ok = crate::store::Finish {
            output: "done\n".into(),
            error_message: None,
            exit_code: Some(0),
            memory_used_mb: Some(1.5),
            memory_upper_bound: Some(false),
            ..ended(Status::Success)
        };
        let failed = ended(Status::Failed);
        store
            .batch(|b| {
                b.set_pids(&[(ids[0], 4242), (ids[3], 4343)])?;
                b.finish_many(&[
                    (ids[0], &ok, None),
                    (ids[1], &ok, Some(99)),
                    (ids[2], &failed, None),
                    (ids[3], &failed, Some(77)),
                    (ids[3] + 100, &ok, None), // gone with its job: dropped
                ])
            })
            .unwrap();
        let e = |i: usize| store.execution(ids[i]).unwrap();
        assert_eq!((e(0).status, e(0).pid), (Status::Success, Some(4242)));
        assert_eq!(e(0).output.as_deref(), Some("done\n"));
        assert_eq!(
            (e(0).exit_code, e(0).error_message.clone()),
            (Some(0), None)
        );
        assert_eq!(e(0).memory_used_mb, Some(1.5));
        assert_eq!(e(0).memory_upper_bound, Some(false));
        assert_eq!(e(1).status, Status::Interrupted, "the first word stands");
        assert_eq!(e(1).error_message.as_deref(), Some("runner lost"));
        assert_eq!(e(2).status, Status::Cancelled);
        assert_eq!(e(2).error_message.as_deref(), Some("cancelled by root"));
        assert_eq!((e(3).status, e(3).pid), (Status::Failed, Some(77)));
        assert_eq!(e(3).duration_ms, Some(failed.duration_ms));

        // What the ends' trigger keeps (per row on SQLite, per statement on PostgreSQL): each
        // end counted once by its status, and a success clears the job's streak and is its last
        // success (a turn lists its ends in the order they came).
        store.bump_failure_streak(job.id).unwrap();
        let more: Vec<i64> = (5..=6)
            .map(|a| store.claim(&new(&job, t0(), a)).unwrap().unwrap())
            .collect();
        let later = crate::store::Finish {
            finished_at: ok.finished_at + Duration::seconds(5),
            ..ok.clone()
        };
        store
            .batch(|b| b.finish_many(&[(more[0], &ok, None), (more[1], &later, None)]))
            .unwrap();
        let counts: Vec<(String, i64)> = store
            .conn
            .prepare_cached(
                "SELECT status, count FROM job_run_counts WHERE job_id = ?1 ORDER BY status",
            )
            .unwrap()
            .query_map([job.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let expected = [
            ("cancelled", 1),
            ("failed", 1),
            ("interrupted", 1),
            ("success", 3),
        ];
        assert_eq!(
            counts,
            expected.map(|(s, n)| (s.to_string(), n)).to_vec(),
            "each end counted once"
        );
        let job = store.job("default", &job.name).unwrap();
        assert_eq!(job.failure_streak, 0, "a success clears the streak");
        assert_eq!(job.last_success_at, Some(later.finished_at));
    }

    /// On PostgreSQL an end notifies `freed` (a runner waiting for a place under a cap tries
    /// again): once for a statement that ends several executions, and not for one that only
    /// records pids.
    #[test]
    fn ends_notify_freed_once_per_statement_and_pids_do_not() {
        use crate::store::listen::{Change, Notice};
        use std::time::Duration as Wait;
        let (store, job) = setup();
        if store.postgres_only("SQLite sends no notifications") {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let _listener = store.listen(move |n| tx.send(n).is_ok()).unwrap();
        assert_eq!(rx.recv_timeout(Wait::from_secs(10)), Ok(Notice::Listening));
        let ids: Vec<i64> = (1..=3)
            .map(|a| store.claim(&new(&job, t0(), a)).unwrap().unwrap())
            .collect();
        store
            .batch(|b| b.set_pids(&[(ids[0], 10), (ids[1], 11)]))
            .unwrap();
        let ok = ended(Status::Success);
        store
            .batch(|b| {
                b.finish_many(&[
                    (ids[0], &ok, None),
                    (ids[1], &ok, None),
                    (ids[2], &ok, None),
                ])
            })
            .unwrap();
        let mut got = Vec::new();
        while let Ok(n) = rx.recv_timeout(Wait::from_millis(700)) {
            got.push(n);
        }
        assert_eq!(got, [Notice::Change(Change::Freed)]);
    }
}
