//! What an alert says on each channel: the generic JSON payload (documented in docs/alerts.md),
//! the Slack message, and the email's subject and body.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::store::{Alert, AlertKind, AlertState};

/// Version of the webhook payload's shape.
pub const VERSION: u32 = 1;
/// Most characters of output an alert carries (its tail).
pub const TAIL_CHARS: usize = 2000;

/// The generic webhook's JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub version: u32,
    pub id: i64,
    pub system: String,
    pub job: Option<String>,
    pub kind: AlertKind,
    pub state: AlertState,
    pub severity: &'static str,
    pub summary: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: DateTime<Utc>,
    pub host: String,
    /// The execution's status, id, duration_ms, attempt, exit_code, error, output_tail,
    /// failure_streak, … (see docs/alerts.md).
    pub details: Value,
}

pub fn severity(alert: &Alert) -> &'static str {
    match (alert.state, alert.kind) {
        (AlertState::Resolved, _) => "info",
        (_, AlertKind::Escalated | AlertKind::Disabled | AlertKind::Disk) => "critical",
        _ => "warning",
    }
}

pub fn payload(alert: &Alert, now: DateTime<Utc>) -> Payload {
    Payload {
        version: VERSION,
        id: alert.id,
        system: alert.system.clone(),
        job: alert.job.clone(),
        kind: alert.kind,
        state: alert.state,
        severity: severity(alert),
        summary: alert.summary.clone(),
        created_at: alert.created_at,
        sent_at: now,
        host: crate::host::hostname(),
        details: alert.details.clone(),
    }
}

/// The last `max` characters of `s`, starting at a line when one starts near the cut.
pub fn tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let cut: String = s.chars().skip(n - max).collect();
    match cut.find('\n') {
        Some(i) if i < max / 4 => cut[i + 1..].to_string(),
        _ => cut,
    }
}

fn field(details: &Value, key: &str) -> Option<String> {
    match details.get(key)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    }
}

fn duration(details: &Value) -> Option<String> {
    let ms = details.get("duration_ms")?.as_i64()?;
    Some(crate::duration::Human(std::time::Duration::from_millis(ms.max(0) as u64)).to_string())
}

/// The Slack incoming-webhook message: a line of text and an attachment with the job, system,
/// status, duration, attempt and the tail of the output.
pub fn slack(alert: &Alert) -> Value {
    let d = &alert.details;
    let color = match severity(alert) {
        "info" => "good",
        "critical" => "danger",
        _ => "warning",
    };
    let mut fields = vec![json!({"title": "System", "value": alert.system, "short": true})];
    if let Some(job) = &alert.job {
        fields.push(json!({"title": "Job", "value": job, "short": true}));
    }
    for (title, value) in [
        ("Status", field(d, "status")),
        ("Duration", duration(d)),
        ("Attempt", field(d, "attempt")),
        ("Exit code", field(d, "exit_code")),
        ("Failures in a row", field(d, "failure_streak")),
        ("Error", field(d, "error")),
    ] {
        if let Some(v) = value {
            fields.push(json!({"title": title, "value": v, "short": title != "Error"}));
        }
    }
    let text = match field(d, "output_tail") {
        Some(out) => format!("```{}```", tail(&out, 1500)),
        None => String::new(),
    };
    json!({
        "text": format!("{} {}", icon(alert), alert.summary),
        "attachments": [{
            "color": color,
            "fields": fields,
            "text": text,
            "footer": format!("cronmgr on {} · alert {}", crate::host::hostname(), alert.id),
        }],
    })
}

fn icon(alert: &Alert) -> &'static str {
    match severity(alert) {
        "info" => ":white_check_mark:",
        "critical" => ":rotating_light:",
        _ => ":warning:",
    }
}

/// The email's subject line.
pub fn subject(alert: &Alert) -> String {
    let state = match alert.state {
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "RESOLVED",
    };
    format!("[cronmgr] {state}: {}", alert.summary)
}

/// The email's plain-text body.
pub fn email_body(alert: &Alert) -> String {
    let d = &alert.details;
    let mut body = format!("{}\n\n", alert.summary);
    let mut line = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            body.push_str(&format!("{k:<18} {v}\n"));
        }
    };
    line("System:", Some(alert.system.clone()));
    line("Job:", alert.job.clone());
    line("Status:", field(d, "status"));
    line("Execution:", field(d, "execution_id"));
    line("Attempt:", field(d, "attempt"));
    line("Duration:", duration(d));
    line("Exit code:", field(d, "exit_code"));
    line("Failures in a row:", field(d, "failure_streak"));
    line("Error:", field(d, "error"));
    line("Host:", Some(crate::host::hostname()));
    line("When:", Some(crate::output::utc(alert.created_at)));
    if let Some(out) = field(d, "output_tail") {
        body.push_str("\nOutput (tail):\n");
        body.push_str(&out);
        if !out.ends_with('\n') {
            body.push('\n');
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn sample() -> Alert {
        Alert {
            id: 7,
            system: "default".into(),
            job_id: Some(1),
            job: Some("backup".into()),
            kind: AlertKind::Failed,
            state: AlertState::Firing,
            summary: "backup failed (exited with status 2)".into(),
            details: json!({
                "status": "failed", "execution_id": 42, "duration_ms": 1500, "attempt": 1,
                "exit_code": 2, "error": "exited with status 2", "output_tail": "line 1\nboom\n",
                "failure_streak": 1
            }),
            execution_id: Some(42),
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap(),
            resolved_at: None,
            deliveries: Vec::new(),
        }
    }

    #[test]
    fn the_webhook_payload_has_its_documented_fields() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 1).unwrap();
        let v = serde_json::to_value(payload(&sample(), now)).unwrap();
        for key in [
            "version",
            "id",
            "system",
            "job",
            "kind",
            "state",
            "severity",
            "summary",
            "created_at",
            "sent_at",
            "host",
            "details",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["kind"], "failed");
        assert_eq!(v["state"], "firing");
        assert_eq!(v["details"]["exit_code"], 2);
    }

    #[test]
    fn slack_carries_job_status_duration_attempt_and_output() {
        let v = slack(&sample());
        let text = v.to_string();
        for needle in ["backup", "default", "failed", "1s", "Attempt", "boom"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(v["attachments"][0]["color"], "warning");
    }

    #[test]
    fn email_subject_and_body() {
        let a = sample();
        assert_eq!(
            subject(&a),
            "[cronmgr] FIRING: backup failed (exited with status 2)"
        );
        let body = email_body(&a);
        assert!(body.contains("Exit code:"), "{body}");
        assert!(body.contains("boom"), "{body}");
    }

    #[test]
    fn tail_keeps_the_end_from_a_line_start() {
        assert_eq!(tail("short", 10), "short");
        let s = format!("{}\nlast line", "x".repeat(100));
        assert_eq!(tail(&s, 12), "last line");
        assert_eq!(tail("abcdefghij", 3), "hij");
    }
}
