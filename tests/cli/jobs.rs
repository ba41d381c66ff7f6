//! Defining jobs: add, list, show, edit, enable/disable, rm, settings, and every refusal.

use serde_json::Value;

use crate::harness::Env;

fn add_three(env: &Env) {
    env.ok(&[
        "add",
        "nightly-backup",
        "--schedule",
        "0 3 * * *",
        "--category",
        "backup",
        "--priority",
        "2",
        "--timeout",
        "30m",
        "--",
        "/bin/echo",
        "backup",
    ]);
    env.ok(&[
        "add",
        "device-sync",
        "--schedule",
        "*/5 * * * *",
        "--category",
        "SYNC",
        "--retries",
        "2",
        "--retry-delay",
        "30s",
        "--backoff",
        "exponential",
        "--",
        "/bin/true",
    ]);
    env.ok(&[
        "add",
        "weekly-report",
        "--schedule",
        "@weekly",
        "--description",
        "the weekly report",
        "--disabled",
        "--",
        "/bin/date",
    ]);
}

#[test]
fn add_list_show_edit_roundtrip() {
    let env = Env::new();
    add_three(&env);
    let list = env.json(&["list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["device-sync", "nightly-backup", "weekly-report"]);

    let backup = &list[1];
    assert_eq!(backup["schedule"], "0 3 * * *");
    assert_eq!(backup["command"], "shell");
    assert_eq!(
        backup["params"]["argv"],
        serde_json::json!(["/bin/echo", "backup"])
    );
    assert_eq!(backup["category"], "BACKUP");
    assert_eq!(backup["priority"], 2);
    assert_eq!(backup["timeout"], 1800);
    assert_eq!(backup["is_active"], true);
    assert_eq!(backup["allow_concurrent"], false);
    assert_eq!(backup["system"], "default");
    assert!(backup["next_run_at"]
        .as_str()
        .unwrap()
        .ends_with("T03:00:00Z"));
    for field in [
        "id",
        "description",
        "timezone",
        "retries",
        "retry_delay",
        "backoff",
        "max_runtime",
        "created_at",
        "updated_at",
        "last_run_at",
        "last_status",
    ] {
        assert!(backup.get(field).is_some(), "list --json lacks {field}");
    }
    let sync = &list[0];
    assert_eq!(sync["retries"], 2);
    assert_eq!(sync["retry_delay"], 30);
    assert_eq!(sync["backoff"], "exponential");
    let report = &list[2];
    assert_eq!(report["is_active"], false);
    assert!(report["next_run_at"].is_null());

    // Tables for people.
    let table = env.ok(&["list"]);
    assert!(
        table.contains("NAME") && table.contains("NEXT RUN") && table.contains("nightly-backup")
    );

    // Filters.
    let backups = env.json(&["list", "--category", "backup"]);
    assert_eq!(backups.as_array().unwrap().len(), 1);
    assert_eq!(
        env.json(&["list", "--inactive"]).as_array().unwrap().len(),
        1
    );
    assert_eq!(env.json(&["list", "--active"]).as_array().unwrap().len(), 2);

    // Edit changes only what is given, and recomputes the next run in the new zone.
    env.ok(&[
        "edit",
        "nightly-backup",
        "--timezone",
        "Europe/Madrid",
        "--priority",
        "1",
    ]);
    let shown = env.json(&["show", "nightly-backup"]);
    assert_eq!(shown["priority"], 1);
    assert_eq!(shown["timezone"], "Europe/Madrid");
    assert_eq!(shown["timeout"], 1800);
    assert_eq!(shown["category"], "BACKUP");
    let next = shown["next_run_at"].as_str().unwrap();
    assert!(
        next.ends_with("T02:00:00Z") || next.ends_with("T01:00:00Z"),
        "{next}"
    );
    assert_eq!(shown["upcoming"].as_array().unwrap().len(), 3);

    // Clearing an optional value goes back to the default.
    env.ok(&["edit", "nightly-backup", "--timeout", "none"]);
    assert!(env.json(&["show", "nightly-backup"])["timeout"].is_null());

    // Renaming, and changing the program.
    env.ok(&[
        "edit",
        "device-sync",
        "--rename",
        "sync",
        "--",
        "/bin/echo",
        "syncing",
    ]);
    let sync = env.json(&["show", "sync"]);
    assert_eq!(
        sync["params"]["argv"],
        serde_json::json!(["/bin/echo", "syncing"])
    );
    assert_eq!(sync["retries"], 2);

    let human = env.ok(&["show", "sync"]);
    assert!(
        human.contains("schedule:") && human.contains("*/5 * * * *"),
        "{human}"
    );
}

#[test]
fn enable_disable_and_rm() {
    let env = Env::new();
    add_three(&env);
    env.ok(&["enable", "weekly-report"]);
    let r = env.json(&["show", "weekly-report"]);
    assert_eq!(r["is_active"], true);
    assert!(r["next_run_at"].is_string());
    env.ok(&["disable", "weekly-report"]);
    let r = env.json(&["show", "weekly-report"]);
    assert_eq!(r["is_active"], false);
    assert!(r["next_run_at"].is_null());
    env.ok(&["rm", "weekly-report"]);
    env.fails(2, &["show", "weekly-report"]);
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 2);
}

#[test]
fn systems_are_separate_namespaces() {
    let env = Env::new();
    env.ok(&[
        "--system",
        "app1",
        "add",
        "job",
        "--schedule",
        "@hourly",
        "--",
        "/bin/true",
    ]);
    env.ok(&[
        "--system",
        "app2",
        "add",
        "job",
        "--schedule",
        "@daily",
        "--",
        "/bin/true",
    ]);
    assert_eq!(
        env.json(&["--system", "app1", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 0);
    assert_eq!(
        env.json(&["list", "--all-systems"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    env.ok(&[
        "--system",
        "app1",
        "settings",
        "set",
        "max_concurrent_jobs",
        "9",
    ]);
    assert_eq!(
        env.json(&["--system", "app1", "settings"])["max_concurrent_jobs"],
        9
    );
    assert_eq!(
        env.json(&["--system", "app2", "settings"])["max_concurrent_jobs"],
        5
    );
    let out = env
        .cmd()
        .env("CRONMGR_SYSTEM", "app2")
        .args(["--json", "show", "job"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schedule"], "@daily");
}

#[test]
fn settings_show_get_set_and_timezone_reschedules_jobs() {
    let env = Env::new();
    env.create_db();
    let s = env.json(&["settings", "show"]);
    assert_eq!(s["max_concurrent_jobs"], 5);
    assert_eq!(s["default_timeout"], 3600);
    assert_eq!(s["keep_executions"], 1000);
    assert_eq!(s["cleanup_days"], 30);
    assert_eq!(s["alert_on_failure"], true);
    assert_eq!(s["timezone"], "UTC");
    assert_eq!(s["is_enabled"], true);
    env.ok(&["add", "daily", "--schedule", "0 3 * * *", "--", "/bin/true"]);
    let before = env.json(&["show", "daily"])["next_run_at"].clone();
    assert!(before.as_str().unwrap().ends_with("T03:00:00Z"));
    env.ok(&["settings", "set", "timezone", "America/New_York"]);
    let after = env.json(&["show", "daily"])["next_run_at"].clone();
    let a = after.as_str().unwrap();
    assert!(
        a.ends_with("T07:00:00Z") || a.ends_with("T08:00:00Z"),
        "{a}"
    );
    assert_eq!(
        env.ok(&["settings", "get", "timezone"]).trim(),
        "America/New_York"
    );
    env.ok(&["settings", "set", "default_timeout", "2h"]);
    assert_eq!(
        env.ok(&["settings", "get", "default_timeout"]).trim(),
        "7200"
    );
}

/// Each refused command: exit 2, a message naming the problem, the database untouched.
#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let env = Env::new();
    add_three(&env);
    let before = env.dump();
    let cases: &[(&[&str], &str)] = &[
        (
            &["add", "x", "--schedule", "61 * * * *", "--", "/bin/true"],
            "minute",
        ),
        (
            &["add", "x", "--schedule", "* * * *", "--", "/bin/true"],
            "schedule",
        ),
        (
            &["add", "x", "--schedule", "@often", "--", "/bin/true"],
            "@often",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--timezone",
                "Mars/Olympus",
                "--",
                "/bin/true",
            ],
            "time zone",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--priority",
                "0",
                "--",
                "/bin/true",
            ],
            "priority",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--priority",
                "11",
                "--",
                "/bin/true",
            ],
            "priority",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--timeout",
                "-5",
                "--",
                "/bin/true",
            ],
            "negative",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--timeout",
                "0",
                "--",
                "/bin/true",
            ],
            "more than zero",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--timeout",
                "soon",
                "--",
                "/bin/true",
            ],
            "duration",
        ),
        (
            &[
                "add",
                "nightly-backup",
                "--schedule",
                "* * * * *",
                "--",
                "/bin/true",
            ],
            "already exists",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--command",
                "teleport",
            ],
            "unknown executor",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--command",
                "shell",
                "--param",
                "argv",
            ],
            "KEY=VALUE",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--",
                "/usr/bin/no-such-program",
            ],
            "no-such-program",
        ),
        (&["add", "x", "--schedule", "* * * * *"], "nothing to run"),
        (
            &[
                "add",
                "bad name",
                "--schedule",
                "* * * * *",
                "--",
                "/bin/true",
            ],
            "invalid job name",
        ),
        (
            &[
                "add",
                "x",
                "--schedule",
                "* * * * *",
                "--backoff",
                "random",
                "--",
                "/bin/true",
            ],
            "backoff",
        ),
        (
            &["edit", "ghost", "--priority", "3"],
            "no job named \"ghost\"",
        ),
        (
            &["edit", "nightly-backup", "--schedule", "0 25 * * *"],
            "hour",
        ),
        (
            &["edit", "nightly-backup", "--rename", "device-sync"],
            "already exists",
        ),
        (&["edit", "nightly-backup"], "nothing to change"),
        (&["rm", "ghost"], "no job named"),
        (&["enable", "ghost"], "no job named"),
        (&["disable", "ghost"], "no job named"),
        (&["show", "ghost"], "no job named"),
        (
            &["settings", "set", "timezone", "Nowhere/Town"],
            "time zone",
        ),
        (
            &["settings", "set", "max_concurrent_jobs", "0"],
            "at least 1",
        ),
        (&["settings", "set", "colour", "blue"], "unknown setting"),
        (&["settings", "get", "colour"], "unknown setting"),
        (&["--system", "bad system", "list"], "invalid system name"),
    ];
    for (args, needle) in cases {
        let err = env.fails(2, args);
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "cronmgr {args:?}: message {err:?} does not mention {needle:?}"
        );
        assert_eq!(env.dump(), before, "cronmgr {args:?} changed the database");
    }
}

#[test]
fn a_foreign_or_newer_database_is_refused_untouched() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    std::fs::write(&env.db, b"just some text, not a database").unwrap();
    let err = env.fails(2, &["list"]);
    assert!(err.contains("not a cronmgr database"), "{err}");
    assert_eq!(
        std::fs::read(&env.db).unwrap(),
        b"just some text, not a database"
    );

    let other = env.dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('keep me');")
        .unwrap();
    drop(conn);
    let before = std::fs::read(&other).unwrap();
    let out = env.cmd_with_db(&other).arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a cronmgr database"));
    assert_eq!(std::fs::read(&other).unwrap(), before);

    let newer = env.dir.path().join("newer.db");
    let out = env
        .cmd_with_db(&newer)
        .args(["settings", "set", "timezone", "UTC"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let out = env.cmd_with_db(&newer).arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer cronmgr"));
}

#[test]
fn the_database_is_created_with_its_folder_and_private_modes() {
    let env = Env::new();
    let db = env.dir.path().join("deep/er/c.db");
    let add = ["add", "j", "--schedule", "@daily", "--", "/bin/true"];
    let out = env.cmd_with_db(&db).args(add).output().unwrap();
    assert!(out.status.success());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // CRONMGR_DB works as well as --db.
    let via_env = env.dir.path().join("env.db");
    let mut c = assert_cmd::Command::cargo_bin("cronmgr").unwrap();
    c.env("CRONMGR_DB", &via_env)
        .env("CRONMGR_CONFIG", &env.config)
        .args(add);
    c.assert().success();
    assert!(via_env.exists());
}

#[test]
fn a_closed_stdout_pipe_is_not_an_error() {
    let env = Env::new();
    for i in 0..50 {
        env.ok(&[
            "add",
            &format!("job{i}"),
            "--schedule",
            "@hourly",
            "--",
            "/bin/true",
        ]);
    }
    let cronmgr = assert_cmd::cargo::cargo_bin("cronmgr");
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} --db {} list | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}",
            cronmgr.display(),
            env.db.display()
        ))
        .env("CRONMGR_CONFIG", &env.config)
        .output()
        .unwrap();
    assert!(status.status.success());
}
