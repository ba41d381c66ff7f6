//! `healthcheck`: disk space, available memory, load, and HTTP probes; fails if any is breached.
//!
//! Params: `disks = [{path, min_free}]` (min_free "10%" of the filesystem as `df` counts it, or a
//! size like "5GiB"), `min_available_memory` ("512MiB" or "10%" of MemTotal; MemAvailable from
//! /proc/meminfo), `max_load` (the 1-minute load average, absolute), `max_load_per_core` (the 1-minute load
//! average divided by the online CPUs), `http = [{url, expect_status, timeout}]` (hosts under
//! `[executors.http] allow_hosts`). At least one check.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tabled::{Table, Tabled};

use super::common::{check_url, human_bytes, typed, Amount, Dur};
use super::http::{self as http_exec, Expect};
use super::{Executor, ParamError, RunContext, RunError};
use crate::config::Config;
use crate::host::disk_space;

pub struct Healthcheck;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disk {
    path: PathBuf,
    min_free: Amount,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Probe {
    url: String,
    expect_status: Option<Expect>,
    timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    disks: Vec<Disk>,
    min_available_memory: Option<Amount>,
    max_load: Option<f64>,
    max_load_per_core: Option<f64>,
    #[serde(default)]
    http: Vec<Probe>,
}

fn checked(params: &Map<String, Value>, config: &Config) -> Result<Params, ParamError> {
    let p: Params = typed("healthcheck", params)?;
    if p.disks.is_empty()
        && p.min_available_memory.is_none()
        && p.max_load.is_none()
        && p.max_load_per_core.is_none()
        && p.http.is_empty()
    {
        return Err(ParamError::new(
            "healthcheck: nothing to check; give disks, min_available_memory, max_load, max_load_per_core or http",
        ));
    }
    for d in &p.disks {
        if !d.path.is_absolute() {
            return Err(ParamError(format!(
                "healthcheck: disks path {} must be absolute",
                d.path.display()
            )));
        }
    }
    for (name, v) in [
        ("max_load", p.max_load),
        ("max_load_per_core", p.max_load_per_core),
    ] {
        if v.is_some_and(|v| !v.is_finite() || v <= 0.0) {
            return Err(ParamError(format!(
                "healthcheck: {name} must be a number above 0"
            )));
        }
    }
    for probe in &p.http {
        check_url(
            "healthcheck",
            "http url",
            &probe.url,
            &config.http.allow_hosts,
            "[executors.http] allow_hosts",
        )?;
    }
    Ok(p)
}

#[derive(Debug, Tabled)]
pub struct Row {
    pub check: String,
    pub value: String,
    pub threshold: String,
    pub status: &'static str,
}

fn row(check: String, value: String, threshold: String, ok: bool) -> Row {
    Row {
        check,
        value,
        threshold,
        status: if ok { "ok" } else { "FAIL" },
    }
}

/// (MemAvailable, MemTotal) in bytes.
pub fn memory(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kb * 1024)
        })
    };
    Some((field("MemAvailable")?, field("MemTotal")?))
}

/// The 1-minute load average.
pub fn load1(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn checks(p: &Params) -> Vec<Row> {
    let mut rows = Vec::new();
    for d in &p.disks {
        let name = format!("disk {}", d.path.display());
        match disk_space(&d.path) {
            Ok(space) => {
                let need = d.min_free.bytes_of(space.size);
                rows.push(row(
                    name,
                    format!(
                        "{} free ({:.1}%)",
                        human_bytes(space.available),
                        space.free_percent()
                    ),
                    format!(">= {}", d.min_free),
                    space.available >= need,
                ));
            }
            Err(e) => rows.push(row(
                name,
                format!("error: {e}"),
                format!(">= {}", d.min_free),
                false,
            )),
        }
    }
    if let Some(min) = p.min_available_memory {
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| memory(&s));
        rows.push(match mem {
            Some((avail, total)) => row(
                "memory available".into(),
                format!(
                    "{} ({:.1}%)",
                    human_bytes(avail),
                    avail as f64 * 100.0 / total.max(1) as f64
                ),
                format!(">= {min}"),
                avail >= min.bytes_of(total),
            ),
            None => row(
                "memory available".into(),
                "unreadable /proc/meminfo".into(),
                format!(">= {min}"),
                false,
            ),
        });
    }
    if p.max_load.is_some() || p.max_load_per_core.is_some() {
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| load1(&s));
        let n = cpus();
        for (name, max, per_core) in [
            ("load 1m", p.max_load, false),
            ("load 1m per core", p.max_load_per_core, true),
        ] {
            let Some(max) = max else { continue };
            rows.push(match load {
                Some(l) => {
                    let v = if per_core { l / n as f64 } else { l };
                    let shown = if per_core {
                        format!("{v:.2} ({l:.2} / {n} cpus)")
                    } else {
                        format!("{v:.2}")
                    };
                    row(name.into(), shown, format!("<= {max}"), v <= max)
                }
                None => row(
                    name.into(),
                    "unreadable /proc/loadavg".into(),
                    format!("<= {max}"),
                    false,
                ),
            });
        }
    }
    for probe in &p.http {
        let expect = probe.expect_status.clone().unwrap_or_default();
        let req = http_exec::Request {
            method: "GET".into(),
            url: probe.url.clone(),
            headers: Vec::new(),
            body: None,
            expect: expect.clone(),
            timeout: probe.timeout.map_or(Duration::from_secs(10), |d| d.0),
        };
        let name = format!("http {}", probe.url);
        rows.push(match http_exec::send(&req) {
            Ok(r) => row(
                name,
                format!("{} in {} ms", r.status, r.elapsed.as_millis()),
                format!("status {expect}"),
                expect.matches(r.status),
            ),
            Err(e) => row(
                name,
                format!("error: {e}"),
                format!("status {expect}"),
                false,
            ),
        });
    }
    rows
}

impl Executor for Healthcheck {
    fn name(&self) -> &'static str {
        "healthcheck"
    }

    fn summary(&self) -> &'static str {
        "disk space, memory, load and HTTP probes with thresholds: disks, min_available_memory, max_load, max_load_per_core, http"
    }

    fn check(&self, params: &Map<String, Value>, config: &Config) -> Result<(), ParamError> {
        checked(params, config).map(|_| ())
    }

    fn run(
        &self,
        params: &Map<String, Value>,
        config: &Config,
        _ctx: &RunContext,
        out: &mut dyn Write,
    ) -> Result<(), RunError> {
        let p = checked(params, config)?;
        let rows = checks(&p);
        let failed = rows.iter().filter(|r| r.status == "FAIL").count();
        let table = Table::new(&rows)
            .with(tabled::settings::Style::psql())
            .to_string();
        writeln!(out, "{table}").map_err(|e| RunError::io("writing the report", e))?;
        if failed > 0 {
            return Err(RunError::Failed(format!(
                "{failed} of {} check(s) failed",
                rows.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value, c: &Config) -> (Result<(), RunError>, String) {
        let mut out = Vec::new();
        let r = Healthcheck.run(
            v.as_object().unwrap(),
            c,
            &RunContext { db: "/x".into() },
            &mut out,
        );
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn parses_proc_files() {
        let m = "MemTotal:       16000000 kB\nMemFree:  1 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(memory(m), Some((8_000_000 * 1024, 16_000_000 * 1024)));
        assert_eq!(memory("MemTotal: 1 kB\n"), None);
        assert_eq!(load1("0.52 0.58 0.59 1/467 12345\n"), Some(0.52));
    }

    #[test]
    fn passing_and_failing_thresholds() {
        let c = Config::defaults("/nonexistent".into());
        let (r, text) = run(
            json!({"disks": [{"path": "/", "min_free": "0%"}], "min_available_memory": "1B", "max_load": 100000}),
            &c,
        );
        r.unwrap();
        assert!(
            text.contains("disk /") && text.contains("memory available"),
            "{text}"
        );
        assert!(!text.contains("FAIL"), "{text}");
        let (r, text) = run(
            json!({"disks": [{"path": "/", "min_free": "100%"}, {"path": "/", "min_free": "1B"}],
                   "min_available_memory": "1000TiB"}),
            &c,
        );
        assert!(r.unwrap_err().to_string().contains("2 of 3"), "{text}");
        assert!(text.contains("FAIL") && text.contains("ok"), "{text}");
    }

    #[test]
    fn http_probes_need_allowlisted_hosts() {
        let port = super::super::http::tests::serve(200, "ok");
        let mut c = Config::defaults("/nonexistent".into());
        let v = json!({"http": [{"url": format!("http://127.0.0.1:{port}/health")}]});
        let err = Healthcheck.check(v.as_object().unwrap(), &c).unwrap_err();
        assert!(err.0.contains("[executors.http] allow_hosts"), "{err}");
        c.http.allow_hosts = vec!["127.0.0.1".into()];
        let (r, text) = run(v, &c);
        r.unwrap();
        assert!(text.contains("200 in"), "{text}");
    }

    #[test]
    fn bad_params() {
        let c = Config::defaults("/nonexistent".into());
        for (v, needle) in [
            (json!({}), "nothing to check"),
            (
                json!({"disks": [{"path": "/", "min_free": "lots"}]}),
                "disks[0].min_free",
            ),
            (
                json!({"disks": [{"path": "rel", "min_free": "1%"}]}),
                "absolute",
            ),
            (json!({"max_load": -1}), "max_load"),
            (json!({"max_load": 1, "swap": 1}), "unknown field `swap`"),
        ] {
            let err = Healthcheck.check(v.as_object().unwrap(), &c).unwrap_err();
            assert!(err.0.contains(needle), "{v}: {err}");
        }
    }
}
