//! `cronmgr migrate --to URL|PATH`: copy the whole database (`--db`) into another, normally an
//! SQLite file into PostgreSQL, then print the row counts of both.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use crate::exit::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Ctx;
use crate::output;
use crate::store::copy::{self, CopyError, Step, TableCount};
use crate::store::{display_db, is_postgres, Store};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Stop the runner first: rows it writes after the copy starts stay behind. \
    The target must hold no rows (a fresh PostgreSQL database or schema, or a new file); its \
    schema is created. Everything is copied in one transaction, ids kept, or nothing is. \
    Example: cronmgr migrate --to postgres://cronmgr:secret@db.example.com/cronmgr"
)]
pub struct Args {
    /// The database to copy into: a postgres:// URL or an SQLite file
    #[arg(long, value_name = "URL|PATH")]
    pub to: PathBuf,
}

#[derive(Serialize)]
struct Report<'a> {
    source: String,
    target: String,
    tables: &'a [TableCount],
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let from = ctx.db_path();
    let to = args.to;
    if from == to {
        crate::invalid!("--to names the database being copied ({})", display_db(&to));
    }
    if !is_postgres(&from) && !from.exists() {
        crate::invalid!("no database at {} (choose one with --db)", from.display());
    }
    let source = ctx.store()?;
    let target = Store::open(&to)
        .with_context(|| format!("opening the target database {}", display_db(&to)))?;
    let occupied = copy::occupied(&target)?;
    if !occupied.is_empty() {
        return Err(refused(CopyError::NotEmpty(occupied), &to));
    }

    let bar = progress(ctx);
    let start = Instant::now();
    let copied = copy::copy(&source, &target, &mut |step| match step {
        Step::Counted(n) => bar.set_length(n),
        Step::Table(t) => bar.set_message(t.to_string()),
        Step::Rows(n) => bar.inc(n),
    });
    bar.finish_and_clear();
    let counts = match copied {
        Ok(c) => c,
        Err(e @ CopyError::NotEmpty(_)) => return Err(refused(e, &to)),
        Err(e) => {
            return Err(
                crate::exit::Failure::from(anyhow::Error::new(e)).context(format!(
                    "copying into {}; it was left as it was",
                    display_db(&to)
                )),
            )
        }
    };
    let elapsed = start.elapsed();

    // Count again, committed, through a new connection.
    let after = copy::counts(&target.reopen()?)?;
    let counts: Vec<TableCount> = counts
        .into_iter()
        .zip(after)
        .map(|(c, (_, target))| TableCount { target, ..c })
        .collect();
    let report = Report {
        source: display_db(&from),
        target: display_db(&to),
        tables: &counts,
    };
    if ctx.global.json {
        output::json(&report)?;
    } else {
        let table = output::table(
            &["TABLE", "SOURCE", "TARGET"],
            counts.iter().map(|c| {
                [
                    c.table.to_string(),
                    c.source.to_string(),
                    c.target.to_string(),
                ]
            }),
        );
        output::text(&table)?;
    }
    let differ: Vec<&str> = counts
        .iter()
        .filter(|c| c.source != c.target)
        .map(|c| c.table)
        .collect();
    if !differ.is_empty() {
        crate::fail!(
            "after the copy, {} of {} differ from the source (was something writing to it?)",
            differ.join(", "),
            report.target
        );
    }
    if !ctx.global.quiet {
        let rows: u64 = counts.iter().map(|c| c.source).sum();
        eprintln!(
            "copied {rows} rows from {} to {} in {:.1}s; point --db (or CRONMGR_DB) at the target",
            report.source,
            report.target,
            elapsed.as_secs_f64()
        );
    }
    Ok(ExitCode::Ok)
}

/// A refusal: exit 2, saying which database.
fn refused(e: CopyError, to: &std::path::Path) -> crate::exit::Failure {
    crate::exit::Failure::usage(format!("refusing to migrate into {}: {e}", display_db(to)))
}

/// Rows copied, on stderr when it is a terminal, unless -q or --json.
fn progress(ctx: &Ctx) -> ProgressBar {
    if ctx.global.quiet || ctx.global.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} rows, {per_sec}, eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
