//! `sqlite`: run SQL statements against an application database, in one transaction.
//!
//! Params: `database` (an existing file matching `[executors.sqlite] databases`, paths or
//! globs), `statements` (a list of SQL strings, one statement each). All or nothing: any error
//! rolls every statement back.
//!
//! The path is resolved once: a symlink in it is refused unless the config names the file it
//! leads to, and the file is opened by the checked path without following a symlink, then
//! checked to be the file that was checked. Statements that would reach another file (ATTACH,
//! VACUUM INTO), load code (load_extension) or break the one transaction (BEGIN, COMMIT,
//! ROLLBACK, VACUUM, a journal_mode change) are refused when the job is checked, and SQLite's
//! authorizer refuses them again while the run compiles them.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{ffi, Connection, OpenFlags, TransactionBehavior};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::common::{resolve_path, typed};
use super::dirfd::{Dir, Kind, Stat};
use super::{glob_match, Executor, ParamError, RunContext, RunError};
use crate::config::Config;

pub struct Sqlite;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: PathBuf,
    statements: Vec<String>,
}

/// Does a path entry of `[executors.sqlite] databases` (not a glob) name this resolved file?
fn named(resolved: &Path, patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        !p.contains(['*', '?'])
            && resolve_path("sqlite", "allowed database", Path::new(p)).is_ok_and(|a| a == resolved)
    })
}

fn allowed(resolved: &Path, patterns: &[String]) -> bool {
    let text = resolved.to_string_lossy();
    named(resolved, patterns)
        || patterns
            .iter()
            .any(|p| p.contains(['*', '?']) && glob_match(p, &text))
}

/// The first component of `given` (absolute, without `..`) that is a symlink, if any.
fn first_symlink(given: &Path) -> Option<PathBuf> {
    let mut prefix = PathBuf::new();
    for c in given.components() {
        prefix.push(c);
        if std::fs::symlink_metadata(&prefix).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(prefix);
        }
    }
    None
}

/// Why the executor refuses an operation SQLite's authorizer reports while compiling a statement.
fn refusal(action: c_int, arg1: Option<&str>, arg2: Option<&str>) -> Option<&'static str> {
    match action {
        ffi::SQLITE_ATTACH => {
            Some("ATTACH is refused: it could reach a database off [executors.sqlite] databases")
        }
        ffi::SQLITE_DETACH => Some("DETACH is refused: nothing can be attached"),
        ffi::SQLITE_TRANSACTION => Some(
            "BEGIN, COMMIT, END and ROLLBACK are refused: the statements already run in one transaction, all or nothing",
        ),
        ffi::SQLITE_FUNCTION if arg2.is_some_and(|f| f.eq_ignore_ascii_case("load_extension")) => {
            Some("load_extension() is refused: extensions cannot be loaded")
        }
        ffi::SQLITE_PRAGMA
            if arg1.is_some_and(|p| p.eq_ignore_ascii_case("journal_mode")) && arg2.is_some() =>
        {
            Some("PRAGMA journal_mode = … is refused: the journal mode cannot change inside the transaction")
        }
        _ => None,
    }
}

/// What the authorizer shares with the code compiling statements.
#[derive(Default)]
struct Guard {
    /// On while a job's statement is compiled (off for the executor's own BEGIN and COMMIT).
    armed: Cell<bool>,
    /// Why the authorizer denied that statement.
    refused: Cell<Option<&'static str>>,
}

impl Guard {
    /// Run `f` (which compiles one of the job's statements) with the rules armed; an error
    /// the authorizer caused carries its reason.
    fn check<T>(&self, f: impl FnOnce() -> rusqlite::Result<T>) -> Result<T, String> {
        self.refused.set(None);
        self.armed.set(true);
        let result = f();
        self.armed.set(false);
        result.map_err(|e| {
            self.refused
                .take()
                .map_or_else(|| e.to_string(), str::to_string)
        })
    }
}

/// The authorizer: while armed, denies what [`refusal`] refuses and records why in the
/// [`Guard`] at `data`.
extern "C" fn authorize(
    data: *mut c_void,
    action: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    _db: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    let text = |p: *const c_char| {
        if p.is_null() {
            None
        } else {
            // SAFETY: SQLite passes NUL-terminated strings valid for this call.
            unsafe { CStr::from_ptr(p) }.to_str().ok()
        }
    };
    // SAFETY: `data` is the boxed Guard of the `Db` whose connection calls us; the Db drops
    // its connection before the Guard.
    let guard = unsafe { &*(data as *const Guard) };
    if !guard.armed.get() {
        return ffi::SQLITE_OK;
    }
    match refusal(action, text(arg1), text(arg2)) {
        Some(reason) => {
            guard.refused.set(Some(reason));
            ffi::SQLITE_DENY
        }
        None => ffi::SQLITE_OK,
    }
}

/// The first word of a statement, after spaces and comments, in capitals.
fn first_word(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// A connection to the application database with the executor's rules in force.
struct Db {
    /// Declared first, so it is dropped (and its authorizer with it) before `refused`.
    conn: Connection,
    guard: Box<Guard>,
}

const VACUUM: &str =
    "VACUUM is refused: it cannot run inside the transaction, and VACUUM INTO writes another file";

impl Db {
    /// Compile (not run) statement `i`: refused by its first word or by the authorizer.
    fn compile(&self, sql: &str) -> Result<(), String> {
        let word = first_word(sql);
        if word == "VACUUM" {
            return Err(VACUUM.into());
        }
        let columns = self
            .guard
            .check(|| self.conn.prepare(sql).map(|stmt| stmt.column_count()))?;
        // A statement that returns a row fails at run time. A query (or RETURNING) is refused
        // now; a PRAGMA is left to the run, since its columns do not tell whether it returns one
        // (`PRAGMA optimize` does not, `PRAGMA integrity_check` does).
        if columns > 0 && word != "PRAGMA" {
            return Err(
                "returns rows (a query or RETURNING): the executor runs statements that change the database, and a row returned fails the run"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The file at `path`, reached from `/` without following a symlink.
fn identity(path: &Path) -> std::io::Result<Stat> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other("not a file path"));
    };
    let st = Dir::open_path_to_search(parent)?.stat(name)?;
    match st.kind {
        Kind::File => Ok(st),
        Kind::Symlink => Err(std::io::Error::other("it is a symlink")),
        _ => Err(std::io::Error::other("it is not a file")),
    }
}

/// Open the checked path (no symlink in it): SQLite is told not to follow one
/// (SQLITE_OPEN_NOFOLLOW), and afterwards the file it holds must be the one the path leads to,
/// and that the file found before opening, so a folder swapped meanwhile cannot redirect it.
fn open(path: &Path, flags: OpenFlags) -> Result<Db, String> {
    let nofollow = |e: std::io::Error| format!("opening it without following a symlink: {e}");
    let before = identity(path).map_err(nofollow)?;
    let conn = Connection::open_with_flags(
        path,
        flags | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| e.to_string())?;
    let mut moved: c_int = 0;
    // SAFETY: the handle is valid while `conn` lives; HAS_MOVED writes one int.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_HAS_MOVED,
            (&mut moved as *mut c_int).cast(),
        )
    };
    let after = identity(path).map_err(nofollow)?;
    if rc != ffi::SQLITE_OK || moved != 0 || !after.same_file(&before) {
        return Err(
            "the file changed while it was opened (a folder on its path was swapped?)".into(),
        );
    }
    let guard = Box::new(Guard::default());
    // SAFETY: the handle is valid while `conn` lives; sqlite3_limit has no other preconditions.
    // The authorizer's data is the boxed Guard, which the Db keeps until after the connection.
    unsafe {
        ffi::sqlite3_limit(conn.handle(), ffi::SQLITE_LIMIT_ATTACHED, 0);
        ffi::sqlite3_set_authorizer(
            conn.handle(),
            Some(authorize),
            (&*guard as *const Guard).cast_mut().cast(),
        );
    }
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    Ok(Db { conn, guard })
}

fn checked(
    params: &Map<String, Value>,
    config: &Config,
) -> Result<(PathBuf, Vec<String>), ParamError> {
    let p: Params = typed("sqlite", params)?;
    if p.statements.is_empty() {
        return Err(ParamError::new(
            "sqlite: statements is empty (e.g. [\"DELETE FROM sessions WHERE expires_at < datetime('now')\"])",
        ));
    }
    if let Some(i) = p.statements.iter().position(|s| s.trim().is_empty()) {
        return Err(ParamError(format!("sqlite: statements[{i}] is empty")));
    }
    let db = resolve_path("sqlite", "database", &p.database)?;
    if !db.exists() {
        return Err(ParamError(format!(
            "sqlite: database {} does not exist: create it first (the executor never creates one)",
            db.display()
        )));
    }
    if !db.is_file() {
        return Err(ParamError(format!(
            "sqlite: database {} is not a file",
            db.display()
        )));
    }
    let patterns = &config.sqlite.databases;
    if !allowed(&db, patterns) {
        return Err(ParamError(format!(
            "sqlite: database {} is not in [executors.sqlite] databases ({})",
            db.display(),
            if patterns.is_empty() {
                "the list is empty, so every database is refused".to_string()
            } else {
                patterns.join(", ")
            }
        )));
    }
    if let Some(link) = first_symlink(&p.database) {
        if !named(&db, patterns) {
            return Err(ParamError(format!(
                "sqlite: database {}: {} is a symlink; give the real path {}, or name it in [executors.sqlite] databases",
                p.database.display(),
                link.display(),
                db.display()
            )));
        }
    }
    // Compile each statement (read-only, nothing runs) so a typo, or a statement the run
    // refuses, is refused at `add`.
    let conn = open(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| ParamError(format!("sqlite: opening {}: {e}", db.display())))?;
    for (i, sql) in p.statements.iter().enumerate() {
        conn.compile(sql)
            .map_err(|e| ParamError(format!("sqlite: statements[{i}]: {e}")))?;
    }
    Ok((db, p.statements))
}

/// Run the statements in one transaction; rows changed by each.
fn apply(db: &Path, statements: &[String]) -> Result<Vec<usize>, RunError> {
    apply_with(db, statements, &mut || {})
}

/// [`apply`], calling `before_open` between the check and the open (tests race there).
fn apply_with(
    db: &Path,
    statements: &[String],
    before_open: &mut dyn FnMut(),
) -> Result<Vec<usize>, RunError> {
    before_open();
    let Db { mut conn, guard } = open(db, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| RunError::Failed(format!("opening {}: {e}", db.display())))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| RunError::Failed(format!("starting a transaction: {e}")))?;
    let mut changed = Vec::new();
    for (i, sql) in statements.iter().enumerate() {
        let result = if first_word(sql) == "VACUUM" {
            Err(VACUUM.to_string())
        } else {
            guard.check(|| tx.execute(sql, []))
        };
        match result {
            Ok(n) => changed.push(n),
            Err(e) => {
                return Err(RunError::Failed(format!(
                    "statements[{i}] failed, every statement was rolled back: {e}"
                )))
            }
        }
    }
    tx.commit()
        .map_err(|e| RunError::Failed(format!("commit failed, nothing was changed: {e}")))?;
    drop(conn);
    drop(guard);
    Ok(changed)
}

impl Executor for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn summary(&self) -> &'static str {
        "SQL statements in one transaction on an allowlisted SQLite database: database, statements"
    }

    fn check(&self, params: &Map<String, Value>, config: &Config) -> Result<(), ParamError> {
        checked(params, config).map(|_| ())
    }

    fn run(
        &self,
        params: &Map<String, Value>,
        config: &Config,
        _ctx: &RunContext,
        out: &mut dyn Write,
    ) -> Result<(), RunError> {
        let (db, statements) = checked(params, config)?;
        let changed = apply(&db, &statements)?;
        let w = |e| RunError::io("writing the report", e);
        for (sql, n) in statements.iter().zip(&changed) {
            writeln!(out, "{n} row(s): {}", sql.trim()).map_err(w)?;
        }
        writeln!(
            out,
            "{}: {} statement(s), {} row(s) changed in total, committed",
            db.display(),
            changed.len(),
            changed.iter().sum::<usize>()
        )
        .map_err(w)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap().join("app.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE sessions (id INTEGER PRIMARY KEY, expires_at TEXT NOT NULL);
             INSERT INTO sessions (expires_at) VALUES
               (datetime('now', '-1 day')), (datetime('now', '-2 days')), (datetime('now', '+1 day'));
             CREATE TABLE audit (n INTEGER);",
        )
        .unwrap();
        (dir, path)
    }

    fn config(patterns: &[String]) -> Config {
        let mut c = Config::defaults("/nonexistent".into());
        c.sqlite.databases = patterns.to_vec();
        c
    }

    fn count(path: &Path, table: &str) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    fn run(v: Value, c: &Config) -> Result<String, RunError> {
        let mut out = Vec::new();
        Sqlite.run(
            v.as_object().unwrap(),
            c,
            &RunContext { db: "/x".into() },
            &mut out,
        )?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn statements_run_in_one_transaction() {
        let (_d, db) = app_db();
        let c = config(&[db.display().to_string()]);
        let text = run(
            json!({"database": db, "statements": [
                "DELETE FROM sessions WHERE expires_at < datetime('now')",
                "INSERT INTO audit VALUES (1)"
            ]}),
            &c,
        )
        .unwrap();
        assert!(text.contains("2 row(s): DELETE"), "{text}");
        assert!(text.contains("3 row(s) changed in total"), "{text}");
        assert_eq!(count(&db, "sessions"), 1);
        // A failing statement rolls back the ones before it. (The check compiles statements, so
        // build a failure that only shows when running: a constraint.)
        Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE u (x INTEGER UNIQUE); INSERT INTO u VALUES (1);")
            .unwrap();
        let err = run(
            json!({"database": db, "statements": ["DELETE FROM sessions", "INSERT INTO u VALUES (1)"]}),
            &c,
        )
        .unwrap_err();
        assert!(err.to_string().contains("rolled back"), "{err}");
        assert_eq!(count(&db, "sessions"), 1);
    }

    #[test]
    fn refused_databases_and_statements() {
        let (dir, db) = app_db();
        let glob = format!("{}/*.db", dir.path().canonicalize().unwrap().display());
        let c = config(std::slice::from_ref(&glob));
        assert!(Sqlite
            .check(
                json!({"database": db, "statements": ["DELETE FROM audit"]})
                    .as_object()
                    .unwrap(),
                &c
            )
            .is_ok());
        let other = tempfile::tempdir().unwrap();
        let elsewhere = other.path().join("x.db");
        Connection::open(&elsewhere)
            .unwrap()
            .execute_batch("CREATE TABLE t(x);")
            .unwrap();
        for (v, needle) in [
            (
                json!({"database": elsewhere, "statements": ["DELETE FROM t"]}),
                "not in [executors.sqlite] databases",
            ),
            (
                json!({"database": db, "statements": []}),
                "statements is empty",
            ),
            (
                json!({"database": db, "statements": ["DELETE FROM nosuch"]}),
                "statements[0]: no such table",
            ),
            (
                json!({"database": db, "statements": ["DELETE FROM sessions; DROP TABLE audit"]}),
                "statements[0]",
            ),
            (json!({"database": db, "sql": "x"}), "unknown field `sql`"),
        ] {
            let err = Sqlite.check(v.as_object().unwrap(), &c).unwrap_err();
            assert!(err.0.contains(needle), "{v}: {err}");
        }
        // A database that does not exist is refused (its statements cannot be checked), at the
        // check and again at run time, and the run does not create it.
        let missing = dir.path().join("missing.db");
        let v = json!({"database": missing, "statements": ["DELETE FROM sessions"]});
        let err = Sqlite.check(v.as_object().unwrap(), &c).unwrap_err();
        assert!(err.0.contains("does not exist"), "{err}");
        let err = run(v, &c).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!missing.exists(), "the run created the database");
        // ATTACH cannot reach a file outside the allowlist.
        let attach = format!("ATTACH DATABASE '{}' AS other", elsewhere.display());
        let err = run(json!({"database": db, "statements": [attach]}), &c).unwrap_err();
        assert!(err.to_string().contains("statements[0]"), "{err}");
        assert!(Sqlite
            .check(
                json!({"database": db, "statements": ["DELETE FROM audit"]})
                    .as_object()
                    .unwrap(),
                &config(&[])
            )
            .unwrap_err()
            .0
            .contains("every database is refused"));
    }

    /// Everything the run refuses (or that would break its one transaction) is refused when the
    /// job is checked, naming the statement and the reason.
    #[test]
    fn statements_the_run_refuses_are_refused_at_the_check() {
        let (dir, db) = app_db();
        let c = config(&[db.display().to_string()]);
        let copy = dir.path().join("copy.db");
        for (sql, needle) in [
            ("ATTACH DATABASE '/tmp/x.db' AS other", "ATTACH"),
            ("DETACH DATABASE other", "DETACH"),
            ("VACUUM", "VACUUM"),
            (&*format!("VACUUM INTO '{}'", copy.display()), "VACUUM"),
            ("  -- tidy\n vacuum main", "VACUUM"),
            ("SELECT load_extension('/tmp/evil.so')", "load_extension"),
            ("BEGIN", "transaction"),
            ("COMMIT", "transaction"),
            ("END TRANSACTION", "transaction"),
            ("ROLLBACK", "transaction"),
            ("PRAGMA journal_mode = WAL", "journal_mode"),
            ("SELECT count(*) FROM sessions", "returns rows"),
            ("DELETE FROM audit RETURNING n", "returns rows"),
        ] {
            let v = json!({"database": db, "statements": ["DELETE FROM audit", sql]});
            let err = Sqlite.check(v.as_object().unwrap(), &c).unwrap_err();
            assert!(err.0.contains("statements[1]"), "{sql}: {err}");
            assert!(err.0.contains(needle), "{sql}: {err}");
            let err = run(v, &c).unwrap_err();
            assert!(err.to_string().contains("statements[1]"), "{sql}: {err}");
        }
        assert!(!copy.exists());
        // The run's own compile refuses them too (a row edited behind cronmgr's back is checked
        // again before the run; this is the second line).
        let attach = format!("ATTACH DATABASE '{}' AS other", copy.display());
        let err = apply(&db, &["DELETE FROM audit".into(), attach]).unwrap_err();
        assert!(err.to_string().contains("statements[1]"), "{err}");
        assert!(err.to_string().contains("ATTACH is refused"), "{err}");
        let err = apply(&db, &["COMMIT".into()]).unwrap_err();
        assert!(err.to_string().contains("transaction"), "{err}");
        assert!(!copy.exists());
        // A savepoint, PRAGMA optimize: fine.
        let v = json!({"database": db, "statements": [
            "SAVEPOINT a", "DELETE FROM audit", "RELEASE a", "PRAGMA optimize"
        ]});
        Sqlite.check(v.as_object().unwrap(), &c).unwrap();
        run(v, &c).unwrap();
        // Before, a COMMIT in the list ended the transaction early: the DELETE stayed although the
        // report said every statement was rolled back.
        assert_eq!(count(&db, "sessions"), 3);
    }

    /// The database path is resolved once: a symlink in it is refused unless the config names
    /// the file it leads to.
    #[test]
    fn a_symlink_in_the_database_path_is_refused_unless_the_config_names_the_real_file() {
        let (dir, db) = app_db();
        let base = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(&base, base.join("current")).unwrap();
        let via_link = base.join("current/app.db");
        let v = json!({"database": via_link, "statements": ["DELETE FROM audit"]});
        let glob = format!("{}/*.db", base.display());
        let err = Sqlite
            .check(v.as_object().unwrap(), &config(&[glob]))
            .unwrap_err();
        assert!(err.0.contains("symlink"), "{err}");
        assert!(
            err.0.contains(&base.join("current").display().to_string()),
            "{err}"
        );
        // Named by the config, as the real file or through the same link: accepted.
        for named in [db.clone(), via_link.clone()] {
            let c = config(&[named.display().to_string()]);
            Sqlite.check(v.as_object().unwrap(), &c).unwrap();
            run(v.clone(), &c).unwrap();
        }
    }

    /// A folder of the checked path swapped for a symlink between the check and the open cannot
    /// redirect the statements to another database.
    #[test]
    fn a_folder_swapped_for_a_symlink_after_the_check_cannot_redirect_the_run() {
        let (dir, _) = app_db();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("data")).unwrap();
        let db = base.join("data/app.db");
        std::fs::rename(base.join("app.db"), &db).unwrap();
        let (_other_dir, other) = app_db();
        let statements = vec!["DELETE FROM sessions".to_string()];
        let v = json!({"database": db, "statements": statements});
        let (checked_db, _) =
            checked(v.as_object().unwrap(), &config(&[db.display().to_string()])).unwrap();
        let result = apply_with(&checked_db, &statements, &mut || {
            std::fs::rename(base.join("data"), base.join("data.old")).unwrap();
            std::os::unix::fs::symlink(other.parent().unwrap(), base.join("data")).unwrap();
        });
        assert_eq!(
            count(&other, "sessions"),
            3,
            "the run reached the other database"
        );
        let err = result.unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(count(&base.join("data.old/app.db"), "sessions"), 3);
    }
}
