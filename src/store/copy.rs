//! Copying one cronmgr database into another, table by table (`cronmgr migrate`): an SQLite file
//! into PostgreSQL, and any other pairing the two engines allow.
//!
//! The source is read in one snapshot (a read transaction); the target is written in one write
//! transaction, so it ends up with all of the source or, on any error, exactly as it was. Rows
//! keep their ids, so `history`, `logs ID` and `audit` name the same things on both sides.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::sql::{Backend, Connection, Value};
use super::{Result, Store, StoreError};

/// The tables copied, in an order that inserts every row after the rows it refers to.
pub const TABLES: &[&str] = &[
    "settings",
    "jobs",
    "executions",
    "alerts",
    "alert_conditions",
    "alert_deliveries",
    "job_run_counts",
    "runner_state",
    "runners",
    "audit",
];

/// Tables keyed by an `id` the engine assigns (PostgreSQL: an identity sequence). They are read
/// in pages by id; the others are small and read whole.
const ID_TABLES: &[&str] = &[
    "jobs",
    "executions",
    "alerts",
    "alert_deliveries",
    "runners",
    "audit",
];

/// Rows read and inserted at a time.
const PAGE_ROWS: usize = 2000;

/// Values bound to one statement at most: under SQLite's limit (32766) and PostgreSQL's (65535).
const MAX_PARAMS: usize = 30_000;

/// One table's rows on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCount {
    pub table: &'static str,
    pub source: u64,
    pub target: u64,
}

/// How a copy is going, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// The source holds this many rows in all.
    Counted(u64),
    /// Copying this table now.
    Table(&'a str),
    /// This many more rows copied.
    Rows(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the target already holds data ({}); migrate copies into an empty database only", list(.0))]
    NotEmpty(Vec<(&'static str, u64)>),
    #[error("row counts differ after the copy ({}); the target was left as it was", mismatches(.0))]
    Mismatch(Vec<TableCount>),
    #[error("column {column:?} of the source's {table} table is missing from the target's")]
    Column { table: &'static str, column: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<super::sql::Error> for CopyError {
    fn from(e: super::sql::Error) -> CopyError {
        CopyError::Store(e.into())
    }
}

fn list(tables: &[(&'static str, u64)]) -> String {
    tables
        .iter()
        .map(|(t, n)| format!("{t}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mismatches(counts: &[TableCount]) -> String {
    counts
        .iter()
        .filter(|c| c.source != c.target)
        .map(|c| {
            format!(
                "{}: {} in the source, {} in the target",
                c.table, c.source, c.target
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Rows per table, in [`TABLES`] order.
pub fn counts(store: &Store) -> Result<Vec<(&'static str, u64)>> {
    count_all(store.connection())
}

fn count_all(conn: &Connection) -> Result<Vec<(&'static str, u64)>> {
    TABLES
        .iter()
        .map(|&t| {
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {t}"), (), |r| r.get(0))?;
            Ok((t, n.max(0) as u64))
        })
        .collect()
}

/// The tables of `store` that hold rows (a target must have none).
pub fn occupied(store: &Store) -> Result<Vec<(&'static str, u64)>> {
    Ok(counts(store)?.into_iter().filter(|(_, n)| *n > 0).collect())
}

/// Copy every table of `source` into `target`, which must hold no rows; the row counts of both,
/// checked equal before the target's transaction commits.
pub fn copy(
    source: &Store,
    target: &Store,
    on: &mut dyn FnMut(Step<'_>),
) -> Result<Vec<TableCount>, CopyError> {
    let src = source.connection();
    src.execute_batch(match src.backend() {
        Backend::Sqlite => "BEGIN",
        Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    })?;
    let copied = copy_snapshot(src, target, on);
    let _ = src.execute_batch("ROLLBACK");
    copied
}

fn copy_snapshot(
    src: &Connection,
    target: &Store,
    on: &mut dyn FnMut(Step<'_>),
) -> Result<Vec<TableCount>, CopyError> {
    let source_counts = count_all(src)?;
    on(Step::Counted(source_counts.iter().map(|(_, n)| n).sum()));
    // `Store::write` rolls back on a StoreError; the reason we stopped travels beside it.
    let mut refused: Option<CopyError> = None;
    let written = target.write(|dst| {
        let stop = |refused: &mut Option<CopyError>, e: CopyError| {
            *refused = Some(e);
            StoreError::Corrupt("the copy stopped".into())
        };
        let present: Vec<_> = count_all(dst)?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        if !present.is_empty() {
            return Err(stop(&mut refused, CopyError::NotEmpty(present)));
        }
        // The count of every inserted execution is replaced by the source's below; on
        // PostgreSQL, counting them row by row would also take ten times the whole copy.
        let paused = dst.backend() == Backend::Postgres && pause_counting(dst)?;
        for &table in TABLES {
            on(Step::Table(table));
            if let Err(e) = copy_table(src, dst, table, on) {
                return Err(stop(&mut refused, e));
            }
        }
        if paused {
            dst.execute_batch("ALTER TABLE executions ENABLE TRIGGER executions_count_insert")?;
        }
        if dst.backend() == Backend::Postgres {
            for t in ID_TABLES {
                dst.execute_batch(&format!(
                    "SELECT setval(pg_get_serial_sequence('{t}', 'id'), \
                     coalesce(max(id), 0) + 1, false) FROM {t}"
                ))?;
            }
        }
        let counts: Vec<TableCount> = source_counts
            .iter()
            .zip(count_all(dst)?)
            .map(|(&(table, source), (_, target))| TableCount {
                table,
                source,
                target,
            })
            .collect();
        if counts.iter().any(|c| c.source != c.target) {
            return Err(stop(&mut refused, CopyError::Mismatch(counts)));
        }
        Ok(counts)
    });
    match (written, refused) {
        (_, Some(e)) => Err(e),
        (Ok(counts), None) => Ok(counts),
        (Err(e), None) => Err(e.into()),
    }
}

/// Disable, for this transaction, the PostgreSQL trigger that counts each inserted execution into
/// `job_run_counts`; false (and the copy goes on, slower) when this role may not (not the owner).
fn pause_counting(dst: &Connection) -> Result<bool> {
    dst.execute_batch("SAVEPOINT pause_counting")?;
    match dst.execute_batch("ALTER TABLE executions DISABLE TRIGGER executions_count_insert") {
        Ok(()) => {
            dst.execute_batch("RELEASE SAVEPOINT pause_counting")?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not pause the execution counter; copying with it");
            dst.execute_batch("ROLLBACK TO SAVEPOINT pause_counting")?;
            Ok(false)
        }
    }
}

/// The columns of `table`, in order.
pub(crate) fn columns(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let sql = match conn.backend() {
        Backend::Sqlite => "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
        Backend::Postgres => {
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position"
        }
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([table], |r| r.get(0))?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

fn quoted(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn copy_table(
    src: &Connection,
    dst: &Connection,
    table: &'static str,
    on: &mut dyn FnMut(Step<'_>),
) -> Result<(), CopyError> {
    let cols = columns(src, table)?;
    let theirs: HashSet<String> = columns(dst, table)?.into_iter().collect();
    if let Some(missing) = cols.iter().find(|c| !theirs.contains(*c)) {
        return Err(CopyError::Column {
            table,
            column: missing.clone(),
        });
    }
    if table == "job_run_counts" {
        // The executions just inserted were counted again by the target's triggers; the counts
        // to keep are the source's (they survive retention, so they may exceed the history).
        dst.execute("DELETE FROM job_run_counts", ())?;
    }
    let names = quoted(&cols);
    let per_page = (MAX_PARAMS / cols.len()).clamp(1, PAGE_ROWS);
    let paged = ID_TABLES.contains(&table);
    let id_at = cols.iter().position(|c| c == "id");
    let select = if paged {
        format!("SELECT {names} FROM {table} WHERE id > ?1 ORDER BY id LIMIT {per_page}")
    } else {
        format!("SELECT {names} FROM {table}")
    };
    let mut after = i64::MIN;
    loop {
        let mut stmt = src.prepare_cached(&select)?;
        let params = if paged {
            vec![Value::Int(after)]
        } else {
            vec![]
        };
        let rows: Vec<Vec<Value>> = stmt
            .query_map(params, |r| {
                (0..cols.len()).map(|i| r.get::<_, Value>(i)).collect()
            })?
            .collect::<super::sql::Result<_>>()?;
        drop(stmt);
        if rows.is_empty() {
            return Ok(());
        }
        for chunk in rows.chunks(per_page) {
            insert(dst, table, &names, cols.len(), chunk)?;
            on(Step::Rows(chunk.len() as u64));
        }
        if !paged {
            return Ok(());
        }
        match rows.last().and_then(|r| id_at.map(|i| &r[i])) {
            Some(Value::Int(id)) if rows.len() == per_page => after = *id,
            _ => return Ok(()),
        }
    }
}

/// One multi-row INSERT of `rows`.
fn insert(
    dst: &Connection,
    table: &str,
    names: &str,
    width: usize,
    rows: &[Vec<Value>],
) -> Result<(), CopyError> {
    let mut sql = format!("INSERT INTO {table} ({names}) VALUES ");
    let mut n = 0;
    for (i, _) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for j in 0..width {
            if j > 0 {
                sql.push(',');
            }
            n += 1;
            let _ = write!(sql, "?{n}");
        }
        sql.push(')');
    }
    let values: Vec<Value> = rows.iter().flatten().cloned().collect();
    dst.prepare_cached(&sql)?.execute(values)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::params;

    /// A source with rows in every table: three jobs (one removed, so ids have a gap), history
    /// with output, an alert with its condition and delivery, counts, runners, audit.
    fn fill(store: &Store) {
        let c = store.connection();
        let t = "2026-01-02T03:04:05.000Z";
        c.execute(
            "INSERT INTO settings (system, timezone, created_at, updated_at, alert_email) \
             VALUES ('default', 'UTC', ?1, ?1, 'ops@example.com'), ('other', 'Europe/Paris', ?1, ?1, NULL)",
            [t],
        )
        .unwrap();
        for (id, name) in [(1, "backup"), (2, "gone"), (3, "report")] {
            c.execute(
                "INSERT INTO jobs (id, system, name, schedule, command, created_at, updated_at, \
                 description, timeout) VALUES (?1, 'default', ?2, '0 3 * * *', 'echo hi', ?3, ?3, ?4, ?5)",
                params![id, name, t, (id == 1).then_some("nightly"), (id == 3).then_some(60)],
            )
            .unwrap();
        }
        for i in 1..=4500_i64 {
            let job = if i % 2 == 0 { 1 } else { 3 };
            let status = match i % 5 {
                0 => "failed",
                1 => "running",
                _ => "success",
            };
            c.execute(
                "INSERT INTO executions (id, job_id, status, scheduled_for, started_at, finished_at, \
                 duration_ms, output, exit_code, triggered_by, memory_used_mb, runner_id) \
                 VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5, ?6, ?7, 'schedule', ?8, NULL)",
                params![
                    i * 2,
                    job,
                    status,
                    format!("2026-01-02T03:{:02}:{:02}.{:03}Z", i / 3600, (i / 60) % 60, i % 1000),
                    i,
                    format!("line {i}\n"),
                    (status == "failed").then_some(1),
                    1.5_f64
                ],
            )
            .unwrap();
        }
        c.execute("DELETE FROM jobs WHERE id = 2", ()).unwrap();
        // Counts outlive retention: make them exceed the history.
        c.execute(
            "UPDATE job_run_counts SET count = count + 100 WHERE job_id = 1",
            (),
        )
        .unwrap();
        c.execute(
            "INSERT INTO alerts (id, system, job_id, job, kind, state, summary, created_at) \
             VALUES (7, 'default', 3, 'report', 'failed', 'firing', 'report failed', ?1)",
            [t],
        )
        .unwrap();
        c.execute(
            "INSERT INTO alert_conditions (system, job_id, kind, alert_id, opened_at) \
             VALUES ('default', 3, 'failed', 7, ?1)",
            [t],
        )
        .unwrap();
        c.execute(
            "INSERT INTO alert_deliveries (id, alert_id, channel, target, state, attempts) \
             VALUES (9, 7, 'email', 'ops@example.com', 'sent', 1)",
            (),
        )
        .unwrap();
        c.execute(
            "INSERT INTO runner_state (id, pid, started_at, updated_at) VALUES (1, 42, ?1, ?1)",
            [t],
        )
        .unwrap();
        c.execute(
            "INSERT INTO runners (id, host, pid, version, started_at, heartbeat_at, stopped_at) \
             VALUES (5, 'h1', 42, '0.1.0', ?1, ?1, ?1)",
            [t],
        )
        .unwrap();
        for (id, action) in [(1, "add"), (2, "rm"), (4, "settings")] {
            c.execute(
                "INSERT INTO audit (id, at, uid, \"user\", action, system, target, outcome, diff) \
                 VALUES (?1, ?2, 0, 'root', ?3, 'default', 'backup', 'ok', '{\"a\":{\"before\":1,\"after\":2}}')",
                params![id, t, action],
            )
            .unwrap();
        }
    }

    /// Every row of every table, columns by the source's names, in a fixed order.
    fn dump(store: &Store) -> Vec<Vec<Value>> {
        let c = store.connection();
        let mut out = Vec::new();
        for &t in TABLES {
            // Columns in name order (the engines may differ in theirs); rows in key order.
            let by_key = quoted(&columns(c, t).unwrap());
            let mut cols = columns(c, t).unwrap();
            cols.sort();
            let names = quoted(&cols);
            let mut stmt = c
                .prepare(&format!("SELECT {names} FROM {t} ORDER BY {by_key}"))
                .unwrap();
            let rows = stmt
                .query_map((), |r| (0..cols.len()).map(|i| r.get(i)).collect())
                .unwrap();
            for r in rows {
                let mut r: Vec<Value> = r.unwrap();
                r.insert(0, Value::Text(t.to_string()));
                out.push(r);
            }
        }
        out
    }

    fn sqlite(dir: &tempfile::TempDir, name: &str) -> Store {
        Store::open(&dir.path().join(name)).unwrap()
    }

    fn check_copy(source: &Store, target: &Store) {
        fill(source);
        let mut rows = 0;
        let counts = copy(source, target, &mut |s| {
            if let Step::Rows(n) = s {
                rows += n
            }
        })
        .unwrap();
        assert!(counts.iter().all(|c| c.source == c.target), "{counts:?}");
        let total: u64 = counts.iter().map(|c| c.source).sum();
        assert_eq!(rows, total);
        let count = |t| counts.iter().find(|c| c.table == t).unwrap().target;
        assert_eq!(count("executions"), 4500);
        assert_eq!(count("audit"), 3);
        assert_eq!(dump(source), dump(target));
        // New rows continue after the copied ids.
        let c = target.connection();
        let next = |sql: &str| -> i64 { c.query_row(sql, (), |r| r.get(0)).unwrap() };
        c.execute(
            "INSERT INTO jobs (system, name, schedule, command, created_at, updated_at) \
             VALUES ('default', 'new', '* * * * *', 'true', 'x', 'x')",
            (),
        )
        .unwrap();
        assert_eq!(next("SELECT id FROM jobs WHERE name = 'new'"), 4);
        c.execute(
            "INSERT INTO audit (at, uid, \"user\", action, system, outcome) \
             VALUES ('x', 0, 'root', 'add', 'default', 'ok')",
            (),
        )
        .unwrap();
        assert_eq!(next("SELECT max(id) FROM audit"), 5);
        // The target counts executions again.
        let failed = "SELECT count FROM job_run_counts WHERE job_id = 1 AND status = 'failed'";
        let before = next(failed);
        c.execute(
            "INSERT INTO executions (job_id, status, scheduled_for, triggered_by) \
             VALUES (1, 'failed', 'x', 'schedule')",
            (),
        )
        .unwrap();
        assert_eq!(next(failed), before + 1);
        assert_eq!(next("SELECT max(id) FROM executions"), 9001);
    }

    #[test]
    fn sqlite_to_sqlite_copies_every_row_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        check_copy(&sqlite(&dir, "a.db"), &sqlite(&dir, "b.db"));
    }

    /// SQLite into PostgreSQL with CRONMGR_TEST_POSTGRES set; into SQLite in memory without.
    #[test]
    fn sqlite_to_the_test_engine_copies_every_row_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        check_copy(&sqlite(&dir, "a.db"), &Store::open_in_memory().unwrap());
    }

    /// PostgreSQL back into SQLite, with CRONMGR_TEST_POSTGRES set.
    #[test]
    fn the_test_engine_to_sqlite_copies_every_row_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        check_copy(&Store::open_in_memory().unwrap(), &sqlite(&dir, "b.db"));
    }

    #[test]
    fn refuses_a_target_with_data_and_leaves_it_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let source = sqlite(&dir, "a.db");
        fill(&source);
        let target = Store::open_in_memory().unwrap();
        target
            .connection()
            .execute(
                "INSERT INTO jobs (system, name, schedule, command, created_at, updated_at) \
                 VALUES ('default', 'mine', '* * * * *', 'true', 'x', 'x')",
                (),
            )
            .unwrap();
        let before = dump(&target);
        let err = copy(&source, &target, &mut |_| {}).unwrap_err();
        assert!(
            matches!(&err, CopyError::NotEmpty(t) if t == &[("jobs", 1)]),
            "{err}"
        );
        assert!(err.to_string().contains("(jobs: 1)"), "{err}");
        assert_eq!(dump(&target), before);
        assert_eq!(occupied(&target).unwrap(), vec![("jobs", 1)]);
    }

    #[test]
    fn a_failed_copy_leaves_the_target_empty() {
        let dir = tempfile::tempdir().unwrap();
        let source = sqlite(&dir, "a.db");
        fill(&source);
        // A row the target's schema rejects (PostgreSQL checks JSON; both check the state).
        source
            .connection()
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON; \
                 UPDATE alert_deliveries SET state = 'lost'; \
                 PRAGMA ignore_check_constraints = OFF;",
            )
            .unwrap();
        let target = sqlite(&dir, "b.db");
        let err = copy(&source, &target, &mut |_| {}).unwrap_err();
        assert!(matches!(err, CopyError::Store(_)), "{err}");
        assert!(occupied(&target).unwrap().is_empty());
    }
}
