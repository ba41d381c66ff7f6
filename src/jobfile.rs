//! Job files (`jobs.d/*.toml`): the format, loading with file and line in every error, and the
//! conversion to and from [`Job`](crate::store::Job).
//!
//! ```toml
//! [[job]]
//! name = "nightly-backup"
//! description = "dump the app database"
//! schedule = "0 3 * * *"
//! argv = ["/usr/bin/pg_dump", "-f", "/backup/db.sql", "app"]
//! category = "BACKUP"
//! timeout = "30m"
//! ```
//!
//! A file is declarative: a field it leaves out takes its default, whatever the job had before.
//! [`JobSpec::from_job`] leaves out every field at its default, so export → apply is a no-op.

//!
//! The parts: `values` (sizes and durations as a file writes them), `parse` (text to tables,
//! with lines), `convert` (a table to a job), `export` (a job to a table, a file,
//! and which file fields differ between two jobs).

use serde::{Deserialize, Serialize};

use crate::store::{Backoff, CatchUp};

mod convert;
mod export;
mod parse;
mod values;

pub use convert::toml_to_json;
pub use export::{changed_fields, json_to_toml, render};
pub use parse::{parse, parse_all, Located, Problem};
pub use values::{Secs, Size};

/// One `[[job]]` table, field for field what `cronmgr add` takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// May be left out when `after` is given: the job then runs only when triggered (`@never`).
    #[serde(default)]
    pub schedule: String,
    /// The jobs whose end triggers this one: `"NAME"` (on success) or
    /// `"NAME:success|failure|any"` (`--after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The executor; default `shell`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Shorthand for the shell executor's `params.argv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runtime: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_concurrent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<Secs>,
    /// Each slot fires up to this much late (see `--jitter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// False: no alert of any kind for this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<bool>,
    /// Alert addresses instead of the system's `alert_email` (comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_email: Option<String>,
    /// A Slack incoming-webhook URL instead of the system's `slack_webhook`; `export` writes
    /// `"(stored)"` (keep the stored URL: it is a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_slack: Option<String>,
    /// A webhook URL instead of the system's `webhook_url`; exported as `"(stored)"` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_webhook: Option<String>,
    /// Consecutive failures before escalation (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_after: Option<u32>,
    /// Consecutive failures before the job disables itself (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_after: Option<u32>,
    /// How long without a success before a missed-run alert (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_silence: Option<Secs>,
    /// Only admins may change, remove, disable, run or kill it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
    /// Address space per process: bytes or `"512M"` (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<Size>,
    /// CPU time per process (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<Secs>,
    /// A share of CPU time (cgroup `cpu.max`): CPUs (`0.5`, `2`) or a percent (`"50%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<toml::Value>,
    /// Open files per process (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile_limit: Option<u64>,
    /// Processes of the job's user (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nproc_limit: Option<u64>,
    /// Run as this user (root runner only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run with this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Run only on runners carrying all these labels (`cronmgr run --label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_labels: Option<Vec<String>>,
    /// Executor parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<toml::Table>,
}

/// A whole file: any number of `[[job]]` tables.
#[derive(Debug, Default, Serialize)]
pub struct JobFile {
    pub job: Vec<JobSpec>,
}

#[cfg(test)]
mod tests;
