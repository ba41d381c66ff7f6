//! The command line: one file per subcommand, one `match` here.

mod add;
mod alert;
mod alerts;
mod apply;
mod audit;
mod chains;
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
mod web;

use std::cell::OnceCell;
use std::path::PathBuf;

use crate::exit::Context as _;
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
    /// Create and update jobs from job files (jobs.d/*.toml)
    Apply(apply::Args),
    /// Print jobs as a job file that `apply` reads back
    Export(export::Args),
    /// Turn a crontab into jobs
    ImportCrontab(import::Args),
    /// The dashboard: jobs, the runner, next runs, last executions, chains, health, active alerts
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
    /// The web dashboard: jobs, charts, live output, the editor (HTTP on loopback or a unix socket)
    Web(web::Args),
}

/// What every command needs: the global flags, the config, the database, the clock.
pub struct Ctx {
    pub global: Global,
    config: OnceCell<Config>,
    actor: OnceCell<Actor>,
    /// Whether this command may create the database: only those that add to it do.
    creates_db: bool,
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        Ctx {
            global,
            config: OnceCell::new(),
            actor: OnceCell::new(),
            creates_db: true,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.global
            .db
            .clone()
            .unwrap_or_else(crate::config::default_db_path)
    }

    /// Open the database: created on first use by a command that adds to it; for any other
    /// command, a missing one is an error ([`StoreError::Missing`](crate::store::StoreError),
    /// exit status 1) and nothing is created.
    pub fn store(&self) -> crate::exit::Result<Store> {
        let path = self.db_path();
        let opened = match self.creates_db {
            true => Store::open(&path),
            false => Store::open_existing(&path),
        };
        opened.with_context(|| format!("opening database {}", crate::store::display_db(&path)))
    }

    pub fn config(&self) -> crate::exit::Result<&Config> {
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
    ) -> crate::exit::Result<()> {
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
    /// `jobs` are the versions involved, the stored one first (before and after a change): any
    /// critical one counts.
    pub fn require_admin(
        &self,
        store: &Store,
        action: &str,
        target: &str,
        jobs: &[&Job],
    ) -> crate::exit::Result<()> {
        let Some(first) = jobs.first() else {
            return Ok(());
        };
        let what = if first.is_critical {
            format!("{target} is a critical job")
        } else if jobs.iter().any(|j| j.is_critical) {
            format!("making {target} critical needs an admin")
        } else {
            return Ok(());
        };
        self.refuse_unless_admin(store, action, target, what)
    }

    /// Refuse (exit 5) a non-admin who would change the settings of a system that holds a
    /// critical job: its defaults (timeout, memory limit, retention, `is_enabled`) reach that job
    /// as surely as an edit of the job itself.
    pub fn require_admin_for_system(&self, store: &Store, action: &str) -> crate::exit::Result<()> {
        let critical: Vec<String> = store
            .jobs(&crate::store::JobFilter {
                system: Some(self.system().to_string()),
                ..Default::default()
            })?
            .into_iter()
            .filter(|j| j.is_critical)
            .map(|j| j.name)
            .collect();
        if critical.is_empty() {
            return Ok(());
        }
        let shown = match critical.len() {
            1 => critical[0].clone(),
            n => format!("{} and {} more", critical[0], n - 1),
        };
        let what = format!(
            "system {} holds critical jobs ({shown}), so its settings are theirs",
            self.system()
        );
        self.refuse_unless_admin(store, action, self.system(), what)
    }

    /// Ok for an admin; otherwise record the refused attempt in the audit log and fail (exit 5)
    /// with `what` and why this user is no admin.
    fn refuse_unless_admin(
        &self,
        store: &Store,
        action: &str,
        target: &str,
        what: String,
    ) -> crate::exit::Result<()> {
        let Err(why) = crate::access::check_admin(self.config()?) else {
            return Ok(());
        };
        let message = format!("{what}: {why}");
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
        Err(crate::exit::Failure::forbidden(format!(
            "refused: {action} {message}"
        )))
    }
}

/// `cronmgr __exec NAME`: the child process of a built-in executor, started by the runner. It is
/// parsed apart from [`Cli`], so no help text, completion or man page offers it to people.
#[derive(Debug, Parser)]
#[command(name = "cronmgr __exec")]
pub struct ExecCli {
    #[command(flatten)]
    pub global: Global,
    #[command(flatten)]
    pub args: exec::Args,
}

/// A parsed command line: a person's command, or the runner's internal child.
#[derive(Debug)]
pub enum CommandLine {
    Command(Box<Cli>),
    Exec(ExecCli),
}

impl CommandLine {
    /// Parse this process's arguments (exits with clap's message on bad usage).
    pub fn from_env() -> CommandLine {
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if args.get(1).is_some_and(|a| a == crate::executor::EXEC_ARG) {
            args.remove(1);
            return CommandLine::Exec(ExecCli::parse_from(args));
        }
        CommandLine::Command(Box::new(Cli::parse_from(args)))
    }

    pub fn global(&self) -> &Global {
        match self {
            CommandLine::Command(cli) => &cli.global,
            CommandLine::Exec(exec) => &exec.global,
        }
    }
}

pub fn dispatch(line: CommandLine) -> crate::exit::Result<ExitCode> {
    let cli = match line {
        CommandLine::Command(cli) => *cli,
        CommandLine::Exec(exec) => return exec::run(exec.args, &Ctx::new(exec.global)),
    };
    validate_system(&cli.global.system)?;
    let mut global = cli.global;
    if global.db.is_none() && uses_database(&cli.command) {
        global.db = Some(default_db_path()?);
    }
    let mut ctx = Ctx::new(global);
    ctx.creates_db = creates_database(&cli.command);
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
        Command::Web(args) => web::run(args, &ctx),
    }
}

/// Commands that add to the database, and so create it when it is missing. Every other
/// command on a missing database says there is none (exit status 1) and creates nothing.
fn creates_database(command: &Command) -> bool {
    match command {
        Command::Add(_) | Command::Run(_) => true,
        Command::Settings(a) => matches!(a.action, Some(settings::Action::Set { .. })),
        Command::Apply(a) => !a.dry_run && !a.check,
        Command::ImportCrontab(a) => !a.dry_run,
        _ => false,
    }
}

/// Commands that never open the database: they need no default path.
fn uses_database(command: &Command) -> bool {
    !matches!(
        command,
        Command::Validate(_) | Command::Generate(_) | Command::Next(_)
    )
}

/// The database when none is named: root's system-wide one; for anyone else, under the XDG data
/// folder (`$XDG_DATA_HOME`, else `$HOME/.local/share`, else the home folder the user database
/// gives), never the current folder.
fn default_db_path() -> crate::exit::Result<PathBuf> {
    if crate::config::is_root() {
        return Ok(crate::config::default_db_path());
    }
    let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let uid = crate::host::euid();
    let passwd_home = || crate::access::user_by_uid(uid).map(|u| PathBuf::from(u.home));
    match user_data_dir(var("XDG_DATA_HOME"), var("HOME"), passwd_home) {
        Some(dir) => Ok(dir.join("cronmgr").join("cronmgr.db")),
        None => crate::invalid!(
            "no folder for the default database: XDG_DATA_HOME and HOME are unset or not absolute, \
             and uid {uid} has no absolute home folder in the user database; name one with --db PATH \
             (or CRONMGR_DB)"
        ),
    }
}

/// The XDG base directory spec's data folder: relative values are ignored.
fn user_data_dir(
    xdg_data_home: Option<PathBuf>,
    home: Option<PathBuf>,
    passwd_home: impl FnOnce() -> Option<PathBuf>,
) -> Option<PathBuf> {
    let share = |h: PathBuf| h.join(".local").join("share");
    xdg_data_home
        .filter(|p| p.is_absolute())
        .or_else(|| home.filter(|h| h.is_absolute()).map(share))
        .or_else(|| passwd_home().filter(|h| h.is_absolute()).map(share))
}

fn validate_system(system: &str) -> crate::exit::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_data_folder_follows_xdg_then_home_then_passwd_never_a_relative_path() {
        let p = |s: &str| Some(PathBuf::from(s));
        let none = || None;
        assert_eq!(
            user_data_dir(p("/x/data"), p("/home/u"), none),
            p("/x/data")
        );
        assert_eq!(
            user_data_dir(p("relative"), p("/home/u"), none),
            p("/home/u/.local/share")
        );
        assert_eq!(
            user_data_dir(None, None, || p("/home/pw")),
            p("/home/pw/.local/share")
        );
        assert_eq!(
            user_data_dir(p("rel"), p("also-rel"), || p("/home/pw")),
            p("/home/pw/.local/share")
        );
        assert_eq!(user_data_dir(None, p(""), || p("")), None);
        assert_eq!(user_data_dir(None, None, none), None);
    }

    #[test]
    fn only_commands_that_add_create_the_database() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("cronmgr").chain(args.iter().copied()))
                .unwrap()
                .command
        };
        for args in [
            &["add", "j", "-s", "@daily", "--", "/bin/true"][..],
            &["settings", "set", "timezone", "UTC"],
            &["run", "--once"],
            &["apply", "jobs.d"],
        ] {
            assert!(creates_database(&parse(args)), "{args:?}");
        }
        for args in [
            &["list"][..],
            &["show", "j"],
            &["settings"],
            &["settings", "get", "timezone"],
            &["apply", "--dry-run", "jobs.d"],
            &["apply", "--check", "jobs.d"],
            &["history"],
            &["status"],
            &["rm", "j"],
        ] {
            assert!(!creates_database(&parse(args)), "{args:?}");
        }
    }
}
