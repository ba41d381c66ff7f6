//! Human durations on the command line and in job files: `90`, `30s`, `5m`, `2h`, `1d`, `1h30m`.

use std::fmt;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("invalid duration {input:?}: {reason} (use seconds or a number with s, m, h or d, e.g. 90, 30s, 5m, 2h, 1h30m)")]
    Invalid { input: String, reason: &'static str },
    /// More seconds than a u64 holds: a number, not a typo, so say so (and not "no unit").
    #[error("duration {input:?} is too large")]
    TooLarge { input: String },
}

/// Always the user's input: exit status 2.
impl crate::exit::Coded for DurationError {
    fn exit_code(&self) -> crate::exit::ExitCode {
        crate::exit::ExitCode::Usage
    }
}

/// Parse a duration. A bare number is seconds.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError::Invalid {
        input: input.to_string(),
        reason,
    };
    let too_large = || DurationError::TooLarge {
        input: input.to_string(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s.starts_with('-') {
        return Err(err("it is negative"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| too_large());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut seen_unit = false;
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(err("unknown unit")),
        };
        if digits.is_empty() {
            return Err(err("a unit without a number"));
        }
        let n: u64 = digits.parse().map_err(|_| too_large())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(too_large)?;
        digits.clear();
        seen_unit = true;
    }
    if !digits.is_empty() || !seen_unit {
        return Err(err("a number without a unit after another unit"));
    }
    Ok(Duration::from_secs(total))
}

/// Parse a duration given in whole seconds as stored in the database.
pub fn parse_secs(input: &str) -> Result<u64, DurationError> {
    parse(input).map(|d| d.as_secs())
}

/// A compact human form: `45s`, `5m`, `2h30m`, `1d`.
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        if secs == 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (hours, rest) = (rest / 3600, rest % 3600);
        let (mins, s) = (rest / 60, rest % 60);
        let mut out = String::new();
        for (n, unit) in [(days, "d"), (hours, "h"), (mins, "m"), (s, "s")] {
            if n > 0 {
                out.push_str(&format!("{n}{unit}"));
            }
        }
        f.write_str(&out)
    }
}

/// Format seconds as stored (`3600` -> `1h`).
pub fn human_secs(secs: u64) -> String {
    Human(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_seconds_and_units() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "-5", "5x", "m", "1h30", "abc", "5 m"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn too_large_is_said_as_such() {
        for big in [
            "99999999999999999999",
            "99999999999999999999s",
            "213503982334602d",
        ] {
            assert_eq!(
                parse(big),
                Err(DurationError::TooLarge { input: big.into() }),
                "{big}"
            );
        }
        let msg = parse("99999999999999999999").unwrap_err().to_string();
        assert!(!msg.contains("without a unit"), "{msg}");
        assert_eq!(parse("18446744073709551615").unwrap().as_secs(), u64::MAX);
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(human_secs(3600), "1h");
        assert_eq!(human_secs(5400), "1h30m");
        assert_eq!(human_secs(45), "45s");
        assert_eq!(Human(Duration::from_millis(12)).to_string(), "12ms");
    }
}
