//! The domain: the plain types every module speaks (jobs, executions, settings, alerts) and their
//! rules (ranges, settings keys and parsing, redaction, audit diffs). No I/O, no database, and
//! nothing of ours but the leaf parsers `duration` and `schedule` (time zones): every other module
//! may import `model`, and `model` imports none of them (scripts/check-cycles.py keeps it so).

macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown {} {s:?} (expected one of: {})",
                        stringify!($name).to_lowercase(),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

pub mod alert;
pub mod bounds;
pub mod chain;
mod diff;
mod execution;
mod job;
pub mod quota;
pub mod redact;
pub mod secrets;
mod settings;
pub mod size;

pub use alert::{
    looks_like_email, Alert, AlertKind, AlertState, Channel, Delivery, DeliveryState, NewAlert,
    Target,
};
pub use diff::{job_diff, settings_diff};
pub use execution::{Execution, Finish, Status, Trigger};
pub use job::{Backoff, CatchUp, Job};
pub use settings::{Settings, KEYS as SETTINGS_KEYS, SECRET_KEYS};
