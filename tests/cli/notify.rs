//! LISTEN/NOTIFY on PostgreSQL: an idle fleet runner checks for changes only every 30 s, yet a
//! job added meanwhile starts on its slot, because the add's notification woke it; after a
//! restart of the database the runner listens again and is woken as before.

use std::process::Child;
use std::time::Duration;

use chrono::Utc;

use crate::harness::{at, soon, stop, time, wait_exit, Env};
use crate::pgfaults::{env_on, PrivatePg};

/// How often "listening for changes" is in the runner's log.
fn listening(env: &Env) -> usize {
    env.runner_log().matches("listening for changes").count()
}

fn wait_listening(env: &Env, runner: &mut Child, n: usize, limit: Duration) {
    let ok = env.wait_for(limit, || (listening(env) >= n).then_some(()));
    if ok.is_none() {
        let _ = wait_exit(runner, Duration::ZERO);
        panic!("the runner did not listen (#{n})\n{}", env.runner_log());
    }
}

/// Add a one-shot job at a slot 3 s away, right after the runner began to listen (its fallback
/// check is 30 s away; the minute's housekeeping, which looks too, comes 30 s after start-up,
/// then each minute): it starts on its slot, so a notification woke the runner. (Unwoken, it
/// would load the job 20 s or more after the slot: the bound leaves room for a loaded machine.)
fn added_job_starts_on_time(env: &Env, name: &str) {
    let slot = soon(3);
    env.ok(&["add", name, "--schedule", &at(slot), "--", "/usr/bin/true"]);
    let first = env.wait_for(Duration::from_secs(15), || {
        env.history(name)
            .into_iter()
            .find(|r| r["status"] == "success")
    });
    let Some(first) = first else {
        panic!(
            "{name} (slot {slot}) did not run within 15 s: {:?}\n{}",
            env.history(name),
            env.runner_log()
        );
    };
    let late = time(&first, "started_at") - time(&first, "scheduled_for");
    assert_eq!(time(&first, "scheduled_for"), slot);
    assert!(
        late < chrono::Duration::seconds(5),
        "{name} started {late} after its slot\n{}",
        env.runner_log()
    );
}

#[test]
fn a_job_added_while_a_fleet_runner_idles_starts_on_its_slot_woken_by_the_notification() {
    let Some(env) = Env::postgres() else { return };
    env.create_db();
    let mut runner = env.spawn_runner(&[]);
    // Listening: one full check now, the next fallback check 30 s later.
    wait_listening(&env, &mut runner, 1, Duration::from_secs(20));
    let since = Utc::now();
    added_job_starts_on_time(&env, "woken");
    assert!(
        Utc::now() - since < chrono::Duration::seconds(20),
        "too slow to tell a wake-up from the 30 s fallback"
    );
    // Its end notified too (a place under the cap freed).
    let freed = env.wait_for(Duration::from_secs(5), || {
        env.runner_log().contains("Change(Freed)").then_some(())
    });
    stop(&mut runner);
    let log = env.runner_log();
    assert!(log.contains("notice=Change(Jobs)"), "{log}");
    assert!(freed.is_some(), "no notification of the end\n{log}");
    // Idle, it never polled: one change check at start-up, one on listening, one when woken.
    assert!(
        log.matches("jobs or settings changed: reloading").count() <= 2,
        "{log}"
    );
}

#[test]
fn after_a_database_restart_the_runner_listens_again_and_is_woken_by_changes() {
    let Some(pg) = PrivatePg::start(None) else {
        return;
    };
    let env = env_on(&pg);
    env.create_db();
    let mut runner = env.spawn_runner(&[]);
    wait_listening(&env, &mut runner, 1, Duration::from_secs(20));
    added_job_starts_on_time(&env, "before");
    pg.ctl("restart");
    // It lost the listening connection, polled meanwhile, and listens again.
    wait_listening(&env, &mut runner, 2, Duration::from_secs(30));
    assert!(
        env.runner_log()
            .contains("lost the connection that listens for changes"),
        "{}",
        env.runner_log()
    );
    added_job_starts_on_time(&env, "after");
    stop(&mut runner);
    let log = env.runner_log();
    let (_, since_back) = log.rsplit_once("listening for changes").unwrap();
    assert!(since_back.contains("notice=Change(Jobs)"), "{log}");
}
