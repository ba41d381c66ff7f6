//! The engine on a shared database, in-process with the fake clock: missed rows that say what
//! the fleet did (slots others ran are not missed; a pinned job names the labels no runner had).

use std::time::Duration;

use super::{at, hourly, job, Rig};
use crate::runner::calendar::{Fire, Gap};
use crate::store::{CatchUp, Status, Store, Trigger};

/// A fleet's runner paused (SIGSTOP, a frozen VM) while the others ran its slots: back, it
/// records as missed only the slots no runner ran, and nothing when they ran them all. (The
/// fleet part of the engine on SQLite: which slots have rows is the same query.)
#[test]
fn a_runner_back_from_a_pause_records_as_missed_only_the_slots_no_runner_ran() {
    for others_ran in [4usize, 2] {
        let mut minutely = job("minutely", "* * * * *");
        minutely.next_run_at = Some(at(1, 1, 0));
        let mut rig = Rig::new(&[minutely], at(1, 0, 30), None).start();
        let me = rig.engine.life.runner_id.unwrap();
        rig.engine.fleet = Some(crate::runner::fleet::FleetMember::new(
            me,
            Duration::from_secs(30),
            *rig.clock.mono.lock().unwrap(),
        ));
        // Another runner ran the first `others_ran` of the slots 01:01 … 01:04.
        let store = Store::open(&rig.db).unwrap();
        let job_id = store.job("default", "minutely").unwrap().id;
        for m in 1..=others_ran as u32 {
            let row = crate::store::NewExecution {
                job_id,
                status: Status::Skipped,
                scheduled_for: at(1, m, 0),
                started_at: Some(at(1, m, 0)),
                triggered_by: Trigger::Schedule,
                attempt: 1,
                error_message: Some("skipped: elsewhere".into()),
                runner_pid: Some(1),
                runner_id: None,
                fleet: None,
                caused_by: None,
            };
            assert!(store.claim(&row).unwrap().is_some());
        }
        // Paused from 01:00:30 to 01:05:30: both clocks moved, the loop did not turn.
        *rig.clock.wall.lock().unwrap() += chrono::Duration::minutes(5);
        *rig.clock.mono.lock().unwrap() += Duration::from_secs(300);
        rig.step();
        let missed: Vec<String> = (rig.rows("minutely").into_iter())
            .filter(|r| r.0 == Status::Missed)
            .map(|r| r.4)
            .collect();
        match others_ran {
            4 => assert!(missed.is_empty(), "a false row: {missed:?}"),
            _ => {
                assert_eq!(
                missed,
                ["missed 2 of the 4 slots from 2026-03-01T01:01:00Z to 2026-03-01T01:04:00Z \
                  (the fleet's other runners ran the rest): the runner was busy or blocked; \
                  ran the latest once"]
            )
            }
        }
        // The latest slot runs on time.
        assert_eq!(rig.launched_names(), ["minutely"]);
    }
}

/// A job pinned to labels no runner up has: its missed rows name the labels, not "the runner
/// was not running", when other runners were up (a shared database, at start).
#[test]
fn a_pinned_jobs_missed_rows_name_the_labels_no_runner_had() {
    let mut pinned = hourly("pinned", at(1, 0, 0), CatchUp::None, None);
    pinned.runner_labels = vec!["db-host".into()];
    let mut rig = Rig::new(&[pinned], at(2, 30, 0), None);
    rig.engine.opts.labels = vec!["db-host".into()];
    rig.engine.reload(at(2, 30, 0)).unwrap();
    let others = [vec!["eu".to_string()]];
    let fires = rig
        .engine
        .calendar
        .at_start(at(2, 30, 0), Gap::Down, Some(&others));
    let why: Vec<&str> = fires
        .iter()
        .filter_map(|f| match f {
            Fire::Missed { why, slots, .. } => {
                assert_eq!(*slots, 2);
                Some(why.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(why, ["no runner with labels db-host was up"]);
    // A runner up with the labels fired them: nothing missed.
    let others = [vec!["db-host".to_string(), "eu".to_string()]];
    let mut rig2 = Rig::new(
        &[hourly("free", at(1, 0, 0), CatchUp::None, None)],
        at(2, 30, 0),
        None,
    );
    rig2.engine.reload(at(2, 30, 0)).unwrap();
    assert!(rig2
        .engine
        .calendar
        .at_start(at(2, 30, 0), Gap::Down, Some(&others))
        .is_empty());
    // Not a fleet: as before.
    let fires = rig.engine.calendar.at_start(at(2, 30, 0), Gap::Down, None);
    assert!(
        matches!(&fires[..], [Fire::Missed { why, .. }] if why == "the runner was not running")
    );
}

/// Deep in a long burst every slot is late: a claim the fleet's database refuses once (another
/// member's lock) puts the slot back in the queue; it is recorded missed only when the database
/// has refused its claim for the whole patience.
#[test]
fn a_refused_claim_waits_its_patience_from_the_first_refusal_not_from_the_slot() {
    let mut minutely = job("minutely", "* * * * *");
    minutely.next_run_at = Some(at(1, 1, 0));
    let mut rig = Rig::new(&[minutely], at(1, 0, 30), None).start();
    let job_id = Store::open(&rig.db)
        .unwrap()
        .job("default", "minutely")
        .unwrap()
        .id;
    let busy = crate::store::StoreError::Busy("lock timeout".into());
    let slot_at = at(1, 0, 0);
    let slot = rig.engine.slot(job_id, slot_at);
    let queued = rig.engine.dispatch.queued_count();
    // 30 s late, refused for the first time: back in the queue.
    let now = slot_at + chrono::Duration::seconds(30);
    rig.engine.claim_later(slot.clone(), &busy, now);
    assert_eq!(rig.engine.dispatch.queued_count(), queued + 1);
    // Refused again 9 s later: still waiting.
    let mut again = slot.clone();
    again.refused_since = Some(now);
    rig.engine
        .claim_later(again.clone(), &busy, now + chrono::Duration::seconds(9));
    assert_eq!(rig.engine.dispatch.queued_count(), queued + 2);
    // Refused for the whole patience: recorded missed, with the reason.
    rig.engine
        .claim_later(again, &busy, now + chrono::Duration::seconds(10));
    assert_eq!(rig.engine.dispatch.queued_count(), queued + 2);
    assert!(rig.engine.recorder.flush(&rig.engine.store));
    let missed: Vec<String> = (rig.rows("minutely").into_iter())
        .filter(|r| r.0 == Status::Missed)
        .map(|r| r.4)
        .collect();
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert!(
        missed[0].contains("the database did not take the claim")
            && missed[0].contains("40s past the slot"),
        "{missed:?}"
    );
}

/// A fleet's runner that listens (LISTEN/NOTIFY) looks for changes only at the slow fallback,
/// but at once when a notification wakes it; with its listener lost, each second again.
#[test]
fn a_listening_runner_reloads_when_notified_else_only_at_the_fallback() {
    use crate::runner::Event;
    use crate::store::{Change, Notice};
    let yearly = |name: &str| {
        let mut j = job(name, "0 0 1 1 *");
        j.next_run_at = Some(at(1, 0, 0) + chrono::Duration::days(300));
        j
    };
    let mut rig = Rig::new(&[yearly("notified"), yearly("polled")], at(1, 0, 0), None).start();
    let me = rig.engine.life.runner_id.unwrap();
    let mono = *rig.clock.mono.lock().unwrap();
    rig.engine.fleet = Some(crate::runner::fleet::FleetMember::new(
        me,
        Duration::from_secs(30),
        mono,
    ));
    rig.engine.handle(Event::Notice(Notice::Listening));
    rig.step();
    // Edited behind the runner's back (no nudge).
    let conn = rusqlite::Connection::open(&rig.db).unwrap();
    let every_second = |name: &str| {
        let sql = format!("UPDATE jobs SET schedule = '* * * * * *' WHERE name = '{name}'");
        assert_eq!(conn.execute(&sql, []).unwrap(), 1);
    };
    every_second("notified");
    rig.advance(20);
    assert!(rig.launched().is_empty(), "{:?}", rig.launched_names());
    rig.engine
        .handle(Event::Notice(Notice::Change(Change::Jobs)));
    rig.step();
    rig.advance(1);
    assert_eq!(rig.launched_names(), ["notified"]);
    rig.end_all(0);
    // The listener lost: each second again.
    rig.engine
        .handle(Event::Notice(Notice::Lost("closed".into())));
    rig.step();
    every_second("polled");
    rig.advance(2);
    assert!(
        rig.launched_names().contains(&"polled".to_string()),
        "{:?}",
        rig.launched_names()
    );
}
