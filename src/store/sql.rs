//! One small SQL interface over the two engines the store speaks: SQLite (embedded, the default)
//! and PostgreSQL (a shared database for a fleet of runners, behind the `postgres` feature).
//!
//! It mirrors the part of rusqlite's API the store uses (`prepare_cached`, `execute`,
//! `query_row`, `query_map`, `params!`, `Row::get` by position or by name), so the store's SQL
//! and row mapping are written once. The SQL is the common subset of both dialects, with `?N`
//! placeholders, which become `$N` for PostgreSQL. Values cross as one of five kinds ([`Value`]); instants are RFC 3339
//! text in both engines, so the two answer identically.

//! The parts, each in its own file: `value` (the five kinds of values and the conversions to
//! and from Rust types), `row` (reading a row's columns by position or by name),
//! `connection` (a connection and its statements on each engine). Here: errors, the engine
//! kind and the one dialect difference of the SQL text (`?N` placeholders as `$N`).

use std::fmt;

mod connection;
mod row;
mod value;

#[cfg(feature = "postgres")]
pub use connection::PgConnection;
pub use connection::{Connection, Statement};
pub use row::{Named, Row, RowIndex};
pub(crate) use value::params;
pub use value::{FromValue, Params, ToValue, Value};

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("query returned no rows")]
    NoRows,
    #[error("no column named {0:?} in the result")]
    NoColumn(String),
    #[error("column {column}: {message}")]
    Conversion { column: usize, message: String },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
}

#[cfg(feature = "postgres")]
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl Error {
    /// A conversion failure of column `column` (for the store's row mappers).
    pub fn conversion(column: usize, message: impl fmt::Display) -> Error {
        Error::Conversion {
            column,
            message: message.to_string(),
        }
    }

    /// Did the database refuse or fail to take the write for now (locked, busy, disk full, I/O
    /// error, connection lost), as opposed to the statement being wrong? Such a write may be
    /// retried later and succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                use rusqlite::ErrorCode::*;
                matches!(
                    f.code,
                    DatabaseBusy
                        | DatabaseLocked
                        | DiskFull
                        | SystemIoFailure
                        | CannotOpen
                        | OutOfMemory
                )
            }
            #[cfg(feature = "postgres")]
            Error::Postgres(e) => match e.as_db_error() {
                // 08: connection exception, 53: insufficient resources, 57: operator
                // intervention (shutdown), 40: serialization failure / deadlock.
                Some(db) => {
                    let c = db.code().code();
                    ["08", "53", "57", "40"].iter().any(|p| c.starts_with(p))
                }
                None => true,
            },
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `.optional()` on a single-row result: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}
impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Which backend (database engine) a connection talks to: `store::Backend`, not to be confused
/// with the runner's `runner::Engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite's `?N` and `?` placeholders as PostgreSQL's `$N`, outside quoted text.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' => {
                out.push('$');
                if chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        out.push(*d);
                        chars.next();
                    }
                } else {
                    out.push_str(&next.to_string());
                    next += 1;
                }
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollar_numbers_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT ?1, ?2 FROM t WHERE a = '?' AND b = ?1 AND c = ?"),
            "SELECT $1, $2 FROM t WHERE a = '?' AND b = $1 AND c = $1"
        );
        assert_eq!(to_postgres("x = ? AND y = ?"), "x = $1 AND y = $2");
    }
}
