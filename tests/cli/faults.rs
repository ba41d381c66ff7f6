//! The fault suite: what breaks other schedulers must not break this one.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{at, soon, statuses, stop, time, Env};

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_job_ignoring_sigterm_is_killed_with_its_group_after_the_grace_period() {
    let env = Env::new();
    let t = soon(1);
    env.ok(&[
        "add",
        "stubborn",
        "--schedule",
        &at(t),
        "--timeout",
        "1",
        "--",
        "/bin/sh",
        "-c",
        "trap '' TERM; (trap '' TERM; sleep 60) & sleep 60",
    ]);
    let row = env.run_until_first("stubborn", "timeout", Duration::from_secs(25));
    // TERM was ignored, so KILL ended it, 5 s after the 1 s timeout.
    let ms = row["duration_ms"].as_i64().unwrap();
    assert!((5_500..20_000).contains(&ms), "took {ms} ms");
    assert_eq!(row["exit_code"], 137);
    let pgid = row["pid"].as_i64().unwrap() as i32;
    let gone = env.wait_for(Duration::from_secs(10), || {
        // SAFETY: signal 0 only probes.
        (unsafe { libc::kill(-pgid, 0) } != 0).then_some(())
    });
    assert!(gone.is_some(), "group {pgid} survived");
}

#[test]
fn huge_and_invalid_output_is_capped_stored_and_the_runner_stays_small() {
    let env = Env::new();
    // Room for the adds and the runner's start: on PostgreSQL under the whole suite's load they
    // took over a second, and the slot passed before the runner was up (recorded missed).
    let t = soon(5);
    // 50 MB of output, and bytes that are not UTF-8.
    env.ok(&[
        "add",
        "flood",
        "--schedule",
        &at(t),
        "--",
        "/bin/sh",
        "-c",
        "head -c 52428800 /dev/zero | tr '\\0' x; echo; echo tail-marker",
    ]);
    env.ok(&[
        "add",
        "binary",
        "--schedule",
        &at(t),
        "--",
        "/usr/bin/printf",
        "ok \\377\\376 done",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let mut peak = 0;
    let done = env.wait_for(Duration::from_secs(60), || {
        peak = peak.max(rss_kib(runner.id()));
        let f = env.history("flood");
        let b = env.history("binary");
        (f.iter().any(|r| r["status"] == "success") && b.iter().any(|r| r["status"] == "success"))
            .then_some((f, b))
    });
    stop(&mut runner);
    let (flood, binary) =
        done.unwrap_or_else(|| panic!("did not finish; log:\n{}", env.runner_log()));
    let out = flood[0]["output"].as_str().unwrap();
    assert!(out.len() <= 1024 * 1024 + 200, "stored {} bytes", out.len());
    assert!(out.starts_with("xxxx"), "head kept");
    assert!(out.trim_end().ends_with("tail-marker"), "tail kept");
    assert!(out.contains("omitted"), "a marker says what was cut");
    assert_eq!(binary[0]["output"], "ok \u{fffd}\u{fffd} done");
    // The runner never held the 50 MB: its resident size stayed small.
    assert!(peak < 40 * 1024, "runner peaked at {peak} KiB");
}

#[test]
fn shell_metacharacters_in_a_row_edited_behind_our_back_never_execute() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let marker = env.dir.path().join("pwned");
    env.ok(&[
        "add",
        "meta",
        "--schedule",
        "* * * * * *",
        "--",
        "/bin/echo",
        "ok",
    ]);
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.execute(
        "UPDATE jobs SET params = json_object('argv', json_array(?1)) WHERE name = 'meta'",
        [format!("/bin/echo; touch {}", marker.display())],
    )
    .unwrap();
    drop(conn);
    let row = env.run_until_first("meta", "failed", Duration::from_secs(15));
    assert!(
        row["error_message"].as_str().unwrap().contains("refused"),
        "{row}"
    );
    assert!(row["pid"].is_null());
    assert!(!marker.exists());
}

#[test]
fn corrupt_inputs_give_clear_errors_and_damage_nothing() {
    // A truncated database file.
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    env.ok(&["add", "a", "--schedule", "@daily", "--", "/bin/true"]);
    let bytes = std::fs::read(&env.db).unwrap();
    let cut = env.dir.path().join("cut.db");
    std::fs::write(&cut, &bytes[..bytes.len().min(4096) / 2]).unwrap();
    let before = std::fs::read(&cut).unwrap();
    let out = env.cmd_with_db(&cut).args(["list"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.db"), "the message names the file: {err}");
    assert_eq!(
        std::fs::read(&cut).unwrap(),
        before,
        "the truncated file was modified"
    );

    // An unknown time zone written into the settings behind our back.
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    env.ok(&["settings", "set", "max_concurrent_jobs", "3"]);
    conn.execute("UPDATE settings SET timezone = 'Mars/Olympus'", [])
        .unwrap();
    drop(conn);
    let err = env.fails(2, &["show", "a"]);
    assert!(err.contains("Mars/Olympus"), "{err}");
    // The runner keeps running and says why the job is not scheduled.
    env.ok(&[
        "add",
        "other",
        "--schedule",
        "@daily",
        "--timezone",
        "UTC",
        "--",
        "/bin/true",
    ]);
    env.cmd().args(["run", "--once"]).assert().success();
    // Fixing the setting fixes everything.
    env.ok(&["settings", "set", "timezone", "UTC"]);
    env.ok(&["show", "a"]);
}

#[test]
fn a_hundred_due_jobs_with_four_workers_never_exceed_four_and_start_by_priority() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let t = soon(3);
    let conn = rusqlite::Connection::open(&env.db);
    drop(conn);
    env.create_db();
    // Insert 100 jobs directly (faster than 100 `add`s), priorities 1..10.
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let slot = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for i in 0..100 {
        let prio = 10 - (i % 10);
        conn.execute(
            "INSERT INTO jobs (system, name, schedule, command, params, priority, created_at, updated_at, next_run_at) \
             VALUES ('default', ?1, ?2, 'shell', '{\"argv\":[\"/bin/sleep\",\"0.2\"]}', ?3, ?4, ?4, ?5)",
            rusqlite::params![format!("job{i:03}"), at(t), prio, now, slot],
        )
        .unwrap();
    }
    drop(conn);
    let mut runner = env.spawn_runner(&["--max-concurrent", "4"]);
    let rows = env.wait_for(Duration::from_secs(60), || {
        let rows: Vec<Value> = env
            .json(&["history", "--limit", "1000"])
            .as_array()
            .unwrap()
            .clone();
        (rows.iter().filter(|r| r["status"] == "success").count() == 100).then_some(rows)
    });
    stop(&mut runner);
    let mut rows = rows.unwrap_or_else(|| panic!("not all ran; log:\n{}", env.runner_log()));
    rows.sort_by_key(|r| r["id"].as_i64().unwrap());
    let shown = env.json(&["list"]);
    let prio = |job: &str| {
        shown
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == job)
            .unwrap()["priority"]
            .as_i64()
            .unwrap()
    };
    let priorities: Vec<i64> = rows
        .iter()
        .map(|r| prio(r["job"].as_str().unwrap()))
        .collect();
    let mut sorted = priorities.clone();
    sorted.sort();
    assert_eq!(priorities, sorted, "started out of priority order");
    for r in &rows {
        let s = time(r, "started_at");
        let overlapping = rows
            .iter()
            .filter(|o| time(o, "started_at") <= s && time(o, "finished_at") > s)
            .count();
        assert!(overlapping <= 4, "{overlapping} running at {s}");
    }
    assert_eq!(statuses(&rows).len(), 100);
}

#[test]
fn a_write_lock_held_for_10_s_delays_no_start_and_loses_no_record() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    env.ignore_host_disk();
    let log = env.dir.path().join("starts");
    let script = format!("date +%s.%N >> {}", log.display());
    env.ok(&[
        "add",
        "tick",
        "--schedule",
        "* * * * * *",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let mut runner = env.spawn_runner(&[]);
    std::thread::sleep(Duration::from_millis(1500));
    // Another process takes the write lock and keeps it for 10 s.
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let locked_at = chrono::Utc::now();
    std::thread::sleep(Duration::from_secs(10));
    conn.execute_batch("COMMIT").unwrap();
    drop(conn);
    std::thread::sleep(Duration::from_millis(2500));
    stop(&mut runner);
    // Every second of the lock had its run, started on time.
    let starts: Vec<f64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let lock_start = locked_at.timestamp_millis() as f64 / 1000.0;
    let during: Vec<&f64> = starts
        .iter()
        .filter(|t| **t > lock_start + 0.5 && **t < lock_start + 9.5)
        .collect();
    assert!(
        during.len() >= 8,
        "only {} starts while locked: {starts:?}",
        during.len()
    );
    // Each start within its own second. A start the lock held back would come after the lock
    // (none in the window above), so the bound is for load on a shared machine, not the lock:
    // starts 0.52 and 0.70 s late were seen with five builds beside the test.
    for t in &during {
        let late = *t - t.floor();
        assert!(
            late < 0.9,
            "a start {late:.3} s after its second while locked"
        );
    }
    // Every run is recorded once the lock is gone: one row per start, none lost, none twice.
    let rows = env.history("tick");
    let ok: Vec<&Value> = rows.iter().filter(|r| r["status"] == "success").collect();
    assert_eq!(
        ok.len(),
        starts.len(),
        "rows {} vs starts {}: {}",
        ok.len(),
        starts.len(),
        env.runner_log()
    );
    let mut slots: Vec<String> = ok.iter().map(|r| r["scheduled_for"].to_string()).collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), ok.len(), "a slot recorded twice");
    assert!(ok.iter().all(|r| r["output"] == ""), "outputs kept");
    assert!(
        ok.iter().all(|r| r["pid"].is_number()),
        "pids recorded late still land"
    );
    assert!(
        env.runner_log().contains("claimed in"),
        "{}",
        env.runner_log()
    );
    // The refusal was long enough to raise an alert once the database took writes again.
    let alerts = env.json(&["alerts"]);
    let text = alerts.to_string();
    assert!(text.contains("could not write to its database"), "{text}");
    // The claim journal is empty again.
    let journal =
        std::fs::read_to_string(format!("{}.claims", env.db.display())).unwrap_or_default();
    assert_eq!(journal, "");
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// None after a skip when this machine may not mount one (not root, or a container
    /// without CAP_SYS_ADMIN).
    fn mount(at: std::path::PathBuf, size: &str) -> Option<SmallDisk> {
        if !crate::harness::root_for("mounting a tmpfs") {
            return None;
        }
        std::fs::create_dir_all(&at).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0750"),
                "tmpfs",
            ])
            .arg(&at)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk(at)),
            Ok(out) => {
                crate::harness::skip(&format!(
                    "mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                None
            }
            Err(e) => {
                crate::harness::skip(&format!("cannot run mount: {e}"));
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_loses_no_committed_row_and_recording_resumes_with_an_alert() {
    let base = Env::new();
    let Some(disk) = SmallDisk::mount(base.dir.path().join("small"), "8m") else {
        return;
    };
    let mut env = base;
    env.db = disk.0.join("cronmgr.db");
    env.ok(&[
        "add",
        "tick",
        "--schedule",
        "* * * * * *",
        "--",
        "/bin/echo",
        "x",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let ran = env.wait_for(Duration::from_secs(10), || {
        (env.history("tick").len() >= 2).then_some(())
    });
    assert!(ran.is_some(), "{}", env.runner_log());
    let committed: Vec<Value> = env.history("tick");
    // Fill the disk.
    let ballast = disk.0.join("ballast");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", ballast.display()))
        .stderr(std::process::Stdio::null())
        .status();
    std::thread::sleep(Duration::from_secs(4));
    // Space returns.
    std::fs::remove_file(&ballast).unwrap();
    let resumed = env.wait_for(Duration::from_secs(10), || {
        let rows = env.history("tick");
        (rows.len() > committed.len() + 3).then_some(rows)
    });
    std::thread::sleep(Duration::from_millis(1500));
    stop(&mut runner);
    let rows =
        resumed.unwrap_or_else(|| panic!("recording did not resume; log:\n{}", env.runner_log()));
    // Every row committed before the disk filled is still there, unchanged.
    for before in &committed {
        if before["status"] == "running" {
            continue;
        }
        assert!(
            rows.iter().any(|r| r == before),
            "lost or changed: {before}"
        );
    }
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    let alerts = env.json(&["alerts"]).to_string();
    assert!(
        alerts.contains("could not write to its database"),
        "no alert: {alerts}\nlog:\n{}",
        env.runner_log()
    );
    drop(env);
}

#[test]
fn sigterm_with_three_running_jobs_drains_kills_and_records_then_exits_0() {
    let env = Env::new();
    env.ok(&["settings", "set", "shutdown_grace", "2"]);
    // Room for the adds and the runner's start (see the test above).
    let t = soon(5);
    env.ok(&[
        "add",
        "quick",
        "--schedule",
        &at(t),
        "--",
        "/bin/sleep",
        "1",
    ]);
    env.ok(&[
        "add",
        "slow1",
        "--schedule",
        &at(t),
        "--",
        "/bin/sleep",
        "30",
    ]);
    env.ok(&[
        "add",
        "slow2",
        "--schedule",
        &at(t),
        "--",
        "/bin/sh",
        "-c",
        "sleep 30 & sleep 30",
    ]);
    env.ok(&[
        "add",
        "later",
        "--schedule",
        "* * * * * *",
        "--",
        "/bin/true",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let running = env.wait_for(Duration::from_secs(15), || {
        let rows: Vec<Value> = env
            .json(&["history", "--status", "running"])
            .as_array()
            .unwrap()
            .clone();
        (rows.len() >= 3).then_some(rows)
    });
    running.unwrap_or_else(|| panic!("never three running; log:\n{}", env.runner_log()));
    let later_before = env.history("later").len();
    let stopped_at = std::time::Instant::now();
    stop(&mut runner);
    let took = stopped_at.elapsed();
    // Grace 2 s, then TERM and (for the group ignoring nothing) a quick end: well under 10 s.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(statuses(&env.history("quick")), ["success"]);
    for name in ["slow1", "slow2"] {
        let rows = env.history(name);
        assert_eq!(statuses(&rows), ["interrupted"], "{name}");
        let pgid = rows[0]["pid"].as_i64().unwrap() as i32;
        let gone = env.wait_for(Duration::from_secs(10), || {
            // SAFETY: signal 0 only probes.
            (unsafe { libc::kill(-pgid, 0) } != 0).then_some(())
        });
        assert!(gone.is_some(), "{name}'s group survived");
    }
    // No new start after the signal.
    let later: Vec<Value> = env.history("later");
    assert!(
        later.len() <= later_before + 1,
        "started after SIGTERM: {later:?}"
    );
    assert!(later.iter().all(|r| r["status"] != "running"));
}
