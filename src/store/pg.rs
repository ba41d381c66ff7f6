//! PostgreSQL: connecting, recognising a cronmgr database, migrating it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::sql::{Connection, PgConnection};
use super::{display_db, Result, Store, StoreError, APPLICATION_ID, MIGRATIONS_POSTGRES};

const _: () = assert!(MIGRATIONS_POSTGRES.len() == super::MIGRATIONS.len());

/// What every cronmgr session sets, so that one stalled member of a fleet delays the others by
/// seconds, not for as long as it is stalled (docs/fleet.md, "When the database is slow or away"):
///
/// - `lock_timeout=5s`: a write waits at most this long for the writers' lock, normally held for
///   milliseconds; then it fails with 55P03, which passes: a command says so, the runner keeps the
///   write and lands it later (the runner itself waits 200 ms, [`super::Store::set_lock_wait`]).
/// - `idle_in_transaction_session_timeout=5s`: cronmgr does nothing but SQL inside a
///   transaction, so a session idle in one for 5 s belongs to a member that is paused (SIGSTOP,
///   a frozen VM) or cut off; the server ends it, and the writers' lock with it.
/// - `statement_timeout=15s`: the longest statement cronmgr makes is a retention batch or a
///   listing (well under a second at a million rows); 15 s bounds how long a statement that
///   stalls on the server can hold the lock. Migrations lift it for their transaction.
///
/// A setting the URL's `options` already gives wins.
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("lock_timeout", "5s"),
    ("idle_in_transaction_session_timeout", "5s"),
    ("statement_timeout", "15s"),
];

/// TCP keepalives: an idle connection to a host that vanished (a cut cable, a frozen VM) is found
/// dead within about 5 + 3 × 2 = 11 s, and data unacknowledged for 10 s (`tcp_user_timeout`)
/// ends it too; the store then reconnects.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Without a `connect_timeout` in the URL: give up a first connection after 10 s, a reconnect
/// (the runner's loop waits on it) after 3 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connect to the database `url` names (a libpq-style URL; `options=-c search_path=…` selects a
/// schema; `sslmode`, `sslrootcert`, `sslcert`, `sslkey` as libpq, see [`super::tls`]).
pub(super) fn connect(url: &Path) -> Result<Connection> {
    let client = connect_client(url, false)?;
    Ok(Connection::Postgres(Box::new(RefCell::new(
        PgConnection::new(client),
    ))))
}

/// A new session to `url`, with [`SESSION_SETTINGS`] and the keepalives; `again`: a reconnect.
pub(super) fn connect_client(url: &Path, again: bool) -> Result<postgres::Client> {
    let text = url.to_string_lossy();
    let bad_url = |why: String| StoreError::BadUrl {
        db: display_db(url),
        why,
    };
    let (plain, tls) = super::tls::split_url(&text).map_err(bad_url)?;
    let mut config = postgres::Config::from_str(&plain)
        .map_err(|e| bad_url(format!("it is not a valid PostgreSQL URL: {e}")))?;
    let timeout = match (config.get_connect_timeout(), again) {
        (Some(t), false) => *t,
        (Some(t), true) => (*t).min(RECONNECT_TIMEOUT),
        (None, false) => CONNECT_TIMEOUT,
        (None, true) => RECONNECT_TIMEOUT,
    };
    config.connect_timeout(timeout);
    if config.get_application_name().is_none() {
        config.application_name("cronmgr");
    }
    let options = session_options(config.get_options());
    config.options(&options);
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    config.ssl_mode(super::tls::negotiation(&tls));
    let connected = if tls.mode == super::tls::SslMode::Disable {
        config.connect(postgres::NoTls)
    } else {
        let rustls = super::tls::client_config(&tls).map_err(|why| StoreError::Tls {
            db: display_db(url),
            why,
        })?;
        config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(rustls))
    };
    connected.map_err(|e| {
        if let Some(why) = super::tls::describe_failure(&e, &tls) {
            return StoreError::Tls {
                db: display_db(url),
                why,
            };
        }
        let plaintext_refused = tls.mode == super::tls::SslMode::Disable
            && e.as_db_error()
                .is_some_and(|d| d.code().code() == "28000" && d.message().contains("no encryption"));
        if plaintext_refused {
            return StoreError::Tls {
                db: display_db(url),
                why: format!(
                    "the server refuses connections without TLS, and the URL says sslmode=disable: use sslmode=verify-full (and sslrootcert=CA.pem) ({})",
                    super::sql::Error::from(e)
                ),
            };
        }
        e.into()
    })
}

/// The URL's `options`, plus each of [`SESSION_SETTINGS`] it does not set itself.
fn session_options(given: Option<&str>) -> String {
    let given = given.unwrap_or("").trim();
    let mut out = given.to_string();
    for (key, value) in SESSION_SETTINGS {
        if given.contains(&format!("{key}=")) {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("-c {key}={value}"));
    }
    out
}

/// Is this error one that waiting will not cure (a refused password or certificate, a missing
/// database or role, a bad URL)? The runner stops on it instead of reconnecting forever.
pub(super) fn is_fatal(e: &StoreError) -> bool {
    match e {
        StoreError::BadUrl { .. } | StoreError::Tls { .. } | StoreError::TooNew { .. } => true,
        StoreError::NotOurs { .. } => true,
        StoreError::Db(super::sql::Error::Postgres(e)) => e.as_db_error().is_some_and(|d| {
            // 28: invalid authorization (password, pg_hba), 3D000: no such database.
            let c = d.code().code();
            c.starts_with("28") || c == "3D000"
        }),
        _ => false,
    }
}

/// After a reconnect: is the schema still one this binary knows (a failover to a server that a
/// newer cronmgr migrated)?
pub(super) fn check_version(store: &Store) -> Result<()> {
    let known = MIGRATIONS_POSTGRES.len() as i32;
    let version: i32 =
        store
            .conn
            .query_row("SELECT version FROM cronmgr_schema WHERE id = 1", (), |r| {
                r.get(0)
            })?;
    if version > known {
        return Err(StoreError::TooNew {
            path: PathBuf::from(display_db(store.path())),
            found: version,
            known,
        });
    }
    Ok(())
}

/// Refuse a database that holds another application's tables or a newer cronmgr schema; apply
/// the missing migrations, under the writers' lock so two runners starting at once migrate once.
pub(super) fn migrate(store: &Store) -> Result<()> {
    let known = MIGRATIONS_POSTGRES.len() as i32;
    store.write(|conn| {
        // A migration on a large history may take longer than a statement may.
        conn.execute_batch("SET LOCAL statement_timeout = 0")?;
        let (ours, theirs): (bool, bool) = conn.query_row(
            "SELECT to_regclass('cronmgr_schema') IS NOT NULL, to_regclass('jobs') IS NOT NULL",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let version: i32 = if ours {
            let (app, version): (i64, i32) = conn.query_row(
                "SELECT application_id, version FROM cronmgr_schema WHERE id = 1",
                (),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if app != APPLICATION_ID as i64 {
                return Err(StoreError::NotOurs {
                    path: PathBuf::from(display_db(store.path())),
                    why: "its cronmgr_schema table belongs to another application".into(),
                });
            }
            version
        } else if theirs {
            return Err(StoreError::NotOurs {
                path: PathBuf::from(display_db(store.path())),
                why: "it has a jobs table that cronmgr did not create".into(),
            });
        } else {
            0
        };
        if version > known {
            return Err(StoreError::TooNew {
                path: PathBuf::from(display_db(store.path())),
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS_POSTGRES
            .iter()
            .enumerate()
            .skip(version as usize)
        {
            tracing::info!(version = i + 1, "applying database migration");
            conn.execute_batch(sql)?;
            if i == 0 {
                conn.execute(
                    "INSERT INTO cronmgr_schema (id, application_id, version) VALUES (1, ?1, 1)",
                    [APPLICATION_ID as i64],
                )?;
            }
        }
        conn.execute("UPDATE cronmgr_schema SET version = ?1", [known])?;
        Ok(())
    })
}

/// Drop the scratch schemas of test runs more than 6 hours old (the tests never drop theirs: a
/// store has no end to hang it on, and its runners' threads may outlive it): at most 300 per
/// test process, one transaction each, so the server's lock table is never outgrown. The age
/// comes from the name. Best effort: a failure leaves them to the next run.
#[cfg(test)]
fn sweep_stale_scratch(admin: &Connection) {
    let cutoff = chrono::Utc::now().timestamp_micros() - 6 * 3600 * 1_000_000;
    let names: Vec<String> = match admin.prepare_cached(
        "SELECT nspname FROM pg_namespace WHERE nspname ~ '^t[0-9]+_[0-9]+_[0-9]+$' \
         AND split_part(substr(nspname, 2), '_', 3)::bigint < ?1 LIMIT 300",
    ) {
        Ok(mut stmt) => match stmt.query_map([cutoff], |row| row.get(0)) {
            Ok(rows) => rows.flatten().collect(),
            Err(_) => return,
        },
        Err(_) => return,
    };
    for schema in names {
        let _ = admin.execute_batch(&format!(
            "SET lock_timeout = '3s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
        ));
    }
}

/// A fresh, empty schema in the database `url` names, migrated (tests).
#[cfg(test)]
pub(super) fn open_scratch(url: &Path) -> Result<Store> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "t{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros()
    );
    let admin = connect(url)?;
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| sweep_stale_scratch(&admin));
    admin.execute_batch(&format!("CREATE SCHEMA {schema}"))?;
    let text = url.to_string_lossy();
    let sep = if text.contains('?') { '&' } else { '?' };
    let scoped = PathBuf::from(format!("{text}{sep}options=-csearch_path%3D{schema}"));
    let store = Store {
        conn: connect(&scoped)?,
        path: scoped,
        link: Default::default(),
    };
    migrate(&store)?;
    Ok(store)
}
