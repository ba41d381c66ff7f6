//! The command line: one file per subcommand, one `match` here.

mod add;
mod alert;
mod alerts;
mod apply;
mod audit;
mod edit;
mod exec;
mod executions;
mod export;
mod follow;
mod generate;
mod history;
mod import;
mod job_args;
mod jobs;
mod metrics;
mod migrate;
mod next;
mod run;
mod run_now;
mod runners;
mod settings;
mod show;
mod stats;
mod status;

use std::cell::OnceCell;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::store::{Actor, AuditEvent, By, Job, Store};
use crate::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "cronmgr",
    version,
    about = "One trustworthy place for a host's scheduled work",
    long_about = "cronmgr keeps a host's scheduled jobs in one SQLite database, fires them exactly when \
                  cron would, and records every execution.",
    after_help = "Exit status: 0 ok, 1 runtime error, 2 bad usage or input (nothing changed), \
                  3 the job failed, 4 the job timed out, 5 not allowed (a critical job needs an admin), \
                  130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Database file [default: /var/lib/cronmgr/cronmgr.db as root, else $XDG_DATA_HOME/cronmgr/cronmgr.db]
    #[arg(long, global = true, env = "CRONMGR_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Config file (executor allowlists)
    #[arg(long, global = true, env = "CRONMGR_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The system (namespace) whose jobs and settings to act on
    #[arg(
        long,
        global = true,
        env = "CRONMGR_SYSTEM",
        default_value = "default",
        value_name = "NAME"
    )]
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
pub enum Command {
    /// Add a job
    Add(add::Args),
    /// Change a job
    Edit(edit::Args),
    /// Remove a job and its history
    #[command(visible_alias = "remove")]
    Rm(jobs::NameArgs),
    /// Enable a job
    Enable(jobs::NameArgs),
    /// Disable a job (it stays, but does not run)
    Disable(jobs::NameArgs),
    /// List jobs
    #[command(visible_alias = "ls")]
    List(jobs::ListArgs),
    /// Show one job in full
    Show(show::Args),
    /// Show a system's settings, or get or set one
    Settings(settings::Args),
    /// The runner: fire due jobs until stopped (a systemd Type=notify service)
    Run(run::Args),
    /// Run a job now in the foreground, streaming its output
    RunNow(run_now::Args),
    /// Print an execution's output (--follow while it runs)
    Logs(executions::LogsArgs),
    /// Stop a running execution and everything it started
    Kill(executions::KillArgs),
    /// Delete history beyond the system's keep_executions and cleanup_days
    Prune(executions::PruneArgs),
    /// Past executions, newest first
    History(history::Args),
    /// Print the next fire times of a schedule
    Next(next::NextArgs),
    /// Check a schedule: exit 0 if valid, 2 with the error otherwise
    Validate(next::ValidateArgs),
    /// Print the man page or shell completions
    Generate(generate::Args),
    /// Run a built-in executor's work (the runner's child process)
    #[command(name = "__exec", hide = true)]
    Exec(exec::Args),
    /// Create and update jobs from job files (jobs.d/*.toml)
    Apply(apply::Args),
    /// Print jobs as a job file that `apply` reads back
    Export(export::Args),
    /// Turn a crontab into jobs
    ImportCrontab(import::Args),
    /// The dashboard: jobs, the runner, next runs, last executions, health, active alerts
    Status(status::Args),
    /// Per-job statistics: runs, success rate, durations, memory, CPU, failure streak
    Stats(stats::Args),
    /// Prometheus metrics (text exposition) on stdout
    Metrics(metrics::Args),
    /// Alerts and how their deliveries are going
    Alerts(alerts::Args),
    /// Alert channels: `alert test email|slack|webhook`
    Alert(alert::Args),
    /// The audit log: who changed or triggered what, newest first
    Audit(audit::Args),
    /// The runners sharing this database: host, pid, version, heartbeat, running executions
    Runners(runners::Args),
    /// Copy the whole database into another: an SQLite file into PostgreSQL
    Migrate(migrate::Args),
}

/// What every command needs: the global flags, the config, the database, the clock.
pub struct Ctx {
    pub global: Global,
    config: OnceCell<Config>,
    actor: OnceCell<Actor>,
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        Ctx {
            global,
            config: OnceCell::new(),
            actor: OnceCell::new(),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.global
            .db
            .clone()
            .unwrap_or_else(crate::config::default_db_path)
    }

    /// Open (creating on first use) the database.
    pub fn store(&self) -> anyhow::Result<Store> {
        let path = self.db_path();
        Store::open(&path)
            .with_context(|| format!("opening database {}", crate::store::display_db(&path)))
    }

    pub fn config(&self) -> anyhow::Result<&Config> {
        if let Some(c) = self.config.get() {
            return Ok(c);
        }
        let c = Config::load(self.global.config.as_deref())?;
        Ok(self.config.get_or_init(|| c))
    }

    pub fn system(&self) -> &str {
        &self.global.system
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// Who runs this command, for the audit log.
    pub fn actor(&self) -> &Actor {
        self.actor.get_or_init(crate::access::current_actor)
    }

    /// The audit identity of a write made by this command.
    pub fn by<'a>(&'a self, action: &'a str) -> By<'a> {
        By {
            actor: self.actor(),
            action,
        }
    }

    /// Record an event of this command in the audit log (run-now, kill, prune).
    pub fn audit(
        &self,
        store: &Store,
        action: &str,
        target: Option<&str>,
        reason: Option<String>,
    ) -> anyhow::Result<()> {
        store.record_audit(
            self.by(action),
            &AuditEvent {
                system: self.system(),
                target,
                refused: false,
                reason,
                diff: serde_json::Value::Object(Default::default()),
            },
            self.now(),
        )?;
        Ok(())
    }

    /// Refuse (exit 5) a non-admin who would touch a critical job, recording the attempt.
    /// `jobs` are the versions involved (before and after a change): any critical one counts.
    pub fn require_admin(
        &self,
        store: &Store,
        action: &str,
        target: &str,
        jobs: &[&Job],
    ) -> anyhow::Result<()> {
        if !jobs.iter().any(|j| j.is_critical) {
            return Ok(());
        }
        let Err(why) = crate::access::check_admin(self.config()?) else {
            return Ok(());
        };
        let message = format!("{target} is a critical job: {why}");
        store.record_audit(
            self.by(action),
            &AuditEvent {
                system: self.system(),
                target: Some(target),
                refused: true,
                reason: Some(message.clone()),
                diff: serde_json::Value::Object(Default::default()),
            },
            self.now(),
        )?;
        Err(crate::exit::Forbidden(format!("refused: {action} {message}")).into())
    }
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    validate_system(&cli.global.system)?;
    let ctx = Ctx::new(cli.global);
    match cli.command {
        Command::Add(args) => add::run(args, &ctx),
        Command::Edit(args) => edit::run(args, &ctx),
        Command::Rm(args) => jobs::rm(args, &ctx),
        Command::Enable(args) => jobs::set_active(args, true, &ctx),
        Command::Disable(args) => jobs::set_active(args, false, &ctx),
        Command::List(args) => jobs::list(args, &ctx),
        Command::Show(args) => show::run(args, &ctx),
        Command::Settings(args) => settings::run(args, &ctx),
        Command::History(args) => history::run(args, &ctx),
        Command::Run(args) => run::run(args, &ctx),
        Command::RunNow(args) => run_now::run(args, &ctx),
        Command::Logs(args) => executions::logs(args, &ctx),
        Command::Kill(args) => executions::kill(args, &ctx),
        Command::Prune(args) => executions::prune(args, &ctx),
        Command::Next(args) => next::next(args, &ctx),
        Command::Validate(args) => next::validate(args, &ctx),
        Command::Generate(args) => generate::run(args, &ctx),
        Command::Exec(args) => exec::run(args, &ctx),
        Command::Apply(args) => apply::run(args, &ctx),
        Command::Export(args) => export::run(args, &ctx),
        Command::ImportCrontab(args) => import::run(args, &ctx),
        Command::Status(args) => status::run(args, &ctx),
        Command::Stats(args) => stats::run(args, &ctx),
        Command::Metrics(args) => metrics::run(args, &ctx),
        Command::Alerts(args) => alerts::run(args, &ctx),
        Command::Alert(args) => alert::run(args, &ctx),
        Command::Audit(args) => audit::run(args, &ctx),
        Command::Runners(args) => runners::run(args, &ctx),
        Command::Migrate(args) => migrate::run(args, &ctx),
    }
}

fn validate_system(system: &str) -> anyhow::Result<()> {
    if system.is_empty()
        || system.len() > 64
        || !system
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        crate::invalid!(
            "invalid system name {system:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        );
    }
    Ok(())
}
