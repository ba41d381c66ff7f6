//! `cronmgr migrate --to`: a real SQLite database, copied into PostgreSQL (or another file), reads
//! back the same through every command.

use serde_json::Value;

use crate::harness::{psql, Env};

/// A database with some of everything: jobs in two systems, history with output (manual runs, a
/// failure, the runner's state from `run --once`), changed settings, a removed job.
fn build(env: &Env) {
    env.ok(&[
        "add",
        "backup",
        "-s",
        "@daily",
        "--",
        "/usr/bin/echo",
        "backing up",
    ]);
    env.ok(&[
        "add",
        "report",
        "-s",
        "0 3 * * *",
        "-d",
        "the nightly report",
        "--priority",
        "2",
        "--",
        "/usr/bin/printf",
        "one\\ntwo\\n",
    ]);
    env.ok(&["add", "flaky", "-s", "@hourly", "--", "/usr/bin/false"]);
    env.ok(&["add", "gone", "-s", "@daily", "--", "/usr/bin/true"]);
    env.ok(&[
        "add",
        "tick",
        "-s",
        "* * * * * *",
        "--",
        "/usr/bin/echo",
        "tick",
    ]);
    env.ok(&[
        "--system",
        "other",
        "add",
        "cleanup",
        "-s",
        "@weekly",
        "--",
        "/usr/bin/true",
    ]);
    env.ok(&["run-now", "backup"]);
    env.ok(&["run-now", "backup"]);
    env.ok(&["run-now", "report"]);
    env.ok(&["run-now", "gone"]);
    env.fails(3, &["run-now", "flaky"]);
    env.ok(&["run", "--once"]);
    env.ok(&["settings", "set", "keep_executions", "500"]);
    env.ok(&["settings", "set", "alert_email", "ops@example.com"]);
    env.ok(&["disable", "tick"]);
    env.ok(&["rm", "gone"]);
}

/// What the commands print that the copy must preserve.
const VIEWS: &[&[&str]] = &[
    &["list"],
    &["--json", "list"],
    &["--system", "other", "--json", "list"],
    &["history", "--limit", "1000"],
    &["--json", "history", "--limit", "1000"],
    &["--json", "history", "backup"],
    &["audit", "--limit", "1000"],
    &["--json", "audit", "--limit", "1000"],
    &["--json", "settings"],
    &["show", "report"],
];

fn views(env: &Env) -> Vec<String> {
    let mut out: Vec<String> = VIEWS.iter().map(|args| env.ok(args)).collect();
    let history = env.json(&["history", "--limit", "1000"]);
    for e in history.as_array().expect("array") {
        out.push(env.ok(&["logs", &e["id"].to_string()]));
    }
    out
}

fn migrate(env: &Env, to: &str) -> std::process::Output {
    env.cmd()
        .args(["--json", "migrate", "--to", to])
        .output()
        .expect("run")
}

fn max_id(v: &Value) -> i64 {
    v.as_array()
        .expect("array")
        .iter()
        .map(|j| j["id"].as_i64().expect("id"))
        .max()
        .unwrap_or(0)
}

/// Migrate `env` into `target` (an empty database) and check everything reads back the same.
fn check(env: &Env, target: &Env) {
    build(env);
    let before = views(env);
    let out = migrate(env, &target.db.to_string_lossy());
    assert!(
        out.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let tables = report["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), 10, "{report}");
    for t in tables {
        assert_eq!(t["source"], t["target"], "{report}");
    }
    let count = |name: &str| {
        tables.iter().find(|t| t["table"] == name).expect(name)["target"]
            .as_u64()
            .unwrap()
    };
    // backup twice, report, flaky (gone's went with it), and tick if `run --once` caught it.
    assert!(count("executions") >= 4, "{report}");
    assert!(count("audit") >= 10, "{report}");
    assert_eq!(count("settings"), 1, "{report}");
    assert!(
        !report["target"].as_str().unwrap().contains(":cronmgr@"),
        "{report}"
    );

    let after = views(target);
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        assert_eq!(a, b, "view {i} differs: {:?}", VIEWS.get(i));
    }
    assert_eq!(before.len(), after.len());
    // The source is as it was.
    assert_eq!(views(env), before);

    // A second copy into the same target is refused and changes nothing.
    let out = migrate(env, &target.db.to_string_lossy());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds data"), "{err}");
    assert!(err.contains("jobs: 5"), "{err}");
    assert_eq!(views(target), after);

    // New rows continue after the copied ids.
    let jobs = target.json(&["list"]);
    let others = target.json(&["--system", "other", "list"]);
    let top = max_id(&jobs).max(max_id(&others));
    target.ok(&["add", "fresh", "-s", "@daily", "--", "/usr/bin/true"]);
    let fresh = target.json(&["show", "fresh"]);
    assert_eq!(fresh["id"].as_i64(), Some(top + 1), "{fresh}");
    let top_execution = max_id(&target.json(&["history", "--limit", "1000"]));
    target.ok(&["run-now", "fresh"]);
    let newest = &target.json(&["history", "fresh"])[0];
    assert_eq!(newest["id"].as_i64(), Some(top_execution + 1), "{newest}");
}

#[test]
fn migrate_copies_sqlite_into_postgres_and_every_command_reads_the_same() {
    let Some(target) = Env::postgres() else {
        return;
    };
    check(&Env::new(), &target);
    // The copy kept the counters: a run on the PostgreSQL side adds one, no more.
    let counts = psql(
        &target.db.to_string_lossy(),
        "SELECT sum(count) FROM job_run_counts",
    );
    let executions = psql(
        &target.db.to_string_lossy(),
        "SELECT count(*) FROM executions WHERE status != 'running'",
    );
    assert_eq!(counts.trim(), executions.trim());
}

#[test]
fn migrate_copies_sqlite_into_another_file() {
    let target = Env::new();
    check(&Env::new(), &target);
}

#[test]
fn migrate_refuses_its_own_database_and_a_missing_source() {
    let env = Env::new();
    env.ok(&["add", "a", "-s", "@daily", "--", "/usr/bin/true"]);
    let before = env.dump();
    let err = env.fails(2, &["migrate", "--to", &env.db.to_string_lossy()]);
    assert!(err.contains("names the database being copied"), "{err}");
    assert_eq!(env.dump(), before);

    let missing = env.dir.path().join("missing.db");
    let to = env.dir.path().join("to.db");
    let out = env
        .cmd_with_db(&missing)
        .args(["migrate", "--to", &to.to_string_lossy()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(!missing.exists() && !to.exists());
}
