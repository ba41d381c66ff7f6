//! Time zones: IANA names, and the host's own zone.

use std::path::Path;
use std::str::FromStr;

use chrono_tz::Tz;

use super::ScheduleError;

/// An IANA time zone name (`UTC`, `Europe/Madrid`, `America/New_York`).
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name.trim()).map_err(|_| ScheduleError::UnknownTimezone(name.to_string()))
}

/// The host's own zone: `TZ` (an IANA name, optionally with a leading `:`), else the target of
/// the `/etc/localtime` symlink, else `/etc/timezone`, else UTC.
pub fn host_timezone() -> Tz {
    let tz_env = std::env::var("TZ").ok();
    host_timezone_from(
        tz_env.as_deref(),
        Path::new("/etc/localtime"),
        Path::new("/etc/timezone"),
    )
}

/// [`host_timezone`] with its inputs passed in. A source that is missing or names no zone we
/// know falls through to the next one.
pub(crate) fn host_timezone_from(
    tz_env: Option<&str>,
    localtime: &Path,
    timezone_file: &Path,
) -> Tz {
    if let Some(tz) = tz_env.and_then(zone_from_env) {
        return tz;
    }
    if let Some(tz) = std::fs::read_link(localtime)
        .ok()
        .and_then(|target| zone_from_path(&target))
    {
        return tz;
    }
    if let Some(tz) = std::fs::read_to_string(timezone_file)
        .ok()
        .and_then(|text| Tz::from_str(text.trim()).ok())
    {
        return tz;
    }
    Tz::UTC
}

/// `TZ=Europe/Madrid`, `TZ=:Europe/Madrid` or `TZ=:/usr/share/zoneinfo/Europe/Madrid`.
fn zone_from_env(value: &str) -> Option<Tz> {
    let value = value.trim();
    let value = value.strip_prefix(':').unwrap_or(value);
    if value.starts_with('/') {
        return zone_from_path(Path::new(value));
    }
    Tz::from_str(value).ok()
}

/// `…/zoneinfo/Area/City` (also under `zoneinfo/posix/` and `zoneinfo/right/`).
fn zone_from_path(path: &Path) -> Option<Tz> {
    let text = path.to_str()?;
    let (_, name) = text.rsplit_once("zoneinfo/")?;
    let name = name
        .strip_prefix("posix/")
        .or_else(|| name.strip_prefix("right/"))
        .unwrap_or(name);
    Tz::from_str(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_timezone_accepts_iana_names_and_refuses_others() {
        assert_eq!(parse_timezone("Europe/Madrid"), Ok(Tz::Europe__Madrid));
        assert_eq!(parse_timezone("UTC"), Ok(Tz::UTC));
        let err = parse_timezone("Mars/Base").expect_err("unknown zone");
        assert_eq!(
            err.to_string(),
            "unknown time zone \"Mars/Base\" (use an IANA name such as UTC, Europe/Madrid or America/New_York)"
        );
    }

    #[test]
    fn host_timezone_prefers_tz_variable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        assert_eq!(
            host_timezone_from(Some("Asia/Tokyo"), &missing, &missing),
            Tz::Asia__Tokyo
        );
        assert_eq!(
            host_timezone_from(Some(":Asia/Tokyo"), &missing, &missing),
            Tz::Asia__Tokyo
        );
        assert_eq!(
            host_timezone_from(Some(":/usr/share/zoneinfo/Asia/Tokyo"), &missing, &missing),
            Tz::Asia__Tokyo
        );
        assert_eq!(host_timezone_from(None, &missing, &missing), Tz::UTC);
        assert_eq!(
            host_timezone_from(Some("Nowhere/Land"), &missing, &missing),
            Tz::UTC
        );
    }

    #[test]
    fn host_timezone_reads_localtime_link_then_timezone_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("localtime");
        std::os::unix::fs::symlink("../usr/share/zoneinfo/America/New_York", &link)
            .expect("symlink");
        let file = dir.path().join("timezone");
        std::fs::write(&file, "Europe/Madrid\n").expect("write");
        let missing = dir.path().join("missing");

        assert_eq!(
            host_timezone_from(None, &link, &file),
            Tz::America__New_York
        );
        assert_eq!(
            host_timezone_from(Some(""), &link, &file),
            Tz::America__New_York
        );
        assert_eq!(
            host_timezone_from(None, &missing, &file),
            Tz::Europe__Madrid
        );
        // TZ wins over both.
        assert_eq!(host_timezone_from(Some("UTC"), &link, &file), Tz::UTC);
    }
}
