//! `cronmgr stats [NAME] [--since 7d]`: per job runs, success rate, durations, resources, streak.

use std::time::Duration;

use super::history::parse_since;
use super::Ctx;
use crate::output::{self, Column};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job
    pub name: Option<String>,
    /// Executions started since this long ago (7d, 24h) or this instant (RFC 3339)
    #[arg(long, default_value = "7d", value_name = "DURATION|INSTANT")]
    pub since: String,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let since = parse_since(&args.since, ctx.now())?;
    let store = ctx.store()?;
    if let Some(name) = &args.name {
        store.job(ctx.system(), name)?;
    }
    let stats = store.job_stats(ctx.system(), args.name.as_deref(), since)?;
    if ctx.global.json {
        output::json(&stats)?;
        return Ok(ExitCode::Ok);
    }
    if stats.is_empty() {
        eprintln!("no jobs");
        return Ok(ExitCode::Ok);
    }
    let dur = |ms: Option<f64>| {
        ms.map(|v| crate::duration::Human(Duration::from_millis(v.max(0.0) as u64)).to_string())
            .unwrap_or_else(|| "-".into())
    };
    let rows = stats.iter().map(|s| {
        vec![
            s.job.clone(),
            s.runs.to_string(),
            s.success_rate
                .map(|r| format!("{:.1}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
            dur(s.mean_duration_ms),
            dur(s.p95_duration_ms.map(|v| v as f64)),
            s.mean_memory_mb
                .map(|m| format!("{m:.1}M"))
                .unwrap_or_else(|| "-".into()),
            s.mean_cpu_percent
                .map(|c| format!("{c:.0}%"))
                .unwrap_or_else(|| "-".into()),
            s.failure_streak.to_string(),
            output::opt(s.last_success_at.map(output::utc)),
        ]
    });
    output::text(&output::table(
        &[
            Column::new("JOB").fill(12),
            Column::new("RUNS"),
            Column::new("SUCCESS"),
            Column::new("MEAN"),
            Column::new("P95").drop(3),
            Column::new("MEM").drop(1),
            Column::new("CPU").drop(2),
            Column::new("STREAK").drop(4),
            Column::new("LAST SUCCESS").drop(5),
        ],
        rows,
    ))?;
    Ok(ExitCode::Ok)
}
