//! A job: what runs, when, and under which rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

closed_set!(
    /// How the delay between retries grows.
    Backoff { Linear => "linear", Exponential => "exponential" }
);
closed_set!(
    /// What the runner does about slots it missed while it was down.
    CatchUp { None => "none", Latest => "latest" }
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
    /// Seconds: each slot fires up to this much after its time (a delay derived from the job and
    /// the slot, the same on every host), so many jobs of one schedule do not start together.
    pub jitter: Option<u64>,
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
    /// A Slack incoming-webhook URL: overrides the system's slack_webhook. A secret: shown
    /// redacted, exported as the keep marker.
    #[serde(default)]
    pub alert_slack: Option<String>,
    /// A generic webhook URL: overrides the system's webhook_url. Shown redacted, as the Slack one.
    #[serde(default)]
    pub alert_webhook: Option<String>,
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
    /// Percent of one CPU (50: half a core), enforced as cgroup v2 `cpu.max`; not enforced
    /// without the cgroup cpu controller (the execution records so). None: no quota.
    #[serde(default)]
    pub cpu_quota: Option<u32>,
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
    /// Jobs of its system whose end triggers this one, as `NAME:success|failure|any` (see
    /// [`crate::model::chain`]).
    #[serde(default)]
    pub after: Vec<String>,
}

impl Job {
    /// A copy fit to print: every secret of its parameters redacted.
    pub fn redacted(&self) -> Job {
        let url = |u: &Option<String>| u.as_deref().map(super::redact::secret);
        Job {
            params: super::secrets::redact(&self.params),
            alert_slack: url(&self.alert_slack),
            alert_webhook: url(&self.alert_webhook),
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
            jitter: None,
            created_at: epoch,
            updated_at: epoch,
            last_run_at: None,
            next_run_at: None,
            alerts_enabled: true,
            alert_email: None,
            alert_slack: None,
            alert_webhook: None,
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
            cpu_quota: None,
            nofile_limit: None,
            nproc_limit: None,
            run_user: None,
            run_group: None,
            runner_labels: Vec::new(),
            after: Vec::new(),
        }
    }
}
