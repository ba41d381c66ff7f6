//! Chains (`--after`): a three-job chain fired by the real runner with the records linking
//! them, cycles and unknown parents refused with nothing changed, jobs.d and export, and on a
//! fleet a chain that fires once wherever its parent ran.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{stop, time, Env};

/// The rows of `job` with status `status`.
fn with_status(env: &Env, job: &str, status: &str) -> Vec<Value> {
    (env.history(job).into_iter())
        .filter(|r| r["status"] == status)
        .collect()
}

#[test]
fn a_runner_fires_the_jobs_after_a_success_or_a_failure_and_links_the_records() {
    let env = Env::new();
    env.ok(&["add", "a", "--schedule", "@reboot", "--", "/usr/bin/true"]);
    // No schedule: they run only after a.
    env.ok(&["add", "b", "--after", "a", "--", "/usr/bin/echo", "b"]);
    env.ok(&[
        "add",
        "c",
        "--after",
        "a:failure",
        "--",
        "/usr/bin/echo",
        "c",
    ]);
    let shown = env.json(&["show", "a"]);
    assert_eq!(
        shown["children"],
        serde_json::json!(["b:success", "c:failure"])
    );
    let shown = env.json(&["show", "c"]);
    assert_eq!(shown["after"], serde_json::json!(["a:failure"]));
    assert_eq!(shown["schedule"], "@never");
    assert!(env
        .ok(&["show", "a"])
        .contains("b (on success), c (on failure)"));

    // a succeeds (@reboot: once as the runner starts): b runs, caused by it; c does not.
    let b = env.run_until_first("b", "success", Duration::from_secs(20));
    let a = env.history("a");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["status"], "success");
    assert_eq!(b["triggered_by"], "chain");
    assert_eq!(b["caused_by"], a[0]["id"]);
    assert!(env.history("c").is_empty(), "c ran after a success");
    let table = env.ok(&["history", "b"]);
    assert!(
        table.contains(&format!("chain (after #{})", a[0]["id"])),
        "{table}"
    );
    // `status`: the chain's last run on one line, and in --json with the ids linked.
    let line = chain_line(&env);
    let want = format!(
        "  a #{} success {} → (b #{} success, c (not triggered))",
        a[0]["id"],
        secs(&a[0]),
        b["id"]
    );
    assert_eq!(line, want);
    let chains = env.json(&["status"])["chains"].clone();
    assert_eq!(chains.as_array().map(Vec::len), Some(1), "{chains}");
    let run = &chains[0]["run"];
    assert_eq!(chains[0]["root"], "a");
    assert_eq!(
        (&run["job"], &run["execution"], &run["status"]),
        (&"a".into(), &a[0]["id"], &"success".into()),
        "{run}"
    );
    let (rb, rc) = (&run["children"][0], &run["children"][1]);
    assert_eq!(
        (
            &rb["job"],
            &rb["execution"],
            &rb["caused_by"],
            &rb["status"]
        ),
        (&"b".into(), &b["id"], &a[0]["id"], &"success".into()),
        "{run}"
    );
    assert_eq!(rb["on"], serde_json::json!(["success"]));
    assert_eq!(
        (&rc["job"], &rc["execution"], &rc["not_run"]),
        (&"c".into(), &Value::Null, &"not triggered".into()),
        "{run}"
    );

    // a fails: c runs, caused by that failure; b does not run again.
    env.ok(&["edit", "a", "--", "/usr/bin/false"]);
    let c = env.run_until_first("c", "success", Duration::from_secs(20));
    let failed = with_status(&env, "a", "failed");
    assert_eq!(failed.len(), 1, "{:?}", env.history("a"));
    assert_eq!(c["triggered_by"], "chain");
    assert_eq!(c["caused_by"], failed[0]["id"]);
    assert_eq!(env.history("b").len(), 1, "b ran after a failure");
    assert!(env.history("a")[0]["caused_by"].is_null());
    // The chain's last run is now the failure's.
    let line = chain_line(&env);
    assert!(
        line.contains(&format!(
            "  a #{} failed {} → ",
            failed[0]["id"],
            secs(&failed[0])
        )),
        "{line}"
    );
    assert!(
        line.ends_with(&format!("→ (b (not triggered), c #{} success)", c["id"])),
        "{line}"
    );
    let run = env.json(&["status"])["chains"][0]["run"].clone();
    assert_eq!(run["execution"], failed[0]["id"]);
    assert_eq!(run["children"][1]["caused_by"], failed[0]["id"]);
    assert_eq!(run["children"][1]["execution"], c["id"]);
}

/// An execution's start as `status` shows it, to the second.
fn secs(row: &Value) -> String {
    time(row, "started_at").to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The one line under `status`'s "chains" heading.
fn chain_line(env: &Env) -> String {
    let out = env.ok(&["status"]);
    let mut lines = out.lines().skip_while(|l| !l.starts_with("chains"));
    assert!(lines.next().is_some(), "no chains in status:\n{out}");
    let line = lines.next().unwrap_or_default().to_string();
    assert!(
        lines.next().is_none_or(|l| !l.starts_with("  ")),
        "more than one chain line:\n{out}"
    );
    line
}

#[test]
fn cycles_unknown_parents_and_removing_a_parent_are_refused_with_nothing_changed() {
    let env = Env::new();
    env.ok(&["add", "x", "--schedule", "@daily", "--", "/usr/bin/true"]);
    env.ok(&["add", "y", "--after", "x:any", "--", "/usr/bin/true"]);
    env.ok(&["add", "z", "--after", "y", "--", "/usr/bin/true"]);
    let list = env.ok(&["list"]);
    let before = env.dump();

    let err = env.fails(2, &["edit", "x", "--after", "z"]);
    assert!(err.contains("cycle: x → y → z → x"), "{err}");
    let err = env.fails(2, &["edit", "y", "--after", "y"]);
    assert!(err.contains("\"y\" cannot run after itself"), "{err}");
    let err = env.fails(2, &["add", "w", "--after", "ghost", "--", "/usr/bin/true"]);
    assert!(err.contains("\"ghost\", which is not a job"), "{err}");
    let err = env.fails(
        2,
        &["add", "v", "--after", "x:sometimes", "--", "/usr/bin/true"],
    );
    assert!(err.contains("success, failure, any"), "{err}");
    let err = env.fails(2, &["add", "u", "--", "/usr/bin/true"]);
    assert!(err.contains("--schedule is required"), "{err}");
    let err = env.fails(2, &["rm", "y"]);
    assert!(err.contains("z runs after it"), "{err}");
    // Renaming a parent would leave its child after a job that is gone.
    let err = env.fails(2, &["edit", "x", "--rename", "x2"]);
    assert!(
        err.contains("runs after \"x\", which is not a job"),
        "{err}"
    );
    let dir = env.dir.path().join("jobs.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("loop.toml"),
        "[[job]]\nname = \"x\"\nschedule = \"@daily\"\nafter = [\"z\"]\nargv = [\"/usr/bin/true\"]\n",
    )
    .unwrap();
    let err = env.fails(2, &["apply", dir.to_str().unwrap()]);
    assert!(err.contains("cycle: x → y → z → x"), "{err}");
    assert_eq!(env.ok(&["list"]), list);
    assert_eq!(env.dump(), before);

    // Cleared, the chain is gone and the parent can go.
    env.ok(&["edit", "z", "--after", "none", "--schedule", "@hourly"]);
    env.ok(&["rm", "y"]);
    assert_eq!(env.json(&["show", "x"])["children"], serde_json::json!([]));
}

#[test]
fn jobs_d_takes_after_without_a_schedule_and_export_round_trips_it() {
    let env = Env::new();
    let dir = env.dir.path().join("jobs.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("chain.toml"),
        "[[job]]\nname = \"A\"\nschedule = \"@daily\"\nargv = [\"/usr/bin/true\"]\n\n\
         [[job]]\nname = \"B\"\nschedule = \"@daily\"\nargv = [\"/usr/bin/true\"]\n\n\
         [[job]]\nname = \"C\"\nafter = [\"A\", \"B:failure\"]\nargv = [\"/usr/bin/true\"]\n",
    )
    .unwrap();
    env.ok(&["apply", dir.to_str().unwrap()]);
    let c = env.json(&["show", "C"]);
    assert_eq!(c["after"], serde_json::json!(["A:success", "B:failure"]));
    assert_eq!(c["schedule"], "@never");
    let exported = env.ok(&["export"]);
    assert!(
        exported.contains("after = [\"A:success\", \"B:failure\"]"),
        "{exported}"
    );
    std::fs::write(dir.join("chain.toml"), &exported).unwrap();
    let again = env.json(&["apply", dir.to_str().unwrap()]);
    assert_eq!(again["summary"]["unchanged"], 3, "{again}");
}

/// Two runners share a PostgreSQL database; `tick` fires every second on whichever claims
/// it, `tock` runs after each tick: once per tick, caused by it, wherever the tick ran.
#[test]
fn on_a_fleet_a_chain_fires_once_per_parent_end() {
    let Some(env) = Env::postgres() else { return };
    env.ok(&[
        "add",
        "tick",
        "--schedule",
        "* * * * * *",
        "--",
        "/usr/bin/true",
    ]);
    env.ok(&[
        "add",
        "tock",
        "--after",
        "tick",
        "--allow-concurrent",
        "--",
        "/usr/bin/true",
    ]);
    let mut runners = [
        env.spawn_named_runner("one", &[]),
        env.spawn_named_runner("two", &[]),
    ];
    let enough = env.wait_for(Duration::from_secs(30), || {
        (with_status(&env, "tock", "success").len() >= 6).then_some(())
    });
    for r in &mut runners {
        stop(r);
    }
    assert!(
        enough.is_some(),
        "tock: {:?}\n{}\n{}",
        env.history("tock"),
        env.named_runner_log("one"),
        env.named_runner_log("two")
    );
    let ticks: Vec<Value> = with_status(&env, "tick", "success");
    let mut by_cause: BTreeMap<i64, usize> = BTreeMap::new();
    for t in env.history("tock") {
        assert_eq!(t["triggered_by"], "chain");
        *by_cause
            .entry(t["caused_by"].as_i64().unwrap())
            .or_default() += 1;
    }
    for tick in &ticks {
        let id = tick["id"].as_i64().unwrap();
        // A tick that ended as the runners stopped may have fired nothing; none fired twice.
        assert!(by_cause.get(&id).copied().unwrap_or(0) <= 1, "{by_cause:?}");
    }
    assert!(by_cause.values().all(|n| *n == 1), "{by_cause:?}");
    assert!(by_cause.len() >= 6);
}
