//! Audit, permissions, resource limits, run-as users and secrets, with a real unprivileged user.
//!
//! Tests that need another user run only as root (they create `cronmgr-test` with `useradd` if
//! missing); otherwise they skip through `harness::skip`, which fails under
//! `CRONMGR_TEST_NO_SKIP=1`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command as StdCommand, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Env, ALLOW, TEST_USER};

/// (uid, gid) of the unprivileged test user; None after a skip when the tests cannot act as it.
fn test_user() -> Option<(u32, u32)> {
    crate::harness::test_user().map(|u| (u.uid, u.gid))
}

/// Make the env's folder and database writable by the test user's group (root stays owner), as
/// a database shared by operators is; the config stays root's, 0644.
fn share(env: &Env, gid: u32) {
    env.create_db();
    for (path, mode) in [(env.dir.path(), 0o770), (env.db.as_path(), 0o660)] {
        std::os::unix::fs::chown(path, Some(0), Some(gid)).expect("chown");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

/// `cronmgr --db <env db> ARGS` as the test user.
fn as_user(env: &Env, (uid, gid): (u32, u32), args: &[&str]) -> Output {
    StdCommand::new(assert_cmd::cargo::cargo_bin("cronmgr"))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", env.dir.path())
        .env("TZ", "UTC")
        .env("CRONMGR_CONFIG", &env.config)
        .arg("--db")
        .arg(&env.db)
        .args(args)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run as the test user")
}

fn audit(env: &Env) -> Vec<Value> {
    env.json(&["audit", "--limit", "1000"])
        .as_array()
        .expect("array")
        .clone()
}

#[test]
fn sudo_user_from_a_caller_that_is_not_root_is_marked_unverified() {
    let Some((uid, gid)) = test_user() else {
        return;
    };
    let env = Env::new();
    if crate::harness::sqlite_only("shares the SQLite file with another user") {
        return;
    }
    share(&env, gid);
    let add_as = |sudo: &str, name: &str, as_test_user: bool| {
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("cronmgr"));
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", env.dir.path())
            .env("CRONMGR_CONFIG", &env.config)
            .env("SUDO_USER", sudo)
            .arg("--db")
            .arg(&env.db)
            .args(["add", name, "--schedule", "@daily", "--", "/usr/bin/true"]);
        if as_test_user {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().expect("run cronmgr");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    add_as("root", "forged", true);
    add_as("alice", "sudoed", false);
    let rows = audit(&env);
    let by_target = |t: &str| rows.iter().find(|r| r["target"] == t).expect(t).clone();
    assert_eq!(by_target("forged")["sudo_user"], "root (unverified)");
    assert_eq!(by_target("sudoed")["sudo_user"], "alice");
}

#[test]
fn settings_of_a_system_holding_a_critical_job_need_an_admin() {
    let Some(user) = test_user() else {
        return;
    };
    let env = Env::new();
    if crate::harness::sqlite_only("shares the SQLite file with another user") {
        return;
    }
    env.ok(&[
        "add",
        "vital",
        "--critical",
        "--schedule",
        "@daily",
        "--",
        "/usr/bin/true",
    ]);
    env.ok(&[
        "--system",
        "other",
        "add",
        "plain",
        "--schedule",
        "@daily",
        "--",
        "/usr/bin/true",
    ]);
    share(&env, user.1);
    let before = env.dump();
    for (key, value) in [
        ("is_enabled", "false"),
        ("default_timeout", "1"),
        ("default_memory_limit", "1K"),
        ("keep_executions", "1"),
        ("cleanup_days", "0"),
    ] {
        let out = as_user(&env, user, &["settings", "set", key, value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{key}: {stderr}");
        assert!(
            stderr.contains("system default holds critical jobs (vital)"),
            "{key}: {stderr}"
        );
    }
    assert_eq!(
        env.dump(),
        before,
        "a refused settings change changed the database"
    );
    let refused: Vec<Value> = audit(&env)
        .into_iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 5, "{refused:#?}");
    assert!(refused
        .iter()
        .all(|r| r["action"] == "settings" && r["user"] == TEST_USER));
    // A system without critical jobs is anyone's who can write the database; root may always.
    let out = as_user(
        &env,
        user,
        &[
            "--system",
            "other",
            "settings",
            "set",
            "default_timeout",
            "60",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["settings", "set", "default_timeout", "120"]);
}

#[test]
fn a_non_admin_is_refused_on_a_critical_job_and_an_admin_is_not() {
    let Some(user) = test_user() else {
        return;
    };
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    env.ok(&[
        "add",
        "vital",
        "--critical",
        "--schedule",
        "@daily",
        "--",
        "/usr/bin/true",
    ]);
    env.ok(&[
        "add",
        "plain",
        "--schedule",
        "@daily",
        "--",
        "/usr/bin/true",
    ]);
    share(&env, user.1);
    let before = env.dump();
    for args in [
        &["edit", "vital", "--priority", "2"][..],
        &["disable", "vital"],
        &["rm", "vital"],
        &["run-now", "vital"],
        &["edit", "plain", "--critical"],
    ] {
        let out = as_user(&env, user, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
        let why = match args[1] {
            "plain" => "making plain critical needs an admin",
            _ => "vital is a critical job",
        };
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
    assert_eq!(env.dump(), before, "a refused command changed the database");
    // A non-critical job is anyone's who can write the database.
    let out = as_user(&env, user, &["edit", "plain", "--priority", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rows = audit(&env);
    let refused: Vec<&Value> = rows.iter().filter(|r| r["outcome"] == "refused").collect();
    assert_eq!(refused.len(), 5, "{rows:#?}");
    for r in &refused {
        assert_eq!(r["user"], TEST_USER);
        assert_eq!(r["uid"], user.0);
        assert!(r["reason"].as_str().unwrap().contains("critical"), "{r}");
    }
    let actions: Vec<&str> = refused
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["edit", "run-now", "rm", "disable", "edit"]);

    // Listed as an admin in the (root-owned) config: allowed, and audited as ok with its diff.
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!("[admins]\nusers = [\"{TEST_USER}\"]\n"));
    std::fs::write(&env.config, config).unwrap();
    let out = as_user(&env, user, &["edit", "vital", "--priority", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = &audit(&env)[0];
    assert_eq!(last["action"], "edit");
    assert_eq!(last["outcome"], "ok");
    assert_eq!(last["user"], TEST_USER);
    assert_eq!(
        last["diff"],
        serde_json::json!({"priority": {"before": 5, "after": 2}})
    );
}

#[test]
fn every_change_and_trigger_is_audited_with_its_diff() {
    let env = Env::new();
    env.ok(&["add", "a", "--schedule", "@daily", "--", "/usr/bin/true"]);
    env.ok(&["edit", "a", "--timeout", "30m", "--memory-limit", "512M"]);
    env.ok(&["disable", "a"]);
    env.ok(&["enable", "a"]);
    env.ok(&["settings", "set", "default_cpu_limit", "10m"]);
    env.ok(&["run-now", "a"]);
    let file = env.dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[job]]\nname = \"b\"\nschedule = \"@hourly\"\nargv = [\"/usr/bin/true\"]\n",
    )
    .unwrap();
    env.ok(&["apply", file.to_str().unwrap()]);
    let crontab = env.dir.path().join("crontab");
    std::fs::write(&crontab, "0 4 * * * /usr/bin/echo hi\n").unwrap();
    env.ok(&["import-crontab", crontab.to_str().unwrap()]);
    env.ok(&["rm", "a"]);
    env.ok(&["prune"]);
    let rows = audit(&env);
    let actions: Vec<&str> = rows
        .iter()
        .rev()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "add",
            "edit",
            "disable",
            "enable",
            "settings",
            "run-now",
            "apply",
            "import-crontab",
            "rm",
            "prune"
        ]
    );
    let by_action = |a: &str| rows.iter().find(|r| r["action"] == a).unwrap();
    let edit = by_action("edit");
    assert_eq!(edit["target"], "a");
    assert_eq!(
        edit["diff"]["timeout"],
        serde_json::json!({"before": null, "after": 1800})
    );
    assert_eq!(edit["diff"]["memory_limit"]["after"], 512 << 20);
    assert_eq!(
        by_action("disable")["diff"],
        serde_json::json!({"is_active": {"before": true, "after": false}})
    );
    assert_eq!(
        by_action("settings")["diff"]["default_cpu_limit"],
        serde_json::json!({"before": null, "after": 600})
    );
    assert_eq!(by_action("rm")["diff"]["name"]["after"], Value::Null);
    for r in &rows {
        assert_eq!(r["outcome"], "ok");
        assert!(r["user"].as_str().is_some_and(|u| !u.is_empty()));
    }
    // --job and --since narrow it.
    let only_a = env.json(&["audit", "--job", "a", "--since", "1h"]);
    assert_eq!(only_a.as_array().unwrap().len(), 6);
    assert!(env.ok(&["audit"]).contains("timeout - → 1800"));
}

#[test]
fn secrets_reach_the_child_but_no_listing_and_survive_export_apply() {
    let env = Env::new();
    let secret = "hunter2-s3cr3t-value";
    env.ok(&[
        "add",
        "tok",
        "--schedule",
        "@daily",
        "--param",
        &format!(r#"env={{"TOKEN": {{"secret": "{secret}"}}, "PLAIN": "visible"}}"#),
        "--",
        "/usr/bin/sh",
        "-c",
        &format!("test \"$TOKEN\" = {secret}"),
    ]);
    env.ok(&["run-now", "tok"]);
    let export = env.ok(&["export"]);
    let mut shown = String::new();
    for args in [
        &["show", "tok"][..],
        &["--json", "show", "tok"],
        &["--json", "list"],
        &["--json", "audit"],
        &["audit"],
        &["--json", "export"],
    ] {
        shown.push_str(&env.ok(args));
    }
    shown.push_str(&export);
    // The argv mentions the value itself (the test compares with it): only env must hide it.
    let shown = shown.replace(&format!("= {secret}"), "");
    assert!(!shown.contains(secret), "a secret leaked:\n{shown}");
    assert!(shown.contains("redacted") && shown.contains("visible"));
    assert!(export.contains(r#"secret = "(stored)""#), "{export}");

    let file = env.dir.path().join("tok.toml");
    std::fs::write(&file, &export).unwrap();
    let plan = env.json(&["apply", "--dry-run", file.to_str().unwrap()]);
    assert_eq!(plan["summary"]["unchanged"], 1, "{plan}");
    env.ok(&["apply", file.to_str().unwrap()]);
    env.ok(&["run-now", "tok"]); // still has the secret

    // A changed secret is audited as changed, without its value.
    env.ok(&[
        "edit",
        "tok",
        "--param",
        r#"env={"TOKEN": {"secret": "other-secret-xyz"}}"#,
    ]);
    let last = &audit(&env)[0];
    let diff = last["diff"].to_string();
    assert!(
        diff.contains("changed") && !diff.contains("other-secret-xyz"),
        "{diff}"
    );

    // A keep marker with nothing stored is refused.
    std::fs::write(
        &file,
        "[[job]]\nname = \"new\"\nschedule = \"@daily\"\nargv = [\"/usr/bin/true\"]\n\
         [job.params.env]\nK = { secret = \"(stored)\" }\n",
    )
    .unwrap();
    let err = env.fails(2, &["apply", file.to_str().unwrap()]);
    assert!(err.contains("no secret is stored"), "{err}");
}

/// The execution's process group has no process left, zombies included, within a few seconds.
fn assert_gone(pgid: i64) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: signal 0 only checks existence; pgid is a child's pid.
        let rc = unsafe { libc::kill(-(pgid as i32), 0) };
        if rc != 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "process group {pgid} still exists"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn last_run(env: &Env, job: &str) -> Value {
    env.history(job).pop().expect("an execution")
}

#[test]
fn a_job_past_its_memory_limit_is_recorded_naming_it() {
    let Some(python) = crate::harness::program("/usr/bin/python3") else {
        return;
    };
    let mut allow = ALLOW.to_vec();
    allow.push(python);
    let env = Env::with_allow(&allow);
    env.ok(&[
        "add",
        "hog",
        "--schedule",
        "@daily",
        "--memory-limit",
        "100M",
        "--",
        python,
        "-c",
        "x = bytearray(400*1024*1024)",
    ]);
    env.fails(3, &["run-now", "hog"]);
    let run = last_run(&env, "hog");
    assert_eq!(run["status"], "failed");
    let msg = run["error_message"].as_str().unwrap();
    assert!(
        msg.contains("memory limit (100 MiB address space)"),
        "{msg}"
    );
    assert_gone(run["pid"].as_i64().unwrap());
}

#[test]
fn a_job_past_its_cpu_limit_is_recorded_naming_it() {
    let env = Env::new();
    env.ok(&[
        "add",
        "spin",
        "--schedule",
        "@daily",
        "--cpu-limit",
        "1",
        "--timeout",
        "60",
        "--",
        "/usr/bin/sh",
        "-c",
        "while :; do :; done",
    ]);
    env.fails(3, &["run-now", "spin"]);
    let run = last_run(&env, "spin");
    let msg = run["error_message"].as_str().unwrap();
    assert!(msg.starts_with("CPU limit of 1s reached"), "{msg}");
    assert_gone(run["pid"].as_i64().unwrap());
}

#[test]
fn a_fork_loop_as_an_unprivileged_user_stops_at_its_process_limit() {
    let Some(_) = test_user() else {
        return;
    };
    let env = Env::new();
    env.ok(&[
        "add",
        "forky",
        "--schedule",
        "@daily",
        "--user",
        TEST_USER,
        "--nproc-limit",
        "20",
        "--timeout",
        "60",
        "--",
        "/usr/bin/sh",
        "-c",
        "for i in $(seq 200); do sleep 5 & done; wait",
    ]);
    env.fails(3, &["run-now", "forky"]);
    let run = last_run(&env, "forky");
    assert_eq!(run["status"], "failed");
    let msg = run["error_message"].as_str().unwrap();
    assert!(msg.contains("process limit (20 processes)"), "{msg}");
    assert_gone(run["pid"].as_i64().unwrap());
}

#[test]
fn a_job_runs_as_its_user_with_that_users_environment() {
    let Some((uid, _)) = test_user() else {
        return;
    };
    let env = Env::new();
    let err = env.fails(
        2,
        &[
            "add",
            "x",
            "--schedule",
            "@daily",
            "--user",
            "no-such-user-x",
            "--",
            "/usr/bin/true",
        ],
    );
    assert!(err.contains("unknown user"), "{err}");
    env.ok(&[
        "add",
        "who",
        "--schedule",
        "@daily",
        "--user",
        TEST_USER,
        "--",
        "/usr/bin/sh",
        "-c",
        "echo $USER $LOGNAME; id -u",
    ]);
    env.ok(&["run-now", "who"]);
    let run = last_run(&env, "who");
    assert_eq!(
        run["output"].as_str().unwrap(),
        format!("{TEST_USER} {TEST_USER}\n{uid}\n")
    );
}

#[test]
fn a_cli_that_is_not_root_may_not_set_a_run_as_user() {
    let Some(user) = test_user() else {
        return;
    };
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    share(&env, user.1);
    let out = as_user(
        &env,
        user,
        &[
            "add",
            "x",
            "--schedule",
            "@daily",
            "--user",
            "root",
            "--",
            "/usr/bin/true",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only root"));
}

#[test]
fn a_zero_timeout_is_refused_everywhere() {
    let env = Env::new();
    env.fails(
        2,
        &[
            "add",
            "z",
            "--schedule",
            "@daily",
            "--timeout",
            "0",
            "--",
            "/usr/bin/true",
        ],
    );
    env.ok(&["add", "z", "--schedule", "@daily", "--", "/usr/bin/true"]);
    env.fails(2, &["edit", "z", "--timeout", "0"]);
    env.fails(2, &["settings", "set", "default_timeout", "0"]);
    let file = env.dir.path().join("z.toml");
    std::fs::write(
        &file,
        "[[job]]\nname = \"z\"\nschedule = \"@daily\"\ntimeout = 0\nargv = [\"/usr/bin/true\"]\n",
    )
    .unwrap();
    env.fails(2, &["apply", file.to_str().unwrap()]);
    env.fails(2, &["edit", "z", "--memory-limit", "0"]);
    env.fails(2, &["edit", "z", "--nproc-limit", "0"]);
}

#[test]
fn the_runner_refuses_a_database_folder_others_can_write() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    env.create_db();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
    let err = env.fails(1, &["run", "--once"]);
    assert!(
        err.contains("database folder") && err.contains("writable by its group"),
        "{err}"
    );
}
