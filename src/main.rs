//! The `cronmgr` binary: parse the command line, set up logging, run, map the result to an exit code.

use std::process::ExitCode as ProcessExit;

fn main() -> ProcessExit {
    let line = cronmgr::cli::CommandLine::from_env();
    let global = line.global();
    cronmgr::logging::init(global.verbose, global.quiet);
    match cronmgr::run(line) {
        Ok(code) => code.into(),
        Err(err) => {
            if err.is_broken_pipe() {
                return ProcessExit::SUCCESS;
            }
            eprintln!("cronmgr: error: {err}");
            err.code().into()
        }
    }
}
