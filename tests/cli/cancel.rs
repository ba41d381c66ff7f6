//! `cronmgr kill` as a cancel: the `cancelled` status and who asked, no alert, no streak, no
//! retry; a second kill signals nothing; a reused pid is not signalled; the runner's stop
//! summary counts interrupted and cancelled executions apart from failed ones.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{at, psql, signal, soon, stop, wait_exit, Env};

/// `cronmgr --db <tmp> ARGS` as a child process (the harness's `cmd` runs to completion).
fn spawn(env: &Env, args: &[&str], stdout: Stdio, log: &str) -> Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("cronmgr"))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", env.dir.path())
        .env("TZ", "UTC")
        .env("CRONMGR_CONFIG", &env.config)
        .env("RUST_LOG", "cronmgr=info")
        .arg("--db")
        .arg(&env.db)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(std::fs::File::create(env.dir.path().join(log)).expect("log"))
        .spawn()
        .expect("spawn cronmgr")
}

/// Run SQL against the test database, SQLite file or PostgreSQL schema.
fn sql(env: &Env, statement: &str) {
    let db = env.db.to_string_lossy();
    if db.starts_with("postgres") {
        psql(&db, statement);
    } else {
        let conn = rusqlite::Connection::open(&env.db).expect("open db");
        conn.execute_batch(statement).expect("sql");
    }
}

/// A listener that counts the HTTP requests it gets (a webhook that must stay silent).
fn counting_webhook() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            use std::io::Write;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (url, count)
}

fn audit_kills(env: &Env) -> Vec<Value> {
    env.json(&["audit"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "kill")
        .cloned()
        .collect()
}

/// The job's running execution, once it has a process. (Jobs fire at `soon(3)`: a runner
/// starting later than its slot, on a busy machine, would record the slot missed instead.)
fn running(env: &Env, job: &str) -> Value {
    env.wait_for(Duration::from_secs(20), || {
        env.history(job)
            .into_iter()
            .find(|r| r["status"] == "running" && r["pid"].is_number())
    })
    .unwrap_or_else(|| {
        panic!(
            "{job} never started: {:?}; log:\n{}",
            env.history(job),
            env.runner_log()
        )
    })
}

fn ended(env: &Env, job: &str, id: i64) -> Value {
    env.wait_for(Duration::from_secs(20), || {
        env.history(job)
            .into_iter()
            .find(|r| r["id"] == id && r["status"] != "running")
    })
    .unwrap_or_else(|| panic!("execution {id} never ended; log:\n{}", env.runner_log()))
}

#[test]
fn a_killed_execution_is_cancelled_by_its_killer_without_alert_streak_retry_or_disable() {
    let env = Env::new();
    env.ignore_host_disk();
    let (hook, requests) = counting_webhook();
    env.ok(&["settings", "set", "webhook_url", &hook]);
    // Were the cancel a failure, it would alert, be retried at once, and disable the job.
    env.ok(&[
        "add",
        "longrun",
        "--schedule",
        &at(soon(3)),
        "--retries",
        "2",
        "--retry-delay",
        "0s",
        "--disable-after",
        "1",
        "--",
        "/bin/sleep",
        "60",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let row = running(&env, "longrun");
    let id = row["id"].as_i64().unwrap();
    let killed = env.json(&["kill", &id.to_string()]);
    assert_eq!(killed["killed"], true, "{killed}");
    assert_eq!(killed["cancelled_by"], "root", "{killed}");
    let end = ended(&env, "longrun", id);
    // Time for a retry, an alert or a disable to show, were there one.
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut runner);

    assert_eq!(end["status"], "cancelled", "{end}");
    assert_eq!(end["cancelled_by"], "root", "{end}");
    assert_eq!(end["error_message"], "cancelled by root", "{end}");
    let runs = env.history("longrun");
    assert_eq!(runs.len(), 1, "no retry after a cancel: {runs:?}");
    let kills = audit_kills(&env);
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert_eq!(kills[0]["user"], "root");
    let job = env.json(&["show", "longrun"]);
    assert_eq!(job["failure_streak"], 0, "{job}");
    assert_eq!(job["is_active"], true, "{job}");
    assert_eq!(env.json(&["alerts"]), serde_json::json!([]));
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "the webhook heard of it"
    );
    // `status`, `show`, `logs` and `history --status` show it as what it is, and who.
    let status = env.json(&["status"]);
    let last = &status["last_executions"][0];
    assert_eq!(
        (&last["status"], &last["cancelled_by"]),
        (&Value::from("cancelled"), &Value::from("root")),
        "{status}"
    );
    assert_eq!(status["executions_24h"]["cancelled"], 1, "{status}");
    let shown = &env.json(&["show", "longrun"])["recent_executions"][0];
    assert_eq!(shown["cancelled_by"], "root", "{shown}");
    let logs = env.json(&["logs", &id.to_string()]);
    assert_eq!(
        (&logs["status"], &logs["cancelled_by"]),
        (&Value::from("cancelled"), &Value::from("root")),
        "{logs}"
    );
    assert!(env
        .ok(&["history", "longrun"])
        .contains("cancelled by root"));
    let cancelled = env.json(&["history", "--status", "cancelled"]);
    assert_eq!(cancelled.as_array().unwrap().len(), 1);
    // `stats` and the metrics count it apart: not a run that failed, not a failure.
    let stats = &env.json(&["stats", "longrun"])[0];
    assert_eq!(
        (&stats["runs"], &stats["failed"], &stats["cancelled"]),
        (&Value::from(0), &Value::from(0), &Value::from(1)),
        "{stats}"
    );
    let metrics = env.ok(&["metrics"]);
    assert!(
        metrics.contains(r#"job="longrun",status="cancelled"} 1"#)
            && metrics.contains(r#"cronmgr_job_failures_total{system="default",job="longrun"} 0"#),
        "{metrics}"
    );
    let log = env.runner_log();
    assert!(
        log.contains("cancelled=1") && log.contains("failed=0"),
        "stop summary:\n{log}"
    );
}

#[test]
fn a_cancel_made_while_no_runner_records_the_end_is_recorded_cancelled_at_the_next_start() {
    let env = Env::new();
    env.ok(&[
        "add",
        "orphan",
        "--schedule",
        &at(soon(3)),
        "--",
        "/usr/bin/sh",
        "-c",
        "sleep 60 & wait",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let id = running(&env, "orphan")["id"].as_i64().unwrap();
    // The runner dies, and the job's shell with it (PR_SET_PDEATHSIG); the sleep it started
    // lives on in the job's process group.
    signal(&runner, libc::SIGKILL);
    wait_exit(&mut runner, Duration::from_secs(10));
    let killed = env.json(&["kill", &id.to_string()]);
    assert_eq!(killed["killed"], true, "{killed}");
    assert_eq!(env.history("orphan")[0]["status"], "running");
    // The next runner's start-up recovery records the end: as the cancel it was.
    let mut next = env.spawn_runner(&[]);
    let end = ended(&env, "orphan", id);
    stop(&mut next);
    assert_eq!(end["status"], "cancelled", "{end}");
    assert_eq!(end["cancelled_by"], "root", "{end}");
    assert_eq!(env.json(&["show", "orphan"])["failure_streak"], 0);
}

#[test]
fn a_run_now_whose_execution_is_killed_exits_130_without_retrying() {
    let env = Env::new();
    env.ok(&[
        "add",
        "manual",
        "--schedule",
        "@yearly",
        "--retries",
        "2",
        "--retry-delay",
        "0s",
        "--",
        "/bin/sleep",
        "60",
    ]);
    let mut run_now = spawn(&env, &["run-now", "manual"], Stdio::null(), "run-now.log");
    let id = running(&env, "manual")["id"].as_i64().unwrap();
    env.ok(&["kill", &id.to_string()]);
    let code = wait_exit(&mut run_now, Duration::from_secs(20));
    let log = std::fs::read_to_string(env.dir.path().join("run-now.log")).unwrap();
    assert_eq!(code, Some(130), "{log}");
    assert!(log.contains("cancelled"), "{log}");
    let runs = env.history("manual");
    assert_eq!(runs.len(), 1, "no retry: {runs:?}");
    assert_eq!(runs[0]["status"], "cancelled");
    assert_eq!(runs[0]["cancelled_by"], "root");
}

#[test]
fn a_second_kill_says_it_is_already_being_cancelled_and_signals_nothing() {
    let env = Env::new();
    let terms = env.dir.path().join("terms");
    // Ignores TERM (writing a line per TERM), so the first kill waits out the grace period.
    let script = format!(
        "trap 'echo TERM >> {}' TERM; while :; do sleep 0.1; done",
        terms.display()
    );
    env.ok(&[
        "add",
        "stubborn",
        "--schedule",
        &at(soon(3)),
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let mut runner = env.spawn_runner(&[]);
    let id = running(&env, "stubborn")["id"].as_i64().unwrap();
    let ids = id.to_string();
    let mut first = spawn(&env, &["kill", &ids], Stdio::null(), "kill-1.log");
    env.wait_for(Duration::from_secs(10), || {
        env.history("stubborn")
            .into_iter()
            .find(|r| r["id"] == id && r["cancelled_by"].is_string())
    })
    .expect("the first kill marks the row");
    env.wait_for(Duration::from_secs(5), || terms.exists().then_some(()))
        .expect("the first kill sent TERM");

    let out = env.ok(&["kill", &ids]);
    assert!(out.contains("already being cancelled"), "{out}");
    let again = env.json(&["kill", &ids]);
    assert_eq!(again["already"], "cancelling", "{again}");
    assert_eq!(again["killed"], false, "{again}");

    assert_eq!(wait_exit(&mut first, Duration::from_secs(20)), Some(0));
    let end = ended(&env, "stubborn", id);
    assert_eq!(end["status"], "cancelled", "{end}");
    let out = env.ok(&["kill", &ids]);
    assert!(out.contains("already cancelled by root"), "{out}");
    stop(&mut runner);

    let lines = std::fs::read_to_string(&terms).unwrap();
    assert_eq!(lines.lines().count(), 1, "one TERM only:\n{lines}");
    assert_eq!(audit_kills(&env).len(), 1);
}

#[test]
fn kill_leaves_alone_a_process_that_reused_the_executions_pid() {
    let env = Env::new();
    env.ok(&["add", "ghost", "--schedule", "@yearly", "--", "/bin/true"]);
    let job = env.json(&["show", "ghost"])["id"].as_i64().unwrap();
    // An unrelated process, leader of its own group, now holds the pid the row recorded for an
    // execution that started an hour ago (its runner died; the pid was handed out again).
    let mut stranger = StdCommand::new("/bin/sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .unwrap();
    let started = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    sql(
        &env,
        &format!(
            "INSERT INTO executions (id, job_id, status, scheduled_for, started_at, triggered_by, \
             attempt, pid) VALUES (77, {job}, 'running', '{started}', '{started}', 'schedule', 1, {})",
            stranger.id()
        ),
    );
    let before = env.dump();
    let out = env.ok(&["kill", "77"]);
    assert!(out.contains("reused"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let alive = stranger.try_wait().unwrap().is_none();
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(alive, "the stranger was signalled");
    assert_eq!(env.dump(), before, "nothing written");
    assert!(audit_kills(&env).is_empty());
}

#[test]
fn the_stop_summary_counts_interrupted_and_cancelled_apart_from_failed() {
    let env = Env::new();
    env.ignore_host_disk();
    env.ok(&["settings", "set", "shutdown_grace", "0"]);
    let t = soon(3);
    let schedule = at(t);
    for (name, program) in [
        ("victim", "/bin/sleep"),
        ("stuck", "/bin/sleep"),
        ("bad", "/bin/false"),
    ] {
        let mut args = vec!["add", name, "--schedule", &schedule, "--", program];
        if program.ends_with("sleep") {
            args.push("60");
        }
        env.ok(&args);
    }
    // `run --once` runs the slots that came due before it started.
    std::thread::sleep(
        (t - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200),
    );
    let mut once = spawn(
        &env,
        &["--json", "run", "--once"],
        Stdio::piped(),
        "runner.log",
    );
    let victim = running(&env, "victim")["id"].as_i64().unwrap();
    running(&env, "stuck");
    env.ok(&["kill", &victim.to_string()]);
    ended(&env, "victim", victim);
    env.wait_for(Duration::from_secs(10), || {
        env.history("bad")
            .into_iter()
            .find(|r| r["status"] == "failed")
    })
    .expect("bad failed");
    // A stop signal with no grace: `stuck` is interrupted.
    signal(&once, libc::SIGTERM);
    let code = wait_exit(&mut once, Duration::from_secs(20));
    let mut out = String::new();
    once.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let summary: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{e}: {out}\nlog:\n{}", env.runner_log()));
    assert_eq!(
        (
            &summary["started"],
            &summary["succeeded"],
            &summary["failed"],
            &summary["interrupted"],
            &summary["cancelled"]
        ),
        (
            &Value::from(3),
            &Value::from(0),
            &Value::from(1),
            &Value::from(1),
            &Value::from(1)
        ),
        "{summary}"
    );
    assert_eq!(code, Some(3), "a failure makes --once exit 3");
    let log = env.runner_log();
    let line = log
        .lines()
        .find(|l| l.contains("runner stopped"))
        .unwrap_or_else(|| panic!("no stop line:\n{log}"));
    for field in ["failed=1", "interrupted=1", "cancelled=1"] {
        assert!(line.contains(field), "{field} in {line}");
    }
}
