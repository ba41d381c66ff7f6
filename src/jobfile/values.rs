//! The values a job file writes its own way: a size (`1048576` or `"512M"`) and a duration
//! (`90` or `"30m"`), each kept as written so an exported file reads as a person would write it.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration;

/// A size in a file: bytes (`1048576`) or text (`"512M"`, `"2G"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Size {
    Number(u64),
    Text(String),
}

impl Size {
    pub(super) fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Number(n) => Ok(*n),
            Size::Text(t) => crate::model::size::parse_bytes(t),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Size::Number(n) => s.serialize_u64(*n),
            Size::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes (1048576) or text (\"512M\", \"2G\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size::Number)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                crate::model::size::parse_bytes(v).map_err(E::custom)?;
                Ok(Size::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration in a file: whole seconds (`90`) or text (`"30m"`, `"1h30m"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secs {
    Number(u64),
    Text(String),
}

impl Secs {
    pub(super) fn secs(&self) -> Result<u64, String> {
        match self {
            Secs::Number(n) => Ok(*n),
            Secs::Text(t) => duration::parse_secs(t).map_err(|e| e.to_string()),
        }
    }

    /// The compact form (`"30m"`); zero stays a number, since `"0ms"` would not read back.
    pub(super) fn of(secs: u64) -> Secs {
        if secs == 0 {
            Secs::Number(0)
        } else {
            Secs::Text(duration::human_secs(secs))
        }
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Secs::Number(n) => s.serialize_u64(*n),
            Secs::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secs, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds (90) or text (\"30s\", \"5m\", \"2h\", \"1d\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                u64::try_from(v)
                    .map(Secs::Number)
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                duration::parse_secs(v).map_err(E::custom)?;
                Ok(Secs::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
