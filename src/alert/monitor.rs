//! The runner's alert logic: applies [`super::rules`] to finished runs, silence deadlines and host
//! samples, and records what they say in the store's outbox, waking the delivery thread.
//!
//! Owned by the runner's loop (the thread that owns the database). Nothing here may stop the
//! runner: database errors are logged and the alert is skipped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::delivery::Deliverer;
use super::rules::{self, Action, Overload, Policy};
use crate::duration::human_secs;
use crate::host::{self, CpuSampler};
use crate::store::{AlertKind, Job, NewAlert, Settings, Status, Store};

/// How often, at most, a success looks again at which jobs have open conditions, in case another
/// connection opened or closed one (see `Monitor::may_have_open`).
const OPEN_JOBS_RECHECK: Duration = Duration::from_millis(100);

/// What the monitor needs to know about an execution that ended.
#[derive(Debug, Clone)]
pub struct RunEnd<'a> {
    pub execution_id: i64,
    pub status: Status,
    pub attempt: u32,
    pub scheduled_for: DateTime<Utc>,
    pub duration_ms: i64,
    pub exit_code: Option<i32>,
    pub error: Option<&'a str>,
    pub output: &'a str,
}

pub struct Monitor {
    deliverer: Option<Deliverer>,
    /// Silence deadlines, earliest first; stale pairs are skipped.
    silence: BinaryHeap<Reverse<(DateTime<Utc>, i64)>>,
    deadlines: HashMap<i64, DateTime<Utc>>,
    cpu: CpuSampler,
    overload: HashMap<String, Overload>,
    /// Whether each system's `cpu` and `disk` condition is open, as last read or written here:
    /// the minute's host check touches the database only when a condition changes. Forgotten at
    /// each reload, as an alert resolved with the CLI changes the database.
    host_open: HashMap<(String, AlertKind), bool>,
    /// The jobs that may have an open condition (a superset), so that a success looks for
    /// conditions to resolve only for those, not with a query per run. None: to be read.
    open_jobs: Option<HashSet<i64>>,
    /// The database's change marker when `open_jobs` was read, and when it was last compared:
    /// another connection's commit (a `run-now`, the CLI) makes the set be read again.
    open_jobs_version: i64,
    open_jobs_checked: Option<Instant>,
    /// Where the database and the execution logs live.
    paths: Vec<PathBuf>,
}

impl Monitor {
    pub fn new(db_path: &Path, deliverer: Option<Deliverer>) -> Monitor {
        let base = crate::store::local_base(db_path);
        let mut paths = vec![base
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()];
        let logs = crate::store::live_log_path(db_path, 0);
        if let Some(dir) = logs.parent() {
            paths.push(dir.to_path_buf());
        }
        Monitor {
            deliverer,
            silence: BinaryHeap::new(),
            deadlines: HashMap::new(),
            cpu: CpuSampler::default(),
            overload: HashMap::new(),
            host_open: HashMap::new(),
            open_jobs: None,
            open_jobs_version: 0,
            open_jobs_checked: None,
            paths,
        }
    }

    fn wake(&self) {
        if let Some(d) = &self.deliverer {
            d.wake();
        }
    }

    /// Tell the delivery thread about a reloaded config file.
    pub fn smtp_changed(&self, smtp: &crate::config::SmtpConfig) {
        if let Some(d) = &self.deliverer {
            let _ = d
                .sender()
                .send(super::delivery::Message::Smtp(Box::new(smtp.clone())));
        }
    }

    /// Deliver what is due for up to `grace`, then stop the delivery thread.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(d) = self.deliverer.take() {
            d.stop(grace);
        }
    }

    fn record(&mut self, what: &str, r: crate::store::Result<Option<i64>>) {
        self.open_jobs = None; // this monitor changed the conditions: read them again
        match r {
            Ok(Some(id)) => {
                tracing::info!(alert = id, "alert: {what}");
                self.wake();
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not record an alert ({what})"),
        }
    }

    // ---- runs ------------------------------------------------------------------------------

    /// A run ended for good (no retry follows). Returns true when the job was auto-disabled.
    pub fn after_run(
        &mut self,
        store: &Store,
        job: &Job,
        settings: &Settings,
        run: &RunEnd<'_>,
        now: DateTime<Utc>,
    ) -> bool {
        match self.try_after_run(store, job, settings, run, now) {
            Ok(disabled) => disabled,
            Err(e) => {
                tracing::error!(job = %job.name, error = %e, "alert rules failed");
                false
            }
        }
    }

    fn try_after_run(
        &mut self,
        store: &Store,
        job: &Job,
        settings: &Settings,
        run: &RunEnd<'_>,
        now: DateTime<Utc>,
    ) -> crate::store::Result<bool> {
        let policy = Policy::of(job, settings);
        let streak = if rules::counts_as_failure(run.status) {
            store.bump_failure_streak(job.id)?
        } else {
            0
        };
        let mut disabled = false;
        for action in rules::after_run(&policy, run.status, streak) {
            match action {
                Action::Open { kind, loud } => {
                    let summary = match kind {
                        AlertKind::Escalated => {
                            format!("{} has failed {streak} times in a row", job.name)
                        }
                        AlertKind::Timeout => format!(
                            "{} timed out{}",
                            job.name,
                            run.error.map(|e| format!(" ({e})")).unwrap_or_default()
                        ),
                        _ => format!(
                            "{} failed{}",
                            job.name,
                            run.error.map(|e| format!(" ({e})")).unwrap_or_default()
                        ),
                    };
                    let alert = self.job_alert(job, settings, kind, summary, run, streak, loud);
                    self.record(&alert.summary.clone(), store.open_alert(&alert, now));
                }
                Action::Disable { loud } => {
                    let reason = format!(
                        "disabled automatically after {streak} consecutive failures (last: {})",
                        run.error.unwrap_or(run.status.as_str())
                    );
                    let mut alert = self.job_alert(
                        job,
                        settings,
                        AlertKind::Disabled,
                        format!(
                            "{} {reason}; `cronmgr enable {}` to resume",
                            job.name, job.name
                        ),
                        run,
                        streak,
                        loud,
                    );
                    if !policy.alerts {
                        alert.targets.clear();
                    }
                    tracing::warn!(job = %job.name, %reason, "auto-disabling job");
                    self.record(
                        "job disabled",
                        store.auto_disable(job.id, &reason, &alert, now),
                    );
                    self.deadlines.remove(&job.id);
                    disabled = true;
                }
                Action::Resolve(kinds) => {
                    if !self.may_have_open(store, job.id)? {
                        continue;
                    }
                    let open = store.open_kinds(&job.system, Some(job.id))?;
                    if !kinds.iter().any(|k| open.contains(k)) {
                        continue;
                    }
                    let loud = open.contains(&AlertKind::Escalated);
                    let summary = format!("{} succeeded again", job.name);
                    let alert =
                        self.job_alert(job, settings, AlertKind::Failed, summary, run, 0, loud);
                    let r = store.resolve_alerts(&kinds, &alert, now);
                    self.record("job recovered", r.map(|o| o.map(|(id, _)| id)));
                }
            }
        }
        Ok(disabled)
    }

    /// Can the job have an open condition? Exact for conditions this monitor wrote; another
    /// connection's are seen within [`OPEN_JOBS_RECHECK`]. On SQLite the set is read again when
    /// `data_version` (which covers every table) moved; on PostgreSQL, whose change counter
    /// covers only jobs and settings, at each recheck: a query every 100 ms of a burst instead
    /// of one a success, each a round trip the runner's loop waits for.
    fn may_have_open(&mut self, store: &Store, job_id: i64) -> crate::store::Result<bool> {
        if self
            .open_jobs_checked
            .is_none_or(|t| t.elapsed() >= OPEN_JOBS_RECHECK)
        {
            self.open_jobs_checked = Some(Instant::now());
            let moved = match store.backend() {
                crate::store::Backend::Sqlite => {
                    let version = store.change_marker()?;
                    std::mem::replace(&mut self.open_jobs_version, version) != version
                }
                _ => true,
            };
            if moved {
                self.open_jobs = None;
            }
        }
        let jobs = match &mut self.open_jobs {
            Some(jobs) => jobs,
            None => self.open_jobs.insert(store.jobs_with_open_conditions()?),
        };
        Ok(jobs.contains(&job_id))
    }

    #[allow(clippy::too_many_arguments)]
    fn job_alert(
        &self,
        job: &Job,
        settings: &Settings,
        kind: AlertKind,
        summary: String,
        run: &RunEnd<'_>,
        streak: u32,
        loud: bool,
    ) -> NewAlert {
        NewAlert {
            system: job.system.clone(),
            job_id: Some(job.id),
            job: Some(job.name.clone()),
            kind,
            summary,
            details: json!({
                "status": run.status,
                "execution_id": run.execution_id,
                "scheduled_for": crate::output::utc(run.scheduled_for),
                "attempt": run.attempt,
                "duration_ms": run.duration_ms,
                "exit_code": run.exit_code,
                "error": run.error,
                "output_tail": super::payload::tail(run.output, super::payload::TAIL_CHARS),
                "failure_streak": streak,
                "escalated": loud,
            }),
            execution_id: Some(run.execution_id),
            targets: if job.alerts_enabled {
                super::targets(Some(job), settings, loud)
            } else {
                Vec::new()
            },
        }
    }

    // ---- missed runs (silence) ----------------------------------------------------------

    /// Before a reload: forget every silence deadline (the reload tracks the jobs again) and what
    /// is known of the host conditions (the database may have changed).
    pub fn reloading(&mut self) {
        self.deadlines.clear();
        self.silence.clear();
        self.host_open.clear();
    }

    /// (Re)compute the job's silence deadline.
    pub fn track(&mut self, job: &Job, settings: &Settings) {
        match rules::silence_deadline(&Policy::of(job, settings), job) {
            Some(t) => {
                if self.deadlines.insert(job.id, t) != Some(t) {
                    self.silence.push(Reverse((t, job.id)));
                }
            }
            None => {
                self.deadlines.remove(&job.id);
            }
        }
    }

    /// The earliest silence deadline still pending.
    pub fn next_deadline(&mut self) -> Option<DateTime<Utc>> {
        while let Some(Reverse((t, id))) = self.silence.peek().copied() {
            if self.deadlines.get(&id) == Some(&t) {
                return Some(t);
            }
            self.silence.pop();
        }
        None
    }

    /// The jobs whose silence deadline has passed (each returned once per deadline).
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(t) = self.next_deadline() {
            if t > now {
                break;
            }
            if let Some(Reverse((_, id))) = self.silence.pop() {
                self.deadlines.remove(&id);
                out.push(id);
            }
        }
        out
    }

    /// The job has not succeeded for its max_silence: open its `silent` condition.
    pub fn silent(&mut self, store: &Store, job: &Job, settings: &Settings, now: DateTime<Utc>) {
        let policy = Policy::of(job, settings);
        let Some(max) = policy.max_silence else {
            return;
        };
        match store.open_kinds(&job.system, Some(job.id)) {
            Ok(open) if open.contains(&AlertKind::Silent) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not read open alerts");
                return;
            }
        }
        let since = match job.last_success_at {
            Some(t) => format!("its last success was at {}", crate::output::utc(t)),
            None => "it has never succeeded".to_string(),
        };
        let alert = NewAlert {
            system: job.system.clone(),
            job_id: Some(job.id),
            job: Some(job.name.clone()),
            kind: AlertKind::Silent,
            summary: format!(
                "{} has not succeeded for {} ({since})",
                job.name,
                human_secs(max)
            ),
            details: json!({
                "max_silence": max,
                "last_success_at": job.last_success_at.map(crate::output::utc),
                "last_run_at": job.last_run_at.map(crate::output::utc),
                "failure_streak": job.failure_streak,
            }),
            execution_id: None,
            targets: super::targets(Some(job), settings, false),
        };
        tracing::warn!(job = %job.name, "missed run: no success within max_silence");
        self.record("job silent", store.open_alert(&alert, now));
    }

    // ---- re-enabled jobs -------------------------------------------------------------------

    /// Close the `disabled` condition of jobs that are active again (`cronmgr enable`).
    pub fn reenabled<'j>(
        &mut self,
        store: &Store,
        active: impl Fn(i64) -> Option<(&'j Job, Settings)>,
        now: DateTime<Utc>,
    ) {
        let open = match store.open_conditions() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "could not read open alerts");
                return;
            }
        };
        for (_, job_id, kind) in open {
            let Some((job, settings)) = job_id
                .filter(|_| kind == AlertKind::Disabled)
                .and_then(&active)
            else {
                continue;
            };
            let alert = NewAlert {
                system: job.system.clone(),
                job_id: Some(job.id),
                job: Some(job.name.clone()),
                kind: AlertKind::Disabled,
                summary: format!("{} was enabled again", job.name),
                details: json!({}),
                execution_id: None,
                targets: if job.alerts_enabled {
                    super::targets(Some(job), &settings, false)
                } else {
                    Vec::new()
                },
            };
            let r = store.resolve_alerts(&[AlertKind::Disabled], &alert, now);
            self.record("job re-enabled", r.map(|o| o.map(|(id, _)| id)));
        }
    }

    // ---- the host --------------------------------------------------------------------------

    /// Sample the CPU and the disk and open or close each system's `cpu` and `disk` conditions.
    pub fn host_checks<'s>(
        &mut self,
        store: &Store,
        systems: impl Iterator<Item = &'s Settings>,
        now: DateTime<Utc>,
    ) {
        let busy = self.cpu.sample();
        let free = self
            .paths
            .iter()
            .filter_map(|p| host::free_percent(p).map(|f| (f, p)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(f, p)| (f, p.clone()));
        for s in systems {
            if let Some(busy) = busy {
                let over = self.overload.entry(s.system.clone()).or_default().sample(
                    busy,
                    s.cpu_threshold,
                    s.cpu_window,
                    now,
                );
                self.host_condition(store, s, AlertKind::Cpu, over, now, || {
                    let summary = if over {
                        overload_summary(s.cpu_threshold, s.cpu_window, busy)
                    } else {
                        format!("host CPU back under {}% (now {busy:.0}%)", s.cpu_threshold)
                    };
                    let details = json!({"cpu_percent": busy, "threshold": s.cpu_threshold});
                    (summary, details)
                });
            }
            if let Some((free, path)) = &free {
                let free = *free;
                let low = free < f64::from(s.disk_min_free);
                self.host_condition(store, s, AlertKind::Disk, low, now, || {
                    let summary = if low {
                        format!(
                            "low disk space: {free:.1}% free at {} (threshold {}%)",
                            path.display(),
                            s.disk_min_free
                        )
                    } else {
                        format!(
                            "disk space back above {}% ({free:.1}% free)",
                            s.disk_min_free
                        )
                    };
                    let details =
                        json!({"free_percent": free, "path": path, "threshold": s.disk_min_free});
                    (summary, details)
                });
            }
        }
    }

    /// The runner could not record to its database for a while (locked, full, failing): open each
    /// system's `disk` condition with what happened. The next host check resolves it when the
    /// disk has room again.
    pub fn storage_blocked<'s>(
        &mut self,
        store: &Store,
        systems: impl Iterator<Item = &'s Settings>,
        summary: &str,
        now: DateTime<Utc>,
    ) {
        for s in systems {
            self.host_condition(store, s, AlertKind::Disk, true, now, || {
                (summary.to_string(), json!({"storage": summary}))
            });
        }
    }

    /// The database a fleet shares was out of reach for long (written once it is back: until
    /// then there is nowhere to queue the alert). The storage condition, with the database's
    /// details: one open condition per system, however often it happens.
    pub fn database_unreachable<'s>(
        &mut self,
        store: &Store,
        systems: impl Iterator<Item = &'s Settings>,
        summary: &str,
        now: DateTime<Utc>,
    ) {
        for s in systems {
            self.host_condition(store, s, AlertKind::Disk, true, now, || {
                (summary.to_string(), json!({"database": summary}))
            });
        }
    }

    /// Open or resolve the system's `kind` condition when `firing` says it changed; `describe`
    /// gives the alert's summary and details then.
    fn host_condition(
        &mut self,
        store: &Store,
        s: &Settings,
        kind: AlertKind,
        firing: bool,
        now: DateTime<Utc>,
        describe: impl FnOnce() -> (String, serde_json::Value),
    ) {
        let key = (s.system.clone(), kind);
        let open = match self.host_open.get(&key) {
            Some(&open) => open,
            None => match store.open_kinds(&s.system, None) {
                Ok(o) => {
                    // Both host kinds at once: the start-up check (disk only: the CPU needs a
                    // second sample) then covers the CPU's first one too.
                    for k in [AlertKind::Cpu, AlertKind::Disk] {
                        self.host_open.insert((s.system.clone(), k), o.contains(&k));
                    }
                    o.contains(&kind)
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not read open alerts");
                    return;
                }
            },
        };
        if open == firing {
            return;
        }
        let (summary, details) = describe();
        let alert = NewAlert {
            system: s.system.clone(),
            job_id: None,
            job: None,
            kind,
            summary,
            details,
            execution_id: None,
            targets: super::targets(None, s, false),
        };
        let result = if firing {
            tracing::warn!(system = %s.system, "{}", alert.summary);
            store.open_alert(&alert, now)
        } else {
            store
                .resolve_alerts(&[kind], &alert, now)
                .map(|o| o.map(|(id, _)| id))
        };
        if result.is_ok() {
            self.host_open.insert(key, firing);
        } else {
            self.host_open.remove(&key); // read it again next time
        }
        self.record(&alert.summary, result);
    }
}

/// `host overloaded: CPU above 80% for 5m (now 93%)`; a window of 0 alerts on one sample.
fn overload_summary(threshold: u32, window: u64, busy: f64) -> String {
    let span = match window {
        0 => "at the last sample".to_string(),
        w => format!("for {}", human_secs(w)),
    };
    format!("host overloaded: CPU above {threshold}% {span} (now {busy:.0}%)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overload_says_its_window_in_words() {
        assert_eq!(
            overload_summary(80, 300, 93.4),
            "host overloaded: CPU above 80% for 5m (now 93%)"
        );
        assert_eq!(
            overload_summary(1, 0, 12.0),
            "host overloaded: CPU above 1% at the last sample (now 12%)"
        );
    }

    fn run_end(status: Status) -> RunEnd<'static> {
        RunEnd {
            execution_id: 1,
            status,
            attempt: 1,
            scheduled_for: Utc::now(),
            duration_ms: 1,
            exit_code: Some(if status == Status::Success { 0 } else { 1 }),
            error: None,
            output: "",
        }
    }

    /// On PostgreSQL with `CRONMGR_TEST_STORE_POSTGRES` (a scratch schema), else an SQLite file:
    /// the monitor reads by path, and another connection must see the same database.
    #[test]
    fn a_success_resolves_the_conditions_opened_here_and_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let store = match Store::open_in_memory().unwrap() {
            pg if pg.backend() == crate::store::Backend::Postgres => pg,
            _ => Store::open(&dir.path().join("cronmgr.db")).unwrap(),
        };
        let db = store.path().to_path_buf();
        let mut settings = store.settings("default").unwrap();
        settings.alert_on_failure = true;
        let job = store
            .insert_job(
                &Job::new("default", "j", "* * * * *", "shell"),
                Utc::now(),
                crate::store::test_by(),
            )
            .unwrap();
        let mut monitor = Monitor::new(&db, None);
        let now = Utc::now();
        let open = |store: &Store| store.open_kinds("default", Some(job.id)).unwrap();

        // A success with nothing open reads the set of jobs with conditions (empty) once.
        monitor.after_run(&store, &job, &settings, &run_end(Status::Success), now);
        // Opened and resolved by this monitor.
        monitor.after_run(&store, &job, &settings, &run_end(Status::Failed), now);
        assert_eq!(open(&store), vec![AlertKind::Failed]);
        monitor.after_run(&store, &job, &settings, &run_end(Status::Success), now);
        assert!(open(&store).is_empty());
        // (The set is known again, and empty.)
        monitor.after_run(&store, &job, &settings, &run_end(Status::Success), now);

        // Opened by another process (a failed `run-now`): the next success after the recheck
        // interval resolves it.
        let elsewhere = store.reopen().unwrap();
        let alert = NewAlert {
            system: "default".into(),
            job_id: Some(job.id),
            job: Some(job.name.clone()),
            kind: AlertKind::Failed,
            summary: "j failed".into(),
            details: json!({}),
            execution_id: None,
            targets: Vec::new(),
        };
        elsewhere.open_alert(&alert, now).unwrap();
        std::thread::sleep(OPEN_JOBS_RECHECK);
        monitor.after_run(&store, &job, &settings, &run_end(Status::Success), now);
        assert!(open(&store).is_empty(), "resolved");
    }

    #[test]
    fn a_cancelled_run_neither_alerts_nor_counts_nor_clears() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cronmgr.db");
        let store = Store::open(&db).unwrap();
        let mut settings = store.settings("default").unwrap();
        settings.disable_after = Some(2);
        let job = store
            .insert_job(
                &Job::new("default", "j", "* * * * *", "shell"),
                Utc::now(),
                crate::store::test_by(),
            )
            .unwrap();
        let mut monitor = Monitor::new(&db, None);
        let now = Utc::now();
        let streak = |store: &Store| store.job_by_id(job.id).unwrap().unwrap().failure_streak;
        assert!(!monitor.after_run(&store, &job, &settings, &run_end(Status::Failed), now));
        assert_eq!(streak(&store), 1);
        let alerts = store.alerts(Some("default"), true, 10).unwrap().len();
        for _ in 0..3 {
            assert!(!monitor.after_run(&store, &job, &settings, &run_end(Status::Cancelled), now));
        }
        assert_eq!(streak(&store), 1, "cancels do not count");
        assert_eq!(
            store.alerts(Some("default"), true, 10).unwrap().len(),
            alerts
        );
        assert_eq!(
            store.open_kinds("default", Some(job.id)).unwrap(),
            vec![AlertKind::Failed],
            "nor clear the failure"
        );
        assert!(store.job_by_id(job.id).unwrap().unwrap().is_active);
    }

    #[test]
    fn host_conditions_are_read_once_then_known_until_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cronmgr.db");
        let store = Store::open(&db).unwrap();
        let settings = store.settings("default").unwrap();
        let mut monitor = Monitor::new(&db, None);
        let now = Utc::now();
        let open = |store: &Store| store.open_kinds("default", None).unwrap();

        monitor.storage_blocked(&store, [&settings].into_iter(), "locked", now);
        assert_eq!(open(&store), vec![AlertKind::Disk]);
        // Still firing: known open, nothing written again.
        monitor.storage_blocked(&store, [&settings].into_iter(), "locked", now);
        assert_eq!(store.alerts(Some("default"), true, 10).unwrap().len(), 1);

        // Resolved with the CLI: the runner learns it at its next reload, then opens it again.
        let resolved = NewAlert {
            system: "default".into(),
            job_id: None,
            job: None,
            kind: AlertKind::Disk,
            summary: "resolved by hand".into(),
            details: json!({}),
            execution_id: None,
            targets: Vec::new(),
        };
        store
            .resolve_alerts(&[AlertKind::Disk], &resolved, now)
            .unwrap();
        monitor.storage_blocked(&store, [&settings].into_iter(), "locked", now);
        assert!(open(&store).is_empty(), "before the reload");
        monitor.reloading();
        monitor.storage_blocked(&store, [&settings].into_iter(), "locked", now);
        assert_eq!(open(&store), vec![AlertKind::Disk]);
    }
}
