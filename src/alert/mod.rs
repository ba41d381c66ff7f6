//! Alerts: the rules (failure, timeout, streaks, auto-disable, missed runs, overload, disk), the
//! channels (email, Slack, signed webhook), and the delivery thread. (Alert
//! types, targets and the redaction of secrets are the model's: `crate::model`.)
//!
//! The runner decides what to say ([`Monitor`]) and records it in the store's outbox, in the same
//! thread that records executions; a separate thread ([`delivery`]) with its own database
//! connection sends it, with retries and a rate limit, so a dead channel never slows the runner.

pub mod delivery;
pub mod email;
pub mod monitor;
pub mod payload;
pub mod rules;
pub mod slack;
pub mod webhook;

pub use monitor::Monitor;

use crate::model::{Channel, Job, Settings, Target};

/// Where a job's alerts go: the job's email, Slack URL and webhook URL, each instead of the
/// system's (`alert_email`, `slack_webhook`, `webhook_url`) where the job sets it, and with `loud`
/// the escalation list too. Email addresses are grouped into one message.
pub fn targets(job: Option<&Job>, settings: &Settings, loud: bool) -> Vec<(Channel, String)> {
    let mut emails: Vec<String> = Vec::new();
    let mut out: Vec<(Channel, String)> = Vec::new();
    let email = job
        .and_then(|j| j.alert_email.clone())
        .or_else(|| settings.alert_email.clone());
    for a in email.iter().flat_map(|e| e.split(',')) {
        let a = a.trim();
        if !a.is_empty() && !emails.iter().any(|e| e == a) {
            emails.push(a.to_string());
        }
    }
    let own = |pick: fn(&Job) -> &Option<String>| job.and_then(|j| pick(j).clone());
    if let Some(url) = own(|j| &j.alert_slack).or_else(|| settings.slack_webhook.clone()) {
        out.push((Channel::Slack, url));
    }
    if let Some(url) = own(|j| &j.alert_webhook).or_else(|| settings.webhook_url.clone()) {
        out.push((Channel::Webhook, url));
    }
    if loud {
        for t in settings
            .escalate_to
            .iter()
            .flat_map(|l| l.split(','))
            .filter_map(Target::parse)
        {
            if t.channel == Channel::Email {
                if !emails.contains(&t.target) {
                    emails.push(t.target);
                }
            } else if !out.iter().any(|(c, u)| *c == t.channel && *u == t.target) {
                out.push((t.channel, t.target));
            }
        }
    }
    if !emails.is_empty() {
        out.insert(0, (Channel::Email, emails.join(",")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_merge_job_system_and_escalation() {
        let mut s = Settings::defaults("s", "UTC");
        s.alert_email = Some("a@example.com".into());
        s.slack_webhook = Some("https://hooks.slack.com/services/T/B/C".into());
        s.escalate_to = Some("boss@example.com, https://pager.example.com/x".into());
        let mut job = Job::new("s", "j", "* * * * *", "shell");
        assert_eq!(
            targets(Some(&job), &s, false),
            vec![
                (Channel::Email, "a@example.com".into()),
                (
                    Channel::Slack,
                    "https://hooks.slack.com/services/T/B/C".into()
                )
            ]
        );
        job.alert_email = Some("owner@example.com".into());
        let loud = targets(Some(&job), &s, true);
        assert_eq!(
            loud[0],
            (Channel::Email, "owner@example.com,boss@example.com".into())
        );
        assert_eq!(loud.len(), 3);
        assert_eq!(loud[2].0, Channel::Webhook);
    }

    #[test]
    fn a_jobs_own_slack_and_webhook_replace_the_systems() {
        let mut s = Settings::defaults("s", "UTC");
        s.slack_webhook = Some("https://hooks.slack.com/services/SYSTEM".into());
        s.webhook_url = Some("https://hooks.example.com/system".into());
        let mut job = Job::new("s", "j", "* * * * *", "shell");
        job.alert_slack = Some("https://hooks.slack.com/services/JOB".into());
        assert_eq!(
            targets(Some(&job), &s, false),
            vec![
                (
                    Channel::Slack,
                    "https://hooks.slack.com/services/JOB".into()
                ),
                (Channel::Webhook, "https://hooks.example.com/system".into()),
            ]
        );
        job.alert_webhook = Some("http://127.0.0.1:9/job".into());
        assert_eq!(
            targets(Some(&job), &s, false)[1],
            (Channel::Webhook, "http://127.0.0.1:9/job".into())
        );
        // A system with no Slack or webhook of its own: the job's still get its alerts.
        let bare = Settings::defaults("s", "UTC");
        assert_eq!(targets(Some(&job), &bare, false).len(), 2);
        // Another job of the system gets the system's, and a system-wide alert (no job) too.
        let other = Job::new("s", "k", "* * * * *", "shell");
        assert_eq!(targets(Some(&other), &bare, false), vec![]);
        assert_eq!(
            targets(None, &s, false)[0],
            (
                Channel::Slack,
                "https://hooks.slack.com/services/SYSTEM".into()
            )
        );
        // Escalation adds its targets; the job's own URL is not repeated.
        s.escalate_to = Some("slack:https://hooks.slack.com/services/JOB".into());
        assert_eq!(targets(Some(&job), &s, true).len(), 2);
    }
}
