//! The runner's loop. One thread owns the database and the scheduling state; each execution runs
//! on a worker thread that only waits for its child and reports back through a channel.
//!
//! Each turn reads top to bottom: look at the clock, take what the [`Calendar`] says is due,
//! let the [`Dispatcher`] pick what may start within the caps, claim and launch it, write what
//! waits; then sleep until the earliest `next_wake` of the parts, gather the events (ends,
//! signals), and do the housekeeping that is due.
//!
//! **Errors.** Start-up fails (and the runner exits 1) when it cannot register, recover what a
//! dead runner left, or read its jobs: it would not know what to run. Once running, only a stop
//! ends the loop: writes wait in the [`Recorder`] (and its journal) until the database takes
//! them; a failed read of jobs or settings is logged and tried again the next second, the jobs
//! already loaded keep firing; alerts, state reports, metrics, retention and heartbeats that
//! fail are logged and tried at their next time.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::calendar::{Calendar, Gap};
use super::chains::Chains;
use super::clock::Clock;
use super::dispatch::Dispatcher;
use super::fleet::{self, FleetMember};
use super::housekeeping::{self, Housekeeping};
use super::lifecycle::{self, Command, Jump, Lifecycle};
use super::process::Outcome;
use super::recorder::Recorder;
use super::spawn::Spawner;
use crate::alert::Monitor;
use crate::config::Config;
use crate::model::bounds;
use crate::store::{Change, Notice, Status, Store};

/// How long the pid of an execution spawned on a worker (in a burst, while slots wait) is held
/// for its end (see `Recorder::spawned`): most end sooner, and their pid lands with the end.
/// Meanwhile `kill` says "no process yet". A job started while nothing waits is spawned by the
/// loop itself, and its pid lands in that turn.
const PID_WAIT: Duration = Duration::from_millis(100);
/// How long the runner's own writes wait for a lock before queueing instead.
const WRITE_WAIT: Duration = Duration::from_millis(200);
/// How long the delivery thread may keep sending due alerts once the runner stops.
const DELIVERY_GRACE: Duration = Duration::from_secs(5);
/// A failed reload is tried again this soon.
const RELOAD_RETRY: Duration = Duration::from_secs(1);

pub struct Options {
    /// Fire what is due now (and catch-up per policy), wait for it, and return.
    pub once: bool,
    /// Overrides every system's max_concurrent_jobs with one cap for the whole runner.
    pub max_concurrent: Option<usize>,
    /// Where the database lives (for live logs).
    pub db_path: std::path::PathBuf,
    /// The config file as loaded, and its path to reload on SIGHUP.
    pub config: Config,
    pub config_path: Option<std::path::PathBuf>,
    /// A node_exporter textfile rewritten after every execution.
    pub metrics_file: Option<std::path::PathBuf>,
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
    /// From the listener (PostgreSQL): a change elsewhere, or the listening connection's state.
    Notice(crate::store::Notice),
}

pub struct Engine<'c> {
    clock: &'c dyn Clock,
    spawner: Box<dyn Spawner + 'c>,
    opts: Options,
    store: Store,
    calendar: Calendar,
    /// Which jobs each job's end triggers (`--after`), from the calendar's jobs.
    chains: Chains,
    dispatch: Dispatcher,
    life: Lifecycle,
    housekeeping: Housekeeping,
    /// On a shared database (PostgreSQL): this runner as a member of the fleet, and the thread
    /// that listens for changes (LISTEN/NOTIFY) and wakes the loop.
    fleet: Option<FleetMember>,
    listener: Option<crate::store::Listener>,
    /// Every write, in order, waiting while the database refuses them (locked, full).
    recorder: Recorder,
    /// Alert rules, missed-run deadlines, host checks, and the delivery thread.
    monitor: Monitor,
    events: (Sender<Event>, Receiver<Event>),
    summary: Summary,
}

impl<'c> Engine<'c> {
    pub fn new(
        store: Store,
        clock: &'c dyn Clock,
        spawner: Box<dyn Spawner + 'c>,
        opts: Options,
    ) -> Engine<'c> {
        let mono = clock.mono();
        Engine {
            clock,
            spawner,
            calendar: Calendar::default(),
            chains: Chains::default(),
            dispatch: Dispatcher::default(),
            life: Lifecycle::new(clock.now(), mono),
            housekeeping: Housekeeping::new(&store, mono),
            fleet: None,
            listener: None,
            recorder: Recorder::new(&opts.db_path),
            monitor: Monitor::new(&opts.db_path, None),
            events: mpsc::channel(),
            summary: Summary::default(),
            store,
            opts,
        }
    }

    /// A sender for events from outside the loop (signals).
    pub fn sender(&self) -> Sender<Event> {
        self.events.0.clone()
    }

    /// Run until stopped (or, with `once`, until what was due has finished).
    pub fn run(mut self) -> anyhow::Result<Summary> {
        self.start()?;
        while !self.turn() {
            self.wait();
            self.after_events();
        }
        // Stopped because the database cannot be used any more (upkeep.rs): exit 1, saying why.
        let gone = self.store.fatal();
        let summary = self.stop();
        match gone {
            Some(why) => Err(anyhow::anyhow!(
                "the database cannot be used any more: {why}"
            )),
            None => Ok(summary),
        }
    }

    /// Register, recover what a dead runner left, load the jobs, and handle what came due while
    /// no runner was up.
    pub(super) fn start(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        self.life.started_at = now;
        let delivery = self
            .store
            .reopen()
            .map_err(std::io::Error::other)
            .and_then(|store| {
                crate::alert::delivery::Deliverer::spawn(store, self.opts.config.smtp.clone())
            });
        match delivery {
            Ok(d) => self.monitor = Monitor::new(&self.opts.db_path, Some(d)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the alert delivery thread; alerts stay queued")
            }
        }
        let shared = self.store.backend() == crate::store::Backend::Postgres;
        let me = fleet::this_runner(
            self.opts.labels.clone(),
            self.opts.max_concurrent.map(|n| n as u32),
            self.opts.lease,
        );
        let id = self.store.register_runner(&me, now)?;
        tracing::info!(runner = id, host = %me.host, labels = ?me.labels, "registered");
        self.life.runner_id = Some(id);
        if shared {
            self.fleet = Some(FleetMember::new(id, self.opts.lease, self.clock.mono()));
            // `--once` fires only what was pending at start: no changes to wait for.
            if !self.opts.once {
                self.listen();
            }
        }
        lifecycle::recover(&self.store, shared, Some(id), now)?;
        self.recorder.recover(&self.store, now)?;
        self.store.set_lock_wait(WRITE_WAIT)?;
        self.housekeeping.start_checkpoints(&self.store);
        self.reload(now)?;
        // Joining a fleet: what another runner that is up could run was not missed.
        let others: Option<Vec<Vec<String>>> = match &self.fleet {
            Some(_) => Some(
                (self.store.runners(false)?.into_iter())
                    .filter(|r| r.id != id && r.state(now) == "up")
                    .filter(|r| !r.labels.iter().any(|l| l == fleet::RUN_NOW_LABEL))
                    .map(|r| r.labels)
                    .collect(),
            ),
            None => None,
        };
        let gap = if self.opts.once { Gap::Once } else { Gap::Down };
        let fires = self.calendar.at_start(now, gap, others.as_deref());
        self.act(fires, now);
        self.persist_next_runs();
        self.report(now);
        self.monitor
            .host_checks(&self.store, self.calendar.settings(), now);
        self.check_silence(now);
        self.housekeeping.seen(&self.store)?;
        let status = format!("READY=1\nSTATUS={}", self.status_line());
        self.life.notifier.send(&status);
        self.life.ready = true;
        tracing::info!(
            jobs = self.calendar.len(),
            pid = std::process::id(),
            db = %crate::store::display_db(&self.opts.db_path),
            "runner ready"
        );
        // What start-up read and parsed is not needed again.
        self.store.shrink_memory();
        Ok(())
    }

    /// On a shared database: start the thread that listens for changes and wakes the loop.
    /// Without it the runner polls each second, as before.
    fn listen(&mut self) {
        let events = self.events.0.clone();
        match self
            .store
            .listen(move |n| events.send(Event::Notice(n)).is_ok())
        {
            Ok(listener) => self.listener = listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the thread that listens for changes; polling each second")
            }
        }
    }

    /// One pass: what is due is queued, what may start starts, what waits is written. True when
    /// the runner is done (stopped and drained, or `--once` with nothing left).
    pub(super) fn turn(&mut self) -> bool {
        let now = self.clock.now();
        self.check_clock(now);
        if self.schedule_live() {
            let fires = self.calendar.due(now, Gap::Late);
            self.act(fires, now);
        }
        self.check_silence(now);
        self.dispatch.collect_retries(now);
        self.start_ready(now);
        self.flush_records();
        // After the starts: a checkpoint due now never delays one.
        self.housekeeping.after_writes(&self.store);
        match (self.life.stop.stopping(), self.opts.once) {
            (true, _) => self.dispatch.running_count() == 0,
            (false, once) => once && self.dispatch.is_idle(),
        }
    }

    /// Whether the calendar fires slots: not once stopping, and not in `--once` (which fires
    /// only what was pending at start).
    fn schedule_live(&self) -> bool {
        !self.opts.once && !self.life.stop.stopping()
    }

    /// Sleep until the earliest wake-up any part asks for, or an event that gives the loop
    /// something to do. An execution's spawn only hands its pid to the recorder: the loop
    /// sleeps on, and the pid lands with the execution's end (in a burst most end within
    /// [`PID_WAIT`]) or with the first write after that. A fleet's "freed" wakes the loop only
    /// while a slot waits for the fleet's cap.
    fn wait(&mut self) {
        let until = Instant::now() + self.next_wake(self.clock.now());
        loop {
            let by = (self.recorder.pid_due_in()).map_or(until, |d| until.min(Instant::now() + d));
            match self
                .events
                .1
                .recv_timeout(by.saturating_duration_since(Instant::now()))
            {
                Ok(event @ Event::Spawned { .. }) => self.handle(event),
                Ok(event @ Event::Notice(Notice::Change(Change::Freed)))
                    if !self.fleet.as_ref().is_some_and(|f| f.at_cap) =>
                {
                    self.handle(event);
                }
                Ok(event) => {
                    let ended = matches!(event, Event::Finished { .. });
                    self.handle(event);
                    if ended && self.dispatch.has_waiting() {
                        self.gather_ends();
                    }
                    return;
                }
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => unreachable!("the engine holds a sender"),
            }
        }
    }

    /// Handle the events that came meanwhile, then the housekeeping that is due. The ends just
    /// handled are written at the top of the next turn, in one transaction with the claims of
    /// the executions that take their places.
    pub(super) fn after_events(&mut self) {
        while let Ok(event) = self.events.1.try_recv() {
            self.handle(event);
        }
        self.housekeeping();
        let mono = self.clock.mono();
        if self.life.stop.kill_due(mono, self.dispatch.running_count()) {
            tracing::warn!(
                running = self.dispatch.running_count(),
                "grace period over: stopping running executions"
            );
            self.dispatch.cancel_all();
        }
    }

    /// The loop is over: land what waits, say goodbye.
    fn stop(mut self) -> Summary {
        self.recorder.release_pids(true);
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
        if let Some(id) = self.life.runner_id {
            if let Err(e) = self.store.runner_stopped(id, self.clock.now()) {
                tracing::warn!(error = %e, "could not record that this runner stopped");
            }
        }
        let (store, path) = (&self.store, self.opts.metrics_file.as_deref());
        housekeeping::write_metrics(store, path, false, self.load(), self.life.started_at);
        self.monitor.stop(DELIVERY_GRACE);
        self.life.notifier.send("STOPPING=1");
        let s = &self.summary;
        tracing::info!(
            started = s.started,
            succeeded = s.succeeded,
            failed = s.failed,
            interrupted = s.interrupted,
            cancelled = s.cancelled,
            skipped = s.skipped,
            missed = s.missed,
            "runner stopped"
        );
        self.summary
    }

    fn signal(&mut self, sig: i32) {
        match lifecycle::command(sig, self.life.stop.stopping()) {
            Command::StopNow => {
                tracing::warn!("second stop signal: killing running executions now");
                self.life.stop.hurry(self.clock.mono());
            }
            Command::Stop => {
                let grace = (self.calendar.settings())
                    .map(|s| s.shutdown_grace)
                    .max()
                    .unwrap_or(30);
                tracing::info!(
                    running = self.dispatch.running_count(),
                    grace_s = grace,
                    "stopping: no new starts, waiting for running executions"
                );
                self.life.notifier.send("STOPPING=1");
                let grace = Duration::from_secs(grace.min(bounds::MAX_DURATION));
                self.life.stop.begin(self.clock.mono(), grace);
                self.dispatch.drop_waiting();
            }
            Command::ReloadConfig => {
                self.reload_config();
                self.reload_in_loop();
            }
            Command::ReloadJobs => {
                tracing::debug!("nudged: reloading jobs");
                self.reload_in_loop();
                if let Err(e) = self.housekeeping.seen(&self.store) {
                    tracing::warn!(error = %e, "could not read the change marker");
                }
            }
            Command::Ignore => {}
        }
    }

    /// A clock change (or a sleep) seen against the monotonic clock: a forward jump is a gap in
    /// the calendar; a step back moves the wildcard jobs' next slots back with it.
    fn check_clock(&mut self, now: DateTime<Utc>) {
        match self.life.watch.check(now, self.clock.mono()) {
            Jump::None => {}
            Jump::Forward(gap) => {
                if let Gap::SmallJump(by) | Gap::LargeJump(by) = gap {
                    tracing::warn!(seconds = by.num_seconds(), "the clock jumped forward");
                }
                if self.schedule_live() {
                    let fires = self.calendar.due(now, gap);
                    self.act(fires, now);
                    self.persist_next_runs();
                }
            }
            Jump::Back { by, large } => {
                let what = if large {
                    ": treating it as a clock correction"
                } else {
                    ""
                };
                tracing::warn!(seconds = -by.num_seconds(), "the clock went back{what}");
                // Fixed-time jobs never rerun (and a slot already claimed can never run twice).
                self.calendar.clock_back(now, large);
                self.persist_next_runs();
            }
        }
    }

    /// How long to sleep: until the earliest wake-up any part asks for.
    pub(super) fn next_wake(&mut self, now: DateTime<Utc>) -> Duration {
        let mono = self.clock.mono();
        // Never past the next start: the housekeeping's wake-up is at most that.
        let next_start = self.next_start_in(now);
        let mut wait = self.housekeeping.next_wake(mono, next_start);
        let parts = [
            self.housekeeping.report_wake(mono),
            self.life.notifier.watchdog,
            self.life.stop.next_wake(mono),
            // Wake when a job's silence deadline passes (a little after, so it has passed).
            (self.monitor.next_deadline())
                .map(|t| (t - now).to_std().unwrap_or_default() + Duration::from_millis(5)),
            self.housekeeping
                .prune_pending()
                .then_some(Duration::from_millis(50)),
            self.housekeeping.reload_failed.then_some(RELOAD_RETRY),
            self.fleet.as_ref().map(|f| f.next_wake(mono)),
            self.recorder
                .is_failing()
                .then_some(Duration::from_millis(250)),
            self.recorder.pid_due_in(),
        ];
        for w in parts.into_iter().flatten() {
            wait = wait.min(w);
        }
        if !self.recorder.is_failing() && self.recorder.backlog() > 0 {
            wait = Duration::ZERO;
        }
        wait
    }

    /// How long until the next start this runner knows of: the next slot (while the calendar is
    /// live) or retry; zero if one is overdue.
    fn next_start_in(&mut self, now: DateTime<Utc>) -> Option<Duration> {
        let slot = if self.schedule_live() {
            self.calendar.next_wake()
        } else {
            None
        };
        let next = match (slot, self.dispatch.next_retry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|at| (at - now).to_std().unwrap_or_default())
    }
}

impl Summary {
    fn count(&mut self, status: Status) {
        match status {
            Status::Success => self.succeeded += 1,
            Status::Interrupted => self.interrupted += 1,
            Status::Cancelled => self.cancelled += 1,
            _ => self.failed += 1,
        }
    }
}

mod ends;
mod starts;
#[cfg(test)]
mod tests;
mod upkeep;
