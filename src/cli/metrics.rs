//! `cronmgr metrics`: Prometheus text exposition on stdout.

use super::Ctx;
use crate::metrics::{render, RunnerView};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// The pid of the runner that is up: on SQLite the one holding the lock; on a shared
/// PostgreSQL database the one that last wrote the runner state, if it is up (heartbeating)
/// and on this host (its pid means something here).
pub fn live_runner_pid(ctx: &Ctx, store: &crate::store::Store) -> crate::exit::Result<Option<u32>> {
    let db = ctx.db_path();
    if !crate::store::is_postgres(&db) {
        return Ok(crate::runner::runner_pid(&db));
    }
    let Some(state) = store.runner_state()? else {
        return Ok(None);
    };
    let host = crate::host::hostname();
    let now = ctx.now();
    Ok(store
        .runners(false)?
        .iter()
        .any(|r| r.pid == state.pid && r.host == host && r.state(now) == "up")
        .then_some(state.pid))
}

/// The runner as seen from outside: up if it holds the lock, busy as it last said.
pub fn runner_view(ctx: &Ctx, store: &crate::store::Store) -> crate::exit::Result<RunnerView> {
    let pid = live_runner_pid(ctx, store)?;
    let state = store.runner_state()?.filter(|s| Some(s.pid) == pid);
    Ok(RunnerView {
        up: pid.is_some(),
        started_at: state.as_ref().map(|s| s.started_at),
        running: store.running(None)?.len() as u64,
        queued: state.as_ref().map_or(0, |s| u64::from(s.queued)),
        capacity: state.as_ref().map_or(0, |s| u64::from(s.capacity)),
    })
}

pub fn run(_args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    if ctx.global.json {
        crate::invalid!(
            "--json: metrics prints the Prometheus text format; `status --json` and `stats --json` give the same figures as JSON"
        );
    }
    let store = ctx.store()?;
    let view = runner_view(ctx, &store)?;
    crate::output::text(&render(&store, &view)?)?;
    Ok(ExitCode::Ok)
}
