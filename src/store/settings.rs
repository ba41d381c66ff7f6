//! Per-system settings: read (with defaults when never set), write, and the `settings get/set` keys.

use super::sql::{params, Connection, Row, Value};
use crate::bounds::{
    self, Unit, MAX_ALERTS_PER_HOUR, MAX_CONCURRENT, MAX_DAYS, MAX_DURATION, MAX_FAILURES,
    MAX_KEEP, MAX_MEMORY, MAX_NOFILE, MAX_NPROC,
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
            let diff = audit::settings_diff(&before, settings);
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

/// The keys `cronmgr settings get/set` accepts, in display order.
pub const KEYS: &[&str] = &[
    "is_enabled",
    "max_concurrent_jobs",
    "default_timeout",
    "keep_executions",
    "cleanup_days",
    "alert_on_failure",
    "alert_email",
    "slack_webhook",
    "timezone",
    "shutdown_grace",
    "alert_on_timeout",
    "webhook_url",
    "webhook_secret",
    "escalate_after",
    "escalate_to",
    "disable_after",
    "max_silence",
    "cpu_threshold",
    "cpu_window",
    "disk_min_free",
    "alert_rate_limit",
    "default_memory_limit",
    "default_cpu_limit",
    "default_nofile_limit",
    "default_nproc_limit",
    "audit_retention_days",
];

/// Keys whose values are secrets: shown only redacted.
pub const SECRET_KEYS: &[&str] = &[
    "slack_webhook",
    "webhook_url",
    "webhook_secret",
    "escalate_to",
];

impl Settings {
    /// The value of a key as text; None for an unknown key.
    pub fn get(&self, key: &str) -> Option<String> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        Some(match key {
            "system" => self.system.clone(),
            "is_enabled" => self.is_enabled.to_string(),
            "max_concurrent_jobs" => self.max_concurrent_jobs.to_string(),
            "default_timeout" => self.default_timeout.to_string(),
            "keep_executions" => self.keep_executions.to_string(),
            "cleanup_days" => self.cleanup_days.to_string(),
            "alert_on_failure" => self.alert_on_failure.to_string(),
            "alert_email" => opt(&self.alert_email),
            "slack_webhook" => opt(&self.slack_webhook),
            "timezone" => self.timezone.clone(),
            "shutdown_grace" => self.shutdown_grace.to_string(),
            "alert_on_timeout" => self.alert_on_timeout.to_string(),
            "webhook_url" => opt(&self.webhook_url),
            "webhook_secret" => opt(&self.webhook_secret),
            "escalate_after" => num(self.escalate_after.map(u64::from)),
            "escalate_to" => opt(&self.escalate_to),
            "disable_after" => num(self.disable_after.map(u64::from)),
            "max_silence" => self
                .max_silence
                .map(crate::duration::human_secs)
                .unwrap_or_default(),
            "cpu_threshold" => self.cpu_threshold.to_string(),
            "cpu_window" => self.cpu_window.to_string(),
            "disk_min_free" => self.disk_min_free.to_string(),
            "alert_rate_limit" => self.alert_rate_limit.to_string(),
            "default_memory_limit" => self
                .default_memory_limit
                .map(crate::limits::human_bytes)
                .unwrap_or_default(),
            "default_cpu_limit" => self
                .default_cpu_limit
                .map(crate::duration::human_secs)
                .unwrap_or_default(),
            "default_nofile_limit" => num(self.default_nofile_limit),
            "default_nproc_limit" => num(self.default_nproc_limit),
            "audit_retention_days" => self.audit_retention_days.to_string(),
            _ => return None,
        })
    }

    /// Set a key from text, validating it. The error says what would be accepted.
    pub fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        let v = value.trim();
        match key {
            "is_enabled" => self.is_enabled = parse_bool(key, v)?,
            "alert_on_failure" => self.alert_on_failure = parse_bool(key, v)?,
            "max_concurrent_jobs" => {
                if v == "0" {
                    return Err(format!("{key} must be at least 1"));
                }
                self.max_concurrent_jobs = small(count(key, v, (1, MAX_CONCURRENT.into()))?);
            }
            "default_timeout" => {
                let secs = parse_secs(key, v, 0)?;
                if secs == 0 {
                    return Err(format!("{key} must be more than zero (e.g. 30m, 1h)"));
                }
                self.default_timeout = secs;
            }
            "shutdown_grace" => self.shutdown_grace = parse_secs(key, v, 0)?,
            "keep_executions" => self.keep_executions = count(key, v, (0, MAX_KEEP))?,
            "cleanup_days" => self.cleanup_days = count(key, v, (0, MAX_DAYS))?,
            "alert_email" => {
                if !v.is_empty() && !v.split(',').all(|a| looks_like_email(a.trim())) {
                    return Err(format!(
                        "{key} must be an email address or a comma-separated list of them, got {v:?}"
                    ));
                }
                self.alert_email = (!v.is_empty()).then(|| v.to_string());
            }
            "slack_webhook" => {
                if !(v.is_empty() || v.starts_with("https://") || v.starts_with("http://")) {
                    return Err(format!("{key} must be an http(s) URL"));
                }
                self.slack_webhook = (!v.is_empty()).then(|| v.to_string());
            }
            "alert_on_timeout" => self.alert_on_timeout = parse_bool(key, v)?,
            "webhook_url" => {
                if !(v.is_empty() || v.starts_with("https://") || v.starts_with("http://")) {
                    return Err(format!("{key} must be an http(s) URL"));
                }
                self.webhook_url = (!v.is_empty()).then(|| v.to_string());
            }
            "webhook_secret" => self.webhook_secret = (!v.is_empty()).then(|| v.to_string()),
            "escalate_after" => self.escalate_after = parse_opt_positive(key, v)?,
            "disable_after" => self.disable_after = parse_opt_positive(key, v)?,
            "escalate_to" => {
                for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    if crate::alert::Target::parse(item).is_none() {
                        return Err(format!(
                            "{key}: each item must be an email address, an http(s) webhook URL, or slack:URL"
                        ));
                    }
                }
                self.escalate_to = (!v.is_empty()).then(|| v.to_string());
            }
            "max_silence" => {
                self.max_silence = match v {
                    "" | "none" | "0" => None,
                    _ => Some(parse_secs(key, v, 0)?).filter(|s| *s > 0),
                }
            }
            "cpu_threshold" => {
                let n = parse_count(key, v)?;
                if !(1..=100).contains(&n) {
                    return Err(format!("{key} must be a percentage from 1 to 100"));
                }
                self.cpu_threshold = n as u32;
            }
            "cpu_window" => self.cpu_window = parse_secs(key, v, 0)?,
            "disk_min_free" => {
                let n = parse_count(key, v)?;
                if n > 100 {
                    return Err(format!("{key} must be a percentage from 0 to 100"));
                }
                self.disk_min_free = n as u32;
            }
            "alert_rate_limit" => {
                if v == "0" {
                    return Err(format!(
                        "{key} must be at least 1 (messages per channel per hour)"
                    ));
                }
                let range = (1, MAX_ALERTS_PER_HOUR.into());
                self.alert_rate_limit = small(count(key, v, range)?);
            }
            "default_memory_limit" => {
                let n = crate::limits::parse_opt_bytes(key, v)?;
                self.default_memory_limit = ceiling(key, n, MAX_MEMORY, Unit::Bytes)?;
            }
            "default_cpu_limit" => {
                let n = crate::limits::parse_opt_cpu(key, v)?;
                self.default_cpu_limit = ceiling(key, n, MAX_DURATION, Unit::Seconds)?;
            }
            "default_nofile_limit" => {
                let n = crate::limits::parse_opt_count(key, v)?;
                self.default_nofile_limit = ceiling(key, n, MAX_NOFILE, Unit::Count)?;
            }
            "default_nproc_limit" => {
                let n = crate::limits::parse_opt_count(key, v)?;
                self.default_nproc_limit = ceiling(key, n, MAX_NPROC, Unit::Count)?;
            }
            "audit_retention_days" => {
                self.audit_retention_days = count(key, v, (0, MAX_DAYS))?;
            }
            "timezone" => {
                let tz = crate::schedule::parse_timezone(v).map_err(|e| e.to_string())?;
                self.timezone = tz.name().to_string();
            }
            _ => {
                return Err(format!(
                    "unknown setting {key:?} (known: {})",
                    KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }
}

impl Settings {
    /// A copy fit to print: every secret redacted.
    pub fn redacted(&self) -> Settings {
        use crate::alert::redact;
        let r = |v: &Option<String>| v.as_deref().map(redact::secret);
        Settings {
            slack_webhook: r(&self.slack_webhook),
            webhook_url: r(&self.webhook_url),
            webhook_secret: r(&self.webhook_secret),
            escalate_to: self.escalate_to.as_deref().map(redact::list),
            ..self.clone()
        }
    }

    /// The value of a key as it may be shown: secrets redacted.
    pub fn get_shown(&self, key: &str) -> Option<String> {
        self.redacted().get(key)
    }
}

fn parse_bool(key: &str, v: &str) -> std::result::Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{key} must be true or false, got {v:?}")),
    }
}

fn parse_count(key: &str, v: &str) -> std::result::Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("{key} must be a whole number of 0 or more, got {v:?}"))
}

/// A whole number within `range`.
fn count(key: &str, v: &str, range: (u64, u64)) -> std::result::Result<u64, String> {
    bounds::parse_count(key, v, range)
}

/// A count whose range a u32 holds.
fn small(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A positive count up to [`MAX_FAILURES`], or empty/`none`/`0` for unset.
fn parse_opt_positive(key: &str, v: &str) -> std::result::Result<Option<u32>, String> {
    if matches!(v, "" | "none" | "0") {
        return Ok(None);
    }
    Ok(Some(small(count(key, v, (1, MAX_FAILURES.into()))?)))
}

/// A duration of at least `min` seconds and at most [`MAX_DURATION`].
fn parse_secs(key: &str, v: &str, min: u64) -> std::result::Result<u64, String> {
    bounds::parse_duration(key, v, min).map_err(|e| e.to_string())
}

/// A limit already parsed, checked against its ceiling.
fn ceiling(
    key: &str,
    value: Option<u64>,
    max: u64,
    unit: Unit,
) -> std::result::Result<Option<u64>, String> {
    if let Some(n) = value {
        bounds::check(key, n, unit.show(n), (1, max), unit).map_err(|e| e.to_string())?;
    }
    Ok(value)
}

pub(crate) fn looks_like_email(a: &str) -> bool {
    let mut parts = a.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && d.contains('.') && !a.contains(' '))
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
    fn set_validates() {
        let mut s = Settings::defaults("x", "UTC");
        for (k, v) in [
            ("max_concurrent_jobs", "0"),
            ("max_concurrent_jobs", "-1"),
            ("default_timeout", "0"),
            ("timezone", "Mars/Base"),
            ("is_enabled", "maybe"),
            ("alert_email", "not-an-email"),
            ("slack_webhook", "ftp://x"),
            ("nonsense", "1"),
            ("default_timeout", "9223372036854775807"),
            ("default_timeout", "401d"),
            ("shutdown_grace", "99999999999999999999"),
            ("max_silence", "9223372036854775807"),
            ("cpu_window", "9223372036854775807"),
            ("default_cpu_limit", "9223372036854775807"),
            ("keep_executions", "18446744073709551615"),
            ("cleanup_days", "36501"),
            ("audit_retention_days", "9223372036854775807"),
            ("max_concurrent_jobs", "4294967295"),
            ("alert_rate_limit", "4294967296"),
            ("escalate_after", "4294967295"),
            ("disable_after", "1000001"),
            ("default_memory_limit", "9999999T"),
            ("default_nofile_limit", "9223372036854775807"),
            ("default_nproc_limit", "4194305"),
        ] {
            let e = s
                .set(k, v)
                .expect_err(&format!("{k}={v} should be refused"));
            assert!(k == "timezone" || e.contains(k), "{k}: {e}");
        }
        assert_eq!(s, Settings::defaults("x", "UTC"));
        // The ceilings themselves are accepted.
        for (k, v) in [
            ("default_timeout", "400d"),
            ("cleanup_days", "36500"),
            ("max_concurrent_jobs", "10000"),
            ("default_nproc_limit", "4194304"),
        ] {
            s.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
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
        assert_eq!(back.max_concurrent_jobs, bounds::MAX_CONCURRENT);
        assert_eq!(back.cleanup_days, 0);
        assert_eq!(back.keep_executions, 0);
        assert_eq!(back.shutdown_grace, MAX_DURATION);
        assert_eq!(back.default_timeout, 1);
        assert_eq!(back.escalate_after, Some(1));
        assert_eq!(back.default_nofile_limit, Some(MAX_NOFILE));
    }
}
