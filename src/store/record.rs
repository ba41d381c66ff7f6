//! A model type stored as one row of one table, described once.
//!
//! [`record!`] takes, per column, its name (the model's field of the same name), how its value
//! crosses to SQL and back (a [`Codec`]), and which writes set it; from that one list come the
//! SELECT column list, the INSERT column and placeholder lists, the UPDATE SET list, the values
//! bound to them, and the model type from a row read by column name. Adding a column to a table
//! then touches the model, the migrations and the description's one line, not the store's SQL.

use chrono::{DateTime, Utc};

use super::sql::{self, FromValue, Named, Row, RowIndex, ToValue, Value};
use super::{fmt_time, parse_enum, parse_time};

/// One column of a record's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    pub name: &'static str,
    /// A field of the model, read back by SELECT; false: a column only the store writes
    /// (stamped with the write's instant).
    pub read: bool,
    /// Set by INSERT.
    pub insert: bool,
    /// Set by UPDATE (and by an upsert's DO UPDATE).
    pub update: bool,
}

impl Column {
    /// A column holding a field of the model.
    pub const fn field(name: &'static str) -> Column {
        Column {
            name,
            read: true,
            insert: false,
            update: false,
        }
    }

    /// A column not in the model, written with the instant of the write.
    pub const fn stamp(name: &'static str) -> Column {
        Column {
            read: false,
            ..Column::field(name)
        }
    }

    pub const fn insert(self) -> Column {
        Column {
            insert: true,
            ..self
        }
    }

    pub const fn update(self) -> Column {
        Column {
            update: true,
            ..self
        }
    }
}

/// The SQL text generated from a record's columns (once per type).
#[derive(Debug)]
pub(crate) struct Sql {
    /// The read columns, for `SELECT {columns} FROM …`.
    pub columns: String,
    /// `INSERT INTO table (…) VALUES (?1, …)`, bound with [`Record::insert_values`].
    pub insert: String,
    /// `UPDATE table SET a = ?1, …`, bound with [`Record::update_values`]; the caller adds
    /// the WHERE clause (its first placeholder is [`Sql::update_next`]).
    pub update: String,
    /// The number after the UPDATE's last placeholder.
    pub update_next: usize,
    /// `a = ?k, …` for the update columns, `?k` being the INSERT's placeholder of that column:
    /// the `DO UPDATE SET` of an upsert bound with [`Record::insert_values`].
    pub upsert_set: String,
}

impl Sql {
    pub fn of(table: &str, columns: &[Column]) -> Sql {
        let names = |pick: fn(&Column) -> bool| columns.iter().filter(move |c| pick(c));
        let inserted: Vec<&Column> = names(|c| c.insert).collect();
        let updated: Vec<&Column> = names(|c| c.update).collect();
        let list = |cols: &[&Column]| cols.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            list(&inserted),
            (1..=inserted.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let update = format!(
            "UPDATE {table} SET {}",
            updated
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = ?{}", c.name, i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let upsert_set = updated
            .iter()
            .filter_map(|c| {
                let k = inserted.iter().position(|i| i.name == c.name)?;
                Some(format!("{} = ?{}", c.name, k + 1))
            })
            .collect::<Vec<_>>()
            .join(", ");
        Sql {
            columns: list(&names(|c| c.read).collect::<Vec<_>>()),
            insert,
            update,
            update_next: updated.len() + 1,
            upsert_set,
        }
    }
}

/// A model type stored as one row of [`Record::TABLE`]; implemented by [`record!`].
pub(crate) trait Record: Sized {
    const TABLE: &'static str;
    const COLUMNS: &'static [Column];

    /// Every column's value, in [`Record::COLUMNS`] order; stamps are `now`.
    fn values(&self, now: DateTime<Utc>) -> Vec<Value>;

    /// The model from a row, each field read by its column's name.
    fn from_row(row: &Row<'_>) -> sql::Result<Self>;

    /// The generated SQL.
    fn sql() -> &'static Sql;

    fn insert_values(&self, now: DateTime<Utc>) -> Vec<Value> {
        self.pick(now, |c| c.insert)
    }

    fn update_values(&self, now: DateTime<Utc>) -> Vec<Value> {
        self.pick(now, |c| c.update)
    }

    fn pick(&self, now: DateTime<Utc>, keep: fn(&Column) -> bool) -> Vec<Value> {
        Self::COLUMNS
            .iter()
            .zip(self.values(now))
            .filter(|(c, _)| keep(c))
            .map(|(_, v)| v)
            .collect()
    }

    /// The UPDATE's placeholder (`?N`) of the column `name`, for clauses the caller adds.
    fn update_param(name: &str) -> Option<String> {
        Self::COLUMNS
            .iter()
            .filter(|c| c.update)
            .position(|c| c.name == name)
            .map(|i| format!("?{}", i + 1))
    }
}

/// Describe a model type's table once:
///
/// ```ignore
/// record! {
///     Job in "jobs" {
///         id: Plain;
///         name: Plain => insert update;
///         retries: Number => insert update;
///     }
///     stamps { created_at => insert; }
/// }
/// ```
/// Each line is a column named as the model's field, its [`Codec`], and the writes that set
/// it; `stamps` are columns the model does not have, written with the instant of the write.
macro_rules! record {
    (
        $model:ident in $table:literal {
            $($field:ident : $codec:expr $(=> $($flag:ident)+)? ;)*
        }
        stamps { $($stamp:ident => $($sflag:ident)+ ;)* }
    ) => {
        impl $crate::store::record::Record for $model {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [$crate::store::record::Column] = &[
                $($crate::store::record::Column::field(stringify!($field)) $($(.$flag())+)?,)*
                $($crate::store::record::Column::stamp(stringify!($stamp)) $(.$sflag())+,)*
            ];

            fn values(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Vec<$crate::store::sql::Value> {
                #[allow(unused_variables)]
                let stamp = $crate::store::sql::ToValue::to_value(&$crate::store::fmt_time(now));
                vec![
                    $($crate::store::record::Codec::write(&$codec, &self.$field),)*
                    $({ let _ = stringify!($stamp); stamp.clone() },)*
                ]
            }

            fn from_row(
                row: &$crate::store::sql::Row<'_>,
            ) -> $crate::store::sql::Result<Self> {
                // The SELECT lists the fields in this order: where each is expected.
                let mut at = 0..;
                Ok(Self {
                    $($field: $crate::store::record::Codec::read(
                        &$codec,
                        row,
                        $crate::store::sql::Named(stringify!($field), at.next().unwrap_or_default()),
                    )?,)*
                })
            }

            fn sql() -> &'static $crate::store::record::Sql {
                static SQL: std::sync::OnceLock<$crate::store::record::Sql> =
                    std::sync::OnceLock::new();
                SQL.get_or_init(|| $crate::store::record::Sql::of(Self::TABLE, Self::COLUMNS))
            }
        }
    };
}
pub(crate) use record;

/// How a field of type `T` crosses to SQL and back.
pub(crate) trait Codec<T> {
    fn write(&self, v: &T) -> Value;
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<T>;
}

/// As is: the [`ToValue`] and [`FromValue`] of the type.
pub(crate) struct Plain;

impl<T: ToValue + FromValue> Codec<T> for Plain {
    fn write(&self, v: &T) -> Value {
        v.to_value()
    }
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<T> {
        row.get(column)
    }
}

/// A closed set (`Backoff`, `CatchUp`) as its text.
pub(crate) struct Enum;

impl<T: std::fmt::Display + std::str::FromStr<Err = String>> Codec<T> for Enum {
    fn write(&self, v: &T) -> Value {
        Value::Text(v.to_string())
    }
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<T> {
        parse_enum(&row.get::<_, String>(column)?)
    }
}

/// An instant as RFC 3339 text (see [`fmt_time`]).
pub(crate) struct Time;

impl Codec<DateTime<Utc>> for Time {
    fn write(&self, v: &DateTime<Utc>) -> Value {
        Value::Text(fmt_time(*v))
    }
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<DateTime<Utc>> {
        parse_time(&row.get::<_, String>(column)?)
    }
}

impl Codec<Option<DateTime<Utc>>> for Time {
    fn write(&self, v: &Option<DateTime<Utc>>) -> Value {
        v.map(fmt_time).to_value()
    }
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<Option<DateTime<Utc>>> {
        row.get::<_, Option<String>>(column)?
            .as_deref()
            .map(parse_time)
            .transpose()
    }
}

/// JSON text: a job's parameters (an object) or a list of strings.
pub(crate) struct Json;

impl Codec<serde_json::Map<String, serde_json::Value>> for Json {
    fn write(&self, v: &serde_json::Map<String, serde_json::Value>) -> Value {
        Value::Text(serde_json::Value::Object(v.clone()).to_string())
    }
    fn read(
        &self,
        row: &Row<'_>,
        column: Named<'_>,
    ) -> sql::Result<serde_json::Map<String, serde_json::Value>> {
        json(row, column)
    }
}

impl Codec<Vec<String>> for Json {
    fn write(&self, v: &Vec<String>) -> Value {
        Value::Text(serde_json::Value::from(v.clone()).to_string())
    }
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<Vec<String>> {
        json(row, column)
    }
}

fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, column: Named<'_>) -> sql::Result<T> {
    let i = column.index(row)?;
    serde_json::from_str(&row.get::<_, String>(i)?).map_err(|e| sql::Error::conversion(i, e))
}

/// An unsigned number field.
pub(crate) trait Unsigned: TryFrom<i64> + TryFrom<u64> + ToValue {
    const MAX: Self;
}
macro_rules! unsigned {
    ($($t:ty),*) => {$(impl Unsigned for $t { const MAX: Self = <$t>::MAX; })*};
}
unsigned!(u8, u32, u64);

/// A number column of a job. A value its field cannot hold (negative, too large, not an integer:
/// only written behind cronmgr's back, past the CHECK constraints) reads as the field's largest,
/// so the row still loads (`list`, `edit`, `rm` keep working on it) and the range check every
/// job passes (`bounds::check_job`) refuses it: the runner skips that job with the reason
/// instead of failing to load them all.
pub(crate) struct Number;

impl<T: Unsigned> Codec<Option<T>> for Number {
    fn write(&self, v: &Option<T>) -> Value {
        v.to_value()
    }
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<Option<T>> {
        Ok(match row.get::<_, Value>(column)? {
            Value::Null => None,
            Value::Int(n) => Some(T::try_from(n).unwrap_or(T::MAX)),
            _ => Some(T::MAX),
        })
    }
}

impl<T: Unsigned> Codec<T> for Number {
    fn write(&self, v: &T) -> Value {
        v.to_value()
    }
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<T> {
        Ok(Codec::<Option<T>>::read(self, row, column)?.unwrap_or(T::MAX))
    }
}

/// A number setting, as the runner and every command use it: a value out of `(min, max)` (only
/// written behind cronmgr's back) reads as the nearest value in range, so one bad row can neither
/// make the settings unreadable (and every runner stop) nor overflow what is computed from it.
pub(crate) struct Within(pub u64, pub u64);

impl<T: Unsigned> Codec<Option<T>> for Within {
    fn write(&self, v: &Option<T>) -> Value {
        v.to_value()
    }
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<Option<T>> {
        let Within(min, max) = *self;
        let i = column.index(row)?;
        let n = match row.get::<_, Value>(i)? {
            Value::Null => return Ok(None),
            Value::Int(n) => u64::try_from(n).unwrap_or(0).clamp(min, max),
            Value::Real(f) if f >= 0.0 => (f as u64).clamp(min, max),
            Value::Real(_) => min,
            other => return Err(sql::Error::conversion(i, format!("{other:?}"))),
        };
        // Every range here fits the field's type (u32 fields have u32 ceilings).
        T::try_from(n)
            .map(Some)
            .map_err(|_| sql::Error::conversion(i, format!("{n} is out of range")))
    }
}

impl<T: Unsigned> Codec<T> for Within {
    fn write(&self, v: &T) -> Value {
        v.to_value()
    }
    fn read(&self, row: &Row<'_>, column: Named<'_>) -> sql::Result<T> {
        Codec::<Option<T>>::read(self, row, column)?
            .ok_or_else(|| sql::Error::conversion(column.index(row).unwrap_or(column.1), "NULL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_is_generated_from_the_columns() {
        let columns = [
            Column::field("id"),
            Column::field("name").insert(),
            Column::field("size").insert().update(),
            Column::stamp("updated_at").insert().update(),
        ];
        let sql = Sql::of("things", &columns);
        assert_eq!(sql.columns, "id, name, size");
        assert_eq!(
            sql.insert,
            "INSERT INTO things (name, size, updated_at) VALUES (?1, ?2, ?3)"
        );
        assert_eq!(sql.update, "UPDATE things SET size = ?1, updated_at = ?2");
        assert_eq!(sql.update_next, 3);
        assert_eq!(sql.upsert_set, "size = ?2, updated_at = ?3");
    }
}
