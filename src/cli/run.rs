//! `cronmgr run [--once] [--max-concurrent N]`: the runner.

use super::Ctx;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fire what is due now (and catch-up per policy), wait for it, and exit: non-zero if any failed
    #[arg(long)]
    pub once: bool,
    /// At most this many executions at once, overriding every system's max_concurrent_jobs
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000), value_name = "N")]
    pub max_concurrent: Option<u64>,
    /// Run even if another runner holds the lock on this database (slots still run only once)
    #[arg(long)]
    pub force: bool,
    /// Rewrite this node_exporter textfile (Prometheus metrics) after every execution
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let summary = crate::runner::serve(
        ctx.db_path(),
        ctx.global.config.clone(),
        args.once,
        args.max_concurrent.map(|n| n as usize),
        args.force,
        args.metrics_file,
    )?;
    if args.once {
        if ctx.global.json {
            crate::output::json(&serde_json::json!({
                "started": summary.started,
                "succeeded": summary.succeeded,
                "failed": summary.failed,
                "skipped": summary.skipped,
                "missed": summary.missed,
            }))?;
        } else {
            eprintln!(
                "ran {} (succeeded {}, failed {}), skipped {}, missed {}",
                summary.started, summary.succeeded, summary.failed, summary.skipped, summary.missed
            );
        }
        if summary.failed > 0 {
            return Ok(ExitCode::JobFailed);
        }
    }
    Ok(ExitCode::Ok)
}
