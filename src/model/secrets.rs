//! Job secrets: environment values the child gets but no listing shows.
//!
//! In a job's parameters, a secret is an object `{"secret": "VALUE"}` in place of a string, e.g.
//! the shell executor's `env = { TOKEN = { secret = "s3cr3t" } }`. Every output of a job (`show`,
//! `list --json`, the JSON of `add`/`edit`/`rm`, the audit log) shows it as
//! `{"secret": "…(redacted)"}`; `export` (and `edit` in an editor) writes `{ secret = "(stored)" }`,
//! the **keep marker**, which `apply` and `edit` replace by the value already stored for the same
//! job and key, so export → apply changes nothing and the secret survives.

use serde_json::{Map, Value};

/// The key of a secret value's object.
pub const KEY: &str = "secret";
/// Written by `export` in place of a secret's value: "keep the stored one".
pub const KEEP: &str = "(stored)";
/// Shown in place of a secret's value.
pub const MARK: &str = super::redact::MARK;
/// Shown in an audit diff's `after` when the secret's value changed.
pub const CHANGED: &str = "…(redacted, changed)";

/// The secret's value when `v` is `{"secret": "…"}`.
pub fn value(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(KEY).and_then(Value::as_str),
        _ => None,
    }
}

fn with(text: &str) -> Value {
    let mut m = Map::new();
    m.insert(KEY.into(), Value::String(text.into()));
    Value::Object(m)
}

/// Apply `f` to every secret in `v`, with its path (`env.TOKEN`).
fn walk(v: &mut Value, path: &str, f: &mut dyn FnMut(&str, &mut Value)) {
    if value(v).is_some() {
        f(path, v);
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, &p, f);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                walk(child, &format!("{path}[{i}]"), f);
            }
        }
        _ => {}
    }
}

fn each(params: &mut Map<String, Value>, f: &mut dyn FnMut(&str, &mut Value)) {
    for (k, v) in params.iter_mut() {
        walk(v, k, f);
    }
}

/// The secrets of some parameters, by path.
pub fn collect(params: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut copy = params.clone();
    each(&mut copy, &mut |path, v| {
        if let Some(s) = value(v) {
            out.push((path.to_string(), s.to_string()));
        }
    });
    out
}

/// Every secret shown as `{"secret": "…(redacted)"}`.
pub fn redact(params: &Map<String, Value>) -> Map<String, Value> {
    let mut out = params.clone();
    each(&mut out, &mut |_, v| *v = with(MARK));
    out
}

/// As [`redact`], but a secret whose value differs from `before`'s at the same path shows
/// [`CHANGED`]: an audit diff then says a secret changed without saying what to.
pub fn redact_against(
    params: &Map<String, Value>,
    before: &Map<String, Value>,
) -> Map<String, Value> {
    let old = collect(before);
    let mut out = params.clone();
    each(&mut out, &mut |path, v| {
        let same = old
            .iter()
            .any(|(p, s)| p == path && Some(s.as_str()) == value(v));
        *v = with(if same { MARK } else { CHANGED });
    });
    out
}

/// Every secret replaced by the keep marker (for export).
pub fn keep_markers(params: &Map<String, Value>) -> Map<String, Value> {
    let mut out = params.clone();
    each(&mut out, &mut |_, v| *v = with(KEEP));
    out
}

/// Replace each keep marker by the secret stored at the same path in `stored` (the job's current
/// parameters, if it exists). Errors name the paths that have no stored secret.
pub fn resolve(
    params: &mut Map<String, Value>,
    stored: Option<&Map<String, Value>>,
) -> Result<(), String> {
    let old = stored.map(collect).unwrap_or_default();
    let mut missing = Vec::new();
    each(params, &mut |path, v| {
        if value(v) != Some(KEEP) {
            return;
        }
        match old.iter().find(|(p, _)| p == path) {
            Some((_, s)) => *v = with(s),
            None => missing.push(path.to_string()),
        }
    });
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} says {{ secret = {KEEP:?} }} (keep the stored secret) but no secret is stored there; give the value",
            missing.join(", ")
        ))
    }
}

/// [`resolve`] for a whole job: its parameters, and its alert URLs (`alert_slack`,
/// `alert_webhook`), which `export` also writes as the keep marker, against the stored job.
pub fn resolve_job(job: &mut super::Job, stored: Option<&super::Job>) -> Result<(), String> {
    resolve(&mut job.params, stored.map(|s| &s.params))?;
    for (key, url, kept) in [
        (
            "alert_slack",
            &mut job.alert_slack,
            stored.and_then(|s| s.alert_slack.clone()),
        ),
        (
            "alert_webhook",
            &mut job.alert_webhook,
            stored.and_then(|s| s.alert_webhook.clone()),
        ),
    ] {
        if url.as_deref() == Some(KEEP) {
            *url = Some(kept.ok_or_else(|| {
                format!(
                    "{key} says {KEEP:?} (keep the stored URL) but none is stored; give the URL"
                )
            })?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Map<String, Value> {
        match json!({"argv": ["/bin/true"], "env": {"A": "plain", "TOKEN": {"secret": "s3cr3t"}}}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn redacts_and_keeps() {
        let p = params();
        let shown = Value::Object(redact(&p)).to_string();
        assert!(!shown.contains("s3cr3t") && shown.contains("redacted") && shown.contains("plain"));
        assert_eq!(collect(&p), vec![("env.TOKEN".into(), "s3cr3t".into())]);
        let mut exported = keep_markers(&p);
        assert!(!Value::Object(exported.clone())
            .to_string()
            .contains("s3cr3t"));
        resolve(&mut exported, Some(&p)).unwrap();
        assert_eq!(exported, p);
        let mut orphan = keep_markers(&p);
        let err = resolve(&mut orphan, None).unwrap_err();
        assert!(err.contains("env.TOKEN"), "{err}");
    }

    #[test]
    fn a_jobs_alert_urls_are_kept_by_the_marker() {
        let mut stored = super::super::Job::new("s", "j", "@daily", "shell");
        stored.alert_slack = Some("https://hooks.slack.com/services/T/B/X".into());
        let mut exported = stored.clone();
        exported.alert_slack = Some(KEEP.into());
        resolve_job(&mut exported, Some(&stored)).unwrap();
        assert_eq!(exported, stored);
        let mut orphan = stored.clone();
        orphan.alert_webhook = Some(KEEP.into());
        let err = resolve_job(&mut orphan, Some(&stored)).unwrap_err();
        assert!(err.contains("alert_webhook"), "{err}");
    }

    #[test]
    fn a_changed_secret_says_so_without_its_value() {
        let before = params();
        let mut after = params();
        after["env"]["TOKEN"] = json!({"secret": "new"});
        let shown = Value::Object(redact_against(&after, &before)).to_string();
        assert!(
            shown.contains("changed") && !shown.contains("new\""),
            "{shown}"
        );
        let same = Value::Object(redact_against(&before, &before)).to_string();
        assert!(!same.contains("changed"));
    }
}
