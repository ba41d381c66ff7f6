//! `cronmgr alerts [--active]`: alerts, newest first, with how their deliveries are going.

use super::Ctx;
use crate::output::{self, Column};
use crate::store::{Alert, DeliveryState};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only alerts whose condition is still open
    #[arg(long)]
    pub active: bool,
    /// At most this many, newest first
    #[arg(long, short = 'n', default_value_t = 50, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub limit: usize,
    /// Alerts of every system, not only --system
    #[arg(long, short = 'A')]
    pub all_systems: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let system = (!args.all_systems).then(|| ctx.system());
    let alerts = store.alerts(system, args.active, args.limit)?;
    if ctx.global.json {
        output::json(&alerts)?;
        return Ok(ExitCode::Ok);
    }
    if alerts.is_empty() {
        eprintln!("no alerts");
        return Ok(ExitCode::Ok);
    }
    output::text(&table(&alerts, 0))?;
    Ok(ExitCode::Ok)
}

/// `email:sent slack:pending(2)`: each channel and how far it got.
pub fn delivery_line(a: &Alert) -> String {
    if a.deliveries.is_empty() {
        return "- (no channel)".into();
    }
    a.deliveries
        .iter()
        .map(|d| match d.state {
            DeliveryState::Sent => format!("{}:sent", d.channel),
            _ if d.attempts > 0 => format!("{}:{}({})", d.channel, d.state, d.attempts),
            _ => format!("{}:{}", d.channel, d.state),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The alerts table, `indent` spaces in (under a heading in `status`).
pub fn table(alerts: &[Alert], indent: usize) -> String {
    let rows = alerts.iter().map(|a| {
        vec![
            a.id.to_string(),
            output::utc(a.created_at),
            a.job.clone().unwrap_or_else(|| "(host)".into()),
            a.kind.to_string(),
            match (a.state, a.resolved_at) {
                (crate::store::AlertState::Firing, None) => "firing".to_string(),
                (crate::store::AlertState::Firing, Some(_)) => "fired".to_string(),
                (s, _) => s.to_string(),
            },
            delivery_line(a),
            a.summary.clone(),
        ]
    });
    // The summary names the kind: KIND goes first on a narrow terminal.
    let columns = [
        Column::new("ID"),
        Column::new("WHEN"),
        Column::new("JOB").shrink(12),
        Column::new("KIND").drop(1),
        Column::new("STATE").drop(3),
        Column::new("DELIVERY").shrink(10).drop(2),
        Column::new("SUMMARY").fill(16),
    ];
    output::table_in(indent, &columns, rows)
}
