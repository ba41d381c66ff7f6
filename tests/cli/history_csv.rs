//! `history --since/--until` (a time window) and `history --format csv` (RFC 4180, for
//! spreadsheets).

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::Value;

use crate::harness::Env;

/// Now, as an instant `--since`/`--until` read, after a pause that keeps it apart from the runs
/// around it (the store keeps milliseconds).
fn mark() -> String {
    std::thread::sleep(Duration::from_millis(50));
    let t = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(50));
    t
}

fn jobs_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["job"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn history_since_and_until_select_a_window() {
    let env = Env::new();
    for name in ["a", "b", "c"] {
        env.ok(&["add", name, "--schedule", "@yearly", "--", "/usr/bin/true"]);
    }
    env.ok(&["run-now", "a"]);
    let t1 = mark();
    env.ok(&["run-now", "b"]);
    let t2 = mark();
    env.ok(&["run-now", "c"]);

    let window = |args: &[&str]| {
        let mut all = vec!["history"];
        all.extend_from_slice(args);
        jobs_of(&env.json(&all))
    };
    assert_eq!(window(&["--until", &t1]), ["a"]);
    assert_eq!(window(&["--since", &t1, "--until", &t2]), ["b"]);
    assert_eq!(window(&["--since", &t2]), ["c"]);
    assert_eq!(window(&["--until", &t2]), ["b", "a"]);
    // A duration counts back from now, as for --since: an hour ago is before all three.
    assert!(window(&["--until", "1h"]).is_empty());
    assert_eq!(window(&["--since", "1h", "--until", &t1]), ["a"]);
    // The other filters still apply.
    assert_eq!(window(&["b", "--until", &t2]), ["b"]);
    assert_eq!(window(&["--until", &t2, "--limit", "1"]), ["b"]);

    // Bad input: exit 2, naming the flag.
    let err = env.fails(2, &["history", "--until", "yesterday-ish"]);
    assert!(err.contains("--until"), "{err}");
    let err = env.fails(2, &["history", "--since", &t2, "--until", &t1]);
    assert!(err.contains("--since") && err.contains("--until"), "{err}");
}

/// An RFC 4180 reader, to read back what `history --format csv` wrote: records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => {
                assert!(c != '\n' && c != '\r', "bare line break in {text:?}");
                field.push(c);
            }
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "last record not ended by CRLF"
    );
    records
}

#[test]
fn history_as_csv_for_spreadsheets() {
    let mut allow = crate::harness::ALLOW.to_vec();
    allow.retain(|p| *p != "/usr/bin/echo");
    let env = Env::with_allow(&allow);
    // The echo entry pins its arguments, so the job's run is refused with a message holding
    // quotes and commas: the hard case for CSV.
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    cfg = cfg.replace(
        "allow = [",
        "allow = [{ program = \"/usr/bin/echo\", args = [\"ok\"] }, ",
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.ok(&[
        "add",
        "fine",
        "--schedule",
        "@yearly",
        "--",
        "/usr/bin/true",
    ]);
    env.ok(&[
        "add",
        "picky",
        "--schedule",
        "@yearly",
        "--",
        "/usr/bin/echo",
        "ok",
    ]);
    env.set_params(
        "picky",
        &serde_json::json!({"argv": ["/usr/bin/echo", "a,\"b\""]}),
    );
    env.ok(&["run-now", "fine"]);
    env.fails(3, &["run-now", "picky"]);

    let out = env.ok(&["history", "--format", "csv"]);
    let rows = parse_csv(&out);
    assert_eq!(
        rows[0],
        [
            "id",
            "system",
            "job",
            "status",
            "triggered_by",
            "attempt",
            "scheduled_for",
            "started_at",
            "finished_at",
            "duration_ms",
            "exit_code",
            "memory_used_mb",
            "cpu_used_percent",
            "error_message",
            "memory_upper_bound",
            "caused_by"
        ]
    );
    assert_eq!(rows.len(), 3, "{out}");
    // The same executions, field for field, as --json has them.
    let json = env.json(&["history"]);
    for (row, e) in rows[1..].iter().zip(json.as_array().unwrap()) {
        assert_eq!(row[0], e["id"].to_string());
        assert_eq!(row[2], e["job"].as_str().unwrap());
        assert_eq!(row[3], e["status"].as_str().unwrap());
        assert_eq!(row[6], e["scheduled_for"].as_str().unwrap());
        assert_eq!(row[9], e["duration_ms"].to_string());
        assert_eq!(row[13], e["error_message"].as_str().unwrap_or(""));
        let bound = &e["memory_upper_bound"];
        assert_eq!(
            row[14],
            if bound.is_null() {
                String::new()
            } else {
                bound.to_string()
            }
        );
        assert_eq!(row[15], "", "not chained: {e}");
    }
    let picky = &rows[1];
    assert_eq!(picky[2], "picky");
    assert!(picky[13].contains("a,\\\"b\\\""), "{picky:?}");
    assert!(out.contains("\"\""), "quotes doubled: {out}");
    assert_eq!(rows[2][2], "fine");
    assert_eq!(rows[2][10], "0");
    assert_eq!(rows[2][13], "");

    // Windows and filters work as for the table; an empty one is the header alone.
    let only = parse_csv(&env.ok(&["history", "fine", "--format", "csv"]));
    assert_eq!(only.len(), 2);
    let none = env.ok(&["history", "--format", "csv", "--until", "1h"]);
    assert_eq!(parse_csv(&none).len(), 1, "{none}");

    // --format json is --json; csv with --json contradicts itself (exit 2).
    let as_json: Value = serde_json::from_str(&env.ok(&["history", "--format", "json"])).unwrap();
    assert_eq!(as_json, json);
    let err = env.fails(2, &["--json", "history", "--format", "csv"]);
    assert!(err.contains("--format csv"), "{err}");
}
