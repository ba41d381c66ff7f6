//! PostgreSQL: connecting, recognising a cronmgr database, migrating it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::sql::{Connection, PgConnection};
use super::{display_db, Result, Store, StoreError, APPLICATION_ID, MIGRATIONS_POSTGRES};

const _: () = assert!(MIGRATIONS_POSTGRES.len() == super::MIGRATIONS.len());

/// Connect to the database `url` names (a libpq-style URL; `options=-c search_path=…` selects a
/// schema). Without a `connect_timeout` in the URL, give up after 10 s.
pub(super) fn connect(url: &Path) -> Result<Connection> {
    let text = url.to_string_lossy();
    let mut config = postgres::Config::from_str(&text).map_err(|e| StoreError::NotOurs {
        path: PathBuf::from(display_db(url)),
        why: format!("it is not a valid PostgreSQL URL: {e}"),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("cronmgr");
    }
    let client = config.connect(postgres::NoTls)?;
    let conn = PgConnection::new(client);
    Ok(Connection::Postgres(Box::new(RefCell::new(conn))))
}

/// Refuse a database that holds another application's tables or a newer cronmgr schema; apply
/// the missing migrations, under the writers' lock so two runners starting at once migrate once.
pub(super) fn migrate(store: &Store) -> Result<()> {
    let known = MIGRATIONS_POSTGRES.len() as i32;
    store.write(|conn| {
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
    admin.execute_batch(&format!("CREATE SCHEMA {schema}"))?;
    let text = url.to_string_lossy();
    let sep = if text.contains('?') { '&' } else { '?' };
    let scoped = PathBuf::from(format!("{text}{sep}options=-csearch_path%3D{schema}"));
    let store = Store {
        conn: connect(&scoped)?,
        path: scoped,
    };
    migrate(&store)?;
    Ok(store)
}
