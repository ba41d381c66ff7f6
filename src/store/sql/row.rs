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
            Row::Sqlite(r) => r.as_ref().column_name(at).ok() == Some(name),
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

/// One row of a result.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    #[cfg(feature = "postgres")]
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// The position of the column named `name`.
    pub fn column_index(&self, name: &str) -> Result<usize> {
        let found = match self {
            Row::Sqlite(r) => r.as_ref().column_index(name).ok(),
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => r.columns().iter().position(|c| c.name() == name),
        };
        found.ok_or_else(|| Error::NoColumn(name.to_string()))
    }

    pub fn get<I: RowIndex, T: FromValue>(&self, idx: I) -> Result<T> {
        let i = idx.index(self)?;
        let v = match self {
            Row::Sqlite(r) => match r.get_ref(i)? {
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
