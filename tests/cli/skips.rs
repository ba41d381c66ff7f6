//! No test passes without running: a skip says so, and `CRONMGR_TEST_NO_SKIP=1` (which `.ci/run`
//! sets) turns every skip into a failure. These run this very test binary on a test that skips
//! here for want of PostgreSQL.

use std::process::{Command, Output};

/// Skips on this machine without `CRONMGR_TEST_POSTGRES` (it needs a PostgreSQL server).
const NEEDS_POSTGRES: &str = "fleet::three_runners_fire_every_slot_of_a_seconds_job_exactly_once";

/// This test binary, running only `test`, with no PostgreSQL configured and `no_skip` as the
/// switch.
fn run_alone(test: &str, no_skip: Option<&str>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env_remove("CRONMGR_TEST_POSTGRES")
        .env_remove("CRONMGR_REQUIRE_POSTGRES")
        .env_remove("CRONMGR_E2E_ON_POSTGRES")
        .env_remove(crate::harness::NO_SKIP);
    if let Some(v) = no_skip {
        cmd.env(crate::harness::NO_SKIP, v);
    }
    cmd.output().expect("run the test binary")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_test_that_cannot_run_says_skipped_and_names_itself() {
    let out = run_alone(NEEDS_POSTGRES, None);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the test did not run: {text}");
    assert!(
        text.contains(&format!("skipped: {NEEDS_POSTGRES}: no PostgreSQL")),
        "no word of the skip: {text}"
    );
}

#[test]
fn under_the_no_skip_switch_a_skip_fails_the_run() {
    let out = run_alone(NEEDS_POSTGRES, Some("1"));
    let text = text(&out);
    assert!(!out.status.success(), "a skipped test passed: {text}");
    assert!(
        text.contains(&format!(
            "{NEEDS_POSTGRES}: would be skipped: no PostgreSQL"
        )) && text.contains("this run requires every test"),
        "{text}"
    );
}

#[test]
fn skip_panics_only_when_the_run_requires_every_test() {
    // Unit-level: the decision apart from the environment.
    let failed = std::panic::catch_unwind(|| {
        crate::harness::skip_or_fail("skips::self-test", "not a real skip", true)
    });
    assert!(failed.is_err());
    let passed = std::panic::catch_unwind(|| {
        crate::harness::skip_or_fail("skips::self-test", "not a real skip", false)
    });
    assert!(passed.is_ok());
}
