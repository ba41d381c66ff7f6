//! What `import-crontab --system-wide` says: the report (table or `--json`) and the allowlist
//! entries the jobs need.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::Imported;
use crate::cli::apply::Candidate;
use crate::config::{Allow, Config};
use crate::crontab::host::Skipped;
use crate::output::{self, Column};

/// One file cronmgr read, for the report.
#[derive(Serialize)]
pub(super) struct SourceRow {
    pub(super) path: String,
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user: Option<String>,
    pub(super) jobs: usize,
}

/// Lines to comment out in one file.
#[derive(Serialize)]
pub(super) struct Disable {
    pub(super) file: String,
    pub(super) lines: Vec<usize>,
    /// Where the original was kept (once done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) backup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
}

/// `import-crontab --system-wide --json`.
#[derive(Serialize)]
pub(super) struct Report<'a> {
    pub(super) dry_run: bool,
    pub(super) root: String,
    pub(super) sources: Vec<SourceRow>,
    pub(super) jobs: &'a [Imported],
    pub(super) not_imported: &'a [Skipped],
    pub(super) not_carried_over: &'a [Skipped],
    /// `[executors.shell] allow` entries the jobs need and the config lacks (TOML, one each).
    pub(super) allowlist: Vec<String>,
    /// With --disable-sources: what is (or, on a dry run, would be) commented out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) disable_sources: Vec<Disable>,
    /// Why nothing was imported (the command then exits 2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) toml: Option<String>,
}

/// The `[executors.shell] allow` entries the jobs need and `config` lacks: each program with the
/// exact arguments its job gives it (least privilege; loosen by hand to a plain path if wanted).
pub(super) fn allowlist(candidates: &[Candidate], config: &Config) -> Vec<String> {
    let mut open = config.clone();
    open.shell_allow = Allow::Any;
    let mut out: Vec<String> = Vec::new();
    for c in candidates {
        let params = &c.job.params;
        if crate::executor::check(&c.job.command, params, config).is_ok()
            || crate::executor::check(&c.job.command, params, &open).is_err()
        {
            continue;
        }
        let argv: Vec<String> = params
            .get("argv")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        let path_var = params
            .get("env")
            .and_then(|e| e.get("PATH"))
            .and_then(Value::as_str)
            .unwrap_or(crate::executor::DEFAULT_PATH);
        let program = locate(program, path_var);
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let entry = format!(
            "{{ program = {}, args = [{}] }},",
            quote(&program),
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", ")
        );
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// A program as the `shell` executor finds it: an absolute path as is, a bare name on PATH.
fn locate(program: &str, path_var: &str) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .map_or_else(|| program.to_string(), |p| p.display().to_string())
}

pub(super) fn print(r: &Report<'_>, config: &Config) -> crate::exit::Result<()> {
    output::text(&format!("sources under {}:", r.root))?;
    output::text(&output::table_in(
        2,
        &[
            Column::new("SOURCE").fill(16),
            Column::new("KIND"),
            Column::new("USER"),
            Column::new("JOBS"),
        ],
        r.sources.iter().map(|s| {
            [
                s.path.clone(),
                s.kind.to_string(),
                s.user.clone().unwrap_or_else(|| "-".into()),
                s.jobs.to_string(),
            ]
        }),
    ))?;
    if !r.jobs.is_empty() {
        output::text("\njobs:")?;
        output::text(&output::table_in(
            2,
            &[
                Column::new("SOURCE").shrink(16),
                Column::new("LINE"),
                Column::new("NAME").shrink(12),
                Column::new("USER").shrink(8),
                Column::new("SCHEDULE"),
                Column::new("COMMAND").fill(16),
                Column::new("ALERTS TO").shrink(10).drop(1),
            ],
            r.jobs.iter().map(|i| {
                [
                    i.source.clone().unwrap_or_default(),
                    if i.line == 0 {
                        "-".into()
                    } else {
                        i.line.to_string()
                    },
                    i.name.clone(),
                    i.user.clone().unwrap_or_else(|| "-".into()),
                    i.schedule.clone(),
                    i.command.clone(),
                    i.alert_email.clone().unwrap_or_else(|| "-".into()),
                ]
            }),
        ))?;
    }
    for (title, rows) in [
        ("not imported", r.not_imported),
        ("not carried over", r.not_carried_over),
    ] {
        if rows.is_empty() {
            continue;
        }
        output::text(&format!("\n{title}:"))?;
        output::text(&output::table_in(
            2,
            &[
                Column::new("SOURCE").shrink(16),
                Column::new("LINE"),
                Column::new("WHY").fill(20),
            ],
            rows.iter().map(|s| {
                [
                    s.source.clone(),
                    s.line.map_or_else(|| "-".into(), |l| l.to_string()),
                    s.why.clone(),
                ]
            }),
        ))?;
    }
    if !r.allowlist.is_empty() {
        output::text(&format!(
            "\nthe jobs need these [executors.shell] allow entries (paste them into the list in {}):",
            config.path.display()
        ))?;
        for e in &r.allowlist {
            output::text(&format!("  {e}"))?;
        }
    }
    if !r.disable_sources.is_empty() {
        output::text(if r.dry_run || !r.problems.is_empty() {
            "\nwould comment out (--disable-sources), keeping FILE.cronmgr-bak:"
        } else {
            "\ncommented out (--disable-sources):"
        })?;
        for d in &r.disable_sources {
            let lines: Vec<String> = d.lines.iter().map(ToString::to_string).collect();
            let how = match (&d.backup, &d.error) {
                (_, Some(e)) => format!(": FAILED: {e}"),
                (Some(b), None) => format!(" (backup {b})"),
                (None, None) => String::new(),
            };
            let word = if lines.len() == 1 { "line" } else { "lines" };
            output::text(&format!("  {} {word} {}{how}", d.file, lines.join(",")))?;
        }
    }
    if !r.problems.is_empty() {
        output::text(&format!(
            "\nnothing imported: {} problem(s), listed on stderr",
            r.problems.len()
        ))?;
    } else if r.dry_run {
        output::text(&format!(
            "\ndry run, nothing changed: would import {} job(s), as this job file:\n",
            r.jobs.len()
        ))?;
        if let Some(t) = &r.toml {
            output::text(t)?;
        }
    } else {
        output::text(&format!("\nimported {} job(s)", r.jobs.len()))?;
    }
    Ok(())
}
