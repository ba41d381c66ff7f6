//! Several runners sharing one PostgreSQL database (CRONMGR_TEST_POSTGRES): each slot exactly
//! once, a runner killed with kill -9 loses no slot, pinned jobs, fleet-wide caps and overlap.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::thread::sleep;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use serde_json::Value;

use crate::harness::{signal, stop, time, Env};

/// Every whole second strictly inside (from, to).
fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut t = from.duration_trunc(Span::seconds(1)).unwrap() + Span::seconds(1);
    let mut out = Vec::new();
    while t < to {
        out.push(t);
        t += Span::seconds(1);
    }
    out
}

/// The scheduled rows (attempt 1) of a job, by slot; panics if a slot has two.
fn by_slot(rows: &[Value]) -> BTreeMap<DateTime<Utc>, Value> {
    let mut out = BTreeMap::new();
    for r in rows.iter().filter(|r| r["attempt"] == 1) {
        let slot = time(r, "scheduled_for");
        assert!(
            out.insert(slot, r.clone()).is_none(),
            "slot {slot} has two rows: {rows:#?}"
        );
    }
    out
}

fn logs(env: &Env, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("--- runner {n}\n{}", env.named_runner_log(n)))
        .collect()
}

fn runners_up(env: &Env, n: usize) {
    let up = env.wait_for(Duration::from_secs(20), || {
        let list = env.json(&["runners"]);
        (list.as_array().unwrap().len() >= n).then_some(())
    });
    assert!(up.is_some(), "{n} runners did not register");
}

#[test]
fn three_runners_fire_every_slot_of_a_seconds_job_exactly_once() {
    let Some(env) = Env::postgres() else { return };
    env.ok(&[
        "add",
        "tick",
        "--schedule",
        "*/1 * * * * *",
        "--",
        "/usr/bin/echo",
        "tick",
    ]);
    let mut runners: Vec<Child> = ["a", "b", "c"]
        .iter()
        .map(|n| env.spawn_named_runner(n, &[]))
        .collect();
    runners_up(&env, 3);
    let from = Utc::now();
    sleep(Duration::from_secs(10));
    let to = Utc::now();
    let listed = env.json(&["runners"]);
    for r in &mut runners {
        stop(r);
    }
    let rows = env.history("tick");
    let slots = by_slot(&rows);
    let log = logs(&env, &["a", "b", "c"]);
    let expected = seconds_between(from, to);
    assert!(expected.len() >= 9, "{}", expected.len());
    for second in &expected {
        let row = slots
            .get(second)
            .unwrap_or_else(|| panic!("slot {second} never fired\n{log}"));
        assert_eq!(row["status"], "success", "{row:#}");
        assert_eq!(row["output"], "tick\n");
    }
    // Nothing but the slots of the schedule, and each of those once (checked by by_slot).
    assert!(rows.iter().all(|r| r["triggered_by"] == "schedule"));
    let pids: BTreeSet<u64> = slots
        .values()
        .filter_map(|r| r["runner_pid"].as_u64())
        .collect();
    eprintln!(
        "{} slots over {} s, run by {} runners",
        expected.len(),
        (to - from).num_seconds(),
        pids.len()
    );
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:#?}");
    for r in listed {
        assert_eq!(r["state"], "up");
        assert!(r["host"].as_str().is_some_and(|h| !h.is_empty()));
        assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
    }
    let after = env.json(&["runners", "--all"]);
    assert!(after
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["state"] == "stopped"));
}

#[test]
fn a_runner_killed_with_kill_9_loses_no_slot_and_its_runs_are_interrupted_then_retried() {
    let Some(env) = Env::postgres() else { return };
    env.ok(&[
        "add",
        "work",
        "--schedule",
        "*/1 * * * * *",
        "--allow-concurrent",
        "--retries",
        "1",
        "--retry-delay",
        "0s",
        "--",
        "/usr/bin/sleep",
        "2",
    ]);
    let names = ["a", "b", "c"];
    let mut runners: Vec<Child> = names
        .iter()
        .map(|n| env.spawn_named_runner(n, &["--lease", "3s"]))
        .collect();
    runners_up(&env, 3);
    let from = Utc::now();
    // Wait until a runner is running something (which one wins a lone slot is the fleet's
    // business), then kill that one outright.
    let pids: Vec<u64> = runners.iter().map(|r| r.id() as u64).collect();
    let busy = env.wait_for(Duration::from_secs(10), || {
        env.history("work").iter().find_map(|r| {
            let pid = r["runner_pid"].as_u64()?;
            (r["status"] == "running" && pids.contains(&pid)).then_some(pid)
        })
    });
    let Some(victim_pid) = busy else {
        panic!("no runner started the job\n{}", logs(&env, &names));
    };
    let victim = runners.remove(pids.iter().position(|p| *p == victim_pid).unwrap());
    signal(&victim, libc::SIGKILL);
    let killed_at = Utc::now();
    let mut victim = victim;
    victim.wait().unwrap();
    sleep(Duration::from_secs(10));
    let to = Utc::now();
    for r in &mut runners {
        stop(r);
    }
    let rows = env.history("work");
    let log = logs(&env, &names);
    let slots = by_slot(&rows);
    for second in seconds_between(from, to - Span::seconds(1)) {
        assert!(slots.contains_key(&second), "slot {second} was lost\n{log}");
    }
    let interrupted: Vec<&Value> = slots
        .values()
        .filter(|r| r["status"] == "interrupted")
        .collect();
    assert!(!interrupted.is_empty(), "{rows:#?}\n{log}");
    for r in &interrupted {
        assert_eq!(r["runner_pid"], victim_pid);
        assert!(
            r["error_message"].as_str().unwrap().contains("lease"),
            "{r:#}"
        );
        // Declared lost within the lease (3 s) and the survivors' one-second tick, with room
        // for a loaded machine.
        let noticed = time(r, "finished_at") - killed_at;
        assert!(
            noticed < Span::seconds(7),
            "interrupted {noticed} after the kill"
        );
        // The job's retry policy applied: a second attempt ran on a survivor.
        let slot = &r["scheduled_for"];
        let retry = rows
            .iter()
            .find(|x| x["scheduled_for"] == *slot && x["attempt"] == 2)
            .unwrap_or_else(|| panic!("no retry of {slot}\n{log}"));
        assert_eq!(retry["triggered_by"], "retry");
        assert_eq!(retry["status"], "success", "{retry:#}");
        assert_ne!(retry["runner_pid"], victim_pid);
    }
    // Every slot the victim never finished is accounted for; none ran twice.
    assert!(slots
        .values()
        .all(|r| matches!(r["status"].as_str(), Some("success" | "interrupted"))));
    let all = env.json(&["runners", "--all"]);
    let lost = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pid"] == victim_pid)
        .unwrap();
    assert_eq!(lost["state"], "lost", "{all:#}");
}

#[test]
fn a_pinned_job_runs_only_on_a_runner_with_its_label() {
    let Some(env) = Env::postgres() else { return };
    env.ok(&[
        "add",
        "pinned",
        "--schedule",
        "*/1 * * * * *",
        "--runner-label",
        "db-host",
        "--",
        "/usr/bin/true",
    ]);
    env.ok(&[
        "add",
        "anywhere",
        "--schedule",
        "*/1 * * * * *",
        "--",
        "/usr/bin/true",
    ]);
    let show = env.json(&["show", "pinned"]);
    assert_eq!(show["runner_labels"], serde_json::json!(["db-host"]));
    let mut db_host = env.spawn_named_runner("db", &["--label", "db-host"]);
    let mut others = [
        env.spawn_named_runner("plain", &[]),
        env.spawn_named_runner("eu", &["--label", "eu"]),
    ];
    runners_up(&env, 3);
    sleep(Duration::from_secs(8));
    let pinned_pid = db_host.id() as u64;
    stop(&mut db_host);
    for r in &mut others {
        stop(r);
    }
    let rows = env.history("pinned");
    let ran: Vec<&Value> = rows.iter().filter(|r| r["status"] == "success").collect();
    assert!(ran.len() >= 5, "{rows:#?}");
    assert!(
        ran.iter().all(|r| r["runner_pid"] == pinned_pid),
        "a pinned run happened elsewhere: {rows:#?}"
    );
    // With its runner gone, the pinned job waits; the others go on.
    let anywhere = env.history("anywhere");
    assert!(anywhere.iter().filter(|r| r["status"] == "success").count() >= 5);
}

#[test]
fn the_fleet_keeps_max_concurrent_jobs_across_runners() {
    let Some(env) = Env::postgres() else { return };
    // Each runner may run two at once (--max-concurrent 2) and has one job of its own that
    // would overlap itself three deep: alone they would run four; the fleet's cap is three.
    env.ok(&["settings", "set", "max_concurrent_jobs", "3"]);
    for (name, label) in [("one", "a"), ("two", "b")] {
        env.ok(&[
            "add",
            name,
            "--schedule",
            "*/1 * * * * *",
            "--allow-concurrent",
            "--runner-label",
            label,
            "--",
            "/usr/bin/sleep",
            "2.5",
        ]);
    }
    let mut runners = [
        env.spawn_named_runner("a", &["--label", "a", "--max-concurrent", "2"]),
        env.spawn_named_runner("b", &["--label", "b", "--max-concurrent", "2"]),
    ];
    runners_up(&env, 2);
    sleep(Duration::from_secs(9));
    for r in &mut runners {
        stop(r);
    }
    let mut spans = Vec::new();
    let mut pids = BTreeSet::new();
    for name in ["one", "two"] {
        for r in env.history(name) {
            if r["status"] == "success" {
                spans.push((time(&r, "started_at"), time(&r, "finished_at")));
                pids.insert(r["runner_pid"].as_u64().unwrap());
            }
        }
    }
    assert!(spans.len() >= 6, "{spans:?}");
    assert_eq!(pids.len(), 2, "each runner ran its own job");
    // At no instant more than three ran (a start may trail the end it waited for by a hair:
    // both instants are taken before their writes commit), and the cap was reached.
    let tolerance = Span::milliseconds(50);
    let mut most = 0;
    for (start, _) in &spans {
        let at = *start + tolerance;
        let running = spans.iter().filter(|(s, e)| *s <= at && at < *e).count();
        assert!(running <= 3, "{running} running at {at}: {spans:?}");
        most = most.max(running);
    }
    assert_eq!(most, 3, "{spans:?}");
}

#[test]
fn a_job_that_allows_no_overlap_never_overlaps_across_runners() {
    let Some(env) = Env::postgres() else { return };
    env.ok(&[
        "add",
        "excl",
        "--schedule",
        "*/1 * * * * *",
        "--",
        "/usr/bin/sleep",
        "2.5",
    ]);
    let mut runners = [
        env.spawn_named_runner("a", &[]),
        env.spawn_named_runner("b", &[]),
    ];
    runners_up(&env, 2);
    sleep(Duration::from_secs(9));
    for r in &mut runners {
        stop(r);
    }
    let rows = env.history("excl");
    let ran: Vec<(DateTime<Utc>, DateTime<Utc>)> = rows
        .iter()
        .filter(|r| r["status"] == "success")
        .map(|r| (time(r, "started_at"), time(r, "finished_at")))
        .collect();
    assert!(ran.len() >= 2, "{rows:#?}");
    for w in ran.windows(2) {
        assert!(
            w[1].0 + Span::milliseconds(50) >= w[0].1,
            "overlap: {w:?}\n{rows:#?}"
        );
    }
    let skipped: Vec<&Value> = rows.iter().filter(|r| r["status"] == "skipped").collect();
    assert!(!skipped.is_empty());
    // Skipped because a run was going, or because the slot before was still queued behind it
    // (on a loaded machine the next second's slot can come while this runner's queue waits).
    for r in &skipped {
        let why = r["error_message"].as_str().unwrap();
        assert!(
            why.contains("still going") || why.contains("still waiting"),
            "{why}\n{rows:#?}"
        );
    }
}

#[test]
fn labels_are_checked_where_they_are_given() {
    let env = Env::new();
    env.create_db();
    let err = env.fails(
        2,
        &[
            "add",
            "x",
            "--schedule",
            "@daily",
            "--runner-label",
            "db host",
            "--",
            "/usr/bin/true",
        ],
    );
    assert!(err.contains("--runner-label"), "{err}");
    assert!(env.json(&["list"]).as_array().unwrap().is_empty());
    env.ok(&[
        "add",
        "x",
        "--schedule",
        "@daily",
        "--runner-label",
        "db-host",
        "--runner-label",
        "eu",
        "--",
        "/usr/bin/true",
    ]);
    assert_eq!(
        env.json(&["show", "x"])["runner_labels"],
        serde_json::json!(["db-host", "eu"])
    );
    env.ok(&["edit", "x", "--runner-label", "none"]);
    assert_eq!(
        env.json(&["show", "x"])["runner_labels"],
        serde_json::json!([])
    );
    let err = env.fails(2, &["run", "--label", "bad label", "--once"]);
    assert!(err.contains("--label"), "{err}");
    // On SQLite the one runner registers too.
    env.ok(&["run", "--once"]);
    let all = env.json(&["runners", "--all"]);
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(all[0]["state"], "stopped");
}

#[test]
fn a_run_now_killed_with_kill_9_is_interrupted_by_the_fleet_after_its_lease() {
    let Some(env) = Env::postgres() else { return };
    env.ok(&[
        "add",
        "manual",
        "--schedule",
        "@yearly",
        "--",
        "/usr/bin/sleep",
        "60",
    ]);
    let mut runner = env.spawn_named_runner("a", &["--lease", "3s"]);
    runners_up(&env, 1);
    let mut run_now = std::process::Command::new(assert_cmd::cargo::cargo_bin("cronmgr"))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", env.dir.path())
        .env("CRONMGR_CONFIG", &env.config)
        .arg("--db")
        .arg(&env.db)
        .args(["-q", "run-now", "manual", "--lease", "3s"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = env.wait_for(Duration::from_secs(10), || {
        let rows = env.history("manual");
        rows.iter()
            .find(|r| r["status"] == "running" && r["pid"].is_u64())
            .cloned()
    });
    let running = running.expect("run-now started");
    let listed = env.json(&["runners"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["labels"] == serde_json::json!(["@run-now"]) && r["running"] == 1));
    signal(&run_now, libc::SIGKILL);
    run_now.wait().unwrap();
    let killed_at = Utc::now();
    let ended = env.wait_for(Duration::from_secs(15), || {
        let rows = env.history("manual");
        rows.iter()
            .find(|r| r["id"] == running["id"] && r["status"] == "interrupted")
            .cloned()
    });
    stop(&mut runner);
    // The sleep died with run-now (PR_SET_PDEATHSIG); were it still there, stop its group.
    unsafe { libc::kill(-(running["pid"].as_u64().unwrap() as i32), libc::SIGKILL) };
    let ended = ended.unwrap_or_else(|| panic!("never interrupted\n{}", logs(&env, &["a"])));
    assert!(ended["error_message"].as_str().unwrap().contains("lease"));
    assert!(time(&ended, "finished_at") - killed_at < Span::seconds(7));
}

/// `status` and `metrics` on PostgreSQL report the fleet from the `runners` table, whatever host
/// asks (here: neither runner's): both runners, their hosts, heartbeat ages and loads; and
/// never "runner: not running" while they are up.
#[test]
fn status_and_metrics_report_every_runner_of_the_fleet_whatever_host_asks() {
    let Some(env) = Env::postgres() else { return };
    env.ok(&[
        "add",
        "hold",
        "--schedule",
        "*/1 * * * * *",
        "--",
        "/usr/bin/sleep",
        "30",
    ]);
    let Some(mut a) = env.spawn_runner_on_host("a", "fleet-host-a", &[]) else {
        return;
    };
    let Some(mut b) = env.spawn_runner_on_host("b", "fleet-host-b", &["--max-concurrent", "3"])
    else {
        let _ = a.kill();
        return;
    };
    runners_up(&env, 2);
    // The job allows no overlap: one runner runs it, the other's load stays 0.
    let status = env
        .wait_for(Duration::from_secs(20), || {
            let s = env.json(&["status"]);
            let busy = s["fleet"]["runners"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["running"] == 1));
            busy.then_some(s)
        })
        .unwrap_or_else(|| panic!("no runner took the job\n{}", logs(&env, &["a", "b"])));
    let fleet = &status["fleet"];
    assert_eq!(fleet["runners_up"], 2, "{status:#}");
    let runners = fleet["runners"].as_array().unwrap();
    let hosts: BTreeSet<&str> = runners
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        BTreeSet::from(["fleet-host-a", "fleet-host-b"]),
        "{status:#}"
    );
    for r in runners {
        assert_eq!(r["state"], "up", "{r:#}");
        let age = r["heartbeat_age_seconds"].as_f64().unwrap();
        assert!(
            (0.0..=r["lease_seconds"].as_f64().unwrap()).contains(&age),
            "{r:#}"
        );
    }
    let load: Vec<u64> = runners
        .iter()
        .map(|r| r["running"].as_u64().unwrap())
        .collect();
    assert_eq!(load.iter().sum::<u64>(), 1, "{status:#}");
    let b_row = runners
        .iter()
        .find(|r| r["host"] == "fleet-host-b")
        .unwrap();
    assert_eq!(b_row["max_concurrent"], 3);
    assert_eq!(b_row["pid"], b.id());
    // Up, though no runner is on the host asking.
    assert_eq!(status["runner"]["up"], true, "{status:#}");
    assert_eq!(status["runner"]["pid"], Value::Null);
    let text = env.ok(&["status"]);
    assert!(!text.contains("not running"), "{text}");
    assert!(
        text.contains("fleet-host-a") && text.contains("fleet-host-b"),
        "{text}"
    );

    let metrics = env.ok(&["metrics"]);
    assert!(metrics.contains("cronmgr_runner_up 1\n"), "{metrics}");
    assert!(
        metrics.contains("cronmgr_fleet_runners_up 2\n"),
        "{metrics}"
    );
    for (child, host) in [(&a, "fleet-host-a"), (&b, "fleet-host-b")] {
        let series = format!("host=\"{host}\",pid=\"{}\"}}", child.id());
        for family in [
            "cronmgr_fleet_runner_up{",
            "cronmgr_fleet_runner_heartbeat_age_seconds{",
            "cronmgr_fleet_runner_running{",
        ] {
            assert!(
                metrics
                    .lines()
                    .any(|l| l.starts_with(family) && l.contains(&series)),
                "{family}…{series} missing:\n{metrics}"
            );
        }
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cronmgr_fleet_runner_running{") && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(metrics.contains("cronmgr_fleet_runner_capacity{") && metrics.contains(" 3\n"));

    // A runner that stops leaves the fleet's count.
    env.ok(&["disable", "hold"]);
    let (busy, idle) = if load[0] == 1 {
        (runners[0]["host"].clone(), runners[1]["host"].clone())
    } else {
        (runners[1]["host"].clone(), runners[0]["host"].clone())
    };
    let idle_child = if idle == "fleet-host-a" {
        &mut a
    } else {
        &mut b
    };
    stop(idle_child);
    // A clean stop marks the runner stopped at once; if that write fails (the whole suite on
    // PostgreSQL, CI: it did not land within 10 s), the runner leaves the count when its lease
    // (30 s) passes without a heartbeat. Either way it must leave.
    let left = env.wait_for(Duration::from_secs(45), || {
        let s = env.json(&["status"]);
        (s["fleet"]["runners_up"] == 1).then_some(s)
    });
    let left = left.expect("the stopped runner still counted");
    assert_eq!(left["fleet"]["runners"][0]["host"], busy, "{left:#}");
    stop_now(if busy == "fleet-host-a" {
        &mut a
    } else {
        &mut b
    });
}

/// Stop a runner and what it runs: a second SIGTERM ends the grace period.
fn stop_now(runner: &mut Child) {
    signal(runner, libc::SIGTERM);
    sleep(Duration::from_millis(300));
    signal(runner, libc::SIGTERM);
    assert!(
        crate::harness::wait_exit(runner, Duration::from_secs(20)).is_some(),
        "the runner did not exit after two SIGTERMs"
    );
}

/// A runner paused (SIGSTOP) past its lease while another runs every slot: declared lost, and
/// once resumed it writes no `missed` row for the slots the other ran; each slot has one row.
#[test]
fn a_paused_runner_that_resumes_writes_no_false_missed_row() {
    let Some(env) = Env::postgres() else { return };
    env.ok(&[
        "add",
        "tick",
        "--schedule",
        "*/1 * * * * *",
        "--",
        "/usr/bin/echo",
        "tick",
    ]);
    let Some(mut a) = env.spawn_runner_on_host("a", "paused-host-a", &["--lease", "3"]) else {
        return;
    };
    let Some(mut b) = env.spawn_runner_on_host("b", "paused-host-b", &["--lease", "3"]) else {
        let _ = a.kill();
        return;
    };
    runners_up(&env, 2);
    let from = Utc::now();
    sleep(Duration::from_secs(2));
    signal(&a, libc::SIGSTOP);
    sleep(Duration::from_secs(7));
    signal(&a, libc::SIGCONT);
    sleep(Duration::from_secs(4));
    let to = Utc::now();
    stop(&mut a);
    stop(&mut b);
    let log = logs(&env, &["a", "b"]);
    assert!(
        env.named_runner_log("a")
            .contains("another runner had declared this one lost"),
        "the pause did not outlast the lease\n{log}"
    );
    let rows = env.history("tick");
    // (A slot that came due between `add` and the first runner's start is truly missed.)
    let missed: Vec<&Value> = rows
        .iter()
        .filter(|r| r["status"] == "missed" && time(r, "scheduled_for") >= from)
        .collect();
    assert!(missed.is_empty(), "false missed rows: {missed:#?}\n{log}");
    let slots = by_slot(&rows);
    let mut waited = 0;
    for second in seconds_between(from, to) {
        let row = slots
            .get(&second)
            .unwrap_or_else(|| panic!("slot {second} has no row\n{log}"));
        let about_a = row["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("paused-host-a"));
        // A slot the paused runner had claimed when it stopped: its end never came, and the
        // fleet marked it interrupted after the lease (true, and one row).
        let caught = row["status"] == "interrupted" && about_a;
        // When the pause caught that execution before its end was recorded, the job (which
        // forbids overlap) was running as far as the fleet knew until the lease ran out: the
        // slots in between are `skipped`, naming it (true when written).
        let held = row["status"] == "skipped" && about_a;
        waited += usize::from(held);
        assert!(
            row["status"] == "success" || caught || held,
            "{row:#}\n{log}"
        );
    }
    // A lease of 3 s, a heartbeat a second: no more than about 5 slots wait for it.
    assert!(
        waited <= 6,
        "{waited} slots skipped for the paused runner\n{log}"
    );
}

/// A job pinned to a label no runner up carries: when a runner with it starts, the missed row
/// names the label, though another runner was up all along.
#[test]
fn a_pinned_jobs_missed_row_names_the_label_no_runner_had() {
    let Some(env) = Env::postgres() else { return };
    env.ok(&[
        "add",
        "pinned",
        "--schedule",
        "*/1 * * * * *",
        "--runner-label",
        "db-host",
        "--",
        "/usr/bin/true",
    ]);
    let Some(mut b) = env.spawn_runner_on_host("b", "pinned-host-b", &[]) else {
        return;
    };
    runners_up(&env, 1);
    sleep(Duration::from_secs(3));
    assert!(env.history("pinned").is_empty(), "ran without its label");
    let Some(mut a) = env.spawn_runner_on_host("a", "pinned-host-a", &["--label", "db-host"])
    else {
        let _ = b.kill();
        return;
    };
    let row = env.wait_for(Duration::from_secs(20), || {
        env.history("pinned")
            .into_iter()
            .find(|r| r["status"] == "missed")
    });
    stop(&mut a);
    stop(&mut b);
    let row = row.unwrap_or_else(|| panic!("no missed row\n{}", logs(&env, &["a", "b"])));
    let message = row["error_message"].as_str().unwrap();
    assert!(
        message.ends_with(": no runner with labels db-host was up"),
        "{message}"
    );
}
