//! The audit log: who changed or triggered what, when, and what it changed.
//!
//! Rows are written by the store's own write methods, in the transaction of the change they
//! record ([`By`] is an argument of every job and settings write), so a change without its row
//! cannot happen. Only retention (`audit_retention_days`) deletes rows.

use super::sql::{params, Connection, Row};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{fmt_time, job_diff, parse_time, Job, Result, Store};

/// Who acts: a Unix user (uid and name, and who they were before `sudo`), or the runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub uid: u32,
    pub user: String,
    pub sudo_user: Option<String>,
}

impl Actor {
    /// The runner acting on its own (auto-disable).
    pub fn runner() -> Actor {
        Actor {
            uid: crate::host::euid(),
            user: "cronmgr runner".into(),
            sudo_user: None,
        }
    }
}

/// The actor of unit tests' writes.
#[cfg(test)]
pub(crate) static TEST_ACTOR: Actor = Actor {
    uid: 0,
    user: String::new(),
    sudo_user: None,
};

/// An audit identity for unit tests' writes.
#[cfg(test)]
pub(crate) fn test_by() -> By<'static> {
    By {
        actor: &TEST_ACTOR,
        action: "test",
    }
}

/// What an audited write is: who, doing which command.
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    pub actor: &'a Actor,
    pub action: &'a str,
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub uid: u32,
    pub user: String,
    pub sudo_user: Option<String>,
    pub action: String,
    pub system: String,
    pub target: Option<String>,
    /// `ok` or `refused`.
    pub outcome: String,
    pub reason: Option<String>,
    /// `{"field": {"before": …, "after": …}}`: only the fields that changed; secrets redacted.
    pub diff: Value,
}

/// An event to record that is not a job or settings write (run-now, kill, prune, a refusal).
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub system: &'a str,
    pub target: Option<&'a str>,
    pub refused: bool,
    pub reason: Option<String>,
    pub diff: Value,
}

/// Which rows `cronmgr audit` shows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub system: Option<String>,
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<usize>,
}

pub(crate) fn insert(
    conn: &Connection,
    by: By<'_>,
    event: &Event<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, uid, \"user\", sudo_user, action, system, target, outcome, reason, diff) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        fmt_time(now),
        by.actor.uid,
        by.actor.user,
        by.actor.sudo_user,
        by.action,
        event.system,
        event.target,
        if event.refused { "refused" } else { "ok" },
        event.reason,
        event.diff.to_string(),
    ])?;
    Ok(())
}

/// The row for a job write.
pub(crate) fn job_change(
    conn: &Connection,
    by: By<'_>,
    before: Option<&Job>,
    after: Option<&Job>,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(any) = after.or(before) else {
        return Ok(());
    };
    insert(
        conn,
        by,
        &Event {
            system: &any.system,
            target: Some(&any.name),
            refused: false,
            reason: None,
            diff: job_diff(before, after),
        },
        now,
    )
}

const COLUMNS: &str =
    "id, at, uid, \"user\", sudo_user, action, system, target, outcome, reason, diff";

fn from_row(row: &Row<'_>) -> super::sql::Result<AuditEntry> {
    let diff: String = row.get(10)?;
    Ok(AuditEntry {
        id: row.get(0)?,
        at: parse_time(&row.get::<_, String>(1)?)?,
        uid: row.get(2)?,
        user: row.get(3)?,
        sudo_user: row.get(4)?,
        action: row.get(5)?,
        system: row.get(6)?,
        target: row.get(7)?,
        outcome: row.get(8)?,
        reason: row.get(9)?,
        diff: serde_json::from_str(&diff).unwrap_or(Value::Null),
    })
}

/// Delete up to `batch` rows of `system` older than its `audit_retention_days` (0: none).
pub(crate) fn trim(
    conn: &Connection,
    system: &str,
    now: DateTime<Utc>,
    batch: usize,
) -> Result<usize> {
    let days = super::settings::settings(conn, system)?.audit_retention_days;
    if days == 0 {
        return Ok(0);
    }
    let cutoff = now - chrono::Duration::days(days.min(1_000_000) as i64);
    Ok(conn
        .prepare_cached(
            "DELETE FROM audit WHERE id IN \
             (SELECT id FROM audit WHERE system = ?1 AND at < ?2 ORDER BY id LIMIT ?3)",
        )?
        .execute(params![system, fmt_time(cutoff), batch as i64])?)
}

impl Store {
    /// Record an event that changes no job or setting (run-now, kill, prune, a refusal).
    pub fn record_audit(&self, by: By<'_>, event: &Event<'_>, now: DateTime<Utc>) -> Result<()> {
        self.write(|conn| insert(conn, by, event, now))
    }

    /// The log, newest first.
    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit WHERE (CAST(?1 AS TEXT) IS NULL OR system = ?1) \
             AND (CAST(?2 AS TEXT) IS NULL OR target = ?2) AND (CAST(?3 AS TEXT) IS NULL OR at >= ?3) \
             ORDER BY id DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.system,
                filter.target,
                filter.since.map(fmt_time),
                filter.limit.map_or(i64::MAX, |n| n as i64),
            ],
            from_row,
        )?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// Retention of the audit log for one system, one batch at a time (`cronmgr prune`; the
    /// runner's retention gets it through [`Store::prune_batch`]). Returns the rows deleted.
    pub fn prune_audit(&self, system: &str, now: DateTime<Utc>, batch: usize) -> Result<usize> {
        self.write(|conn| trim(conn, system, now, batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
    }

    fn alice() -> Actor {
        Actor {
            uid: 1000,
            user: "alice".into(),
            sudo_user: None,
        }
    }

    #[test]
    fn every_job_write_has_its_row_with_a_diff() {
        let store = Store::open_in_memory().unwrap();
        let a = alice();
        let by = |action| By { actor: &a, action };
        let mut job = Job::new("s", "j", "@daily", "shell");
        job.params.insert(
            "env".into(),
            serde_json::json!({"TOKEN": {"secret": "s3cr3t"}}),
        );
        let job = store.insert_job(&job, now(), by("add")).unwrap();
        let mut edited = job.clone();
        edited.priority = 2;
        store.update_job(&edited, now(), by("edit")).unwrap();
        store.delete_job("s", "j", now(), by("rm")).unwrap();
        let rows = store.audit(&AuditFilter::default()).unwrap();
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["rm", "edit", "add"]);
        assert_eq!(
            rows[1].diff,
            serde_json::json!({"priority": {"before": 5, "after": 2}})
        );
        assert_eq!(rows[2].diff["schedule"]["after"], "@daily");
        assert!(rows[2].diff["schedule"]["before"].is_null());
        let all = serde_json::to_string(&rows).unwrap();
        assert!(!all.contains("s3cr3t"), "{all}");
    }

    #[test]
    fn a_failed_write_leaves_no_row() {
        let store = Store::open_in_memory().unwrap();
        let a = alice();
        let by = By {
            actor: &a,
            action: "add",
        };
        let job = Job::new("s", "j", "@daily", "shell");
        store.insert_job(&job, now(), by).unwrap();
        assert!(store.insert_job(&job, now(), by).is_err());
        assert_eq!(store.audit(&AuditFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn retention_trims_old_rows_only() {
        let store = Store::open_in_memory().unwrap();
        let a = alice();
        let by = By {
            actor: &a,
            action: "kill",
        };
        let event = Event {
            system: "s",
            target: Some("1"),
            refused: false,
            reason: None,
            diff: Value::Object(serde_json::Map::new()),
        };
        store
            .record_audit(by, &event, now() - chrono::Duration::days(400))
            .unwrap();
        store.record_audit(by, &event, now()).unwrap();
        assert_eq!(store.prune_audit("s", now(), 100).unwrap(), 1);
        assert_eq!(store.audit(&AuditFilter::default()).unwrap().len(), 1);
        let mut s = store.settings("s").unwrap();
        s.audit_retention_days = 0;
        store.put_settings(&s, &[], now(), by).unwrap();
        store
            .record_audit(by, &event, now() - chrono::Duration::days(4000))
            .unwrap();
        assert_eq!(store.prune_audit("s", now(), 100).unwrap(), 0);
    }
}
