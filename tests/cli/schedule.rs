//! `cronmgr next` and `cronmgr validate`.

use crate::harness::Env;

#[test]
fn next_prints_fire_times_in_the_zone_and_utc() {
    let env = Env::new();
    let v = env.json(&[
        "next",
        "30 2 * * *",
        "--tz",
        "Europe/Madrid",
        "--after",
        "2027-03-28T00:00:00Z",
        "--count",
        "2",
    ]);
    assert_eq!(v["expression"], "30 2 * * *");
    assert_eq!(v["timezone"], "Europe/Madrid");
    assert!(v["description"].as_str().unwrap().len() > 3);
    assert_eq!(
        v["next"],
        serde_json::json!(["2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"])
    );
    let v = env.json(&[
        "next",
        "30 2 * * *",
        "--tz",
        "Europe/Madrid",
        "--after",
        "2026-10-24T23:30:00Z",
        "--count",
        "2",
    ]);
    assert_eq!(
        v["next"],
        serde_json::json!(["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"])
    );
    // The OR rule: the 1st, the 15th and every Friday.
    let v = env.json(&[
        "next",
        "0 0 1,15 * 5",
        "--tz",
        "UTC",
        "--after",
        "2027-01-01T00:00:00Z",
        "--count",
        "4",
    ]);
    assert_eq!(
        v["next"],
        serde_json::json!([
            "2027-01-08T00:00:00Z",
            "2027-01-15T00:00:00Z",
            "2027-01-22T00:00:00Z",
            "2027-01-29T00:00:00Z"
        ])
    );
    let human = env.ok(&[
        "next",
        "30 2 * * *",
        "--tz",
        "Europe/Madrid",
        "--after",
        "2027-03-27T12:00:00Z",
        "--count",
        "2",
    ]);
    assert!(human.contains("2027-03-28 03:00:00 CEST"), "{human}");
    assert!(human.contains("2027-03-28T01:00:00Z"), "{human}");
    assert!(
        human.to_lowercase().contains("does not exist")
            || human.to_lowercase().contains("dst")
            || human.contains("skipped"),
        "no DST note: {human}"
    );
}

#[test]
fn validate_exits_0_or_2() {
    let env = Env::new();
    env.ok(&["validate", "*/10 * * * * *"]);
    env.ok(&["validate", "@reboot"]);
    env.ok(&["validate", "0 9 * * mon-fri"]);
    let err = env.fails(2, &["validate", "0 9 * * mon-fry"]);
    assert!(err.contains("day-of-week"), "{err}");
    let err = env.fails(2, &["validate", "* * * * * * 2027"]);
    assert!(err.contains("field"), "{err}");
}
