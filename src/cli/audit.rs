//! `cronmgr audit [--job NAME] [--since DURATION|INSTANT] [--limit N]`: who changed or triggered
//! what, newest first.

use super::history::parse_since;
use super::Ctx;
use crate::output::{self, Column};
use crate::store::{AuditEntry, AuditFilter};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Rows are kept for the system's audit_retention_days (default 365; 0 keeps them forever)."
)]
pub struct Args {
    /// Only rows about this job (or setting, for `settings`)
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Only rows since this long ago (30m, 2h, 7d) or this instant (RFC 3339)
    #[arg(long, value_name = "DURATION|INSTANT")]
    pub since: Option<String>,
    /// At most this many, newest first
    #[arg(long, short = 'n', default_value_t = 50, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub limit: usize,
}

/// `priority 5 → 2, timeout - → 30m`: the diff on one line.
fn changes(e: &AuditEntry) -> String {
    let Some(map) = e.diff.as_object() else {
        return String::new();
    };
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    map.iter()
        .map(|(k, v)| format!("{k} {} → {}", show(&v["before"]), show(&v["after"])))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, ctx.now()))
        .transpose()?;
    let store = ctx.store()?;
    let rows = store.audit(&AuditFilter {
        system: Some(ctx.system().to_string()),
        target: args.job.clone(),
        since,
        limit: Some(args.limit),
    })?;
    if ctx.global.json {
        output::json(&rows)?;
        return Ok(ExitCode::Ok);
    }
    if rows.is_empty() {
        eprintln!("no audit rows");
        return Ok(ExitCode::Ok);
    }
    let table = output::table(
        &[
            Column::new("WHEN"),
            Column::new("USER").shrink(8),
            Column::new("ACTION"),
            Column::new("TARGET").shrink(12),
            Column::new("OUTCOME"),
            Column::new("CHANGES").fill(16),
        ],
        rows.iter().map(|e| {
            let mut changes = changes(e);
            if let Some(r) = &e.reason {
                if !changes.is_empty() {
                    changes.push_str("; ");
                }
                changes.push_str(r);
            }
            [
                output::utc(e.at),
                match &e.sudo_user {
                    Some(s) => format!("{} (sudo from {s})", e.user),
                    None => e.user.clone(),
                },
                e.action.clone(),
                e.target.clone().unwrap_or_else(|| "-".into()),
                e.outcome.clone(),
                changes,
            ]
        }),
    );
    output::text(&table)?;
    Ok(ExitCode::Ok)
}
