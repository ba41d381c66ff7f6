//! Resource limits of a job's process: memory, CPU seconds, open files and processes, as
//! `setrlimit` sets them in the child before it runs the program; where the runner runs the
//! execution in a cgroup v2 with the memory controller, the memory limit is the cgroup's
//! `memory.max` (resident memory of the whole job) instead of RLIMIT_AS (docs/limits.md).
//! The CPU limit is CPU seconds (RLIMIT_CPU) either way; the CPU quota (a share of a CPU,
//! `--cpu-quota`) is `cpu.max` and exists only in a cgroup with the cpu controller.
//!
//! Sizes on the command line and in files: `512M`, `2G`, `1048576` (bytes), `64K`; binary units
//! (`M` is MiB). CPU limits are durations (`10m`).

use crate::model::size::human_bytes;
use crate::model::{Job, Settings};

/// The limits one execution runs under; None: not limited (inherited from the runner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes: of address space per process (RLIMIT_AS), or of the whole job's memory in its
    /// cgroup (`memory.max`) when the runner has the memory controller.
    pub memory: Option<u64>,
    /// CPU seconds (RLIMIT_CPU): SIGXCPU at the limit, SIGKILL a second later.
    pub cpu: Option<u64>,
    /// Percent of one CPU, as the cgroup's `cpu.max` (no rlimit can do this).
    pub cpu_quota: Option<u32>,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub nofile: Option<u64>,
    /// Processes of the job's real user, all of them (RLIMIT_NPROC); not enforced for root.
    pub nproc: Option<u64>,
}

impl Limits {
    /// The job's limits, each falling back to its system's default.
    pub fn of(job: &Job, settings: &Settings) -> Limits {
        Limits {
            memory: job.memory_limit.or(settings.default_memory_limit),
            cpu: job.cpu_limit.or(settings.default_cpu_limit),
            cpu_quota: job.cpu_quota,
            nofile: job.nofile_limit.or(settings.default_nofile_limit),
            nproc: job.nproc_limit.or(settings.default_nproc_limit),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// `memory 512 MiB, cpu 10m`: for `show`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory {
            parts.push(format!("memory {}", human_bytes(m)));
        }
        if let Some(c) = self.cpu {
            parts.push(format!("cpu {}", crate::duration::human_secs(c)));
        }
        if let Some(q) = self.cpu_quota {
            parts.push(format!("cpu quota {}", crate::model::quota::describe(q)));
        }
        if let Some(n) = self.nofile {
            parts.push(format!("open files {n}"));
        }
        if let Some(n) = self.nproc {
            parts.push(format!("processes {n}"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_falls_back_to_its_system() {
        let mut s = Settings::defaults("s", "UTC");
        s.default_memory_limit = Some(1 << 30);
        s.default_nproc_limit = Some(50);
        let mut j = Job::new("s", "j", "@daily", "shell");
        j.memory_limit = Some(1 << 20);
        let l = Limits::of(&j, &s);
        assert_eq!(l.memory, Some(1 << 20));
        assert_eq!(l.nproc, Some(50));
        assert_eq!(l.cpu, None);
        assert_eq!(l.describe(), "memory 1 MiB, processes 50");
    }
}
