//! LISTEN/NOTIFY (PostgreSQL): a connection of its own, on a thread of its own, that waits for
//! the notifications the schema's triggers send when something a runner cares about commits
//! (migration 012): jobs or settings changed, an execution ended (a place under a cap freed), a
//! runner joined. The owner (the runner's loop) gets each as a [`Notice`] and decides what to
//! do; while no [`Notice::Listening`] is in force, it polls as it would without a listener.
//!
//! A lost connection (a server restart, a failover, a cut found by the keepalives) is said once
//! ([`Notice::Lost`]); the thread connects again with the store's capped, jittered backoff and
//! says [`Notice::Listening`] again once it LISTENs. Notifications sent in between are lost:
//! the owner does one full check on each `Listening`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The one channel every notification goes to (the payload says which schema, and what).
pub const CHANNEL: &str = "cronmgr_changes";

/// What the listener tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// LISTENing (again): notifications arrive from now on; what came before may be lost.
    Listening,
    /// The listening connection was lost (why): notifications are not seen until `Listening`.
    Lost(String),
    /// Something changed, as a notification said.
    Change(Change),
}

/// What a notification is about (its payload's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Jobs or settings changed: reload.
    Jobs,
    /// An execution ended: a slot waiting for the fleet's cap (or a job's no-overlap rule) may
    /// be claimed now.
    Freed,
    /// A runner joined the fleet: watch its lease.
    Runners,
}

impl Change {
    /// The change a payload `SCHEMA:KIND` names, if it is about `schema` and a kind this
    /// version knows (a newer writer's kinds are ignored; its fallback check still runs).
    pub fn parse(payload: &str, schema: &str) -> Option<Change> {
        let (of, kind) = payload.rsplit_once(':')?;
        if of != schema {
            return None;
        }
        match kind {
            "changes" => Some(Change::Jobs),
            "freed" => Some(Change::Freed),
            "runners" => Some(Change::Runners),
            _ => None,
        }
    }
}

/// The listening thread. Dropping it asks the thread to stop; it ends at its next wake-up (at
/// most [`IDLE`] later) or with the process, holding nothing anyone waits for.
pub struct Listener {
    stop: Arc<AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How long the thread waits for a notification before it looks at its stop flag. A dead
/// connection is found sooner, by the TCP keepalives the store sets (about 11 s).
#[cfg(feature = "postgres")]
const IDLE: std::time::Duration = std::time::Duration::from_secs(30);

impl super::Store {
    /// On PostgreSQL: start listening, on a connection and a thread of their own, and call `on`
    /// with each [`Notice`] (from that thread) until `on` returns false or the [`Listener`] is
    /// dropped. The first notice is `Listening` once it LISTENs (or nothing until it can).
    /// SQLite: None (the CLI nudges the runner on the same host instead).
    pub fn listen(
        &self,
        on: impl FnMut(Notice) -> bool + Send + 'static,
    ) -> std::io::Result<Option<Listener>> {
        #[cfg(feature = "postgres")]
        if self.backend() == super::Backend::Postgres {
            let stop = Arc::new(AtomicBool::new(false));
            let (url, flag) = (self.path().to_path_buf(), stop.clone());
            std::thread::Builder::new()
                .name("listen".into())
                .spawn(move || pg::run(&url, &flag, on))?;
            return Ok(Some(Listener { stop }));
        }
        let _ = on;
        Ok(None)
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    use postgres::fallible_iterator::FallibleIterator as _;

    use super::{Change, Notice, CHANNEL, IDLE};
    use crate::store::reconnect::{backoff, jitter};

    /// Why a listening session ended.
    enum End {
        /// The owner is gone or asked to stop.
        Stop,
        /// The connection was lost: reconnect.
        Lost(String),
    }

    /// Connect, LISTEN, pass notices on; reconnect with backoff when the connection is lost.
    pub(super) fn run(url: &Path, stop: &AtomicBool, mut on: impl FnMut(Notice) -> bool) {
        // Failed tries in a row; whether the owner has heard `Listening` before (a reconnect).
        let (mut failures, mut again) = (0u32, false);
        while !stop.load(Ordering::Relaxed) {
            let session = super::super::pg::connect_client(url, again)
                .map_err(|e| e.to_string())
                .and_then(|mut client| {
                    let schema = subscribe(&mut client).map_err(|e| e.to_string())?;
                    Ok((client, schema))
                });
            let (mut client, schema) = match session {
                Ok(s) => s,
                Err(why) => {
                    let wait = backoff(failures, jitter());
                    failures = failures.saturating_add(1);
                    tracing::debug!(error = %why, retry_in_ms = wait.as_millis() as u64, "cannot listen for changes yet");
                    std::thread::sleep(wait);
                    continue;
                }
            };
            (failures, again) = (0, true);
            tracing::info!(channel = CHANNEL, %schema, "listening for changes");
            if !on(Notice::Listening) {
                return;
            }
            match wait(&mut client, &schema, stop, &mut on) {
                End::Stop => return,
                End::Lost(why) => {
                    tracing::warn!(error = %why, "lost the connection that listens for changes; polling each second until it is back");
                    if !on(Notice::Lost(why)) {
                        return;
                    }
                }
            }
        }
    }

    /// LISTEN on the channel; the schema this session's tables are in (its notifications'
    /// prefix). The session's application_name gets " listen", so `pg_stat_activity` tells
    /// it from the runner's other session.
    fn subscribe(client: &mut postgres::Client) -> Result<String, postgres::Error> {
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        let row = client.query_one(
            "SELECT current_schema()::text, set_config('application_name', \
             left(current_setting('application_name') || ' listen', 63), false)",
            &[],
        )?;
        Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
    }

    /// Pass notifications on until the connection is lost or the owner stops.
    fn wait(
        client: &mut postgres::Client,
        schema: &str,
        stop: &AtomicBool,
        on: &mut impl FnMut(Notice) -> bool,
    ) -> End {
        loop {
            let next = client.notifications().timeout_iter(IDLE).next();
            match next {
                Ok(Some(n)) => {
                    if let Some(change) = Change::parse(n.payload(), schema) {
                        if !on(Notice::Change(change)) {
                            return End::Stop;
                        }
                    }
                }
                Ok(None) if client.is_closed() => {
                    return End::Lost("the connection closed".into());
                }
                Ok(None) => {}
                Err(e) => return End::Lost(crate::store::sql::Error::from(e).to_string()),
            }
            if stop.load(Ordering::Relaxed) {
                return End::Stop;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_its_schema_and_kind_and_others_are_ignored() {
        assert_eq!(
            Change::parse("public:changes", "public"),
            Some(Change::Jobs)
        );
        assert_eq!(Change::parse("public:freed", "public"), Some(Change::Freed));
        assert_eq!(Change::parse("a:b:runners", "a:b"), Some(Change::Runners));
        assert_eq!(Change::parse("other:changes", "public"), None);
        assert_eq!(Change::parse("public:later_kind", "public"), None);
        assert_eq!(Change::parse("changes", "public"), None);
    }
}
