//! The domain types the store speaks in.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
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

closed_set!(
    /// How the delay between retries grows.
    Backoff { Linear => "linear", Exponential => "exponential" }
);
closed_set!(
    /// What the runner does about slots it missed while it was down.
    CatchUp { None => "none", Latest => "latest" }
);
closed_set!(
    /// The state of one execution.
    Status {
        Running => "running",
        Success => "success",
        Failed => "failed",
        Timeout => "timeout",
        Skipped => "skipped",
        Missed => "missed",
        Interrupted => "interrupted",
        Cancelled => "cancelled",
    }
);
closed_set!(
    /// Why an execution happened.
    Trigger { Schedule => "schedule", Manual => "manual", Retry => "retry" }
);

/// A job as stored. `timezone` empty means the system's zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub system: String,
    pub name: String,
    pub description: Option<String>,
    pub schedule: String,
    pub timezone: String,
    pub command: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub is_active: bool,
    /// Seconds; None means the system's default_timeout.
    pub timeout: Option<u64>,
    pub retries: u32,
    /// Seconds.
    pub retry_delay: u64,
    pub backoff: Backoff,
    pub category: Option<String>,
    pub priority: u8,
    /// Seconds: a hard ceiling on the whole run, retries included.
    pub max_runtime: Option<u64>,
    pub allow_concurrent: bool,
    pub catch_up: CatchUp,
    /// Seconds: how late a `latest` catch-up may still start.
    pub starting_deadline: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub next_run_at: Option<DateTime<Utc>>,
    /// False: no alert of any kind for this job (`--no-alerts`).
    #[serde(default = "yes")]
    pub alerts_enabled: bool,
    /// Overrides the system's alert_email.
    #[serde(default)]
    pub alert_email: Option<String>,
    /// Overrides the system's escalate_after (consecutive failures).
    #[serde(default)]
    pub escalate_after: Option<u32>,
    /// Overrides the system's disable_after (consecutive failures).
    #[serde(default)]
    pub disable_after: Option<u32>,
    /// Seconds without a success before a missed-run alert; overrides the system's.
    #[serde(default)]
    pub max_silence: Option<u64>,
    /// Why cronmgr disabled the job itself (auto-disable); cleared by `enable`.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// Runs whose last attempt failed since the last success or enable (kept by the runner).
    #[serde(default)]
    pub failure_streak: u32,
    #[serde(default)]
    pub last_success_at: Option<DateTime<Utc>>,
    /// When the job was last enabled after being disabled.
    #[serde(default)]
    pub enabled_at: Option<DateTime<Utc>>,
    /// Only an admin may change, remove, disable, run or kill it.
    #[serde(default)]
    pub is_critical: bool,
    /// Bytes of address space (RLIMIT_AS); None: the system's default_memory_limit.
    #[serde(default)]
    pub memory_limit: Option<u64>,
    /// CPU seconds (RLIMIT_CPU); None: the system's default_cpu_limit.
    #[serde(default)]
    pub cpu_limit: Option<u64>,
    /// Open files (RLIMIT_NOFILE); None: the system's default_nofile_limit.
    #[serde(default)]
    pub nofile_limit: Option<u64>,
    /// Processes of the job's user (RLIMIT_NPROC); None: the system's default_nproc_limit.
    #[serde(default)]
    pub nproc_limit: Option<u64>,
    /// Run as this user (a root runner only); None: the runner's user.
    #[serde(default)]
    pub run_user: Option<String>,
    /// Run with this group; None: the user's primary group.
    #[serde(default)]
    pub run_group: Option<String>,
    /// Only runners carrying every one of these labels (`run --label`) run the job.
    #[serde(default)]
    pub runner_labels: Vec<String>,
}

impl Job {
    /// A copy fit to print: every secret of its parameters redacted.
    pub fn redacted(&self) -> Job {
        Job {
            params: crate::secrets::redact(&self.params),
            ..self.clone()
        }
    }
}

fn yes() -> bool {
    true
}

impl Job {
    /// A new job with every field at its default.
    pub fn new(system: &str, name: &str, schedule: &str, command: &str) -> Job {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        Job {
            id: 0,
            system: system.to_string(),
            name: name.to_string(),
            description: None,
            schedule: schedule.to_string(),
            timezone: String::new(),
            command: command.to_string(),
            params: serde_json::Map::new(),
            is_active: true,
            timeout: None,
            retries: 0,
            retry_delay: 60,
            backoff: Backoff::Linear,
            category: None,
            priority: 5,
            max_runtime: None,
            allow_concurrent: false,
            catch_up: CatchUp::None,
            starting_deadline: None,
            created_at: epoch,
            updated_at: epoch,
            last_run_at: None,
            next_run_at: None,
            alerts_enabled: true,
            alert_email: None,
            escalate_after: None,
            disable_after: None,
            max_silence: None,
            disabled_reason: None,
            failure_streak: 0,
            last_success_at: None,
            enabled_at: None,
            is_critical: false,
            memory_limit: None,
            cpu_limit: None,
            nofile_limit: None,
            nproc_limit: None,
            run_user: None,
            run_group: None,
            runner_labels: Vec::new(),
        }
    }
}

/// Per-system settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub system: String,
    pub is_enabled: bool,
    pub max_concurrent_jobs: u32,
    /// Seconds.
    pub default_timeout: u64,
    pub keep_executions: u64,
    pub cleanup_days: u64,
    pub alert_on_failure: bool,
    pub alert_email: Option<String>,
    pub slack_webhook: Option<String>,
    pub timezone: String,
    /// Seconds the runner waits for running executions on shutdown.
    pub shutdown_grace: u64,
    pub alert_on_timeout: bool,
    /// Secret: a generic webhook receiving the JSON payload.
    pub webhook_url: Option<String>,
    /// Secret: the key of the HMAC-SHA256 signature of webhook payloads.
    pub webhook_secret: Option<String>,
    /// Consecutive failures before the escalation channels hear of it.
    pub escalate_after: Option<u32>,
    /// The escalation channels: email addresses and webhook URLs, comma-separated.
    pub escalate_to: Option<String>,
    /// Consecutive failures before a job is disabled.
    pub disable_after: Option<u32>,
    /// Seconds without a success before a missed-run alert.
    pub max_silence: Option<u64>,
    /// Percent of all CPUs busy that counts as overloaded.
    pub cpu_threshold: u32,
    /// Seconds the CPU must stay above the threshold.
    pub cpu_window: u64,
    /// Alert when less than this percent of the disk (database, logs) is free.
    pub disk_min_free: u32,
    /// Messages per channel per hour at most.
    pub alert_rate_limit: u32,
    /// Limits for jobs that set none (bytes, CPU seconds, open files, processes).
    pub default_memory_limit: Option<u64>,
    pub default_cpu_limit: Option<u64>,
    pub default_nofile_limit: Option<u64>,
    pub default_nproc_limit: Option<u64>,
    /// Days the audit log is kept; 0 keeps it forever.
    pub audit_retention_days: u64,
}

impl Settings {
    pub fn defaults(system: &str, timezone: &str) -> Settings {
        Settings {
            system: system.to_string(),
            is_enabled: true,
            max_concurrent_jobs: 5,
            default_timeout: 3600,
            keep_executions: 1000,
            cleanup_days: 30,
            alert_on_failure: true,
            alert_email: None,
            slack_webhook: None,
            timezone: timezone.to_string(),
            shutdown_grace: 30,
            alert_on_timeout: true,
            webhook_url: None,
            webhook_secret: None,
            escalate_after: None,
            escalate_to: None,
            disable_after: None,
            max_silence: None,
            cpu_threshold: 80,
            cpu_window: 300,
            disk_min_free: 10,
            alert_rate_limit: 30,
            default_memory_limit: None,
            default_cpu_limit: None,
            default_nofile_limit: None,
            default_nproc_limit: None,
            audit_retention_days: 365,
        }
    }
}

/// One execution of a job (or a bookkeeping row: skipped, missed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execution {
    pub id: i64,
    pub job_id: i64,
    pub job: String,
    pub system: String,
    pub status: Status,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub output: Option<String>,
    pub error_message: Option<String>,
    pub exit_code: Option<i32>,
    pub triggered_by: Trigger,
    pub attempt: u32,
    pub memory_used_mb: Option<f64>,
    pub cpu_used_percent: Option<f64>,
    /// The process group of the execution's child.
    pub pid: Option<u32>,
    /// The runner (or `run-now`) process that started it.
    pub runner_pid: Option<u32>,
    /// Who asked for it to be cancelled (`cronmgr kill`): the audit log's actor, as `user` or
    /// `user (sudo from other)`. Set while it is still running, before its process is signalled,
    /// so whoever records its end (the runner, `run-now`, recovery) records it `cancelled`.
    pub cancelled_by: Option<String>,
}

/// How an execution ended, as the runner reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub status: Status,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub output: String,
    pub error_message: Option<String>,
    pub exit_code: Option<i32>,
    pub memory_used_mb: Option<f64>,
    pub cpu_used_percent: Option<f64>,
}

closed_set!(
    /// What an alert is about. `failed`, `timeout`, `escalated`, `disabled` and `silent` belong to
    /// a job; `cpu` and `disk` to the host (as seen by one system's settings).
    AlertKind {
        Failed => "failed",
        Timeout => "timeout",
        Escalated => "escalated",
        Disabled => "disabled",
        Silent => "silent",
        Cpu => "cpu",
        Disk => "disk",
    }
);
closed_set!(
    /// A firing alert opens a condition; a resolved one says it cleared.
    AlertState { Firing => "firing", Resolved => "resolved" }
);
closed_set!(
    /// Where alerts go.
    Channel { Email => "email", Slack => "slack", Webhook => "webhook" }
);
closed_set!(
    /// How far one delivery got: still trying, done, or given up.
    DeliveryState { Pending => "pending", Sent => "sent", Failed => "failed" }
);
