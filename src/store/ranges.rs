//! History by time range (`history --since … --until …`): the executions a filter selects that
//! began before an instant.
//!
//! The rows are read one by one through [`Store::execution`] so that executions.rs stays the one
//! place that maps a row to an [`Execution`]; fold `until` into [`ExecutionFilter`] there when it
//! next changes, and this file goes.

use chrono::{DateTime, Utc};

use super::sql::{ToValue, Value};
use super::{fmt_time, Execution, ExecutionFilter, Result, Store};

impl Store {
    /// The executions `filter` selects that began (`started_at`, else `scheduled_for`: as
    /// `since` counts) before `until`, which is excluded; newest first.
    pub fn executions_until(
        &self,
        filter: &ExecutionFilter,
        until: DateTime<Utc>,
    ) -> Result<Vec<Execution>> {
        let mut sql =
            String::from("SELECT e.id FROM executions e JOIN jobs j ON j.id = e.job_id WHERE 1=1");
        let mut args: Vec<Value> = Vec::new();
        let mut and = |clause: &str, value: Value| {
            args.push(value);
            sql.push_str(&clause.replace("?N", &format!("?{}", args.len())));
        };
        if let Some(system) = &filter.system {
            and(" AND j.system = ?N", system.clone().to_value());
        }
        if let Some(job) = &filter.job {
            and(" AND j.name = ?N", job.clone().to_value());
        }
        if let Some(status) = filter.status {
            and(" AND e.status = ?N", status.as_str().to_value());
        }
        // Through the executions_at index, as `Store::executions` reads `since`.
        and(
            " AND e.id IN (SELECT id FROM executions WHERE coalesce(started_at, scheduled_for) < ?N",
            fmt_time(until).to_value(),
        );
        if let Some(since) = filter.since {
            and(
                " AND coalesce(started_at, scheduled_for) >= ?N",
                fmt_time(since).to_value(),
            );
        }
        sql.push(')');
        sql.push_str(" ORDER BY e.id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let ids: Vec<i64> = {
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map(args, |r| r.get(0))?;
            rows.collect::<super::sql::Result<_>>()?
        };
        ids.into_iter().map(|id| self.execution(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Job, NewExecution, Status, Trigger};
    use chrono::TimeZone;

    #[test]
    fn until_excludes_its_instant_and_keeps_the_other_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let job = store
            .insert_job(
                &Job::new("default", "j", "@daily", "shell"),
                chrono::Utc::now(),
                crate::store::test_by(),
            )
            .unwrap();
        let t = |h| Utc.with_ymd_and_hms(2026, 5, 1, h, 0, 0).unwrap();
        for h in [1, 2, 3] {
            store
                .claim(&NewExecution {
                    job_id: job.id,
                    status: Status::Skipped,
                    scheduled_for: t(h),
                    started_at: None,
                    triggered_by: Trigger::Schedule,
                    attempt: 1,
                    error_message: None,
                    runner_pid: None,
                    runner_id: None,
                    fleet: None,
                    caused_by: None,
                })
                .unwrap();
        }
        let at = |f: &ExecutionFilter, until| -> Vec<DateTime<Utc>> {
            store
                .executions_until(f, until)
                .unwrap()
                .iter()
                .map(|e| e.scheduled_for)
                .collect()
        };
        let all = ExecutionFilter::default();
        assert_eq!(at(&all, t(3)), [t(2), t(1)]);
        let window = ExecutionFilter {
            since: Some(t(2)),
            ..Default::default()
        };
        assert_eq!(at(&window, t(3)), [t(2)]);
        let other = ExecutionFilter {
            job: Some("nope".into()),
            ..Default::default()
        };
        assert!(at(&other, t(4)).is_empty());
        let one = ExecutionFilter {
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(at(&one, t(4)), [t(3)]);
    }
}
