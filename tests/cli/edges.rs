//! Rough edges a new user hit: what an execution's row says, retention in words, overdue next
//! runs, and the limits of listing options.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::harness::{time, Env};

fn with_builtins(env: &Env) {
    std::fs::write(
        &env.config,
        "[executors]\nenabled = [\"shell\", \"healthcheck\"]\n\
         [executors.shell]\nallow = [\"/usr/bin/false\", \"/usr/bin/sleep\", \"/usr/bin/true\"]\n",
    )
    .unwrap();
}

fn ms_between(e: &Value) -> i64 {
    let started: DateTime<Utc> = time(e, "started_at");
    let finished: DateTime<Utc> = time(e, "finished_at");
    (finished - started).num_milliseconds()
}

#[test]
fn duration_is_finished_minus_started_and_short_runs_have_no_cpu_share() {
    let env = Env::new();
    with_builtins(&env);
    env.ok(&["add", "f", "--schedule", "@daily", "--", "/usr/bin/false"]);
    env.ok(&[
        "add",
        "s",
        "--schedule",
        "@daily",
        "--",
        "/usr/bin/sleep",
        "1.2",
    ]);
    let quick = env.run_now_json("f").0;
    assert_eq!(quick["status"], "failed", "{quick}");
    assert_eq!(
        quick["duration_ms"].as_i64().unwrap(),
        ms_between(&quick),
        "{quick}"
    );
    assert!(quick["cpu_used_percent"].is_null(), "{quick}");
    let slow = env.run_now_json("s").0;
    assert_eq!(slow["status"], "success", "{slow}");
    assert_eq!(
        slow["duration_ms"].as_i64().unwrap(),
        ms_between(&slow),
        "{slow}"
    );
    assert!(slow["duration_ms"].as_i64().unwrap() >= 1200, "{slow}");
    assert!(slow["cpu_used_percent"].is_number(), "{slow}");
}

#[test]
fn a_failed_builtin_says_why_in_its_error_message() {
    let env = Env::new();
    with_builtins(&env);
    env.ok(&[
        "add",
        "full",
        "--schedule",
        "@daily",
        "--command",
        "healthcheck",
        "--param",
        "disks=[{\"path\": \"/\", \"min_free\": \"100%\"}]",
    ]);
    let e = env.run_now_json("full").0;
    let message = e["error_message"].as_str().unwrap();
    assert!(
        message.starts_with("exited with status 1: ") && message.contains("1 of 1 check(s) failed"),
        "{e}"
    );
}

#[test]
fn prune_says_what_retention_keeps_in_words() {
    let env = Env::new();
    env.ok(&["settings", "set", "keep_executions", "0"]);
    env.ok(&["settings", "set", "cleanup_days", "1"]);
    let out = env.ok(&["prune", "--dry-run"]);
    assert_eq!(
        out.trim(),
        "would delete 0 executions (keeping nothing older than 1 day)"
    );
    env.ok(&["settings", "set", "cleanup_days", "0"]);
    let out = env.ok(&["prune", "--dry-run"]);
    assert!(out.contains("keeping every execution"), "{out}");
}

#[test]
fn status_marks_next_runs_that_are_already_past() {
    let env = Env::new();
    with_builtins(&env);
    env.ok(&[
        "add",
        "past",
        "--schedule",
        "* * * * * *",
        "--",
        "/usr/bin/true",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = env.ok(&["status"]);
    assert!(out.contains("(overdue)"), "{out}");
    assert!(out.contains("no runner is up to start them"), "{out}");
    let json = env.json(&["status"]);
    assert_eq!(json["next_runs"][0]["overdue"], true, "{json}");
}

#[test]
fn listing_limits_and_since_are_checked() {
    let env = Env::new();
    for command in ["history", "audit", "alerts"] {
        let err = env.fails(2, &[command, "--limit", "0"]);
        assert!(err.contains("--limit"), "{command}: {err}");
    }
    let err = env.fails(2, &["history", "--since", "yesterday"]);
    assert!(err.contains("7d") && err.contains("RFC 3339"), "{err}");
    let err = env.fails(2, &["history", "--since", "99999999999d"]);
    assert!(err.contains("--since"), "{err}");
}

#[test]
fn apply_check_reports_every_problem_of_every_job() {
    let env = Env::new();
    let file = env.dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[job]]\nname = \"a\"\nschedule = \"61 * * * *\"\nargv = [\"/usr/bin/nonexistent\"]\n\n\
         [[job]]\nname = \"b\"\nschedule = @daily\nargv = [\"/usr/bin/true\"]\n\n\
         [[job]]\nname = \"c\"\nschedule = \"@daily\"\nargv = [\"/usr/bin/true\"]\nprioity = 3\n",
    )
    .unwrap();
    let err = env.fails(2, &["apply", "--check", file.to_str().unwrap()]);
    assert!(err.contains("4 problems"), "{err}");
    // Job a: its schedule and its program, both; b's TOML mistake hides nothing of c's.
    assert!(
        err.contains("jobs.toml:1: job \"a\"") && err.contains("61"),
        "{err}"
    );
    assert!(
        err.contains("not allowlisted") || err.contains("nonexistent"),
        "{err}"
    );
    assert!(err.contains("jobs.toml:8: "), "{err}");
    assert!(
        err.contains("jobs.toml:15: ") && err.contains("prioity"),
        "{err}"
    );
}
