//! Cron expressions with crontab (cronie) semantics on top of `croner`.
//!
//! PLACEHOLDER: a minimal version so the rest of the crate builds; the real layer (field
//! validation, OR rule, DST classes, property tests) replaces this file.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("invalid schedule {expr:?}: {reason}")]
    Invalid { expr: String, reason: String },
    #[error(
        "unknown time zone {0:?} (use an IANA name such as UTC, Europe/Madrid or America/New_York)"
    )]
    UnknownTimezone(String),
}

#[derive(Debug, Clone)]
pub struct Schedule {
    source: String,
    cron: Option<croner::Cron>,
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let expr = expr.trim();
        if expr == "@reboot" {
            return Ok(Schedule {
                source: expr.into(),
                cron: None,
            });
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Invalid {
                expr: expr.into(),
                reason: e.to_string(),
            })?;
        Ok(Schedule {
            source: expr.into(),
            cron: Some(cron),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_reboot(&self) -> bool {
        self.cron.is_none()
    }

    pub fn describe(&self) -> String {
        match &self.cron {
            Some(c) => c.describe(),
            None => "when the runner starts".into(),
        }
    }

    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        cron.find_next_occurrence(&after.with_timezone(&tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimezone(name.to_string()))
}

pub fn host_timezone() -> Tz {
    Tz::UTC
}

pub fn dst_note(_schedule: &Schedule, _instant: DateTime<Utc>, _tz: Tz) -> Option<String> {
    None
}
