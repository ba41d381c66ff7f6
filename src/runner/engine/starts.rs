//! From jobs to running executions: loading the jobs into the calendar, acting on what it says
//! is due (missed rows, queued slots), and starting what the dispatcher picks (claims, launch).

use chrono::{DateTime, Utc};

use super::{ends, Engine, Event};
use crate::config::Config;
use crate::runner::calendar::Fire;
use crate::runner::chains::Chains;
use crate::runner::dispatch::{Claimant, Picked, Running, Slot, OVERLAP, WAITING};
use crate::runner::execute;
use crate::runner::process::Cancel;
use crate::runner::recorder::Record;
use crate::store::{JobFilter, NewExecution, Status, StoreError, Trigger};

impl Engine<'_> {
    /// (Re)read settings and jobs. Unchanged jobs keep their next slot.
    pub(super) fn reload(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut settings = std::collections::HashMap::new();
        for system in self.store.systems()? {
            let s = self.store.settings(&system)?;
            settings.insert(system, s);
        }
        let jobs = self.store.jobs(&JobFilter {
            active: Some(true),
            ..Default::default()
        })?;
        self.housekeeping.reload_failed = false;
        let refused = self.calendar.load(settings, jobs, &self.opts.labels, now);
        self.chains = Chains::load(self.calendar.jobs());
        for (job, why) in refused {
            self.recorder.write(Record::Row(NewExecution {
                error_message: Some(format!(
                    "not scheduled: {why}; fix the job (cronmgr edit {}, or its jobs.d file)",
                    job.name
                )),
                ..ends::row(job.id, Status::Skipped, now, None, Trigger::Schedule, 0)
            }));
        }
        self.monitor.reloading();
        for job in self.calendar.jobs() {
            let settings = self.calendar.settings_for(&job.system);
            self.monitor.track(job, &settings);
        }
        let cal = &self.calendar;
        self.monitor.reenabled(
            &self.store,
            |id| {
                let job = &*cal.get(id)?.job;
                Some((job, cal.systems().get(&job.system).cloned()?))
            },
            now,
        );
        // The jobs as read and the parsing scratch are gone; let the allocator give them back.
        self.store.shrink_memory();
        Ok(())
    }

    /// Reload in the loop: a failure keeps the jobs loaded and is tried again soon.
    pub(super) fn reload_in_loop(&mut self) {
        if let Err(e) = self.reload(self.clock.now()) {
            tracing::error!(error = %e, "could not read the jobs; keeping those loaded, trying again");
            self.housekeeping.reload_failed = true;
        }
    }

    /// SIGHUP: read the config file again, and take it only if start-up would (it parses, and
    /// neither it nor a folder above it can be changed by others); else keep the old one, saying why.
    pub(super) fn reload_config(&mut self) {
        let loaded = Config::load(self.opts.config_path.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                crate::runner::modes::check_config(&c.path)?;
                Ok(c)
            });
        match loaded {
            Ok(c) => {
                tracing::info!(path = %c.path.display(), "config reloaded");
                self.monitor.smtp_changed(&c.smtp);
                self.opts.config = c;
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "keeping the old config"),
        }
    }

    /// Do what the calendar says: record missed slots, queue due ones.
    pub(super) fn act(&mut self, fires: Vec<Fire>, now: DateTime<Utc>) {
        for fire in fires {
            match fire {
                Fire::Missed {
                    job_id,
                    first,
                    last,
                    slots,
                    why,
                } => {
                    let ran = self.ran_elsewhere(job_id, first, last);
                    if ran >= slots {
                        tracing::debug!(job_id, slots, "the fleet's other runners ran the gap");
                        continue;
                    }
                    let message =
                        crate::runner::missed::text(slots - ran, slots, first, last, &why);
                    if let Some(e) = self.calendar.get(job_id) {
                        tracing::warn!(job = %e.job.name, system = %e.job.system, "{message}");
                    }
                    self.recorder.write(Record::Row(NewExecution {
                        error_message: Some(message),
                        ..ends::row(job_id, Status::Missed, first, None, Trigger::Schedule, 0)
                    }));
                    self.summary.missed += 1;
                }
                Fire::Run { job_id, at } => {
                    let slot = self.slot(job_id, at);
                    self.enqueue(slot, now);
                }
                Fire::Reboot { job_id, at } => {
                    let slot = self.slot(job_id, at);
                    self.dispatch.push(slot);
                }
            }
        }
    }

    /// Queue a due slot; one of a job that may not overlap and already has one waiting is
    /// recorded as skipped.
    pub(super) fn enqueue(&mut self, slot: Slot, now: DateTime<Utc>) {
        let alone = (self.calendar.get(slot.job_id)).is_some_and(|e| !e.job.allow_concurrent);
        if let Err(slot) = self.dispatch.enqueue(slot, !alone) {
            self.record_skipped(&slot, WAITING, now);
        }
    }

    /// On a shared database: how many of the job's slots from `first` to `last` have rows
    /// (another runner ran them while this one was paused, blocked or away); 0 on SQLite, where
    /// this runner is the only one. A failed read counts none: the row errs towards saying.
    fn ran_elsewhere(&self, job_id: i64, first: DateTime<Utc>, last: DateTime<Utc>) -> usize {
        if self.fleet.is_none() {
            return 0;
        }
        self.store
            .slots_with_rows(job_id, first, last)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, job_id, "could not read which slots the fleet ran");
                0
            })
    }

    pub(super) fn slot(&self, job_id: i64, at: DateTime<Utc>) -> Slot {
        let runner = self.fleet.as_ref().map(|f| f.id);
        Slot::new(&self.calendar, job_id, at, 1, Trigger::Schedule, runner)
    }

    pub(super) fn record_skipped(&mut self, slot: &Slot, why: &str, now: DateTime<Utc>) {
        self.recorder.write(Record::Row(NewExecution {
            error_message: Some(format!("skipped: {why}")),
            caused_by: slot.cause,
            ..ends::row(
                slot.job_id,
                Status::Skipped,
                slot.scheduled_for,
                Some(now),
                slot.trigger,
                slot.attempt,
            )
        }));
        self.summary.skipped += 1;
        if let Some(e) = self.calendar.get(slot.job_id) {
            tracing::info!(job = %e.job.name, slot = %crate::output::utc(slot.scheduled_for), "skipped: {why}");
        }
    }

    /// Write the jobs' next slots (after start-up or a clock change).
    pub(super) fn persist_next_runs(&mut self) {
        let updates = self.calendar.unwritten_next_runs();
        if !updates.is_empty() {
            self.recorder.write(Record::NextRuns(updates));
        }
    }

    /// Start what the caps allow, most urgent first: pick the slots, claim them all in one
    /// transaction, then launch each.
    pub(super) fn start_ready(&mut self, now: DateTime<Utc>) {
        if let Some(f) = &mut self.fleet {
            f.claim_again = false;
            f.at_cap = false;
            f.claim_failed = false;
        }
        if self.life.stop.stopping() || !self.dispatch.has_waiting() {
            return;
        }
        if let Some(f) = &mut self.fleet {
            // Past its lease by its own count, the fleet may have declared this runner lost
            // and be running its slots: it starts nothing until a heartbeat lands.
            let holds = f.holds_lease(self.clock.mono());
            let was_lapsed = std::mem::replace(&mut f.lapsed, !holds);
            if was_lapsed == holds {
                match holds {
                    false => tracing::warn!("this runner could not renew its lease in time: it starts nothing until a heartbeat lands"),
                    true => tracing::info!("lease renewed: starting work again"),
                }
            }
            if !holds {
                return;
            }
        }
        let who = Claimant {
            runner_id: self.life.runner_id,
            fleet: self.fleet.is_some(),
            cap: self.opts.max_concurrent,
        };
        let spares = self.fleet.as_ref().map_or(0.0, |f| f.spares_per_place());
        let picks = self.dispatch.pick(now, &self.calendar, who, spares);
        for slot in picks.skipped {
            self.record_skipped(&slot, OVERLAP, now);
        }
        if picks.picked.is_empty() {
            return;
        }
        let claims: Vec<(NewExecution, Option<DateTime<Utc>>)> = (picks.picked.iter())
            .map(|p| (p.new.clone(), p.next))
            .collect();
        let results = self.recorder.claim_many(&self.store, &claims, picks.want);
        let tried = results.len();
        let (mut launched, mut taken) = (0, 0);
        let mut lost = false;
        let mut picked = picks.picked.into_iter();
        // `results` first: a zip stops at the first that runs out, taking nothing more of the second.
        for (claimed, p) in results.into_iter().zip(picked.by_ref()) {
            let (name, at, attempt) = (
                &p.job.name,
                crate::output::utc(p.slot.scheduled_for),
                p.slot.attempt,
            );
            match claimed {
                Ok(Some(execution)) => {
                    launched += 1;
                    self.launch(p, execution, now)
                }
                Ok(None) => {
                    taken += 1;
                    match self.fleet {
                        Some(_) => {
                            tracing::debug!(job = %name, slot = %at, attempt, "slot taken by another runner (or skipped: still running elsewhere)")
                        }
                        None => {
                            tracing::info!(job = %name, slot = %at, attempt, "slot already claimed elsewhere; not running it")
                        }
                    }
                }
                // The fleet declared this runner lost: its slots are the others' now.
                Err(StoreError::NotInFleet { .. }) => {
                    lost = true;
                    tracing::debug!(job = %name, slot = %at, attempt, "not claimed: this runner was declared lost");
                }
                // Tried again when an end elsewhere notifies, or a second later (fleet.rs).
                Err(StoreError::FleetFull { system, cap }) => {
                    tracing::debug!(job = %name, %system, cap, "the fleet is at its cap; the slot waits");
                    self.dispatch.push(p.slot);
                    if let Some(f) = &mut self.fleet {
                        f.at_cap = true;
                    }
                }
                // A fleet's database that cannot take the claim now (away, locked): the slot
                // waits, then is recorded as missed with the reason (upkeep.rs).
                Err(e) if self.recorder.shared() && crate::runner::recorder::transient(&e) => {
                    self.claim_later(p.slot, &e, now);
                }
                Err(e) => {
                    tracing::error!(job = %name, error = %e, "could not claim the slot; not running it");
                }
            }
        }
        // Spares not tried: the places were filled before them.
        for p in picked {
            self.dispatch.push(p.slot);
        }
        if let Some(f) = &mut self.fleet {
            f.claimed(tried, taken);
            // Other runners took slots and places are still free: pick again at once, not at the
            // next event (this runner may have nothing running to wake it).
            f.claim_again = taken > 0 && launched < picks.want && self.dispatch.has_waiting();
        }
        if lost {
            tracing::warn!("the fleet declared this runner lost (its lease ran out): its slots are left to the others until its heartbeat takes it back");
            let mono = self.clock.mono();
            if let Some(f) = &mut self.fleet {
                f.heartbeat_soon(mono);
            }
        }
    }

    /// Hand a claimed execution to the spawner.
    pub(super) fn launch(&mut self, picked: Picked, execution: i64, now: DateTime<Utc>) {
        let Picked {
            mut slot,
            job,
            next,
            timeout,
            ..
        } = picked;
        // A retry's max_runtime counts from its first attempt's start.
        slot.first_started.get_or_insert(now);
        self.calendar.started(job.id, next, now);
        self.summary.started += 1;
        let live_log = crate::store::live_log_path(&self.opts.db_path, execution);
        let settings = self.calendar.settings_for(&job.system);
        let spec = execute::spec(&execute::Context {
            job: &job,
            db_path: &self.opts.db_path,
            config: &self.opts.config,
            execution_id: execution,
            attempt: slot.attempt,
            scheduled_for: slot.scheduled_for,
            timeout,
            live_log: Some(live_log.clone()),
            settings: &settings,
        });
        let cancel = Cancel::new();
        let run = Running {
            slot,
            system: job.system.clone(),
            cancel: cancel.clone(),
            timeout,
            live_log,
            started_at: now,
            builtin: (job.command != "shell").then(|| job.command.clone()),
        };
        self.dispatch.started(execution, run);
        let spec = match spec {
            Ok(spec) => spec,
            Err(refused) => {
                tracing::error!(job = %job.name, execution, error = %refused, "refused to run");
                let result = Err(format!("refused, not run: {refused}"));
                let _ = self.events.0.send(Event::Finished { execution, result });
                return;
            }
        };
        tracing::info!(job = %job.name, system = %job.system, execution, "starting");
        let inline = !self.dispatch.has_waiting();
        if let Some(pid) = self
            .spawner
            .launch(execution, spec, cancel, &self.events.0, inline)
        {
            self.recorder.write(Record::Pid { execution, pid });
        }
    }
}
