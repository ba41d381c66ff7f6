//! One execution of a job, and how it ended.

use chrono::{DateTime, Utc};
use serde::Serialize;

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
    Trigger { Schedule => "schedule", Manual => "manual", Retry => "retry", Chain => "chain" }
);

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
    /// `memory_used_mb` is an upper bound (rusage, without a cgroup memory controller: the
    /// runner's own size is counted in); false: the cgroup's exact peak; None: not measured.
    pub memory_upper_bound: Option<bool>,
    /// The job had a CPU quota: whether `cpu.max` enforced it; None: no quota.
    pub cpu_quota_enforced: Option<bool>,
    /// The process group of the execution's child.
    pub pid: Option<u32>,
    /// The runner (or `run-now`) process that started it.
    pub runner_pid: Option<u32>,
    /// Who asked for it to be cancelled (`cronmgr kill`): the audit log's actor, as `user` or
    /// `user (sudo from other)`. Set while it is still running, before its process is signalled,
    /// so whoever records its end (the runner, `run-now`, recovery) records it `cancelled`.
    pub cancelled_by: Option<String>,
    /// The execution whose end triggered this one (`triggered_by` = `chain`).
    pub caused_by: Option<i64>,
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
    /// See [`Execution::memory_upper_bound`].
    pub memory_upper_bound: Option<bool>,
    /// See [`Execution::cpu_quota_enforced`].
    pub cpu_quota_enforced: Option<bool>,
}
