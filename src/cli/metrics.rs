//! `cronmgr metrics`: Prometheus text exposition on stdout.

use super::Ctx;
use crate::metrics::{render, FleetMember, RunnerView};
use crate::store::Fleet;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// The pid of this host's runner, if one is up: on SQLite the one holding the lock; on a shared
/// PostgreSQL database the newest runner of the fleet that is up (heartbeating) and on this
/// host (its pid means something here) — whichever runner last wrote the shared runner state.
pub fn live_runner_pid(ctx: &Ctx, store: &crate::store::Store) -> crate::exit::Result<Option<u32>> {
    let db = ctx.db_path();
    if !crate::store::is_postgres(&db) {
        return Ok(crate::runner::runner_pid(&db));
    }
    let fleet = store.fleet(ctx.now())?;
    Ok(local_runner(&fleet).map(|r| r.pid))
}

/// The newest runner of the fleet that is up on this host.
pub fn local_runner(fleet: &Fleet) -> Option<&crate::store::Runner> {
    let host = crate::host::hostname();
    fleet.up().find(|r| r.host == host)
}

/// The fleet on a shared PostgreSQL database, whatever host asks; None on SQLite.
pub fn fleet(ctx: &Ctx, store: &crate::store::Store) -> crate::exit::Result<Option<Fleet>> {
    if !crate::store::is_postgres(&ctx.db_path()) {
        return Ok(None);
    }
    Ok(Some(store.fleet(ctx.now())?))
}

/// The runner as seen from outside: up if it holds the lock (SQLite) or if any runner of the
/// fleet is up (PostgreSQL), busy as it last said; the fleet's members on PostgreSQL.
pub fn runner_view(ctx: &Ctx, store: &crate::store::Store) -> crate::exit::Result<RunnerView> {
    let pid = live_runner_pid(ctx, store)?;
    let fleet = fleet(ctx, store)?;
    let state = store.runner_state()?.filter(|s| Some(s.pid) == pid);
    let members = fleet.as_ref().map(|f| {
        f.runners
            .iter()
            .map(|r| FleetMember {
                id: r.id,
                host: r.host.clone(),
                pid: r.pid,
                up: r.state(f.now) == "up",
                heartbeat_age_seconds: f.heartbeat_age(r),
                running: r.running,
                capacity: r.max_concurrent,
            })
            .collect::<Vec<_>>()
    });
    Ok(RunnerView {
        up: pid.is_some() || members.iter().flatten().any(|m| m.up),
        started_at: state.as_ref().map(|s| s.started_at),
        running: store.running(None)?.len() as u64,
        queued: state.as_ref().map_or(0, |s| u64::from(s.queued)),
        capacity: state.as_ref().map_or(0, |s| u64::from(s.capacity)),
        fleet: members,
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
