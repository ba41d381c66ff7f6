//! Spreading jobs: `H` in a schedule and `--jitter`.

use std::collections::BTreeMap;

use crate::harness::{time, Env};
use chrono::Timelike;

/// 100 jobs written `H * * * *` land on minutes spread over the hour like fair draws (100 draws
/// from 60 values: about 49 distinct minutes, none holding more than a handful), each job on the
/// same minute whatever asks (`list`, `show`, `next --job`), and the same after a restart of the
/// question (the hash depends on the system and name only).
#[test]
fn a_hundred_h_jobs_spread_over_the_hour() {
    let env = Env::new();
    let mut file = String::new();
    for i in 0..100 {
        file.push_str(&format!(
            "[[job]]\nname = \"report-{i:03}\"\nschedule = \"H * * * *\"\nargv = [\"/usr/bin/true\"]\n\n"
        ));
    }
    let path = env.dir.path().join("jobs.toml");
    std::fs::write(&path, file).unwrap();
    env.ok(&["apply", path.to_str().unwrap()]);
    let listed = env.json(&["list"]);
    let jobs = listed.as_array().unwrap();
    assert_eq!(jobs.len(), 100);
    let mut per_minute: BTreeMap<u32, usize> = BTreeMap::new();
    for j in jobs {
        let next = time(j, "next_run_at");
        assert_eq!(next.second(), 0);
        *per_minute.entry(next.minute()).or_default() += 1;
    }
    let busiest = per_minute.values().max().copied().unwrap();
    eprintln!(
        "{} distinct minutes, at most {busiest} jobs in one",
        per_minute.len()
    );
    assert!(per_minute.len() >= 40, "{per_minute:?}");
    assert!(busiest <= 7, "{per_minute:?}");
    // `next --job` agrees with what `list` stored.
    let first = &jobs[0];
    let name = first["name"].as_str().unwrap();
    let next = env.json(&["next", "--job", name, "-n", "1"]);
    assert_eq!(time(&next["fires"][0], "utc"), time(first, "next_run_at"));
    // A plain expression with H has no job to hash: refused with the way out.
    let err = env.fails(2, &["next", "H * * * *"]);
    assert!(err.contains("next --job NAME"), "{err}");
}

#[test]
fn jitter_shows_in_next_and_must_be_shorter_than_the_schedule() {
    let env = Env::new();
    env.ok(&[
        "add",
        "spread",
        "--schedule",
        "0 3 * * *",
        "--jitter",
        "10m",
        "--",
        "/usr/bin/true",
    ]);
    let next = env.json(&["next", "--job", "spread", "-n", "3"]);
    for fire in next["fires"].as_array().unwrap() {
        let at = chrono::DateTime::parse_from_rfc3339(fire["utc"].as_str().unwrap()).unwrap();
        let slot = chrono::DateTime::parse_from_rfc3339(fire["slot"].as_str().unwrap()).unwrap();
        let delay = (at - slot).num_seconds();
        assert!((0..=600).contains(&delay), "{fire}");
        assert_eq!((slot.hour(), slot.minute()), (3, 0));
    }
    let exported = env.ok(&["export"]);
    assert!(exported.contains("jitter = \"10m\""), "{exported}");
    let shown = env.ok(&["show", "spread"]);
    assert!(shown.contains("up to 10m after each slot"), "{shown}");
    let before = env.dump();
    let err = env.fails(
        2,
        &[
            "add",
            "often",
            "--schedule",
            "*/5 * * * *",
            "--jitter",
            "5m",
            "--",
            "/usr/bin/true",
        ],
    );
    assert!(
        err.contains("--jitter 5m is not shorter than the schedule's shortest interval (5m"),
        "{err}"
    );
    assert_eq!(
        env.dump(),
        before,
        "a refused add leaves the database as it was"
    );
    env.ok(&["edit", "spread", "--jitter", "none"]);
    assert!(env
        .ok(&["show", "spread"])
        .contains("jitter:            none"));
}
