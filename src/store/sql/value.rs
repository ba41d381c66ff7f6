//! The values that cross between Rust and either engine: the five kinds ([`Value`]), what a
//! Rust value binds as ([`ToValue`], [`Params`], `params!`), what a column reads as
//! ([`FromValue`]), and (with PostgreSQL) how each kind crosses the wire.

use super::{Error, Result};

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

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
