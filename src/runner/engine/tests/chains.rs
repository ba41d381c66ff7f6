//! Chains in the engine: an end starts the jobs after it, at the parent's final end only, as
//! slots that obey the same rules as any other.

use super::*;

/// A job with no time of its own, after `parents`.
fn after(name: &str, parents: &[&str]) -> Job {
    let mut j = job(name, "@never");
    j.after = parents.iter().map(|p| p.to_string()).collect();
    j
}

/// Every execution of `job`, oldest first: (status, trigger, caused_by, id).
fn chain_rows(rig: &Rig, job: &str) -> Vec<(Status, Trigger, Option<i64>, i64)> {
    let store = Store::open(&rig.db).unwrap();
    let mut rows = store
        .executions(&ExecutionFilter {
            job: Some(job.into()),
            ..Default::default()
        })
        .unwrap();
    rows.sort_by_key(|e| e.id);
    (rows.into_iter())
        .map(|e| (e.status, e.triggered_by, e.caused_by, e.id))
        .collect()
}

fn family() -> Vec<Job> {
    vec![
        job("a", "@reboot"),
        after("on-success", &["a"]),
        after("on-failure", &["a:failure"]),
        after("on-any", &["a:any"]),
    ]
}

#[test]
fn a_success_starts_the_jobs_after_it_on_success_and_on_any() {
    let mut rig = Rig::new(&family(), at(1, 0, 0), None).start();
    assert_eq!(rig.launched_names(), ["a"]);
    rig.end_next(0);
    let mut started = rig.launched_names();
    started.sort();
    assert_eq!(started, ["on-any", "on-success"]);
    let a = chain_rows(&rig, "a")[0].3;
    for child in ["on-any", "on-success"] {
        assert_eq!(
            chain_rows(&rig, child),
            [(
                Status::Running,
                Trigger::Chain,
                Some(a),
                chain_rows(&rig, child)[0].3
            )]
        );
    }
    assert!(chain_rows(&rig, "on-failure").is_empty());
    rig.end_all(0);
    // The children's ends start nothing more: nothing is after them.
    assert!(rig.launched().is_empty());
    assert_eq!(chain_rows(&rig, "on-success")[0].0, Status::Success);
}

#[test]
fn a_failure_starts_the_jobs_after_it_on_failure_and_on_any() {
    let mut rig = Rig::new(&family(), at(1, 0, 0), None).start();
    rig.end_next(1);
    let mut started = rig.launched_names();
    started.sort();
    assert_eq!(started, ["on-any", "on-failure"]);
    assert!(chain_rows(&rig, "on-success").is_empty());
    let a = chain_rows(&rig, "a")[0].3;
    assert_eq!(chain_rows(&rig, "on-failure")[0].2, Some(a));
}

#[test]
fn a_cancelled_parent_starts_nothing() {
    let mut rig = Rig::new(&family(), at(1, 0, 0), None).start();
    let l = rig.launched()[0].clone();
    let store = Store::open(&rig.db).unwrap();
    let actor = crate::store::Actor {
        uid: 0,
        user: "root".into(),
        sudo_user: None,
    };
    let event = crate::store::AuditEvent {
        system: "default",
        target: Some("a"),
        refused: false,
        reason: None,
        diff: serde_json::json!({}),
    };
    let by = crate::store::By {
        actor: &actor,
        action: "kill",
    };
    store
        .request_cancel(l.execution, by, &event, at(1, 0, 0))
        .unwrap();
    rig.end_next(143);
    assert_eq!(chain_rows(&rig, "a")[0].0, Status::Cancelled);
    assert!(rig.launched().is_empty(), "{:?}", rig.launched_names());
}

#[test]
fn only_the_final_attempt_of_a_retried_parent_starts_the_jobs_after_it() {
    let mut jobs = family();
    jobs[0].retries = 1;
    jobs[0].retry_delay = 10;
    let mut rig = Rig::new(&jobs, at(1, 0, 0), None).start();
    rig.end_next(1);
    assert!(rig.launched().is_empty(), "a retry follows: no chain yet");
    rig.advance(10);
    assert_eq!(rig.launched_names(), ["a"]);
    assert_eq!(rig.launched()[0].attempt, 2);
    rig.end_next(1);
    let mut started = rig.launched_names();
    started.sort();
    assert_eq!(started, ["on-any", "on-failure"]);
    let last = chain_rows(&rig, "a")[1].3;
    assert_eq!(chain_rows(&rig, "on-failure").len(), 1);
    assert_eq!(chain_rows(&rig, "on-failure")[0].2, Some(last));
}

#[test]
fn a_chained_start_obeys_the_childs_overlap_rule() {
    let jobs = [
        job("p1", "@reboot"),
        job("p2", "@reboot"),
        after("b", &["p1", "p2"]),
    ];
    let mut rig = Rig::new(&jobs, at(1, 0, 0), None).start();
    assert_eq!(rig.launched_names(), ["p1", "p2"]);
    rig.end_next(0); // p1: b starts
    assert_eq!(rig.launched_names(), ["p2", "b"]);
    rig.jump(1);
    rig.end_next(0); // p2: b is still running, and may not overlap
    let p2 = chain_rows(&rig, "p2")[0].3;
    let b = chain_rows(&rig, "b");
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(
        (b[1].0, b[1].1, b[1].2),
        (Status::Skipped, Trigger::Chain, Some(p2))
    );
    let msg = rig.rows("b")[1].4.clone();
    assert!(msg.contains("allow_concurrent = false"), "{msg}");
    assert_eq!(rig.launched_names(), ["b"]);
}
