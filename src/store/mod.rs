//! The database: schema and migrations, jobs, executions, settings.
//!
//! [`Store`] speaks in domain types ([`Job`], [`Execution`], [`Settings`]), never raw rows. Every
//! write runs in one `BEGIN IMMEDIATE` transaction, so a refused change leaves nothing behind.

mod alerts;
mod audit;
mod chains;
mod checkpoint;
pub mod copy;
mod executions;
mod jobs;
mod listen;
mod metrics;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
pub use pg::SESSION_SETTINGS;
mod ranges;
mod reconnect;
mod record;
mod runners;
mod settings;
pub mod sql;
mod stats;
#[cfg(feature = "postgres")]
mod tls;
mod wal;
mod web;

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::OpenFlags;
pub use sql::Backend;
use sql::{Connection, OptionalExtension};

pub use alerts::RunnerState;
#[cfg(test)]
pub(crate) use audit::test_by;
pub use audit::{Actor, AuditEntry, AuditFilter, By, Event as AuditEvent};
pub use chains::{ChainRun, ChainStep};
pub use checkpoint::Checkpointer;
pub use executions::{
    cancelled_message, cap_key, Batch, Cancelling, ExecutionFilter, Fence, FleetRules, NewExecution,
};
pub use jobs::JobFilter;
pub use listen::{Change, Listener, Notice};
pub use metrics::{ExecutionBrief, JobCounts, StatusTotals};
pub use runners::{Fleet, NewRunner, Runner};
pub use stats::JobStats;
// The domain types live in `model`; these re-exports keep the store's many callers' paths.
pub use crate::model::{job_diff, settings_diff};
pub use crate::model::{
    Alert, AlertKind, AlertState, Backoff, CatchUp, Channel, Delivery, DeliveryState, Execution,
    Finish, Job, NewAlert, Settings, Status, Trigger, SECRET_KEYS, SETTINGS_KEYS,
};
pub use wal::CommitProbe;

/// `PRAGMA application_id` of a cronmgr database: "CRON".
pub const APPLICATION_ID: i32 = 0x4352_4F4E;

/// What the runner's start-up integrity check reads: every table but the history (executions,
/// audit, alerts), which can be large.
const INTEGRITY_TABLES: &[&str] = &[
    "jobs",
    "settings",
    "runner_state",
    "runners",
    "job_run_counts",
    "alert_conditions",
];

/// The migrations, in order; the schema version is their count.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_initial.sql"),
    include_str!("migrations/002_alerts.sql"),
    include_str!("migrations/003_audit.sql"),
    include_str!("migrations/004_execution_times.sql"),
    include_str!("migrations/005_runners.sql"),
    include_str!("migrations/006_cancelled.sql"),
    include_str!("migrations/007_jitter.sql"),
    include_str!("migrations/008_stats_index.sql"),
    include_str!("migrations/009_chains.sql"),
    include_str!("migrations/010_job_targets_quota.sql"),
    include_str!("migrations/011_stats_chains.sql"),
    include_str!("migrations/012_notify.sql"),
    include_str!("migrations/013_jobs_changed.sql"),
    include_str!("migrations/014_hot_path.sql"),
];

/// The same migrations for PostgreSQL, one for one.
#[cfg(feature = "postgres")]
const MIGRATIONS_POSTGRES: &[&str] = &[
    include_str!("migrations/postgres/001_initial.sql"),
    include_str!("migrations/postgres/002_alerts.sql"),
    include_str!("migrations/postgres/003_audit.sql"),
    include_str!("migrations/postgres/004_execution_times.sql"),
    include_str!("migrations/postgres/005_runners.sql"),
    include_str!("migrations/postgres/006_cancelled.sql"),
    include_str!("migrations/postgres/007_jitter.sql"),
    include_str!("migrations/postgres/008_stats_index.sql"),
    include_str!("migrations/postgres/009_chains.sql"),
    include_str!("migrations/postgres/010_job_targets_quota.sql"),
    include_str!("migrations/postgres/011_stats_chains.sql"),
    include_str!("migrations/postgres/012_notify.sql"),
    include_str!("migrations/postgres/013_jobs_changed.sql"),
    include_str!("migrations/postgres/014_hot_path.sql"),
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
    #[error("system {system:?} already runs its max_concurrent_jobs ({cap}) across all runners")]
    FleetFull { system: String, cap: u32 },
    /// A claim by a runner the fleet declared lost (its lease ran out): the fence refuses it
    /// until the runner's next heartbeat takes it back.
    #[error("runner {runner} was declared lost by the fleet (its lease ran out): it claims nothing until its next heartbeat takes it back")]
    NotInFleet { runner: i64 },
    #[error("no database at {}: nothing has been added yet (cronmgr add creates it)", path.display())]
    Missing { path: PathBuf },
    #[error("{} is damaged ({why}); refusing to write to it: restore a backup, or rescue what is left with `sqlite3 {} .recover`", path.display(), path.display())]
    Damaged { path: PathBuf, why: String },
    #[error("{db}: {why}")]
    BadUrl { db: String, why: String },
    #[error("{db}: {why}")]
    Tls { db: String, why: String },
    #[error("the database {db} is unreachable for {}s ({why}); reconnecting", since.as_secs())]
    Unreachable {
        db: String,
        since: Duration,
        why: String,
    },
    #[error("the database did not take the write now ({0})")]
    Busy(String),
    #[error("invalid value in the database: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(#[from] sql::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Bad input (exit 2) for [`StoreError::is_bad_input`], else a runtime error.
impl crate::exit::Coded for StoreError {
    fn exit_code(&self) -> crate::exit::ExitCode {
        if self.is_bad_input() {
            crate::exit::ExitCode::Usage
        } else {
            crate::exit::ExitCode::Error
        }
    }
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
                | StoreError::BadUrl { .. }
        )
    }

    /// Does this error pass by waiting (a lock, a full disk, a lost connection, a server
    /// restart or failover, a serialization failure), so a write may be kept and tried again?
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(e) => e.is_transient() || pg_passes(e),
            StoreError::Io(_) | StoreError::Unreachable { .. } | StoreError::Busy(_) => true,
            _ => false,
        }
    }
}

impl StoreError {
    /// PostgreSQL: the write met another session's lock (it waited past `lock_timeout`, or was
    /// chosen to break a deadlock, or a serialization failure): the database is up and working,
    /// and the write may simply be tried again.
    pub fn is_contention(&self) -> bool {
        #[cfg(feature = "postgres")]
        if let StoreError::Db(sql::Error::Postgres(e)) = self {
            return e
                .as_db_error()
                .is_some_and(|d| ["55P03", "40P01", "40001"].contains(&d.code().code()));
        }
        false
    }

    /// The database could not be reached (the connection is lost, the server is down or
    /// restarting), as opposed to reached and refusing (locked, full, bad write).
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            #[cfg(feature = "postgres")]
            StoreError::Db(sql::Error::Postgres(e)) => match e.as_db_error() {
                None => true,
                Some(d) => {
                    let c = d.code().code();
                    c.starts_with("08") || c.starts_with("57P")
                }
            },
            _ => false,
        }
    }
}

/// How long one statement of a write transaction may run on PostgreSQL: a write holds the
/// writers' lock, and the fleet waits on it, so a statement that stalls (a member's query stuck
/// on the server) is cancelled after this, its transaction rolled back and the lock freed. Every
/// write cronmgr makes is a few indexed rows, or a bounded batch (retention), in milliseconds.
pub const WRITE_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a write transaction starts on PostgreSQL: its statement timeout, then the writers' lock
/// (transaction-scoped: it goes with the commit, the rollback, or the session).
pub fn write_prologue() -> String {
    format!(
        "BEGIN; SET LOCAL statement_timeout = {}; SELECT pg_advisory_xact_lock({APPLICATION_ID})",
        WRITE_STATEMENT_TIMEOUT.as_millis()
    )
}

/// How a write that needs no global lock starts on PostgreSQL (a heartbeat: one row, locked
/// itself): the statement timeout, and no writers' lock.
pub fn unlocked_prologue() -> String {
    format!(
        "BEGIN; SET LOCAL statement_timeout = {}",
        WRITE_STATEMENT_TIMEOUT.as_millis()
    )
}

/// PostgreSQL errors that pass beyond those [`sql::Error::is_transient`] knows: 55P03 a lock
/// wait ran out (`lock_timeout`), 25P03 the session sat idle in a transaction too long, 25006 a
/// write reached a server that became a read-only standby (a failover: the next connection
/// finds the new primary).
fn pg_passes(e: &sql::Error) -> bool {
    #[cfg(feature = "postgres")]
    if let sql::Error::Postgres(e) = e {
        return e
            .as_db_error()
            .is_some_and(|d| ["55P03", "25P03", "25006"].contains(&d.code().code()));
    }
    let _ = e;
    false
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Db(e.into())
    }
}

#[cfg(feature = "postgres")]
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        StoreError::Db(e.into())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An open cronmgr database: an SQLite file, or a PostgreSQL database shared by several runners.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// PostgreSQL: the state of the connection, and its reconnects.
    link: reconnect::Link,
}

/// Is `db` a PostgreSQL URL (`postgres://…` or `postgresql://…`) rather than an SQLite file?
pub fn is_postgres(db: &Path) -> bool {
    let s = db.to_string_lossy();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// `db` fit to print: a PostgreSQL URL without its password.
pub fn display_db(db: &Path) -> String {
    let s = db.to_string_lossy().into_owned();
    if !is_postgres(db) {
        return s;
    }
    let Some(scheme_end) = s.find("://").map(|i| i + 3) else {
        return s;
    };
    let rest = &s[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &s[..scheme_end], &rest[..colon], &rest[at..]),
            None => s,
        },
        None => s,
    }
}

/// Where this host keeps the files that go with database `db` (`<base>.lock`, `<base>.logs/`,
/// `<base>.claims`): beside an SQLite file; for a PostgreSQL database, a name derived from its
/// URL (without the password) in the default database's folder.
pub fn local_base(db: &Path) -> PathBuf {
    if !is_postgres(db) {
        return db.to_path_buf();
    }
    // FNV-1a: stable across builds and hosts, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in display_db(db).bytes() {
        hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let dir = crate::config::default_db_path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    dir.join(format!("postgres-{hash:016x}"))
}

/// Where a running execution's output is streamed for `cronmgr logs --follow`.
pub fn live_log_path(db: &Path, execution_id: i64) -> PathBuf {
    let mut dir = local_base(db).into_os_string();
    dir.push(".logs");
    PathBuf::from(dir).join(format!("{execution_id}.log"))
}

impl Store {
    /// Open (creating if needed, with its folder) and migrate the database at `path`, or connect
    /// to the PostgreSQL database `path` names and migrate it.
    ///
    /// A file or database that is not a cronmgr database, or one written by a newer cronmgr, is
    /// refused before anything is written to it.
    pub fn open(path: &Path) -> Result<Store> {
        if is_postgres(path) {
            return Store::open_postgres(path);
        }
        match check_existing(path)? {
            Found::Missing => create_private(path)?,
            Found::Empty => make_private(path)?,
            Found::Database => {}
        }
        let store = Store::connect_sqlite(path)?;
        store.verify_identity()?;
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// [`Store::open`] for a command that only reads: a missing (or empty) file is
    /// [`StoreError::Missing`], and nothing is created, neither the file nor its folders.
    pub fn open_existing(path: &Path) -> Result<Store> {
        if !is_postgres(path) && check_existing(path)? != Found::Database {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Store::open(path)
    }

    /// Before the runner writes anything to an existing SQLite database: is it one of ours, and
    /// whole? Only reads (`PRAGMA quick_check`, which visits every page: a fraction of a second
    /// per hundred MB), so a damaged file is refused exactly as it was, where the runner's first
    /// writes (its registration) would otherwise land in the WAL before a read of a damaged page
    /// failed. A missing or empty file passes: [`Store::open`] creates it.
    pub fn check_integrity(path: &Path) -> Result<()> {
        if is_postgres(path) || check_existing(path)? != Found::Database {
            return Ok(());
        }
        // Read-write, though it only reads: the last connection to close removes the `-wal` and
        // `-shm` files opening made, where a read-only one would leave them behind.
        let store = Store::connect_sqlite(path)?;
        let damaged = |why: String| StoreError::Damaged {
            path: path.to_path_buf(),
            why,
        };
        match store.verify_identity() {
            Err(StoreError::Db(e)) => return Err(damaged(e.to_string())),
            other => other?,
        }
        // The tables the runner reads and writes before its first execution, not the history:
        // a quick_check of every page costs seconds per hundred MB of executions at each start,
        // and a damaged history page fails its own transaction (rolled back) when it is touched.
        for table in INTEGRITY_TABLES {
            // An older schema may not have it yet (migrations run after this check).
            let exists: bool = store
                .sqlite_conn()
                .query_row(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |_| Ok(()),
                )
                .map(|()| true)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(false),
                    e => Err(damaged(e.to_string())),
                })?;
            if !exists {
                continue;
            }
            let conn = store.sqlite_conn();
            let verdict = conn
                .prepare(&format!("PRAGMA quick_check({table})"))
                .and_then(|mut q| {
                    q.query_map([], |r| r.get::<_, String>(0))?
                        .collect::<std::result::Result<Vec<String>, _>>()
                })
                .map_err(|e| damaged(e.to_string()))?;
            // A row that breaks a CHECK or NOT NULL rule (written behind cronmgr's back) is not
            // damage: the runner reads it, refuses to schedule that one job and says why.
            if let Some(problem) = verdict.iter().find(|v| {
                *v != "ok"
                    && !v.starts_with("CHECK constraint failed")
                    && !v.starts_with("NULL value in")
            }) {
                return Err(damaged(format!("quick_check({table}): {problem}")));
            }
        }
        Ok(())
    }

    #[cfg(feature = "postgres")]
    fn open_postgres(url: &Path) -> Result<Store> {
        let store = Store {
            conn: pg::connect(url)?,
            path: url.to_path_buf(),
            link: Default::default(),
        };
        pg::migrate(&store)?;
        Ok(store)
    }

    #[cfg(not(feature = "postgres"))]
    fn open_postgres(url: &Path) -> Result<Store> {
        Err(StoreError::NotOurs {
            path: PathBuf::from(display_db(url)),
            why: "this cronmgr was built without PostgreSQL support (cargo feature `postgres`)"
                .into(),
        })
    }

    /// A second connection to the same, already open database, for another thread of this
    /// process. It skips [`Store::open`]'s file checks on purpose: closing any file descriptor of
    /// the database drops every POSIX lock this process holds on it, which would let other
    /// processes read past the first connection's transactions.
    pub fn reopen(&self) -> Result<Store> {
        #[cfg(feature = "postgres")]
        if let Connection::Postgres(_) = self.conn {
            return Ok(Store {
                conn: pg::connect(&self.path)?,
                path: self.path.clone(),
                link: Default::default(),
            });
        }
        Store::reopen_sqlite(&self.path)
    }

    /// A connection to an existing SQLite file, read-write, not yet configured or checked.
    fn connect_sqlite(path: &Path) -> Result<Store> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Store {
            conn: Connection::Sqlite(conn),
            path: path.to_path_buf(),
            link: Default::default(),
        })
    }

    /// [`Store::reopen`] of an SQLite file, from its path alone.
    fn reopen_sqlite(path: &Path) -> Result<Store> {
        let store = Store::connect_sqlite(path)?;
        store.configure()?;
        Ok(store)
    }

    /// Open an in-memory database (tests). With `CRONMGR_TEST_STORE_POSTGRES` set to a PostgreSQL URL
    /// (and the `postgres` feature), a fresh schema of that database instead, so the store's
    /// unit tests run against both engines.
    pub fn open_in_memory() -> Result<Store> {
        #[cfg(all(test, feature = "postgres"))]
        if let Some(url) = std::env::var_os("CRONMGR_TEST_STORE_POSTGRES") {
            return pg::open_scratch(Path::new(&url));
        }
        let store = Store {
            conn: Connection::Sqlite(rusqlite::Connection::open_in_memory()?),
            path: PathBuf::from(":memory:"),
            link: Default::default(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// For a unit test of SQLite itself (a query plan, a write past a CHECK rule): true, after
    /// saying so on stderr, when the store's tests run on PostgreSQL
    /// (`CRONMGR_TEST_STORE_POSTGRES`); the caller returns. Not a skip of something missing: the
    /// test runs in the SQLite pass, so `CRONMGR_TEST_NO_SKIP` does not fail it.
    #[cfg(test)]
    pub(crate) fn sqlite_only(&self, why: &str) -> bool {
        self.not_on(Backend::Sqlite, "sqlite only", "not run on PostgreSQL", why)
    }

    /// For a unit test of PostgreSQL itself (its triggers' notifications): true, after saying so
    /// on stderr, when the store's tests run on SQLite; the caller returns. The test runs in the
    /// PostgreSQL pass (`CRONMGR_TEST_STORE_POSTGRES`, which `.ci/run` makes).
    #[cfg(test)]
    pub(crate) fn postgres_only(&self, why: &str) -> bool {
        self.not_on(
            Backend::Postgres,
            "postgres only",
            "runs in the PostgreSQL pass",
            why,
        )
    }

    /// True, after saying so on stderr, when the store is not on `wanted`.
    #[cfg(test)]
    fn not_on(&self, wanted: Backend, label: &str, instead: &str, why: &str) -> bool {
        if self.backend() == wanted {
            return false;
        }
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("(unnamed test)");
        eprintln!("{label}: {test}: {instead}: {why}");
        true
    }

    /// The file, or the PostgreSQL URL.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn backend(&self) -> Backend {
        self.conn.backend()
    }

    /// The raw connection, for callers that need SQL the store does not offer (benchmarks, tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The SQLite connection, when the database is SQLite (pragmas, busy timeout).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        self.conn.sqlite()
    }

    fn sqlite_conn(&self) -> &rusqlite::Connection {
        self.conn.sqlite().expect("an SQLite database")
    }

    fn verify_identity(&self) -> Result<()> {
        let conn = self.sqlite_conn();
        let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
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
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 || version != 0 || app_id != 0 {
            return Err(StoreError::NotOurs {
                path: self.path.clone(),
                why: "it is an SQLite database of another application".into(),
            });
        }
        Ok(())
    }

    fn configure(&self) -> Result<()> {
        let conn = self.sqlite_conn();
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        if self.path != Path::new(":memory:") {
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "could not switch the database to WAL mode");
            }
        }
        // NORMAL in WAL mode: a commit survives a crash of cronmgr, and a power loss can take
        // back only the last transactions since the previous checkpoint, never corrupt the
        // file. FULL (CRONMGR_SYNCHRONOUS=full) fsyncs every commit (see docs/design/benchmarks.md, "Durability").
        let sync = match std::env::var("CRONMGR_SYNCHRONOUS") {
            Ok(v) if v.eq_ignore_ascii_case("full") => "FULL",
            _ => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        Ok(())
    }

    fn migrate(&self) -> Result<()> {
        let version: i32 = self
            .sqlite_conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version >= SCHEMA_VERSION {
            return Ok(());
        }
        self.write(|conn| {
            let conn = conn.sqlite().expect("an SQLite database");
            // Re-read under the write lock: another process may have migrated meanwhile.
            let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
                tracing::info!(version = i + 1, "applying database migration");
                conn.execute_batch(sql)?;
                if i + 1 == CHAIN_VERSION {
                    allow_chain_trigger(conn)?;
                }
            }
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            Ok(())
        })
    }

    /// Run `f` inside one write transaction; roll back on any error. Writers are serialized:
    /// SQLite's `BEGIN IMMEDIATE`, and on PostgreSQL a transaction-scoped advisory lock, so a
    /// write that reads before it changes sees what the previous writer committed.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.write_with(&write_prologue(), f)
    }

    /// As [`Store::write`], without the writers' lock on PostgreSQL (SQLite: the same
    /// `BEGIN IMMEDIATE`): for writes that need no read of others' writes, or lock their rows.
    pub(crate) fn write_unlocked<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.write_with(&unlocked_prologue(), f)
    }

    fn write_with<T>(&self, prologue: &str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.revive()?;
        let begun = match self.conn.backend() {
            Backend::Sqlite => self.conn.execute_batch("BEGIN IMMEDIATE"),
            Backend::Postgres => self.conn.execute_batch(prologue),
        };
        if let Err(e) = begun {
            // PostgreSQL: BEGIN ran and the lock wait failed (lock_timeout): without a rollback
            // the session would stay in the aborted transaction, refusing every statement.
            if self.conn.backend() == Backend::Postgres {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(e.into());
        }
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

    /// Give back what loading left behind (the runner calls this after start-up, each reload and
    /// each retention cycle): the page cache of this connection (SQLite) and the allocator's free
    /// chunks. Nothing else: the binary's own code pages are clean file pages, shared with the
    /// page cache, and cost no memory (see docs/design/memory.md).
    pub fn shrink_memory(&self) {
        if let Some(c) = self.sqlite() {
            if let Err(e) = c.execute_batch("PRAGMA shrink_memory") {
                tracing::debug!(error = %e, "PRAGMA shrink_memory failed");
            }
        }
        // SAFETY: malloc_trim only returns free memory to the kernel; no live allocation moves.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    /// How long a write waits for another writer's lock before it fails: SQLite's busy timeout,
    /// PostgreSQL's `lock_timeout` (kept across reconnects).
    pub fn set_lock_wait(&self, wait: Duration) -> Result<()> {
        if let Some(c) = self.sqlite() {
            c.busy_timeout(wait)?;
            return Ok(());
        }
        self.link.remember_lock_wait(wait);
        self.apply_lock_wait(wait)
    }

    fn apply_lock_wait(&self, wait: Duration) -> Result<()> {
        // 0 turns PostgreSQL's lock_timeout off: the shortest wait is 1 ms.
        let ms = wait.as_millis().clamp(1, u32::MAX as u128);
        Ok(self
            .conn
            .execute_batch(&format!("SET lock_timeout = {ms}"))?)
    }

    /// PostgreSQL: if the connection closed (a server restart, a failover, a network cut found
    /// by the keepalives), connect again, unless the backoff since the last failed try still
    /// runs: then [`StoreError::Unreachable`] at once, so the runner's loop never waits on it.
    /// Every write calls it; the runner also calls it each fleet tick. SQLite: nothing to do.
    pub fn revive(&self) -> Result<()> {
        #[cfg(feature = "postgres")]
        if let Connection::Postgres(c) = &self.conn {
            if !c.borrow().client.is_closed() {
                return Ok(());
            }
            let unreachable = |since: std::time::Instant, why: String| StoreError::Unreachable {
                db: display_db(&self.path),
                since: since.elapsed(),
                why,
            };
            let what = || "the connection closed".to_string();
            if let reconnect::Attempt::Wait(since, why) = self.link.attempt(what) {
                return Err(unreachable(since, why));
            }
            let client = match pg::connect_client(&self.path, true) {
                Ok(client) => client,
                Err(e) => {
                    let why = e.to_string();
                    if pg::is_fatal(&e) {
                        self.link.set_fatal(why.clone());
                    }
                    let (since, wait) = self.link.failed(why.clone());
                    tracing::debug!(error = %why, retry_in_ms = wait.as_millis() as u64, "reconnect failed");
                    return Err(unreachable(since, why));
                }
            };
            *c.borrow_mut() = sql::PgConnection::new(client);
            if let Err(e) = pg::check_version(self) {
                let why = e.to_string();
                if pg::is_fatal(&e) {
                    self.link.set_fatal(why.clone());
                }
                let (since, _) = self.link.failed(why.clone());
                return Err(unreachable(since, why));
            }
            if let Some(wait) = self.link.lock_wait() {
                self.apply_lock_wait(wait)?;
            }
            if let Some(down) = self.link.restored() {
                tracing::warn!(
                    down_ms = down.as_millis() as u64,
                    db = %display_db(&self.path),
                    "reconnected to the database"
                );
            }
        }
        Ok(())
    }

    /// Why the database can no longer be used, if it cannot (authentication refused, a schema
    /// newer than this binary, a TLS certificate refused, met on a reconnect): waiting will not
    /// cure it, so the runner stops on it.
    pub fn fatal(&self) -> Option<String> {
        self.link.fatal()
    }

    /// A number that changes when another connection changed jobs or settings: SQLite's
    /// `data_version`, a counter kept by triggers on PostgreSQL.
    pub fn change_marker(&self) -> Result<i64> {
        Ok(match self.backend() {
            // Prepared once: an idle runner asks every minute, and parsing would page the SQL
            // parser's code back in each time.
            Backend::Sqlite => self
                .conn
                .prepare_cached("PRAGMA data_version")?
                .query_row((), |r| r.get(0))?,
            Backend::Postgres => self
                .conn
                .prepare_cached("SELECT changes FROM cronmgr_schema")?
                .query_row((), |r| r.get(0))?,
        })
    }

    /// A probe that tells, without SQL, when nobody can have committed since its last look.
    pub fn commit_probe(&self) -> CommitProbe {
        CommitProbe::new(self)
    }

    /// The systems that have jobs or settings.
    pub fn systems(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT system FROM jobs UNION SELECT system FROM settings ORDER BY 1",
        )?;
        let rows = stmt.query_map((), |r| r.get(0))?;
        Ok(rows.collect::<sql::Result<_>>()?)
    }
}

/// What is at a database's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Missing,
    /// A 0-byte file: made by hand (`touch`), or by a crash before the first write.
    Empty,
    /// A file that starts as an SQLite database does (whose, is checked once it is open).
    Database,
}

/// What is at `path`; Err for a file that is not an SQLite database.
fn check_existing(path: &Path) -> Result<Found> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(e.into()),
    };
    let mut header = [0u8; 16];
    let n = file.read(&mut header)?;
    if n == 0 {
        return Ok(Found::Empty);
    }
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(StoreError::NotOurs {
            path: path.to_path_buf(),
            why: "it is not an SQLite file".into(),
        });
    }
    Ok(Found::Database)
}

/// The documented modes of a new database, whatever the umask: the file 0640, its folders 0750.
const FILE_MODE: u32 = 0o640;
const DIR_MODE: u32 = 0o750;

/// Create the database file and the folders it needs, with [`FILE_MODE`] and [`DIR_MODE`].
fn create_private(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        for d in missing.into_iter().rev() {
            match std::fs::DirBuilder::new().mode(DIR_MODE).create(d) {
                Ok(()) => std::fs::set_permissions(d, std::fs::Permissions::from_mode(DIR_MODE))?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path);
    match created {
        // fchmod: the umask may have taken bits of the mode.
        Ok(file) => file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {} // made meanwhile
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// An empty file about to become the database gets [`FILE_MODE`] (when it is ours to change),
/// not whatever mode `touch` gave it.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if file.metadata()?.uid() == unsafe { libc::geteuid() } {
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// Instants are stored as RFC 3339 UTC text with milliseconds.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_time(s: &str) -> sql::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sql::Error::conversion(0, format!("{s:?}: {e}")))
}

pub(crate) fn parse_opt_time(s: Option<String>) -> sql::Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_time).transpose()
}

pub(crate) fn parse_enum<T: std::str::FromStr<Err = String>>(s: &str) -> sql::Result<T> {
    s.parse::<T>().map_err(|e| sql::Error::conversion(0, e))
}

trait OptionalRow<T> {
    fn opt(self) -> Result<Option<T>>;
}

impl<T> OptionalRow<T> for sql::Result<T> {
    fn opt(self) -> Result<Option<T>> {
        Ok(self.optional()?)
    }
}

/// The schema version that brings chains (migration 009).
const CHAIN_VERSION: usize = 9;

/// Schema version 9 on SQLite: add `chain` to executions.triggered_by's CHECK. SQLite cannot
/// change a CHECK in place, and rebuilding the table takes half a minute on a million rows; its
/// documentation gives this procedure for loosening a constraint instead (the rows already
/// satisfy the new one, and the stored format does not change): edit the table's SQL in
/// sqlite_schema and bump the schema cookie, in the migration's transaction.
/// <https://www.sqlite.org/lang_altertable.html#otheralter>
fn allow_chain_trigger(conn: &rusqlite::Connection) -> Result<()> {
    const OLD: &str = "CHECK (triggered_by IN ('schedule', 'manual', 'retry'))";
    const NEW: &str = "CHECK (triggered_by IN ('schedule', 'manual', 'retry', 'chain'))";
    let cookie: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA writable_schema = ON")?;
    let changed = conn.execute(
        "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2) \
         WHERE type = 'table' AND name = 'executions' AND instr(sql, ?1) > 0",
        [OLD, NEW],
    );
    conn.execute_batch(&format!("PRAGMA schema_version = {}", cookie + 1))?;
    conn.execute_batch("PRAGMA writable_schema = OFF")?;
    if changed? != 1 {
        return Err(StoreError::NotOurs {
            path: PathBuf::from("executions"),
            why: "its triggered_by CHECK is not the one cronmgr wrote".into(),
        });
    }
    Ok(())
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
            .sqlite()
            .unwrap()
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
            let c = rusqlite::Connection::open(&path).unwrap();
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
            s.sqlite()
                .unwrap()
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    }

    #[test]
    fn open_existing_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/c.db");
        let err = Store::open_existing(&path).err().unwrap();
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("cronmgr add creates it"), "{err}");
        assert!(!err.is_bad_input());
        assert!(!dir.path().join("no").exists());
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            Store::open_existing(&empty).err().unwrap(),
            StoreError::Missing { .. }
        ));
        assert_eq!(std::fs::read(&empty).unwrap().len(), 0);
        Store::open(&path).unwrap();
        Store::open_existing(&path).unwrap();
    }

    #[test]
    fn an_empty_file_gets_the_private_mode_when_it_becomes_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Store::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn a_damaged_database_is_refused_unchanged_by_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let page = {
            let store = Store::open(&path).unwrap();
            let conn = store.sqlite().unwrap();
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
            conn.query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'jobs'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as usize
        };
        Store::check_integrity(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(page - 1) * 4096..page * 4096].fill(0x55);
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::check_integrity(&path).err().unwrap();
        assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(!dir.path().join("c.db-wal").exists());
        assert!(Store::check_integrity(&dir.path().join("missing.db")).is_ok());
    }

    /// Bytes of page cache the SQLite connection holds.
    fn cache_used(store: &Store) -> i32 {
        let conn = store.sqlite().unwrap();
        let (mut now, mut high) = (0, 0);
        // SAFETY: the handle is this live connection's; sqlite3_db_status only reads counters.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                &mut now,
                &mut high,
                0,
            )
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
        now
    }

    #[test]
    fn shrink_memory_gives_back_the_page_cache_loading_filled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let conn = store.sqlite().unwrap();
        conn.execute_batch(
            "CREATE TABLE filler (x BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO filler SELECT randomblob(400) FROM n;",
        )
        .unwrap();
        let sum: i64 = conn
            .query_row("SELECT sum(length(x)) FROM filler", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, 800_000);
        let loaded = cache_used(&store);
        assert!(
            loaded > 200_000,
            "the read filled the cache: {loaded} bytes"
        );
        store.shrink_memory();
        let after = cache_used(&store);
        assert!(
            after < loaded / 4,
            "page cache {loaded} -> {after} bytes after shrink_memory"
        );
    }
}
