//! Per-system settings: read (with defaults when never set), write, and the `settings get/set` keys.

use super::sql::{params, Connection, Row};
use chrono::{DateTime, Utc};

use super::audit::{self, By};
use super::{fmt_time, OptionalRow, Result, Settings, Store};

const COLUMNS: &str = "system, is_enabled, max_concurrent_jobs, default_timeout, keep_executions, \
     cleanup_days, alert_on_failure, alert_email, slack_webhook, timezone, shutdown_grace, \
     alert_on_timeout, webhook_url, webhook_secret, escalate_after, escalate_to, disable_after, \
     max_silence, cpu_threshold, cpu_window, disk_min_free, alert_rate_limit, \
     default_memory_limit, default_cpu_limit, default_nofile_limit, default_nproc_limit, \
     audit_retention_days";

fn from_row(row: &Row<'_>) -> super::sql::Result<Settings> {
    Ok(Settings {
        system: row.get(0)?,
        is_enabled: row.get(1)?,
        max_concurrent_jobs: row.get(2)?,
        default_timeout: row.get(3)?,
        keep_executions: row.get(4)?,
        cleanup_days: row.get(5)?,
        alert_on_failure: row.get(6)?,
        alert_email: row.get(7)?,
        slack_webhook: row.get(8)?,
        timezone: row.get(9)?,
        shutdown_grace: row.get(10)?,
        alert_on_timeout: row.get(11)?,
        webhook_url: row.get(12)?,
        webhook_secret: row.get(13)?,
        escalate_after: row.get(14)?,
        escalate_to: row.get(15)?,
        disable_after: row.get(16)?,
        max_silence: row.get(17)?,
        cpu_threshold: row.get(18)?,
        cpu_window: row.get(19)?,
        disk_min_free: row.get(20)?,
        alert_rate_limit: row.get(21)?,
        default_memory_limit: row.get(22)?,
        default_cpu_limit: row.get(23)?,
        default_nofile_limit: row.get(24)?,
        default_nproc_limit: row.get(25)?,
        audit_retention_days: row.get(26)?,
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
                let n: u32 = parse_count(key, v)?
                    .try_into()
                    .map_err(|_| format!("{key} is too large"))?;
                if n == 0 {
                    return Err(format!("{key} must be at least 1"));
                }
                self.max_concurrent_jobs = n;
            }
            "default_timeout" => {
                let secs = parse_secs(key, v)?;
                if secs == 0 {
                    return Err(format!("{key} must be more than zero (e.g. 30m, 1h)"));
                }
                self.default_timeout = secs;
            }
            "shutdown_grace" => self.shutdown_grace = parse_secs(key, v)?,
            "keep_executions" => self.keep_executions = parse_count(key, v)?,
            "cleanup_days" => self.cleanup_days = parse_count(key, v)?,
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
                    _ => Some(parse_secs(key, v)?).filter(|s| *s > 0),
                }
            }
            "cpu_threshold" => {
                let n = parse_count(key, v)?;
                if !(1..=100).contains(&n) {
                    return Err(format!("{key} must be a percentage from 1 to 100"));
                }
                self.cpu_threshold = n as u32;
            }
            "cpu_window" => self.cpu_window = parse_secs(key, v)?,
            "disk_min_free" => {
                let n = parse_count(key, v)?;
                if n > 100 {
                    return Err(format!("{key} must be a percentage from 0 to 100"));
                }
                self.disk_min_free = n as u32;
            }
            "alert_rate_limit" => {
                let n = parse_count(key, v)?;
                if n == 0 || n > u64::from(u32::MAX) {
                    return Err(format!(
                        "{key} must be at least 1 (messages per channel per hour)"
                    ));
                }
                self.alert_rate_limit = n as u32;
            }
            "default_memory_limit" => {
                self.default_memory_limit = crate::limits::parse_opt_bytes(key, v)?
            }
            "default_cpu_limit" => self.default_cpu_limit = crate::limits::parse_opt_cpu(key, v)?,
            "default_nofile_limit" => {
                self.default_nofile_limit = crate::limits::parse_opt_count(key, v)?
            }
            "default_nproc_limit" => {
                self.default_nproc_limit = crate::limits::parse_opt_count(key, v)?
            }
            "audit_retention_days" => self.audit_retention_days = parse_count(key, v)?,
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

/// A positive count, or empty/`none`/`0` for unset.
fn parse_opt_positive(key: &str, v: &str) -> std::result::Result<Option<u32>, String> {
    if matches!(v, "" | "none") {
        return Ok(None);
    }
    let n = parse_count(key, v)?;
    u32::try_from(n)
        .map(|n| (n > 0).then_some(n))
        .map_err(|_| format!("{key} is too large"))
}

fn parse_secs(key: &str, v: &str) -> std::result::Result<u64, String> {
    crate::duration::parse_secs(v).map_err(|e| format!("{key}: {e}"))
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
        ] {
            assert!(s.set(k, v).is_err(), "{k}={v} should be refused");
        }
        assert_eq!(s, Settings::defaults("x", "UTC"));
    }
}
