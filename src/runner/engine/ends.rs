//! How an execution ends, for the record: its row (status, output, figures, cancelled by whom),
//! and, when no retry follows, what the alert rules make of it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Engine, Event};
use crate::alert::monitor::RunEnd;
use crate::alert::Monitor;
use crate::runner::calendar::Calendar;
use crate::runner::dispatch::{Running, Slot};
use crate::runner::execute;
use crate::runner::process::Outcome;
use crate::runner::recorder::Record;
use crate::runner::recorder::Recorder;
use crate::store::{Finish, NewExecution, Status, Store, Trigger};

/// A row this runner writes about job `job_id`'s slot (not a claim: no fleet rules).
pub fn row(
    job_id: i64,
    status: Status,
    scheduled_for: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    triggered_by: Trigger,
    attempt: u32,
) -> NewExecution {
    NewExecution {
        job_id,
        status,
        scheduled_for,
        started_at,
        triggered_by,
        attempt,
        error_message: None,
        runner_pid: Some(std::process::id()),
        runner_id: None,
        fleet: None,
        caused_by: None,
    }
}

/// The end of `execution` as its row records it. `stopping`: the runner is stopping (an
/// interrupted end then says it was the shutdown's grace period).
pub fn finish(
    store: &Store,
    recorder: &Recorder,
    execution: i64,
    run: &Running,
    result: &Result<Outcome, String>,
    stopping: bool,
    now: DateTime<Utc>,
) -> Finish {
    let mut finish = match result {
        Ok(outcome) => {
            execute::finish(outcome, run.timeout, run.started_at, run.builtin.as_deref())
        }
        Err(message) => execute::not_started(message.clone(), now),
    };
    if finish.status == Status::Interrupted && stopping {
        finish.error_message = Some(
            "interrupted: the runner was stopping and the shutdown grace period ran out".into(),
        );
    }
    if let Some(by) = cancel_requested(store, recorder, execution, &finish) {
        finish.status = Status::Cancelled;
        finish.error_message = Some(crate::store::cancelled_message(&by));
    }
    // Only a job that wrote output or ran for a moment has one (unknown if it never started).
    if result.as_ref().map_or(true, |o| o.live_log) {
        let _ = std::fs::remove_file(&run.live_log);
    }
    finish
}

/// Who asked (`cronmgr kill`, in another process) for this execution to be cancelled, when its
/// end is one a cancel's signal causes. The cancel is written to the row before the signal is
/// sent, so it is there to read now; the store makes the same decision when the end is written,
/// so the row is right even if this read fails (the alert rules then see a failure).
fn cancel_requested(
    store: &Store,
    recorder: &Recorder,
    execution: i64,
    finish: &Finish,
) -> Option<String> {
    let id = recorder.row_id(execution);
    // A provisional id (its claim has not landed): no row, so nobody could kill it.
    if !matches!(
        finish.status,
        Status::Failed | Status::Timeout | Status::Interrupted
    ) || id < 0
    {
        return None;
    }
    match store.cancelled_by(id) {
        Ok(by) => by,
        Err(e) => {
            tracing::warn!(execution = id, error = %e, "could not read whether the execution was cancelled");
            None
        }
    }
}

/// A run ended for good (no retry follows): the job's success marks, alert rules, the silence
/// deadline. Returns the job's id when the rules disabled it.
pub fn alert(
    store: &Store,
    monitor: &mut Monitor,
    calendar: &mut Calendar,
    execution_id: i64,
    slot: &Slot,
    finish: &Finish,
    now: DateTime<Utc>,
) -> Option<i64> {
    let job = match finish.status {
        Status::Success => calendar.succeeded(slot.job_id, finish.finished_at)?.clone(),
        _ => crate::store::Job::clone(&calendar.get(slot.job_id)?.job),
    };
    let settings = calendar.settings_for(&job.system);
    if finish.status == Status::Success {
        monitor.track(&job, &settings);
    }
    let end = RunEnd {
        execution_id,
        status: finish.status,
        attempt: slot.attempt,
        scheduled_for: slot.scheduled_for,
        duration_ms: finish.duration_ms,
        exit_code: finish.exit_code,
        error: finish.error_message.as_deref(),
        output: &finish.output,
    };
    monitor
        .after_run(store, &job, &settings, &end, now)
        .then_some(job.id)
}

/// With a backlog, how long the loop waits after an execution ends for others to end too, and
/// how many ends it gathers at most: their records and the claims of the executions that take
/// their places then share one transaction (a group commit) instead of one each.
const GATHER_WINDOW: Duration = Duration::from_millis(2);
const GATHER_MAX: usize = 8;

impl Engine<'_> {
    /// An execution ended while others wait for a place: handle the events of the next moment
    /// too (see [`GATHER_WINDOW`]), so the places freed are filled in one transaction.
    pub(super) fn gather_ends(&mut self) {
        let until = Instant::now() + GATHER_WINDOW;
        let mut ends = 1;
        while ends < GATHER_MAX && !self.life.stop.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.1.recv_timeout(left) {
                Ok(event) => {
                    ends += usize::from(matches!(event, Event::Finished { .. }));
                    self.handle(event);
                }
                Err(_) => break,
            }
        }
    }

    pub(super) fn handle(&mut self, event: Event) {
        match event {
            Event::Spawned { execution, pid } => {
                self.recorder.spawned(execution, pid, super::PID_WAIT);
            }
            Event::Finished { execution, result } => self.finished(execution, result),
            Event::Signal(sig) => self.signal(sig),
            Event::Notice(notice) => {
                if let Some(f) = &mut self.fleet {
                    tracing::debug!(?notice, "notified");
                    f.notice(&notice, self.clock.mono());
                }
            }
        }
    }

    pub(super) fn finished(&mut self, execution: i64, result: Result<Outcome, String>) {
        let Some(run) = self.dispatch.ended(execution) else {
            return;
        };
        let now = self.clock.now();
        let stopping = self.life.stop.stopping();
        let finish = finish(
            &self.store,
            &self.recorder,
            execution,
            &run,
            &result,
            stopping,
            now,
        );
        let name = (self.calendar.get(run.slot.job_id)).map_or("", |e| e.job.name.as_str());
        self.summary.count(finish.status);
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
        let retried = matches!(finish.status, Status::Failed | Status::Timeout)
            && !refused
            && self.retry(run.slot.clone(), now);
        if !retried {
            let id = self.recorder.row_id(execution);
            // Before the alert rules, which may disable the parent (its children fire anyway).
            self.fire_chains(&run.slot, id, finish.status, now);
            let disabled = alert(
                &self.store,
                &mut self.monitor,
                &mut self.calendar,
                id,
                &run.slot,
                &finish,
                now,
            );
            if let Some(job_id) = disabled {
                self.calendar.remove(job_id);
                self.dispatch.forget(job_id);
            }
        }
        // The status line, the runner state and the metrics file cost a walk or a write each: in a
        // burst, at most once a second (housekeeping catches up).
        if self.housekeeping.report_due(self.clock.mono()) {
            // Land this end first, so the metrics file counts it.
            self.flush_records();
            self.report(now);
        }
    }

    /// A job's execution `cause` ended for good (no retry follows) with `status`: queue a start
    /// of each child whose `--after` that end meets. Each is a slot like any other (caps,
    /// priority, overlap, retries), triggered by `chain` and caused by `cause`; its claim also
    /// checks that the database records the parent's end as one a chain fires on, and takes
    /// one start per cause, so on a fleet a chain fires once (see `claims.rs`).
    fn fire_chains(&mut self, parent: &Slot, cause: i64, status: Status, now: DateTime<Utc>) {
        let Some(entry) = self.calendar.get(parent.job_id) else {
            return;
        };
        let children = (self.chains).fired_by(&entry.job.system, &entry.job.name, status);
        if children.is_empty() {
            return;
        }
        let name = entry.job.name.clone();
        if self.life.stop.stopping() {
            tracing::warn!(job = %name, execution = cause, "the runner is stopping: the jobs after it are not started");
            return;
        }
        let runner = self.fleet.as_ref().map(|f| f.id);
        for child in children {
            let mut slot = Slot::new(&self.calendar, child, now, 1, Trigger::Chain, runner);
            slot.cause = Some(cause);
            if let Some(e) = self.calendar.get(child) {
                tracing::info!(job = %e.job.name, after = %name, execution = cause, %status, "chain: queued");
            }
            self.enqueue(slot, now);
        }
    }

    /// Queue the next attempt of `slot` if its job has one left (and the runner is not stopping).
    pub(super) fn retry(&mut self, slot: Slot, now: DateTime<Utc>) -> bool {
        if self.life.stop.stopping() {
            return false;
        }
        match self.calendar.get(slot.job_id) {
            Some(entry) => self.dispatch.retry(slot, &entry.job, now),
            None => false,
        }
    }
}
