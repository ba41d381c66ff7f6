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
    /// On a shared PostgreSQL database, every runner that has not stopped or been declared lost
    /// (whatever host they run on); None on SQLite, where the runner is the one above.
    pub fleet: Option<Vec<FleetMember>>,
}

/// One runner of a fleet, as the metrics show it.
#[derive(Debug, Clone, Default)]
pub struct FleetMember {
    pub id: i64,
    pub host: String,
    pub pid: u32,
    /// Heartbeat within its lease (false: silent, about to be declared lost).
    pub up: bool,
    /// Seconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_seconds: f64,
    pub running: u64,
    /// `run --max-concurrent`, if it set one.
    pub capacity: Option<u32>,
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
    if let Some(fleet) = &runner.fleet {
        render_fleet(&mut out, fleet);
    }
    Ok(out)
}

/// The runners sharing a PostgreSQL database, one series per runner (labelled by its id, host
/// and pid), whichever host renders them.
fn render_fleet(out: &mut String, fleet: &[FleetMember]) {
    let l = |m: &FleetMember| {
        format!(
            "runner=\"{}\",host=\"{}\",pid=\"{}\"",
            m.id,
            label(&m.host),
            m.pid
        )
    };
    family(
        out,
        "cronmgr_fleet_runners_up",
        "gauge",
        "Runners sharing this database whose heartbeat is within their lease.",
    );
    let up = fleet.iter().filter(|m| m.up).count();
    let _ = writeln!(out, "cronmgr_fleet_runners_up {up}");
    family(
        out,
        "cronmgr_fleet_runner_up",
        "gauge",
        "1 if the runner's heartbeat is within its lease, 0 if it is silent (about to be declared lost).",
    );
    for m in fleet {
        let _ = writeln!(
            out,
            "cronmgr_fleet_runner_up{{{}}} {}",
            l(m),
            u8::from(m.up)
        );
    }
    family(
        out,
        "cronmgr_fleet_runner_heartbeat_age_seconds",
        "gauge",
        "Seconds since the runner's last heartbeat, by the database's clock.",
    );
    for m in fleet {
        let _ = writeln!(
            out,
            "cronmgr_fleet_runner_heartbeat_age_seconds{{{}}} {}",
            l(m),
            m.heartbeat_age_seconds
        );
    }
    family(
        out,
        "cronmgr_fleet_runner_running",
        "gauge",
        "Executions the runner is running now.",
    );
    for m in fleet {
        let _ = writeln!(
            out,
            "cronmgr_fleet_runner_running{{{}}} {}",
            l(m),
            m.running
        );
    }
    family(
        out,
        "cronmgr_fleet_runner_capacity",
        "gauge",
        "Executions the runner may run at once (run --max-concurrent), where it set a cap.",
    );
    for m in fleet {
        if let Some(c) = m.capacity {
            let _ = writeln!(out, "cronmgr_fleet_runner_capacity{{{}}} {c}", l(m));
        }
    }
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
                fleet: None,
            },
        )
        .unwrap();
        assert!(!text.contains("cronmgr_fleet"), "{text}");
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

    #[test]
    fn a_fleet_renders_one_series_per_runner() {
        let store = Store::open_in_memory().unwrap();
        let member = |id: i64, host: &str, up: bool| FleetMember {
            id,
            host: host.into(),
            pid: 7,
            up,
            heartbeat_age_seconds: 1.5,
            running: 2,
            capacity: (id == 1).then_some(4),
        };
        let text = render(
            &store,
            &RunnerView {
                up: true,
                fleet: Some(vec![member(1, "a\"b", true), member(2, "c", false)]),
                ..RunnerView::default()
            },
        )
        .unwrap();
        for needle in [
            "cronmgr_fleet_runners_up 1\n",
            "cronmgr_fleet_runner_up{runner=\"1\",host=\"a\\\"b\",pid=\"7\"} 1\n",
            "cronmgr_fleet_runner_up{runner=\"2\",host=\"c\",pid=\"7\"} 0\n",
            "cronmgr_fleet_runner_heartbeat_age_seconds{runner=\"2\",host=\"c\",pid=\"7\"} 1.5\n",
            "cronmgr_fleet_runner_running{runner=\"1\",host=\"a\\\"b\",pid=\"7\"} 2\n",
            "cronmgr_fleet_runner_capacity{runner=\"1\",host=\"a\\\"b\",pid=\"7\"} 4\n",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        assert!(!text.contains("cronmgr_fleet_runner_capacity{runner=\"2\""));
    }
}
