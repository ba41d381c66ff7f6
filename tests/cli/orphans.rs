//! A runner's children do not outlive it silently (PostgreSQL fleet, each runner on a fake host
//! of its own): kill -9 of the runner of a long job that forbids overlap leaves no orphan and
//! never two instances; what the job started in its group is stopped by the next runner start
//! on that host, though its row already says `interrupted`.

use std::process::{Child, Command as StdCommand};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{signal, wait_exit, Env};

/// A `sleep` whose argument no other process carries: `60.<digits>` seconds.
fn marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("60.{}{:09}", std::process::id(), nanos)
}

/// Pids of the `sleep MARKER` processes running now (`pgrep` on the whole command line).
fn instances(marker: &str) -> Vec<u32> {
    let pattern = format!("^(/usr/bin/)?sleep {}$", marker.replace('.', "\\."));
    let out = StdCommand::new("pgrep")
        .args(["-f", &pattern])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn running_row(env: &Env, job: &str) -> Option<Value> {
    env.history(job)
        .into_iter()
        .find(|r| r["status"] == "running" && r["pid"].is_u64())
}

fn runners_up(env: &Env, n: usize) {
    let up = env.wait_for(Duration::from_secs(20), || {
        (env.json(&["runners"]).as_array().unwrap().len() >= n).then_some(())
    });
    assert!(up.is_some(), "{n} runners did not register");
}

fn logs(env: &Env) -> String {
    ["a", "b", "a2"]
        .iter()
        .map(|n| format!("--- runner {n}\n{}", env.named_runner_log(n)))
        .collect()
}

/// Stop a runner and what it runs: a second SIGTERM ends the grace period.
fn stop_now(runner: &mut Child) {
    signal(runner, libc::SIGTERM);
    sleep(Duration::from_millis(300));
    signal(runner, libc::SIGTERM);
    assert!(
        wait_exit(runner, Duration::from_secs(20)).is_some(),
        "the runner did not exit after two SIGTERMs"
    );
}

fn kill_all(marker: &str) {
    for pid in instances(marker) {
        // SAFETY: kill with a pid pgrep just found.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

#[test]
fn kill_9_of_the_runner_of_a_job_that_forbids_overlap_leaves_no_orphan_and_never_two_instances() {
    let Some(env) = Env::postgres() else { return };
    let mark = marker();
    env.ok(&[
        "add",
        "long",
        "--schedule",
        "*/1 * * * * *",
        "--",
        "/usr/bin/sleep",
        &mark,
    ]);
    let Some(mut a) = env.spawn_runner_on_host("a", "orphans-host-a", &["--lease", "3"]) else {
        return;
    };
    let first = env.wait_for(Duration::from_secs(20), || running_row(&env, "long"));
    let first = first.unwrap_or_else(|| panic!("never started\n{}", logs(&env)));
    assert_eq!(first["runner_pid"], a.id(), "{first:#}");
    let Some(mut b) = env.spawn_runner_on_host("b", "orphans-host-b", &["--lease", "3"]) else {
        let _ = a.kill();
        kill_all(&mark);
        return;
    };
    runners_up(&env, 2);
    assert_eq!(instances(&mark).len(), 1);

    signal(&a, libc::SIGKILL);
    let killed = Instant::now();
    wait_exit(&mut a, Duration::from_secs(5));
    // Sample the process table every 100 ms until the job runs again elsewhere.
    let mut samples = 0;
    let mut gone_after = None;
    let mut again = None;
    while killed.elapsed() < Duration::from_secs(30) {
        let now = instances(&mark);
        samples += 1;
        assert!(
            now.len() <= 1,
            "{} instances at once, {:?} after the kill: {now:?}\n{}",
            now.len(),
            killed.elapsed(),
            logs(&env)
        );
        match (gone_after, now.first()) {
            (None, None) => gone_after = Some(killed.elapsed()),
            (None, Some(&pid)) => assert_eq!(pid, first["pid"].as_u64().unwrap() as u32),
            (Some(_), Some(&pid)) => {
                again = Some(pid);
                break;
            }
            (Some(_), None) => {}
        }
        sleep(Duration::from_millis(100));
    }
    let gone_after = gone_after.expect("the orphan never went");
    eprintln!("orphan gone {gone_after:?} after the kill; {samples} samples");
    assert!(
        gone_after < Duration::from_secs(2),
        "the orphan outlived its runner by {gone_after:?}"
    );
    let again = again.unwrap_or_else(|| panic!("never ran again\n{}", logs(&env)));
    let rows = env.history("long");
    let second = rows
        .iter()
        .find(|r| r["pid"] == again)
        .unwrap_or_else(|| panic!("no row for pid {again}: {rows:#?}"));
    assert_eq!(second["runner_pid"], b.id(), "{second:#}");
    let old = rows.iter().find(|r| r["id"] == first["id"]).unwrap();
    assert_eq!(old["status"], "interrupted", "{old:#}");
    stop_now(&mut b);
    assert!(instances(&mark).is_empty(), "a stopped runner left its job");
}

#[test]
fn the_next_start_on_the_host_stops_what_a_dead_runners_job_left_whatever_its_row_says() {
    let Some(env) = Env::postgres() else { return };
    let mark = marker();
    env.ok(&[
        "add",
        "tree",
        "--schedule",
        &crate::harness::at(crate::harness::soon(3)),
        "--",
        "/usr/bin/sh",
        "-c",
        &format!("sleep {mark} & wait"),
    ]);
    let Some(mut a) = env.spawn_runner_on_host("a", "orphans-host-a", &["--lease", "3"]) else {
        return;
    };
    let row = env.wait_for(Duration::from_secs(20), || {
        running_row(&env, "tree").filter(|_| !instances(&mark).is_empty())
    });
    let row = row.unwrap_or_else(|| panic!("never started\n{}", logs(&env)));
    let leader = row["pid"].as_u64().unwrap() as i32;
    let Some(mut b) = env.spawn_runner_on_host("b", "orphans-host-b", &[]) else {
        let _ = a.kill();
        kill_all(&mark);
        return;
    };
    runners_up(&env, 2);
    signal(&a, libc::SIGKILL);
    wait_exit(&mut a, Duration::from_secs(5));
    // The job's own process (the shell) dies with its runner; the sleep it started lives on.
    let leader_gone = env.wait_for(Duration::from_secs(2), || {
        let zombie_or_gone =
            std::fs::read_to_string(format!("/proc/{leader}/stat")).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
        zombie_or_gone.then_some(())
    });
    assert!(leader_gone.is_some(), "the job's shell outlived its runner");
    assert_eq!(
        instances(&mark).len(),
        1,
        "the shell's child should live on"
    );
    // The other host's runner declares it lost and marks the row interrupted; it kills nothing
    // on this host.
    let interrupted = env.wait_for(Duration::from_secs(20), || {
        env.history("tree")
            .into_iter()
            .find(|r| r["id"] == row["id"] && r["status"] == "interrupted")
    });
    assert!(interrupted.is_some(), "never interrupted\n{}", logs(&env));
    assert_eq!(instances(&mark).len(), 1, "{}", logs(&env));
    // The next runner on that host stops it, though its row no longer says `running`.
    let Some(mut a2) = env.spawn_runner_on_host("a2", "orphans-host-a", &[]) else {
        kill_all(&mark);
        return;
    };
    let stopped = env.wait_for(Duration::from_secs(15), || {
        instances(&mark).is_empty().then_some(())
    });
    let log = logs(&env);
    kill_all(&mark);
    stop_now(&mut a2);
    stop_now(&mut b);
    assert!(
        stopped.is_some(),
        "the leftover survived the next start\n{log}"
    );
    assert!(log.contains("its dead runner left"), "{log}");
}

/// A runner paused (SIGSTOP) past its lease while its job runs: the job is not paused, the
/// fleet takes it over (two instances, the bound docs/fleet.md states), and once resumed the
/// runner learns at its next heartbeat that it was declared lost and stops its own instance.
#[test]
fn a_runner_back_from_a_pause_stops_the_executions_the_fleet_took_over() {
    let Some(env) = Env::postgres() else { return };
    let mark = marker();
    env.ok(&[
        "add",
        "long",
        "--schedule",
        "*/1 * * * * *",
        "--",
        "/usr/bin/sleep",
        &mark,
    ]);
    let Some(mut a) = env.spawn_runner_on_host("a", "paused-host-a", &["--lease", "3"]) else {
        return;
    };
    let first = env.wait_for(Duration::from_secs(20), || running_row(&env, "long"));
    let first = first.unwrap_or_else(|| panic!("never started\n{}", logs(&env)));
    let Some(mut b) = env.spawn_runner_on_host("b", "paused-host-b", &["--lease", "3"]) else {
        let _ = a.kill();
        kill_all(&mark);
        return;
    };
    runners_up(&env, 2);
    signal(&a, libc::SIGSTOP);
    // The fleet takes the job over: B's instance beside A's, which runs on.
    let two = env.wait_for(Duration::from_secs(20), || {
        (instances(&mark).len() == 2).then_some(())
    });
    signal(&a, libc::SIGCONT);
    let resumed = Instant::now();
    let one = env.wait_for(Duration::from_secs(10), || {
        let now = instances(&mark);
        (now.len() == 1 && now[0] != first["pid"].as_u64().unwrap() as u32).then_some(())
    });
    let log = logs(&env);
    stop_now(&mut a);
    stop_now(&mut b);
    kill_all(&mark);
    assert!(two.is_some(), "the fleet never took the job over\n{log}");
    assert!(
        one.is_some(),
        "the resumed runner did not stop its taken-over job\n{log}"
    );
    eprintln!(
        "the taken-over instance stopped {:?} after SIGCONT",
        resumed.elapsed()
    );
    assert!(log.contains("taken over by the fleet"), "{log}");
    let old = env
        .history("long")
        .into_iter()
        .find(|r| r["id"] == first["id"])
        .unwrap();
    assert_eq!(
        old["status"], "interrupted",
        "its end was written over: {old:#}"
    );
}
