//! Reads the web dashboard needs that no command makes, each bounded by an index so a page stays
//! fast on a long history.

use super::{parse_enum, Result, Status, Store};

impl Store {
    /// The status of each job's newest execution, by job id: one index probe per job on SQLite
    /// (`executions_job_id`, in id order within a job), one range of the job's rows on
    /// PostgreSQL (the unique key's first column), where [`Store::last_statuses`] groups the
    /// whole history.
    pub fn newest_statuses(
        &self,
        system: Option<&str>,
    ) -> Result<std::collections::HashMap<i64, Status>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT j.id, (SELECT e.status FROM executions e WHERE e.job_id = j.id ORDER BY e.id DESC LIMIT 1) \
             FROM jobs j WHERE CAST(?1 AS TEXT) IS NULL OR j.system = ?1",
        )?;
        let rows = stmt.query_map([system], |r| {
            let status: Option<String> = r.get(1)?;
            Ok((
                r.get::<_, i64>(0)?,
                status.map(|s| parse_enum(&s)).transpose()?,
            ))
        })?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            if let (id, Some(status)) = row? {
                out.insert(id, status);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use crate::store::{Finish, Job, NewExecution, Status, Store, Trigger};

    #[test]
    fn newest_statuses_agree_with_last_statuses() {
        let store = Store::open_in_memory().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        let mut jobs = Vec::new();
        for (system, name) in [("a", "one"), ("a", "two"), ("b", "three"), ("b", "never")] {
            let job = Job::new(system, name, "* * * * *", "shell");
            jobs.push(store.insert_job(&job, t0, crate::store::test_by()).unwrap());
        }
        let ends = [
            (0, Status::Failed),
            (0, Status::Success),
            (1, Status::Success),
            (1, Status::Timeout),
            (2, Status::Success),
        ];
        for (k, (job, status)) in ends.iter().enumerate() {
            let at = t0 + Duration::minutes(k as i64);
            let id = store
                .claim(&NewExecution {
                    job_id: jobs[*job].id,
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
            let end = Finish {
                status: *status,
                finished_at: at,
                duration_ms: 1,
                output: String::new(),
                error_message: None,
                exit_code: None,
                memory_used_mb: None,
                cpu_used_percent: None,
                memory_upper_bound: None,
                cpu_quota_enforced: None,
            };
            store.finish(id, &end).unwrap();
        }
        for system in [None, Some("a"), Some("b")] {
            let fast = store.newest_statuses(system).unwrap();
            assert_eq!(fast, store.last_statuses(system).unwrap(), "{system:?}");
        }
        let all = store.newest_statuses(None).unwrap();
        assert_eq!(all[&jobs[0].id], Status::Success);
        assert_eq!(all[&jobs[1].id], Status::Timeout);
        assert!(!all.contains_key(&jobs[3].id));
    }
}
