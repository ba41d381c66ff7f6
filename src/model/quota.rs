//! A job's CPU quota: a share of CPU time over a short period, as cgroup v2's `cpu.max` and
//! systemd's `CPUQuota=` enforce it (not RLIMIT_CPU's total seconds, which is `cpu_limit`).
//!
//! Stored as a percent of one CPU: 50 is half a core, 200 two cores. Given as a number of CPUs
//! (`0.5`, `2`) or as a percent like `CPUQuota=` (`50%`, `200%`); `none` clears.

/// The `cpu.max` period, in microseconds (the kernel's default).
pub const PERIOD_US: u64 = 100_000;
/// The largest quota taken: a thousand CPUs.
pub const MAX_PERCENT: u32 = 100_000;

/// `0.5` (CPUs) or `50%` to a percent of one CPU; `none`/empty to None.
pub fn parse(key: &str, v: &str) -> Result<Option<u32>, String> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad = || {
        format!(
            "{key} must be a number of CPUs (0.5, 2) or a percent of one CPU (50%, 200%) \
             from 1% to {MAX_PERCENT}%, or none; got {v:?}"
        )
    };
    let percent = match v.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())?,
        None => v.parse::<f64>().map_err(|_| bad())? * 100.0,
    };
    if !percent.is_finite() || percent < 1.0 || percent > f64::from(MAX_PERCENT) {
        return Err(bad());
    }
    let rounded = percent.round();
    if (percent - rounded).abs() > 1e-9 {
        return Err(format!(
            "{key}: whole percents only (1% steps, 0.01 CPU), got {v:?}"
        ));
    }
    // Within 1..=MAX_PERCENT, checked above.
    Ok(Some(rounded as u32))
}

/// The `cpu.max` line for a quota: `$MAX $PERIOD` in microseconds (`50000 100000` for 50%).
pub fn cpu_max(percent: u32) -> String {
    format!("{} {PERIOD_US}", u64::from(percent) * PERIOD_US / 100)
}

/// `0.5 CPU (50%)`: for `show`.
pub fn describe(percent: u32) -> String {
    let cpus = f64::from(percent) / 100.0;
    let plural = if percent == 100 { "" } else { "s" };
    format!("{cpus} CPU{plural} ({percent}%)")
}

/// As a job file writes it: a number of CPUs (`0.5`).
pub fn as_cpus(percent: u32) -> String {
    format!("{}", f64::from(percent) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_and_percents_parse_to_the_same_quota() {
        assert_eq!(parse("q", "0.5"), Ok(Some(50)));
        assert_eq!(parse("q", "50%"), Ok(Some(50)));
        assert_eq!(parse("q", "2"), Ok(Some(200)));
        assert_eq!(parse("q", "150 %"), Ok(Some(150)));
        assert_eq!(parse("q", "0.01"), Ok(Some(1)));
        assert_eq!(parse("q", "none"), Ok(None));
        assert_eq!(parse("q", ""), Ok(None));
    }

    #[test]
    fn bad_quotas_are_refused_naming_the_flag() {
        for v in [
            "0", "0%", "-1", "0.005", "abc", "1001", "50%%", "NaN", "inf", "0.555",
        ] {
            let err = parse("--cpu-quota", v).unwrap_err();
            assert!(err.starts_with("--cpu-quota"), "{v}: {err}");
        }
    }

    #[test]
    fn cpu_max_is_quota_and_period_in_microseconds() {
        assert_eq!(cpu_max(50), "50000 100000");
        assert_eq!(cpu_max(20), "20000 100000");
        assert_eq!(cpu_max(250), "250000 100000");
        assert_eq!(cpu_max(1), "1000 100000");
    }

    #[test]
    fn shown_as_cpus() {
        assert_eq!(describe(50), "0.5 CPUs (50%)");
        assert_eq!(describe(100), "1 CPU (100%)");
        assert_eq!(as_cpus(250), "2.5");
        assert_eq!(parse("q", &as_cpus(37)), Ok(Some(37)));
    }
}
