//! The runner end to end: firing, timeouts, retries, caps, overlap, crashes, shutdown, allowlist.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use crate::harness::{at, signal, soon, statuses, stop, time, wait_exit, Env};

#[test]
fn a_seconds_job_fires_on_schedule_and_records_its_output() {
    let env = Env::new();
    env.ok(&[
        "add",
        "tick",
        "--schedule",
        "*/2 * * * * *",
        "--",
        "/bin/echo",
        "hello from tick",
    ]);
    let rows = env.run_until_n("tick", "success", 2, Duration::from_secs(15));
    for r in &rows {
        assert_eq!(r["output"], "hello from tick\n");
        assert_eq!(r["exit_code"], 0);
        assert_eq!(r["triggered_by"], "schedule");
        let slot = time(r, "scheduled_for");
        use chrono::Timelike;
        assert_eq!(slot.second() % 2, 0, "slot {slot} is not on an even second");
        assert_eq!(slot.nanosecond(), 0);
        let late = time(r, "started_at") - slot;
        assert!(late < chrono::Duration::seconds(1), "started {late} late");
        assert!(r["memory_used_mb"].as_f64().unwrap() > 0.0);
    }
    let job = env.json(&["show", "tick"]);
    assert!(job["last_run_at"].is_string());
    assert!(time(&job, "next_run_at") > time(&rows[0], "scheduled_for"));
}

/// A NUL byte in a job's output is kept as U+FFFD: PostgreSQL's text holds no NUL, and there
/// the end of such an execution could not be recorded (the row stayed `running`, and every
/// later slot of the job was skipped).
#[test]
fn output_with_a_nul_byte_is_recorded_on_every_store() {
    let env = Env::new();
    env.ok(&[
        "add",
        "nul",
        "--schedule",
        "* * * * * *",
        "--",
        "/usr/bin/printf",
        "a\\0b",
    ]);
    let rows = env.run_until_n("nul", "success", 2, Duration::from_secs(15));
    for r in &rows {
        assert_eq!(r["output"], "a\u{FFFD}b", "{r:#}");
    }
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let env = Env::new();
    let marker = env.dir.path().join("pids");
    let script = format!(
        "sleep 30 & echo $! > {m}; echo $$ >> {m}; sleep 30",
        m = marker.display()
    );
    env.ok(&[
        "add",
        "slow",
        "--schedule",
        "@yearly",
        "--timeout",
        "1",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let out = env
        .cmd()
        .args(["--json", "run-now", "slow"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["status"], "timeout");
    assert!(e["error_message"].as_str().unwrap().contains("timed out"));
    let pids: Vec<i32> = std::fs::read_to_string(&marker)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    // Zombies may linger until init reaps them: wait for every pid to be gone or a zombie.
    let gone = env.wait_for(Duration::from_secs(10), || {
        pids.iter()
            .all(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
            })
            .then_some(())
    });
    assert!(
        gone.is_some(),
        "a process of the timed-out job survived: {pids:?}"
    );
}

#[test]
fn the_runner_times_out_jobs_too() {
    let env = Env::new();
    let t = soon(1);
    env.ok(&[
        "add",
        "slow",
        "--schedule",
        &at(t),
        "--timeout",
        "1",
        "--",
        "/bin/sh",
        "-c",
        "sleep 30 & sleep 30",
    ]);
    let row = env.run_until_first("slow", "timeout", Duration::from_secs(20));
    let pgid = row["pid"].as_i64().unwrap() as i32;
    // SAFETY: signal 0 only probes.
    let alive = env.wait_for(Duration::from_secs(10), || {
        (unsafe { libc::kill(-pgid, 0) } != 0).then_some(())
    });
    assert!(alive.is_some(), "process group {pgid} survived the timeout");
    assert!(row["duration_ms"].as_i64().unwrap() < 10_000);
}

#[test]
fn kill_9_of_the_runner_leaves_an_interrupted_row_after_restart() {
    let env = Env::new();
    let t = soon(1);
    env.ok(&[
        "add",
        "victim",
        "--schedule",
        &at(t),
        "--",
        "/bin/sh",
        "-c",
        "sleep 60 & sleep 60",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let row = env.wait_for(Duration::from_secs(15), || {
        env.history("victim")
            .into_iter()
            .find(|r| r["status"] == "running" && r["pid"].is_number())
    });
    let row = row.unwrap_or_else(|| panic!("never started; log:\n{}", env.runner_log()));
    signal(&runner, libc::SIGKILL);
    wait_exit(&mut runner, Duration::from_secs(5));
    let pgid = row["pid"].as_i64().unwrap() as i32;
    // The orphaned job is still running until a runner comes back.
    assert_eq!(
        unsafe { libc::kill(-pgid, 0) },
        0,
        "orphan group should still exist"
    );
    let after = env.run_until_first("victim", "interrupted", Duration::from_secs(15));
    assert_eq!(after["id"], row["id"]);
    let gone = env.wait_for(Duration::from_secs(10), || {
        (unsafe { libc::kill(-pgid, 0) } != 0).then_some(())
    });
    assert!(gone.is_some(), "orphaned group {pgid} survived the restart");
    assert_eq!(env.history("victim").len(), 1, "the slot ran again");
}

#[test]
fn sigterm_drains_running_executions_then_exits_0() {
    let env = Env::new();
    let t = soon(1);
    env.ok(&[
        "add",
        "drain",
        "--schedule",
        &at(t),
        "--",
        "/bin/sleep",
        "2",
    ]);
    env.run_until_first("drain", "running", Duration::from_secs(15));
    assert_eq!(statuses(&env.history("drain")), ["success"]);
}

#[test]
fn sigterm_past_the_grace_period_kills_and_records() {
    let env = Env::new();
    env.ok(&["settings", "set", "shutdown_grace", "1"]);
    let t = soon(1);
    env.ok(&[
        "add",
        "stuck",
        "--schedule",
        &at(t),
        "--",
        "/bin/sleep",
        "60",
    ]);
    env.run_until_first("stuck", "running", Duration::from_secs(15));
    let rows = env.history("stuck");
    assert_eq!(statuses(&rows), ["interrupted"]);
    assert!(rows[0]["error_message"].as_str().unwrap().contains("grace"));
}

#[test]
fn a_second_runner_refuses_and_forced_runners_never_run_a_slot_twice() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let log = env.dir.path().join("ran");
    let script = format!("echo $CRONMGR_SCHEDULED_FOR >> {}", log.display());
    env.ok(&[
        "add",
        "once",
        "--schedule",
        "* * * * * *",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let mut first = env.spawn_runner(&[]);
    std::thread::sleep(Duration::from_millis(500));
    let err = env.fails(1, &["run"]);
    assert!(err.contains("another runner"), "{err}");
    let mut second = env.spawn_runner(&["--force"]);
    std::thread::sleep(Duration::from_secs(4));
    signal(&first, libc::SIGTERM);
    signal(&second, libc::SIGTERM);
    assert_eq!(wait_exit(&mut first, Duration::from_secs(20)), Some(0));
    assert_eq!(wait_exit(&mut second, Duration::from_secs(20)), Some(0));
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert!(lines.len() >= 3, "too few runs: {lines:?}");
    assert_eq!(lines.len(), unique.len(), "a slot ran twice: {lines:?}");
}

#[test]
fn a_program_that_is_not_allowlisted_never_runs() {
    let env = Env::with_allow(&["/usr/bin/echo"]);
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let marker = env.dir.path().join("pwned");
    // Refused at add time…
    let err = env.fails(
        2,
        &[
            "add",
            "bad",
            "--schedule",
            "* * * * * *",
            "--",
            "/usr/bin/touch",
            marker.to_str().unwrap(),
        ],
    );
    assert!(err.contains("not allowlisted"), "{err}");
    // …and at run time, when the row is edited behind cronmgr's back.
    env.ok(&[
        "add",
        "sneaky",
        "--schedule",
        "* * * * * *",
        "--",
        "/bin/echo",
        "ok",
    ]);
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.execute(
        "UPDATE jobs SET params = json_object('argv', json_array('/usr/bin/touch', ?1)) WHERE name = 'sneaky'",
        [marker.to_str().unwrap()],
    )
    .unwrap();
    drop(conn);
    let row = env.run_until_first("sneaky", "failed", Duration::from_secs(15));
    assert!(
        row["error_message"]
            .as_str()
            .unwrap()
            .contains("not allowlisted"),
        "{row}"
    );
    assert!(
        row["pid"].is_null(),
        "a refused execution must never be spawned"
    );
    assert!(!marker.exists(), "the refused program ran");
}

#[test]
fn an_edit_reaches_a_running_runner_within_a_second() {
    let env = Env::new();
    env.ok(&[
        "add",
        "later",
        "--schedule",
        "@yearly",
        "--",
        "/bin/echo",
        "edited",
    ]);
    let mut runner = env.spawn_runner(&[]);
    std::thread::sleep(Duration::from_millis(700));
    env.ok(&["edit", "later", "--schedule", "* * * * * *"]);
    let row = env.wait_for(Duration::from_secs(5), || {
        env.history("later")
            .into_iter()
            .find(|r| r["status"] == "success")
    });
    env.ok(&["disable", "later"]);
    std::thread::sleep(Duration::from_millis(1500));
    let count_after_disable = env.history("later").len();
    std::thread::sleep(Duration::from_millis(2000));
    stop(&mut runner);
    assert!(
        row.is_some(),
        "the edit did not take effect; log:\n{}",
        env.runner_log()
    );
    assert_eq!(
        env.history("later").len(),
        count_after_disable,
        "ran after disable"
    );
}

#[test]
fn run_now_streams_output_and_exit_codes_follow_the_result() {
    let env = Env::new();
    env.ok(&[
        "add",
        "hello",
        "--schedule",
        "@daily",
        "--",
        "/bin/echo",
        "hi there",
    ]);
    let out = env.cmd().args(["run-now", "hello"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n");
    env.ok(&["add", "nope", "--schedule", "@daily", "--", "/bin/false"]);
    env.fails(3, &["run-now", "nope"]);
    let e = env.json(&["history", "nope"]);
    assert_eq!(e[0]["status"], "failed");
    assert_eq!(e[0]["triggered_by"], "manual");
    assert_eq!(e[0]["exit_code"], 1);
    // Logs of a finished execution print its output.
    let id = env.json(&["history", "hello"])[0]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    assert_eq!(env.ok(&["logs", &id]), "hi there\n");
    env.fails(2, &["logs", "999999"]);
}

#[test]
fn run_once_fires_what_is_due_and_reports_failure() {
    let env = Env::new();
    let t = soon(1);
    env.ok(&["add", "good", "--schedule", &at(t), "--", "/bin/true"]);
    env.ok(&["add", "bad", "--schedule", &at(t), "--", "/bin/false"]);
    // Wait until the slot has passed: it is now due.
    while Utc::now() < t + chrono::Duration::milliseconds(100) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = env.cmd().args(["run", "--once"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(statuses(&env.history("good")), ["success"]);
    assert_eq!(statuses(&env.history("bad")), ["failed"]);
    // Nothing is due any more: a second pass runs nothing and succeeds.
    env.ok(&["run", "--once"]);
    assert_eq!(env.history("good").len(), 1);
}

#[test]
fn slots_missed_while_down_are_recorded_and_caught_up_per_policy() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    env.ok(&[
        "add",
        "none",
        "--schedule",
        "* * * * * *",
        "--",
        "/bin/true",
    ]);
    env.ok(&[
        "add",
        "latest",
        "--schedule",
        "* * * * * *",
        "--catch-up",
        "latest",
        "--",
        "/bin/true",
    ]);
    // Pretend the runner was down across 5 slots: move both jobs' next run into the past.
    let down_from = soon(-7);
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.execute("UPDATE jobs SET next_run_at = ?1", [down_from.to_rfc3339()])
        .unwrap();
    drop(conn);
    let mut runner = env.spawn_runner(&[]);
    let seen = env.wait_for(Duration::from_secs(15), || {
        let (n, l) = (env.history("none"), env.history("latest"));
        (n.iter().any(|r| r["status"] == "missed") && l.iter().any(|r| r["status"] == "missed"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    stop(&mut runner);
    seen.unwrap_or_else(|| panic!("no missed rows; log:\n{}", env.runner_log()));
    // Runs of slots from the time the runner was down, as opposed to slots after its start: a
    // slot at or before the end of the job's missed range (the range `latest` records includes
    // the slot it ran, "ran the latest once"). Read from the missed row,
    // not from the clock: on a loaded machine the runner's start-up instant and its log lines can
    // be a second apart.
    let missed_until = |rows: &[Value]| {
        let msg = rows
            .iter()
            .find(|r| r["status"] == "missed")
            .and_then(|r| r["error_message"].as_str())
            .unwrap_or_else(|| panic!("no missed row: {rows:?}"));
        msg.split(" to ")
            .nth(1)
            .and_then(|rest| {
                rest.split(':')
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(":")
                    .parse::<chrono::DateTime<Utc>>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no range in {msg:?}"))
    };
    let catch_up_runs = |rows: &[Value]| {
        let until = missed_until(rows);
        rows.iter()
            .filter(|r| r["status"] != "missed" && time(r, "scheduled_for") <= until)
            .count()
    };
    let none = env.history("none");
    let latest = env.history("latest");
    assert_eq!(
        none.iter().filter(|r| r["status"] == "missed").count(),
        1,
        "{none:?}"
    );
    assert_eq!(
        latest.iter().filter(|r| r["status"] == "missed").count(),
        1,
        "{latest:?}"
    );
    assert_eq!(catch_up_runs(&none), 0, "{none:?}");
    assert_eq!(catch_up_runs(&latest), 1, "{latest:?}");
    let missed = none.iter().find(|r| r["status"] == "missed").unwrap();
    let msg = missed["error_message"].as_str().unwrap();
    assert!(
        msg.contains("not running") && msg.contains("slots from"),
        "{msg}"
    );
    assert_eq!(time(missed, "scheduled_for"), down_from);
}

#[test]
fn kill_stops_a_running_execution() {
    let env = Env::new();
    let t = soon(1);
    env.ok(&[
        "add",
        "longrun",
        "--schedule",
        &at(t),
        "--",
        "/bin/sleep",
        "60",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let row = env
        .wait_for(Duration::from_secs(15), || {
            env.history("longrun")
                .into_iter()
                .find(|r| r["status"] == "running" && r["pid"].is_number())
        })
        .unwrap_or_else(|| panic!("never started; log:\n{}", env.runner_log()));
    let id = row["id"].as_i64().unwrap().to_string();
    env.ok(&["kill", &id]);
    let ended = env.wait_for(Duration::from_secs(15), || {
        env.history("longrun")
            .into_iter()
            .find(|r| r["status"] != "running")
    });
    stop(&mut runner);
    let ended = ended.expect("the killed execution was recorded");
    assert_eq!(ended["status"], "cancelled");
    assert!(ended["error_message"]
        .as_str()
        .unwrap()
        .contains("cancelled by"));
    // Killing it again: it was already cancelled (see tests/cli/cancel.rs).
    assert!(env.ok(&["kill", &id]).contains("already cancelled"));
}

/// CPU seconds a process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn clock_jumps_run_the_gap_once_and_rerun_nothing() {
    let env = Env::new();
    let offset = env.dir.path().join("clock-offset");
    std::fs::write(&offset, "0").unwrap();
    use chrono::Timelike;
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    let fixed = format!("{} {} * * *", in_an_hour.minute(), in_an_hour.hour());
    env.ok(&["add", "fixed", "--schedule", &fixed, "--", "/bin/true"]);
    env.ok(&[
        "add",
        "every-minute",
        "--schedule",
        "* * * * *",
        "--",
        "/bin/true",
    ]);
    let mut runner = env.spawn_runner_env(
        &[],
        &[("CRONMGR_CLOCK_OFFSET_FILE", offset.to_str().unwrap())],
    );
    std::thread::sleep(Duration::from_millis(800));
    // Forward 2 h: the fixed-time job's slot is in the gap and runs once; the minutely job does
    // not run 120 times.
    // The runner reads the offset file at start and on SIGUSR1 only, never on its own.
    std::fs::write(&offset, "7200").unwrap();
    signal(&runner, libc::SIGUSR1);
    let ran = env.wait_for(Duration::from_secs(10), || {
        env.history("fixed")
            .into_iter()
            .find(|r| r["status"] == "success")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let minutely = env.history("every-minute");
    // Back 1 h: nothing reruns.
    std::fs::write(&offset, "3600").unwrap();
    signal(&runner, libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(1500));
    let fixed_after_back = env.history("fixed");
    // Forward 1 day: a clock correction (or a sleep): the day's slots are missed, not flooded.
    std::fs::write(&offset, "90000").unwrap();
    signal(&runner, libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(1500));
    let cpu = cpu_seconds(runner.id());
    stop(&mut runner);
    let ran = ran.unwrap_or_else(|| {
        panic!(
            "the gap's fixed-time slot did not run; log:\n{}",
            env.runner_log()
        )
    });
    assert_eq!(time(&ran, "scheduled_for").minute(), in_an_hour.minute());
    assert_eq!(fixed_after_back.len(), 1, "{fixed_after_back:?}");
    let fixed = env.history("fixed");
    assert_eq!(statuses(&fixed), ["success", "missed"], "{fixed:?}");
    let day = env.history("every-minute");
    assert!(
        day.iter().filter(|r| r["status"] == "success").count() <= 3,
        "the minutely job flooded after the day jump: {day:?}"
    );
    assert_eq!(
        day.iter().filter(|r| r["status"] == "missed").count(),
        2,
        "{day:?}"
    );
    let runs = minutely.iter().filter(|r| r["status"] == "success").count();
    assert!(runs <= 1, "the minutely job flooded: {minutely:?}");
    assert_eq!(
        minutely.iter().filter(|r| r["status"] == "missed").count(),
        1,
        "{minutely:?}"
    );
    assert!(env.runner_log().contains("jumped forward"));
    assert!(cpu < 2.0, "the runner burned {cpu} s of CPU: a busy loop?");
}

#[test]
fn reboot_jobs_run_once_per_start() {
    let env = Env::new();
    env.ok(&[
        "add",
        "boot",
        "--schedule",
        "@reboot",
        "--",
        "/bin/echo",
        "booted",
    ]);
    for round in 1..=2 {
        let mut runner = env.spawn_runner(&[]);
        let seen = env.wait_for(Duration::from_secs(10), || {
            let n = env
                .history("boot")
                .iter()
                .filter(|r| r["status"] == "success")
                .count();
            (n == round).then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        stop(&mut runner);
        seen.unwrap_or_else(|| panic!("round {round}; log:\n{}", env.runner_log()));
    }
    assert_eq!(env.history("boot").len(), 2);
}

#[test]
fn jobs_get_a_clean_environment() {
    let env = Env::new();
    let t = soon(1);
    env.ok(&[
        "add",
        "envdump",
        "--schedule",
        &at(t),
        "--param",
        "env={\"MINE\":\"yes\"}",
        "--",
        "/bin/sh",
        "-c",
        "env | sort",
    ]);
    let mut runner = env.spawn_runner_env(&[], &[("RUNNER_SECRET", "hunter2")]);
    let row = env.wait_for(Duration::from_secs(15), || {
        env.history("envdump")
            .into_iter()
            .find(|r| r["status"] == "success")
    });
    stop(&mut runner);
    let row = row.unwrap_or_else(|| panic!("no run; log:\n{}", env.runner_log()));
    let out = row["output"].as_str().unwrap();
    assert!(
        !out.contains("hunter2") && !out.contains("RUNNER_SECRET"),
        "{out}"
    );
    assert!(out.contains("MINE=yes"), "{out}");
    assert!(out.contains("CRONMGR_JOB=envdump"), "{out}");
    let names: Vec<&str> = out.lines().map(|l| l.split('=').next().unwrap()).collect();
    for name in &names {
        assert!(
            ["PATH", "HOME", "LANG", "MINE", "PWD", "SHLVL", "_"].contains(name)
                || name.starts_with("CRONMGR_"),
            "unexpected variable {name} in the job's environment: {out}"
        );
    }
}

#[test]
fn the_runner_speaks_systemds_notify_protocol() {
    use std::os::unix::net::UnixDatagram;
    let env = Env::new();
    let path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut runner = env.spawn_runner_env(&[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("READY within 10 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("READY=1"), "{msg}");
    assert!(msg.contains("STATUS="), "{msg}");
    signal(&runner, libc::SIGTERM);
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert_eq!(wait_exit(&mut runner, Duration::from_secs(20)), Some(0));
    assert!(stopping, "no STOPPING=1");
}

#[test]
fn prune_trims_history_to_the_settings() {
    let env = Env::new();
    env.ok(&["add", "chatty", "--schedule", "@daily", "--", "/bin/true"]);
    for _ in 0..5 {
        env.ok(&["run-now", "chatty"]);
    }
    env.ok(&["settings", "set", "keep_executions", "2"]);
    let plan = env.json(&["prune", "--dry-run"]);
    assert_eq!(plan["would_delete"], 3);
    assert_eq!(env.history("chatty").len(), 5, "dry run deleted something");
    let done = env.json(&["prune"]);
    assert_eq!(done["deleted"], 3);
    let left = env.history("chatty");
    assert_eq!(left.len(), 2);
    // The newest are kept.
    assert!(
        left.iter().all(|r| r["id"].as_i64().unwrap() >= 4),
        "{left:?}"
    );
}

#[test]
fn history_filters_by_status_and_time() {
    let env = Env::new();
    env.ok(&["add", "ok", "--schedule", "@daily", "--", "/bin/true"]);
    env.ok(&["add", "ko", "--schedule", "@daily", "--", "/bin/false"]);
    env.ok(&["run-now", "ok"]);
    env.fails(3, &["run-now", "ko"]);
    assert_eq!(env.json(&["history"]).as_array().unwrap().len(), 2);
    let failed = env.json(&["history", "--status", "failed"]);
    assert_eq!(failed.as_array().unwrap().len(), 1);
    assert_eq!(failed[0]["job"], "ko");
    assert_eq!(
        env.json(&["history", "--since", "1h"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        env.json(&["history", "--since", "2099-01-01"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        env.json(&["history", "--limit", "1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let err = env.fails(2, &["history", "--status", "exploded"]);
    assert!(err.contains("expected one of"), "{err}");
    env.fails(2, &["history", "ghost"]);
    let table = env.ok(&["history"]);
    assert!(
        table.contains("STATUS") && table.contains("failed"),
        "{table}"
    );
}

#[test]
fn logs_follow_streams_a_running_execution() {
    let env = Env::new();
    let t = soon(1);
    env.ok(&[
        "add",
        "ticker",
        "--schedule",
        &at(t),
        "--",
        "/bin/sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.5; done",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let row = env
        .wait_for(Duration::from_secs(15), || {
            env.history("ticker")
                .into_iter()
                .find(|r| r["status"] == "running")
        })
        .unwrap_or_else(|| panic!("never started; log:\n{}", env.runner_log()));
    let id = row["id"].as_i64().unwrap().to_string();
    let out = env.ok(&["logs", "--follow", &id]);
    stop(&mut runner);
    assert_eq!(out, "line 1\nline 2\nline 3\n");
}

#[test]
fn the_runner_refuses_a_config_or_database_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    env.create_db();
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = env.fails(1, &["run", "--once"]);
    assert!(
        err.contains("config file") && err.contains("chmod go-w"),
        "{err}"
    );
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o662)).unwrap();
    let err = env.fails(1, &["run", "--once"]);
    assert!(
        err.contains("database") && err.contains("writable by"),
        "{err}"
    );
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.ok(&["run", "--once"]);
}
