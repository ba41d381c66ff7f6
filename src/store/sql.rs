//! One small SQL interface over the two engines the store speaks: SQLite (embedded, the default)
//! and PostgreSQL (a shared database for a fleet of runners, behind the `postgres` feature).
//!
//! It mirrors the part of rusqlite's API the store uses (`prepare_cached`, `execute`,
//! `query_row`, `query_map`, `params!`, `Row::get` by position or by name), so the store's SQL
//! and row mapping are written once. The SQL is the common subset of both dialects, with `?N`
//! placeholders, which become `$N` for PostgreSQL. Values cross as one of five kinds ([`Value`]); instants are RFC 3339
//! text in both engines, so the two answer identically.

use std::fmt;

#[cfg(feature = "postgres")]
use std::cell::RefCell;
#[cfg(feature = "postgres")]
use std::collections::HashMap;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

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

/// A Rust value that can be bound to a statement.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_to_value!(i64, i32, u32, u16, u8, usize, u64);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(*self as i64)
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}
impl<T: ToValue + ?Sized> ToValue for Box<T> {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// What a statement's parameters can be given as: `()`, `[a, b]`, `params![a, 1, "x"]`, a
/// `Vec<Value>`.
pub trait Params {
    fn into_values(self) -> Vec<Value>;
}

impl Params for () {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }
}
impl Params for Vec<Value> {
    fn into_values(self) -> Vec<Value> {
        self
    }
}
impl<T: ToValue, const N: usize> Params for [T; N] {
    fn into_values(self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}

/// Parameters of mixed types: `params![id, name, at.map(fmt_time)]`.
macro_rules! params {
    () => { () };
    ($($p:expr),+ $(,)?) => {
        vec![$($crate::store::sql::ToValue::to_value(&$p)),+]
    };
}
pub(crate) use params;

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: Value, column: usize) -> Result<Self>;
}

impl FromValue for Value {
    fn from_value(v: Value, _: usize) -> Result<Self> {
        Ok(v)
    }
}

fn mismatch<T>(v: &Value, column: usize, want: &str) -> Result<T> {
    Err(Error::conversion(
        column,
        format!("expected {want}, found {v:?}"),
    ))
}

impl FromValue for i64 {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Int(i) => Ok(i),
            other => mismatch(&other, column, "an integer"),
        }
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: Value, column: usize) -> Result<Self> {
                let i = i64::from_value(v, column)?;
                <$t>::try_from(i).map_err(|_| {
                    Error::conversion(column, format!("{i} is out of range for {}", stringify!($t)))
                })
            }
        }
    )*};
}
int_from_value!(i32, u32, u16, u8, usize, u64);

impl FromValue for bool {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        Ok(i64::from_value(v, column)? != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => mismatch(&other, column, "a number"),
        }
    }
}
impl FromValue for String {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Text(s) => Ok(s),
            other => mismatch(&other, column, "text"),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Blob(b) => Ok(b),
            Value::Text(s) => Ok(s.into_bytes()),
            other => mismatch(&other, column, "bytes"),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, column).map(Some),
        }
    }
}

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

/// A connection to either engine.
pub enum Connection {
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "postgres")]
    Postgres(Box<RefCell<PgConnection>>),
}

#[cfg(feature = "postgres")]
pub struct PgConnection {
    pub client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

#[cfg(feature = "postgres")]
impl PgConnection {
    pub fn new(client: postgres::Client) -> PgConnection {
        PgConnection {
            client,
            statements: HashMap::new(),
        }
    }

    /// `sql` prepared for these values: each parameter typed by the value bound to it, so
    /// `x = ?1` needs no casts. A NULL is left for the server to infer; where it cannot (`?1 IS
    /// NULL OR system = ?1`), it is tried as text, then as an integer.
    fn statement(&mut self, sql: &str, values: &[Value]) -> Result<postgres::Statement> {
        use postgres::types::Type;
        let mut key = String::with_capacity(sql.len() + values.len() + 1);
        key.push_str(sql);
        key.push('\0');
        for v in values {
            key.push(match v {
                Value::Null => 'n',
                Value::Int(_) => 'i',
                Value::Real(_) => 'r',
                Value::Text(_) => 't',
                Value::Blob(_) => 'b',
            });
        }
        if let Some(s) = self.statements.get(&key) {
            return Ok(s.clone());
        }
        let text = to_postgres(sql);
        let mut last = None;
        for null in [Type::UNKNOWN, Type::TEXT, Type::INT8] {
            let types: Vec<Type> = values
                .iter()
                .map(|v| match v {
                    Value::Null => null.clone(),
                    Value::Int(_) => Type::INT8,
                    Value::Real(_) => Type::FLOAT8,
                    Value::Text(_) => Type::TEXT,
                    Value::Blob(_) => Type::BYTEA,
                })
                .collect();
            match self.client.prepare_typed(&text, &types) {
                Ok(stmt) => {
                    if self.statements.len() > 512 {
                        self.statements.clear();
                    }
                    self.statements.insert(key, stmt.clone());
                    return Ok(stmt);
                }
                Err(e) => {
                    // 42P08 indeterminate, 42P18 ambiguous, 42883 no such operator, 42804
                    // datatype mismatch: a NULL typed wrongly; anything else is final.
                    let retry = values.contains(&Value::Null)
                        && e.as_db_error().is_some_and(|d| {
                            ["42P08", "42P18", "42883", "42804"].contains(&d.code().code())
                        });
                    if !retry {
                        return Err(e.into());
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("tried at least once").into())
    }
}

impl Connection {
    pub fn backend(&self) -> Backend {
        match self {
            Connection::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Connection::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, busy timeout).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self {
            Connection::Sqlite(c) => Some(c),
            #[cfg(feature = "postgres")]
            Connection::Postgres(_) => None,
        }
    }

    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        self.statement(sql, true)
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        self.statement(sql, false)
    }

    fn statement(&self, sql: &str, cache: bool) -> Result<Statement<'_>> {
        match self {
            Connection::Sqlite(c) => Ok(Statement::Sqlite(if cache {
                SqliteStatement::Cached(c.prepare_cached(sql)?)
            } else {
                SqliteStatement::Plain(c.prepare(sql)?)
            })),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => Ok(Statement::Postgres(c, sql.to_string())),
        }
    }

    /// Run one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Run several statements separated by semicolons, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Connection::Sqlite(c) => Ok(c.execute_batch(sql)?),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => Ok(c.borrow_mut().client.batch_execute(sql)?),
        }
    }

    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

enum SqliteStatement<'c> {
    Cached(rusqlite::CachedStatement<'c>),
    Plain(rusqlite::Statement<'c>),
}

impl<'c> std::ops::Deref for SqliteStatement<'c> {
    type Target = rusqlite::Statement<'c>;
    fn deref(&self) -> &Self::Target {
        match self {
            SqliteStatement::Cached(s) => s,
            SqliteStatement::Plain(s) => s,
        }
    }
}
impl std::ops::DerefMut for SqliteStatement<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            SqliteStatement::Cached(s) => s,
            SqliteStatement::Plain(s) => s,
        }
    }
}

/// A prepared statement.
pub enum Statement<'c> {
    #[allow(private_interfaces)]
    Sqlite(SqliteStatement<'c>),
    /// Prepared when the values are bound (see [`PgConnection::statement`]).
    #[cfg(feature = "postgres")]
    Postgres(&'c RefCell<PgConnection>, String),
}

fn sqlite_values(values: &[Value]) -> Vec<rusqlite::types::Value> {
    values
        .iter()
        .map(|v| match v {
            Value::Null => rusqlite::types::Value::Null,
            Value::Int(i) => rusqlite::types::Value::Integer(*i),
            Value::Real(f) => rusqlite::types::Value::Real(*f),
            Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
            Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
        })
        .collect()
}

#[cfg(feature = "postgres")]
fn pg_params(values: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl Statement<'_> {
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        let values = params.into_values();
        match self {
            Statement::Sqlite(s) => {
                Ok(s.execute(rusqlite::params_from_iter(sqlite_values(&values)))?)
            }
            #[cfg(feature = "postgres")]
            Statement::Postgres(c, sql) => {
                let mut c = c.borrow_mut();
                let stmt = c.statement(sql, &values)?;
                Ok(c.client.execute(&stmt, &pg_params(&values))? as usize)
            }
        }
    }

    /// Every row, mapped by `f`.
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let values = params.into_values();
        let mut out = Vec::new();
        match self {
            Statement::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(sqlite_values(&values)))?;
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r)));
                }
            }
            #[cfg(feature = "postgres")]
            Statement::Postgres(c, sql) => {
                let rows = {
                    let mut c = c.borrow_mut();
                    let stmt = c.statement(sql, &values)?;
                    c.client.query(&stmt, &pg_params(&values))?
                };
                for r in &rows {
                    out.push(f(&Row::Postgres(r)));
                }
            }
        }
        Ok(out.into_iter())
    }

    /// The first row, mapped by `f`; [`Error::NoRows`] if there is none.
    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let values = params.into_values();
        match self {
            Statement::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(sqlite_values(&values)))?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)),
                    None => Err(Error::NoRows),
                }
            }
            #[cfg(feature = "postgres")]
            Statement::Postgres(c, sql) => {
                let row = {
                    let mut c = c.borrow_mut();
                    let stmt = c.statement(sql, &values)?;
                    c.client
                        .query(&stmt, &pg_params(&values))?
                        .into_iter()
                        .next()
                };
                match row {
                    Some(r) => f(&Row::Postgres(&r)),
                    None => Err(Error::NoRows),
                }
            }
        }
    }

    /// Does the query return at least one row?
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        match self.query_row(params, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(Error::NoRows) => Ok(false),
            Err(e) => Err(e),
        }
    }
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

#[cfg(feature = "postgres")]
mod pg_types {
    use super::Value;
    use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

    type BoxError = Box<dyn std::error::Error + Sync + Send>;

    impl ToSql for Value {
        fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
            match self {
                Value::Null => Ok(IsNull::Yes),
                Value::Int(i) => match *ty {
                    Type::INT8 => i.to_sql(ty, out),
                    Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                    Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                    Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                    Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                    Type::BOOL => (*i != 0).to_sql(ty, out),
                    Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                    _ => Err(format!("cannot bind an integer to a {ty} parameter").into()),
                },
                Value::Real(f) => match *ty {
                    Type::FLOAT8 => f.to_sql(ty, out),
                    Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                    _ => Err(format!("cannot bind a number to a {ty} parameter").into()),
                },
                Value::Text(s) => match *ty {
                    Type::BYTEA => s.as_bytes().to_sql(ty, out),
                    _ => s.as_str().to_sql(ty, out),
                },
                Value::Blob(b) => match *ty {
                    Type::TEXT | Type::VARCHAR => String::from_utf8_lossy(b).to_sql(ty, out),
                    _ => b.as_slice().to_sql(ty, out),
                },
            }
        }

        fn accepts(_: &Type) -> bool {
            true
        }

        to_sql_checked!();
    }

    impl<'a> FromSql<'a> for Value {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            Ok(match *ty {
                Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
                Type::INT4 => Value::Int(i32::from_sql(ty, raw)? as i64),
                Type::INT2 => Value::Int(i16::from_sql(ty, raw)? as i64),
                Type::OID => Value::Int(u32::from_sql(ty, raw)? as i64),
                Type::BOOL => Value::Int(bool::from_sql(ty, raw)? as i64),
                Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
                Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)? as f64),
                Type::BYTEA => Value::Blob(raw.to_vec()),
                _ if <&str as FromSql>::accepts(ty) => {
                    Value::Text(<&str as FromSql>::from_sql(ty, raw)?.to_string())
                }
                _ => return Err(format!("cannot read a {ty} column (cast it in SQL)").into()),
            })
        }

        fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
            Ok(Value::Null)
        }

        fn accepts(_: &Type) -> bool {
            true
        }
    }
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
