//! The range of every number a job and a system's settings hold, checked at every entry point
//! (`add`, `edit`, jobs.d, `import-crontab`, `settings set`) and again by the runner and `run-now`
//! on what they read, since a row may have been written behind cronmgr's back.
//!
//! The ceilings are far beyond any sensible use and far inside what the arithmetic downstream
//! carries (chrono instants, `std::time::Instant`, milliseconds in an i64, SQL integers), so a
//! value that passes cannot overflow anything the runner computes from it.

use std::fmt;

use super::Job;
use crate::duration::{self, DurationError};

const DAY: u64 = 86_400;
/// Every duration of a job or a setting (timeout, max_runtime, retry_delay, starting_deadline,
/// max_silence, cpu_limit, default_timeout, shutdown_grace, cpu_window): at most 400 days, a year
/// with a month to spare, so a yearly job's max_silence or starting_deadline still fits.
pub const MAX_DURATION: u64 = 400 * DAY;
/// Further attempts after a failure.
pub const MAX_RETRIES: u32 = 100;
/// escalate_after, disable_after: failures in a row.
pub const MAX_FAILURES: u32 = 1_000_000;
/// Bytes of address space (RLIMIT_AS): 1 PiB, beyond any machine's memory.
pub const MAX_MEMORY: u64 = 1 << 50;
/// Open files (RLIMIT_NOFILE): 2^30, beyond Linux's own ceiling (fs.nr_open).
pub const MAX_NOFILE: u64 = 1 << 30;
/// Processes (RLIMIT_NPROC): Linux's PID_MAX_LIMIT.
pub const MAX_NPROC: u64 = 4_194_304;
/// max_concurrent_jobs.
pub const MAX_CONCURRENT: u32 = 10_000;
/// keep_executions (per job).
pub const MAX_KEEP: u64 = 1_000_000_000;
/// cleanup_days, audit_retention_days: a century.
pub const MAX_DAYS: u64 = 36_500;
/// alert_rate_limit: messages per channel per hour.
pub const MAX_ALERTS_PER_HOUR: u32 = 1_000_000;

/// What a number measures: how its range is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Bytes,
    Count,
}

impl Unit {
    /// `n` as its flag or key would take it: `400d`, `512M`, `100`.
    pub fn show(self, n: u64) -> String {
        match self {
            Unit::Seconds if n == 0 => "0s".to_string(),
            Unit::Seconds => duration::human_secs(n),
            Unit::Bytes => super::size::compact_bytes(n),
            Unit::Count => n.to_string(),
        }
    }
}

/// A number outside its range. `got` is the value as given (or as read, from the database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OutOfRange {
    pub field: String,
    pub got: String,
    pub too_large: bool,
    pub min: u64,
    pub max: u64,
    pub unit: Unit,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} is too {} (range {} to {})",
            self.field,
            self.got,
            if self.too_large { "large" } else { "small" },
            self.unit.show(self.min),
            self.unit.show(self.max),
        )
    }
}

/// Check `value` against `min..=max`; `got` is how to quote it.
pub fn check(
    field: &str,
    value: u64,
    got: impl fmt::Display,
    (min, max): (u64, u64),
    unit: Unit,
) -> Result<u64, OutOfRange> {
    if (min..=max).contains(&value) {
        return Ok(value);
    }
    Err(OutOfRange {
        field: field.to_string(),
        got: got.to_string(),
        too_large: value > max,
        min,
        max,
        unit,
    })
}

/// A duration field given as text, in seconds, within `min..=`[`MAX_DURATION`].
#[derive(Debug, thiserror::Error)]
pub enum DurationFieldError {
    #[error("{field}: {source}")]
    Invalid {
        field: String,
        source: DurationError,
    },
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
}

pub fn parse_duration(field: &str, text: &str, min: u64) -> Result<u64, DurationFieldError> {
    let range = (min, MAX_DURATION);
    match duration::parse_secs(text) {
        Ok(secs) => Ok(check(field, secs, text.trim(), range, Unit::Seconds)?),
        Err(DurationError::TooLarge { .. }) => {
            Err(check(field, u64::MAX, text.trim(), range, Unit::Seconds)
                .expect_err("u64::MAX is above every range")
                .into())
        }
        Err(source) => Err(DurationFieldError::Invalid {
            field: field.to_string(),
            source,
        }),
    }
}

/// A whole number given as text within `min..=max` (a number too long for u64 is too large).
pub fn parse_count(field: &str, text: &str, (min, max): (u64, u64)) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{field} must be a whole number from {min} to {max}, got {text:?}"
        ));
    }
    let n = t.parse::<u64>().unwrap_or(u64::MAX);
    check(field, n, t, (min, max), Unit::Count).map_err(|e| e.to_string())
}

/// A field to check: its name, its value (None: unset), its range and its unit.
type Field<'a> = (&'a str, Option<u64>, (u64, u64), Unit);

/// Every number of a job out of its range, each named as stored and in job files (`retry_delay`).
pub fn job_problems(job: &Job) -> Vec<OutOfRange> {
    use Unit::{Bytes, Count, Seconds};
    let duration = (1, MAX_DURATION);
    let failures = (1, u64::from(MAX_FAILURES));
    let fields: [Field<'_>; 15] = [
        ("timeout", job.timeout, duration, Seconds),
        (
            "retries",
            Some(job.retries.into()),
            (0, MAX_RETRIES.into()),
            Count,
        ),
        (
            "retry_delay",
            Some(job.retry_delay),
            (0, MAX_DURATION),
            Seconds,
        ),
        ("priority", Some(job.priority.into()), (1, 10), Count),
        ("max_runtime", job.max_runtime, duration, Seconds),
        (
            "starting_deadline",
            job.starting_deadline,
            duration,
            Seconds,
        ),
        ("max_silence", job.max_silence, duration, Seconds),
        ("jitter", job.jitter, duration, Seconds),
        ("cpu_limit", job.cpu_limit, duration, Seconds),
        (
            "escalate_after",
            job.escalate_after.map(u64::from),
            failures,
            Count,
        ),
        (
            "disable_after",
            job.disable_after.map(u64::from),
            failures,
            Count,
        ),
        ("memory_limit", job.memory_limit, (1, MAX_MEMORY), Bytes),
        ("nofile_limit", job.nofile_limit, (1, MAX_NOFILE), Count),
        ("nproc_limit", job.nproc_limit, (1, MAX_NPROC), Count),
        (
            "cpu_quota",
            job.cpu_quota.map(u64::from),
            (1, u64::from(super::quota::MAX_PERCENT)),
            Count,
        ),
    ];
    fields
        .into_iter()
        .filter_map(|(field, value, range, unit)| {
            let v = value?;
            check(field, v, unit.show(v), range, unit).err()
        })
        .collect()
}

/// [`job_problems`] as one error: `timeout 0s is too small (…); retries 4294967295 is too large (…)`.
pub fn check_job(job: &Job) -> Result<(), String> {
    let problems = job_problems(job);
    if problems.is_empty() {
        return Ok(());
    }
    Err(problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_name_the_field_and_the_range() {
        assert_eq!(
            parse_duration("--timeout", "400d", 1).unwrap(),
            MAX_DURATION
        );
        let e = parse_duration("--timeout", "401d", 1)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--timeout 401d is too large (range 1s to 400d)");
        let e = parse_duration("--retry-delay", "9223372036854775807", 0)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--retry-delay 9223372036854775807 is too large (range 0s to 400d)"
        );
        let e = parse_duration("--timeout", "99999999999999999999", 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is too large") && e.contains("--timeout"), "{e}");
        let e = parse_duration("--timeout", "5x", 1)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--timeout: invalid duration"), "{e}");
    }

    #[test]
    fn counts_refuse_what_does_not_fit() {
        assert_eq!(parse_count("k", "7", (0, 10)), Ok(7));
        assert!(parse_count("k", "11", (0, 10))
            .unwrap_err()
            .contains("range 0 to 10"));
        assert!(parse_count("k", "99999999999999999999999", (0, 10))
            .unwrap_err()
            .contains("too large"));
        assert!(parse_count("k", "-1", (0, 10)).is_err());
    }

    #[test]
    fn a_job_at_every_ceiling_passes_and_one_past_any_is_named() {
        let mut j = Job::new("s", "j", "@daily", "shell");
        j.timeout = Some(MAX_DURATION);
        j.retries = MAX_RETRIES;
        j.retry_delay = MAX_DURATION;
        j.max_runtime = Some(MAX_DURATION);
        j.starting_deadline = Some(MAX_DURATION);
        j.max_silence = Some(MAX_DURATION);
        j.cpu_limit = Some(MAX_DURATION);
        j.escalate_after = Some(MAX_FAILURES);
        j.disable_after = Some(MAX_FAILURES);
        j.memory_limit = Some(MAX_MEMORY);
        j.nofile_limit = Some(MAX_NOFILE);
        j.nproc_limit = Some(MAX_NPROC);
        assert_eq!(check_job(&j), Ok(()));
        j.retry_delay = u64::MAX;
        j.retries = u32::MAX;
        j.priority = 0;
        let e = check_job(&j).unwrap_err();
        assert!(e.contains("retry_delay") && e.contains("400d"), "{e}");
        assert!(
            e.contains("retries 4294967295 is too large (range 0 to 100)"),
            "{e}"
        );
        assert!(e.contains("priority 0 is too small (range 1 to 10)"), "{e}");
    }
}
