//! Jobs: create, read, update, delete.

use super::sql::{params, Connection, Row, ToValue, Value};
use chrono::{DateTime, Utc};

use super::audit::{self, By};
use super::{
    fmt_time, parse_enum, parse_opt_time, parse_time, Job, OptionalRow, Result, Store, StoreError,
};

const COLUMNS: &str =
    "id, system, name, description, schedule, timezone, command, params, is_active, \
     timeout, retries, retry_delay, backoff, category, priority, max_runtime, allow_concurrent, \
     catch_up, starting_deadline, created_at, updated_at, last_run_at, next_run_at, \
     alerts_enabled, alert_email, escalate_after, disable_after, max_silence, disabled_reason, \
     failure_streak, last_success_at, enabled_at, is_critical, memory_limit, cpu_limit, \
     nofile_limit, nproc_limit, run_user, run_group, runner_labels";

/// Which jobs `list` shows.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// None: every system.
    pub system: Option<String>,
    pub category: Option<String>,
    pub active: Option<bool>,
}

fn from_row(row: &Row<'_>) -> super::sql::Result<Job> {
    let params: String = row.get(7)?;
    let params = serde_json::from_str(&params).map_err(|e| super::sql::Error::conversion(7, e))?;
    Ok(Job {
        id: row.get(0)?,
        system: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        schedule: row.get(4)?,
        timezone: row.get(5)?,
        command: row.get(6)?,
        params,
        is_active: row.get(8)?,
        timeout: opt_number(row, 9)?,
        retries: number(row, 10)?,
        retry_delay: number(row, 11)?,
        backoff: parse_enum(&row.get::<_, String>(12)?)?,
        category: row.get(13)?,
        priority: number(row, 14)?,
        max_runtime: opt_number(row, 15)?,
        allow_concurrent: row.get(16)?,
        catch_up: parse_enum(&row.get::<_, String>(17)?)?,
        starting_deadline: opt_number(row, 18)?,
        created_at: parse_time(&row.get::<_, String>(19)?)?,
        updated_at: parse_time(&row.get::<_, String>(20)?)?,
        last_run_at: parse_opt_time(row.get(21)?)?,
        next_run_at: parse_opt_time(row.get(22)?)?,
        alerts_enabled: row.get(23)?,
        alert_email: row.get(24)?,
        escalate_after: opt_number(row, 25)?,
        disable_after: opt_number(row, 26)?,
        max_silence: opt_number(row, 27)?,
        disabled_reason: row.get(28)?,
        failure_streak: number(row, 29)?,
        last_success_at: parse_opt_time(row.get(30)?)?,
        enabled_at: parse_opt_time(row.get(31)?)?,
        is_critical: row.get(32)?,
        memory_limit: opt_number(row, 33)?,
        cpu_limit: opt_number(row, 34)?,
        nofile_limit: opt_number(row, 35)?,
        nproc_limit: opt_number(row, 36)?,
        run_user: row.get(37)?,
        run_group: row.get(38)?,
        runner_labels: serde_json::from_str(&row.get::<_, String>(39)?)
            .map_err(|e| super::sql::Error::conversion(39, e))?,
    })
}

/// A number column of a job. A value its field cannot hold (negative, too large, not an integer:
/// only written behind cronmgr's back, past the CHECK constraints) reads as the field's largest,
/// so the row still loads (`list`, `edit`, `rm` keep working on it) and the range check every
/// job passes (`bounds::check_job`) refuses it: the runner skips that job with the reason
/// instead of failing to load them all.
fn number<T: TryFrom<i64> + Bounded>(row: &Row<'_>, i: usize) -> super::sql::Result<T> {
    Ok(opt_number(row, i)?.unwrap_or(T::MAX))
}

/// The same for a column that may be NULL.
fn opt_number<T: TryFrom<i64> + Bounded>(row: &Row<'_>, i: usize) -> super::sql::Result<Option<T>> {
    Ok(match row.get::<_, Value>(i)? {
        Value::Null => None,
        Value::Int(n) => Some(T::try_from(n).unwrap_or(T::MAX)),
        _ => Some(T::MAX),
    })
}

trait Bounded {
    const MAX: Self;
}
macro_rules! bounded {
    ($($t:ty),*) => {$(impl Bounded for $t { const MAX: Self = <$t>::MAX; })*};
}
bounded!(u8, u32, u64);

fn labels_text(job: &Job) -> String {
    serde_json::to_string(&job.runner_labels).expect("strings serialize")
}

fn params_text(job: &Job) -> String {
    serde_json::Value::Object(job.params.clone()).to_string()
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
        let mut sql = format!("SELECT {COLUMNS} FROM jobs WHERE 1=1");
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
        self.batch(|b| b.set_next_runs(updates))
    }
}

pub(crate) fn job_by_id(conn: &Connection, id: i64) -> Result<Option<Job>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?
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
        "SELECT {COLUMNS} FROM jobs WHERE system = ?1 AND name = ?2"
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
    let id: i64 = conn.prepare_cached(
        "INSERT INTO jobs (system, name, description, schedule, timezone, command, params, is_active, \
         timeout, retries, retry_delay, backoff, category, priority, max_runtime, allow_concurrent, \
         catch_up, starting_deadline, created_at, updated_at, last_run_at, next_run_at, \
         alerts_enabled, alert_email, escalate_after, disable_after, max_silence, disabled_reason, \
         is_critical, memory_limit, cpu_limit, nofile_limit, nproc_limit, run_user, run_group, runner_labels) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?19, ?20, ?21, \
                 ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35) RETURNING id",
    )?
    .query_row(params![
        job.system,
        job.name,
        job.description,
        job.schedule,
        job.timezone,
        job.command,
        params_text(job),
        job.is_active,
        job.timeout,
        job.retries,
        job.retry_delay,
        job.backoff.as_str(),
        job.category,
        job.priority,
        job.max_runtime,
        job.allow_concurrent,
        job.catch_up.as_str(),
        job.starting_deadline,
        fmt_time(now),
        job.last_run_at.map(fmt_time),
        job.next_run_at.map(fmt_time),
        job.alerts_enabled,
        job.alert_email,
        job.escalate_after,
        job.disable_after,
        job.max_silence,
        job.disabled_reason,
        job.is_critical,
        job.memory_limit,
        job.cpu_limit,
        job.nofile_limit,
        job.nproc_limit,
        job.run_user,
        job.run_group,
        labels_text(job),
    ], |r| r.get(0))?;
    Ok(Job {
        id,
        created_at: now,
        updated_at: now,
        ..job.clone()
    })
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
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET system = ?2, name = ?3, description = ?4, schedule = ?5, timezone = ?6, \
             command = ?7, params = ?8, is_active = ?9, timeout = ?10, retries = ?11, retry_delay = ?12, \
             backoff = ?13, category = ?14, priority = ?15, max_runtime = ?16, allow_concurrent = ?17, \
             catch_up = ?18, starting_deadline = ?19, updated_at = ?20, next_run_at = ?21, \
             alerts_enabled = ?22, alert_email = ?23, escalate_after = ?24, disable_after = ?25, \
             max_silence = ?26, disabled_reason = ?27, is_critical = ?28, memory_limit = ?29, \
             cpu_limit = ?30, nofile_limit = ?31, nproc_limit = ?32, run_user = ?33, run_group = ?34, \
             runner_labels = ?35, \
             failure_streak = CASE WHEN is_active = 0 AND ?9 = 1 THEN 0 ELSE failure_streak END, \
             enabled_at = CASE WHEN is_active = 0 AND ?9 = 1 THEN ?20 ELSE enabled_at END \
             WHERE id = ?1",
        )?
        .execute(params![
            job.id,
            job.system,
            job.name,
            job.description,
            job.schedule,
            job.timezone,
            job.command,
            params_text(job),
            job.is_active,
            job.timeout,
            job.retries,
            job.retry_delay,
            job.backoff.as_str(),
            job.category,
            job.priority,
            job.max_runtime,
            job.allow_concurrent,
            job.catch_up.as_str(),
            job.starting_deadline,
            fmt_time(now),
            job.next_run_at.map(fmt_time),
            job.alerts_enabled,
            job.alert_email,
            job.escalate_after,
            job.disable_after,
            job.max_silence,
            job.disabled_reason,
            job.is_critical,
            job.memory_limit,
            job.cpu_limit,
            job.nofile_limit,
            job.nproc_limit,
            job.run_user,
            job.run_group,
            labels_text(job),
        ])?;
    if changed == 0 {
        return Err(StoreError::JobNotFound {
            system: job.system.clone(),
            name: job.name.clone(),
        });
    }
    // Enabling resets the streak (in SQL, above): read back what was stored.
    job_by_name(conn, &job.system, &job.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
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
