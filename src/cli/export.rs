//! `cronmgr export [NAME...]`: the system's jobs as a job file that `apply` reads back unchanged.

use super::Ctx;
use crate::jobfile::{self, JobSpec};
use crate::output;
use crate::store::{Job, JobFilter, StoreError};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  cronmgr export > /etc/cronmgr/jobs.d/app.toml && cronmgr apply   # all unchanged"
)]
pub struct Args {
    /// Only these jobs [default: every job of the system]
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

/// The job file for these jobs, with a header saying where it came from.
pub(super) fn render(jobs: &[Job], system: &str) -> crate::exit::Result<String> {
    let specs = jobs
        .iter()
        .map(|job| {
            JobSpec::from_job(job).map_err(|e| {
                crate::exit::Failure::runtime(format!("cannot export job {:?}: {e}", job.name))
            })
        })
        .collect::<crate::exit::Result<Vec<_>>>()?;
    let body = jobfile::render(specs).map_err(|e| anyhow::anyhow!("rendering TOML: {e}"))?;
    Ok(format!(
        "# cronmgr jobs of system {system:?}; fields at their default are left out.\n\
         # Apply with: cronmgr --system {system} apply FILE\n\n{body}"
    ))
}

/// `export --json`: the job file's content as JSON (`job`: its `[[job]]` tables).
#[derive(serde::Serialize)]
struct Exported {
    job: Vec<JobSpec>,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let store = ctx.store()?;
    let jobs = if args.names.is_empty() {
        store.jobs(&JobFilter {
            system: Some(ctx.system().to_string()),
            ..Default::default()
        })?
    } else {
        args.names
            .iter()
            .map(|n| store.job(ctx.system(), n))
            .collect::<Result<Vec<_>, StoreError>>()?
    };
    if ctx.global.json {
        let specs = jobs
            .iter()
            .map(JobSpec::from_job)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("cannot export: {e}"))?;
        output::json(&Exported { job: specs })?;
        return Ok(ExitCode::Ok);
    }
    output::text(&render(&jobs, ctx.system())?)?;
    Ok(ExitCode::Ok)
}
