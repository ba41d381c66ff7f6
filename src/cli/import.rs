//! `cronmgr import-crontab [FILE|-]`: turn a crontab's lines into `shell` jobs, all or nothing;
//! with `--system-wide`, every crontab and run-parts script of the host ([`host`]).
//!
//! Simple commands run as plain argv; commands that need a shell (pipes, redirections, `&&`, `$`,
//! quotes, globs, `%` input) run as `SHELL -c COMMAND`. Whatever cronmgr cannot carry over is
//! listed with its line.

mod host;
mod report;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use super::apply::{self, Candidate, Plan};
use super::Ctx;
use crate::crontab::{self, Entry, Note};
use crate::jobfile::Problem;
use crate::output::{self, Column};
use crate::schedule;
use crate::store::{Job, JobFilter};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  crontab -l | cronmgr import-crontab --dry-run\n  \
                  cronmgr import-crontab /etc/cron.d/app     # a system crontab: user column\n  \
                  cronmgr import-crontab --system-wide --dry-run    # the whole host: the plan\n  \
                  cronmgr import-crontab --system-wide --disable-sources"
)]
pub struct Args {
    /// The crontab file, or - for standard input
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub file: String,
    /// Lines carry a user name after the schedule [default: for /etc/crontab and /etc/cron.d/*]
    #[arg(long)]
    pub user_column: bool,
    /// Show the jobs and the job file it would apply; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// The whole host: /etc/crontab, /etc/cron.d/*, every user's crontab in the spool
    /// (/var/spool/cron/crontabs/*, /var/spool/cron/*) and one job per script in
    /// /etc/cron.{hourly,daily,weekly,monthly}, each run as its owner
    #[arg(long, conflicts_with_all = ["file", "user_column"])]
    pub system_wide: bool,
    /// With --system-wide: read the host's files under DIR instead of / (another host's copy, a
    /// test's); run-parts scripts are imported at their path under DIR
    #[arg(long, value_name = "DIR", requires = "system_wide")]
    pub root: Option<PathBuf>,
    /// With --system-wide, after the import: comment out the imported lines where cron (and
    /// anacron) read them, keeping each file as FILE.cronmgr-bak, so nothing runs twice
    #[arg(long, requires = "system_wide")]
    pub disable_sources: bool,
}

/// The shell that runs commands cron would hand to one.
const DEFAULT_SHELL: &str = "/bin/sh";

#[derive(Debug, Serialize)]
struct Imported {
    /// The file it came from (a system-wide import's many).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    line: usize,
    name: String,
    /// Who it runs as, when not cronmgr's own user.
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    schedule: String,
    timezone: String,
    /// The command as cron would run it (after `%` handling).
    command: String,
    /// Its standard input, from `%`.
    stdin: Option<String>,
    argv: Vec<String>,
    env: serde_json::Map<String, Value>,
    needs_shell: bool,
    /// From `MAILTO=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_email: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

/// `import-crontab --json`.
#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    source: &'a str,
    jobs: &'a [Imported],
    not_carried_over: Vec<NotCarried<'a>>,
    /// On a dry run, the job file it would apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    toml: Option<String>,
}

/// A line, or part of one, that cronmgr cannot carry over.
#[derive(Serialize)]
struct NotCarried<'a> {
    line: usize,
    text: &'a str,
}

/// The argv for an entry, and whether it goes through a shell.
fn argv_for(entry: &Entry) -> (Vec<String>, bool) {
    if entry.stdin.is_none() && !crontab::needs_shell(&entry.command) {
        return (
            entry.command.split_whitespace().map(String::from).collect(),
            false,
        );
    }
    let shell = entry.shell.clone().unwrap_or_else(|| DEFAULT_SHELL.into());
    let script = match &entry.stdin {
        None => entry.command.clone(),
        Some(input) => {
            let mut end = "CRONMGR_STDIN".to_string();
            while input.lines().any(|l| l == end) {
                end.push('_');
            }
            format!("{{ {}\n}} <<'{end}'\n{input}{end}", entry.command)
        }
    };
    (vec![shell, "-c".into(), script], true)
}

/// One crontab line as a `shell` job (named, described, with its env, zone and MAILTO), and what
/// the report says of it. A bad `CRON_TZ` is a problem; a MAILTO cronmgr cannot send to, a note.
/// The run-as user is the caller's to set.
fn convert(
    entry: &Entry,
    source: &str,
    ctx: &Ctx,
    taken: &mut HashSet<String>,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<Note>,
) -> (Job, Imported) {
    let (argv, needs_shell) = argv_for(entry);
    let name = crontab::unique_name(&crontab::name_for(&entry.command), taken);
    let mut job = Job::new(ctx.system(), &name, &entry.schedule, "shell");
    job.description = Some(short(
        &format!("from {source} line {}: {}", entry.line, entry.command),
        200,
    ));
    job.params.insert("argv".into(), json!(argv));
    let env: serde_json::Map<String, Value> = entry
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    if !env.is_empty() {
        job.params.insert("env".into(), Value::Object(env.clone()));
    }
    if let Some(zone) = &entry.timezone {
        match schedule::parse_timezone(zone) {
            Ok(tz) => job.timezone = tz.name().to_string(),
            Err(e) => problems.push(Problem {
                file: source.to_string(),
                line: entry.line,
                message: format!("CRON_TZ: {e}"),
            }),
        }
    }
    match crontab::alert_email(entry.mailto.as_deref()) {
        Ok(email) => job.alert_email = email,
        Err(why) => notes.push(Note {
            line: entry.line,
            text: why,
        }),
    }
    let mut job_notes = Vec::new();
    if needs_shell {
        // The import is refused unless the shell is allowlisted (checked with the rest), so
        // this says what the job does, not what it would need.
        job_notes.push(format!(
            "runs through {} -c: the shell reads the whole line, as cron's did",
            argv[0]
        ));
    }
    let item = Imported {
        source: None,
        line: entry.line,
        name,
        user: None,
        schedule: entry.schedule.clone(),
        timezone: job.timezone.clone(),
        command: entry.command.clone(),
        stdin: entry.stdin.clone(),
        argv,
        env,
        needs_shell,
        alert_email: job.alert_email.clone(),
        notes: job_notes,
    };
    (job, item)
}

/// The name of the user cronmgr runs as.
fn current_user() -> Option<String> {
    // SAFETY: getpwuid returns null or a pointer to a static record valid until the next call;
    // we copy the name out at once, on this thread.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

fn read_input(file: &str) -> crate::exit::Result<(String, String)> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            crate::exit::Failure::usage(format!("reading the crontab from stdin: {e}"))
        })?;
        return Ok(("<stdin>".into(), text));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| crate::exit::Failure::usage(format!("reading crontab {file}: {e}")))?;
    Ok((file.to_string(), text))
}

fn short(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', "⏎");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max - 1).collect();
    format!("{cut}…")
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    if args.system_wide {
        return host::run(&args, ctx);
    }
    let (source, text) = read_input(&args.file)?;
    let user_column =
        args.user_column || (args.file != "-" && crontab::is_system_crontab(Path::new(&args.file)));
    let tab = crontab::parse(&text, user_column);
    let problem = |line: usize, message: String| Problem {
        file: source.clone(),
        line,
        message,
    };
    let mut problems: Vec<Problem> = tab
        .errors
        .iter()
        .map(|e| problem(e.line, e.message.clone()))
        .collect();
    let mut notes: Vec<Note> = tab.notes.clone();

    let config = ctx.config()?;
    let store = ctx.store()?;
    let settings = store.settings(ctx.system())?;
    let existing = store.jobs(&JobFilter {
        system: Some(ctx.system().to_string()),
        ..Default::default()
    })?;
    let mut taken: HashSet<String> = existing.into_iter().map(|j| j.name).collect();
    let me = current_user();

    let mut candidates = Vec::new();
    let mut imported = Vec::new();
    for entry in &tab.entries {
        let (mut job, mut item) =
            convert(entry, &source, ctx, &mut taken, &mut problems, &mut notes);
        if let Some(user) = &entry.user {
            if me.as_deref() != Some(user.as_str()) {
                if crate::config::is_root() {
                    // Checked with the rest below: an unknown user is a problem line.
                    job.run_user = Some(user.clone());
                    item.user = Some(user.clone());
                } else {
                    notes.push(Note {
                        line: entry.line,
                        text: format!(
                            "user {user}: not carried over: only root can run jobs as another user; the job runs as {}",
                            me.as_deref().unwrap_or("cronmgr's user")
                        ),
                    });
                }
            }
        }
        imported.push(item);
        candidates.push(Candidate {
            job,
            file: source.clone(),
            line: entry.line,
        });
    }
    let now = ctx.now();
    apply::check_all(&mut candidates, &settings, config, now, &mut problems);
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        return Err(apply::refuse(&problems, &format!("crontab {source}")));
    }
    notes.sort_by_key(|n| n.line);
    let jobs: Vec<Job> = candidates.iter().map(|c| c.job.clone()).collect();
    let mut plan = Plan::default();
    for c in candidates {
        plan.create(c);
    }
    if !args.dry_run {
        plan.execute(&store, ctx, now, "import-crontab")?;
    }
    let toml = super::export::render(&jobs, ctx.system())?;

    if ctx.global.json {
        output::json(&Report {
            dry_run: args.dry_run,
            source: &source,
            jobs: &imported,
            not_carried_over: notes
                .iter()
                .map(|n| NotCarried {
                    line: n.line,
                    text: &n.text,
                })
                .collect(),
            toml: args.dry_run.then_some(toml),
        })?;
        return Ok(ExitCode::Ok);
    }
    if !imported.is_empty() {
        output::text(&output::table(
            &[
                Column::new("LINE"),
                Column::new("NAME").shrink(12),
                Column::new("SCHEDULE"),
                Column::new("TZ").shrink(6).drop(1),
                Column::new("COMMAND").fill(16),
                Column::new("RUNS THROUGH").shrink(8).drop(2),
            ],
            imported.iter().map(|i| {
                [
                    i.line.to_string(),
                    i.name.clone(),
                    i.schedule.clone(),
                    if i.timezone.is_empty() {
                        "-".into()
                    } else {
                        i.timezone.clone()
                    },
                    i.command.clone(),
                    match (i.needs_shell, &i.stdin) {
                        (_, Some(input)) => format!(
                            "{} -c, {} line(s) of stdin",
                            i.argv[0],
                            input.lines().count()
                        ),
                        (true, None) => format!("{} -c", i.argv[0]),
                        (false, None) => "-".to_string(),
                    },
                ]
            }),
        ))?;
    }
    if !notes.is_empty() {
        output::text("\nnot carried over:")?;
        output::text(&output::table(
            &[Column::new("LINE"), Column::new("WHAT").fill(20)],
            notes.iter().map(|n| [n.line.to_string(), n.text.clone()]),
        ))?;
    }
    if let Some(shell) = imported.iter().find(|i| i.needs_shell) {
        output::text(&format!(
            "\n{} job(s) run through {} -c (allowlisted): the shell reads each line, as cron's did",
            imported.iter().filter(|i| i.needs_shell).count(),
            shell.argv[0],
        ))?;
    }
    if args.dry_run {
        output::text(&format!(
            "\ndry run, nothing changed: would import {} job(s) from {source}, as this job file:\n",
            imported.len()
        ))?;
        output::text(&toml)?;
    } else {
        output::text(&format!(
            "\nimported {} job(s) from {source}",
            imported.len()
        ))?;
    }
    Ok(ExitCode::Ok)
}
