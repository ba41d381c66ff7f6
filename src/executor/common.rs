//! What the built-in executors share: typed parameters, durations and sizes as written in
//! params, host and path allowlist checks.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ParamError;

/// Parse an executor's params into its typed struct; errors name the parameter (`requests[0].url`).
pub fn typed<T: DeserializeOwned>(
    executor: &str,
    params: &Map<String, Value>,
) -> Result<T, ParamError> {
    let value = Value::Object(params.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ParamError(format!("{executor}: {}", e.inner()))
        } else {
            ParamError(format!("{executor}: {path}: {}", e.inner()))
        }
    })
}

/// A duration param: seconds as a number, or text as on the command line (`30s`, `7d`, `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            de::Error::custom("expected a duration: seconds, or text like \"30s\", \"5m\", \"7d\"")
        })? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => crate::duration::parse(&t)
                .map(Dur)
                .map_err(de::Error::custom),
        }
    }
}

/// Parse a size: `512`, `512B`, `10KB` (1000), `10KiB` (1024), `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {text:?} (e.g. \"512MiB\", \"5GiB\", \"10%\")"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0f64.powi(4),
        _ => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {unit:?} (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
            ))
        }
    };
    Ok((n * mult).round() as u64)
}

/// A threshold of free space or memory: an absolute size or a percentage of the total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Bytes(u64),
    Percent(f64),
}

impl Amount {
    pub fn parse(text: &str) -> Result<Amount, String> {
        if let Some(p) = text.trim().strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage {text:?}"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("percentage {text:?} is not between 0 and 100"));
            }
            return Ok(Amount::Percent(v));
        }
        parse_size(text).map(Amount::Bytes)
    }

    /// The threshold in bytes for a total of `total` bytes.
    pub fn bytes_of(self, total: u64) -> u64 {
        match self {
            Amount::Bytes(b) => b,
            Amount::Percent(p) => (total as f64 * p / 100.0).round() as u64,
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Bytes(b) => write!(f, "{}", human_bytes(*b)),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Amount::parse(&s).map_err(de::Error::custom)
    }
}

/// `1.5 GiB`, `320 KiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Does `host[:port]` match one of the patterns `host`, `host:port`, `*.domain[:port]`, `*`?
/// A pattern without a port matches any port. Comparison ignores case.
pub fn host_allowed(host: &str, port: u16, patterns: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    patterns.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            return true;
        }
        // Split a trailing :port, leaving IPv6 literals ("[::1]:80") intact.
        let (pat_host, pat_port) = match pattern.rsplit_once(':') {
            Some((h, p))
                if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') =>
            {
                (h.to_string(), p.parse::<u16>().ok())
            }
            _ => (pattern.clone(), None),
        };
        if pat_port.is_some_and(|p| p != port) {
            return false;
        }
        match pat_host.strip_prefix("*.") {
            Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
            None => host == pat_host,
        }
    })
}

/// A checked http(s) URL: its scheme, host and port.
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// Parse a URL and check its host against an allowlist; `key` names the config key for the message.
pub fn check_url(
    executor: &str,
    what: &str,
    url: &str,
    patterns: &[String],
    key: &str,
) -> Result<Target, ParamError> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| {
        ParamError(format!(
            "{executor}: {what} {url:?} is not a valid URL: {e}"
        ))
    })?;
    let port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => {
            return Err(ParamError(format!(
                "{executor}: {what} {url:?} must start with http:// or https://"
            )))
        }
    };
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    if authority.contains('@') {
        return Err(ParamError(format!(
            "{executor}: {what} {url:?}: credentials in the URL are not accepted; use an Authorization header"
        )));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ParamError(format!("{executor}: {what} {url:?} has no host")))?
        .to_string();
    let port = uri.port_u16().unwrap_or(port);
    if !host_allowed(&host, port, patterns) {
        return Err(ParamError(format!(
            "{executor}: host {host}:{port} of {what} {url:?} is not allowed by {key} ({})",
            if patterns.is_empty() {
                "the list is empty, so every host is refused".to_string()
            } else {
                patterns.join(", ")
            }
        )));
    }
    Ok(Target { host, port })
}

/// An absolute path without `..`, resolved through symlinks. A path that does not exist yet (a
/// log folder the application creates later) resolves through its deepest existing ancestor, with
/// the rest appended as written; whoever uses it at run time finds out whether it exists then.
pub fn resolve_path(executor: &str, what: &str, path: &Path) -> Result<PathBuf, ParamError> {
    if !path.is_absolute() {
        return Err(ParamError(format!(
            "{executor}: {what} {} must be an absolute path",
            path.display()
        )));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(ParamError(format!(
            "{executor}: {what} {} must not contain '..'",
            path.display()
        )));
    }
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(base) => {
                return Ok(rest
                    .iter()
                    .rev()
                    .fold(base, |acc: PathBuf, part| acc.join(part)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return Err(ParamError(format!(
                        "{executor}: {what} {} cannot be used: {e}",
                        path.display()
                    )));
                };
                rest.push(name.to_os_string());
                existing = parent;
            }
            Err(e) => {
                return Err(ParamError(format!(
                    "{executor}: {what} {} cannot be used: {e}",
                    path.display()
                )))
            }
        }
    }
}

/// Is `resolved` (canonical) one of `allowed` or inside one of them (each resolved too)?
pub fn under_any(resolved: &Path, allowed: &[PathBuf]) -> bool {
    allowed.iter().any(|a| {
        let a = a.canonicalize().unwrap_or_else(|_| a.clone());
        resolved.starts_with(&a)
    })
}

/// The message for a path outside its allowlist.
pub fn not_under(
    executor: &str,
    what: &str,
    path: &Path,
    allowed: &[PathBuf],
    key: &str,
) -> ParamError {
    let list: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
    ParamError(format!(
        "{executor}: {what} {} is not under {key} ({})",
        path.display(),
        if list.is_empty() {
            "the list is empty, so everything is refused".to_string()
        } else {
            list.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_through_their_deepest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let base = real.canonicalize().unwrap();
        assert_eq!(resolve_path("t", "p", &link).unwrap(), base);
        assert_eq!(
            resolve_path("t", "p", &link.join("not/yet")).unwrap(),
            base.join("not/yet")
        );
        assert!(resolve_path("t", "p", Path::new("relative")).is_err());
        assert!(resolve_path("t", "p", &link.join("../x")).is_err());
    }

    #[test]
    fn hosts_match_patterns() {
        let p: Vec<String> = [
            "api.example.com",
            "*.internal",
            "127.0.0.1:8080",
            "[::1]:9000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(host_allowed("api.example.com", 443, &p));
        assert!(host_allowed("API.Example.com", 80, &p));
        assert!(!host_allowed("evil.example.com", 443, &p));
        assert!(host_allowed("db.internal", 5432, &p));
        assert!(host_allowed("a.b.internal", 80, &p));
        assert!(!host_allowed("internal", 80, &p));
        assert!(!host_allowed("xinternal", 80, &p));
        assert!(host_allowed("127.0.0.1", 8080, &p));
        assert!(!host_allowed("127.0.0.1", 8081, &p));
        assert!(host_allowed("[::1]", 9000, &p));
        assert!(!host_allowed("anything", 80, &[]));
        assert!(host_allowed("anything", 80, &["*".to_string()]));
    }

    #[test]
    fn urls_are_checked() {
        let p = vec!["127.0.0.1:8080".to_string()];
        assert!(check_url("http", "url", "http://127.0.0.1:8080/x", &p, "k").is_ok());
        let err = check_url("http", "url", "http://127.0.0.1:9/x", &p, "k")
            .err()
            .unwrap();
        assert!(err.0.contains("not allowed by k"), "{err}");
        assert!(check_url("http", "url", "ftp://127.0.0.1:8080/", &p, "k").is_err());
        assert!(check_url("http", "url", "http://u:p@127.0.0.1:8080/", &p, "k").is_err());
        assert!(check_url("http", "url", "not a url", &p, "k").is_err());
    }

    #[test]
    fn sizes_and_amounts() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("5GiB").unwrap(), 5 << 30);
        assert_eq!(parse_size("1.5 KB").unwrap(), 1500);
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(Amount::parse("10%").unwrap(), Amount::Percent(10.0));
        assert_eq!(Amount::parse("512MiB").unwrap(), Amount::Bytes(512 << 20));
        assert!(Amount::parse("150%").is_err());
        assert_eq!(Amount::Percent(10.0).bytes_of(1000), 100);
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn typed_errors_name_the_parameter() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct P {
            timeout: Option<Dur>,
            items: Vec<u32>,
        }
        let m = |v: Value| v.as_object().unwrap().clone();
        let p: P = typed("x", &m(serde_json::json!({"timeout": "7d", "items": []}))).unwrap();
        assert_eq!(p.timeout, Some(Dur(Duration::from_secs(7 * 86400))));
        let e = typed::<P>(
            "x",
            &m(serde_json::json!({"timeout": "7 weeks", "items": []})),
        )
        .unwrap_err();
        assert!(e.0.starts_with("x: timeout:"), "{e}");
        let e = typed::<P>("x", &m(serde_json::json!({"items": ["a"]}))).unwrap_err();
        assert!(e.0.contains("items[0]"), "{e}");
        let e = typed::<P>("x", &m(serde_json::json!({"items": [], "bogus": 1}))).unwrap_err();
        assert!(
            e.0.contains("unknown field `bogus`, expected `timeout` or `items`"),
            "{e}"
        );
    }
}
