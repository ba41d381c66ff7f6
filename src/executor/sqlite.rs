//! `sqlite`: run SQL statements against an application database, in one transaction.
//!
//! Params: `database` (an existing file matching `[executors.sqlite] databases`, paths or
//! globs), `statements` (a list of SQL strings, one statement each). All or nothing: any error
//! rolls every statement back. ATTACH is disabled, so a statement cannot reach another file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::common::{resolve_path, typed};
use super::{glob_match, Executor, ParamError, RunContext, RunError};
use crate::config::Config;

pub struct Sqlite;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    database: PathBuf,
    statements: Vec<String>,
}

fn allowed(resolved: &Path, patterns: &[String]) -> bool {
    let text = resolved.to_string_lossy();
    patterns.iter().any(|p| {
        if p.contains(['*', '?']) {
            glob_match(p, &text)
        } else {
            resolve_path("sqlite", "allowed database", Path::new(p)).is_ok_and(|a| a == resolved)
        }
    })
}

fn open(path: &Path, flags: OpenFlags) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| e.to_string())?;
    // SAFETY: the handle is valid while `conn` lives; sqlite3_limit has no other preconditions.
    unsafe {
        rusqlite::ffi::sqlite3_limit(conn.handle(), rusqlite::ffi::SQLITE_LIMIT_ATTACHED, 0);
    }
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    Ok(conn)
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
    if db.exists() && !db.is_file() {
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
    // Compile each statement (read-only, nothing runs) so a typo is refused at `add`. A database
    // the application has not created yet cannot be checked now; opening it at run time (never
    // creating it) says so then.
    if !db.exists() {
        return Ok((db, p.statements));
    }
    let conn = open(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| ParamError(format!("sqlite: opening {}: {e}", db.display())))?;
    for (i, sql) in p.statements.iter().enumerate() {
        if let Err(e) = conn.prepare(sql) {
            return Err(ParamError(format!("sqlite: statements[{i}]: {e}")));
        }
    }
    Ok((db, p.statements))
}

/// Run the statements in one transaction; rows changed by each.
fn apply(db: &Path, statements: &[String]) -> Result<Vec<usize>, RunError> {
    let mut conn = open(db, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| RunError::Failed(format!("opening {}: {e}", db.display())))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| RunError::Failed(format!("starting a transaction: {e}")))?;
    let mut changed = Vec::new();
    for (i, sql) in statements.iter().enumerate() {
        match tx.execute(sql, []) {
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
                json!({"database": db, "statements": ["SELECT 1"]})
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
        // A database the application has not created yet passes the check (its statements cannot
        // be compiled yet), and the run fails without creating it.
        let missing = dir.path().join("missing.db");
        let v = json!({"database": missing, "statements": ["DELETE FROM sessions"]});
        assert!(Sqlite.check(v.as_object().unwrap(), &c).is_ok());
        let err = run(v, &c).unwrap_err();
        assert!(err.to_string().contains("unable to open"), "{err}");
        assert!(!missing.exists(), "the run created the database");
        // ATTACH cannot reach a file outside the allowlist.
        let attach = format!("ATTACH DATABASE '{}' AS other", elsewhere.display());
        let err = run(json!({"database": db, "statements": [attach]}), &c).unwrap_err();
        assert!(err.to_string().contains("statements[0]"), "{err}");
        assert!(Sqlite
            .check(
                json!({"database": db, "statements": ["SELECT 1"]})
                    .as_object()
                    .unwrap(),
                &config(&[])
            )
            .unwrap_err()
            .0
            .contains("every database is refused"));
    }
}
