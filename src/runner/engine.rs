//! The runner's loop: keep every active job's next slot, sleep until the earliest, claim and start
//! due slots by priority within the concurrency caps, record how they end, retry, and stop cleanly.
//!
//! One thread owns the database and all scheduling state; each execution runs on its own worker
//! thread, which only waits for its child process and reports back through a channel.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::clock::Clock;
use super::execute;
use super::fleet;
use super::notify::Notifier;
use super::process::{self, Cancel, Outcome};
use super::recorder::{Record, Recorder};
use crate::alert::monitor::RunEnd;
use crate::alert::Monitor;
use crate::config::Config;
use crate::host::pid_alive;
use crate::model::bounds;
use crate::schedule::{self, Schedule};
use crate::store::{
    CatchUp, CommitProbe, Finish, FleetRules, Job, JobFilter, NewExecution, Settings, Status,
    Store, StoreError, Trigger,
};

/// A slot that passed while no runner was up is missed, however little: as with cron, a runner
/// starting at 03:00:00.2 does not run the 03:00 job (unless its catch-up policy says so).
const ON_TIME: chrono::Duration = chrono::Duration::zero();
/// Wall-clock drift against the monotonic clock beyond this is a clock change (or sleep).
const JUMP: chrono::Duration = chrono::Duration::seconds(5);
/// Forward jumps under this run the fixed-time jobs of the gap once (as cronie does).
const SMALL_JUMP: chrono::Duration = chrono::Duration::hours(3);
/// The runner looks for changes made behind its back (and trims history) this often at most.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// A start due this soon after the minute's housekeeping goes first; the housekeeping runs right
/// after it. Its work never delays a job.
const HOUSEKEEPING_YIELD: Duration = Duration::from_millis(250);
/// Most slots counted for one missed-run record.
const MISSED_CAP: usize = 100_000;
/// A refusal to write lasting this long raises an alert once the database takes writes again.
const STORAGE_ALERT: Duration = Duration::from_secs(2);
/// How long the runner's own writes wait for a lock before queueing instead.
const WRITE_WAIT: Duration = Duration::from_millis(200);
/// How often the runner trims history (and once at start).
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per retention batch.
const PRUNE_BATCH: usize = 500;
/// With a backlog, how long the loop waits after an execution ends for others to end too, and
/// how many ends it gathers at most: their records and the claims of the executions that take
/// their places then share one transaction (a group commit) instead of one each.
const GATHER_WINDOW: Duration = Duration::from_millis(2);
const GATHER_MAX: usize = 8;

pub struct Options {
    /// Fire what is due now (and catch-up per policy), wait for it, and return.
    pub once: bool,
    /// Overrides every system's max_concurrent_jobs with one cap for the whole runner.
    pub max_concurrent: Option<usize>,
    /// Where the database lives (for live logs).
    pub db_path: PathBuf,
    /// The config file to reload on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// A node_exporter textfile rewritten after every execution.
    pub metrics_file: Option<PathBuf>,
    /// This runner's labels: it runs only jobs whose runner_labels it all carries.
    pub labels: Vec<String>,
    /// On a shared database: how long without our heartbeat before others declare us lost.
    pub lease: Duration,
}

/// What a run did, for `--once` exit codes and logs. Every started execution that ended is
/// counted once: succeeded, failed (failed or timed out), interrupted (stopped by the runner's
/// own shutdown), or cancelled (`cronmgr kill`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub started: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub cancelled: usize,
    pub skipped: usize,
    pub missed: usize,
}

pub enum Event {
    Spawned {
        execution: i64,
        pid: u32,
    },
    Finished {
        execution: i64,
        result: Result<Outcome, String>,
    },
    Signal(i32),
}

struct Entry {
    /// Boxed: the map of entries stays small (a `Job` is several hundred bytes, and the map
    /// keeps up to twice as many slots as it has jobs).
    job: Box<Job>,
    /// The job's `params`, kept as JSON text until it starts (`job.params` is left empty): a
    /// parsed map costs over half a kilobyte a job for what only the executor reads.
    params: Box<str>,
    /// Shared by every job with the same expression (a host has few distinct ones).
    schedule: Arc<Schedule>,
    tz: Tz,
    next: Option<DateTime<Utc>>,
}

impl Entry {
    fn pack(params: serde_json::Map<String, serde_json::Value>) -> Box<str> {
        // Invariant: a map with string keys always serializes.
        serde_json::to_string(&params)
            .expect("a JSON map serializes")
            .into_boxed_str()
    }

    /// The job as loaded, `params` included.
    fn full_job(&self) -> Job {
        let mut job = Job::clone(&self.job);
        // Invariant: `params` is what `pack` wrote.
        job.params = serde_json::from_str(&self.params).expect("packed params parse");
        job
    }
}

#[derive(Debug, Clone)]
struct Slot {
    job_id: i64,
    priority: u8,
    scheduled_for: DateTime<Utc>,
    attempt: u32,
    trigger: Trigger,
    /// When a retry may start.
    due: DateTime<Utc>,
    /// When the first attempt started (max_runtime counts from here).
    first_started: Option<DateTime<Utc>>,
    /// Order among slots of equal priority and instant: the job id, or on a shared database a
    /// per-runner shuffle of it, so runners of a fleet work a burst from different ends instead
    /// of all racing for the same slots.
    tie: u64,
}

impl Slot {
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

type GapKey = (String, Tz, DateTime<Utc>);
/// The slots from the first due one up to now, and the next slot after now.
type GapWork = (Vec<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A slot picked to start in this pass, with what starting it needs.
struct Picked {
    slot: Slot,
    job: Job,
    next: Option<DateTime<Utc>>,
    timeout: Duration,
    new: NewExecution,
}

struct Running {
    slot: Slot,
    system: String,
    cancel: Cancel,
    timeout: Duration,
    live_log: PathBuf,
    /// The row's `started_at`.
    started_at: DateTime<Utc>,
    /// The executor, when it is a built-in (not `shell`).
    builtin: Option<String>,
}

/// Why slots were not run on time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gap {
    /// The loop woke up late while running normally.
    Late,
    /// The runner was not running.
    Down,
    /// `run --once`: each job's pending slot is due now; the latest of several runs.
    Once,
    /// The clock jumped forward by less than SMALL_JUMP.
    SmallJump(chrono::Duration),
    /// The clock jumped forward a lot, or the machine slept.
    LargeJump(chrono::Duration),
}

pub struct Engine<'c> {
    store: Store,
    config: Config,
    clock: &'c dyn Clock,
    opts: Options,
    notifier: Notifier,
    jobs: HashMap<i64, Entry>,
    settings: HashMap<String, Settings>,
    /// (next slot, job id), earliest first; stale pairs are skipped when popped.
    timers: BinaryHeap<Reverse<(DateTime<Utc>, i64)>>,
    /// Slots due and waiting for a free worker, most urgent first.
    queue: BinaryHeap<Reverse<Slot>>,
    /// How many slots each job has in `queue`.
    queued: HashMap<i64, usize>,
    /// Retries waiting for their delay.
    retries: Vec<Slot>,
    running: HashMap<i64, Running>,
    /// Every write, in order, waiting while the database refuses them (locked, full).
    recorder: Recorder,
    /// Within one pass over due jobs: (expression, zone, first slot) -> (slots up to now, next).
    gap_memo: HashMap<GapKey, GapWork>,
    /// Whether the connection's lock wait is cut to zero because writes are waiting.
    lock_wait_short: bool,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    stop_deadline: Option<Instant>,
    killed_on_stop: bool,
    last_wall: DateTime<Utc>,
    last_mono: Instant,
    last_housekeeping: Instant,
    data_version: i64,
    prune_pending: bool,
    last_prune: Instant,
    /// During a retention cycle: per system, the jobs still over their keep_executions.
    prune_quota: Option<HashMap<String, Vec<i64>>>,
    /// When the runner state and metrics file were last written, and whether they lag behind.
    state_written: Instant,
    /// (running, queued, capacity) as last written to `runner_state`.
    state_last: Option<(u32, u32, u32)>,
    /// Whether anyone committed since the last change check (see [`CommitProbe`]).
    commits: CommitProbe,
    /// The WAL's checkpoints, on a thread of their own (SQLite), so no claim waits for one.
    checkpointer: Option<crate::store::Checkpointer>,
    state_stale: bool,
    summary: Summary,
    /// Alert rules, missed-run deadlines, host checks, and the delivery thread.
    monitor: Monitor,
    started_at: DateTime<Utc>,
    /// This runner's row in `runners`.
    runner_id: Option<i64>,
    /// Several runners share the database (PostgreSQL): poll for changes each second,
    /// heartbeat, reap lost runners, let the database enforce overlap and caps fleet-wide.
    fleet: bool,
    last_fleet_tick: Instant,
    last_heartbeat: Instant,
    /// A claim found the fleet at a system's cap: try the queue again on the next tick.
    fleet_full: bool,
    /// Jobs the runner cannot schedule, by id, with the version (`updated_at`) whose reason is
    /// already in their history: one row per job version, not one per reload.
    unschedulable: HashMap<i64, DateTime<Utc>>,
    /// Other runners took slots this runner tried to claim: pick again at once, not at the next
    /// event (this runner may have nothing running to wake it).
    claim_again: bool,
}

/// How often a runner on a shared database looks for changes made elsewhere.
const FLEET_TICK: Duration = Duration::from_secs(1);

/// How long the delivery thread may keep sending due alerts once the runner stops.
const DELIVERY_GRACE: Duration = Duration::from_secs(5);

impl<'c> Engine<'c> {
    pub fn new(store: Store, config: Config, clock: &'c dyn Clock, opts: Options) -> Engine<'c> {
        let commits = store.commit_probe();
        let (tx, rx) = mpsc::channel();
        let now = clock.now();
        Engine {
            store,
            config,
            clock,
            notifier: Notifier::from_env(),
            jobs: HashMap::new(),
            settings: HashMap::new(),
            timers: BinaryHeap::new(),
            queue: BinaryHeap::new(),
            queued: HashMap::new(),
            retries: Vec::new(),
            running: HashMap::new(),
            recorder: Recorder::new(&opts.db_path),
            gap_memo: HashMap::new(),
            lock_wait_short: false,
            tx,
            rx,
            stop_deadline: None,
            killed_on_stop: false,
            last_wall: now,
            last_mono: Instant::now(),
            // The first housekeeping comes half a minute after start-up, the others a minute
            // apart: the first look for changes made behind the runner's back and the first
            // overload sample (covering those 30 s, see docs/alerts.md) come that soon.
            last_housekeeping: Instant::now()
                .checked_sub(HOUSEKEEPING / 2)
                .unwrap_or_else(Instant::now),
            data_version: 0,
            prune_pending: true,
            last_prune: Instant::now(),
            prune_quota: None,
            state_written: Instant::now(),
            state_last: None,
            commits,
            checkpointer: None,
            state_stale: false,
            summary: Summary::default(),
            monitor: Monitor::new(&opts.db_path, None),
            started_at: now,
            runner_id: None,
            fleet: false,
            last_fleet_tick: Instant::now(),
            last_heartbeat: Instant::now(),
            fleet_full: false,
            unschedulable: HashMap::new(),
            claim_again: false,
            opts,
        }
    }

    /// A sender for events from outside the loop (signals).
    pub fn sender(&self) -> Sender<Event> {
        self.tx.clone()
    }

    /// Run until stopped (or, with `once`, until what was due has finished).
    pub fn run(mut self) -> anyhow::Result<Summary> {
        let now = self.clock.now();
        self.started_at = now;
        let delivery = self
            .store
            .reopen()
            .map_err(std::io::Error::other)
            .and_then(|store| {
                crate::alert::delivery::Deliverer::spawn(store, self.config.smtp.clone())
            });
        match delivery {
            Ok(d) => self.monitor = Monitor::new(&self.opts.db_path, Some(d)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the alert delivery thread; alerts stay queued")
            }
        }
        self.fleet = self.store.backend() == crate::store::Backend::Postgres;
        self.register(now)?;
        self.recover(now)?;
        self.recorder.recover(&self.store, now)?;
        self.store.set_lock_wait(WRITE_WAIT)?;
        self.checkpointer = match self.store.checkpoint_in_background() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint thread; commits checkpoint the WAL themselves");
                None
            }
        };
        self.reload(now)?;
        self.start_up(now)?;
        self.write_runner_state();
        self.monitor
            .host_checks(&self.store, self.settings.values(), now);
        self.check_silence(now);
        self.write_metrics();
        self.commits.moved(); // what the next check compares with
        self.data_version = self.data_version()?;
        self.notifier
            .send(&format!("READY=1\nSTATUS={}", self.status_line()));
        tracing::info!(
            jobs = self.jobs.len(),
            pid = std::process::id(),
            db = %crate::store::display_db(&self.opts.db_path),
            "runner ready"
        );
        // What start-up read and parsed is not needed again.
        self.release_memory();
        loop {
            let now = self.clock.now();
            self.check_clock(now)?;
            if self.stop_deadline.is_none() && !self.opts.once {
                self.collect_due(now, Gap::Late)?;
            }
            self.check_silence(now);
            self.collect_retries(now);
            self.start_ready(now)?;
            self.flush_records();
            // After the starts: a checkpoint due now never delays one.
            if let Some(c) = &mut self.checkpointer {
                if let Some(frames) = self.commits.wal_frames() {
                    c.after_turn(&self.store, frames);
                }
            }
            if self.stop_deadline.is_some() && self.running.is_empty() {
                break;
            }
            if self.opts.once
                && self.queue.is_empty()
                && self.retries.is_empty()
                && self.running.is_empty()
            {
                break;
            }
            let wait = self.wait_time(now);
            match self.rx.recv_timeout(wait) {
                Ok(event) => {
                    let ended = matches!(event, Event::Finished { .. });
                    self.handle(event)?;
                    if ended && !self.queue.is_empty() {
                        self.gather_ends()?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the engine holds a sender"),
            }
            while let Ok(event) = self.rx.try_recv() {
                self.handle(event)?;
            }
            // The ends just handled are written at the top of the loop, in one transaction with
            // the claims of the executions that take their places.
            self.housekeeping()?;
            self.enforce_stop_deadline();
        }
        self.flush_records();
        let give_up = Instant::now() + Duration::from_secs(5);
        while self.recorder.backlog() > 0 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(250));
            self.flush_records();
        }
        if self.recorder.backlog() > 0 {
            tracing::error!(
                count = self.recorder.backlog(),
                "the database still refuses writes: these records are lost; claims made in the journal are recorded as interrupted by the next runner"
            );
        }
        if let Some(id) = self.runner_id {
            if let Err(e) = self.store.runner_stopped(id, self.clock.now()) {
                tracing::warn!(error = %e, "could not record that this runner stopped");
            }
        }
        self.write_metrics_with(false);
        self.monitor.stop(DELIVERY_GRACE);
        self.notifier.send("STOPPING=1");
        let Summary {
            started,
            succeeded,
            failed,
            interrupted,
            cancelled,
            skipped,
            missed,
        } = self.summary;
        tracing::info!(
            started,
            succeeded,
            failed,
            interrupted,
            cancelled,
            skipped,
            missed,
            "runner stopped"
        );
        Ok(self.summary)
    }

    // ---- loading -------------------------------------------------------------------------

    /// Executions left running by a runner (or run-now) that died: stop their process groups
    /// and mark them interrupted.
    fn recover(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let host = crate::host::hostname();
        for e in self.store.running(None)? {
            if self.fleet {
                // Only executions of this host's dead runners are ours to recover; other
                // hosts' are reaped after their lease (see `fleet_tick`).
                let owner = self.store.runner_of(e.id)?;
                let dead_here = owner.as_ref().is_some_and(|r| {
                    r.host == host && Some(r.id) != self.runner_id && !pid_alive(r.pid)
                });
                if !dead_here {
                    continue;
                }
            }
            if e.runner_pid
                .is_some_and(|p| p != std::process::id() && pid_alive(p))
            {
                continue; // still owned by a live runner (two runners forced onto one database)
            }
            if let Some(pid) = e.pid {
                // A pid can be reused: only stop a group whose leader started with the execution.
                if process::group_is_executions(pid, e.started_at) && process::group_alive(pid) {
                    tracing::warn!(execution = e.id, pid, "stopping orphaned process group");
                    process::kill_group(pid, execute::KILL_GRACE);
                }
            }
            let why = match e.runner_pid {
                Some(p) => format!("interrupted: the runner (pid {p}) stopped before it finished"),
                None => "interrupted: the runner stopped before it finished".to_string(),
            };
            self.store.interrupt(e.id, now, &why)?;
            tracing::warn!(execution = e.id, job = %e.job, "marked interrupted");
        }
        Ok(())
    }

    /// (Re)read settings and jobs. Unchanged jobs keep their next slot.
    fn reload(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.settings.clear();
        for system in self.store.systems()? {
            let s = self.store.settings(&system)?;
            self.settings.insert(system, s);
        }
        let jobs = self.store.jobs(&JobFilter {
            active: Some(true),
            ..Default::default()
        })?;
        let mut fresh = HashMap::with_capacity(jobs.len());
        self.monitor.reloading();
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
            if !settings.is_enabled || !fleet::runs_here(&job.runner_labels, &self.opts.labels) {
                continue;
            }
            let zone = if job.timezone.is_empty() {
                settings.timezone.as_str()
            } else {
                job.timezone.as_str()
            };
            let schedule = parsed
                .entry(job.schedule.clone())
                .or_insert_with(|| Schedule::parse(&job.schedule).map(Arc::new))
                .clone();
            let checked = match (schedule, schedule::parse_timezone(zone)) {
                (Ok(s), Ok(tz)) => bounds::check_job(&job).map(|()| (s, tz)),
                (Err(e), _) => Err(e.to_string()),
                (_, Err(e)) => Err(e.to_string()),
            };
            let (schedule, tz) = match checked {
                Ok(ok) => ok,
                Err(why) => {
                    self.not_scheduled(&job, &why, now);
                    continue;
                }
            };
            // Compared by what the slot depends on, not updated_at: an edit made in the database
            // behind cronmgr's back need not touch it.
            let next = match self.jobs.remove(&job.id) {
                Some(old) if old.job.schedule == job.schedule && old.tz == tz => old.next,
                _ => *nexts
                    .entry((job.schedule.clone(), tz))
                    .or_insert_with(|| schedule.next_after(now, tz)),
            };
            if let Some(t) = next {
                self.timers.push(Reverse((t, job.id)));
            }
            self.monitor.track(&job, settings);
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
        let (jobs, settings) = (&self.jobs, &self.settings);
        self.monitor.reenabled(
            &self.store,
            |id| {
                let job: &Job = &jobs.get(&id)?.job;
                let s = settings.get(&job.system).cloned()?;
                Some((job, s))
            },
            now,
        );
        // The jobs as read and the parsing scratch are gone; let the allocator give them back.
        self.release_memory();
        Ok(())
    }

    /// SIGHUP: read the config file again, and take it only if start-up would (it parses, and
    /// neither it nor a folder above it can be changed by others); else keep the old one, saying why.
    fn reload_config(&mut self) {
        let loaded = Config::load(self.opts.config_path.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                super::modes::check_config(&c.path)?;
                Ok(c)
            });
        match loaded {
            Ok(c) => {
                tracing::info!(path = %c.path.display(), "config reloaded");
                self.monitor.smtp_changed(&c.smtp);
                self.config = c;
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "keeping the old config"),
        }
    }

    /// A job read from the database that cannot be scheduled (a bad schedule or zone, a number
    /// out of its range: written behind cronmgr's back): logged at each reload, and recorded once
    /// per version of the job as a `skipped` row of its history with the reason.
    fn not_scheduled(&mut self, job: &Job, why: &str, now: DateTime<Utc>) {
        tracing::error!(job = %job.name, system = %job.system, error = %why, "not scheduling job");
        if self.unschedulable.insert(job.id, job.updated_at) == Some(job.updated_at) {
            return;
        }
        self.recorder.write(Record::Row(NewExecution {
            job_id: job.id,
            status: Status::Skipped,
            scheduled_for: now,
            started_at: None,
            triggered_by: Trigger::Schedule,
            attempt: 0,
            error_message: Some(format!(
                "not scheduled: {why}; fix the job (cronmgr edit {}, or its jobs.d file)",
                job.name
            )),
            runner_pid: Some(std::process::id()),
            runner_id: None,
            fleet: None,
        }));
    }

    fn settings_for(&self, system: &str) -> Settings {
        self.settings
            .get(system)
            .cloned()
            .unwrap_or_else(|| Settings::defaults(system, schedule::host_timezone().name()))
    }

    /// At start: slots missed while no runner was up, catch-up, and @reboot jobs.
    fn start_up(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.gap_memo.clear();
        // Joining a fleet: what another runner that is up could run was not missed.
        let others: Vec<Vec<String>> = if self.fleet {
            self.store
                .runners(false)?
                .into_iter()
                .filter(|r| Some(r.id) != self.runner_id && r.state(now) == "up")
                .filter(|r| !r.labels.iter().any(|l| l == fleet::RUN_NOW_LABEL))
                .map(|r| r.labels)
                .collect()
        } else {
            Vec::new()
        };
        let ids: Vec<i64> = self.jobs.keys().copied().collect();
        for id in ids {
            let entry = &self.jobs[&id];
            if entry.schedule.is_reboot() {
                let slot = self.slot(id, now, 1, Trigger::Schedule);
                self.push_queue(slot);
                continue;
            }
            let need = &entry.job.runner_labels;
            if others.iter().any(|have| fleet::runs_here(need, have)) {
                continue; // they fired what came due; a missed row here would be false
            }
            if let Some(stored) = entry.job.next_run_at.filter(|t| *t <= now) {
                let gap = if self.opts.once { Gap::Once } else { Gap::Down };
                self.handle_gap(id, stored, now, gap)?;
            }
        }
        self.persist_next_runs()?;
        Ok(())
    }

    fn slot(&self, job_id: i64, at: DateTime<Utc>, attempt: u32, trigger: Trigger) -> Slot {
        Slot {
            job_id,
            priority: self.jobs.get(&job_id).map_or(5, |e| e.job.priority),
            scheduled_for: at,
            attempt,
            trigger,
            due: at,
            first_started: None,
            tie: match (self.fleet, self.runner_id) {
                (true, Some(runner)) => shuffle(job_id, runner),
                _ => job_id as u64,
            },
        }
    }

    // ---- due slots -----------------------------------------------------------------------

    /// Queue every slot that is due, handling any gap since a job's last known slot.
    fn collect_due(&mut self, now: DateTime<Utc>, gap: Gap) -> anyhow::Result<()> {
        self.gap_memo.clear();
        let mut touched = false;
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.jobs.get(&id).and_then(|e| e.next) != Some(at) {
                continue; // stale timer
            }
            self.handle_gap(id, at, now, gap)?;
            touched = true;
        }
        if touched && self.opts.once {
            self.persist_next_runs()?;
        }
        Ok(())
    }

    /// Slots of job `id` from `first` to `now`: run the right one, record the rest as missed,
    /// and move the job's next slot past `now`.
    fn handle_gap(
        &mut self,
        id: i64,
        first: DateTime<Utc>,
        now: DateTime<Utc>,
        gap: Gap,
    ) -> anyhow::Result<()> {
        let entry = &self.jobs[&id];
        // Jobs sharing an expression and zone share the work (a burst of 10,000 alike jobs
        // computes one schedule, so the first of them starts without waiting for the rest).
        let key = (entry.job.schedule.clone(), entry.tz, first);
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
        let entry = &self.jobs[&id];
        let latest = *slots.last().expect("slots has at least `first`");
        let on_time = now - latest <= ON_TIME;
        let job = &entry.job;
        let within_deadline = job
            .starting_deadline
            .is_none_or(|d| (now - latest).num_seconds() <= i64::try_from(d).unwrap_or(i64::MAX));
        let catch_up = job.catch_up == CatchUp::Latest && within_deadline;
        let run_latest = match gap {
            Gap::Late | Gap::Once => true,
            Gap::Down | Gap::LargeJump(_) => on_time || catch_up,
            Gap::SmallJump(_) => on_time || entry.schedule.is_fixed_time() || catch_up,
        };
        // The latest slot, when it runs, is on time unless it runs as a catch-up.
        let latest_on_time = on_time
            || matches!(gap, Gap::Late | Gap::Once)
            || (matches!(gap, Gap::SmallJump(_)) && entry.schedule.is_fixed_time());
        let late: &[DateTime<Utc>] = if run_latest && latest_on_time {
            &slots[..slots.len() - 1]
        } else {
            &slots
        };
        if !late.is_empty() {
            let why = match gap {
                Gap::Late => "the runner was busy or blocked".to_string(),
                Gap::Down => "the runner was not running".to_string(),
                Gap::Once => "they came due before this `run --once`".to_string(),
                Gap::SmallJump(d) | Gap::LargeJump(d) => format!(
                    "the clock jumped forward by {} (clock change or the machine slept)",
                    crate::duration::human_secs(d.num_seconds().max(0) as u64)
                ),
            };
            let capped = if late.len() >= MISSED_CAP {
                "at least "
            } else {
                ""
            };
            let what = if run_latest {
                "; ran the latest once"
            } else if job.catch_up == CatchUp::Latest {
                "; too late to catch up (starting_deadline)"
            } else {
                ""
            };
            let message = format!(
                "missed {capped}{} slot{} from {} to {}: {why}{what}",
                late.len(),
                if late.len() == 1 { "" } else { "s" },
                crate::output::utc(late[0]),
                crate::output::utc(late[late.len() - 1]),
            );
            tracing::warn!(job = %job.name, system = %job.system, "{message}");
            self.recorder.write(Record::Row(NewExecution {
                job_id: id,
                status: Status::Missed,
                scheduled_for: late[0],
                started_at: None,
                triggered_by: Trigger::Schedule,
                attempt: 0,
                error_message: Some(message),
                runner_pid: Some(std::process::id()),
                runner_id: None,
                fleet: None,
            }));
            self.summary.missed += 1;
        }
        if run_latest {
            self.enqueue(self.slot(id, latest, 1, Trigger::Schedule), now)?;
        }
        let entry = self.jobs.get_mut(&id).expect("checked above");
        entry.next = next;
        if let Some(t) = entry.next {
            self.timers.push(Reverse((t, id)));
        }
        Ok(())
    }

    /// Queue a due slot, unless the job may not overlap and already has one waiting.
    fn enqueue(&mut self, slot: Slot, now: DateTime<Utc>) -> anyhow::Result<()> {
        let entry = &self.jobs[&slot.job_id];
        if !entry.job.allow_concurrent && self.queued.contains_key(&slot.job_id) {
            self.record_skipped(
                &slot,
                "the previous slot is still waiting for a free worker",
                now,
            )?;
            return Ok(());
        }
        self.push_queue(slot);
        Ok(())
    }

    fn push_queue(&mut self, slot: Slot) {
        *self.queued.entry(slot.job_id).or_default() += 1;
        self.queue.push(Reverse(slot));
    }

    fn pop_queue(&mut self) -> Option<Slot> {
        let Reverse(slot) = self.queue.pop()?;
        if let Some(n) = self.queued.get_mut(&slot.job_id) {
            *n -= 1;
            if *n == 0 {
                self.queued.remove(&slot.job_id);
            }
        }
        Some(slot)
    }

    fn record_skipped(&mut self, slot: &Slot, why: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.recorder.write(Record::Row(NewExecution {
            job_id: slot.job_id,
            status: Status::Skipped,
            scheduled_for: slot.scheduled_for,
            started_at: Some(now),
            triggered_by: slot.trigger,
            attempt: slot.attempt,
            error_message: Some(format!("skipped: {why}")),
            runner_pid: Some(std::process::id()),
            runner_id: None,
            fleet: None,
        }));
        self.summary.skipped += 1;
        if let Some(e) = self.jobs.get(&slot.job_id) {
            tracing::info!(job = %e.job.name, slot = %crate::output::utc(slot.scheduled_for), "skipped: {why}");
        }
        Ok(())
    }

    fn collect_retries(&mut self, now: DateTime<Utc>) {
        let (due, waiting): (Vec<Slot>, Vec<Slot>) =
            self.retries.drain(..).partition(|s| s.due <= now);
        self.retries = waiting;
        for slot in due {
            self.push_queue(slot);
        }
    }

    /// Write the jobs' next slots (after start-up or a clock change, or in `--once`).
    fn persist_next_runs(&mut self) -> anyhow::Result<()> {
        let updates: Vec<(i64, Option<DateTime<Utc>>)> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.job.next_run_at != e.next)
            .map(|(id, e)| (*id, e.next))
            .collect();
        if !updates.is_empty() {
            self.recorder.write(Record::NextRuns(updates.clone()));
            for (id, next) in updates {
                if let Some(e) = self.jobs.get_mut(&id) {
                    e.job.next_run_at = next;
                }
            }
        }
        Ok(())
    }

    // ---- starting ------------------------------------------------------------------------

    fn running_in(&self, system: &str) -> usize {
        self.running.values().filter(|r| r.system == system).count()
    }

    /// Start what the caps allow, most urgent first: pick the slots, claim them all in one
    /// transaction, then spawn each.
    fn start_ready(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.claim_again = false;
        if self.stop_deadline.is_some() || self.queue.is_empty() {
            return Ok(());
        }
        let mut blocked = Vec::new();
        let mut picked: Vec<Picked> = Vec::new();
        let mut planned: HashMap<String, usize> = HashMap::new();
        while let Some(mut slot) = self.pop_queue() {
            if let Some(cap) = self.opts.max_concurrent {
                if self.running.len() + picked.len() >= cap {
                    self.push_queue(slot);
                    break;
                }
            }
            let Some(entry) = self.jobs.get(&slot.job_id) else {
                continue; // removed or disabled since it was queued
            };
            let system = entry.job.system.clone();
            if self.opts.max_concurrent.is_none() {
                let cap = self.settings_for(&system).max_concurrent_jobs as usize;
                let planned_here = planned.get(&system).copied().unwrap_or(0);
                if self.running_in(&system) + planned_here >= cap {
                    blocked.push(slot);
                    continue;
                }
            }
            if slot.trigger != Trigger::Retry && !entry.job.allow_concurrent {
                let busy = self.running.values().any(|r| r.slot.job_id == slot.job_id)
                    || self.retries.iter().any(|r| r.job_id == slot.job_id)
                    || picked.iter().any(|p| p.slot.job_id == slot.job_id);
                if busy {
                    self.record_skipped(
                        &slot,
                        "the previous run is still going (allow_concurrent = false)",
                        now,
                    )?;
                    continue;
                }
            }
            let job = entry.full_job();
            let next = entry.next;
            let settings = self.settings_for(&job.system);
            let first_started = *slot.first_started.get_or_insert(now);
            let Some(timeout) = execute::attempt_timeout(&job, &settings, first_started, now)
            else {
                tracing::warn!(job = %job.name, attempt = slot.attempt, "max_runtime used up; no further attempt");
                continue;
            };
            *planned.entry(system).or_default() += 1;
            let new = NewExecution {
                job_id: job.id,
                status: Status::Running,
                scheduled_for: slot.scheduled_for,
                started_at: Some(now),
                triggered_by: slot.trigger,
                attempt: slot.attempt,
                error_message: None,
                runner_pid: Some(std::process::id()),
                runner_id: self.runner_id,
                fleet: self.fleet.then(|| FleetRules {
                    exclusive: slot.trigger != Trigger::Retry && !job.allow_concurrent,
                    cap: Some((job.system.clone(), settings.max_concurrent_jobs)),
                }),
            };
            picked.push(Picked {
                slot,
                job,
                next,
                timeout,
                new,
            });
        }
        for slot in blocked {
            self.push_queue(slot);
        }
        if picked.is_empty() {
            return Ok(());
        }
        let claims: Vec<(NewExecution, Option<DateTime<Utc>>)> =
            picked.iter().map(|p| (p.new.clone(), p.next)).collect();
        let results = self.recorder.claim_many(&self.store, &claims);
        for (p, claimed) in picked.into_iter().zip(results) {
            match claimed {
                Ok(Some(execution)) => self.launch(p, execution, now),
                Ok(None) if self.fleet => {
                    self.claim_again = !self.queue.is_empty();
                    tracing::debug!(job = %p.job.name, slot = %crate::output::utc(p.slot.scheduled_for), attempt = p.slot.attempt, "slot taken by another runner (or skipped: still running elsewhere)");
                }
                Ok(None) => {
                    tracing::info!(job = %p.job.name, slot = %crate::output::utc(p.slot.scheduled_for), attempt = p.slot.attempt, "slot already claimed elsewhere; not running it");
                }
                Err(StoreError::FleetFull { system, cap }) => {
                    tracing::debug!(job = %p.job.name, %system, cap, "the fleet is at its cap; the slot waits");
                    self.fleet_full = true;
                    self.push_queue(p.slot);
                }
                Err(e) => {
                    tracing::error!(job = %p.job.name, error = %e, "could not claim the slot; not running it");
                }
            }
        }
        Ok(())
    }

    /// Spawn a claimed execution on its own worker thread.
    fn launch(&mut self, picked: Picked, execution: i64, now: DateTime<Utc>) {
        let Picked {
            slot,
            job,
            next,
            timeout,
            ..
        } = picked;
        if let Some(e) = self.jobs.get_mut(&job.id) {
            e.job.next_run_at = next;
            e.job.last_run_at = Some(now);
        }
        self.summary.started += 1;
        let live_log = crate::store::live_log_path(&self.opts.db_path, execution);
        let settings = self.settings_for(&job.system);
        let spec = execute::spec(&execute::Context {
            job: &job,
            db_path: &self.opts.db_path,
            config: &self.config,
            execution_id: execution,
            attempt: slot.attempt,
            scheduled_for: slot.scheduled_for,
            timeout,
            live_log: Some(live_log.clone()),
            settings: &settings,
        });
        let cancel = Cancel::new();
        self.running.insert(
            execution,
            Running {
                slot,
                system: job.system.clone(),
                cancel: cancel.clone(),
                timeout,
                live_log,
                started_at: now,
                builtin: (job.command != "shell").then(|| job.command.clone()),
            },
        );
        let spec = match spec {
            Ok(spec) => spec,
            Err(refused) => {
                tracing::error!(job = %job.name, execution, error = %refused, "refused to run");
                let _ = self.tx.send(Event::Finished {
                    execution,
                    result: Err(format!("refused, not run: {refused}")),
                });
                return;
            }
        };
        tracing::info!(job = %job.name, system = %job.system, execution, "starting");
        // A spawn holds its thread until the child has exec'd (a vfork). With nothing else
        // waiting, the loop spawns here: no hand-over to a new thread between the slot and the
        // child. With a backlog that time would delay every queued start and record, so the
        // worker thread spawns, beside the loop.
        let started = if self.queue.is_empty() {
            match process::start(&spec) {
                Ok(started) => {
                    self.recorder.write(Record::Pid {
                        execution,
                        pid: started.pid(),
                    });
                    Some(started)
                }
                Err(e) => {
                    let _ = self.tx.send(Event::Finished {
                        execution,
                        result: Err(format!("cannot start {}: {e}", spec.program.display())),
                    });
                    return;
                }
            }
        } else {
            None
        };
        let tx = self.tx.clone();
        // If no worker can start, the closure is dropped with `started`, which kills the child.
        let spawned = process::on_worker(move || {
            let report = tx.clone();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let started = match started {
                    Some(started) => started,
                    None => {
                        let started = process::start(&spec)?;
                        let pid = started.pid();
                        let _ = report.send(Event::Spawned { execution, pid });
                        started
                    }
                };
                started.wait(&cancel)
            }));
            let result = match result {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(e)) => Err(format!("cannot start {}: {e}", spec.program.display())),
                Err(panic) => Err(format!("the worker panicked: {}", panic_message(&panic))),
            };
            let _ = tx.send(Event::Finished { execution, result });
        });
        if let Err(e) = spawned {
            let _ = self.tx.send(Event::Finished {
                execution,
                result: Err(format!("cannot start a worker thread: {e}")),
            });
        }
    }

    // ---- events --------------------------------------------------------------------------

    /// An execution ended while others wait for a place: handle the events of the next moment
    /// too (see [`GATHER_WINDOW`]), so the places freed are filled in one transaction.
    fn gather_ends(&mut self) -> anyhow::Result<()> {
        let until = Instant::now() + GATHER_WINDOW;
        let mut ends = 1;
        while ends < GATHER_MAX && self.stop_deadline.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(event) => {
                    ends += usize::from(matches!(event, Event::Finished { .. }));
                    self.handle(event)?;
                }
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Spawned { execution, pid } => {
                self.recorder.write(Record::Pid { execution, pid });
            }
            Event::Finished { execution, result } => self.finished(execution, result)?,
            Event::Signal(sig) => self.signal(sig)?,
        }
        Ok(())
    }

    fn finished(&mut self, execution: i64, result: Result<Outcome, String>) -> anyhow::Result<()> {
        let Some(run) = self.running.remove(&execution) else {
            return Ok(());
        };
        let now = self.clock.now();
        let mut finish = match &result {
            Ok(outcome) => {
                execute::finish(outcome, run.timeout, run.started_at, run.builtin.as_deref())
            }
            Err(message) => execute::not_started(message.clone(), now),
        };
        if finish.status == Status::Interrupted && self.stop_deadline.is_some() {
            finish.error_message = Some(
                "interrupted: the runner was stopping and the shutdown grace period ran out".into(),
            );
        }
        if let Some(by) = self.cancel_requested(execution, &finish) {
            finish.status = Status::Cancelled;
            finish.error_message = Some(crate::store::cancelled_message(&by));
        }
        // Only a job that wrote output or ran for a moment has one (unknown if it never started).
        if result.as_ref().map_or(true, |o| o.live_log) {
            let _ = std::fs::remove_file(&run.live_log);
        }
        let name = self
            .jobs
            .get(&run.slot.job_id)
            .map(|e| e.job.name.clone())
            .unwrap_or_default();
        match finish.status {
            Status::Success => self.summary.succeeded += 1,
            Status::Interrupted => self.summary.interrupted += 1,
            Status::Cancelled => self.summary.cancelled += 1,
            _ => self.summary.failed += 1,
        }
        tracing::info!(
            job = %name,
            execution,
            status = %finish.status,
            duration_ms = finish.duration_ms,
            exit_code = finish.exit_code,
            "finished"
        );
        self.recorder.write(Record::Finish {
            execution,
            finish: finish.clone(),
            pid: None,
        });
        let refused = matches!(&result, Err(m) if m.starts_with("refused"));
        let slot = run.slot.clone();
        let retried = matches!(finish.status, Status::Failed | Status::Timeout)
            && !refused
            && self.schedule_retry(run.slot, now);
        if !retried {
            self.run_ended(execution, &slot, &finish, now);
        }
        // The status line, the runner state and the metrics file cost a walk or a write each: in a
        // burst, at most once a second (housekeeping catches up).
        if self.state_written.elapsed() >= Duration::from_secs(1) {
            self.state_written = Instant::now();
            // Land this end first, so the metrics file counts it.
            self.flush_records();
            self.write_runner_state();
            self.write_metrics();
            self.send_status();
        } else {
            self.state_stale = true;
        }
        Ok(())
    }

    /// Who asked (`cronmgr kill`, in another process) for this execution to be cancelled, when its
    /// end is one a cancel's signal causes. The cancel is written to the row before the signal
    /// is sent, so it is there to read now; the store makes the same decision when the end is
    /// written, so the row is right even if this read fails (the alert rules then see a failure).
    fn cancel_requested(&self, execution: i64, finish: &Finish) -> Option<String> {
        let id = self.recorder.row_id(execution);
        // A provisional id (its claim has not landed): no row, so nobody could kill it.
        if !matches!(
            finish.status,
            Status::Failed | Status::Timeout | Status::Interrupted
        ) || id < 0
        {
            return None;
        }
        match self.store.cancelled_by(id) {
            Ok(by) => by,
            Err(e) => {
                tracing::warn!(execution = id, error = %e, "could not read whether the execution was cancelled");
                None
            }
        }
    }

    /// A run ended for good (no retry follows): alert rules, the silence deadline, auto-disable.
    fn run_ended(&mut self, execution: i64, slot: &Slot, finish: &Finish, now: DateTime<Utc>) {
        let Some(entry) = self.jobs.get_mut(&slot.job_id) else {
            return;
        };
        if finish.status == Status::Success {
            entry.job.last_success_at = Some(finish.finished_at);
            entry.job.failure_streak = 0;
        }
        let job = Job::clone(&entry.job);
        let settings = self.settings_for(&job.system);
        if finish.status == Status::Success {
            self.monitor.track(&job, &settings);
        }
        let end = RunEnd {
            execution_id: self.recorder.row_id(execution),
            status: finish.status,
            attempt: slot.attempt,
            scheduled_for: slot.scheduled_for,
            duration_ms: finish.duration_ms,
            exit_code: finish.exit_code,
            error: finish.error_message.as_deref(),
            output: &finish.output,
        };
        if self
            .monitor
            .after_run(&self.store, &job, &settings, &end, now)
        {
            self.jobs.remove(&job.id);
            self.queue.retain(|s| s.0.job_id != job.id);
            self.queued.remove(&job.id);
        }
    }

    /// Queue the next attempt if the job has one left; true when it does.
    fn schedule_retry(&mut self, slot: Slot, now: DateTime<Utc>) -> bool {
        if self.stop_deadline.is_some() {
            return false;
        }
        let Some(entry) = self.jobs.get(&slot.job_id) else {
            return false;
        };
        let job = &entry.job;
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
            ..slot
        });
        true
    }

    fn signal(&mut self, sig: i32) -> anyhow::Result<()> {
        let now = self.clock.now();
        match sig {
            libc::SIGTERM | libc::SIGINT => {
                if self.stop_deadline.is_some() {
                    tracing::warn!("second stop signal: killing running executions now");
                    self.stop_deadline = Some(Instant::now());
                    return Ok(());
                }
                let grace = self
                    .settings
                    .values()
                    .map(|s| s.shutdown_grace)
                    .max()
                    .unwrap_or(30);
                tracing::info!(
                    running = self.running.len(),
                    grace_s = grace,
                    "stopping: no new starts, waiting for running executions"
                );
                self.notifier.send("STOPPING=1");
                let grace = Duration::from_secs(grace.min(bounds::MAX_DURATION));
                self.stop_deadline = Some(Instant::now() + grace);
                self.queue.clear();
                self.queued.clear();
                self.retries.clear();
            }
            libc::SIGHUP => {
                self.reload_config();
                self.reload(now)?;
            }
            libc::SIGUSR1 => {
                tracing::debug!("nudged: reloading jobs");
                self.reload(now)?;
                self.data_version = self.data_version()?;
            }
            _ => {}
        }
        Ok(())
    }

    fn enforce_stop_deadline(&mut self) {
        if let Some(deadline) = self.stop_deadline {
            if !self.killed_on_stop && Instant::now() >= deadline && !self.running.is_empty() {
                tracing::warn!(
                    running = self.running.len(),
                    "grace period over: stopping running executions"
                );
                for run in self.running.values() {
                    run.cancel.cancel();
                }
                self.killed_on_stop = true;
            }
        }
    }

    // ---- time ----------------------------------------------------------------------------

    /// Compare the wall clock with the monotonic clock: a jump means a clock change or a sleep.
    fn check_clock(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let mono = Instant::now();
        let expected =
            self.last_wall + chrono::Duration::from_std(mono - self.last_mono).unwrap_or_default();
        self.last_wall = now;
        self.last_mono = mono;
        let drift = now - expected;
        if drift > JUMP {
            let gap = if drift < SMALL_JUMP {
                Gap::SmallJump(drift)
            } else {
                Gap::LargeJump(drift)
            };
            tracing::warn!(seconds = drift.num_seconds(), "the clock jumped forward");
            if self.stop_deadline.is_none() && !self.opts.once {
                self.collect_due(now, gap)?;
                self.persist_next_runs()?;
            }
        } else if drift < -JUMP {
            let large = -drift >= SMALL_JUMP;
            tracing::warn!(
                seconds = drift.num_seconds(),
                "the clock went back{}",
                if large {
                    ": treating it as a clock correction"
                } else {
                    ""
                }
            );
            // Wildcard jobs follow the clock back; fixed-time jobs never rerun (and a slot
            // already claimed can never run twice anyway).
            let ids: Vec<i64> = self.jobs.keys().copied().collect();
            for id in ids {
                let e = self.jobs.get_mut(&id).expect("key from the map");
                if large || !e.schedule.is_fixed_time() {
                    e.next = e.schedule.next_after(now, e.tz);
                    if let Some(t) = e.next {
                        self.timers.push(Reverse((t, id)));
                    }
                }
            }
            self.persist_next_runs()?;
        }
        Ok(())
    }

    /// How long to sleep: until the next slot, retry, stop deadline or housekeeping.
    fn wait_time(&mut self, now: DateTime<Utc>) -> Duration {
        // Never past the next start: housekeeping_wait is at most that.
        let mut wait = housekeeping_wait(
            HOUSEKEEPING.saturating_sub(self.last_housekeeping.elapsed()),
            self.next_start_in(now),
        );
        if self.state_stale {
            wait = wait.min(Duration::from_secs(1).saturating_sub(self.state_written.elapsed()));
        }
        if let Some(w) = self.notifier.watchdog {
            wait = wait.min(w);
        }
        if let Some(deadline) = self.stop_deadline {
            if !self.killed_on_stop {
                wait = wait.min(deadline.saturating_duration_since(Instant::now()));
            }
        }
        if let Some(t) = self.monitor.next_deadline() {
            // Wake when a job's silence deadline passes (a little after, so it has passed).
            wait = wait.min((t - now).to_std().unwrap_or_default() + Duration::from_millis(5));
        }
        if self.prune_pending {
            wait = wait.min(Duration::from_millis(50));
        }
        if self.fleet {
            wait = wait.min(FLEET_TICK.saturating_sub(self.last_fleet_tick.elapsed()));
            if self.claim_again {
                wait = Duration::ZERO;
            }
        }
        if self.recorder.is_failing() {
            wait = wait.min(Duration::from_millis(250));
        } else if self.recorder.backlog() > 0 {
            wait = Duration::ZERO;
        }
        wait
    }

    /// How long until the next start this runner knows of: the next slot (unless `--once`) or
    /// retry; zero if one is overdue. Drops the timers of slots that moved.
    fn next_start_in(&mut self, now: DateTime<Utc>) -> Option<Duration> {
        let mut next = None;
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if self.jobs.get(&id).and_then(|e| e.next) != Some(at) {
                self.timers.pop();
                continue;
            }
            if !self.opts.once {
                next = Some(at);
            }
            break;
        }
        if let Some(r) = self.retries.iter().map(|r| r.due).min() {
            next = Some(next.map_or(r, |n: DateTime<Utc>| n.min(r)));
        }
        next.map(|at| (at - now).to_std().unwrap_or_default())
    }

    fn data_version(&self) -> anyhow::Result<i64> {
        Ok(self.store.change_marker()?)
    }

    /// Reload if another connection changed jobs or settings since the last check: each second
    /// on a shared database, else the minute's fallback for changes nobody nudged us about.
    /// Asks SQLite only when something was committed.
    fn check_changes(&mut self) -> anyhow::Result<()> {
        if !self.commits.moved() {
            return Ok(());
        }
        let version = self.data_version()?;
        if version != self.data_version {
            self.data_version = version;
            tracing::debug!("jobs or settings changed: reloading");
            self.reload(self.clock.now())?;
        }
        Ok(())
    }

    /// Register this runner in `runners` (both engines: `cronmgr runners` lists it).
    fn register(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let new = fleet::this_runner(
            self.opts.labels.clone(),
            self.opts.max_concurrent.map(|n| n as u32),
            self.opts.lease,
        );
        let id = self.store.register_runner(&new, now)?;
        tracing::info!(runner = id, host = %new.host, labels = ?new.labels, "registered");
        self.runner_id = Some(id);
        Ok(())
    }

    /// On a shared database, each second: reload if jobs or settings changed elsewhere; every
    /// third of the lease: heartbeat, and declare lost the runners whose lease ran out, retrying
    /// their interrupted executions per each job's policy.
    fn fleet_tick(&mut self) -> anyhow::Result<()> {
        if !self.fleet || self.last_fleet_tick.elapsed() < FLEET_TICK {
            return Ok(());
        }
        self.last_fleet_tick = Instant::now();
        self.check_changes()?;
        if std::mem::take(&mut self.fleet_full) {
            self.start_ready(self.clock.now())?;
        }
        let Some(me) = self.runner_id else {
            return Ok(());
        };
        let now = self.clock.now();
        if self.last_heartbeat.elapsed() >= self.opts.lease / 3 {
            self.last_heartbeat = Instant::now();
            match self.store.heartbeat(me, now) {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    "another runner had declared this one lost (no heartbeat within the lease) and interrupted its executions"
                ),
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
        let lost = match self.store.reap_lost_runners(me, now) {
            Ok(lost) => lost,
            Err(e) => {
                tracing::warn!(error = %e, "could not check the other runners' leases");
                return Ok(());
            }
        };
        for (runner, executions) in lost {
            tracing::warn!(
                runner = runner.id,
                host = %runner.host,
                pid = runner.pid,
                interrupted = executions.len(),
                "runner lost: no heartbeat within its lease"
            );
            for e in executions {
                // A cancelled one stays stopped: a person asked for it (see `cronmgr kill`).
                if !self.jobs.contains_key(&e.job_id) || e.status == Status::Cancelled {
                    continue;
                }
                let mut slot = self.slot(e.job_id, e.scheduled_for, e.attempt, e.triggered_by);
                slot.first_started = e.started_at;
                self.schedule_retry(slot, now);
            }
        }
        Ok(())
    }

    /// Once a minute: pick up changes nobody nudged us about, trim history, ping the watchdog.
    fn housekeeping(&mut self) -> anyhow::Result<()> {
        self.fleet_tick()?;
        if self.notifier.watchdog.is_some() {
            self.notifier.send("WATCHDOG=1");
        }
        if self.prune_pending && self.stop_deadline.is_none() && !self.recorder.is_failing() {
            self.prune_step()?;
        }
        if self.state_stale && self.state_written.elapsed() >= Duration::from_secs(1) {
            self.state_stale = false;
            self.state_written = Instant::now();
            self.write_runner_state();
            self.write_metrics();
            self.send_status();
        }
        if self.last_housekeeping.elapsed() < HOUSEKEEPING {
            return Ok(());
        }
        let now = self.clock.now();
        let next_start = self.next_start_in(now);
        if housekeeping_yields(next_start) {
            return Ok(()); // the start first; this runs right after it
        }
        self.last_housekeeping = Instant::now();
        self.check_changes()?;
        self.monitor
            .host_checks(&self.store, self.settings.values(), now);
        if self.state_last != Some(self.runner_counts()) {
            self.write_runner_state(); // an idle minute writes nothing
        }
        // Retention, hourly: the first batch in this wake-up, more only if it came back full.
        if self.last_prune.elapsed() >= RETENTION_EVERY
            && self.stop_deadline.is_none()
            && !self.recorder.is_failing()
        {
            self.last_prune = Instant::now();
            self.prune_step()?;
        }
        Ok(())
    }

    /// Give back what loading or a retention cycle left behind (see `Store::shrink_memory`).
    fn release_memory(&self) {
        self.store.shrink_memory();
    }

    /// Open the `silent` condition of every job whose silence deadline has passed.
    fn check_silence(&mut self, now: DateTime<Utc>) {
        for id in self.monitor.due(now) {
            if let Some(entry) = self.jobs.get(&id) {
                let settings = self.settings_for(&entry.job.system);
                self.monitor.silent(&self.store, &entry.job, &settings, now);
            }
        }
    }

    /// Executions this runner may run at once.
    fn capacity(&self) -> usize {
        self.opts.max_concurrent.unwrap_or_else(|| {
            self.settings
                .values()
                .filter(|s| s.is_enabled)
                .map(|s| s.max_concurrent_jobs as usize)
                .sum()
        })
    }

    /// (running, queued, capacity), as `runner_state` shows them.
    fn runner_counts(&self) -> (u32, u32, u32) {
        (
            self.running.len() as u32,
            self.queue.len() as u32,
            self.capacity() as u32,
        )
    }

    /// Tell `cronmgr status` who we are and how busy we are.
    fn write_runner_state(&mut self) {
        let (running, queued, capacity) = self.runner_counts();
        let state = crate::store::RunnerState {
            pid: std::process::id(),
            started_at: self.started_at,
            updated_at: self.clock.now(),
            running,
            queued,
            capacity,
        };
        match self.store.put_runner_state(&state) {
            Ok(()) => self.state_last = Some((running, queued, capacity)),
            Err(e) => tracing::warn!(error = %e, "could not record the runner's state"),
        }
    }

    fn write_metrics(&self) {
        self.write_metrics_with(true);
    }

    /// Rewrite the metrics textfile, if asked for (`up`: false as the runner stops).
    fn write_metrics_with(&self, up: bool) {
        let Some(path) = &self.opts.metrics_file else {
            return;
        };
        let view = crate::metrics::RunnerView {
            up,
            started_at: Some(self.started_at),
            running: self.running.len() as u64,
            queued: self.queue.len() as u64,
            capacity: self.capacity() as u64,
        };
        let written = crate::metrics::render(&self.store, &view)
            .map_err(anyhow::Error::from)
            .and_then(|text| Ok(crate::metrics::write_atomic(path, &text)?));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not write the metrics file");
        }
    }

    /// Delete one small batch of history beyond each system's retention.
    fn prune_step(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let keep_of = |s: &Settings| {
            if s.keep_executions == 0 {
                u64::MAX >> 1
            } else {
                s.keep_executions
            }
        };
        // A retention cycle starts by finding the jobs over their quota, once.
        let quotas = self.prune_quota.get_or_insert_with(HashMap::new);
        if quotas.is_empty() {
            for (system, s) in &self.settings {
                match self.store.over_quota(system, keep_of(s)) {
                    Ok(jobs) => {
                        quotas.insert(system.clone(), jobs);
                    }
                    Err(e) => {
                        tracing::warn!(system, error = %e, "retention failed; will try later")
                    }
                }
            }
        }
        let mut more = false;
        for (system, s) in &self.settings {
            let days = i64::try_from(s.cleanup_days.min(bounds::MAX_DAYS)).unwrap_or(0);
            let older = (days > 0)
                .then(|| now.checked_sub_signed(chrono::Duration::days(days)))
                .flatten();
            let quota = quotas.entry(system.clone()).or_default();
            match self
                .store
                .prune_batch(system, keep_of(s), older, PRUNE_BATCH, quota)
            {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(system, deleted = n, "retention");
                    }
                    more |= n == PRUNE_BATCH || !quota.is_empty();
                }
                Err(e) => tracing::warn!(system, error = %e, "retention failed; will try later"),
            }
        }
        if !more && self.prune_quota.take().is_some() {
            // The cycle is done (the next one finds the quotas again). Check for changes now, so
            // the probe has seen this cycle's commits and the next minute needs no SQL; then
            // give back the cache pages and heap the cycle used: not needed for another hour.
            self.check_changes()?;
            self.release_memory();
        }
        self.prune_pending = more;
        Ok(())
    }

    /// While writes wait, every other write fails at once instead of stalling the loop on the
    /// lock (the alert bookkeeping of a run ending then is lost, the execution records are not).
    fn sync_lock_wait(&mut self) {
        let failing = self.recorder.is_failing();
        if failing != self.lock_wait_short {
            let wait = if failing { Duration::ZERO } else { WRITE_WAIT };
            if let Err(e) = self.store.set_lock_wait(wait) {
                tracing::warn!(error = %e, "could not set the lock wait");
            }
            self.lock_wait_short = failing;
        }
    }

    /// Write what waits for the database, in one transaction; when a long refusal ends, raise an
    /// alert about it.
    fn flush_records(&mut self) {
        if self.recorder.backlog() == 0 {
            return;
        }
        // While failing, attempts fail at once (no lock wait): the loop keeps starting jobs on time.
        let failing = self.recorder.failing().cloned();
        let backlog = self.recorder.backlog();
        let landed = self.recorder.flush(&self.store);
        self.sync_lock_wait();
        if landed {
            if let Some((since, why)) =
                failing.filter(|(since, _)| since.elapsed() >= STORAGE_ALERT)
            {
                let summary = format!(
                    "cronmgr could not write to its database for {} ({why}); {backlog} records waited and have all landed",
                    crate::duration::Human(Duration::from_secs(since.elapsed().as_secs().max(1)))
                );
                let now = self.clock.now();
                self.monitor
                    .storage_blocked(&self.store, self.settings.values(), &summary, now);
            }
        }
    }

    fn send_status(&self) {
        if self.notifier.is_active() {
            self.notifier
                .send(&format!("STATUS={}", self.status_line()));
        }
    }

    fn status_line(&self) -> String {
        let mut line = format!(
            "{} jobs, {} running, {} queued",
            self.jobs.len(),
            self.running.len(),
            self.queue.len()
        );
        // The earliest live timer (stale ones are skipped; the heap is not modified here).
        let next = self
            .timers
            .iter()
            .filter(|Reverse((at, id))| self.jobs.get(id).and_then(|e| e.next) == Some(*at))
            .min();
        if let Some(Reverse((at, id))) = next {
            line.push_str(&format!(
                "; next: {} at {}",
                self.jobs[id].job.name,
                crate::output::utc(*at)
            ));
        }
        line
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// How long the loop may sleep for the minute's housekeeping, due in `due_in`, and the next
/// start: the earlier of the two, except that a start at most [`HOUSEKEEPING_YIELD`] after the
/// housekeeping's time is waited for alone, and the housekeeping runs right after it (see
/// [`housekeeping_yields`]).
fn housekeeping_wait(due_in: Duration, next_start_in: Option<Duration>) -> Duration {
    match next_start_in {
        Some(start) if start <= due_in + HOUSEKEEPING_YIELD => start,
        _ => due_in,
    }
}

/// Whether the housekeeping, due now, waits for a start due within [`HOUSEKEEPING_YIELD`].
fn housekeeping_yields(next_start_in: Option<Duration>) -> bool {
    next_start_in.is_some_and(|start| start <= HOUSEKEEPING_YIELD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn housekeeping_gives_way_to_a_start_due_at_the_same_moment() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        // Nothing due: wake for the housekeeping.
        assert_eq!(housekeeping_wait(s(60), None), s(60));
        // A start long after: the housekeeping first, at its time.
        assert_eq!(housekeeping_wait(s(10), Some(s(30))), s(10));
        // A start 100 ms after the housekeeping's time: one wake-up, for the start.
        assert_eq!(
            housekeeping_wait(s(10), Some(s(10) + ms(100))),
            s(10) + ms(100)
        );
        assert_eq!(housekeeping_wait(ms(0), Some(ms(250))), ms(250));
        assert_eq!(housekeeping_wait(ms(0), Some(ms(251))), ms(0));
        // A start before it: that comes first anyway.
        assert_eq!(housekeeping_wait(s(10), Some(s(2))), s(2));
        // Due now: it waits only for a start within the yield, and never for long.
        assert!(housekeeping_yields(Some(ms(0))));
        assert!(housekeeping_yields(Some(ms(250))));
        assert!(!housekeeping_yields(Some(ms(251))));
        assert!(!housekeeping_yields(None));
        // Right after a start, an every-second job's next start (~1 s) lets it run.
        assert!(!housekeeping_yields(Some(ms(999))));
    }
}
