//! Jobs: create, read, update, delete.

use std::sync::OnceLock;

use super::record::{record, Enum, Json, Number, Plain, Record, Time};
use super::sql::{params, Connection, Row, ToValue, Value};
use chrono::{DateTime, Utc};

use super::audit::{self, By};
use super::{Job, OptionalRow, Result, Store, StoreError};

// The jobs table, described once: each column (named as `Job`'s field), how it is read and
// written, and which writes set it. The SELECT, INSERT and UPDATE below are generated from it.
record! {
    Job in "jobs" {
        id: Plain;
        system: Plain => insert update;
        name: Plain => insert update;
        description: Plain => insert update;
        schedule: Plain => insert update;
        timezone: Plain => insert update;
        command: Plain => insert update;
        params: Json => insert update;
        is_active: Plain => insert update;
        timeout: Number => insert update;
        retries: Number => insert update;
        retry_delay: Number => insert update;
        backoff: Enum => insert update;
        category: Plain => insert update;
        priority: Number => insert update;
        max_runtime: Number => insert update;
        allow_concurrent: Plain => insert update;
        catch_up: Enum => insert update;
        starting_deadline: Number => insert update;
        created_at: Time => insert;
        updated_at: Time => insert update;
        last_run_at: Time => insert;
        next_run_at: Time => insert update;
        alerts_enabled: Plain => insert update;
        alert_email: Plain => insert update;
        alert_slack: Plain => insert update;
        alert_webhook: Plain => insert update;
        escalate_after: Number => insert update;
        disable_after: Number => insert update;
        max_silence: Number => insert update;
        disabled_reason: Plain => insert update;
        // Kept by the runner (and by enabling: see `update_sql`), never written from the model.
        failure_streak: Number;
        last_success_at: Time;
        enabled_at: Time;
        is_critical: Plain => insert update;
        memory_limit: Number => insert update;
        cpu_limit: Number => insert update;
        cpu_quota: Number => insert update;
        nofile_limit: Number => insert update;
        nproc_limit: Number => insert update;
        run_user: Plain => insert update;
        run_group: Plain => insert update;
        runner_labels: Json => insert update;
        jitter: Number => insert update;
        after: Json => insert update;
    }
    stamps {}
}

/// Which jobs `list` shows.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// None: every system.
    pub system: Option<String>,
    pub category: Option<String>,
    pub active: Option<bool>,
}

fn from_row(row: &Row<'_>) -> super::sql::Result<Job> {
    Job::from_row(row)
}

fn columns() -> &'static str {
    &Job::sql().columns
}

impl Store {
    /// Insert a new job (its `id`, `created_at` and `updated_at` are set here), with its audit
    /// row. Refuses a duplicate name.
    pub fn insert_job(&self, job: &Job, now: DateTime<Utc>, by: By<'_>) -> Result<Job> {
        self.write(|conn| {
            let new = insert_job(conn, job, now)?;
            audit::job_change(conn, by, None, Some(&new), now)?;
            Ok(new)
        })
    }

    /// Replace every editable field of the job with this `id`, with its audit row.
    pub fn update_job(&self, job: &Job, now: DateTime<Utc>, by: By<'_>) -> Result<Job> {
        self.write(|conn| audited_update(conn, job, now, by))
    }

    /// Delete a job and (by cascade) its executions, with its audit row.
    pub fn delete_job(
        &self,
        system: &str,
        name: &str,
        now: DateTime<Utc>,
        by: By<'_>,
    ) -> Result<Job> {
        self.write(|conn| {
            let job = job_by_name(conn, system, name)?;
            conn.execute("DELETE FROM jobs WHERE id = ?1", [job.id])?;
            audit::job_change(conn, by, Some(&job), None, now)?;
            Ok(job)
        })
    }

    pub fn job(&self, system: &str, name: &str) -> Result<Job> {
        job_by_name(&self.conn, system, name)
    }

    pub fn job_by_id(&self, id: i64) -> Result<Option<Job>> {
        job_by_id(&self.conn, id)
    }

    pub fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut sql = format!("SELECT {} FROM jobs WHERE 1=1", columns());
        let mut args: Vec<Value> = Vec::new();
        if let Some(system) = &filter.system {
            args.push(system.clone().to_value());
            sql.push_str(&format!(" AND system = ?{}", args.len()));
        }
        if let Some(category) = &filter.category {
            args.push(category.clone().to_value());
            sql.push_str(&format!(" AND lower(category) = lower(?{})", args.len()));
        }
        if let Some(active) = filter.active {
            args.push(active.to_value());
            sql.push_str(&format!(" AND is_active = ?{}", args.len()));
        }
        sql.push_str(" ORDER BY system, name");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(args, from_row)?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// `cronmgr apply`: delete, update and insert jobs in one transaction, in that order (so a
    /// name freed by a deletion or a rename can be taken). All or nothing.
    /// Each job written gets its audit row.
    pub fn apply_jobs(
        &self,
        inserts: &[Job],
        updates: &[Job],
        deletes: &[i64],
        now: DateTime<Utc>,
        by: By<'_>,
    ) -> Result<()> {
        self.write(|conn| {
            let mut delete = conn.prepare_cached("DELETE FROM jobs WHERE id = ?1")?;
            for id in deletes {
                let old = job_by_id(conn, *id)?;
                delete.execute([id])?;
                if let Some(old) = old {
                    audit::job_change(conn, by, Some(&old), None, now)?;
                }
            }
            for job in updates {
                audited_update(conn, job, now, by)?;
            }
            for job in inserts {
                let new = insert_job(conn, job, now)?;
                audit::job_change(conn, by, None, Some(&new), now)?;
            }
            Ok(())
        })
    }

    /// Write many jobs' next run instants at once (after a time zone change, or by the runner).
    pub fn set_next_runs(&self, updates: &[(i64, Option<DateTime<Utc>>)]) -> Result<()> {
        self.batch(|b| {
            b.fence(&super::Fence {
                jobs: updates.iter().map(|(id, _)| *id).collect(),
                ..Default::default()
            })?;
            b.set_next_runs(updates)
        })
    }
}

pub(crate) fn job_by_id(conn: &Connection, id: i64) -> Result<Option<Job>> {
    conn.prepare_cached(&format!("SELECT {} FROM jobs WHERE id = ?1", columns()))?
        .query_row([id], from_row)
        .opt()
}

/// Update with its audit row: the diff against what was stored, read in the same transaction.
fn audited_update(conn: &Connection, job: &Job, now: DateTime<Utc>, by: By<'_>) -> Result<Job> {
    let before = job_by_id(conn, job.id)?;
    let after = update_job(conn, job, now)?;
    audit::job_change(conn, by, before.as_ref(), Some(&after), now)?;
    Ok(after)
}

pub(crate) fn job_by_name(conn: &Connection, system: &str, name: &str) -> Result<Job> {
    conn.prepare_cached(&format!(
        "SELECT {} FROM jobs WHERE system = ?1 AND name = ?2",
        columns()
    ))?
    .query_row([system, name], from_row)
    .opt()?
    .ok_or_else(|| StoreError::JobNotFound {
        system: system.to_string(),
        name: name.to_string(),
    })
}

fn insert_job(conn: &Connection, job: &Job, now: DateTime<Utc>) -> Result<Job> {
    let exists: bool = conn
        .prepare_cached("SELECT 1 FROM jobs WHERE system = ?1 AND name = ?2")?
        .exists([&job.system, &job.name])?;
    if exists {
        return Err(StoreError::Duplicate {
            system: job.system.clone(),
            name: job.name.clone(),
        });
    }
    // The row as written: created and updated now.
    let new = Job {
        created_at: now,
        updated_at: now,
        ..job.clone()
    };
    let id: i64 = conn
        .prepare_cached(&format!("{} RETURNING id", Job::sql().insert))?
        .query_row(new.insert_values(now), |r| r.get(0))?;
    Ok(Job { id, ..new })
}

fn update_job(conn: &Connection, job: &Job, now: DateTime<Utc>) -> Result<Job> {
    let clash: Option<i64> = conn
        .prepare_cached("SELECT id FROM jobs WHERE system = ?1 AND name = ?2 AND id != ?3")?
        .query_row(params![job.system, job.name, job.id], |r| r.get(0))
        .opt()?;
    if clash.is_some() {
        return Err(StoreError::Duplicate {
            system: job.system.clone(),
            name: job.name.clone(),
        });
    }
    let changed = conn.prepare_cached(update_sql())?.execute(
        Job {
            updated_at: now,
            ..job.clone()
        }
        .update_values(now)
        .into_iter()
        .chain([job.id.to_value()])
        .collect::<Vec<_>>(),
    )?;
    if changed == 0 {
        return Err(StoreError::JobNotFound {
            system: job.system.clone(),
            name: job.name.clone(),
        });
    }
    // Enabling resets the streak (in SQL, above): read back what was stored.
    job_by_name(conn, &job.system, &job.name)
}

/// The UPDATE of every editable field; enabling (`is_active` from 0 to 1) also resets the
/// failure streak and sets `enabled_at`. Its last placeholder is the job's id.
fn update_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let sql = Job::sql();
        // Invariant: both are `update` columns of the record above (a test reads this SQL).
        let param = |c| Job::update_param(c).expect("an updated column of the jobs record");
        let (active, now) = (param("is_active"), param("updated_at"));
        format!(
            "{}, \
             failure_streak = CASE WHEN is_active = 0 AND {active} = 1 THEN 0 ELSE failure_streak END, \
             enabled_at = CASE WHEN is_active = 0 AND {active} = 1 THEN {now} ELSE enabled_at END \
             WHERE id = ?{}",
            sql.update, sql.update_next
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
    }

    /// The runners reload when a job changes (PostgreSQL: a trigger bumps `changes` and
    /// notifies), and not for their own bookkeeping, which they write at each claim and end.
    /// The trigger lists the columns it watches (migration 013): a column added to `jobs`
    /// without being added there would go unnoticed by every runner, so this test reads the
    /// table's real columns and fails for any that is missed.
    #[test]
    fn every_column_but_the_runners_bookkeeping_tells_the_runners() {
        let store = Store::open_in_memory().unwrap();
        if store.backend() == crate::store::Backend::Sqlite {
            // Not a skip: the test runs in the PostgreSQL pass of the store's tests.
            eprintln!(
                "postgres only: SQLite runners watch PRAGMA data_version, which any commit moves"
            );
            return;
        }
        let mut job = Job::new("default", "watched", "0 3 * * *", "shell");
        job.params
            .insert("argv".into(), serde_json::json!(["/bin/true"]));
        let job = store
            .insert_job(&job, now(), crate::store::test_by())
            .unwrap();
        let columns: Vec<String> = store
            .conn
            .prepare_cached(
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'jobs' ORDER BY 1",
            )
            .unwrap()
            .query_map((), |r| r.get(0))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        assert!(columns.len() > 40, "read the table's columns: {columns:?}");
        const BOOKKEEPING: [&str; 4] = [
            "last_run_at",
            "next_run_at",
            "failure_streak",
            "last_success_at",
        ];
        let mut unwatched = Vec::new();
        let mut watched_bookkeeping = Vec::new();
        for column in &columns {
            let before = store.change_marker().unwrap();
            store
                .conn
                .execute(
                    &format!("UPDATE jobs SET {column} = {column} WHERE id = ?1"),
                    [job.id],
                )
                .unwrap();
            let moved = store.change_marker().unwrap() != before;
            match (BOOKKEEPING.contains(&column.as_str()), moved) {
                (false, false) => unwatched.push(column.clone()),
                (true, true) => watched_bookkeeping.push(column.clone()),
                _ => {}
            }
        }
        assert!(
            unwatched.is_empty(),
            "runners would not reload when these change: add them to the jobs_changed trigger's \
             column list (a new migration): {unwatched:?}"
        );
        assert!(
            watched_bookkeeping.is_empty(),
            "the runners' own writes would make every runner reload: {watched_bookkeeping:?}"
        );
    }

    #[test]
    fn insert_get_update_delete() {
        let store = Store::open_in_memory().unwrap();
        let mut job = Job::new("default", "backup", "0 3 * * *", "shell");
        job.params
            .insert("argv".into(), serde_json::json!(["/bin/true"]));
        job.next_run_at = Some(now());
        let job = store
            .insert_job(&job, now(), crate::store::test_by())
            .unwrap();
        assert!(job.id > 0);
        let got = store.job("default", "backup").unwrap();
        assert_eq!(got, job);

        let mut edited = got.clone();
        edited.priority = 1;
        edited.category = Some("BACKUP".into());
        store
            .update_job(&edited, now(), crate::store::test_by())
            .unwrap();
        assert_eq!(store.job("default", "backup").unwrap().priority, 1);

        let listed = store
            .jobs(&JobFilter {
                category: Some("backup".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(listed.len(), 1);

        store
            .delete_job(
                "default",
                "backup",
                chrono::Utc::now(),
                crate::store::test_by(),
            )
            .unwrap();
        assert!(matches!(
            store.job("default", "backup"),
            Err(StoreError::JobNotFound { .. })
        ));
    }

    #[test]
    fn apply_jobs_is_all_or_nothing() {
        let store = Store::open_in_memory().unwrap();
        let a = store
            .insert_job(
                &Job::new("s", "a", "@daily", "shell"),
                now(),
                crate::store::test_by(),
            )
            .unwrap();
        let b = store
            .insert_job(
                &Job::new("s", "b", "@daily", "shell"),
                now(),
                crate::store::test_by(),
            )
            .unwrap();
        let mut a2 = a.clone();
        a2.priority = 1;
        // The insert clashes with a: nothing happens, not even the delete of b.
        let clash = Job::new("s", "a", "@hourly", "shell");
        assert!(store
            .apply_jobs(
                &[clash],
                std::slice::from_ref(&a2),
                &[b.id],
                now(),
                crate::store::test_by()
            )
            .is_err());
        assert_eq!(
            store.jobs(&JobFilter::default()).unwrap(),
            vec![a.clone(), b.clone()]
        );
        // b's name is free once b is deleted in the same transaction.
        let new_b = Job::new("s", "b", "@hourly", "shell");
        store
            .apply_jobs(
                &[new_b],
                std::slice::from_ref(&a2),
                &[b.id],
                now(),
                crate::store::test_by(),
            )
            .unwrap();
        let jobs = store.jobs(&JobFilter::default()).unwrap();
        assert_eq!(jobs[0].priority, 1);
        assert_eq!(jobs[0].id, a.id);
        assert_eq!(jobs[1].schedule, "@hourly");
    }

    #[test]
    fn a_job_is_read_by_column_name_not_position() {
        let store = Store::open_in_memory().unwrap();
        let mut job = Job::new("s", "by-name", "@daily", "shell");
        job.description = Some("d".into());
        job.retries = 3;
        job.runner_labels = vec!["gpu".into()];
        let job = store
            .insert_job(&job, now(), crate::store::test_by())
            .unwrap();
        let mut names: Vec<&str> = columns().split(", ").collect();
        names.reverse();
        let reversed = names.join(", ");
        let got = store
            .conn
            .query_row(
                &format!("SELECT {reversed} FROM jobs WHERE id = ?1"),
                [job.id],
                from_row,
            )
            .unwrap();
        assert_eq!(got, job);
    }

    #[test]
    fn the_record_describes_every_column_of_the_table() {
        let store = Store::open_in_memory().unwrap();
        let mut table = crate::store::copy::columns(&store.conn, "jobs").unwrap();
        let mut described: Vec<String> = Job::COLUMNS.iter().map(|c| c.name.to_string()).collect();
        table.sort();
        described.sort();
        assert_eq!(described, table);
        assert!(Job::COLUMNS.iter().all(|c| c.read));
    }

    #[test]
    fn an_update_leaves_what_only_inserts_and_the_runner_write() {
        let store = Store::open_in_memory().unwrap();
        let mut job = Job::new("s", "kept", "@daily", "shell");
        job.last_run_at = Some(now());
        let job = store
            .insert_job(&job, now(), crate::store::test_by())
            .unwrap();
        assert_eq!(job.created_at, now());
        let later = now() + chrono::Duration::hours(1);
        let mut edited = job.clone();
        edited.created_at = later;
        edited.last_run_at = None;
        edited.failure_streak = 7;
        edited.timeout = Some(30);
        let back = store
            .update_job(&edited, later, crate::store::test_by())
            .unwrap();
        assert_eq!(back.created_at, now());
        assert_eq!(back.updated_at, later);
        assert_eq!(back.last_run_at, Some(now()));
        assert_eq!(back.failure_streak, 0);
        assert_eq!(back.timeout, Some(30));
    }

    #[test]
    fn a_number_out_of_its_field_reads_as_the_largest() {
        let store = Store::open_in_memory().unwrap();
        if store.sqlite_only("writes past the CHECK constraints, which only SQLite can skip") {
            return;
        }
        store
            .insert_job(
                &Job::new("s", "odd", "@daily", "shell"),
                now(),
                crate::store::test_by(),
            )
            .unwrap();
        store
            .conn
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON; \
                 UPDATE jobs SET retries = -1, priority = 999, timeout = 1.5, \
                 memory_limit = 'lots', max_silence = NULL",
            )
            .unwrap();
        let job = store.job("s", "odd").unwrap();
        assert_eq!(job.retries, u32::MAX);
        assert_eq!(job.priority, u8::MAX);
        assert_eq!(job.timeout, Some(u64::MAX));
        assert_eq!(job.memory_limit, Some(u64::MAX));
        assert_eq!(job.max_silence, None);
    }

    #[test]
    fn names_are_unique_per_system_only() {
        let store = Store::open_in_memory().unwrap();
        let job = Job::new("a", "same", "* * * * *", "shell");
        store
            .insert_job(&job, now(), crate::store::test_by())
            .unwrap();
        assert!(matches!(
            store.insert_job(&job, now(), crate::store::test_by()),
            Err(StoreError::Duplicate { .. })
        ));
        store
            .insert_job(
                &Job::new("b", "same", "* * * * *", "shell"),
                now(),
                crate::store::test_by(),
            )
            .unwrap();
    }

    #[test]
    fn check_constraints_back_up_validation() {
        let store = Store::open_in_memory().unwrap();
        let mut job = Job::new("a", "bad", "* * * * *", "shell");
        job.priority = 11;
        assert!(store
            .insert_job(&job, now(), crate::store::test_by())
            .is_err());
        assert!(store.jobs(&JobFilter::default()).unwrap().is_empty());
    }
}
