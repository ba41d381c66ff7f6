//! A [`Job`] to its `[[job]]` table (every field at its default left out, secrets as keep
//! markers), tables to a file, and which file fields differ between two versions of a job.

use serde_json::Value as Json;
use toml::Value as Toml;

use super::{JobFile, JobSpec, Secs, Size};
use crate::model::secrets::KEEP;
use crate::store::{Backoff, CatchUp, Job};

/// Render jobs as a job file.
pub fn render(specs: Vec<JobSpec>) -> Result<String, String> {
    toml::to_string(&JobFile { job: specs }).map_err(|e| e.to_string())
}

impl JobSpec {
    /// The table for a job, leaving out every field at its default.
    /// Secrets are written as the keep marker (`{ secret = "(stored)" }`), never their value.
    pub fn from_job(job: &Job) -> Result<JobSpec, String> {
        let mut params = crate::model::secrets::keep_markers(&job.params);
        let mut argv = None;
        if job.command == "shell" {
            if let Some(Json::Array(items)) = params.get("argv") {
                let strings: Option<Vec<String>> =
                    items.iter().map(|v| v.as_str().map(String::from)).collect();
                if let Some(strings) = strings.filter(|s| !s.is_empty()) {
                    argv = Some(strings);
                    params.remove("argv");
                }
            }
        }
        let params = if params.is_empty() {
            None
        } else {
            let mut table = toml::Table::new();
            for (k, v) in &params {
                let v = json_to_toml(v)
                    .ok_or_else(|| format!("parameter {k:?} ({v}) cannot be written as TOML"))?;
                table.insert(k.clone(), v);
            }
            Some(table)
        };
        let secs = |v: Option<u64>| v.map(Secs::of);
        Ok(JobSpec {
            name: job.name.clone(),
            description: job.description.clone().filter(|d| !d.is_empty()),
            schedule: job.schedule.clone(),
            after: (!job.after.is_empty()).then(|| job.after.clone()),
            timezone: (!job.timezone.is_empty()).then(|| job.timezone.clone()),
            command: (job.command != "shell").then(|| job.command.clone()),
            argv,
            category: job.category.clone(),
            priority: (job.priority != 5).then_some(i64::from(job.priority)),
            timeout: secs(job.timeout),
            retries: (job.retries != 0).then_some(job.retries),
            retry_delay: (job.retry_delay != 60).then(|| Secs::of(job.retry_delay)),
            backoff: (job.backoff != Backoff::Linear).then_some(job.backoff),
            max_runtime: secs(job.max_runtime),
            allow_concurrent: job.allow_concurrent.then_some(true),
            catch_up: (job.catch_up != CatchUp::None).then_some(job.catch_up),
            starting_deadline: secs(job.starting_deadline),
            jitter: secs(job.jitter),
            enabled: (!job.is_active).then_some(false),
            alerts: (!job.alerts_enabled).then_some(false),
            alert_email: job.alert_email.clone(),
            alert_slack: job.alert_slack.as_ref().map(|_| KEEP.to_string()),
            alert_webhook: job.alert_webhook.as_ref().map(|_| KEEP.to_string()),
            escalate_after: job.escalate_after,
            disable_after: job.disable_after,
            max_silence: secs(job.max_silence),
            critical: job.is_critical.then_some(true),
            memory_limit: job
                .memory_limit
                .map(|m| Size::Text(crate::model::size::compact_bytes(m))),
            cpu_limit: secs(job.cpu_limit),
            cpu_quota: job.cpu_quota.map(|q| match q % 100 {
                0 => Toml::Integer(i64::from(q / 100)),
                _ => Toml::String(format!("{q}%")),
            }),
            nofile_limit: job.nofile_limit,
            nproc_limit: job.nproc_limit,
            user: job.run_user.clone(),
            group: job.run_group.clone(),
            runner_labels: (!job.runner_labels.is_empty()).then(|| job.runner_labels.clone()),
            params,
        })
    }
}

/// The fields a file controls that differ between two versions of a job, by their file names.
/// Compares every stored field except bookkeeping, so fields added to [`Job`] later count too.
pub fn changed_fields(old: &Job, new: &Job) -> Vec<String> {
    const BOOKKEEPING: &[&str] = &[
        "id",
        "system",
        "created_at",
        "updated_at",
        "last_run_at",
        "next_run_at",
        // Kept by the runner, not by files.
        "disabled_reason",
        "failure_streak",
        "last_success_at",
        "enabled_at",
    ];
    let as_map = |job: &Job| match serde_json::to_value(job) {
        Ok(Json::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (a, b) = (as_map(old), as_map(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !BOOKKEEPING.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| match k.as_str() {
            "is_active" => "enabled".to_string(),
            "is_critical" => "critical".to_string(),
            "run_user" => "user".to_string(),
            "run_group" => "group".to_string(),
            _ => k.clone(),
        })
        .collect()
}

/// JSON to TOML; None for what TOML cannot hold (null, integers beyond i64).
pub fn json_to_toml(v: &Json) -> Option<Toml> {
    Some(match v {
        Json::Null => return None,
        Json::Bool(b) => Toml::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Toml::Integer(i),
            None if n.is_f64() => Toml::Float(n.as_f64()?),
            None => return None,
        },
        Json::String(s) => Toml::String(s.clone()),
        Json::Array(items) => Toml::Array(items.iter().map(json_to_toml).collect::<Option<_>>()?),
        Json::Object(map) => Toml::Table(
            map.iter()
                .map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}
