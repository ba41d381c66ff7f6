//! A connection to either engine and its prepared statements: SQLite through rusqlite (its
//! statement cache), PostgreSQL through the `postgres` crate, each statement prepared for the
//! kinds of the values bound to it and cached.

#[cfg(feature = "postgres")]
use std::cell::RefCell;
#[cfg(feature = "postgres")]
use std::collections::HashMap;

use super::row::Columns;
use super::{Backend, Error, Params, Result, Row, Value};

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
        let text = super::to_postgres(sql);
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
                let columns = Columns::default();
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r, &columns)));
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
                    Some(r) => f(&Row::Sqlite(r, &Columns::default())),
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
