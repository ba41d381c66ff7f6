//! The engine's decisions, in-process: a fake clock the test moves, a fake spawner that starts
//! nothing (the test ends each execution as it likes), a real SQLite database in a temporary
//! folder. No sleeps: each test runs in milliseconds and reads the rows the runner wrote.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use super::{Engine, Event, Options};
use crate::config::Config;
use crate::runner::clock::Clock;
use crate::runner::process::{Cancel, Ending, Limits, Outcome, Spec};
use crate::runner::spawn::Spawner;
use crate::store::{Backoff, CatchUp, ExecutionFilter, Job, Status, Store, Trigger};

mod fleet;

struct FakeClock {
    wall: Mutex<DateTime<Utc>>,
    mono: Mutex<Instant>,
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.wall.lock().unwrap()
    }
    fn mono(&self) -> Instant {
        *self.mono.lock().unwrap()
    }
}

/// One execution the engine asked to start.
#[derive(Clone)]
struct Launch {
    execution: i64,
    job: String,
    attempt: u32,
    cancel: Cancel,
}

#[derive(Clone, Default)]
struct FakeSpawner {
    launched: Arc<Mutex<Vec<Launch>>>,
}

impl Spawner for FakeSpawner {
    fn launch(
        &self,
        execution: i64,
        spec: Spec,
        cancel: Cancel,
        _: &Sender<Event>,
        _: bool,
    ) -> Option<u32> {
        let var = |k: &str| {
            (spec.env.iter())
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        self.launched.lock().unwrap().push(Launch {
            execution,
            job: var("CRONMGR_JOB"),
            attempt: var("CRONMGR_ATTEMPT").parse().unwrap(),
            cancel,
        });
        None
    }
}

/// A run of 10 ms that exited with `code`, its process `pid`.
fn exited(code: i32, pid: u32) -> Outcome {
    Outcome {
        ending: Ending::Exited(code),
        exit_code: Some(code),
        output: String::new(),
        output_bytes: 0,
        duration: Duration::from_millis(10),
        max_rss_mb: 1.0,
        memory_upper_bound: true,
        cpu_quota_enforced: None,
        cpu_percent: 0.0,
        cpu_seconds: 0.0,
        pid,
        limits: Limits::default(),
        live_log: false,
    }
}

/// 2026-03-01 (a Sunday) at h:m:s UTC.
fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).unwrap()
}

fn job(name: &str, schedule: &str) -> Job {
    let mut job = Job::new("default", name, schedule, "shell");
    job.params
        .insert("argv".into(), serde_json::json!(["/bin/true"]));
    job.timezone = "UTC".into();
    job
}

struct Rig {
    _dir: tempfile::TempDir,
    db: PathBuf,
    clock: &'static FakeClock,
    spawner: FakeSpawner,
    engine: Engine<'static>,
    /// Launches already ended by the test.
    ended: usize,
}

impl Rig {
    /// A database with `jobs` (each job's stored `next_run_at` as given), and an engine whose
    /// clock reads `now`, with `--max-concurrent` `cap`.
    fn new(jobs: &[Job], now: DateTime<Utc>, cap: Option<usize>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cronmgr.db");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, "[executors.shell]\nallow = [\"/bin/true\"]\n").unwrap();
        let config = Config::load(Some(&config_path)).unwrap();
        let store = Store::open(&db).unwrap();
        for j in jobs {
            store.insert_job(j, now, crate::store::test_by()).unwrap();
        }
        let clock: &'static FakeClock = Box::leak(Box::new(FakeClock {
            wall: Mutex::new(now),
            mono: Mutex::new(Instant::now()),
        }));
        let spawner = FakeSpawner::default();
        let opts = Options {
            once: false,
            max_concurrent: cap,
            db_path: db.clone(),
            config,
            config_path: Some(config_path),
            metrics_file: None,
            labels: Vec::new(),
            lease: Duration::from_secs(30),
        };
        let engine = Engine::new(store, clock, Box::new(spawner.clone()), opts);
        Rig {
            _dir: dir,
            db,
            clock,
            spawner,
            engine,
            ended: 0,
        }
    }

    fn start(mut self) -> Rig {
        self.engine.start().unwrap();
        self.step();
        self
    }

    /// One turn of the loop, without its sleep.
    fn step(&mut self) {
        self.engine.turn();
        self.engine.after_events();
        self.engine.turn(); // what the events freed starts, what they wrote lands
    }

    /// Time passes (both clocks), in steps of at most a second; the loop turns at each.
    fn advance(&mut self, secs: i64) {
        for _ in 0..secs {
            *self.clock.wall.lock().unwrap() += chrono::Duration::seconds(1);
            *self.clock.mono.lock().unwrap() += Duration::from_secs(1);
            self.step();
        }
    }

    /// The wall clock is set by `secs` (forward or back); no time passes.
    fn jump(&mut self, secs: i64) {
        *self.clock.wall.lock().unwrap() += chrono::Duration::seconds(secs);
        self.step();
    }

    /// The launches not yet ended.
    fn launched(&self) -> Vec<Launch> {
        self.spawner.launched.lock().unwrap()[self.ended..].to_vec()
    }

    fn launched_names(&self) -> Vec<String> {
        self.launched().into_iter().map(|l| l.job).collect()
    }

    /// End the oldest launch not yet ended, with exit code `code`.
    fn end_next(&mut self, code: i32) {
        let l = self
            .launched()
            .into_iter()
            .next()
            .expect("something running");
        self.ended += 1;
        let finished = Event::Finished {
            execution: l.execution,
            result: Ok(exited(code, 1)),
        };
        self.engine.sender().send(finished).unwrap();
        self.step();
    }

    fn end_all(&mut self, code: i32) {
        while !self.launched().is_empty() {
            self.end_next(code);
        }
    }

    /// Every row of `job`'s history, oldest first: (status, attempt, trigger, slot, message).
    fn rows(&self, job: &str) -> Vec<(Status, u32, Trigger, DateTime<Utc>, String)> {
        let store = Store::open(&self.db).unwrap();
        let mut rows = store
            .executions(&ExecutionFilter {
                job: Some(job.into()),
                ..Default::default()
            })
            .unwrap();
        rows.sort_by_key(|e| e.id);
        (rows.into_iter())
            .map(|e| {
                let msg = e.error_message.unwrap_or_default();
                (e.status, e.attempt, e.triggered_by, e.scheduled_for, msg)
            })
            .collect()
    }

    fn started_at(&self, job: &str) -> Vec<DateTime<Utc>> {
        let store = Store::open(&self.db).unwrap();
        let mut rows = store
            .executions(&ExecutionFilter {
                job: Some(job.into()),
                ..Default::default()
            })
            .unwrap();
        rows.sort_by_key(|e| e.id);
        rows.into_iter().filter_map(|e| e.started_at).collect()
    }
}

/// A job that was due at `next` (stored), hourly, with a catch-up policy.
fn hourly(name: &str, next: DateTime<Utc>, catch_up: CatchUp, deadline: Option<u64>) -> Job {
    let mut j = job(name, "0 * * * *");
    j.next_run_at = Some(next);
    j.catch_up = catch_up;
    j.starting_deadline = deadline;
    j
}

#[test]
fn after_downtime_slots_are_missed_and_only_a_catch_up_job_runs_its_latest() {
    let jobs = [
        hourly("plain", at(1, 0, 0), CatchUp::None, None),
        hourly("latest", at(1, 0, 0), CatchUp::Latest, None),
        hourly("deadline-met", at(1, 0, 0), CatchUp::Latest, Some(1800)),
        hourly("deadline-passed", at(1, 0, 0), CatchUp::Latest, Some(600)),
    ];
    // Down from before 01:00 until 03:20: slots 01:00, 02:00 and 03:00 passed.
    let mut rig = Rig::new(&jobs, at(3, 20, 0), None).start();
    let mut started = rig.launched_names();
    started.sort();
    assert_eq!(started, ["deadline-met", "latest"]);
    rig.end_all(0);
    let missed = |n: usize, what: &str| {
        format!("missed {n} slots from 2026-03-01T01:00:00Z to 2026-03-01T0{n}:00:00Z: the runner was not running{what}")
    };
    let plain = rig.rows("plain");
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert_eq!((plain[0].0, plain[0].3), (Status::Missed, at(1, 0, 0)));
    assert_eq!(plain[0].4, missed(3, ""));
    let latest = rig.rows("latest");
    assert_eq!(latest.len(), 2, "{latest:?}");
    assert_eq!(latest[0].4, missed(3, "; ran the latest once"));
    assert_eq!((latest[1].0, latest[1].3), (Status::Success, at(3, 0, 0)));
    assert_eq!(rig.rows("deadline-met")[1].0, Status::Success);
    let passed = rig.rows("deadline-passed");
    assert_eq!(passed.len(), 1);
    assert_eq!(
        passed[0].4,
        missed(3, "; too late to catch up (starting_deadline)")
    );
    // Then each job fires on time at 04:00, once.
    rig.advance(40 * 60);
    assert_eq!(rig.launched().len(), 4);
}

#[test]
fn a_small_forward_jump_runs_fixed_time_jobs_once_and_a_step_back_reruns_nothing() {
    let mut fixed = job("fixed", "30 2 * * *");
    fixed.next_run_at = Some(at(2, 30, 0));
    let mut every = job("every10", "*/10 * * * *");
    every.next_run_at = Some(at(2, 10, 0));
    let mut rig = Rig::new(&[fixed, every], at(2, 0, 0), None).start();
    assert!(rig.launched().is_empty());
    // The clock jumps from 02:00 to 02:59:55 in no time (a clock change).
    rig.jump(3595);
    assert_eq!(rig.launched_names(), ["fixed"]);
    rig.end_all(0);
    let f = rig.rows("fixed");
    assert_eq!(
        (f.len(), f[0].0, f[0].3),
        (1, Status::Success, at(2, 30, 0))
    );
    let e = rig.rows("every10");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, Status::Missed);
    assert!(e[0].4.starts_with("missed 5 slots from 2026-03-01T02:10:00Z to 2026-03-01T02:50:00Z: the clock jumped forward by 59m55s"), "{}", e[0].4);
    // Back to 02:00: the wildcard job follows the clock; the fixed-time job never reruns 02:30.
    rig.jump(-3595);
    for _ in 0..4 {
        rig.advance(600);
        rig.end_all(0);
    }
    assert_eq!(rig.rows("fixed").len(), 1);
    let runs: Vec<_> = (rig.rows("every10").into_iter())
        .filter(|r| r.0 == Status::Success)
        .map(|r| r.3)
        .collect();
    assert_eq!(
        runs,
        [at(2, 10, 0), at(2, 20, 0), at(2, 30, 0), at(2, 40, 0)]
    );
}

#[test]
fn a_large_forward_jump_is_a_sleep_nothing_runs_late() {
    let mut fixed = job("fixed", "30 2 * * *");
    fixed.next_run_at = Some(at(2, 30, 0));
    let mut rig = Rig::new(&[fixed], at(2, 0, 0), None).start();
    rig.jump(5 * 3600);
    assert!(rig.launched().is_empty());
    let f = rig.rows("fixed");
    assert_eq!(f.len(), 1);
    assert!(
        f[0].4.contains("the clock jumped forward by 5h"),
        "{}",
        f[0].4
    );
}

#[test]
fn a_failed_run_is_retried_with_growing_delays_until_its_attempts_are_used() {
    let mut j = hourly("flaky", at(1, 0, 0), CatchUp::None, None);
    (j.retries, j.retry_delay, j.backoff) = (2, 10, Backoff::Exponential);
    let mut rig = Rig::new(&[j], at(0, 59, 59), None).start();
    rig.advance(1);
    assert_eq!(rig.launched()[0].attempt, 1);
    rig.end_next(1);
    // The second attempt 10 s after the failure, the third 20 s after the second.
    rig.advance(9);
    assert!(rig.launched().is_empty(), "retried too early");
    rig.advance(1);
    assert_eq!(rig.launched()[0].attempt, 2);
    rig.end_next(1);
    rig.advance(19);
    assert!(rig.launched().is_empty(), "retried too early");
    rig.advance(1);
    assert_eq!(rig.launched()[0].attempt, 3);
    rig.end_next(1);
    // No fourth attempt.
    rig.advance(120);
    assert!(rig.launched().is_empty());
    let rows = rig.rows("flaky");
    let got: Vec<_> = rows.iter().map(|r| (r.0, r.1, r.2, r.3)).collect();
    let slot = at(1, 0, 0);
    assert_eq!(
        got,
        [
            (Status::Failed, 1, Trigger::Schedule, slot),
            (Status::Failed, 2, Trigger::Retry, slot),
            (Status::Failed, 3, Trigger::Retry, slot)
        ]
    );
    assert_eq!(
        rig.started_at("flaky"),
        [at(1, 0, 0), at(1, 0, 10), at(1, 0, 30)]
    );
    // A success ends the attempts at once.
    rig.advance(3600 - 30);
    assert_eq!(rig.launched()[0].attempt, 1);
    rig.end_next(0);
    rig.advance(60);
    assert!(rig.launched().is_empty());
}

#[test]
fn the_system_cap_holds_and_the_most_urgent_start_first() {
    let mut jobs = Vec::new();
    for (name, priority) in [("p5", 5), ("p1", 1), ("p9", 9), ("p3", 3), ("p7", 7)] {
        let mut j = hourly(name, at(1, 0, 0), CatchUp::None, None);
        j.priority = priority;
        jobs.push(j);
    }
    let mut rig = Rig::new(&jobs, at(0, 59, 59), None);
    let store = Store::open(&rig.db).unwrap();
    let mut s = store.settings("default").unwrap();
    s.max_concurrent_jobs = 2;
    store
        .put_settings(&s, &[], at(0, 0, 0), crate::store::test_by())
        .unwrap();
    let mut rig = {
        rig.engine.start().unwrap();
        rig
    };
    rig.advance(1);
    assert_eq!(rig.launched_names(), ["p1", "p3"]);
    rig.end_next(0);
    assert_eq!(rig.launched_names(), ["p3", "p5"]);
    rig.end_next(0);
    rig.end_next(0);
    assert_eq!(rig.launched_names(), ["p7", "p9"]);
    rig.end_all(0);
    let order: Vec<String> = rig
        .spawner
        .launched
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.job.clone())
        .collect();
    assert_eq!(order, ["p1", "p3", "p5", "p7", "p9"]);
}

#[test]
fn max_concurrent_overrides_every_systems_cap() {
    let jobs: Vec<Job> = (0..4)
        .map(|i| hourly(&format!("j{i}"), at(1, 0, 0), CatchUp::None, None))
        .collect();
    let mut rig = Rig::new(&jobs, at(0, 59, 59), Some(1)).start();
    rig.advance(1);
    assert_eq!(
        rig.launched_names(),
        ["j0"],
        "one at a time, by id at equal priority"
    );
    for next in ["j1", "j2", "j3"] {
        rig.end_next(0);
        assert_eq!(rig.launched_names(), [next]);
    }
}

#[test]
fn a_slot_due_while_the_previous_run_goes_on_is_skipped() {
    let mut j = job("slow", "* * * * *");
    j.next_run_at = Some(at(1, 1, 0));
    let mut rig = Rig::new(&[j], at(1, 0, 59), None).start();
    rig.advance(1);
    assert_eq!(rig.launched().len(), 1);
    rig.advance(60);
    assert_eq!(rig.launched().len(), 1, "no second instance");
    rig.end_all(0);
    let rows = rig.rows("slow");
    assert_eq!(rows[1].0, Status::Skipped);
    assert_eq!(rows[1].3, at(1, 2, 0));
    assert_eq!(
        rows[1].4,
        "skipped: the previous run is still going (allow_concurrent = false)"
    );
}

#[test]
fn a_stop_waits_for_running_executions_then_cancels_them_after_the_grace_period() {
    let mut j = hourly("long", at(1, 0, 0), CatchUp::None, None);
    j.allow_concurrent = true;
    let mut rig = Rig::new(&[j], at(0, 59, 59), None).start();
    rig.advance(1);
    let running = rig.launched();
    assert_eq!(running.len(), 1);
    rig.engine
        .sender()
        .send(Event::Signal(libc::SIGTERM))
        .unwrap();
    rig.step();
    assert!(!rig.engine.turn(), "not done while one runs");
    // Within the default 30 s grace: left alone.
    rig.advance(29);
    assert!(!running[0].cancel.is_cancelled());
    rig.advance(1);
    assert!(running[0].cancel.is_cancelled());
    rig.end_next(143);
    assert!(rig.engine.turn(), "done once nothing runs");
    // Nothing new started while stopping, though 02:00 came.
    rig.advance(3600);
    assert!(rig.launched().is_empty());
}

/// A spawn only queues its pid: the loop's wait goes on to the execution's end, and the pid
/// lands with it, one write instead of two turns. (A fleet's "freed", while nothing waits for
/// the fleet's cap, does not end the wait either.)
#[test]
fn a_spawn_does_not_end_the_wait_and_its_pid_lands_with_the_end() {
    let j = hourly("hourly", at(1, 0, 0), CatchUp::None, None);
    let mut rig = Rig::new(&[j], at(1, 0, 0), None).start();
    let execution = rig.launched()[0].execution;
    let tx = rig.engine.sender();
    tx.send(Event::Spawned {
        execution,
        pid: 4242,
    })
    .unwrap();
    tx.send(Event::Notice(crate::store::Notice::Change(
        crate::store::Change::Freed,
    )))
    .unwrap();
    tx.send(Event::Finished {
        execution,
        result: Ok(exited(0, 4242)),
    })
    .unwrap();
    // The next slot is an hour away: only the events end this wait.
    rig.engine.wait();
    assert!(
        rig.engine.events.1.try_recv().is_err(),
        "the wait ended before the execution's end"
    );
    rig.engine.turn();
    let row = Store::open(&rig.db).unwrap().execution(execution).unwrap();
    assert_eq!((row.status, row.pid), (Status::Success, Some(4242)));
}

#[test]
fn the_engine_sleeps_until_the_earliest_thing_it_waits_for() {
    let j = hourly("hourly", at(1, 0, 0), CatchUp::None, None);
    let mut rig = Rig::new(&[j], at(0, 59, 0), None).start();
    let now = rig.clock.now();
    // The next slot (60 s) and the first housekeeping (30 s after start): the earlier.
    let wait = rig.engine.next_wake(now);
    assert!(wait <= Duration::from_secs(30), "{wait:?}");
    rig.advance(31);
    let wait = rig.engine.next_wake(rig.clock.now());
    assert_eq!(wait, Duration::from_secs(29));
}

#[test]
fn a_schedule_edited_behind_the_runners_back_is_picked_up_at_its_first_look() {
    let mut j = job("edited", "0 0 1 1 *");
    j.next_run_at = Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    let mut rig = Rig::new(&[j], at(1, 0, 0), None).start();
    // Written by hand: no nudge, and updated_at untouched.
    let conn = rusqlite::Connection::open(&rig.db).unwrap();
    let sql = "UPDATE jobs SET schedule = '* * * * * *' WHERE name = 'edited'";
    assert_eq!(conn.execute(sql, []).unwrap(), 1);
    // The first look for unannounced changes comes half a minute after start-up.
    rig.advance(29);
    assert!(rig.launched().is_empty());
    rig.advance(2);
    assert_eq!(rig.launched_names(), ["edited"]);
}

#[test]
fn a_jittered_slot_fires_at_its_delay_and_records_its_slot() {
    let mut j = job("spread", "0 * * * *");
    j.next_run_at = Some(at(1, 0, 0));
    j.jitter = Some(600);
    let delay = crate::runner::fire_at(&j, at(1, 0, 0)) - at(1, 0, 0);
    assert!(delay > chrono::Duration::zero() && delay <= chrono::Duration::seconds(600));
    let mut rig = Rig::new(&[j], at(0, 59, 59), None).start();
    // Not at the slot, nor a second before its delay is over.
    rig.advance(delay.num_seconds());
    assert!(rig.launched().is_empty());
    rig.advance(1);
    assert_eq!(rig.launched_names(), ["spread"]);
    rig.end_all(0);
    let rows = rig.rows("spread");
    assert_eq!((rows[0].0, rows[0].3), (Status::Success, at(1, 0, 0)));
    assert_eq!(rig.started_at("spread"), [at(1, 0, 0) + delay]);
}

#[test]
fn an_h_schedule_fires_at_the_minute_its_job_hashes_to() {
    let j = job("hashed", "H * * * *");
    let resolved = crate::schedule::hash::resolve("H * * * *", "default/hashed").unwrap();
    let minute: u32 = resolved.split(' ').next().unwrap().parse().unwrap();
    let mut rig = Rig::new(&[j], at(1, 0, 0), None).start();
    rig.advance(i64::from(minute) * 60 + 60);
    rig.end_all(0);
    let rows = rig.rows("hashed");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].3, at(1, minute, 0));
}

mod chains;
