//! Chains in the history: which execution's end triggered which. A chain's start is claimed like
//! any slot (see `claims.rs`), with `caused_by` naming the parent's execution; the claim stands
//! only when that execution ended with a status a chain fires on, and once per (job, cause,
//! attempt) (`executions_chain_key`, migration 009).

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone, Utc};

    use crate::store::{Finish, Job, NewExecution, Status, Store, Trigger};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 6, 0, 0).unwrap()
    }

    fn job(store: &Store, name: &str) -> Job {
        store
            .insert_job(
                &Job::new("default", name, "* * * * *", "shell"),
                t0(),
                crate::store::test_by(),
            )
            .unwrap()
    }

    fn start(job: &Job, trigger: Trigger, cause: Option<i64>, at: DateTime<Utc>) -> NewExecution {
        NewExecution {
            job_id: job.id,
            status: Status::Running,
            scheduled_for: at,
            started_at: Some(at),
            triggered_by: trigger,
            attempt: 1,
            error_message: None,
            runner_pid: None,
            runner_id: None,
            fleet: None,
            caused_by: cause,
        }
    }

    fn end(status: Status) -> Finish {
        Finish {
            status,
            finished_at: t0() + Duration::seconds(1),
            duration_ms: 1000,
            output: String::new(),
            error_message: None,
            exit_code: Some(0),
            memory_used_mb: None,
            cpu_used_percent: None,
            memory_upper_bound: None,
            cpu_quota_enforced: None,
        }
    }

    /// A parent that ends `status`, and whether its child's claim stands (twice: once at most).
    fn fires(store: &Store, status: Status) -> (Option<i64>, Option<i64>) {
        let (a, b) = (
            job(store, &format!("a-{status}")),
            job(store, &format!("b-{status}")),
        );
        let parent = store
            .claim(&start(&a, Trigger::Schedule, None, t0()))
            .unwrap()
            .unwrap();
        let child = start(
            &b,
            Trigger::Chain,
            Some(parent),
            t0() + Duration::seconds(1),
        );
        // Still running: no chain yet.
        assert_eq!(store.claim(&child).unwrap(), None);
        store.finish(parent, &end(status)).unwrap();
        let first = store.claim(&child).unwrap();
        // Another runner, a millisecond later: the same cause fires once.
        let again = NewExecution {
            scheduled_for: child.scheduled_for + Duration::milliseconds(1),
            ..child
        };
        (first, store.claim(&again).unwrap())
    }

    fn check_chain_claims(store: &Store) {
        let (first, again) = fires(store, Status::Success);
        let id = first.expect("a chain's claim after a success");
        assert_eq!(again, None);
        let row = store.execution(id).unwrap();
        assert_eq!(row.triggered_by, Trigger::Chain);
        assert!(row.caused_by.is_some());
        assert!(fires(store, Status::Failed).0.is_some());
        assert!(fires(store, Status::Timeout).0.is_some());
        // Recorded interrupted (a lost runner's end overruled) or cancelled: nothing fires.
        assert_eq!(fires(store, Status::Interrupted).0, None);
        assert_eq!(fires(store, Status::Cancelled).0, None);
    }

    /// SQLite in a file; the test engine (PostgreSQL with CRONMGR_TEST_POSTGRES) in memory.
    #[test]
    fn a_fresh_database_takes_chain_starts_once_per_cause() {
        let dir = tempfile::tempdir().unwrap();
        check_chain_claims(&Store::open(&dir.path().join("c.db")).unwrap());
        check_chain_claims(&Store::open_in_memory().unwrap());
    }

    /// A database made before chains (schema 8, with rows) is upgraded in place: the CHECK on
    /// `triggered_by` takes `chain`, the rows are kept, and the file passes SQLite's checks.
    #[test]
    fn an_upgraded_sqlite_database_takes_chain_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            for sql in &super::super::MIGRATIONS[..8] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "application_id", super::super::APPLICATION_ID)
                .unwrap();
            c.pragma_update(None, "user_version", 8).unwrap();
            c.execute_batch(
                "INSERT INTO jobs (system, name, schedule, command, created_at, updated_at) \
                 VALUES ('default', 'old', '* * * * *', 'shell', 'x', 'x'); \
                 INSERT INTO executions (job_id, status, scheduled_for, triggered_by) \
                 VALUES (1, 'success', '2026-12-01T00:00:00.000Z', 'schedule');",
            )
            .unwrap();
            let refused = c.execute(
                "INSERT INTO executions (job_id, status, scheduled_for, triggered_by) \
                 VALUES (1, 'success', '2026-12-01T00:01:00.000Z', 'chain')",
                (),
            );
            assert!(refused.is_err(), "schema 8 refuses the chain trigger");
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.executions(&Default::default()).unwrap().len(), 1);
        check_chain_claims(&store);
        drop(store);
        let c = rusqlite::Connection::open(&path).unwrap();
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let version: i32 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, super::super::SCHEMA_VERSION);
    }
}
