//! `cronmgr __exec NAME` (internal, parsed apart from the commands people use): the child
//! process of a built-in executor.
//!
//! The runner spawns this binary with the job's params in `CRONMGR_EXEC_PARAMS`, the config file
//! in `CRONMGR_CONFIG` and the database in `CRONMGR_DB`. It checks the params again against the
//! config in force, does the work, prints its report on stdout (the execution's output) and exits
//! 0, or 1 with the reason on stderr.

use std::io::Write;

use crate::exit::Context as _;
use serde_json::Value;

use super::Ctx;
use crate::executor::{self, RunContext, PARAMS_ENV};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The built-in executor
    pub name: String,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let text = std::env::var(PARAMS_ENV)
        .ok()
        .with_context(|| format!("{PARAMS_ENV} is not set: this command is run by cronmgr"))?;
    let params = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => map,
        _ => crate::fail!("{PARAMS_ENV} is not a JSON object"),
    };
    let config = ctx.config()?;
    let run_ctx = RunContext { db: ctx.db_path() };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = executor::run_builtin(&args.name, &params, config, &run_ctx, &mut out);
    let _ = out.flush();
    match result {
        Ok(()) => Ok(ExitCode::Ok),
        Err(e) => {
            eprintln!("{}: {e}", args.name);
            Ok(ExitCode::Error)
        }
    }
}
