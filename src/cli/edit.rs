//! `cronmgr edit NAME [flags]`: change the given fields, keep the rest.

use super::job_args::{self, JobArgs};
use super::Ctx;
use crate::invalid;
use crate::output;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Optional durations (--timeout, --max-runtime, --starting-deadline) take `none` to go back to the default."
)]
pub struct Args {
    /// The job to change
    pub name: String,
    /// Give the job a new name
    #[arg(long, value_name = "NEW_NAME")]
    pub rename: Option<String>,
    #[command(flatten)]
    pub job: JobArgs,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if args.job.is_empty() && args.rename.is_none() {
        invalid!("nothing to change: give at least one flag (see cronmgr edit --help)");
    }
    let store = ctx.store()?;
    let before = store.job(ctx.system(), &args.name)?;
    let mut job = before.clone();
    if let Some(new_name) = &args.rename {
        job.name = new_name.clone();
    }
    args.job.apply(&mut job, true)?;
    let settings = store.settings(ctx.system())?;
    let now = ctx.now();
    job.next_run_at = job_args::validate(&job, &settings, ctx.config()?, now)?;
    let job = store.update_job(&job, now)?;
    crate::runner::nudge(&ctx.db_path());
    if ctx.global.json {
        output::json(&job)?;
    } else {
        let tz = job_args::effective_tz(&job, &settings)?;
        output::text(&format!(
            "updated {}, next run {}",
            job.name,
            output::opt_local(job.next_run_at, tz)
        ))?;
    }
    Ok(ExitCode::Ok)
}
