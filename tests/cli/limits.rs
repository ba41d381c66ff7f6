//! Numbers and schedules that cannot crash or stall the runner: ranges at every entry point, a
//! runner that survives any job row, schedules that never fire, and the far next-time search.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{stop, Env};

const HUGE: &str = "9223372036854775807";

fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let path = env.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Expect exit 2, the database unchanged, and every one of `needles` in the message.
fn refused(env: &Env, args: &[&str], needles: &[&str]) {
    let before = env.dump();
    let err = env.fails(2, args);
    for needle in needles {
        assert!(
            err.contains(needle),
            "cronmgr {args:?}: {needle:?} not in {err}"
        );
    }
    assert!(!err.contains("CHECK constraint"), "raw SQL error: {err}");
    assert_eq!(env.dump(), before, "cronmgr {args:?} changed the database");
}

#[test]
fn a_huge_retry_delay_is_refused_at_every_entry_point() {
    let env = Env::new();
    env.ok(&["add", "ok", "--schedule", "@daily", "--", "/usr/bin/true"]);
    let add = |extra: &[&str]| {
        let mut args = vec!["add", "x", "--schedule", "* * * * * *"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "/usr/bin/false"]);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = add(&[
        "--retries",
        "3",
        "--retry-delay",
        HUGE,
        "--backoff",
        "exponential",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&env, &args, &["--retry-delay", "400d"]);
    refused(
        &env,
        &["edit", "ok", "--retry-delay", HUGE],
        &["--retry-delay", "400d"],
    );
    refused(
        &env,
        &["edit", "ok", "--retry-delay", "401d"],
        &["--retry-delay", "400d"],
    );
    // The ceiling itself is accepted.
    env.ok(&["edit", "ok", "--retry-delay", "400d"]);

    // jobs.d: as a TOML integer and as text.
    for value in [HUGE.to_string(), format!("\"{HUGE}s\"")] {
        let file = write(
            &env,
            "x.toml",
            &format!(
                "[[job]]\nname = \"x\"\nschedule = \"* * * * * *\"\nretries = 3\nretry_delay = {value}\nargv = [\"/usr/bin/false\"]\n"
            ),
        );
        let out = env
            .cmd()
            .args(["apply", "--check", s(&file)])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("retry_delay") && err.contains("400d"), "{err}");
    }
    // A crontab has no retry delay; its numbers are the schedule's, and a line that never fires
    // is refused like one out of range.
    for line in [
        "0 0 30 2 * /usr/bin/true",
        "0 99999999999999999999 * * * /usr/bin/true",
    ] {
        let tab = write(&env, "tab", &format!("{line}\n"));
        refused(&env, &["import-crontab", s(&tab)], &["tab:1:"]);
    }

    // Settings: every duration and count key.
    for (key, value) in [
        ("default_timeout", HUGE),
        ("default_timeout", "401d"),
        ("shutdown_grace", HUGE),
        ("max_silence", HUGE),
        ("cpu_window", HUGE),
        ("default_cpu_limit", HUGE),
        ("keep_executions", "18446744073709551615"),
        ("cleanup_days", HUGE),
        ("audit_retention_days", HUGE),
        ("max_concurrent_jobs", "4294967295"),
        ("alert_rate_limit", "4294967295"),
        ("escalate_after", "4294967295"),
        ("default_memory_limit", "9999999T"),
        ("default_nofile_limit", HUGE),
        ("default_nproc_limit", HUGE),
    ] {
        refused(&env, &["settings", "set", key, value], &[key, "too large"]);
    }
}

#[test]
fn out_of_range_numbers_name_the_field_and_its_range() {
    let env = Env::new();
    env.create_db();
    let add = |flag: &str, value: &str, needles: &[&str]| {
        refused(
            &env,
            &[
                "add",
                "x",
                "--schedule",
                "@daily",
                flag,
                value,
                "--",
                "/usr/bin/true",
            ],
            needles,
        );
    };
    add(
        "--timeout",
        "18446744073709551615",
        &["--timeout", "too large", "range 1s to 400d"],
    );
    let err_needles = ["--timeout", "too large"];
    add("--timeout", "99999999999999999999", &err_needles);
    let err = env.fails(
        2,
        &[
            "add",
            "x",
            "--schedule",
            "@daily",
            "--timeout",
            "99999999999999999999",
            "--",
            "/usr/bin/true",
        ],
    );
    assert!(!err.contains("without a unit"), "{err}");
    add("--max-runtime", HUGE, &["--max-runtime", "400d"]);
    add("--max-silence", HUGE, &["--max-silence", "400d"]);
    add("--cpu-limit", HUGE, &["--cpu-limit", "400d"]);
    add("--retries", "101", &["--retries", "100"]);
    add(
        "--memory-limit",
        "9999999T",
        &["--memory-limit", "too large"],
    );
    add("--nofile-limit", HUGE, &["--nofile-limit", "too large"]);
    add("--nproc-limit", HUGE, &["--nproc-limit", "too large"]);
    add(
        "--escalate-after",
        "4294967295",
        &["--escalate-after", "too large"],
    );
    env.ok(&[
        "add",
        "ok",
        "--schedule",
        "@daily",
        "--catch-up",
        "latest",
        "--starting-deadline",
        "400d",
        "--retries",
        "100",
        "--timeout",
        "400d",
        "--",
        "/usr/bin/true",
    ]);
    refused(
        &env,
        &["edit", "ok", "--starting-deadline", HUGE],
        &["--starting-deadline", "400d"],
    );
}

#[test]
fn a_schedule_that_never_fires_is_refused() {
    let env = Env::new();
    env.create_db();
    for expr in [
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
        "* * 31 2 *",
        "0 0 30,31 feb *",
    ] {
        let err = env.fails(2, &["validate", expr]);
        assert!(err.contains("never fires"), "{expr}: {err}");
        refused(
            &env,
            &["add", "x", "--schedule", expr, "--", "/usr/bin/true"],
            &["never fires"],
        );
    }
    let file = write(
        &env,
        "x.toml",
        "[[job]]\nname = \"x\"\nschedule = \"0 0 30 2 *\"\nargv = [\"/usr/bin/true\"]\n",
    );
    let out = env
        .cmd()
        .args(["apply", "--check", s(&file)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never fires"));
    // Rare is not never: the 29th of February on a Sunday.
    env.ok(&["validate", "0 0 29 2 */7"]);
}

#[test]
fn month_and_weekday_names_work_in_every_range_and_list() {
    let env = Env::new();
    for expr in [
        "0 0 1 6-jul *",
        "0 0 1 1-JUL *",
        "0 0 1 5,6-jul *",
        "0 0 1 jun-jul *",
        "0 0 1 jul *",
    ] {
        env.ok(&["validate", expr]);
    }
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    for (i, m) in months.iter().enumerate() {
        let n = i + 1;
        for field in [
            format!("1-{m}"),
            format!("{m}-dec"),
            format!("{n}-{m}"),
            format!("1,{m}"),
        ] {
            env.ok(&["validate", &format!("0 0 1 {field} *")]);
        }
    }
    for (i, d) in ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
        .iter()
        .enumerate()
    {
        for field in [
            format!("0-{d}"),
            format!("{d}-sat"),
            format!("{i}-{d}"),
            format!("1,{d}"),
        ] {
            env.ok(&["validate", &format!("0 0 * * {field}")]);
        }
    }
    // Quartz's nL stays refused.
    let err = env.fails(2, &["validate", "0 0 * * 5L"]);
    assert!(err.contains("\"L\""), "{err}");
}

#[test]
fn next_finds_a_date_on_a_weekday_decades_away() {
    let env = Env::new();
    let v = env.json(&[
        "next",
        "0 0 13 5 */7",
        "--tz",
        "UTC",
        "--after",
        "2046-05-14T00:00:00Z",
        "--count",
        "1",
    ]);
    assert_eq!(v["next"], serde_json::json!(["2057-05-13T00:00:00Z"]));
    // The 29th of February on a Sunday: 40 years apart across 2100.
    let v = env.json(&[
        "next",
        "0 0 29 2 */7",
        "--tz",
        "UTC",
        "--after",
        "2088-03-01T00:00:00Z",
        "--count",
        "1",
    ]);
    assert_eq!(v["next"], serde_json::json!(["2128-02-29T00:00:00Z"]));
}

#[test]
fn validate_and_next_give_the_same_facts_as_text_and_json() {
    let env = Env::new();
    let args = [
        "validate",
        "30 2 * * *",
        "--tz",
        "Europe/Madrid",
        "--after",
        "2027-03-27T12:00:00Z",
    ];
    let v = env.json(&args);
    assert_eq!(v["expression"], "30 2 * * *");
    assert_eq!(v["valid"], true);
    assert_eq!(v["timezone"], "Europe/Madrid");
    assert_eq!(v["next"]["utc"], "2027-03-28T01:00:00Z");
    assert_eq!(v["next"]["local"], "2027-03-28 03:00:00 CEST");
    let note = v["next"]["note"].as_str().unwrap();
    assert!(note.contains("does not exist"), "{note}");
    let text = env.ok(&args);
    for fact in [
        v["description"].as_str().unwrap(),
        "Europe/Madrid",
        "2027-03-28T01:00:00Z",
        "2027-03-28 03:00:00 CEST",
        note,
    ] {
        assert!(text.contains(fact), "{fact:?} not in {text}");
    }
    let v = env.json(&["validate", "@reboot"]);
    assert_eq!(v["at_reboot"], true);
    assert!(v["next"].is_null());

    let args = [
        "next",
        "30 2 * * *",
        "--tz",
        "Europe/Madrid",
        "--after",
        "2027-03-27T12:00:00Z",
        "--count",
        "2",
    ];
    let v = env.json(&args);
    assert_eq!(
        v["next"],
        serde_json::json!(["2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"])
    );
    let fires = v["fires"].as_array().unwrap();
    assert_eq!(fires.len(), 2);
    assert_eq!(fires[0]["utc"], "2027-03-28T01:00:00Z");
    assert_eq!(fires[0]["local"], "2027-03-28 03:00:00 CEST");
    assert!(fires[0]["note"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    assert!(fires[1]["note"].is_null());
    let text = env.ok(&args);
    assert!(text.contains(fires[0]["note"].as_str().unwrap()), "{text}");
}

/// Every numeric column of `jobs` except the id, with the booleans.
const NUMBERS: &[&str] = &[
    "timeout",
    "retries",
    "retry_delay",
    "priority",
    "max_runtime",
    "allow_concurrent",
    "alerts_enabled",
    "escalate_after",
    "disable_after",
    "max_silence",
    "failure_streak",
    "is_critical",
    "memory_limit",
    "cpu_limit",
    "nofile_limit",
    "nproc_limit",
];

#[test]
fn the_runner_survives_any_job_row_and_says_why_it_skips_one() {
    let env = Env::new();
    if crate::harness::sqlite_only("edits the SQLite file behind cronmgr's back") {
        return;
    }
    env.ignore_host_disk();
    env.ok(&[
        "add",
        "tick",
        "--schedule",
        "* * * * * *",
        "--",
        "/usr/bin/true",
    ]);
    let bad: &[(&str, &str)] = &[
        ("max", "9223372036854775807"),
        ("min", "-9223372036854775808"),
        ("neg", "-1"),
        ("zero", "0"),
    ];
    let others = ["badschedule", "badzone", "nevers"];
    for name in bad.iter().map(|(n, _)| *n).chain(others) {
        env.ok(&[
            "add",
            name,
            "--schedule",
            "* * * * * *",
            "--retries",
            "1",
            "--",
            "/usr/bin/false",
        ]);
    }
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    for (name, value) in bad {
        let set: Vec<String> = NUMBERS.iter().map(|c| format!("{c} = {value}")).collect();
        conn.execute(
            &format!("UPDATE jobs SET {} WHERE name = ?1", set.join(", ")),
            [name],
        )
        .unwrap();
    }
    conn.execute(
        "UPDATE jobs SET schedule = '61 * * * *' WHERE name = 'badschedule'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE jobs SET timezone = 'Mars/Olympus' WHERE name = 'badzone'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE jobs SET schedule = '0 0 30 2 *' WHERE name = 'nevers'",
        [],
    )
    .unwrap();
    drop(conn);

    // Every command still reads the jobs.
    let list = env.json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 8, "{list}");

    let mut runner = env.spawn_runner(&[]);
    let ticks = env.wait_for(Duration::from_secs(20), || {
        let n = env
            .history("tick")
            .iter()
            .filter(|r| r["status"] == "success")
            .count();
        (n >= 3).then_some(n)
    });
    assert!(
        runner.try_wait().unwrap().is_none(),
        "the runner died; log:\n{}",
        env.runner_log()
    );
    assert!(
        ticks.is_some(),
        "tick stopped firing; log:\n{}",
        env.runner_log()
    );
    let reason = |job: &str| -> String {
        let rows = env.history(job);
        assert_eq!(
            rows.len(),
            1,
            "{job}: one row per reload, not per turn: {rows:?}"
        );
        let row: &Value = &rows[0];
        assert_eq!(row["status"], "skipped", "{job}: {row}");
        row["error_message"].as_str().unwrap().to_string()
    };
    for (name, _) in bad {
        let why = reason(name);
        assert!(why.contains("not scheduled"), "{name}: {why}");
        // Zero is in range for retries and retry_delay.
        let fields: &[&str] = match *name {
            "zero" => &["timeout", "priority", "max_runtime", "memory_limit"],
            _ => &[
                "timeout",
                "retries",
                "retry_delay",
                "priority",
                "nproc_limit",
            ],
        };
        for field in fields {
            assert!(why.contains(field), "{name}: {field} not in {why}");
        }
    }
    assert!(reason("badschedule").contains("minute field"));
    assert!(reason("badzone").contains("Mars/Olympus"));
    assert!(reason("nevers").contains("never fires"));
    let log = env.runner_log();
    assert!(log.contains("not scheduling job"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // run-now refuses such a job instead of panicking on its numbers.
    let err = env.fails(2, &["run-now", "max"]);
    assert!(err.contains("retry_delay"), "{err}");
    stop(&mut runner);
}
