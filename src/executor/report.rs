//! `report`: a summary of cronmgr's own executions over a period.
//!
//! Params: `period` (duration, default "7d"), `system` (default: every system), `format`
//! ("text" or "json"), `errors` (latest error messages shown per job, default 3). Per job: runs
//! (executions that finished: success, failed, timeout, interrupted), success rate, mean and p95
//! duration, failures (failed + timeout), skipped and missed slots, and the latest errors.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tabled::{Table, Tabled};

use super::common::{typed, Dur};
use super::{Executor, ParamError, RunContext, RunError};
use crate::config::Config;
use crate::store::{Execution, ExecutionFilter, Status, Store};

pub struct Report;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    period: Option<Dur>,
    system: Option<String>,
    #[serde(default)]
    format: Format,
    errors: Option<usize>,
}

fn checked(params: &Map<String, Value>) -> Result<Params, ParamError> {
    let p: Params = typed("report", params)?;
    if p.period.is_some_and(|d| d.0.is_zero()) {
        return Err(ParamError::new("report: period must be more than 0"));
    }
    Ok(p)
}

/// One job's line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobSummary {
    pub system: String,
    pub job: String,
    pub runs: usize,
    pub successes: usize,
    pub failures: usize,
    pub interrupted: usize,
    pub skipped: usize,
    pub missed: usize,
    /// successes / runs, 0..=1; None without runs.
    pub success_rate: Option<f64>,
    pub mean_duration_ms: Option<i64>,
    pub p95_duration_ms: Option<i64>,
    /// Newest first: (started, message).
    pub latest_errors: Vec<LatestError>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatestError {
    pub at: DateTime<Utc>,
    pub status: Status,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub system: Option<String>,
    pub jobs: Vec<JobSummary>,
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarise executions (any order) per job.
pub fn summarise(executions: &[Execution], errors: usize) -> Vec<JobSummary> {
    let mut by_job: BTreeMap<(String, String), Vec<&Execution>> = BTreeMap::new();
    for e in executions {
        by_job
            .entry((e.system.clone(), e.job.clone()))
            .or_default()
            .push(e);
    }
    by_job
        .into_iter()
        .map(|((system, job), mut list)| {
            list.sort_by_key(|e| std::cmp::Reverse(e.id));
            let count = |s: Status| list.iter().filter(|e| e.status == s).count();
            let successes = count(Status::Success);
            let failures = count(Status::Failed) + count(Status::Timeout);
            let interrupted = count(Status::Interrupted);
            let runs = successes + failures + interrupted;
            let mut durations: Vec<i64> = list
                .iter()
                .filter(|e| {
                    matches!(
                        e.status,
                        Status::Success | Status::Failed | Status::Timeout | Status::Interrupted
                    )
                })
                .filter_map(|e| e.duration_ms)
                .collect();
            durations.sort_unstable();
            let mean = (!durations.is_empty())
                .then(|| durations.iter().sum::<i64>() / durations.len() as i64);
            let latest_errors = list
                .iter()
                .filter(|e| matches!(e.status, Status::Failed | Status::Timeout))
                .take(errors)
                .map(|e| LatestError {
                    at: e.started_at.unwrap_or(e.scheduled_for),
                    status: e.status,
                    message: e
                        .error_message
                        .clone()
                        .unwrap_or_else(|| "(no message)".into()),
                })
                .collect();
            JobSummary {
                system,
                job,
                runs,
                successes,
                failures,
                interrupted,
                skipped: count(Status::Skipped),
                missed: count(Status::Missed),
                success_rate: (runs > 0).then(|| successes as f64 / runs as f64),
                mean_duration_ms: mean,
                p95_duration_ms: percentile(&durations, 95.0),
                latest_errors,
            }
        })
        .collect()
}

#[derive(Tabled)]
struct Line {
    job: String,
    runs: usize,
    #[tabled(rename = "success")]
    success: String,
    #[tabled(rename = "mean")]
    mean: String,
    #[tabled(rename = "p95")]
    p95: String,
    failures: usize,
    #[tabled(rename = "skipped/missed")]
    skipped_missed: String,
}

fn ms(v: Option<i64>) -> String {
    v.map_or("-".into(), |ms| {
        crate::duration::Human(Duration::from_millis(ms as u64)).to_string()
    })
}

fn text(s: &Summary) -> String {
    let mut out = format!(
        "executions from {} to {}{}\n",
        s.since.format("%Y-%m-%d %H:%M UTC"),
        s.until.format("%Y-%m-%d %H:%M UTC"),
        s.system
            .as_ref()
            .map(|n| format!(", system {n}"))
            .unwrap_or_default()
    );
    if s.jobs.is_empty() {
        out.push_str("no executions\n");
        return out;
    }
    let many_systems = s.jobs.iter().any(|j| j.system != s.jobs[0].system);
    let lines: Vec<Line> = s
        .jobs
        .iter()
        .map(|j| Line {
            job: if many_systems {
                format!("{}/{}", j.system, j.job)
            } else {
                j.job.clone()
            },
            runs: j.runs,
            success: j
                .success_rate
                .map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
            mean: ms(j.mean_duration_ms),
            p95: ms(j.p95_duration_ms),
            failures: j.failures,
            skipped_missed: format!("{}/{}", j.skipped, j.missed),
        })
        .collect();
    out.push_str(
        &Table::new(lines)
            .with(tabled::settings::Style::psql())
            .to_string(),
    );
    out.push('\n');
    for j in s.jobs.iter().filter(|j| !j.latest_errors.is_empty()) {
        out.push_str(&format!("\nlatest errors of {}:\n", j.job));
        for e in &j.latest_errors {
            out.push_str(&format!(
                "  {} {}: {}\n",
                e.at.format("%Y-%m-%d %H:%M:%S"),
                e.status.as_str(),
                e.message
            ));
        }
    }
    out
}

impl Executor for Report {
    fn name(&self) -> &'static str {
        "report"
    }

    fn summary(&self) -> &'static str {
        "summary of cronmgr's executions per job: period, system, format (text|json), errors"
    }

    fn check(&self, params: &Map<String, Value>, _config: &Config) -> Result<(), ParamError> {
        checked(params).map(|_| ())
    }

    fn run(
        &self,
        params: &Map<String, Value>,
        _config: &Config,
        ctx: &RunContext,
        out: &mut dyn Write,
    ) -> Result<(), RunError> {
        let p = checked(params)?;
        if !crate::store::is_postgres(&ctx.db) && !ctx.db.is_file() {
            return Err(RunError::Failed(format!(
                "no cronmgr database at {}",
                ctx.db.display()
            )));
        }
        let store = Store::open(&ctx.db).map_err(|e| {
            RunError::Failed(format!(
                "opening {}: {e}",
                crate::store::display_db(&ctx.db)
            ))
        })?;
        let until = Utc::now();
        let period = p.period.map_or(Duration::from_secs(7 * 86_400), |d| d.0);
        let since = until
            - chrono::Duration::from_std(period)
                .map_err(|_| RunError::failed("report: period is too long"))?;
        let executions = store
            .executions(&ExecutionFilter {
                system: p.system.clone(),
                since: Some(since),
                ..ExecutionFilter::default()
            })
            .map_err(|e| RunError::Failed(format!("reading executions: {e}")))?;
        let summary = Summary {
            since,
            until,
            system: p.system,
            jobs: summarise(&executions, p.errors.unwrap_or(3)),
        };
        let body = match p.format {
            Format::Text => text(&summary),
            Format::Json => {
                let mut s = serde_json::to_string_pretty(&summary)
                    .map_err(|e| RunError::Failed(e.to_string()))?;
                s.push('\n');
                s
            }
        };
        out.write_all(body.as_bytes())
            .map_err(|e| RunError::io("writing the report", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Finish, Job, NewExecution, Trigger};
    use serde_json::json;

    fn record(store: &Store, job_id: i64, i: i64, status: Status, ms: i64, err: Option<&str>) {
        let t = Utc::now() - chrono::Duration::seconds(100 - i);
        let id = store
            .claim(&NewExecution {
                job_id,
                status: Status::Running,
                scheduled_for: t,
                started_at: Some(t),
                triggered_by: Trigger::Schedule,
                attempt: 1,
                error_message: None,
                runner_pid: None,
                runner_id: None,
                fleet: None,
                caused_by: None,
            })
            .unwrap()
            .unwrap();
        store
            .finish(
                id,
                &Finish {
                    status,
                    finished_at: t,
                    duration_ms: ms,
                    output: String::new(),
                    error_message: err.map(str::to_string),
                    exit_code: None,
                    memory_used_mb: None,
                    cpu_used_percent: None,
                    memory_upper_bound: None,
                    cpu_quota_enforced: None,
                },
            )
            .unwrap();
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[], 95.0), None);
    }

    #[test]
    fn summarises_a_real_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cronmgr.db");
        let store = Store::open(&path).unwrap();
        let job = store
            .insert_job(
                &Job::new("default", "nightly", "@daily", "shell"),
                Utc::now(),
                crate::store::test_by(),
            )
            .unwrap();
        for i in 0..18 {
            record(&store, job.id, i, Status::Success, 100 + i, None);
        }
        record(
            &store,
            job.id,
            18,
            Status::Failed,
            1000,
            Some("exited with status 1"),
        );
        record(
            &store,
            job.id,
            19,
            Status::Timeout,
            5000,
            Some("timed out after 5s"),
        );
        let ctx = RunContext { db: path.clone() };
        let c = Config::defaults("/nonexistent".into());
        let mut out = Vec::new();
        Report
            .run(
                json!({"format": "json"}).as_object().unwrap(),
                &c,
                &ctx,
                &mut out,
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let j = &v["jobs"][0];
        assert_eq!(j["job"], "nightly");
        assert_eq!(j["runs"], 20);
        assert_eq!(j["failures"], 2);
        assert_eq!(j["success_rate"], 0.9);
        assert_eq!(j["p95_duration_ms"], 1000);
        assert_eq!(j["latest_errors"][0]["message"], "timed out after 5s");
        let mut out = Vec::new();
        Report
            .run(
                json!({"period": "1d"}).as_object().unwrap(),
                &c,
                &ctx,
                &mut out,
            )
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("nightly") && text.contains("90.0%"), "{text}");
        assert!(text.contains("latest errors of nightly"), "{text}");
        // Another system has nothing.
        let mut out = Vec::new();
        Report
            .run(
                json!({"system": "other"}).as_object().unwrap(),
                &c,
                &ctx,
                &mut out,
            )
            .unwrap();
        assert!(String::from_utf8(out).unwrap().contains("no executions"));
    }

    #[test]
    fn bad_params() {
        let c = Config::defaults("/nonexistent".into());
        for (v, needle) in [
            (json!({"format": "xml"}), "format"),
            (json!({"period": "0s"}), "more than 0"),
            (json!({"period": "a week"}), "period"),
            (json!({"jobs": 1}), "unknown field `jobs`"),
        ] {
            let err = Report.check(v.as_object().unwrap(), &c).unwrap_err();
            assert!(err.0.contains(needle), "{v}: {err}");
        }
    }
}
