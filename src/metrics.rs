//! Prometheus text exposition: `cronmgr metrics`, and the node_exporter textfile the runner
//! rewrites after every execution (`cronmgr run --metrics-file PATH`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::store::{Status, Store};

/// The runner, as the metrics show it.
#[derive(Debug, Clone, Default)]
pub struct RunnerView {
    pub up: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub running: u64,
    pub queued: u64,
    pub capacity: u64,
}

/// A label value, escaped as the exposition format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Every metric, as text.
pub fn render(store: &Store, runner: &RunnerView) -> crate::store::Result<String> {
    let jobs = store.job_counts()?;
    let mut out = String::new();
    let l =
        |system: &str, job: &str| format!("system=\"{}\",job=\"{}\"", label(system), label(job));

    family(
        &mut out,
        "cronmgr_job_last_success_timestamp_seconds",
        "gauge",
        "When the job last succeeded (Unix time).",
    );
    for j in &jobs {
        if let Some(t) = j.last_success_at {
            let _ = writeln!(
                out,
                "cronmgr_job_last_success_timestamp_seconds{{{}}} {}",
                l(&j.system, &j.job),
                t.timestamp_millis() as f64 / 1000.0
            );
        }
    }
    family(
        &mut out,
        "cronmgr_job_last_duration_seconds",
        "gauge",
        "How long the job's last finished execution took.",
    );
    for j in &jobs {
        if let Some(ms) = j.last_duration_ms {
            let _ = writeln!(
                out,
                "cronmgr_job_last_duration_seconds{{{}}} {}",
                l(&j.system, &j.job),
                ms as f64 / 1000.0
            );
        }
    }
    family(
        &mut out,
        "cronmgr_job_failure_streak",
        "gauge",
        "Runs that failed in a row since the last success or enable.",
    );
    for j in &jobs {
        let _ = writeln!(
            out,
            "cronmgr_job_failure_streak{{{}}} {}",
            l(&j.system, &j.job),
            j.failure_streak
        );
    }
    family(
        &mut out,
        "cronmgr_job_failures_total",
        "counter",
        "Executions that failed or timed out.",
    );
    for j in &jobs {
        let n = j.runs.get("failed").unwrap_or(&0) + j.runs.get("timeout").unwrap_or(&0);
        let _ = writeln!(
            out,
            "cronmgr_job_failures_total{{{}}} {n}",
            l(&j.system, &j.job)
        );
    }
    family(
        &mut out,
        "cronmgr_job_runs_total",
        "counter",
        "Finished executions by status.",
    );
    for j in &jobs {
        for status in Status::ALL.iter().filter(|s| **s != Status::Running) {
            let n = j.runs.get(status.as_str()).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "cronmgr_job_runs_total{{{},status=\"{status}\"}} {n}",
                l(&j.system, &j.job)
            );
        }
    }
    family(
        &mut out,
        "cronmgr_job_active",
        "gauge",
        "1 if the job is enabled.",
    );
    for j in &jobs {
        let _ = writeln!(
            out,
            "cronmgr_job_active{{{}}} {}",
            l(&j.system, &j.job),
            u8::from(j.is_active)
        );
    }
    family(
        &mut out,
        "cronmgr_alerts_active",
        "gauge",
        "Alert conditions open now.",
    );
    let _ = writeln!(
        out,
        "cronmgr_alerts_active {}",
        store.active_alert_count(None)?
    );
    family(
        &mut out,
        "cronmgr_runner_up",
        "gauge",
        "1 if a runner is up on this database.",
    );
    let _ = writeln!(out, "cronmgr_runner_up {}", u8::from(runner.up));
    if let Some(t) = runner.started_at.filter(|_| runner.up) {
        family(
            &mut out,
            "cronmgr_runner_start_timestamp_seconds",
            "gauge",
            "When the runner started (Unix time).",
        );
        let _ = writeln!(
            out,
            "cronmgr_runner_start_timestamp_seconds {}",
            t.timestamp()
        );
    }
    family(
        &mut out,
        "cronmgr_runner_running",
        "gauge",
        "Executions running now.",
    );
    let _ = writeln!(out, "cronmgr_runner_running {}", runner.running);
    family(
        &mut out,
        "cronmgr_runner_queued",
        "gauge",
        "Due executions waiting for a free slot.",
    );
    let _ = writeln!(out, "cronmgr_runner_queued {}", runner.queued);
    family(
        &mut out,
        "cronmgr_runner_capacity",
        "gauge",
        "Executions the runner may run at once.",
    );
    let _ = writeln!(out, "cronmgr_runner_capacity {}", runner.capacity);
    Ok(out)
}

/// Replace `path` with `text` atomically: write a temporary file beside it, then rename.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn renders_every_family_and_writes_atomically() {
        let store = Store::open_in_memory().unwrap();
        store
            .insert_job(
                &crate::store::Job::new("s", "j", "* * * * *", "shell"),
                Utc::now(),
                crate::store::test_by(),
            )
            .unwrap();
        let text = render(
            &store,
            &RunnerView {
                up: true,
                running: 1,
                queued: 2,
                capacity: 5,
                started_at: Some(Utc::now()),
            },
        )
        .unwrap();
        for needle in [
            "cronmgr_job_runs_total{system=\"s\",job=\"j\",status=\"success\"} 0",
            "cronmgr_job_failure_streak{system=\"s\",job=\"j\"} 0",
            "cronmgr_runner_up 1",
            "cronmgr_runner_queued 2",
            "# TYPE cronmgr_job_failures_total counter",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cronmgr.prom");
        write_atomic(&path, &text).unwrap();
        write_atomic(&path, "x 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x 1\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
