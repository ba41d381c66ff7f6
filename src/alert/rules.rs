//! The rules, as pure functions: what a finished run, a passing silence deadline or a host sample
//! means for a job's open conditions. The [`super::Monitor`] applies them to the store.

use chrono::{DateTime, Utc};

use crate::store::{AlertKind, Job, Settings, Status};

/// A job's rules: its own overrides, else its system's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// False with `--no-alerts`: nothing is sent (auto-disable still applies).
    pub alerts: bool,
    pub on_failure: bool,
    pub on_timeout: bool,
    pub escalate_after: Option<u32>,
    pub disable_after: Option<u32>,
    /// Seconds.
    pub max_silence: Option<u64>,
}

impl Policy {
    pub fn of(job: &Job, settings: &Settings) -> Policy {
        Policy {
            alerts: job.alerts_enabled,
            on_failure: settings.alert_on_failure,
            on_timeout: settings.alert_on_timeout,
            escalate_after: job.escalate_after.or(settings.escalate_after),
            disable_after: job.disable_after.or(settings.disable_after),
            max_silence: job.max_silence.or(settings.max_silence),
        }
    }

    /// Has the streak reached the escalation threshold?
    pub fn loud(&self, streak: u32) -> bool {
        self.escalate_after.is_some_and(|n| streak >= n)
    }
}

/// Does a run that ended so count toward the job's failure streak (and so escalation and
/// auto-disable)? A cancelled run does not: a person stopped it.
pub fn counts_as_failure(status: Status) -> bool {
    matches!(status, Status::Failed | Status::Timeout)
}

/// What to do after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a condition (one message, unless it is open already); `loud` adds the escalation list.
    Open { kind: AlertKind, loud: bool },
    /// Disable the job and open its `disabled` condition (whose message says why).
    Disable { loud: bool },
    /// Close these conditions with one "resolved" message.
    Resolve(Vec<AlertKind>),
}

/// The conditions a success clears.
pub const CLEARED_BY_SUCCESS: &[AlertKind] = &[
    AlertKind::Failed,
    AlertKind::Timeout,
    AlertKind::Escalated,
    AlertKind::Silent,
];

/// A run ended for good (no retry follows) with `status`; `streak` counts this run if it failed.
/// Only failed and timed-out runs count as failures (see [`counts_as_failure`]).
pub fn after_run(policy: &Policy, status: Status, streak: u32) -> Vec<Action> {
    let kind = match status {
        Status::Success => return vec![Action::Resolve(CLEARED_BY_SUCCESS.to_vec())],
        Status::Failed => AlertKind::Failed,
        Status::Timeout => AlertKind::Timeout,
        // Not the job's doing: a person cancelled it (`cronmgr kill`), or the runner stopped
        // (interrupted). Neither alerts, counts toward a streak, nor clears a condition.
        Status::Cancelled | Status::Interrupted => return Vec::new(),
        Status::Running | Status::Skipped | Status::Missed => return Vec::new(),
    };
    let loud = policy.loud(streak);
    if policy.disable_after.is_some_and(|n| streak >= n) {
        return vec![Action::Disable { loud }];
    }
    if !policy.alerts {
        return Vec::new();
    }
    let mut actions = Vec::new();
    let wanted = match kind {
        AlertKind::Timeout => policy.on_timeout,
        _ => policy.on_failure,
    };
    if wanted {
        actions.push(Action::Open { kind, loud: false });
    }
    if loud {
        actions.push(Action::Open {
            kind: AlertKind::Escalated,
            loud: true,
        });
    }
    actions
}

/// When the job's silence ends: `max_silence` after its last success (or its creation, or its
/// last enable, whichever is later). None when the rule does not apply.
pub fn silence_deadline(policy: &Policy, job: &Job) -> Option<DateTime<Utc>> {
    let max = policy.max_silence?;
    if !policy.alerts || !job.is_active {
        return None;
    }
    let base = [Some(job.created_at), job.last_success_at, job.enabled_at]
        .into_iter()
        .flatten()
        .max()?;
    base.checked_add_signed(chrono::Duration::seconds(i64::try_from(max).ok()?))
}

/// The host is overloaded once the CPU has stayed above the threshold for the whole window.
#[derive(Debug, Default, Clone)]
pub struct Overload {
    above_since: Option<DateTime<Utc>>,
}

impl Overload {
    /// Feed one sample (percent busy since the last one); returns whether the host is overloaded.
    pub fn sample(
        &mut self,
        busy_percent: f64,
        threshold: u32,
        window_secs: u64,
        now: DateTime<Utc>,
    ) -> bool {
        if busy_percent < f64::from(threshold) {
            self.above_since = None;
            return false;
        }
        let since = *self.above_since.get_or_insert(now);
        (now - since).num_seconds() >= window_secs as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn policy() -> Policy {
        Policy {
            alerts: true,
            on_failure: true,
            on_timeout: true,
            escalate_after: None,
            disable_after: None,
            max_silence: None,
        }
    }

    #[test]
    fn failures_open_one_condition_then_escalate_then_disable() {
        let p = Policy {
            escalate_after: Some(2),
            disable_after: Some(3),
            ..policy()
        };
        assert_eq!(
            after_run(&p, Status::Failed, 1),
            vec![Action::Open {
                kind: AlertKind::Failed,
                loud: false
            }]
        );
        assert_eq!(
            after_run(&p, Status::Timeout, 2),
            vec![
                Action::Open {
                    kind: AlertKind::Timeout,
                    loud: false
                },
                Action::Open {
                    kind: AlertKind::Escalated,
                    loud: true
                }
            ]
        );
        assert_eq!(
            after_run(&p, Status::Failed, 3),
            vec![Action::Disable { loud: true }]
        );
        assert_eq!(
            after_run(&p, Status::Success, 0),
            vec![Action::Resolve(CLEARED_BY_SUCCESS.to_vec())]
        );
        assert!(after_run(&p, Status::Interrupted, 3).is_empty());
        assert!(after_run(&p, Status::Cancelled, 3).is_empty());
        assert!(!counts_as_failure(Status::Cancelled));
        assert!(!counts_as_failure(Status::Interrupted));
        assert!(counts_as_failure(Status::Timeout));
        assert!(after_run(&p, Status::Skipped, 3).is_empty());
    }

    #[test]
    fn switches_and_no_alerts() {
        let p = Policy {
            on_failure: false,
            ..policy()
        };
        assert!(after_run(&p, Status::Failed, 1).is_empty());
        assert_eq!(after_run(&p, Status::Timeout, 1).len(), 1);
        let quiet = Policy {
            alerts: false,
            disable_after: Some(1),
            ..policy()
        };
        assert!(after_run(
            &Policy {
                disable_after: None,
                ..quiet
            },
            Status::Failed,
            5
        )
        .is_empty());
        // Auto-disable still applies to a job without alerts.
        assert_eq!(
            after_run(&quiet, Status::Failed, 1),
            vec![Action::Disable { loud: false }]
        );
    }

    #[test]
    fn job_overrides_beat_settings() {
        let mut s = Settings::defaults("s", "UTC");
        s.disable_after = Some(5);
        s.max_silence = Some(60);
        let mut j = Job::new("s", "j", "* * * * *", "shell");
        j.disable_after = Some(2);
        let p = Policy::of(&j, &s);
        assert_eq!(p.disable_after, Some(2));
        assert_eq!(p.max_silence, Some(60));
    }

    #[test]
    fn silence_counts_from_the_latest_of_creation_success_and_enable() {
        let t = |h| Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap();
        let p = Policy {
            max_silence: Some(3600),
            ..policy()
        };
        let mut j = Job::new("s", "j", "* * * * *", "shell");
        j.created_at = t(1);
        assert_eq!(silence_deadline(&p, &j), Some(t(2)));
        j.last_success_at = Some(t(5));
        assert_eq!(silence_deadline(&p, &j), Some(t(6)));
        j.enabled_at = Some(t(7));
        assert_eq!(silence_deadline(&p, &j), Some(t(8)));
        j.is_active = false;
        assert_eq!(silence_deadline(&p, &j), None);
        assert_eq!(
            silence_deadline(&policy(), &Job::new("s", "j", "", "")),
            None
        );
    }

    #[test]
    fn overload_needs_the_whole_window() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let at = |s| t0 + chrono::Duration::seconds(s);
        let mut o = Overload::default();
        assert!(!o.sample(95.0, 80, 300, at(0)));
        assert!(!o.sample(95.0, 80, 300, at(240)));
        assert!(o.sample(90.0, 80, 300, at(300)));
        assert!(!o.sample(10.0, 80, 300, at(360)));
        assert!(!o.sample(95.0, 80, 300, at(420)));
        assert!(o.sample(95.0, 80, 0, at(421)));
    }
}
