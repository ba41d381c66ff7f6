//! How results reach people and scripts: tables fitted to the terminal on stdout (see
//! [`table`](mod@table) for the width rules), JSON (serde_json), times.

pub mod csv;
pub mod progress;
pub mod table;

pub use table::Column;

use std::io::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// Print a value as pretty JSON on stdout. Buffered: stdout is line-buffered, and pretty JSON
/// is a line per field (a `write` each: 16,000 of them for `stats --json` of 1,000 jobs).
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
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

/// A table with a header row, borderless like `kubectl get`, fitted to the terminal (see
/// [`table`](mod@table)). `columns` are [`Column`]s, or plain headers (columns kept whole).
pub fn table<'a, H, R, C>(columns: &'a [H], rows: R) -> String
where
    &'a H: Into<Column<'a>>,
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = String>,
{
    table_in(0, columns, rows)
}

/// The same, `indent` spaces in (a table under a heading).
pub fn table_in<'a, H, R, C>(indent: usize, columns: &'a [H], rows: R) -> String
where
    &'a H: Into<Column<'a>>,
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = String>,
{
    let columns: Vec<Column> = columns.iter().map(Into::into).collect();
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.into_iter().collect()).collect();
    table::render(&columns, &rows, indent, true, table::terminal_width())
}

/// Two columns, key and value, for `show` and `settings show`: long values are cut with `…` to
/// fit the terminal.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let columns = [Column::new(""), Column::new("").fill(10)];
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(k, v)| vec![format!("{k}:"), v.clone()])
        .collect();
    table::render(&columns, &rows, 0, false, table::terminal_width())
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
