//! The command line: one file per subcommand, one `match` here.

use clap::{Args, Parser, Subcommand};

use crate::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "cronmgr", version, about = "One trustworthy place for a host's scheduled work")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Database path (default: /var/lib/cronmgr/cronmgr.db as root, else $XDG_DATA_HOME/cronmgr/cronmgr.db)
    #[arg(long, global = true, env = "CRONMGR_DB", value_name = "PATH")]
    pub db: Option<std::path::PathBuf>,
    /// The system (namespace) whose jobs and settings to act on
    #[arg(long, global = true, env = "CRONMGR_SYSTEM", default_value = "default")]
    pub system: String,
    /// Print JSON for scripts instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// More diagnostics on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {}
}
