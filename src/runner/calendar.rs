//! The calendar: every schedulable job with its next slot, what is due now, and what a gap in
//! time (the loop woke late, the runner was down, the clock jumped) means for each job: run its
//! latest slot, record the others as missed, catch up. No store, no processes: the engine hands
//! it jobs and settings and acts on the [`Fire`]s it answers. [`decide`] is the policy, pure.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::fleet;
use crate::model::bounds;
use crate::schedule::{self, Schedule};
use crate::store::{CatchUp, Job, Settings};

/// A slot that passed while no runner was up is missed, however little: as with cron, a runner
/// starting at 03:00:00.2 does not run the 03:00 job (unless its catch-up policy says so).
const ON_TIME: chrono::Duration = chrono::Duration::zero();
/// Most slots counted for one missed-run record.
pub const MISSED_CAP: usize = 100_000;

/// Why slots were not run on time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gap {
    /// The loop woke up late while running normally.
    Late,
    /// The runner was not running.
    Down,
    /// `run --once`: each job's pending slot is due now; the latest of several runs.
    Once,
    /// The clock jumped forward by less than [`super::lifecycle::SMALL_JUMP`].
    SmallJump(chrono::Duration),
    /// The clock jumped forward a lot, or the machine slept.
    LargeJump(chrono::Duration),
}

/// What a job's settings say about slots that passed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub catch_up: CatchUp,
    /// Seconds after its slot within which a catch-up may still start.
    pub starting_deadline: Option<u64>,
    /// The schedule names fixed times of day (no wildcard in seconds, minutes or hours).
    pub fixed_time: bool,
}

/// What to do with the slots of one gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The first `missed` slots are recorded as missed (one row).
    pub missed: usize,
    /// The latest slot runs (on time, or as a catch-up).
    pub run_latest: bool,
}

/// The policy for `slots` (the first due one up to the latest before `now`, in order) after `gap`.
pub fn decide(gap: Gap, slots: &[DateTime<Utc>], now: DateTime<Utc>, policy: &Policy) -> Decision {
    let Some(&latest) = slots.last() else {
        return Decision {
            missed: 0,
            run_latest: false,
        };
    };
    let on_time = now - latest <= ON_TIME;
    let within_deadline = policy
        .starting_deadline
        .is_none_or(|d| (now - latest).num_seconds() <= i64::try_from(d).unwrap_or(i64::MAX));
    let catch_up = policy.catch_up == CatchUp::Latest && within_deadline;
    let run_latest = match gap {
        Gap::Late | Gap::Once => true,
        Gap::Down | Gap::LargeJump(_) => on_time || catch_up,
        Gap::SmallJump(_) => on_time || policy.fixed_time || catch_up,
    };
    // The latest slot, when it runs, is on time unless it runs as a catch-up.
    let latest_on_time = on_time
        || matches!(gap, Gap::Late | Gap::Once)
        || (matches!(gap, Gap::SmallJump(_)) && policy.fixed_time);
    let missed = if run_latest && latest_on_time {
        slots.len() - 1
    } else {
        slots.len()
    };
    Decision { missed, run_latest }
}

/// Why the slots of a gap were missed, with what became of the latest ("; ran the latest once"):
/// `reason` if given (a fleet's truth: no runner, or none with the job's labels, was up), else
/// the gap's own.
fn missed_why(gap: Gap, reason: Option<&str>, run_latest: bool, policy: &Policy) -> String {
    let why = match (reason, gap) {
        (Some(r), _) => r.to_string(),
        (None, Gap::Late) => "the runner was busy or blocked".to_string(),
        (None, Gap::Down) => "the runner was not running".to_string(),
        (None, Gap::Once) => "they came due before this `run --once`".to_string(),
        (None, Gap::SmallJump(d) | Gap::LargeJump(d)) => format!(
            "the clock jumped forward by {} (clock change or the machine slept)",
            crate::duration::human_secs(d.num_seconds().max(0) as u64)
        ),
    };
    let what = if run_latest {
        "; ran the latest once"
    } else if policy.catch_up == CatchUp::Latest {
        "; too late to catch up (starting_deadline)"
    } else {
        ""
    };
    format!("{why}{what}")
}

/// What the calendar asks the engine to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Fire {
    /// Record one `missed` row for the job's `slots` slots from `first` to `last` (text:
    /// [`super::missed::text`]), minus those that have rows already (a fleet's other runners
    /// ran them).
    Missed {
        job_id: i64,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        slots: usize,
        why: String,
    },
    /// Queue the job's slot `at` (unless it may not overlap and one is already waiting).
    Run { job_id: i64, at: DateTime<Utc> },
    /// An `@reboot` job: queue it once, at start.
    Reboot { job_id: i64, at: DateTime<Utc> },
}

pub struct Entry {
    /// Boxed: the map of entries stays small (a `Job` is several hundred bytes, and the map
    /// keeps up to twice as many slots as it has jobs).
    pub job: Box<Job>,
    /// The job's `params`, kept as JSON text until it starts (`job.params` is left empty): a
    /// parsed map costs over half a kilobyte a job for what only the executor reads.
    params: Box<str>,
    /// Shared by every job with the same expression (a host has few distinct ones).
    schedule: Arc<Schedule>,
    tz: Tz,
    pub next: Option<DateTime<Utc>>,
}

impl Entry {
    fn pack(params: serde_json::Map<String, serde_json::Value>) -> Box<str> {
        // Invariant: a map with string keys always serializes.
        serde_json::to_string(&params)
            .expect("a JSON map serializes")
            .into_boxed_str()
    }

    /// The job as loaded, `params` included.
    pub fn full_job(&self) -> Job {
        let mut job = Job::clone(&self.job);
        // Invariant: `params` is what `pack` wrote.
        job.params = serde_json::from_str(&self.params).expect("packed params parse");
        job
    }

    /// The job's next slot, when a timer for `at` is still its (not stale).
    fn live(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next.filter(|next| fire_at(&self.job, *next) == at)
    }

    fn policy(&self) -> Policy {
        Policy {
            catch_up: self.job.catch_up,
            starting_deadline: self.job.starting_deadline,
            fixed_time: self.schedule.is_fixed_time(),
        }
    }
}

/// When the job's slot `slot` fires: the slot, delayed by the job's jitter (see
/// [`schedule::hash::jitter`]).
pub fn fire_at(job: &Job, slot: DateTime<Utc>) -> DateTime<Utc> {
    match job.jitter {
        Some(max) if max > 0 => {
            let seed = format!("{}/{}", job.system, job.name);
            let delay = schedule::hash::jitter(&seed, slot.timestamp(), max);
            slot.checked_add_signed(chrono::Duration::seconds(delay as i64))
                .unwrap_or(slot)
        }
        _ => slot,
    }
}

type GapKey = (String, Tz, DateTime<Utc>);
/// The slots from the first due one up to now, and the next slot after now.
type GapWork = (Vec<DateTime<Utc>>, Option<DateTime<Utc>>);

#[derive(Default)]
pub struct Calendar {
    jobs: HashMap<i64, Entry>,
    settings: HashMap<String, Settings>,
    /// (next slot, job id), earliest first; stale pairs are skipped when popped.
    timers: BinaryHeap<Reverse<(DateTime<Utc>, i64)>>,
    /// Within one pass over due jobs: (expression, zone, first slot) -> (slots up to now, next).
    gap_memo: HashMap<GapKey, GapWork>,
    /// Jobs that cannot be scheduled, by id, with the version (`updated_at`) already reported.
    refused: HashMap<i64, DateTime<Utc>>,
}

impl Calendar {
    /// Take `settings` and the active `jobs` that run on a runner with `labels`. Unchanged jobs
    /// keep their next slot. A job that cannot be scheduled (a bad schedule or zone, a number out
    /// of range: written behind cronmgr's back) is logged at each load, and returned with the
    /// reason once per version of the job, for its history.
    pub fn load(
        &mut self,
        settings: HashMap<String, Settings>,
        jobs: Vec<Job>,
        labels: &[String],
        now: DateTime<Utc>,
    ) -> Vec<(Job, String)> {
        self.settings = settings;
        let mut refused = Vec::new();
        let mut fresh = HashMap::with_capacity(jobs.len());
        // Alike jobs share the parsing and the next-slot computation (100,000 jobs with a few
        // thousand distinct expressions parse a few thousand times).
        let mut parsed: HashMap<String, Result<Arc<Schedule>, schedule::ScheduleError>> =
            HashMap::new();
        let mut nexts: HashMap<(String, Tz), Option<DateTime<Utc>>> = HashMap::new();
        let mut systems: HashMap<String, Settings> = HashMap::new();
        for job in jobs {
            if !systems.contains_key(&job.system) {
                systems.insert(job.system.clone(), self.settings_for(&job.system));
            }
            let settings = &systems[&job.system];
            if !settings.is_enabled || !fleet::runs_here(&job.runner_labels, labels) {
                continue;
            }
            let zone = if job.timezone.is_empty() {
                settings.timezone.as_str()
            } else {
                job.timezone.as_str()
            };
            // `H` resolved for this job; alike expressions share one parse.
            let seed = format!("{}/{}", job.system, job.name);
            let schedule = match schedule::hash::resolve(&job.schedule, &seed) {
                Ok(text) => parsed
                    .entry(text.to_string())
                    .or_insert_with(|| Schedule::parse(&text).map(Arc::new))
                    .clone(),
                Err(e) => Err(e),
            };
            let checked = match (schedule, schedule::parse_timezone(zone)) {
                (Ok(s), Ok(tz)) => bounds::check_job(&job).map(|()| (s, tz)),
                (Err(e), _) => Err(e.to_string()),
                (_, Err(e)) => Err(e.to_string()),
            };
            let (schedule, tz) = match checked {
                Ok(ok) => ok,
                Err(why) => {
                    tracing::error!(job = %job.name, system = %job.system, error = %why, "not scheduling job");
                    if self.refused.insert(job.id, job.updated_at) != Some(job.updated_at) {
                        refused.push((job, why));
                    }
                    continue;
                }
            };
            // Compared by what the slot depends on, not updated_at: an edit made in the database
            // behind cronmgr's back need not touch it.
            let next = match self.jobs.remove(&job.id) {
                Some(old) if old.schedule.as_str() == schedule.as_str() && old.tz == tz => old.next,
                _ => *nexts
                    .entry((schedule.as_str().to_string(), tz))
                    .or_insert_with(|| schedule.next_after(now, tz)),
            };
            if let Some(t) = next {
                self.timers.push(Reverse((fire_at(&job, t), job.id)));
            }
            let mut job = Box::new(job);
            let params = Entry::pack(std::mem::take(&mut job.params));
            fresh.insert(
                job.id,
                Entry {
                    job,
                    params,
                    schedule,
                    tz,
                    next,
                },
            );
        }
        self.jobs = fresh;
        refused
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn get(&self, id: i64) -> Option<&Entry> {
        self.jobs.get(&id)
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values().map(|e| &*e.job)
    }

    /// Stop scheduling a job (it was disabled).
    pub fn remove(&mut self, id: i64) {
        self.jobs.remove(&id);
    }

    pub fn settings(&self) -> impl Iterator<Item = &Settings> {
        self.settings.values()
    }

    pub fn systems(&self) -> &HashMap<String, Settings> {
        &self.settings
    }

    /// A system's settings (its defaults when it has no row).
    pub fn settings_for(&self, system: &str) -> Settings {
        self.settings
            .get(system)
            .cloned()
            .unwrap_or_else(|| Settings::defaults(system, schedule::host_timezone().name()))
    }

    /// The job started: its stored next slot and last run move.
    pub fn started(&mut self, id: i64, next: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        if let Some(e) = self.jobs.get_mut(&id) {
            e.job.next_run_at = next;
            e.job.last_run_at = Some(now);
        }
    }

    /// The job's run succeeded (no retry follows); the job as it now is.
    pub fn succeeded(&mut self, id: i64, at: DateTime<Utc>) -> Option<&Job> {
        let e = self.jobs.get_mut(&id)?;
        e.job.last_success_at = Some(at);
        e.job.failure_streak = 0;
        Some(&e.job)
    }

    /// At start: for each job, the slots missed since its stored next slot while no runner was
    /// up (`gap` is [`Gap::Down`], or [`Gap::Once`]), and `@reboot` jobs. On a shared database,
    /// `fleet` holds the labels of the other runners up: the jobs one of them could run were not
    /// missed, and the others' missed rows say which runner was missing (none at all, or none
    /// with the job's labels) rather than "the runner was not running".
    pub fn at_start(
        &mut self,
        now: DateTime<Utc>,
        gap: Gap,
        fleet: Option<&[Vec<String>]>,
    ) -> Vec<Fire> {
        self.gap_memo.clear();
        let mut fires = Vec::new();
        let mut ids: Vec<i64> = self.jobs.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let entry = &self.jobs[&id];
            if entry.schedule.is_reboot() {
                fires.push(Fire::Reboot {
                    job_id: id,
                    at: now,
                });
                continue;
            }
            let need = &entry.job.runner_labels;
            let others = fleet.unwrap_or_default();
            if others.iter().any(|have| fleet::runs_here(need, have)) {
                continue; // they fired what came due; a missed row here would be false
            }
            let reason = fleet.map(|_| match need.is_empty() {
                true => "no runner was up".to_string(),
                false => format!("no runner with labels {} was up", need.join(",")),
            });
            if let Some(stored) = entry.job.next_run_at.filter(|t| *t <= now) {
                self.gap(id, stored, now, gap, reason.as_deref(), &mut fires);
            }
        }
        fires
    }

    /// Every slot due by `now`, the job's next slot moved past `now`.
    pub fn due(&mut self, now: DateTime<Utc>, gap: Gap) -> Vec<Fire> {
        self.gap_memo.clear();
        let mut fires = Vec::new();
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.jobs.get(&id).and_then(|e| e.live(at)) else {
                continue; // stale timer
            };
            self.gap(id, slot, now, gap, None, &mut fires);
        }
        fires
    }

    /// Slots of job `id` from `first` to `now`: run the right one, record the rest as missed
    /// (`reason`: why, if not the gap's own), and move the job's next slot past `now`.
    fn gap(
        &mut self,
        id: i64,
        first: DateTime<Utc>,
        now: DateTime<Utc>,
        gap: Gap,
        reason: Option<&str>,
        fires: &mut Vec<Fire>,
    ) {
        let entry = &self.jobs[&id];
        // Jobs sharing an expression and zone share the work (a burst of 10,000 alike jobs
        // computes one schedule, so the first of them starts without waiting for the rest).
        let key = (entry.schedule.as_str().to_string(), entry.tz, first);
        let (slots, next) = match self.gap_memo.get(&key) {
            Some(hit) => hit.clone(),
            None => {
                let mut slots = vec![first];
                slots.extend(
                    entry
                        .schedule
                        .fires_between(first, now, entry.tz, MISSED_CAP),
                );
                let next = entry.schedule.next_after(now, entry.tz);
                self.gap_memo.insert(key, (slots.clone(), next));
                (slots, next)
            }
        };
        let policy = entry.policy();
        let decision = decide(gap, &slots, now, &policy);
        if decision.missed > 0 {
            let late = &slots[..decision.missed];
            fires.push(Fire::Missed {
                job_id: id,
                first: late[0],
                last: late[late.len() - 1],
                slots: late.len(),
                why: missed_why(gap, reason, decision.run_latest, &policy),
            });
        }
        if decision.run_latest {
            let at = *slots.last().expect("slots has at least `first`");
            fires.push(Fire::Run { job_id: id, at });
        }
        let entry = self.jobs.get_mut(&id).expect("checked above");
        entry.next = next;
        if let Some(t) = next {
            self.timers.push(Reverse((fire_at(&entry.job, t), id)));
        }
    }

    /// The clock went back: wildcard jobs follow it; fixed-time jobs never rerun a slot, unless
    /// the step was `large` (a clock correction: every job follows).
    pub fn clock_back(&mut self, now: DateTime<Utc>, large: bool) {
        for (id, e) in self.jobs.iter_mut() {
            if large || !e.schedule.is_fixed_time() {
                e.next = e.schedule.next_after(now, e.tz);
                if let Some(t) = e.next {
                    self.timers.push(Reverse((fire_at(&e.job, t), *id)));
                }
            }
        }
    }

    /// The earliest next slot. Drops the timers of slots that moved.
    pub fn next_wake(&mut self) -> Option<DateTime<Utc>> {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if self.jobs.get(&id).and_then(|e| e.live(at)).is_some() {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// The earliest next slot and its job's name (the heap is not modified).
    pub fn earliest(&self) -> Option<(&str, DateTime<Utc>)> {
        self.timers
            .iter()
            .filter(|Reverse((at, id))| self.jobs.get(id).and_then(|e| e.live(*at)).is_some())
            .min()
            .map(|Reverse((at, id))| (self.jobs[id].job.name.as_str(), *at))
    }

    /// The next slots not yet in the database, now taken as written.
    pub fn unwritten_next_runs(&mut self) -> Vec<(i64, Option<DateTime<Utc>>)> {
        let mut updates = Vec::new();
        for (id, e) in self.jobs.iter_mut() {
            if e.job.next_run_at != e.next {
                e.job.next_run_at = e.next;
                updates.push((*id, e.next));
            }
        }
        updates.sort_unstable_by_key(|u| u.0);
        updates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap()
    }

    const NONE: Policy = Policy {
        catch_up: CatchUp::None,
        starting_deadline: None,
        fixed_time: false,
    };

    /// Every gap against every policy: which slots are missed and whether the latest runs.
    #[test]
    fn decide_runs_the_latest_slot_only_when_the_gap_and_policy_allow() {
        let latest = Policy {
            catch_up: CatchUp::Latest,
            ..NONE
        };
        let late_deadline = Policy {
            catch_up: CatchUp::Latest,
            starting_deadline: Some(600),
            ..NONE
        };
        let fixed = Policy {
            fixed_time: true,
            ..NONE
        };
        let small = Gap::SmallJump(chrono::Duration::minutes(90));
        let large = Gap::LargeJump(chrono::Duration::hours(5));
        let three = [t(1, 0), t(2, 0), t(3, 0)];
        // (gap, slots, now, policy) -> (missed, run_latest)
        type Case<'a> = (Gap, &'a [DateTime<Utc>], DateTime<Utc>, Policy, usize, bool);
        let cases: &[Case] = &[
            // Woke late: the latest runs, the earlier ones are missed.
            (Gap::Late, &three, t(3, 1), NONE, 2, true),
            (Gap::Late, &three[2..], t(3, 1), NONE, 0, true),
            (Gap::Once, &three, t(3, 30), NONE, 2, true),
            // Down: nothing runs late without catch-up; a slot exactly now is on time.
            (Gap::Down, &three, t(3, 1), NONE, 3, false),
            (Gap::Down, &three, t(3, 0), NONE, 2, true),
            (Gap::Down, &three, t(3, 30), latest, 3, true),
            (Gap::Down, &three, t(3, 5), late_deadline, 3, true),
            (Gap::Down, &three, t(3, 11), late_deadline, 3, false),
            // A small jump runs fixed-time jobs' latest slot as if on time (as cronie does).
            (small, &three, t(3, 30), fixed, 2, true),
            (small, &three, t(3, 30), NONE, 3, false),
            (small, &three, t(3, 30), latest, 3, true),
            // A large jump is a sleep: as down.
            (large, &three, t(3, 30), fixed, 3, false),
            (large, &three, t(3, 30), latest, 3, true),
            (Gap::Down, &[], t(3, 0), NONE, 0, false),
        ];
        for (i, (gap, slots, now, policy, missed, run)) in cases.iter().enumerate() {
            assert_eq!(
                decide(*gap, slots, *now, policy),
                Decision {
                    missed: *missed,
                    run_latest: *run
                },
                "case {i}: {gap:?} {policy:?}"
            );
        }
    }

    #[test]
    fn a_missed_row_says_why_and_what_ran() {
        let latest = Policy {
            catch_up: CatchUp::Latest,
            ..NONE
        };
        assert_eq!(
            missed_why(Gap::Down, None, false, &NONE),
            "the runner was not running"
        );
        assert_eq!(
            missed_why(Gap::Late, None, true, &latest),
            "the runner was busy or blocked; ran the latest once"
        );
        assert_eq!(
            missed_why(Gap::Down, None, false, &latest),
            "the runner was not running; too late to catch up (starting_deadline)"
        );
        assert_eq!(
            missed_why(
                Gap::SmallJump(chrono::Duration::hours(2)),
                None,
                false,
                &NONE
            ),
            "the clock jumped forward by 2h (clock change or the machine slept)"
        );
        assert_eq!(
            missed_why(
                Gap::Down,
                Some("no runner with labels db-host was up"),
                false,
                &NONE
            ),
            "no runner with labels db-host was up"
        );
    }
}
