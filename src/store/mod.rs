//! The database: schema and migrations, jobs, executions, settings.
//!
//! [`Store`] speaks in domain types ([`Job`], [`Execution`], [`Settings`]), never raw rows. Every
//! write runs in one `BEGIN IMMEDIATE` transaction, so a refused change leaves nothing behind.

mod alerts;
mod audit;
mod executions;
mod jobs;
mod metrics;
mod settings;
mod types;

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

pub use alerts::{
    Alert, AlertKind, AlertState, Channel, Delivery, DeliveryState, NewAlert, RunnerState,
};
#[cfg(test)]
pub(crate) use audit::test_by;
pub use audit::{job_diff, settings_diff, Actor, AuditEntry, AuditFilter, By, Event as AuditEvent};
pub use executions::{Batch, ExecutionFilter, NewExecution};
pub use jobs::JobFilter;
pub use metrics::{ExecutionBrief, JobCounts, JobStats, StatusTotals};
pub(crate) use settings::looks_like_email;
pub use settings::{KEYS as SETTINGS_KEYS, SECRET_KEYS};
pub use types::{Backoff, CatchUp, Execution, Finish, Job, Settings, Status, Trigger};

/// `PRAGMA application_id` of a cronmgr database: "CRON".
pub const APPLICATION_ID: i32 = 0x4352_4F4E;

/// The migrations, in order; the schema version is their count.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_initial.sql"),
    include_str!("migrations/002_alerts.sql"),
    include_str!("migrations/003_audit.sql"),
    include_str!("migrations/004_execution_times.sql"),
];

pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} is not a cronmgr database ({why}); refusing to touch it")]
    NotOurs { path: PathBuf, why: String },
    #[error("{path} was written by a newer cronmgr (schema version {found}, this binary knows up to {known}); upgrade cronmgr")]
    TooNew {
        path: PathBuf,
        found: i32,
        known: i32,
    },
    #[error("no job named {name:?} in system {system:?}")]
    JobNotFound { system: String, name: String },
    #[error("no execution with id {0}")]
    ExecutionNotFound(i64),
    #[error("a job named {name:?} already exists in system {system:?} (use `cronmgr edit` to change it)")]
    Duplicate { system: String, name: String },
    #[error("invalid value in the database: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Errors caused by what the user asked for (exit status 2), as opposed to runtime failures.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StoreError::JobNotFound { .. }
                | StoreError::ExecutionNotFound(_)
                | StoreError::Duplicate { .. }
                | StoreError::NotOurs { .. }
                | StoreError::TooNew { .. }
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An open cronmgr database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Open (creating if needed, with its folder) and migrate the database at `path`.
    ///
    /// A file that is not a cronmgr database, or one written by a newer cronmgr, is refused
    /// before anything is written to it.
    pub fn open(path: &Path) -> Result<Store> {
        let fresh = check_existing(path)?;
        if fresh {
            create_private(path)?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.verify_identity()?;
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// A second connection to the same, already open database, for another thread of this
    /// process. It skips [`Store::open`]'s file checks on purpose: closing any file descriptor of
    /// the database drops every POSIX lock this process holds on it, which would let other
    /// processes read past the first connection's transactions.
    pub fn reopen(&self) -> Result<Store> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let store = Store {
            conn,
            path: self.path.clone(),
        };
        store.configure()?;
        Ok(store)
    }

    /// Open an in-memory database (tests).
    pub fn open_in_memory() -> Result<Store> {
        let store = Store {
            conn: Connection::open_in_memory()?,
            path: PathBuf::from(":memory:"),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw connection, for callers that need SQL the store does not offer (benchmarks, tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn verify_identity(&self) -> Result<()> {
        let app_id: i32 = self
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let version: i32 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if app_id == APPLICATION_ID {
            if version > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: self.path.clone(),
                    found: version,
                    known: SCHEMA_VERSION,
                });
            }
            return Ok(());
        }
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 || version != 0 || app_id != 0 {
            return Err(StoreError::NotOurs {
                path: self.path.clone(),
                why: "it is an SQLite database of another application".into(),
            });
        }
        Ok(())
    }

    fn configure(&self) -> Result<()> {
        self.conn.busy_timeout(Duration::from_secs(10))?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        if self.path != Path::new(":memory:") {
            let mode: String = self
                .conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "could not switch the database to WAL mode");
            }
        }
        // NORMAL in WAL mode: a commit survives a crash of cronmgr, and a power loss can take
        // back only the last transactions since the previous checkpoint, never corrupt the
        // file. FULL (CRONMGR_SYNCHRONOUS=full) fsyncs every commit (see benches/README.md).
        let sync = match std::env::var("CRONMGR_SYNCHRONOUS") {
            Ok(v) if v.eq_ignore_ascii_case("full") => "FULL",
            _ => "NORMAL",
        };
        self.conn.pragma_update(None, "synchronous", sync)?;
        Ok(())
    }

    fn migrate(&self) -> Result<()> {
        let version: i32 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version >= SCHEMA_VERSION {
            return Ok(());
        }
        self.write(|conn| {
            // Re-read under the write lock: another process may have migrated meanwhile.
            let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
                tracing::info!(version = i + 1, "applying database migration");
                conn.execute_batch(sql)?;
            }
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            Ok(())
        })
    }

    /// Run `f` inside `BEGIN IMMEDIATE … COMMIT`; roll back on any error.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(&self.conn) {
            Ok(v) => {
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The systems that have jobs or settings.
    pub fn systems(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT system FROM jobs UNION SELECT system FROM settings ORDER BY 1",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Is `path` absent or empty (true), an existing cronmgr-looking SQLite file (false), or not ours (Err)?
fn check_existing(path: &Path) -> Result<bool> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e.into()),
    };
    let mut header = [0u8; 16];
    let n = file.read(&mut header)?;
    if n == 0 {
        return Ok(false);
    }
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(StoreError::NotOurs {
            path: path.to_path_buf(),
            why: "it is not an SQLite file".into(),
        });
    }
    Ok(false)
}

/// Create the database file (0640) and its folder (0750) if missing.
fn create_private(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
        }
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(path)?;
    Ok(())
}

/// Instants are stored as RFC 3339 UTC text with milliseconds.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_time(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

pub(crate) fn parse_opt_time(s: Option<String>) -> rusqlite::Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_time).transpose()
}

pub(crate) fn parse_enum<T: std::str::FromStr<Err = String>>(s: &str) -> rusqlite::Result<T> {
    s.parse::<T>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(e),
        )
    })
}

trait OptionalRow<T> {
    fn opt(self) -> Result<Option<T>>;
}

impl<T> OptionalRow<T> for rusqlite::Result<T> {
    fn opt(self) -> Result<Option<T>> {
        Ok(self.optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/cronmgr.db");
        Store::open(&path).unwrap();
        let store = Store::open(&path).unwrap();
        let v: i32 = store
            .connection()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o750);
    }

    #[test]
    fn refuses_a_foreign_sqlite_file_without_touching_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::NotOurs { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn refuses_a_file_that_is_not_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "hello, this is not a database at all").unwrap();
        let err = Store::open(&path).err().unwrap();
        assert!(err.to_string().contains("not an SQLite file"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "hello, this is not a database at all"
        );
    }

    #[test]
    fn refuses_a_newer_schema_without_touching_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        {
            let s = Store::open(&path).unwrap();
            s.connection()
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    }
}
