//! Audit diffs: which fields of a job or of settings a write changed, secrets redacted.

use serde_json::{Map, Value};

use super::{Job, Settings};

/// Job fields the runner keeps, left out of diffs.
const BOOKKEEPING: &[&str] = &[
    "id",
    "created_at",
    "updated_at",
    "last_run_at",
    "next_run_at",
    "failure_streak",
    "last_success_at",
    "enabled_at",
];

fn job_map(job: &Job, secrets_against: Option<&Job>) -> Map<String, Value> {
    let mut shown = job.redacted();
    shown.params = match secrets_against {
        Some(before) => super::secrets::redact_against(&job.params, &before.params),
        None => super::secrets::redact(&job.params),
    };
    match serde_json::to_value(&shown) {
        Ok(Value::Object(mut m)) => {
            for k in BOOKKEEPING {
                m.remove(*k);
            }
            m
        }
        _ => Map::new(),
    }
}

/// The changed fields of two maps, with both values (null where a side is missing).
fn diff_maps(before: &Map<String, Value>, after: &Map<String, Value>) -> Value {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Map::new();
    for k in keys {
        let (b, a) = (
            before.get(k).unwrap_or(&Value::Null),
            after.get(k).unwrap_or(&Value::Null),
        );
        if b != a {
            out.insert(k.clone(), serde_json::json!({"before": b, "after": a}));
        }
    }
    Value::Object(out)
}

/// A job's changed fields, secrets redacted (a changed secret says so, never its value).
pub fn job_diff(before: Option<&Job>, after: Option<&Job>) -> Value {
    let b = before.map(|j| job_map(j, None)).unwrap_or_default();
    let a = after.map(|j| job_map(j, before)).unwrap_or_default();
    // A changed secret redacts to the same text on both sides: compare the raw parameters too.
    let mut diff = diff_maps(&b, &a);
    if let (Some(old), Some(new), Value::Object(m)) = (before, after, &mut diff) {
        if old.params != new.params && !m.contains_key("params") {
            m.insert(
                "params".into(),
                serde_json::json!({"before": b.get("params"), "after": a.get("params")}),
            );
        }
        // A URL changed behind the same host redacts to the same text: say it changed.
        for (key, old_url, new_url) in [
            ("alert_slack", &old.alert_slack, &new.alert_slack),
            ("alert_webhook", &old.alert_webhook, &new.alert_webhook),
        ] {
            if old_url != new_url && !m.contains_key(key) {
                m.insert(
                    key.into(),
                    serde_json::json!({"before": b.get(key), "after": super::secrets::CHANGED}),
                );
            }
        }
    }
    diff
}

/// Settings' changed keys, secrets redacted.
pub fn settings_diff(before: &Settings, after: &Settings) -> Value {
    let as_map = |s: &Settings| match serde_json::to_value(s.redacted()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut diff = diff_maps(&as_map(before), &as_map(after));
    if let Value::Object(m) = &mut diff {
        for key in super::SECRET_KEYS {
            if before.get(key) != after.get(key) && !m.contains_key(*key) {
                m.insert(
                    (*key).to_string(),
                    serde_json::json!({"before": super::secrets::MARK, "after": super::secrets::CHANGED}),
                );
            }
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_alert_urls_are_redacted_and_a_change_behind_the_same_host_shows() {
        let before = Job::new("s", "j", "@daily", "shell");
        let mut after = before.clone();
        after.alert_slack = Some("https://hooks.slack.com/services/T/B/FIRST".into());
        let added = job_diff(Some(&before), Some(&after)).to_string();
        assert!(!added.contains("FIRST"), "{added}");
        assert!(
            added.contains("https://hooks.slack.com/…(redacted)"),
            "{added}"
        );
        let mut changed = after.clone();
        changed.alert_slack = Some("https://hooks.slack.com/services/T/B/SECOND".into());
        let diff = job_diff(Some(&after), Some(&changed));
        let text = diff.to_string();
        assert!(
            !text.contains("FIRST") && !text.contains("SECOND"),
            "{text}"
        );
        assert_eq!(diff["alert_slack"]["after"], super::super::secrets::CHANGED);
        assert_eq!(
            job_diff(Some(&after), Some(&after.clone())),
            serde_json::json!({})
        );
    }
}
