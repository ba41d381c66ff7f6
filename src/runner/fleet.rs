//! Runners sharing one database: labels, leases, and who this runner is in the `runners` table.

/// A runner label (`run --label`, a job's `runner_labels`): letters, digits, `.`, `_`, `-`.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("a label cannot be empty".into());
    }
    if label.len() > 64 {
        return Err(format!("label {label:?} is longer than 64 characters"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "label {label:?} has {c:?}: use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Labels as given (flags, job files): each checked, trimmed, duplicates dropped, sorted.
pub fn labels<S: AsRef<str>>(given: &[S]) -> Result<Vec<String>, String> {
    let mut labels = Vec::new();
    for label in given {
        let label = label.as_ref().trim();
        check_label(label)?;
        labels.push(label.to_string());
    }
    labels.sort();
    labels.dedup();
    Ok(labels)
}

/// A `--lease` value: a duration of at least 3 s (heartbeats go every third of it).
pub fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let secs = crate::duration::parse_secs(text).map_err(|e| format!("--lease: {e}"))?;
    if secs < 3 {
        return Err("--lease: at least 3s (heartbeats go every third of it)".into());
    }
    crate::model::bounds::check(
        "--lease",
        secs,
        text.trim(),
        (3, crate::model::bounds::MAX_DURATION),
        crate::model::bounds::Unit::Seconds,
    )
    .map_err(|e| e.to_string())?;
    Ok(std::time::Duration::from_secs(secs))
}

/// This process as a member of the fleet, for the `runners` table.
pub fn this_runner(
    labels: Vec<String>,
    max_concurrent: Option<u32>,
    lease: std::time::Duration,
) -> crate::store::NewRunner {
    crate::store::NewRunner {
        host: crate::host::hostname(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        labels,
        max_concurrent,
        lease: lease.as_secs().max(1),
    }
}

/// Does a runner carrying `have` run a job that needs `need`? Every needed label must be there.
pub fn runs_here(need: &[String], have: &[String]) -> bool {
    need.iter().all(|l| have.contains(l))
}

/// The label a `run-now` on a shared database carries in `runners` (not a valid user label, so
/// it names no runner a job can be pinned to).
pub const RUN_NOW_LABEL: &str = "@run-now";

/// A process other than `cronmgr run` that runs an execution on a shared database (`run-now`):
/// registered in `runners` and heartbeating from a thread, so that if it dies the fleet's
/// runners declare it lost after its lease and interrupt its execution, as for a runner.
pub struct Presence {
    pub id: i64,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    store: crate::store::Store,
}

impl Presence {
    pub fn start(store: &crate::store::Store, lease: std::time::Duration) -> anyhow::Result<Self> {
        let mine = store.reopen()?;
        let id = mine.register_runner(
            &this_runner(vec![RUN_NOW_LABEL.to_string()], Some(1), lease),
            chrono::Utc::now(),
        )?;
        let beats = store.reopen()?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let every = lease / 3;
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    if let Err(e) = beats.heartbeat(id, chrono::Utc::now()) {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                }
            })?;
        Ok(Presence {
            id,
            stop: Some(tx),
            thread: Some(thread),
            store: mine,
        })
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = self.store.runner_stopped(self.id, chrono::Utc::now()) {
            tracing::warn!(error = %e, "could not record the end of this run-now");
        }
    }
}

/// How often a runner on a shared database looks for changes made elsewhere.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// This runner's part in a fleet sharing a database (PostgreSQL): each [`TICK`] it looks for
/// changes made elsewhere; every third of its lease it heartbeats and reaps runners whose lease
/// ran out. The database enforces overlap and caps across the fleet.
///
/// Its lease, as this runner sees it: renewed when a heartbeat lands, counted from when that
/// heartbeat was sent (before the database stamped it, so this runner's count runs out before
/// the fleet's). A runner whose lease ran out by its own count starts nothing: the others may
/// have declared it lost and be running its slots. And a runner that could not reach the
/// database reaps nobody until it has been back for a whole lease: the others, cut off by the
/// same outage, need that long to heartbeat again.
pub struct FleetMember {
    /// This runner's row in `runners`.
    pub id: i64,
    lease: std::time::Duration,
    last_tick: std::time::Instant,
    last_heartbeat: std::time::Instant,
    /// When the last heartbeat that landed was sent.
    renewed: std::time::Instant,
    /// Since when the database has answered without a break (None: it does not now).
    reachable_since: Option<std::time::Instant>,
    /// Other runners took slots this runner tried to claim: pick again at once, not at the next
    /// event (this runner may have nothing running to wake it).
    pub claim_again: bool,
    /// Its lease ran out by its own count (said once in the log, and once when renewed).
    pub lapsed: bool,
}

impl FleetMember {
    pub fn new(id: i64, lease: std::time::Duration, mono: std::time::Instant) -> FleetMember {
        FleetMember {
            id,
            lease,
            last_tick: mono,
            last_heartbeat: mono,
            renewed: mono,
            // Registering just reached the database; the others' heartbeats are as they were.
            reachable_since: Some(mono.checked_sub(lease).unwrap_or(mono)),
            claim_again: false,
            lapsed: false,
        }
    }

    /// Whether the tick is due; taken as done when true.
    pub fn tick_due(&mut self, mono: std::time::Instant) -> bool {
        if mono.saturating_duration_since(self.last_tick) < TICK {
            return false;
        }
        self.last_tick = mono;
        true
    }

    /// Whether this tick heartbeats; taken as done when true.
    pub fn heartbeat_due(&mut self, mono: std::time::Instant) -> bool {
        if mono.saturating_duration_since(self.last_heartbeat) < self.lease / 3 {
            return false;
        }
        self.last_heartbeat = mono;
        true
    }

    /// Heartbeat at the next tick (the fleet refused a claim: this runner was declared lost).
    pub fn heartbeat_soon(&mut self) {
        self.last_heartbeat = self
            .last_heartbeat
            .checked_sub(self.lease)
            .unwrap_or(self.last_heartbeat);
        self.claim_again = false;
    }

    /// A heartbeat sent at `sent` landed.
    pub fn renewed(&mut self, sent: std::time::Instant) {
        self.renewed = sent;
    }

    /// The database answered (true) or could not be reached (false) at `mono`.
    pub fn reached(&mut self, ok: bool, mono: std::time::Instant) {
        match (ok, self.reachable_since) {
            (true, None) => self.reachable_since = Some(mono),
            (false, _) => self.reachable_since = None,
            (true, Some(_)) => {}
        }
    }

    /// Does this runner still hold its lease by its own count?
    pub fn holds_lease(&self, mono: std::time::Instant) -> bool {
        mono.saturating_duration_since(self.renewed) < self.lease
    }

    /// May this runner declare others lost: it has reached the database for a whole lease.
    pub fn may_reap(&self, mono: std::time::Instant) -> bool {
        self.reachable_since
            .is_some_and(|since| mono.saturating_duration_since(since) >= self.lease)
    }

    /// How long the loop may sleep: until the next tick, or not at all to claim again.
    pub fn next_wake(&self, mono: std::time::Instant) -> std::time::Duration {
        if self.claim_again {
            return std::time::Duration::ZERO;
        }
        TICK.saturating_sub(mono.saturating_duration_since(self.last_tick))
    }
}

/// What a fleet tick found.
#[derive(Debug, Default)]
pub struct Tick {
    /// Executions of runners it declared lost, now interrupted: the caller retries them per
    /// each job's policy.
    pub interrupted: Vec<crate::store::Execution>,
    /// Another runner had declared this one lost (its heartbeat ran past the lease): the
    /// executions it was running are `interrupted` in the database and may run elsewhere.
    pub was_lost: bool,
    /// The heartbeat landed.
    pub renewed: bool,
    /// The database could not be reached.
    pub unreachable: bool,
}

/// The fleet's tick for runner `me`: heartbeat (when `heartbeat`), and, when `reap`, declare
/// lost the runners whose lease ran out. Failures are logged; the next tick tries again.
pub fn tick(
    store: &crate::store::Store,
    me: i64,
    heartbeat: bool,
    reap: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Tick {
    let mut tick = Tick::default();
    if heartbeat {
        match store.heartbeat(me, now) {
            Ok(true) => tick.renewed = true,
            Ok(false) => {
                tracing::error!(
                    "another runner had declared this one lost (no heartbeat within the lease) and interrupted its executions"
                );
                tick.was_lost = true;
                tick.renewed = true;
            }
            Err(e) => {
                tick.unreachable = e.is_unreachable();
                tracing::warn!(error = %e, "heartbeat failed");
                return tick;
            }
        }
    }
    if !reap {
        return tick;
    }
    let lost = match store.reap_lost_runners(me, now) {
        Ok(lost) => lost,
        Err(e) => {
            tick.unreachable = e.is_unreachable();
            tracing::warn!(error = %e, "could not check the other runners' leases");
            return tick;
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
        tick.interrupted.extend(executions);
    }
    tick
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_starts_nothing_past_its_own_lease_and_reaps_only_after_a_whole_lease_reachable() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let lease = Duration::from_secs(30);
        let mut m = FleetMember::new(1, lease, t0);
        assert!(m.holds_lease(t0 + Duration::from_secs(29)));
        assert!(!m.holds_lease(t0 + Duration::from_secs(30)));
        m.renewed(t0 + Duration::from_secs(20));
        assert!(m.holds_lease(t0 + Duration::from_secs(49)));
        // Registered: it may reap at once.
        assert!(m.may_reap(t0));
        // Cut off, then back: not until a whole lease has passed since.
        m.reached(false, t0 + Duration::from_secs(40));
        assert!(!m.may_reap(t0 + Duration::from_secs(41)));
        m.reached(true, t0 + Duration::from_secs(45));
        m.reached(true, t0 + Duration::from_secs(50));
        assert!(!m.may_reap(t0 + Duration::from_secs(74)));
        assert!(m.may_reap(t0 + Duration::from_secs(75)));
        // Told it was declared lost: it heartbeats at the next tick.
        let beat = t0 + Duration::from_secs(80);
        assert!(m.heartbeat_due(beat));
        assert!(!m.heartbeat_due(beat));
        m.heartbeat_soon();
        assert!(m.heartbeat_due(beat));
    }

    #[test]
    fn a_lease_is_3s_to_the_ceiling() {
        assert_eq!(parse_lease("30s"), Ok(std::time::Duration::from_secs(30)));
        assert!(parse_lease("2s").is_err());
        let e = parse_lease("9223372036854775807").unwrap_err();
        assert!(e.contains("--lease") && e.contains("400d"), "{e}");
    }

    #[test]
    fn labels_are_plain_names() {
        assert!(check_label("db-host").is_ok());
        assert!(check_label("rack_2.eu").is_ok());
        assert!(check_label("").unwrap_err().contains("empty"));
        assert!(check_label("a b").unwrap_err().contains("' '"));
        assert!(check_label(&"x".repeat(65)).is_err());
    }

    #[test]
    fn given_labels_are_trimmed_deduplicated_and_sorted() {
        assert_eq!(
            labels(&[" eu", "db-host", "eu "]).unwrap(),
            vec!["db-host".to_string(), "eu".to_string()]
        );
        assert!(labels(&["ok", "not ok"]).unwrap_err().contains("' '"));
        assert!(labels::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_job_runs_where_every_label_it_needs_is() {
        let have = vec!["db-host".to_string(), "eu".to_string()];
        assert!(runs_here(&[], &have));
        assert!(runs_here(&["eu".into()], &have));
        assert!(!runs_here(&["eu".into(), "gpu".into()], &have));
        assert!(!runs_here(&["db-host".into()], &[]));
    }
}
