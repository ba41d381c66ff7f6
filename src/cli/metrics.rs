//! `cronmgr metrics`: Prometheus text exposition on stdout.

use super::Ctx;
use crate::metrics::{render, RunnerView};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// The runner as seen from outside: up if it holds the lock, busy as it last said.
pub fn runner_view(ctx: &Ctx, store: &crate::store::Store) -> anyhow::Result<RunnerView> {
    let pid = crate::runner::runner_pid(&ctx.db_path());
    let state = store.runner_state()?.filter(|s| Some(s.pid) == pid);
    Ok(RunnerView {
        up: pid.is_some(),
        started_at: state.as_ref().map(|s| s.started_at),
        running: store.running(None)?.len() as u64,
        queued: state.as_ref().map_or(0, |s| u64::from(s.queued)),
        capacity: state.as_ref().map_or(0, |s| u64::from(s.capacity)),
    })
}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = ctx.store()?;
    let view = runner_view(ctx, &store)?;
    crate::output::text(&render(&store, &view)?)?;
    Ok(ExitCode::Ok)
}
