//! Runners sharing one database: labels, leases, and who this runner is in the `runners` table.

use std::time::{Duration, Instant};

use crate::store::{Change, Notice};

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

/// How often a runner on a shared database looks for changes made elsewhere (and at the other
/// runners' leases) while it does not listen for them: no listener yet, or its connection lost.
pub const TICK: Duration = Duration::from_secs(1);
/// With a live listener, notifications wake the runner; this slow check catches one that was
/// lost (see docs/fleet.md, "How runners learn of changes").
pub const FALLBACK: Duration = Duration::from_secs(30);
/// A claim the database could not take now (its lock busy, or away) is tried again this soon.
pub const CLAIM_RETRY: Duration = Duration::from_millis(250);
/// A look at the other runners' leases comes this long after the earliest could run out.
const LEASE_MARGIN: Duration = Duration::from_millis(100);

/// Spares per free place at most: a claim of 16 places then offers at most 80 slots.
const MAX_SPARES_PER_PLACE: f64 = 4.0;

/// This runner's part in a fleet sharing a database (PostgreSQL). It checks for changes made
/// elsewhere each [`TICK`], or each [`FALLBACK`] while a listener is woken by notifications;
/// heartbeats every third of its lease; and declares lost the runners whose lease ran out, looking
/// when the earliest of them could (at most a `TICK` or `FALLBACK` apart; a runner that joins
/// notifies). The database enforces overlap and caps across the fleet.
pub struct FleetMember {
    /// This runner's row in `runners`.
    pub id: i64,
    lease: Duration,
    /// When the next change check, heartbeat and look at the leases are due.
    check_at: Instant,
    heartbeat_at: Instant,
    reap_at: Instant,
    /// The listener LISTENs: notifications wake the loop, the checks are a fallback.
    listening: bool,
    /// Other runners took slots this runner tried to claim: pick again at once, not at the next
    /// event (this runner may have nothing running to wake it).
    pub claim_again: bool,
    /// A slot waits for a place under the fleet's cap: try again each [`TICK`] (an end
    /// elsewhere also notifies, when listening).
    pub at_cap: bool,
    /// A slot waits because the database could not take its claim now (locked, away): try again
    /// in [`CLAIM_RETRY`], before the job's next slot comes (at an every-second job's next
    /// slot, one still waiting is recorded skipped).
    pub claim_failed: bool,
    /// When the last heartbeat that landed was sent: this runner's own count of its lease.
    renewed: Instant,
    /// Since when the database has answered without a break (None: it does not now).
    reachable_since: Option<Instant>,
    /// Its lease ran out by its own count (said once in the log, and once when renewed).
    pub lapsed: bool,
    /// Of the slots its recent claims tried, the share other runners had taken first (a moving
    /// average): in a burst shared by `n` runners, about `(n - 1) / n`.
    taken_share: f64,
}

/// What of the fleet's upkeep is due now (see [`FleetMember::due`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Due {
    /// Compare jobs and settings with the database's change counter.
    pub check: bool,
    pub heartbeat: bool,
    /// Look at the other runners' leases.
    pub reap: bool,
}

impl FleetMember {
    /// A member that has just registered (its first heartbeat is its registration): everything
    /// but the heartbeat is due at once.
    pub fn new(id: i64, lease: Duration, mono: Instant) -> FleetMember {
        FleetMember {
            id,
            lease,
            check_at: mono,
            heartbeat_at: mono + lease / 3,
            reap_at: mono,
            listening: false,
            claim_again: false,
            at_cap: false,
            claim_failed: false,
            renewed: mono,
            // Registering just reached the database; the others' heartbeats are as they were.
            reachable_since: Some(mono.checked_sub(lease).unwrap_or(mono)),
            lapsed: false,
            taken_share: 0.0,
        }
    }

    /// A claim tried `tried` slots and found `taken` of them taken by other runners.
    pub fn claimed(&mut self, tried: usize, taken: usize) {
        if tried > 0 {
            self.taken_share = (self.taken_share + taken as f64 / tried as f64) / 2.0;
        }
    }

    /// How many spare slots a claim offers per free place ([`crate::runner::dispatch::Dispatcher::pick`]):
    /// enough, at the recent share of taken slots, for the claim to fill every place in one
    /// round trip instead of a turn per refusal; none while the others take (next to) nothing,
    /// as with one runner; at most [`MAX_SPARES_PER_PLACE`].
    pub fn spares_per_place(&self) -> f64 {
        let p = self.taken_share;
        if p < 0.02 {
            return 0.0;
        }
        (p / (1.0 - p)).min(MAX_SPARES_PER_PLACE)
    }

    /// Heartbeat at once (the fleet refused a claim: this runner was declared lost).
    pub fn heartbeat_soon(&mut self, mono: Instant) {
        self.heartbeat_at = mono;
        self.claim_again = false;
    }

    /// A heartbeat sent at `sent` landed.
    pub fn renewed(&mut self, sent: Instant) {
        self.renewed = sent;
    }

    /// The database answered (true) or could not be reached (false) at `mono`.
    pub fn reached(&mut self, ok: bool, mono: Instant) {
        match (ok, self.reachable_since) {
            (true, None) => self.reachable_since = Some(mono),
            (false, _) => self.reachable_since = None,
            (true, Some(_)) => {}
        }
    }

    /// Does this runner still hold its lease by its own count? The count runs from when its
    /// last heartbeat that landed was sent, before the database stamped it, so it runs out
    /// before the fleet's: past it, the others may have declared this runner lost and be
    /// running its slots, and it starts nothing until a heartbeat lands.
    pub fn holds_lease(&self, mono: Instant) -> bool {
        mono.saturating_duration_since(self.renewed) < self.lease
    }

    /// May this runner declare others lost: it has reached the database for a whole lease.
    /// After an outage of the database every runner was silent; the others need that long to
    /// heartbeat again, and were not lost.
    pub fn may_reap(&self, mono: Instant) -> bool {
        self.reachable_since
            .is_some_and(|since| mono.saturating_duration_since(since) >= self.lease)
    }

    /// How long between checks: [`FALLBACK`] while listening, else [`TICK`].
    fn every(&self) -> Duration {
        if self.listening {
            FALLBACK
        } else {
            TICK
        }
    }

    /// What is due now; the change check and the heartbeat are taken as done. A due look at the
    /// leases is taken as done by [`FleetMember::reaped`].
    pub fn due(&mut self, mono: Instant) -> Due {
        let check = mono >= self.check_at;
        if check {
            self.check_at = mono + self.every();
        }
        let heartbeat = mono >= self.heartbeat_at;
        if heartbeat {
            self.heartbeat_at = mono + self.lease / 3;
        }
        Due {
            check,
            heartbeat,
            reap: mono >= self.reap_at,
        }
    }

    /// The leases were looked at (`Some`: the earliest of the others' runs out in that long, if
    /// any runs); or the look failed (`None`): try again a [`TICK`] later.
    pub fn reaped(&mut self, mono: Instant, looked: Option<Option<Duration>>) {
        let wait = match looked {
            None => TICK,
            Some(earliest) => {
                earliest.map_or(self.every(), |e| (e + LEASE_MARGIN).min(self.every()))
            }
        };
        self.reap_at = mono + wait;
    }

    /// Take a notice of the listener: whether the loop's upkeep has something to do now.
    pub fn notice(&mut self, notice: &Notice, mono: Instant) {
        match notice {
            // Notifications sent while it was away are lost: one full look now.
            Notice::Listening => {
                self.listening = true;
                self.check_at = mono;
                self.reap_at = mono;
            }
            Notice::Lost(_) => {
                self.listening = false;
                self.check_at = self.check_at.min(mono + TICK);
                self.reap_at = self.reap_at.min(mono + TICK);
            }
            Notice::Change(Change::Jobs) => self.check_at = mono,
            Notice::Change(Change::Runners) => self.reap_at = mono,
            // The wake-up is the point: the turn tries the slots that wait for the cap again.
            Notice::Change(Change::Freed) => {}
        }
    }

    /// Whether notifications wake this runner now.
    pub fn listening(&self) -> bool {
        self.listening
    }

    /// How long the loop may sleep: until the next check, heartbeat or look at the leases; a
    /// [`TICK`] while a slot waits for the cap; not at all to claim again.
    pub fn next_wake(&self, mono: Instant) -> Duration {
        if self.claim_again {
            return Duration::ZERO;
        }
        let next = self.check_at.min(self.heartbeat_at).min(self.reap_at);
        let mut wait = next.saturating_duration_since(mono);
        if self.at_cap {
            wait = wait.min(TICK);
        }
        if self.claim_failed {
            wait = wait.min(CLAIM_RETRY);
        }
        wait
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
    /// When `reap`: None if the leases could not be read; else how long until the earliest
    /// lease of another runner runs out (None: no other runner is up).
    pub looked: Option<Option<Duration>>,
    /// The heartbeat landed.
    pub renewed: bool,
    /// The database could not be reached.
    pub unreachable: bool,
}

/// The fleet's tick for runner `me`: heartbeat (when `heartbeat`), and (when `reap`) declare
/// lost the runners whose lease ran out. Failures are logged; the next tick tries again.
pub fn tick(
    store: &crate::store::Store,
    me: i64,
    due: Due,
    now: chrono::DateTime<chrono::Utc>,
) -> Tick {
    let mut tick = Tick::default();
    if due.heartbeat {
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
            }
        }
    }
    if !due.reap {
        return tick;
    }
    // A cheap read first (the database's clock and the runners): the writers' lock only when
    // someone is past their lease.
    let fleet = match store.fleet(now) {
        Ok(fleet) => fleet,
        Err(e) => {
            tick.unreachable |= e.is_unreachable();
            tracing::warn!(error = %e, "could not check the other runners' leases");
            return tick;
        }
    };
    let others = || fleet.runners.iter().filter(|r| r.id != me);
    tick.looked = Some(others().filter_map(|r| lease_left(r, fleet.now)).min());
    if !others().any(|r| r.state(fleet.now) == "silent") {
        return tick;
    }
    let lost = match store.reap_lost_runners(me, now) {
        Ok(lost) => lost,
        Err(e) => {
            tracing::warn!(error = %e, "could not check the other runners' leases");
            tick.looked = None;
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

/// How long until `r`'s lease runs out without another heartbeat, by the database's clock
/// `now`; None when it is not up (stopped, lost, already past it) or the lease is out of range.
fn lease_left(r: &crate::store::Runner, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    if r.state(now) != "up" {
        return None;
    }
    let lease = chrono::Duration::try_seconds(i64::try_from(r.lease).ok()?)?;
    (r.heartbeat_at + lease - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_starts_nothing_past_its_own_lease_and_reaps_only_after_a_whole_lease_reachable() {
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
        // Told it was declared lost: it heartbeats at once.
        let beat = t0 + Duration::from_secs(80);
        assert!(m.due(beat).heartbeat);
        assert!(!m.due(beat).heartbeat);
        m.heartbeat_soon(beat);
        assert!(m.due(beat).heartbeat);
    }

    #[test]
    fn a_lease_is_3s_to_the_ceiling() {
        assert_eq!(parse_lease("30s"), Ok(std::time::Duration::from_secs(30)));
        assert!(parse_lease("2s").is_err());
        let e = parse_lease("9223372036854775807").unwrap_err();
        assert!(e.contains("--lease") && e.contains("400d"), "{e}");
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    /// A member 10 s into its life with a 30 s lease: the first checks are done.
    fn member() -> (FleetMember, Instant) {
        let t0 = Instant::now();
        let mut m = FleetMember::new(1, S(30), t0);
        assert_eq!(
            m.due(t0),
            Due {
                check: true,
                heartbeat: false,
                reap: true
            }
        );
        m.reaped(t0, Some(None));
        (m, t0)
    }

    #[test]
    fn without_a_listener_changes_and_leases_are_looked_at_each_second() {
        let (mut m, t0) = member();
        assert_eq!(m.next_wake(t0), TICK);
        let due = m.due(t0 + S(1));
        assert!(due.check && due.reap && !due.heartbeat, "{due:?}");
        // The heartbeat keeps its own cadence: a third of the lease.
        m.reaped(t0 + S(1), Some(None));
        assert!(m.due(t0 + S(10)).heartbeat);
    }

    #[test]
    fn a_live_listener_makes_the_checks_a_slow_fallback_until_it_is_lost() {
        let (mut m, t0) = member();
        m.notice(&Notice::Listening, t0);
        assert!(m.listening());
        // Listening (again): one full look at once, for what was sent while it was away.
        let due = m.due(t0);
        assert!(due.check && due.reap, "{due:?}");
        m.reaped(t0, Some(None));
        // Then only the heartbeat (every 10 s) until the fallback, 30 s later.
        assert_eq!(m.next_wake(t0), S(10));
        assert_eq!(
            m.due(t0 + S(10)),
            Due {
                check: false,
                heartbeat: true,
                reap: false
            }
        );
        assert_eq!(m.next_wake(t0 + S(10)), S(10));
        let due = m.due(t0 + FALLBACK);
        assert!(due.check && due.reap, "{due:?}");
        // A notification of a change: the check at once; a runner that joined: its lease.
        m.reaped(t0 + FALLBACK, Some(None));
        m.notice(&Notice::Change(Change::Jobs), t0 + S(31));
        assert_eq!(m.next_wake(t0 + S(31)), Duration::ZERO);
        assert_eq!(
            m.due(t0 + S(31)),
            Due {
                check: true,
                heartbeat: false,
                reap: false
            }
        );
        m.notice(&Notice::Change(Change::Runners), t0 + S(32));
        assert_eq!(
            m.due(t0 + S(32)),
            Due {
                check: false,
                heartbeat: false,
                reap: true
            }
        );
        m.reaped(t0 + S(32), Some(None));
        // An end elsewhere only wakes the loop (its turn claims again).
        m.notice(&Notice::Change(Change::Freed), t0 + S(33));
        assert_eq!(m.due(t0 + S(33)), Due::default());
        // Lost: back to each second.
        m.notice(&Notice::Lost("closed".into()), t0 + S(33));
        assert!(!m.listening());
        assert_eq!(m.next_wake(t0 + S(33)), TICK);
        let due = m.due(t0 + S(34));
        assert!(due.check && due.reap, "{due:?}");
    }

    #[test]
    fn the_leases_are_looked_at_when_the_earliest_can_run_out() {
        let (mut m, t0) = member();
        m.notice(&Notice::Listening, t0);
        m.due(t0);
        // Another runner's lease runs out in 7 s: look then (a little after), not at 30 s.
        m.reaped(t0, Some(Some(S(7))));
        assert_eq!(m.next_wake(t0), S(7) + LEASE_MARGIN);
        assert!(!m.due(t0 + S(7)).reap);
        assert!(m.due(t0 + S(7) + LEASE_MARGIN).reap);
        // A failed look is tried again a second later; no later than the fallback otherwise.
        m.reaped(t0 + S(8), None);
        assert!(m.due(t0 + S(9)).reap);
        m.reaped(t0 + S(9), Some(Some(S(3600))));
        assert!(!m.due(t0 + S(9) + FALLBACK - S(1)).reap);
        assert!(m.due(t0 + S(9) + FALLBACK).reap);
    }

    #[test]
    fn a_slot_waiting_for_the_cap_or_the_database_is_tried_again_soon_even_when_listening() {
        let (mut m, t0) = member();
        m.notice(&Notice::Listening, t0);
        m.due(t0);
        m.reaped(t0, Some(None));
        m.at_cap = true;
        assert_eq!(m.next_wake(t0), TICK);
        m.claim_failed = true;
        assert_eq!(m.next_wake(t0), CLAIM_RETRY);
        m.claim_again = true;
        assert_eq!(m.next_wake(t0), Duration::ZERO);
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

    /// Spares per place follow the share of slots the others took: none with no other runner
    /// taking any, one per place when they take half, at most four; the share fades when they
    /// stop taking.
    #[test]
    fn spares_per_place_follow_the_share_of_slots_others_took() {
        let (mut m, _) = member();
        m.claimed(8, 0);
        assert_eq!(m.spares_per_place(), 0.0);
        for _ in 0..20 {
            m.claimed(16, 8);
        }
        assert!(
            (m.spares_per_place() - 1.0).abs() < 0.01,
            "{}",
            m.spares_per_place()
        );
        for _ in 0..20 {
            m.claimed(8, 8);
        }
        assert_eq!(m.spares_per_place(), MAX_SPARES_PER_PLACE);
        m.claimed(0, 0); // nothing tried: nothing learnt
        assert_eq!(m.spares_per_place(), MAX_SPARES_PER_PLACE);
        for _ in 0..10 {
            m.claimed(8, 0);
        }
        assert_eq!(m.spares_per_place(), 0.0);
    }
}
