//! `stats` against a straightforward tally of the same rows, on both of its reading paths.

use super::*;
use crate::store::{Finish, Job, NewExecution, Trigger};
use chrono::{Duration, TimeZone};

/// A plan of SQLite's for `sql`, one line a step.
fn plan(store: &Store, sql: &str, params: impl crate::store::sql::Params) -> String {
    let plan: Vec<String> = store
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap()
        .query_map(params, |r| r.get(3))
        .unwrap()
        .collect::<crate::store::sql::Result<_>>()
        .unwrap();
    plan.join("\n")
}

#[test]
fn the_period_of_every_job_is_one_range_of_the_start_ordered_covering_index() {
    let store = Store::open_in_memory().unwrap();
    if store.sqlite_only("reads SQLite's query plan") {
        return;
    }
    let plan = plan(&store, STATS_PERIOD, params!["2026-01-01T00:00:00.000Z"]);
    assert_eq!(
        plan, "SEARCH executions USING COVERING INDEX executions_started_stats (started_at>?)",
        "{plan}"
    );
}

#[test]
fn a_few_jobs_are_read_by_ranges_of_each_status_through_the_covering_index() {
    let store = Store::open_in_memory().unwrap();
    if store.sqlite_only("reads SQLite's query plan") {
        return;
    }
    let plan = plan(
        &store,
        STATS_ROWS,
        params![
            "default",
            Option::<String>::None,
            "success",
            "2026-01-01T00:00:00.000Z"
        ],
    );
    assert!(
        plan.contains(
            "USING COVERING INDEX executions_job_status (job_id=? AND status=? AND started_at>?)"
        ),
        "{plan}"
    );
}

#[test]
fn stats_count_each_status_and_take_means_and_the_nearest_rank_p95_of_the_period() {
    let store = Store::open_in_memory().unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
    let by = crate::store::test_by();
    let a = store
        .insert_job(&Job::new("default", "a", "* * * * *", "shell"), t0, by)
        .unwrap();
    store
        .insert_job(&Job::new("default", "b", "* * * * *", "shell"), t0, by)
        .unwrap();
    store
        .insert_job(&Job::new("other", "a", "* * * * *", "shell"), t0, by)
        .unwrap();
    // Job a: 20 runs from t0 on, one a minute, the k-th taking k*100 ms; one before the period.
    let ends: Vec<(i64, Status)> = (0..20)
        .map(|k| {
            let status = match k % 10 {
                3 => Status::Failed,
                5 => Status::Timeout,
                7 => Status::Interrupted,
                9 => Status::Cancelled,
                _ => Status::Success,
            };
            (k, status)
        })
        .chain([(-5, Status::Failed)])
        .collect();
    for (k, status) in ends {
        let at = t0 + Duration::minutes(k);
        let id = store
            .claim(&NewExecution {
                job_id: a.id,
                status: Status::Running,
                scheduled_for: at,
                started_at: Some(at),
                triggered_by: Trigger::Schedule,
                attempt: 1,
                error_message: None,
                runner_pid: None,
                runner_id: None,
                fleet: None,
                caused_by: None,
            })
            .unwrap()
            .unwrap();
        store
            .finish(
                id,
                &Finish {
                    status,
                    finished_at: at + Duration::seconds(1),
                    duration_ms: (k + 1) * 100,
                    output: String::new(),
                    error_message: None,
                    exit_code: None,
                    memory_used_mb: (k % 2 == 0).then_some(2.0 + k as f64),
                    cpu_used_percent: Some(10.0),
                    memory_upper_bound: None,
                    cpu_quota_enforced: None,
                },
            )
            .unwrap();
    }
    let stats = store.job_stats("default", None, t0).unwrap();
    assert_eq!(
        stats.iter().map(|s| s.job.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let s = &stats[0];
    // k % 10: 3 failed, 5 timeout, 7 interrupted, 9 cancelled, the rest success.
    assert_eq!(
        (s.runs, s.succeeded, s.failed, s.timed_out, s.cancelled),
        (18, 12, 2, 2, 2)
    );
    assert_eq!(s.success_rate, Some(12.0 / 18.0));
    // Durations of the 18 runs (cancelled ones left out): (k + 1) * 100 for k not 9 or 19.
    let mut d: Vec<i64> = (0..20)
        .filter(|k| k % 10 != 9)
        .map(|k| (k + 1) * 100)
        .collect();
    d.sort_unstable();
    let mean = d.iter().sum::<i64>() as f64 / d.len() as f64;
    assert_eq!(s.mean_duration_ms, Some(mean));
    assert_eq!(s.p95_duration_ms, percentile(&d, 95.0));
    assert_eq!(s.p95_duration_ms, Some(1900));
    // Memory only on even k, cancelled ones left out (none is even).
    let mem: Vec<f64> = (0..20)
        .filter(|k| k % 2 == 0)
        .map(|k| 2.0 + k as f64)
        .collect();
    assert_eq!(
        s.mean_memory_mb,
        Some(mem.iter().sum::<f64>() / mem.len() as f64)
    );
    assert_eq!(s.mean_cpu_percent, Some(10.0));
    let empty = &stats[1];
    assert_eq!(
        (
            empty.runs,
            empty.success_rate,
            empty.p95_duration_ms,
            empty.mean_memory_mb
        ),
        (0, None, None, None)
    );
    let one = store
        .job_stats("default", Some("a"), t0 + Duration::minutes(15))
        .unwrap();
    assert_eq!((one.len(), one[0].runs, one[0].cancelled), (1, 4, 1));
}

#[test]
fn nearest_rank_percentile() {
    let v: Vec<i64> = (1..=100).collect();
    assert_eq!(percentile(&v, 95.0), Some(95));
    assert_eq!(percentile(&[7], 95.0), Some(7));
    assert_eq!(percentile(&[1, 2], 95.0), Some(2));
    assert_eq!(percentile(&[], 95.0), None);
}

/// A pseudo-random number generator (no dependency, the same rows every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// What `stats` should say of `system`'s jobs since `since`, computed the plain way from every
/// execution row: filter, count, sort, rank, divide.
fn expected(store: &Store, system: &str, since: DateTime<Utc>) -> Vec<serde_json::Value> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<f64>,
        Option<f64>,
    );
    let rows: Vec<Row> = store
        .conn
        .prepare(
            "SELECT j.system, j.name, e.status, e.started_at, e.duration_ms, e.memory_used_mb, \
                    e.cpu_used_percent FROM executions e JOIN jobs j ON j.id = e.job_id ORDER BY e.id",
        )
        .unwrap()
        .query_map((), |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<crate::store::sql::Result<_>>()
        .unwrap();
    let jobs: Vec<(String, u32, Option<String>)> = store
        .conn
        .prepare(
            "SELECT name, failure_streak, last_success_at FROM jobs WHERE system = ?1 ORDER BY name",
        )
        .unwrap()
        .query_map(params![system], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<crate::store::sql::Result<_>>()
        .unwrap();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    jobs.into_iter()
        .map(|(name, streak, last_success)| {
            let mine: Vec<&Row> = (rows.iter())
                .filter(|r| r.0 == system && r.1 == name)
                .filter(|r| {
                    r.3.as_deref()
                        .is_some_and(|t| crate::store::parse_time(t).unwrap() >= since)
                })
                .collect();
            let count = |s: &str| mine.iter().filter(|r| r.2 == s).count() as u64;
            let ran: Vec<&&Row> = (mine.iter())
                .filter(|r| ["success", "failed", "timeout", "interrupted"].contains(&r.2.as_str()))
                .collect();
            let mut durations: Vec<i64> = ran.iter().filter_map(|r| r.4).collect();
            durations.sort_unstable();
            let p95 = (!durations.is_empty()).then(|| {
                let rank = (0.95 * durations.len() as f64).ceil() as usize;
                durations[rank.max(1) - 1]
            });
            let memory: Vec<f64> = ran.iter().filter_map(|r| r.5).collect();
            let cpu: Vec<f64> = ran.iter().filter_map(|r| r.6).collect();
            let runs = ran.len() as u64;
            serde_json::to_value(JobStats {
                job: name,
                system: system.to_string(),
                runs,
                succeeded: count("success"),
                failed: count("failed"),
                timed_out: count("timeout"),
                cancelled: count("cancelled"),
                success_rate: (runs > 0).then(|| count("success") as f64 / runs as f64),
                mean_duration_ms: mean(&durations.iter().map(|d| *d as f64).collect::<Vec<_>>()),
                p95_duration_ms: p95,
                mean_memory_mb: mean(&memory),
                mean_cpu_percent: mean(&cpu),
                failure_streak: streak,
                last_success_at: parse_opt_time(last_success).unwrap(),
            })
            .unwrap()
        })
        .collect()
}

/// Both ways of reading (the whole period of every job, and the ranges of a few jobs) give what
/// the plain computation gives, for every status, with rows outside the period, of other
/// systems, without a start, without figures, and with no rows at all. Memory and CPU figures
/// are binary fractions, whose sums do not depend on the order they are added in (the two ways
/// read the rows in different orders).
#[test]
fn both_ways_of_reading_give_the_figures_of_a_plain_tally() {
    let store = Store::open_in_memory().unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let by = crate::store::test_by();
    let mut jobs = Vec::new();
    let many = STATS_RANGES_UP_TO + 8;
    for k in 0..many {
        jobs.push(
            store
                .insert_job(
                    &Job::new("default", &format!("j{k:02}"), "* * * * *", "shell"),
                    t0,
                    by,
                )
                .unwrap(),
        );
        if k % 10 == 0 {
            // Other systems' jobs between them, with rows of their own.
            let other = Job::new("other", &format!("o{k:02}"), "* * * * *", "shell");
            jobs.push(store.insert_job(&other, t0, by).unwrap());
        }
    }
    let statuses = [
        Status::Success,
        Status::Success,
        Status::Success,
        Status::Failed,
        Status::Timeout,
        Status::Interrupted,
        Status::Cancelled,
        Status::Skipped,
        Status::Missed,
    ];
    let mut rng = Lcg(7);
    // The last job of `default` has no rows: all its figures are empty.
    for job in &jobs[..jobs.len() - 1] {
        // Its rows over 20 days or so, 20 hours apart on average.
        let mut minute = rng.below(5 * 1440) as i64;
        for k in 0..(5 + rng.below(25)) {
            minute += 1 + rng.below(2400) as i64;
            let at = t0 - Duration::days(20) + Duration::minutes(minute);
            let status = statuses[rng.below(statuses.len() as u64) as usize];
            let not_started = matches!(status, Status::Skipped | Status::Missed);
            let id = store
                .claim(&NewExecution {
                    job_id: job.id,
                    status: if not_started { status } else { Status::Running },
                    scheduled_for: at,
                    started_at: (!not_started).then_some(at),
                    triggered_by: Trigger::Schedule,
                    attempt: 1,
                    error_message: None,
                    runner_pid: None,
                    runner_id: None,
                    fleet: None,
                    caused_by: None,
                })
                .unwrap()
                .unwrap();
            if not_started {
                continue;
            }
            if k > 5 && rng.below(8) == 0 {
                break; // still running: the newest row of this job
            }
            store
                .finish(
                    id,
                    &Finish {
                        status,
                        finished_at: at + Duration::seconds(1),
                        duration_ms: rng.below(10_000) as i64,
                        output: String::new(),
                        error_message: None,
                        exit_code: None,
                        memory_used_mb: (rng.below(4) > 0)
                            .then(|| rng.below(40_000) as f64 / 1024.0),
                        cpu_used_percent: (rng.below(4) > 0).then(|| rng.below(800) as f64 / 4.0),
                        memory_upper_bound: None,
                        cpu_quota_enforced: None,
                    },
                )
                .unwrap();
        }
    }
    let json = |v: Vec<JobStats>| -> Vec<serde_json::Value> {
        v.into_iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect()
    };
    for since in [
        t0 - Duration::days(30),
        t0 - Duration::days(7),
        t0 - Duration::days(1),
        t0 + Duration::days(1),
    ] {
        let want = expected(&store, "default", since);
        assert_eq!(want.len(), many);
        // More jobs than STATS_RANGES_UP_TO: the whole period, in start order.
        let all = json(store.job_stats("default", None, since).unwrap());
        assert_eq!(all, want, "since {since}");
        // One job: its ranges of each status.
        for (k, w) in want.iter().enumerate() {
            let name = format!("j{k:02}");
            let one = json(store.job_stats("default", Some(&name), since).unwrap());
            assert_eq!(one, std::slice::from_ref(w), "{name} since {since}");
        }
        // A few jobs (another system): their ranges, other systems' rows left out.
        let other = json(store.job_stats("other", None, since).unwrap());
        assert_eq!(other, expected(&store, "other", since), "since {since}");
    }
    // The rows are varied enough to mean something: every status in the last week.
    let week = expected(&store, "default", t0 - Duration::days(7));
    for key in ["succeeded", "failed", "timed_out", "cancelled"] {
        assert!(
            week.iter().map(|s| s[key].as_u64().unwrap()).sum::<u64>() > 0,
            "{key}"
        );
    }
    assert!(week.iter().any(|s| s["mean_memory_mb"].is_f64()));
}

/// Job ids far apart take a hash map, close ones a table; both find exactly their ids.
#[test]
fn tallies_find_their_jobs_by_id_dense_or_sparse() {
    for ids in [vec![5i64, 6, 8, 10], vec![1, 1_000_000, i64::MAX, -3]] {
        let mut t = Tallies::new(ids.iter().copied());
        assert_eq!(
            matches!(t, Tallies::Dense { .. }),
            ids.len() == 4 && ids[0] == 5
        );
        for id in &ids {
            t.get_mut(*id)
                .unwrap()
                .add(Status::Success, Some(*id), None, None);
        }
        for other in [4, 7, 9, 11, 0, i64::MIN] {
            assert!(t.get_mut(other).is_none(), "{other}");
        }
        for id in &ids {
            let got = t.take(*id);
            assert_eq!((got.runs, got.durations), (1, vec![*id]));
        }
    }
}
