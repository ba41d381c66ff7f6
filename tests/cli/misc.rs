//! Small structural items: where `run --once` prints its summary, and how a held runner lock exits.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use crate::harness::{at, soon, stop, Env};

/// Two jobs due now: `good` (succeeds) and `bad` (fails).
fn two_due_jobs(env: &Env) {
    let t = soon(1);
    env.ok(&["add", "good", "--schedule", &at(t), "--", "/bin/true"]);
    env.ok(&["add", "bad", "--schedule", &at(t), "--", "/bin/false"]);
    while Utc::now() < t + chrono::Duration::milliseconds(100) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_once_prints_its_human_summary_on_stdout() {
    let env = Env::new();
    two_due_jobs(&env);
    let out = env.cmd().args(["run", "--once"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(
        stdout, "ran 2 (succeeded 1, failed 1, interrupted 0, cancelled 0), skipped 0, missed 0\n",
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains("ran 2"),
        "summary also on stderr: {stderr}"
    );
}

#[test]
fn run_once_json_prints_one_summary_object_on_stdout() {
    let env = Env::new();
    two_due_jobs(&env);
    let out = env
        .cmd()
        .args(["--json", "run", "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let fields: Vec<&str> = summary
        .as_object()
        .expect("an object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut expected = [
        "started",
        "succeeded",
        "failed",
        "interrupted",
        "cancelled",
        "skipped",
        "missed",
    ];
    expected.sort_unstable();
    let mut fields = fields;
    fields.sort_unstable();
    assert_eq!(fields, expected);
    assert_eq!(summary["started"], 2);
    assert_eq!(summary["succeeded"], 1);
    assert_eq!(summary["failed"], 1);
}

#[test]
fn a_runner_lock_held_by_another_runner_exits_1_naming_its_pid() {
    if crate::harness::on_postgres() {
        eprintln!("skipped on PostgreSQL: a shared database takes many runners, no lock file");
        return;
    }
    let env = Env::new();
    env.create_db();
    let mut first = env.spawn_runner(&[]);
    let pid = env
        .wait_for(Duration::from_secs(15), || {
            cronmgr::runner::runner_pid(&env.db)
        })
        .unwrap_or_else(|| panic!("the runner never took the lock; log:\n{}", env.runner_log()));
    assert_eq!(pid, first.id());
    let err = env.fails(1, &["run", "--once"]);
    assert!(
        err.contains("another runner") && err.contains(&format!("pid {pid}")),
        "{err}"
    );
    stop(&mut first);
}
