//! `cronmgr runners [--all]`: the runners sharing this database, and how each is doing.

use serde::Serialize;

use super::Ctx;
use crate::output::{self, Column};
use crate::store::Runner;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "STATE is up, silent (no heartbeat within its lease: another runner will declare it lost), \
stopped or lost. On SQLite there is one runner at a time; on PostgreSQL, one row per `cronmgr run`."
)]
pub struct Args {
    /// Also runners that stopped or were declared lost
    #[arg(long)]
    pub all: bool,
}

/// A runner as `runners --json` prints it: its row and its state.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    runner: &'a Runner,
    state: &'static str,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let runners = store.runners(args.all)?;
    let now = ctx.now();
    if ctx.global.json {
        let rows: Vec<Listed> = runners
            .iter()
            .map(|runner| Listed {
                runner,
                state: runner.state(now),
            })
            .collect();
        output::json(&rows)?;
        return Ok(ExitCode::Ok);
    }
    if runners.is_empty() {
        eprintln!(
            "no runners{}",
            if args.all {
                ""
            } else {
                " up (--all for stopped ones)"
            }
        );
        return Ok(ExitCode::Ok);
    }
    let table = output::table(
        &[
            Column::new("ID"),
            Column::new("HOST").fill(8),
            Column::new("PID"),
            Column::new("VERSION").drop(2),
            Column::new("LABELS").shrink(6).drop(1),
            Column::new("STATE"),
            Column::new("UP SINCE").drop(3),
            Column::new("LAST HEARTBEAT"),
            Column::new("RUNNING"),
        ],
        runners.iter().map(|r| {
            [
                r.id.to_string(),
                r.host.clone(),
                r.pid.to_string(),
                r.version.clone(),
                if r.labels.is_empty() {
                    "-".into()
                } else {
                    r.labels.join(",")
                },
                r.state(now).to_string(),
                output::utc(r.started_at),
                format!(
                    "{} ({}s ago)",
                    output::utc(r.heartbeat_at),
                    (now - r.heartbeat_at).num_seconds().max(0)
                ),
                r.running.to_string(),
            ]
        }),
    );
    output::text(&table)?;
    Ok(ExitCode::Ok)
}
