//! Reading a row: a column by position, by name, or by name at the position it is expected
//! ([`Named`]), and its value as a Rust type.

use super::{Error, FromValue, Result, Value};

/// A column of a row: its position, or its name (as the SELECT list spells it).
pub trait RowIndex {
    fn index(&self, row: &Row<'_>) -> Result<usize>;
}
impl RowIndex for usize {
    fn index(&self, _: &Row<'_>) -> Result<usize> {
        Ok(*self)
    }
}
impl RowIndex for &str {
    fn index(&self, row: &Row<'_>) -> Result<usize> {
        row.column_index(self)
    }
}

/// A column by name, with the position it is expected at: checked first, so reading a row of
/// many columns by name costs one comparison per column, not a search.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a>(pub &'a str, pub usize);

impl RowIndex for Named<'_> {
    fn index(&self, row: &Row<'_>) -> Result<usize> {
        let Named(name, at) = *self;
        let there = match row {
            Row::Sqlite(r, columns) => columns.names(r).get(at).map(String::as_str) == Some(name),
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => r.columns().get(at).map(|c| c.name()) == Some(name),
        };
        if there {
            Ok(at)
        } else {
            row.column_index(name)
        }
    }
}

/// The names of a result's columns, shared by its rows: read from the SQLite statement once per
/// query, at the first lookup by name (a positional read never asks), instead of asking SQLite
/// (`sqlite3_column_name`, then a UTF-8 check) for every column of every row. Made afresh for
/// each query, since a cached statement is prepared again when the schema changes.
#[derive(Debug, Default)]
pub struct Columns {
    names: std::cell::OnceCell<Vec<String>>,
}

impl Columns {
    fn names(&self, row: &rusqlite::Row<'_>) -> &[String] {
        self.names.get_or_init(|| {
            #[cfg(test)]
            tests::NAME_LOADS.with(|n| n.set(n.get() + 1));
            row.as_ref()
                .column_names()
                .into_iter()
                .map(String::from)
                .collect()
        })
    }
}

/// One row of a result.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>, &'a Columns),
    #[cfg(feature = "postgres")]
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// The position of the column named `name`.
    pub fn column_index(&self, name: &str) -> Result<usize> {
        let found = match self {
            Row::Sqlite(r, columns) => columns.names(r).iter().position(|c| c == name),
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => r.columns().iter().position(|c| c.name() == name),
        };
        found.ok_or_else(|| Error::NoColumn(name.to_string()))
    }

    pub fn get<I: RowIndex, T: FromValue>(&self, idx: I) -> Result<T> {
        let i = idx.index(self)?;
        let v = match self {
            Row::Sqlite(r, _) => match r.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(n) => Value::Int(n),
                rusqlite::types::ValueRef::Real(f) => Value::Real(f),
                rusqlite::types::ValueRef::Text(t) => {
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
                rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            },
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => r.try_get::<_, Value>(i)?,
        };
        T::from_value(v, i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use std::cell::Cell;

    thread_local! {
        /// How many times a result's column names were read from SQLite (this thread's).
        pub(super) static NAME_LOADS: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn column_names_are_read_once_per_query_and_afresh_for_the_next() {
        let c = Connection::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        c.execute_batch(
            "CREATE TABLE t (a INTEGER, b TEXT); \
             INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, 'z');",
        )
        .unwrap();
        let read = |c: &Connection| -> Vec<(i64, String)> {
            c.prepare_cached("SELECT * FROM t ORDER BY a")
                .unwrap()
                .query_map((), |r| Ok((r.get(Named("a", 0))?, r.get(Named("b", 1))?)))
                .unwrap()
                .collect::<Result<_>>()
                .unwrap()
        };
        let before = NAME_LOADS.with(Cell::get);
        assert_eq!(read(&c).len(), 3);
        assert_eq!(
            NAME_LOADS.with(Cell::get) - before,
            1,
            "three rows, one read of the names"
        );
        // The schema changes under the cached statement: `*` now starts with another column,
        // and the names read for the first query must not be used for this one.
        c.execute_batch(
            "ALTER TABLE t RENAME TO old; CREATE TABLE t (z TEXT, b TEXT, a INTEGER); \
             INSERT INTO t SELECT 'q', b, a FROM old;",
        )
        .unwrap();
        assert_eq!(
            read(&c),
            vec![(1, "x".into()), (2, "y".into()), (3, "z".into())]
        );
        assert_eq!(NAME_LOADS.with(Cell::get) - before, 2);
        // Reading by position never asks for the names.
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", (), |r| r.get(0))
            .unwrap();
        assert_eq!((n, NAME_LOADS.with(Cell::get) - before), (3, 2));
    }

    #[test]
    fn sqlite_round_trip_of_every_kind() {
        let c = Connection::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        c.execute_batch("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB)")
            .unwrap();
        let n = c
            .execute(
                "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
                params![7_i64, 1.5_f64, "x", vec![0_u8, 255]],
            )
            .unwrap();
        assert_eq!(n, 1);
        c.execute("INSERT INTO t (i) VALUES (?1)", [Option::<i64>::None])
            .unwrap();
        type Four = (Option<i64>, Option<f64>, Option<String>, Option<Vec<u8>>);
        let rows: Vec<Four> = c
            .prepare("SELECT i, r, s, b FROM t ORDER BY rowid")
            .unwrap()
            .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (Some(7), Some(1.5), Some("x".into()), Some(vec![0, 255])),
                (None, None, None, None)
            ]
        );
        let missing = c.query_row("SELECT i FROM t WHERE i = 99", (), |r| r.get::<_, i64>(0));
        assert!(matches!(missing, Err(Error::NoRows)));
        assert_eq!(missing.optional().unwrap(), None);
        let bad = c.query_row("SELECT s FROM t WHERE i = 7", (), |r| r.get::<_, i64>(0));
        assert!(bad.unwrap_err().to_string().contains("column 0"));
        let by_name = c.query_row("SELECT s, i FROM t WHERE i = 7", (), |r| {
            Ok((r.get::<_, i64>("i")?, r.get::<_, String>("s")?))
        });
        assert_eq!(by_name.unwrap(), (7, "x".to_string()));
        let bad = c.query_row("SELECT s, i FROM t WHERE i = 7", (), |r| {
            r.get::<_, i64>("s")
        });
        assert!(bad.unwrap_err().to_string().contains("column 0"));
        let none = c.query_row("SELECT s FROM t WHERE i = 7", (), |r| {
            r.get::<_, i64>("nope")
        });
        assert!(matches!(none, Err(Error::NoColumn(n)) if n == "nope"));
        let hinted = c.query_row("SELECT s, i FROM t WHERE i = 7", (), |r| {
            Ok((
                r.get::<_, i64>(Named("i", 1))?,
                r.get::<_, i64>(Named("i", 0))?,
            ))
        });
        assert_eq!(hinted.unwrap(), (7, 7));
    }
}
