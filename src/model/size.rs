//! Sizes (`512M`, `2G`, `1048576`; binary units, `M` is MiB) and the optional limits that take
//! a size, a duration or a count, as flags, settings and job files write them.

/// Parse a size: bytes, or a number with K, M, G or T (binary: 1K = 1024), with an optional
/// `B`/`iB` (`512M`, `512MiB`, `2g`).
pub fn parse_bytes(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let bad = || {
        format!("invalid size {input:?} (use bytes or a number with K, M, G or T, e.g. 512M, 2G)")
    };
    let upper = s.to_ascii_uppercase();
    let body = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (digits, unit) = match body.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => body.split_at(i),
        None => (body, ""),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {input:?} is too large"))
}

/// `512 MiB`, `1.5 GiB`, `100 bytes`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: &[(&str, u32)] = &[("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        let size = 1u64 << shift;
        if n >= size {
            return if n % size == 0 {
                format!("{} {unit}", n >> shift)
            } else {
                format!("{:.1} {unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} bytes")
}

/// The compact form a file and a flag read back: `512M`, or bytes when not a whole unit.
pub fn compact_bytes(n: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

fn is_none(v: &str) -> bool {
    matches!(v, "" | "none")
}

/// A memory limit setting or flag: a size, or empty/`none` for no limit. Zero is refused.
pub fn parse_opt_bytes(key: &str, v: &str) -> Result<Option<u64>, String> {
    if is_none(v) {
        return Ok(None);
    }
    match parse_bytes(v).map_err(|e| format!("{key}: {e}"))? {
        0 => Err(format!("{key} must be more than zero (or none)")),
        n => Ok(Some(n)),
    }
}

/// A CPU limit: a duration, or empty/`none`. Zero is refused.
pub fn parse_opt_cpu(key: &str, v: &str) -> Result<Option<u64>, String> {
    if is_none(v) {
        return Ok(None);
    }
    match crate::duration::parse_secs(v).map_err(|e| format!("{key}: {e}"))? {
        0 => Err(format!("{key} must be more than zero (or none)")),
        n => Ok(Some(n)),
    }
}

/// A count limit (open files, processes): a whole number of 1 or more, or empty/`none`.
pub fn parse_opt_count(key: &str, v: &str) -> Result<Option<u64>, String> {
    if is_none(v) {
        return Ok(None);
    }
    match v.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(format!(
            "{key} must be a whole number of 1 or more (or none), got {v:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_back() {
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("64KB"), Ok(64 << 10));
        for bad in ["", "M", "12X", "-1M", "1.5G", "99999999999T"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(human_bytes(512 << 20), "512 MiB");
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
        assert_eq!(human_bytes(100), "100 bytes");
        for n in [512 << 20, 3 << 30, 100, 1025] {
            assert_eq!(parse_bytes(&compact_bytes(n)), Ok(n));
        }
    }

    #[test]
    fn zero_is_refused_none_clears() {
        assert!(parse_opt_bytes("memory", "0").is_err());
        assert!(parse_opt_cpu("cpu", "0s").is_err());
        assert!(parse_opt_count("nproc", "0").is_err());
        assert_eq!(parse_opt_count("nproc", "none"), Ok(None));
        assert_eq!(parse_opt_cpu("cpu", "10m"), Ok(Some(600)));
    }
}
