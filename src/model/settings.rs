//! Per-system settings: their defaults, the keys `cronmgr settings get/set` takes, their parsing
//! and checks, and their redacted form.

use serde::{Deserialize, Serialize};

use super::bounds::{
    self, Unit, MAX_ALERTS_PER_HOUR, MAX_CONCURRENT, MAX_DAYS, MAX_DURATION, MAX_FAILURES,
    MAX_KEEP, MAX_MEMORY, MAX_NOFILE, MAX_NPROC,
};
use super::looks_like_email;

/// Per-system settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub system: String,
    pub is_enabled: bool,
    pub max_concurrent_jobs: u32,
    /// Seconds.
    pub default_timeout: u64,
    pub keep_executions: u64,
    pub cleanup_days: u64,
    pub alert_on_failure: bool,
    pub alert_email: Option<String>,
    pub slack_webhook: Option<String>,
    pub timezone: String,
    /// Seconds the runner waits for running executions on shutdown.
    pub shutdown_grace: u64,
    pub alert_on_timeout: bool,
    /// Secret: a generic webhook receiving the JSON payload.
    pub webhook_url: Option<String>,
    /// Secret: the key of the HMAC-SHA256 signature of webhook payloads.
    pub webhook_secret: Option<String>,
    /// Consecutive failures before the escalation channels hear of it.
    pub escalate_after: Option<u32>,
    /// The escalation channels: email addresses and webhook URLs, comma-separated.
    pub escalate_to: Option<String>,
    /// Consecutive failures before a job is disabled.
    pub disable_after: Option<u32>,
    /// Seconds without a success before a missed-run alert.
    pub max_silence: Option<u64>,
    /// Percent of all CPUs busy that counts as overloaded.
    pub cpu_threshold: u32,
    /// Seconds the CPU must stay above the threshold.
    pub cpu_window: u64,
    /// Alert when less than this percent of the disk (database, logs) is free.
    pub disk_min_free: u32,
    /// Messages per channel per hour at most.
    pub alert_rate_limit: u32,
    /// Limits for jobs that set none (bytes, CPU seconds, open files, processes).
    pub default_memory_limit: Option<u64>,
    pub default_cpu_limit: Option<u64>,
    pub default_nofile_limit: Option<u64>,
    pub default_nproc_limit: Option<u64>,
    /// Days the audit log is kept; 0 keeps it forever.
    pub audit_retention_days: u64,
}

impl Settings {
    pub fn defaults(system: &str, timezone: &str) -> Settings {
        Settings {
            system: system.to_string(),
            is_enabled: true,
            max_concurrent_jobs: 5,
            default_timeout: 3600,
            keep_executions: 1000,
            cleanup_days: 30,
            alert_on_failure: true,
            alert_email: None,
            slack_webhook: None,
            timezone: timezone.to_string(),
            shutdown_grace: 30,
            alert_on_timeout: true,
            webhook_url: None,
            webhook_secret: None,
            escalate_after: None,
            escalate_to: None,
            disable_after: None,
            max_silence: None,
            cpu_threshold: 80,
            cpu_window: 300,
            disk_min_free: 10,
            alert_rate_limit: 30,
            default_memory_limit: None,
            default_cpu_limit: None,
            default_nofile_limit: None,
            default_nproc_limit: None,
            audit_retention_days: 365,
        }
    }
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
                .map(super::size::human_bytes)
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
                    if super::Target::parse(item).is_none() {
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
                let n = super::size::parse_opt_bytes(key, v)?;
                self.default_memory_limit = ceiling(key, n, MAX_MEMORY, Unit::Bytes)?;
            }
            "default_cpu_limit" => {
                let n = super::size::parse_opt_cpu(key, v)?;
                self.default_cpu_limit = ceiling(key, n, MAX_DURATION, Unit::Seconds)?;
            }
            "default_nofile_limit" => {
                let n = super::size::parse_opt_count(key, v)?;
                self.default_nofile_limit = ceiling(key, n, MAX_NOFILE, Unit::Count)?;
            }
            "default_nproc_limit" => {
                let n = super::size::parse_opt_count(key, v)?;
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
        use super::redact;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
