//! The engine's upkeep between turns: changes made elsewhere, the fleet's tick, retention,
//! silence deadlines, and reporting (runner state, metrics, systemd status, storage alerts).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Engine, WRITE_WAIT};
use crate::runner::dispatch::Slot;
use crate::runner::fleet;
use crate::runner::housekeeping::{self, Load};
use crate::runner::recorder::Record;
use crate::store::{NewExecution, Status, StoreError};

/// A refusal to write lasting this long raises an alert once the database takes writes again.
const STORAGE_ALERT: Duration = Duration::from_secs(2);
/// A shared database out of reach this long raises an alert once it is back: a restart or a
/// failover takes seconds and pages nobody.
const UNREACHABLE_ALERT: Duration = Duration::from_secs(30);
/// On a shared database that cannot take a claim now, a slot waits this long past its time for
/// the database; then it is recorded as missed, with the reason.
pub(super) const CLAIM_PATIENCE: Duration = Duration::from_secs(10);

impl Engine<'_> {
    /// Reload if another connection changed jobs or settings since the last look.
    pub(super) fn check_changes(&mut self) {
        match self.housekeeping.changed(&self.store) {
            Ok(false) => {}
            Ok(true) => {
                tracing::debug!("jobs or settings changed: reloading");
                self.reload_in_loop();
            }
            Err(e) => tracing::warn!(error = %e, "could not check for changes; trying later"),
        }
    }

    /// What is due of: the fleet's checks, the watchdog, retention, a put-off report, a failed
    /// reload, and once a minute changes nobody nudged us about and the host checks.
    pub(super) fn housekeeping(&mut self) {
        let mono = self.clock.mono();
        if let Some(f) = &mut self.fleet {
            let due = f.due(mono);
            if due != fleet::Due::default() {
                // A connection lost while idle comes back here (writes revive it too).
                let revived = self.store.revive();
                if let Err(e) = &revived {
                    tracing::debug!(error = %e, "the database is still out of reach");
                }
                f.reached(revived.is_ok(), mono);
            }
            if due.check {
                self.check_changes();
            }
            if due.heartbeat || due.reap {
                self.fleet_tick(mono, due);
            }
        }
        if self.life.notifier.watchdog.is_some() {
            self.life.notifier.send("WATCHDOG=1");
        }
        let writable = !self.life.stop.stopping() && !self.recorder.is_failing();
        if self.housekeeping.prune_pending() && writable {
            self.prune_step();
        }
        if self.housekeeping.report_late(mono) {
            self.report(self.clock.now());
        }
        if self.housekeeping.reload_failed {
            self.reload_in_loop();
        }
        let now = self.clock.now();
        let next_start = self.next_start_in(now);
        if !self.housekeeping.minute_due(mono, next_start) {
            return;
        }
        self.check_changes();
        self.monitor
            .host_checks(&self.store, self.calendar.settings(), now);
        if self.housekeeping.load_changed(self.load()) {
            let load = self.load();
            (self.housekeeping).write_state(&self.store, load, self.life.started_at, now);
        }
        // Retention, hourly: the first batch in this wake-up, more only if it came back full.
        if self.housekeeping.retention_due(mono) && writable {
            self.prune_step();
        }
    }

    /// On a shared database: heartbeat, look at the other runners' leases, and retry (per each
    /// job's policy) the executions of runners declared lost.
    pub(super) fn fleet_tick(&mut self, mono: Instant, due: fleet::Due) {
        let Some(f) = &mut self.fleet else {
            return;
        };
        let mut due = due;
        if due.reap && !f.may_reap(mono) {
            // Back from an outage: the others need a lease to heartbeat again.
            due.reap = false;
            f.reaped(mono, None);
        }
        let now = self.clock.now();
        let tick = fleet::tick(&self.store, f.id, due, now);
        if due.reap {
            f.reaped(mono, tick.looked);
        }
        if tick.renewed {
            f.renewed(mono);
        }
        if tick.unreachable {
            f.reached(false, mono);
        }
        if tick.was_lost {
            self.stop_taken_over();
        }
        for e in tick.interrupted {
            // A cancelled one stays stopped: a person asked for it (see `cronmgr kill`).
            if self.calendar.get(e.job_id).is_none() || e.status == Status::Cancelled {
                continue;
            }
            let mut slot = self.slot(e.job_id, e.scheduled_for);
            slot.attempt = e.attempt;
            slot.trigger = e.triggered_by;
            slot.first_started = e.started_at;
            self.retry(slot, now);
        }
    }

    /// This runner was declared lost: the executions whose rows the fleet marked `interrupted`
    /// (and may run elsewhere) are no longer this runner's. Stop their process groups, so that a
    /// paused or cut-off runner's jobs overlap a new owner's for no longer than it takes this
    /// runner to learn it (its next heartbeat). Their ends are not written over the rows (an end
    /// is written only over a `running` row). Executions it started since keep running.
    fn stop_taken_over(&mut self) {
        for id in self.dispatch.running_ids() {
            match self.store.execution(id) {
                Ok(e) if e.status != Status::Running => {
                    tracing::warn!(
                        execution = id,
                        job = %e.job,
                        status = %e.status,
                        "stopping an execution taken over by the fleet while this runner was lost"
                    );
                    self.dispatch.cancel(id);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, execution = id, "could not read the execution")
                }
            }
        }
    }

    pub(super) fn prune_step(&mut self) {
        let now = self.clock.now();
        if self
            .housekeeping
            .prune_step(&self.store, self.calendar.systems(), now)
        {
            // Check for changes now, so the probe has seen this cycle's commits and the next
            // minute needs no SQL; then give back the cache pages and heap the cycle used.
            self.check_changes();
            self.store.shrink_memory();
        }
    }

    /// Open the `silent` condition of every job whose silence deadline has passed.
    pub(super) fn check_silence(&mut self, now: DateTime<Utc>) {
        for id in self.monitor.due(now) {
            if let Some(entry) = self.calendar.get(id) {
                let settings = self.calendar.settings_for(&entry.job.system);
                self.monitor.silent(&self.store, &entry.job, &settings, now);
            }
        }
    }

    /// (running, queued, capacity), as `runner_state` shows them.
    pub(super) fn load(&self) -> Load {
        let capacity = self.opts.max_concurrent.unwrap_or_else(|| {
            (self.calendar.settings())
                .filter(|s| s.is_enabled)
                .map(|s| s.max_concurrent_jobs as usize)
                .sum()
        });
        Load {
            running: self.dispatch.running_count() as u32,
            queued: self.dispatch.queued_count() as u32,
            capacity: capacity as u32,
        }
    }

    /// The runner state, the metrics file and (once it is ready) systemd's status line.
    pub(super) fn report(&mut self, now: DateTime<Utc>) {
        let load = self.load();
        (self.housekeeping).write_state(&self.store, load, self.life.started_at, now);
        let (store, path) = (&self.store, self.opts.metrics_file.as_deref());
        housekeeping::write_metrics(store, path, true, load, self.life.started_at);
        if self.life.notifier.is_active() && self.life.ready {
            self.life
                .notifier
                .send(&format!("STATUS={}", self.status_line()));
        }
    }

    /// Write what waits for the database, in one transaction; when a long refusal ends, raise an
    /// alert about it. While failing, attempts fail at once (no lock wait): the loop keeps
    /// starting jobs on time.
    pub(super) fn flush_records(&mut self) {
        self.recorder.release_pids(false);
        if self.recorder.backlog() > 0 {
            self.recorder.flush(&self.store);
            self.recorder.sync_lock_wait(&self.store, WRITE_WAIT);
        }
        if let Some(gone) = self.store.fatal() {
            if !self.life.stop.stopping() {
                tracing::error!(error = %gone, "the database cannot be used any more; stopping");
                self.signal(libc::SIGTERM);
            }
        }
        let Some(outage) = self.recorder.take_outage() else {
            return;
        };
        let lasted = crate::duration::Human(Duration::from_secs(outage.lasted.as_secs().max(1)));
        let (why, held) = (&outage.why, outage.held);
        let now = self.clock.now();
        if outage.unreachable {
            if outage.lasted >= UNREACHABLE_ALERT {
                let summary = format!(
                    "cronmgr could not reach its database for {lasted} ({why}); {held} records waited and have all landed; slots that could not be claimed are recorded as missed"
                );
                self.monitor.database_unreachable(
                    &self.store,
                    self.calendar.settings(),
                    &summary,
                    now,
                );
            }
        } else if outage.lasted >= STORAGE_ALERT && held > 0 {
            let summary = format!(
                "cronmgr could not write to its database for {lasted} ({why}); {held} records waited and have all landed"
            );
            self.monitor
                .storage_blocked(&self.store, self.calendar.settings(), &summary, now);
        }
    }

    /// A shared database could not take this slot's claim now (out of reach, or another
    /// member's lock held too long): the slot waits, tried again in [`fleet::CLAIM_RETRY`], up
    /// to [`CLAIM_PATIENCE`];
    /// then it is recorded as missed, with the reason.
    ///
    /// The patience counts from the first refusal of this slot's claim, not from the slot's
    /// time: deep in a long burst every slot is late, and a claim that meets another member's
    /// lock once is not an outage.
    pub(super) fn claim_later(&mut self, mut slot: Slot, why: &StoreError, now: DateTime<Utc>) {
        let late = (now - slot.due).to_std().unwrap_or_default();
        let since = *slot.refused_since.get_or_insert(now);
        if (now - since).to_std().unwrap_or_default() < CLAIM_PATIENCE {
            self.dispatch.push(slot);
            if let Some(f) = &mut self.fleet {
                f.claim_failed = true;
            }
            return;
        }
        let reason = if why.is_unreachable() {
            "the database was unreachable"
        } else {
            "the database did not take the claim in time"
        };
        let message = format!(
            "missed: {reason} for {}s past the slot ({why})",
            late.as_secs()
        );
        if let Some(e) = self.calendar.get(slot.job_id) {
            tracing::warn!(job = %e.job.name, slot = %crate::output::utc(slot.scheduled_for), "{message}");
        }
        self.recorder.write(Record::Row(NewExecution {
            error_message: Some(message),
            ..super::ends::row(
                slot.job_id,
                Status::Missed,
                slot.scheduled_for,
                None,
                slot.trigger,
                slot.attempt,
            )
        }));
        self.summary.missed += 1;
    }

    pub(super) fn status_line(&self) -> String {
        let mut line = format!(
            "{} jobs, {} running, {} queued",
            self.calendar.len(),
            self.dispatch.running_count(),
            self.dispatch.queued_count()
        );
        if let Some((name, at)) = self.calendar.earliest() {
            line.push_str(&format!("; next: {name} at {}", crate::output::utc(at)));
        }
        line
    }
}
