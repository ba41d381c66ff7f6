//! Per-system settings: read (with defaults when never set) and write. The keys, their parsing
//! and redaction are the model's (`crate::model::Settings`).

use super::record::{record, Plain, Record, Within};
use super::sql::{params, Connection, Row};
use crate::model::bounds::{
    MAX_ALERTS_PER_HOUR, MAX_CONCURRENT, MAX_DAYS, MAX_DURATION, MAX_FAILURES, MAX_KEEP,
    MAX_MEMORY, MAX_NOFILE, MAX_NPROC,
};
use chrono::{DateTime, Utc};

use super::audit::{self, By};
use super::{fmt_time, OptionalRow, Result, Settings, Store};

// The settings table, described once: each column (named as `Settings`' field), how it is read
// (numbers clamped into their range: see `Within`) and which writes set it; `put_settings`'s
// upsert and the SELECT below are generated from it.
record! {
    Settings in "settings" {
        system: Plain => insert;
        is_enabled: Plain => insert update;
        max_concurrent_jobs: Within(1, MAX_CONCURRENT.into()) => insert update;
        default_timeout: Within(1, MAX_DURATION) => insert update;
        keep_executions: Within(0, MAX_KEEP) => insert update;
        cleanup_days: Within(0, MAX_DAYS) => insert update;
        alert_on_failure: Plain => insert update;
        alert_email: Plain => insert update;
        slack_webhook: Plain => insert update;
        timezone: Plain => insert update;
        shutdown_grace: Within(0, MAX_DURATION) => insert update;
        alert_on_timeout: Plain => insert update;
        webhook_url: Plain => insert update;
        webhook_secret: Plain => insert update;
        escalate_after: Within(1, MAX_FAILURES.into()) => insert update;
        escalate_to: Plain => insert update;
        disable_after: Within(1, MAX_FAILURES.into()) => insert update;
        max_silence: Within(1, MAX_DURATION) => insert update;
        cpu_threshold: Within(1, 100) => insert update;
        cpu_window: Within(0, MAX_DURATION) => insert update;
        disk_min_free: Within(0, 100) => insert update;
        alert_rate_limit: Within(1, MAX_ALERTS_PER_HOUR.into()) => insert update;
        default_memory_limit: Within(1, MAX_MEMORY) => insert update;
        default_cpu_limit: Within(1, MAX_DURATION) => insert update;
        default_nofile_limit: Within(1, MAX_NOFILE) => insert update;
        default_nproc_limit: Within(1, MAX_NPROC) => insert update;
        audit_retention_days: Within(0, MAX_DAYS) => insert update;
    }
    stamps {
        created_at => insert;
        updated_at => insert update;
    }
}

fn from_row(row: &Row<'_>) -> super::sql::Result<Settings> {
    Settings::from_row(row)
}

fn columns() -> &'static str {
    &Settings::sql().columns
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
            let sql = Settings::sql();
            conn.prepare_cached(&format!(
                "{} ON CONFLICT (system) DO UPDATE SET {}",
                sql.insert, sql.upsert_set
            ))?
            .execute(settings.insert_values(now))?;
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
        .prepare_cached(&format!(
            "SELECT {} FROM settings WHERE system = ?1",
            columns()
        ))?
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
    fn settings_are_read_by_column_name_not_position() {
        let store = Store::open_in_memory().unwrap();
        let mut s = Settings::defaults("app", "UTC");
        s.set("max_concurrent_jobs", "8").unwrap();
        s.set("alert_email", "ops@example.com").unwrap();
        store
            .put_settings(&s, &[], chrono::Utc::now(), crate::store::test_by())
            .unwrap();
        let mut names: Vec<&str> = columns().split(", ").collect();
        names.reverse();
        let got = store
            .conn
            .query_row(
                &format!(
                    "SELECT {} FROM settings WHERE system = ?1",
                    names.join(", ")
                ),
                ["app"],
                from_row,
            )
            .unwrap();
        assert_eq!(got, s);
    }

    #[test]
    fn the_record_describes_every_column_of_the_table() {
        let store = Store::open_in_memory().unwrap();
        let mut table = crate::store::copy::columns(&store.conn, "settings").unwrap();
        let mut described: Vec<String> = Settings::COLUMNS
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        table.sort();
        described.sort();
        assert_eq!(described, table);
    }

    #[test]
    fn a_second_put_updates_in_place_and_keeps_created_at() {
        let store = Store::open_in_memory().unwrap();
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut s = Settings::defaults("app", "UTC");
        store
            .put_settings(&s, &[], t0, crate::store::test_by())
            .unwrap();
        s.set("webhook_secret", "k").unwrap();
        s.set("disable_after", "4").unwrap();
        let t1 = t0 + chrono::Duration::hours(1);
        store
            .put_settings(&s, &[], t1, crate::store::test_by())
            .unwrap();
        assert_eq!(store.settings("app").unwrap(), s);
        let stamps = store
            .conn
            .query_row(
                "SELECT created_at, updated_at FROM settings WHERE system = ?1",
                ["app"],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .unwrap();
        assert_eq!(stamps, (fmt_time(t0), fmt_time(t1)));
    }

    #[test]
    fn a_row_out_of_range_reads_as_the_nearest_value_in_range() {
        let store = Store::open_in_memory().unwrap();
        if store.sqlite_only("writes past the CHECK constraints, which only SQLite can skip") {
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
