//! The `cronmgr` binary: parse the command line, set up logging, run, map the result to an exit code.

use std::process::ExitCode as ProcessExit;

use clap::Parser;

fn main() -> ProcessExit {
    let cli = cronmgr::cli::Cli::parse();
    cronmgr::logging::init(cli.global.verbose, cli.global.quiet);
    match cronmgr::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            if cronmgr::exit::is_broken_pipe(&err) {
                return ProcessExit::SUCCESS;
            }
            eprintln!("cronmgr: error: {err:#}");
            cronmgr::exit::classify(&err).into()
        }
    }
}
