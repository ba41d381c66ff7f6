//! The delivery thread: works through the outbox with its own database connection, so a slow or
//! dead channel never holds up the runner. Each delivery is retried with exponential backoff
//! (5 s, 10 s, 20 s … capped at 30 min, given up after 15 attempts) and every channel of a system
//! sends at most `alert_rate_limit` messages an hour; what is over the limit waits its turn.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::payload;
use crate::config::SmtpConfig;
use crate::model::redact;
use crate::store::{Alert, Channel, Delivery, Settings, Store};

/// Delay before the second attempt; it doubles after each failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest delay between attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30 * 60);
/// Attempts before a delivery is marked failed for good.
pub const MAX_ATTEMPTS: u32 = 15;
/// The rate limit's window.
pub const RATE_WINDOW: chrono::Duration = chrono::Duration::hours(1);
/// With nothing pending, the thread still looks at the outbox this often (alerts recorded by
/// another process, a missed wake-up). The runner wakes it whenever it queues an alert, so this
/// is a safety net, kept rare: an idle runner should wake about once a minute in all.
const IDLE: Duration = Duration::from_secs(15 * 60);

/// The wait after `attempts` failed attempts, or None when it is time to give up.
pub fn backoff(attempts: u32) -> Option<Duration> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX);
    Some(BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP))
}

/// With `sent` the instants of the messages sent in the window before `now` (oldest first): None
/// when one more may go now, else when it may.
pub fn rate_limited(
    sent: &[DateTime<Utc>],
    limit: u32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let recent: Vec<_> = sent.iter().filter(|t| now - **t < RATE_WINDOW).collect();
    if recent.len() < limit as usize {
        return None;
    }
    // The slot frees when the oldest message that keeps us at the limit leaves the window.
    let oldest = recent[recent.len() - limit as usize];
    Some(*oldest + RATE_WINDOW)
}

/// Send one alert on one channel, now. Used by the thread and by `cronmgr alert test`.
pub fn send(
    channel: Channel,
    target: &str,
    alert: &Alert,
    settings: &Settings,
    smtp: &SmtpConfig,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let result = match channel {
        Channel::Email => super::email::send(
            smtp,
            target,
            &payload::subject(alert),
            &payload::email_body(alert),
        ),
        Channel::Slack => super::slack::send(target, alert),
        Channel::Webhook => super::webhook::send(
            target,
            settings.webhook_secret.as_deref(),
            &payload::payload(alert, now),
        ),
    };
    result.map_err(|e| {
        redact::scrub(
            &e,
            &[
                target,
                settings.webhook_secret.as_deref().unwrap_or(""),
                settings.slack_webhook.as_deref().unwrap_or(""),
                settings.webhook_url.as_deref().unwrap_or(""),
                smtp.password.as_deref().unwrap_or(""),
            ],
        )
    })
}

/// What the runner tells the delivery thread.
pub enum Message {
    /// New alerts are in the outbox.
    Wake,
    /// The config file was reloaded.
    Smtp(Box<SmtpConfig>),
    /// Deliver what is due now (until the deadline), then stop.
    Stop(Instant),
}

/// The running delivery thread.
pub struct Deliverer {
    tx: Sender<Message>,
    handle: Option<JoinHandle<()>>,
}

impl Deliverer {
    /// Start the thread on its own connection to the database (from [`Store::reopen`]).
    pub fn spawn(store: Store, smtp: SmtpConfig) -> std::io::Result<Deliverer> {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("alert-delivery".into())
            .spawn(move || {
                let smtp = smtp.with_env().unwrap_or_else(|e| {
                    tracing::error!(error = %e, "alert delivery: bad SMTP environment; ignoring it");
                    SmtpConfig::default()
                });
                Worker { store, smtp, settings: HashMap::new() }.run(rx);
            })?;
        Ok(Deliverer {
            tx,
            handle: Some(handle),
        })
    }

    pub fn sender(&self) -> Sender<Message> {
        self.tx.clone()
    }

    pub fn wake(&self) {
        let _ = self.tx.send(Message::Wake);
    }

    /// Deliver what is due for up to `grace`, then stop the thread.
    pub fn stop(mut self, grace: Duration) {
        let _ = self.tx.send(Message::Stop(Instant::now() + grace));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Worker {
    store: Store,
    smtp: SmtpConfig,
    settings: HashMap<String, Settings>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Message>) {
        let mut stop: Option<Instant> = None;
        loop {
            self.settings.clear();
            let deadline = stop;
            if let Err(e) = self.pass(deadline) {
                tracing::warn!(error = %e, "alert delivery: database error; will retry");
            }
            if stop.is_some() {
                return;
            }
            let wait = match self.store.next_delivery_at() {
                Ok(Some(t)) => (t - Utc::now()).to_std().unwrap_or_default().min(IDLE),
                Ok(None) => IDLE,
                Err(_) => Duration::from_secs(5),
            };
            match rx.recv_timeout(wait) {
                Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Message::Smtp(c)) => match c.with_env() {
                    Ok(c) => self.smtp = c,
                    Err(e) => tracing::error!(error = %e, "alert delivery: bad SMTP environment"),
                },
                Ok(Message::Stop(until)) => stop = Some(until),
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(m) = rx.try_recv() {
                match m {
                    Message::Stop(until) => stop = Some(until),
                    Message::Smtp(c) => match c.with_env() {
                        Ok(c) => self.smtp = c,
                        Err(e) => {
                            tracing::error!(error = %e, "alert delivery: bad SMTP environment")
                        }
                    },
                    Message::Wake => {}
                }
            }
        }
    }

    /// Send everything due now (stopping early at `deadline`).
    fn pass(&mut self, deadline: Option<Instant>) -> crate::store::Result<()> {
        loop {
            let due = self.store.due_deliveries(Utc::now(), 20)?;
            if due.is_empty() {
                return Ok(());
            }
            for d in due {
                if deadline.is_some_and(|t| Instant::now() >= t) {
                    return Ok(());
                }
                self.deliver(&d)?;
            }
        }
    }

    fn settings(&mut self, system: &str) -> crate::store::Result<Settings> {
        if let Some(s) = self.settings.get(system) {
            return Ok(s.clone());
        }
        let s = self.store.settings(system)?;
        self.settings.insert(system.to_string(), s.clone());
        Ok(s)
    }

    fn deliver(&mut self, d: &Delivery) -> crate::store::Result<()> {
        let now = Utc::now();
        let Some(alert) = self.store.alert(d.alert_id)? else {
            return self
                .store
                .record_attempt(d.id, Err("the alert is gone"), None, now);
        };
        let settings = self.settings(&alert.system)?;
        let sent = self
            .store
            .sent_since(&alert.system, d.channel, now - RATE_WINDOW)?;
        if let Some(until) = rate_limited(&sent, settings.alert_rate_limit, now) {
            tracing::info!(alert = alert.id, channel = %d.channel, until = %crate::output::utc(until), "alert rate limit: delivery waits");
            return self.store.defer_delivery(d.id, until);
        }
        let shown = redact::list(&d.target);
        match send(d.channel, &d.target, &alert, &settings, &self.smtp, now) {
            Ok(()) => {
                tracing::info!(alert = alert.id, channel = %d.channel, target = %shown, "alert sent");
                self.store.record_attempt(d.id, Ok(()), None, Utc::now())
            }
            Err(error) => {
                let attempts = d.attempts + 1;
                let next = backoff(attempts)
                    .and_then(|w| chrono::Duration::from_std(w).ok())
                    .map(|w| Utc::now() + w);
                match next {
                    Some(t) => {
                        tracing::warn!(alert = alert.id, channel = %d.channel, target = %shown, attempts, %error, retry_at = %crate::output::utc(t), "alert delivery failed; will retry")
                    }
                    None => {
                        tracing::error!(alert = alert.id, channel = %d.channel, target = %shown, attempts, %error, "alert delivery failed; giving up")
                    }
                }
                self.store
                    .record_attempt(d.id, Err(&error), next, Utc::now())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn backoff_doubles_caps_and_gives_up() {
        let secs: Vec<u64> = (1..=5).map(|a| backoff(a).unwrap().as_secs()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80]);
        assert_eq!(backoff(14), Some(BACKOFF_CAP));
        assert_eq!(backoff(MAX_ATTEMPTS), None);
    }

    #[test]
    fn rate_limit_waits_for_the_oldest_to_leave_the_window() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let m = |mins| t0 + chrono::Duration::minutes(mins);
        let sent = vec![m(0), m(10), m(20)];
        assert_eq!(rate_limited(&sent, 4, m(30)), None);
        assert_eq!(rate_limited(&sent, 3, m(30)), Some(m(60)));
        assert_eq!(rate_limited(&sent, 2, m(30)), Some(m(70)));
        // Old messages no longer count.
        assert_eq!(rate_limited(&sent, 3, m(61)), None);
    }
}
