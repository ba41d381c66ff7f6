//! Alerts: what they are about, where they go, and how their deliveries stand.

use chrono::{DateTime, Utc};
use serde::Serialize;

closed_set!(
    /// What an alert is about. `failed`, `timeout`, `escalated`, `disabled` and `silent` belong to
    /// a job; `cpu` and `disk` to the host (as seen by one system's settings).
    AlertKind {
        Failed => "failed",
        Timeout => "timeout",
        Escalated => "escalated",
        Disabled => "disabled",
        Silent => "silent",
        Cpu => "cpu",
        Disk => "disk",
    }
);
closed_set!(
    /// A firing alert opens a condition; a resolved one says it cleared.
    AlertState { Firing => "firing", Resolved => "resolved" }
);
closed_set!(
    /// Where alerts go.
    Channel { Email => "email", Slack => "slack", Webhook => "webhook" }
);
closed_set!(
    /// How far one delivery got: still trying, done, or given up.
    DeliveryState { Pending => "pending", Sent => "sent", Failed => "failed" }
);

/// An alert to record, with the channels it goes to.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub system: String,
    pub job_id: Option<i64>,
    pub job: Option<String>,
    pub kind: AlertKind,
    pub summary: String,
    pub details: serde_json::Value,
    pub execution_id: Option<i64>,
    pub targets: Vec<(Channel, String)>,
}

/// A recorded alert and how its deliveries are going.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    pub system: String,
    pub job_id: Option<i64>,
    pub job: Option<String>,
    pub kind: AlertKind,
    pub state: AlertState,
    pub summary: String,
    pub details: serde_json::Value,
    pub execution_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// For a firing alert: when its condition cleared (None: still open).
    pub resolved_at: Option<DateTime<Utc>>,
    pub deliveries: Vec<Delivery>,
}

/// One alert on one channel.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub alert_id: i64,
    pub channel: Channel,
    /// Addresses or a URL; URLs are secrets and only ever serialized redacted.
    #[serde(serialize_with = "redacted")]
    pub target: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

fn redacted<S: serde::Serializer>(target: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&super::redact::list(target))
}

/// One place an alert goes: a channel and its target (addresses or a URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub channel: Channel,
    pub target: String,
}

impl Target {
    /// An item of `escalate_to`: an email address, `slack:URL`, a Slack webhook URL, or another
    /// http(s) URL (a generic webhook).
    pub fn parse(item: &str) -> Option<Target> {
        let item = item.trim();
        let t = |channel, target: &str| {
            Some(Target {
                channel,
                target: target.to_string(),
            })
        };
        if let Some(url) = item.strip_prefix("slack:") {
            return is_url(url).then(|| t(Channel::Slack, url)).flatten();
        }
        if let Some(url) = item.strip_prefix("webhook:") {
            return is_url(url).then(|| t(Channel::Webhook, url)).flatten();
        }
        if is_url(item) {
            let slack = item.starts_with("https://hooks.slack.com/");
            return t(
                if slack {
                    Channel::Slack
                } else {
                    Channel::Webhook
                },
                item,
            );
        }
        if looks_like_email(item) {
            return t(Channel::Email, item);
        }
        None
    }
}

fn is_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && s.len() > "https://".len()
}

/// A job's own alert URL (`alert_slack`, `alert_webhook`): an http(s) URL with a host and no
/// spaces; empty or `none` is None. The error shows the value redacted (it may hold a secret).
pub fn parse_url(key: &str, v: &str) -> Result<Option<String>, String> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let host = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .map(|authority| authority.rsplit('@').next().unwrap_or(authority));
    match host {
        Some(h) if !h.is_empty() && !v.chars().any(char::is_whitespace) => Ok(Some(v.to_string())),
        _ => Err(format!(
            "{key} must be an http:// or https:// URL with a host (or none), got {:?}",
            super::redact::secret(v)
        )),
    }
}

/// Whether `a` has the shape of one email address (`local@domain.tld`, no spaces).
pub fn looks_like_email(a: &str) -> bool {
    let mut parts = a.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && d.contains('.') && !a.contains(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_urls_need_http_and_a_host_and_errors_hide_the_path() {
        let ok = "https://hooks.slack.com/services/T/B/SECRET";
        assert_eq!(parse_url("--alert-slack", ok), Ok(Some(ok.to_string())));
        assert_eq!(
            parse_url("k", " http://127.0.0.1:8080/hook "),
            Ok(Some("http://127.0.0.1:8080/hook".into()))
        );
        assert_eq!(parse_url("k", "none"), Ok(None));
        assert_eq!(parse_url("k", ""), Ok(None));
        for bad in [
            "ftp://example.com/SECRET",
            "https:///SECRET",
            "hooks.slack.com/SECRET",
            "https://exa mple.com/SECRET",
        ] {
            let err = parse_url("--alert-webhook", bad).unwrap_err();
            assert!(err.starts_with("--alert-webhook"), "{err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn escalation_items_parse_by_shape() {
        let p = |s| Target::parse(s).map(|t| t.channel);
        assert_eq!(p("ops@example.com"), Some(Channel::Email));
        assert_eq!(
            p("https://hooks.slack.com/services/X"),
            Some(Channel::Slack)
        );
        assert_eq!(p("slack:http://127.0.0.1:9/x"), Some(Channel::Slack));
        assert_eq!(p("https://pager.example.com/in"), Some(Channel::Webhook));
        assert_eq!(p("ftp://x"), None);
        assert_eq!(p("nobody"), None);
    }
}
