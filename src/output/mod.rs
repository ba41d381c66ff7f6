//! How results reach people and scripts: tables (tabled) on stdout, JSON (serde_json), times.

pub mod progress;

use std::io::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

/// Print a value as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Print text on stdout (a closed pipe surfaces as an io error the caller maps to exit 0).
pub fn text(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    if !s.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A table with a header row, borderless like `kubectl get`.
pub fn table<R, C>(headers: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = String>,
{
    let mut b = Builder::default();
    b.push_record(headers.iter().map(|h| h.to_string()));
    for row in rows {
        b.push_record(row);
    }
    let mut t = b.build();
    t.with(Style::blank());
    t.to_string()
}

/// Two columns, key and value, for `show` and `settings show`.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let mut b = Builder::default();
    for (k, v) in rows {
        b.push_record([format!("{k}:"), v.clone()]);
    }
    let mut t = b.build();
    t.with(Style::blank());
    t.to_string()
}

/// `2026-11-29 03:00:00 CET` in the given zone.
pub fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// `2026-11-29T02:00:00Z`.
pub fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A time in the zone, or "-".
pub fn opt_local(t: Option<DateTime<Utc>>, tz: Tz) -> String {
    t.map(|t| local(t, tz)).unwrap_or_else(|| "-".into())
}

/// `-` for None.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}
