//! `cronmgr settings show|get KEY|set KEY VALUE`

use clap::Subcommand;
use serde::Serialize;

use super::job_args;
use super::Ctx;
use crate::invalid;
use crate::output;
use crate::schedule::Schedule;
use crate::store::{JobFilter, SETTINGS_KEYS};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Every setting of the system (the default action)
    Show,
    /// One setting's value
    Get { key: String },
    /// Change one setting
    Set { key: String, value: String },
}

/// `settings get KEY --json`.
#[derive(Serialize)]
struct Setting<'a> {
    key: &'a str,
    value: &'a str,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let mut settings = store.settings(ctx.system())?;
    match args.action.unwrap_or(Action::Show) {
        Action::Show => {
            if ctx.global.json {
                output::json(&settings.redacted())?;
            } else {
                let rows: Vec<(&str, String)> = std::iter::once("system")
                    .chain(SETTINGS_KEYS.iter().copied())
                    .map(|k| (k, settings.get_shown(k).unwrap_or_default()))
                    .collect();
                output::text(&output::pairs(&rows))?;
            }
        }
        Action::Get { key } => {
            let Some(value) = settings.get_shown(&key) else {
                invalid!(
                    "unknown setting {key:?} (known: {})",
                    SETTINGS_KEYS.join(", ")
                );
            };
            if ctx.global.json {
                output::json(&Setting {
                    key: &key,
                    value: &value,
                })?;
            } else {
                output::text(&value)?;
            }
        }
        Action::Set { key, value } => {
            let old_tz = settings.timezone.clone();
            settings
                .set(&key, &value)
                .map_err(crate::exit::Failure::usage)?;
            ctx.require_admin_for_system(&store, "settings")?;
            let now = ctx.now();
            // Jobs that follow the system's zone get new next runs in the same transaction.
            let mut next_runs = Vec::new();
            if settings.timezone != old_tz {
                let jobs = store.jobs(&JobFilter {
                    system: Some(ctx.system().to_string()),
                    ..Default::default()
                })?;
                for job in jobs.iter().filter(|j| j.timezone.is_empty()) {
                    let Ok(schedule) = Schedule::parse_for(&job.schedule, &job.system, &job.name)
                    else {
                        continue;
                    };
                    let tz = job_args::effective_tz(job, &settings)?;
                    next_runs.push((job.id, job_args::next_run(job, &schedule, tz, now)));
                }
            }
            store.put_settings(&settings, &next_runs, now, ctx.by("settings"))?;
            crate::runner::nudge(&ctx.db_path());
            if ctx.global.json {
                output::json(&settings.redacted())?;
            } else {
                output::text(&format!(
                    "{key} = {}{}",
                    settings.get_shown(&key).unwrap_or_default(),
                    if next_runs.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} jobs rescheduled)", next_runs.len())
                    }
                ))?;
            }
        }
    }
    Ok(ExitCode::Ok)
}
