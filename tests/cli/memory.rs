//! The idle runner's memory: it pins none of its own pages (no `mlock`); what it gives back after
//! loading is the store's business (`Store::shrink_memory`), and the idle footprint is measured as
//! private memory in benches/ (see docs/design/memory.md).

use std::time::Duration;

use crate::harness::{stop, Env};

/// A field of `/proc/PID/status`, in kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[test]
fn an_idle_runner_locks_no_memory() {
    let env = Env::new();
    env.ok(&[
        "add",
        "far",
        "--schedule",
        "0 0 1 1 *",
        "--",
        "/usr/bin/echo",
        "far",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let pid = runner.id();
    let ready = env.wait_for(Duration::from_secs(20), || {
        env.runner_log().contains("runner ready").then_some(())
    });
    assert!(ready.is_some(), "{}", env.runner_log());
    // Through the first idle housekeeping (30 s after start-up) and a little beyond: the runner
    // once locked the pages its idle minute ran there (about 3 MB of VmLck).
    let locked = env.wait_for(Duration::from_secs(40), || {
        let kb = status_kb(pid, "VmLck").expect("the runner is up");
        (kb > 0).then_some(kb)
    });
    stop(&mut runner);
    assert_eq!(locked, None, "VmLck kB; log:\n{}", env.runner_log());
}
