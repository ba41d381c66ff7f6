//! The dispatcher: slots waiting for a worker (most urgent first), retries waiting for their
//! delay, executions running; which waiting slots may start now within the caps, and when a
//! failed attempt gets another. It owns no store and starts no process: the engine claims what
//! [`Dispatcher::pick`] picks, and records the skips it reports.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::calendar::Calendar;
use super::execute;
use super::process::Cancel;
use crate::store::{FleetRules, Job, NewExecution, Status, Trigger};

#[derive(Debug, Clone)]
pub struct Slot {
    pub job_id: i64,
    pub priority: u8,
    pub scheduled_for: DateTime<Utc>,
    pub attempt: u32,
    pub trigger: Trigger,
    /// When a retry may start.
    pub due: DateTime<Utc>,
    /// When the first attempt started (max_runtime counts from here).
    pub first_started: Option<DateTime<Utc>>,
    /// A chain's start (and its retries): the execution whose end triggered it.
    pub cause: Option<i64>,
    /// When a fleet's database first failed to take this slot's claim (see `claim_later`).
    pub refused_since: Option<DateTime<Utc>>,
    /// Order among slots of equal priority and instant: the job id, or on a shared database a
    /// per-runner shuffle of it, so runners of a fleet work a burst from different ends instead
    /// of all racing for the same slots.
    tie: u64,
}

impl Slot {
    /// The first attempt of job `job_id`'s slot `at` (priority 5 for a job the calendar no
    /// longer has). `runner`: on a shared database, this runner's id (see `tie`).
    pub fn new(
        cal: &Calendar,
        job_id: i64,
        at: DateTime<Utc>,
        attempt: u32,
        trigger: Trigger,
        runner: Option<i64>,
    ) -> Slot {
        Slot {
            job_id,
            priority: cal.get(job_id).map_or(5, |e| e.job.priority),
            scheduled_for: at,
            attempt,
            trigger,
            due: at,
            first_started: None,
            cause: None,
            refused_since: None,
            tie: match runner {
                Some(runner) => shuffle(job_id, runner),
                None => job_id as u64,
            },
        }
    }

    fn order(&self) -> (u8, DateTime<Utc>, u64, u32) {
        (self.priority, self.scheduled_for, self.tie, self.attempt)
    }
}

/// splitmix64: a cheap, well-spread mix of the job id with the runner's id.
fn shuffle(job_id: i64, runner: i64) -> u64 {
    let mut z = (job_id as u64) ^ (runner as u64).rotate_left(32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order().cmp(&other.order())
    }
}

/// What [`Dispatcher::pick`] picked: at most `want` of `picked` start (the first `want`, or
/// spares in place of those another runner has), and the skips to record.
#[derive(Default)]
pub struct Picks {
    pub picked: Vec<Picked>,
    pub want: usize,
    pub skipped: Vec<Slot>,
}

/// A slot picked to start in this pass, with what starting it needs.
pub struct Picked {
    pub slot: Slot,
    pub job: Job,
    pub next: Option<DateTime<Utc>>,
    pub timeout: Duration,
    pub new: NewExecution,
}

pub struct Running {
    pub slot: Slot,
    pub system: String,
    pub cancel: Cancel,
    pub timeout: Duration,
    pub live_log: PathBuf,
    /// The row's `started_at`.
    pub started_at: DateTime<Utc>,
    /// The executor, when it is a built-in (not `shell`).
    pub builtin: Option<String>,
}

/// Who claims: the row's runner and, on a shared database, the rules the database enforces.
#[derive(Clone, Copy)]
pub struct Claimant {
    pub runner_id: Option<i64>,
    pub fleet: bool,
    /// `--max-concurrent`: one cap for the whole runner instead of each system's.
    pub cap: Option<usize>,
}

#[derive(Default)]
pub struct Dispatcher {
    /// Slots due and waiting for a free worker, most urgent first.
    queue: BinaryHeap<Reverse<Slot>>,
    /// How many slots each job has in `queue`.
    queued: HashMap<i64, usize>,
    /// Retries waiting for their delay.
    retries: Vec<Slot>,
    running: HashMap<i64, Running>,
}

/// Why a waiting slot did not start and never will.
pub const WAITING: &str = "the previous slot is still waiting for a free worker";
pub const OVERLAP: &str = "the previous run is still going (allow_concurrent = false)";

impl Dispatcher {
    pub fn push(&mut self, slot: Slot) {
        *self.queued.entry(slot.job_id).or_default() += 1;
        self.queue.push(Reverse(slot));
    }

    /// Queue a due slot, unless the job may not overlap and already has one waiting: then the
    /// slot comes back, to be recorded as skipped ([`WAITING`]).
    pub fn enqueue(&mut self, slot: Slot, allow_concurrent: bool) -> Result<(), Slot> {
        if !allow_concurrent && self.queued.contains_key(&slot.job_id) {
            return Err(slot);
        }
        self.push(slot);
        Ok(())
    }

    fn pop(&mut self) -> Option<Slot> {
        let Reverse(slot) = self.queue.pop()?;
        if let Some(n) = self.queued.get_mut(&slot.job_id) {
            *n -= 1;
            if *n == 0 {
                self.queued.remove(&slot.job_id);
            }
        }
        Some(slot)
    }

    /// Move the retries whose delay is over to the queue.
    pub fn collect_retries(&mut self, now: DateTime<Utc>) {
        let (due, waiting): (Vec<Slot>, Vec<Slot>) =
            self.retries.drain(..).partition(|s| s.due <= now);
        self.retries = waiting;
        for slot in due {
            self.push(slot);
        }
    }

    /// When the earliest retry may start.
    pub fn next_retry(&self) -> Option<DateTime<Utc>> {
        self.retries.iter().map(|r| r.due).min()
    }

    pub fn has_waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Nothing queued, waiting to retry or running.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.retries.is_empty() && self.running.is_empty()
    }

    pub fn running_count(&self) -> usize {
        self.running.len()
    }

    pub fn queued_count(&self) -> usize {
        self.queue.len()
    }

    fn running_in(&self, system: &str) -> usize {
        self.running.values().filter(|r| r.system == system).count()
    }

    /// The slots that start now, most urgent first, within the caps (`--max-concurrent`, else
    /// each system's `max_concurrent_jobs`); slots of a job that may not overlap one still
    /// running are dropped and returned with the reason, to be recorded as skipped. Slots over a
    /// cap stay queued.
    ///
    /// `spares`: on a fleet, how many more slots to offer per free place (see
    /// [`FleetMember::spares_per_place`](super::fleet::FleetMember::spares_per_place)). They
    /// follow the picks, most urgent first, over the caps: each claims only a place whose pick
    /// another runner had taken (the database checks the fleet's caps for every one it claims).
    pub fn pick(
        &mut self,
        now: DateTime<Utc>,
        cal: &Calendar,
        who: Claimant,
        spares: f64,
    ) -> Picks {
        let mut blocked = Vec::new();
        let mut picks = Picks::default();
        let mut planned: HashMap<String, usize> = HashMap::new();
        while let Some(slot) = self.pop() {
            if let Some(cap) = who.cap {
                if self.running.len() + picks.picked.len() >= cap {
                    self.push(slot);
                    break;
                }
            }
            let Some(entry) = cal.get(slot.job_id) else {
                continue; // removed or disabled since it was queued
            };
            let system = &entry.job.system;
            if who.cap.is_none() {
                let cap = cal.settings_for(system).max_concurrent_jobs as usize;
                let planned_here = planned.get(system).copied().unwrap_or(0);
                if self.running_in(system) + planned_here >= cap {
                    blocked.push(slot);
                    continue;
                }
            }
            if self.prepare(slot, cal, who, now, &mut picks) {
                *planned.entry(system.clone()).or_default() += 1;
            }
        }
        picks.want = picks.picked.len();
        let mut left = (picks.want as f64 * spares).ceil() as usize;
        let mut blocked = blocked.into_iter();
        while left > 0 {
            let Some(slot) = blocked.next().or_else(|| self.pop()) else {
                break;
            };
            left -= usize::from(self.prepare(slot, cal, who, now, &mut picks));
        }
        for slot in blocked {
            self.push(slot);
        }
        picks
    }

    /// Add `slot` to `picks` as a start (true), or as a skip when its job may not overlap a run
    /// still going or picked; drop it when its job is gone or its max_runtime is used up.
    fn prepare(
        &self,
        slot: Slot,
        cal: &Calendar,
        who: Claimant,
        now: DateTime<Utc>,
        picks: &mut Picks,
    ) -> bool {
        let Some(entry) = cal.get(slot.job_id) else {
            return false;
        };
        if slot.trigger != Trigger::Retry && !entry.job.allow_concurrent {
            let busy = self.running.values().any(|r| r.slot.job_id == slot.job_id)
                || self.retries.iter().any(|r| r.job_id == slot.job_id)
                || picks.picked.iter().any(|p| p.slot.job_id == slot.job_id);
            if busy {
                picks.skipped.push(slot);
                return false;
            }
        }
        let job = entry.full_job();
        let next = entry.next;
        let settings = cal.settings_for(&job.system);
        // Set when it starts (`Engine::launch`): a slot picked but not claimed waits as it was.
        let first_started = slot.first_started.unwrap_or(now);
        let Some(timeout) = execute::attempt_timeout(&job, &settings, first_started, now) else {
            tracing::warn!(job = %job.name, attempt = slot.attempt, "max_runtime used up; no further attempt");
            return false;
        };
        let new = NewExecution {
            job_id: job.id,
            status: Status::Running,
            scheduled_for: slot.scheduled_for,
            started_at: Some(now),
            triggered_by: slot.trigger,
            attempt: slot.attempt,
            error_message: None,
            runner_pid: Some(std::process::id()),
            runner_id: who.runner_id,
            fleet: who.fleet.then(|| FleetRules {
                exclusive: slot.trigger != Trigger::Retry && !job.allow_concurrent,
                cap: Some((job.system.clone(), settings.max_concurrent_jobs)),
            }),
            caused_by: slot.cause,
        };
        picks.picked.push(Picked {
            slot,
            job,
            next,
            timeout,
            new,
        });
        true
    }

    pub fn started(&mut self, execution: i64, run: Running) {
        self.running.insert(execution, run);
    }

    pub fn ended(&mut self, execution: i64) -> Option<Running> {
        self.running.remove(&execution)
    }

    /// Queue the next attempt of `slot` (an attempt of `job` that failed at `now`), if the job
    /// has one left; true when it does.
    pub fn retry(&mut self, slot: Slot, job: &Job, now: DateTime<Utc>) -> bool {
        if slot.attempt > job.retries {
            return false;
        }
        let next_attempt = slot.attempt + 1;
        let delay = execute::retry_delay(job, next_attempt);
        let Some(due) = execute::retry_at(job, next_attempt, now) else {
            tracing::warn!(job = %job.name, "no retry: its start would be past the calendar's end");
            return false;
        };
        if let (Some(max), Some(first)) = (job.max_runtime, slot.first_started) {
            if (due - first).num_seconds() >= i64::try_from(max).unwrap_or(i64::MAX) {
                tracing::warn!(job = %job.name, "no retry: it would start after max_runtime");
                return false;
            }
        }
        tracing::info!(job = %job.name, attempt = next_attempt, delay_s = delay.as_secs(), "retry scheduled");
        self.retries.push(Slot {
            attempt: next_attempt,
            trigger: Trigger::Retry,
            due,
            refused_since: None,
            ..slot
        });
        true
    }

    /// Stopping: nothing waiting starts any more.
    pub fn drop_waiting(&mut self) {
        self.queue.clear();
        self.queued.clear();
        self.retries.clear();
    }

    /// The job was disabled: its waiting slots go.
    pub fn forget(&mut self, job_id: i64) {
        self.queue.retain(|s| s.0.job_id != job_id);
        self.queued.remove(&job_id);
    }

    /// The executions running now.
    pub fn running_ids(&self) -> Vec<i64> {
        self.running.keys().copied().collect()
    }

    /// Ask one running execution to stop (its process group: TERM, the grace, KILL).
    pub fn cancel(&self, execution: i64) {
        if let Some(run) = self.running.get(&execution) {
            run.cancel.cancel();
        }
    }

    /// Ask every running execution to stop.
    pub fn cancel_all(&self) {
        for run in self.running.values() {
            run.cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
    }

    /// `n` jobs of one system that allows `cap` at once, each with a slot due now, queued in
    /// order j1, j2, … (priority `id`: 1 is the most urgent).
    fn queued(n: i64, cap: u32) -> (Calendar, Dispatcher) {
        let jobs = (1..=n)
            .map(|id| Job {
                id,
                priority: id.clamp(1, 10) as u8,
                ..Job::new("default", &format!("j{id}"), "* * * * *", "shell")
            })
            .collect();
        let mut settings = crate::store::Settings::defaults("default", "UTC");
        settings.max_concurrent_jobs = cap;
        let mut cal = Calendar::default();
        cal.load(
            HashMap::from([("default".into(), settings)]),
            jobs,
            &[],
            now(),
        );
        let mut d = Dispatcher::default();
        for id in 1..=n {
            d.push(Slot::new(&cal, id, now(), 1, Trigger::Schedule, None));
        }
        (cal, d)
    }

    fn ids(picks: &Picks) -> Vec<i64> {
        picks.picked.iter().map(|p| p.slot.job_id).collect()
    }

    /// A fleet runner with free places offers spares after its picks, most urgent first, over
    /// its caps (the database claims one only in place of a pick another runner has); `want`
    /// stays the free places. Without spares it picks what the caps allow, as ever.
    #[test]
    fn spares_follow_the_picks_and_want_is_the_free_places() {
        let fleet = |cap| Claimant {
            runner_id: Some(7),
            fleet: true,
            cap,
        };
        // --max-concurrent 3: 3 places, 1.5 spares each (4.5, rounded up).
        let (cal, mut d) = queued(10, 10);
        let picks = d.pick(now(), &cal, fleet(Some(3)), 1.5);
        assert_eq!((picks.want, ids(&picks)), (3, vec![1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(d.queued_count(), 2);
        // Each system's cap (2 places): the slots it blocked are the first spares.
        let (cal, mut d) = queued(6, 2);
        let picks = d.pick(now(), &cal, fleet(None), 1.0);
        assert_eq!((picks.want, ids(&picks)), (2, vec![1, 2, 3, 4]));
        assert_eq!(
            d.queued_count(),
            2,
            "the blocked slots past the spares wait"
        );
        // No spares: the caps alone.
        let (cal, mut d) = queued(6, 2);
        let picks = d.pick(now(), &cal, fleet(None), 0.0);
        assert_eq!((picks.want, ids(&picks)), (2, vec![1, 2]));
        assert_eq!(d.queued_count(), 4);
        // No free place: no spares either.
        let (cal, mut d) = queued(4, 9);
        let picks = d.pick(now(), &cal, fleet(Some(0)), 4.0);
        assert_eq!(
            (picks.want, picks.picked.len(), d.queued_count()),
            (0, 0, 4)
        );
    }
}
