//! Per-system settings: read (with defaults when never set) and write. The keys, their parsing
//! and redaction are the model's (`crate::model::Settings`).

use super::sql::{params, Connection, Row, Value};
use crate::model::bounds::{
    MAX_ALERTS_PER_HOUR, MAX_CONCURRENT, MAX_DAYS, MAX_DURATION, MAX_FAILURES, MAX_KEEP,
    MAX_MEMORY, MAX_NOFILE, MAX_NPROC,
};
use chrono::{DateTime, Utc};

use super::audit::{self, By};
use super::{fmt_time, OptionalRow, Result, Settings, Store};

const COLUMNS: &str = "system, is_enabled, max_concurrent_jobs, default_timeout, keep_executions, \
     cleanup_days, alert_on_failure, alert_email, slack_webhook, timezone, shutdown_grace, \
     alert_on_timeout, webhook_url, webhook_secret, escalate_after, escalate_to, disable_after, \
     max_silence, cpu_threshold, cpu_window, disk_min_free, alert_rate_limit, \
     default_memory_limit, default_cpu_limit, default_nofile_limit, default_nproc_limit, \
     audit_retention_days";

/// A number setting, as the runner and every command use it: a value out of its range (only
/// written behind cronmgr's back) reads as the nearest value in range, so one bad row can neither
/// make the settings unreadable (and every runner stop) nor overflow what is computed from it.
fn within<T: TryFrom<u64>>(row: &Row<'_>, i: usize, range: (u64, u64)) -> super::sql::Result<T> {
    opt_within(row, i, range)?.ok_or_else(|| super::sql::Error::conversion(i, "NULL"))
}

fn opt_within<T: TryFrom<u64>>(
    row: &Row<'_>,
    i: usize,
    (min, max): (u64, u64),
) -> super::sql::Result<Option<T>> {
    let n = match row.get::<_, Value>(i)? {
        Value::Null => return Ok(None),
        Value::Int(n) => u64::try_from(n).unwrap_or(0).clamp(min, max),
        Value::Real(f) if f >= 0.0 => (f as u64).clamp(min, max),
        Value::Real(_) => min,
        other => return Err(super::sql::Error::conversion(i, format!("{other:?}"))),
    };
    // Every range here fits the field's type (u32 fields have u32 ceilings).
    T::try_from(n)
        .map(Some)
        .map_err(|_| super::sql::Error::conversion(i, format!("{n} is out of range")))
}

fn from_row(row: &Row<'_>) -> super::sql::Result<Settings> {
    Ok(Settings {
        system: row.get(0)?,
        is_enabled: row.get(1)?,
        max_concurrent_jobs: within(row, 2, (1, MAX_CONCURRENT.into()))?,
        default_timeout: within(row, 3, (1, MAX_DURATION))?,
        keep_executions: within(row, 4, (0, MAX_KEEP))?,
        cleanup_days: within(row, 5, (0, MAX_DAYS))?,
        alert_on_failure: row.get(6)?,
        alert_email: row.get(7)?,
        slack_webhook: row.get(8)?,
        timezone: row.get(9)?,
        shutdown_grace: within(row, 10, (0, MAX_DURATION))?,
        alert_on_timeout: row.get(11)?,
        webhook_url: row.get(12)?,
        webhook_secret: row.get(13)?,
        escalate_after: opt_within(row, 14, (1, MAX_FAILURES.into()))?,
        escalate_to: row.get(15)?,
        disable_after: opt_within(row, 16, (1, MAX_FAILURES.into()))?,
        max_silence: opt_within(row, 17, (1, MAX_DURATION))?,
        cpu_threshold: within(row, 18, (1, 100))?,
        cpu_window: within(row, 19, (0, MAX_DURATION))?,
        disk_min_free: within(row, 20, (0, 100))?,
        alert_rate_limit: within(row, 21, (1, MAX_ALERTS_PER_HOUR.into()))?,
        default_memory_limit: opt_within(row, 22, (1, MAX_MEMORY))?,
        default_cpu_limit: opt_within(row, 23, (1, MAX_DURATION))?,
        default_nofile_limit: opt_within(row, 24, (1, MAX_NOFILE))?,
        default_nproc_limit: opt_within(row, 25, (1, MAX_NPROC))?,
        audit_retention_days: within(row, 26, (0, MAX_DAYS))?,
    })
}

impl Store {
    /// The system's settings; the defaults (in the host's time zone) if it has none stored.
    pub fn settings(&self, system: &str) -> Result<Settings> {
        settings(&self.conn, system)
    }

    /// Store the settings and, in the same transaction, the jobs' next runs that depend on them
    /// and the audit row.
    pub fn put_settings(
        &self,
        settings: &Settings,
        next_runs: &[(i64, Option<DateTime<Utc>>)],
        now: DateTime<Utc>,
        by: By<'_>,
    ) -> Result<()> {
        self.write(|conn| {
            let before = self::settings(conn, &settings.system)?;
            let diff = super::settings_diff(&before, settings);
            let target = match &diff {
                serde_json::Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(","),
                _ => String::new(),
            };
            audit::insert(
                conn,
                by,
                &audit::Event {
                    system: &settings.system,
                    target: (!target.is_empty()).then_some(target.as_str()),
                    refused: false,
                    reason: None,
                    diff,
                },
                now,
            )?;
            conn.prepare_cached(
                "INSERT INTO settings (system, is_enabled, max_concurrent_jobs, default_timeout, \
                 keep_executions, cleanup_days, alert_on_failure, alert_email, slack_webhook, timezone, \
                 shutdown_grace, created_at, updated_at, alert_on_timeout, webhook_url, webhook_secret, \
                 escalate_after, escalate_to, disable_after, max_silence, cpu_threshold, cpu_window, \
                 disk_min_free, alert_rate_limit, default_memory_limit, default_cpu_limit, \
                 default_nofile_limit, default_nproc_limit, audit_retention_days) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, \
                         ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28) \
                 ON CONFLICT (system) DO UPDATE SET is_enabled = ?2, max_concurrent_jobs = ?3, \
                 default_timeout = ?4, keep_executions = ?5, cleanup_days = ?6, alert_on_failure = ?7, \
                 alert_email = ?8, slack_webhook = ?9, timezone = ?10, shutdown_grace = ?11, updated_at = ?12, \
                 alert_on_timeout = ?13, webhook_url = ?14, webhook_secret = ?15, escalate_after = ?16, \
                 escalate_to = ?17, disable_after = ?18, max_silence = ?19, cpu_threshold = ?20, \
                 cpu_window = ?21, disk_min_free = ?22, alert_rate_limit = ?23, \
                 default_memory_limit = ?24, default_cpu_limit = ?25, default_nofile_limit = ?26, \
                 default_nproc_limit = ?27, audit_retention_days = ?28",
            )?
            .execute(params![
                settings.system,
                settings.is_enabled,
                settings.max_concurrent_jobs,
                settings.default_timeout,
                settings.keep_executions,
                settings.cleanup_days,
                settings.alert_on_failure,
                settings.alert_email,
                settings.slack_webhook,
                settings.timezone,
                settings.shutdown_grace,
                fmt_time(now),
                settings.alert_on_timeout,
                settings.webhook_url,
                settings.webhook_secret,
                settings.escalate_after,
                settings.escalate_to,
                settings.disable_after,
                settings.max_silence,
                settings.cpu_threshold,
                settings.cpu_window,
                settings.disk_min_free,
                settings.alert_rate_limit,
                settings.default_memory_limit,
                settings.default_cpu_limit,
                settings.default_nofile_limit,
                settings.default_nproc_limit,
                settings.audit_retention_days,
            ])?;
            let mut stmt = conn.prepare_cached("UPDATE jobs SET next_run_at = ?2 WHERE id = ?1")?;
            for (id, next) in next_runs {
                stmt.execute(params![id, next.map(fmt_time)])?;
            }
            Ok(())
        })
    }
}

pub(crate) fn settings(conn: &Connection, system: &str) -> Result<Settings> {
    let stored = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM settings WHERE system = ?1"))?
        .query_row([system], from_row)
        .opt()?;
    Ok(stored
        .unwrap_or_else(|| Settings::defaults(system, crate::schedule::host_timezone().name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_until_set_then_stored() {
        let store = Store::open_in_memory().unwrap();
        let s = store.settings("app").unwrap();
        assert_eq!(s.max_concurrent_jobs, 5);
        assert_eq!(s.default_timeout, 3600);
        let mut s2 = s.clone();
        s2.set("max_concurrent_jobs", "8").unwrap();
        s2.set("timezone", "Europe/Madrid").unwrap();
        store
            .put_settings(&s2, &[], chrono::Utc::now(), crate::store::test_by())
            .unwrap();
        let back = store.settings("app").unwrap();
        assert_eq!(back.max_concurrent_jobs, 8);
        assert_eq!(back.timezone, "Europe/Madrid");
        assert_eq!(store.settings("other").unwrap().max_concurrent_jobs, 5);
    }

    #[test]
    fn a_row_out_of_range_reads_as_the_nearest_value_in_range() {
        let store = Store::open_in_memory().unwrap();
        if store.backend() != crate::store::Backend::Sqlite {
            eprintln!("skipped: writes past the CHECK constraints, which only SQLite can skip");
            return;
        }
        let s = Settings::defaults("app", "UTC");
        store
            .put_settings(&s, &[], chrono::Utc::now(), crate::store::test_by())
            .unwrap();
        store
            .conn
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON; \
                 UPDATE settings SET max_concurrent_jobs = 9223372036854775807, \
                 cleanup_days = -1, keep_executions = -9223372036854775808, \
                 shutdown_grace = 9223372036854775807, default_timeout = 0, \
                 escalate_after = -5, default_nofile_limit = 9223372036854775807",
            )
            .unwrap();
        let back = store.settings("app").unwrap();
        assert_eq!(back.max_concurrent_jobs, MAX_CONCURRENT);
        assert_eq!(back.cleanup_days, 0);
        assert_eq!(back.keep_executions, 0);
        assert_eq!(back.shutdown_grace, MAX_DURATION);
        assert_eq!(back.default_timeout, 1);
        assert_eq!(back.escalate_after, Some(1));
        assert_eq!(back.default_nofile_limit, Some(MAX_NOFILE));
    }
}
