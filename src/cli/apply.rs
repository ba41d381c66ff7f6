//! `cronmgr apply [PATH...]`: make the system's jobs what the job files say, in one transaction.
//!
//! Also the machinery `edit` (in an editor) and `import-crontab` share: check candidate jobs the
//! way `add` does, reporting every problem with its file and line; plan the changes; carry them
//! out at once; show them.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::job_args;
use super::Ctx;
use crate::config::Config;
use crate::exit::Failure;
use crate::jobfile::{self, Problem};
use crate::output;
use crate::store::{Job, JobFilter, Settings, Store};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cronmgr apply --dry-run          # what would change\n  \
                  cronmgr apply jobs.d/ --prune     # also remove jobs no file declares\n  \
                  cronmgr apply --check jobs.d/     # CI: check the files, touch no database"
)]
pub struct Args {
    /// Job files, or folders of *.toml files [default: the config file's jobs_dir]
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Show what would change, change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Remove the system's jobs that no file declares
    #[arg(long)]
    pub prune: bool,
    /// Only check the files (for CI); never opens or creates the database
    #[arg(long, conflicts_with_all = ["dry_run", "prune"])]
    pub check: bool,
}

/// A job to write, and where it was declared.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub job: Job,
    pub file: String,
    pub line: usize,
}

impl Candidate {
    pub fn source(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    fn problem(&self, message: String) -> Problem {
        Problem {
            file: self.file.clone(),
            line: self.line,
            message,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Action {
    Created,
    Updated,
    Unchanged,
    Removed,
    NotInAnyFile,
}

impl Action {
    fn label(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::Removed => "removed",
            Action::NotInAnyFile => "not in any file",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Change {
    pub name: String,
    pub action: Action,
    /// For `updated`: the fields that change, by their names in job files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// `file:line` of its declaration.
    pub source: Option<String>,
}

/// What an apply does: the changes to show and the rows to write.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub changes: Vec<Change>,
    inserts: Vec<Job>,
    updates: Vec<Job>,
    deletes: Vec<i64>,
}

/// The new version of a stored job: what the file says, keeping its identity and history.
/// A file that enables a job cronmgr (or someone) disabled does what `cronmgr enable` does: it
/// clears the reason and the failure streak.
fn keep_identity(old: &Job, new: &Job) -> Job {
    let re_enabled = new.is_active && !old.is_active;
    Job {
        id: old.id,
        system: old.system.clone(),
        created_at: old.created_at,
        updated_at: old.updated_at,
        last_run_at: old.last_run_at,
        last_success_at: old.last_success_at,
        failure_streak: if re_enabled { 0 } else { old.failure_streak },
        disabled_reason: if re_enabled {
            None
        } else {
            old.disabled_reason.clone()
        },
        enabled_at: old.enabled_at,
        ..new.clone()
    }
}

impl Plan {
    /// Match candidates to the system's jobs by name.
    pub fn by_name(existing: Vec<Job>, desired: Vec<Candidate>, prune: bool) -> Plan {
        let mut plan = Plan::default();
        let mut by_name: HashMap<String, Job> =
            existing.into_iter().map(|j| (j.name.clone(), j)).collect();
        for c in desired {
            match by_name.remove(&c.job.name) {
                Some(old) => plan.update(&old, &c),
                None => plan.create(c),
            }
        }
        let mut rest: Vec<Job> = by_name.into_values().collect();
        rest.sort_by(|a, b| a.name.cmp(&b.name));
        for old in rest {
            let action = if prune {
                plan.deletes.push(old.id);
                Action::Removed
            } else {
                Action::NotInAnyFile
            };
            plan.changes.push(Change {
                name: old.name,
                action,
                fields: Vec::new(),
                source: None,
            });
        }
        plan
    }

    pub fn create(&mut self, c: Candidate) {
        self.changes.push(Change {
            name: c.job.name.clone(),
            action: Action::Created,
            fields: Vec::new(),
            source: Some(c.source()),
        });
        self.inserts.push(c.job);
    }

    /// `c` replaces `old` (same id, possibly a new name).
    pub fn update(&mut self, old: &Job, c: &Candidate) {
        let fields = jobfile::changed_fields(old, &c.job);
        let action = if fields.is_empty() {
            Action::Unchanged
        } else {
            self.updates.push(keep_identity(old, &c.job));
            Action::Updated
        };
        self.changes.push(Change {
            name: c.job.name.clone(),
            action,
            fields,
            source: Some(c.source()),
        });
    }

    pub fn changes_anything(&self) -> bool {
        !(self.inserts.is_empty() && self.updates.is_empty() && self.deletes.is_empty())
    }

    /// Carry out the plan in one transaction, and wake the runner.
    pub fn execute(
        &self,
        store: &Store,
        ctx: &Ctx,
        now: DateTime<Utc>,
        action: &str,
    ) -> crate::exit::Result<()> {
        if !self.changes_anything() {
            return Ok(());
        }
        store.apply_jobs(
            &self.inserts,
            &self.updates,
            &self.deletes,
            now,
            ctx.by(action),
        )?;
        crate::runner::nudge(&ctx.db_path());
        Ok(())
    }

    /// A non-admin may not create, change or remove a critical job: refuse the whole apply
    /// (exit 5) if it would, recording the attempt once per such job.
    fn require_admin(
        &self,
        store: &Store,
        existing: &HashMap<i64, Job>,
        ctx: &Ctx,
    ) -> crate::exit::Result<()> {
        let mut first = None;
        let touched = self
            .inserts
            .iter()
            .map(|j| (None, j))
            .chain(self.updates.iter().map(|j| (existing.get(&j.id), j)))
            .map(|(old, new)| {
                (
                    new.name.clone(),
                    old.is_some_and(|o| o.is_critical) || new.is_critical,
                )
            })
            .chain(
                self.deletes
                    .iter()
                    .filter_map(|id| existing.get(id))
                    .map(|old| (old.name.clone(), old.is_critical)),
            );
        for (name, critical) in touched.filter(|(_, c)| *c) {
            let mut probe = Job::new(ctx.system(), &name, "", "");
            probe.is_critical = critical;
            if let Err(e) = ctx.require_admin(store, "apply", &name, &[&probe]) {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// "2 created, 1 updated, …": only the actions that occur.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            Action::Created,
            Action::Updated,
            Action::Unchanged,
            Action::Removed,
            Action::NotInAnyFile,
        ]
        .into_iter()
        .map(|a| (a, self.count(a)))
        .filter(|(_, n)| *n > 0)
        .map(|(a, n)| format!("{n} {}", a.label()))
        .collect();
        if parts.is_empty() {
            "no jobs".into()
        } else {
            parts.join(", ")
        }
    }

    pub fn table(&self) -> String {
        output::table(
            &[
                output::Column::new("NAME").shrink(12),
                output::Column::new("ACTION"),
                output::Column::new("CHANGED").fill(12),
                output::Column::new("FROM").shrink(10).drop(1),
            ],
            self.changes.iter().map(|c| {
                [
                    c.name.clone(),
                    c.action.label().to_string(),
                    if c.fields.is_empty() {
                        "-".into()
                    } else {
                        c.fields.join(", ")
                    },
                    c.source.clone().unwrap_or_else(|| "-".into()),
                ]
            }),
        )
    }

    /// How many jobs each action touches, for `--json`.
    pub fn counts(&self) -> Counts {
        Counts {
            created: self.count(Action::Created),
            updated: self.count(Action::Updated),
            unchanged: self.count(Action::Unchanged),
            removed: self.count(Action::Removed),
            not_in_any_file: self.count(Action::NotInAnyFile),
        }
    }
}

/// Check every candidate as `add` does (name, schedule, zone, executor and its allowlist, …) and
/// set its next run; names must be unique. Every problem is collected, none stops the others.
pub(super) fn check_all(
    candidates: &mut [Candidate],
    settings: &Settings,
    config: &Config,
    now: DateTime<Utc>,
    problems: &mut Vec<Problem>,
) {
    let bar = output::progress::bar(candidates.len() as u64, "checking jobs");
    let mut seen: HashMap<String, String> = HashMap::new();
    for c in candidates.iter_mut() {
        bar.inc(1);
        let label = format!("job {:?}: ", c.job.name);
        match job_args::problems(&c.job, settings, config, now) {
            Ok(next) => c.job.next_run_at = next,
            Err(all) => {
                problems.extend(all.iter().map(|e| c.problem(format!("{label}{e:#}"))));
            }
        }
        if let Some(first) = seen.get(&c.job.name) {
            problems.push(c.problem(format!(
                "{label}the name is already declared at {first}; names must be unique within the system"
            )));
        } else {
            seen.insert(c.job.name.clone(), c.source());
        }
    }
    bar.finish_and_clear();
}

/// Replace each `{ secret = "(stored)" }` (what `export` writes) by the secret stored for the
/// job of the same name; a marker with nothing stored is a problem.
pub(super) fn resolve_secrets(
    candidates: &mut [Candidate],
    existing: &[Job],
    problems: &mut Vec<Problem>,
) {
    for c in candidates.iter_mut() {
        let stored = existing.iter().find(|j| j.name == c.job.name);
        if let Err(e) = crate::model::secrets::resolve_job(&mut c.job, stored) {
            problems.push(c.problem(format!("job {:?}: {e}", c.job.name)));
        }
    }
}

/// The error for refused input: every problem, one a line; exit status 2.
pub(super) fn refuse(problems: &[Problem], what: &str) -> Failure {
    let n = problems.len();
    let mut msg = format!(
        "{n} problem{} in {what}; nothing was changed:",
        if n == 1 { "" } else { "s" }
    );
    for p in problems {
        msg.push_str(&format!("\n  {p}"));
    }
    Failure::usage(msg)
}

/// The `*.toml` files the paths name: files as given, folders' files in name order.
fn collect_files(paths: &[PathBuf]) -> crate::exit::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| {
            Failure::usage(format!("cannot read job files at {}: {e}", path.display()))
        })?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Failure::usage(format!("cannot list {}: {e}", path.display())))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Read and convert every file; problems for those that cannot be.
fn load(files: &[PathBuf], system: &str, problems: &mut Vec<Problem>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem {
                    file: name,
                    line: 0,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let (jobs, found) = jobfile::parse_all(&name, &text);
        problems.extend(found);
        for located in jobs {
            // A job with problems in its fields is still checked as `add` would (its other
            // problems are reported too); the apply is refused either way.
            let (job, found) = located.spec.to_job_all(system);
            problems.extend(
                found
                    .iter()
                    .map(|e| located.problem(format!("job {:?}: {e}", located.spec.name))),
            );
            out.push(Candidate {
                job,
                file: located.file,
                line: located.line,
            });
        }
    }
    out
}

/// `apply --json`: what changed (or would, on a dry run).
#[derive(Serialize)]
struct Applied<'a> {
    dry_run: bool,
    files: Vec<String>,
    changes: &'a [Change],
    summary: Counts,
}

/// How many jobs each action of a plan touches.
#[derive(Serialize)]
pub(super) struct Counts {
    created: usize,
    updated: usize,
    unchanged: usize,
    removed: usize,
    not_in_any_file: usize,
}

/// `apply --check --json`: the files are valid; the jobs they declare.
#[derive(Serialize)]
struct Checked<'a> {
    valid: bool,
    files: Vec<String>,
    jobs: Vec<CheckedJob<'a>>,
}

#[derive(Serialize)]
struct CheckedJob<'a> {
    name: &'a str,
    /// FILE:LINE
    source: String,
}

fn display_paths(files: &[PathBuf]) -> Vec<String> {
    files.iter().map(|p| p.display().to_string()).collect()
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let config = ctx.config()?;
    let paths = if args.paths.is_empty() {
        vec![config.jobs_dir.clone()]
    } else {
        args.paths.clone()
    };
    let files = collect_files(&paths)?;
    if files.is_empty() && args.prune {
        crate::invalid!(
            "no job files (*.toml) in {}; refusing to --prune every job of system {:?}",
            display_paths(&paths).join(", "),
            ctx.system()
        );
    }
    let mut problems = Vec::new();
    let mut candidates = load(&files, ctx.system(), &mut problems);
    let now = ctx.now();
    let store = if args.check { None } else { Some(ctx.store()?) };
    let settings = match &store {
        Some(store) => store.settings(ctx.system())?,
        None => Settings::defaults(ctx.system(), crate::schedule::host_timezone().name()),
    };
    let existing = match &store {
        Some(store) => store.jobs(&JobFilter {
            system: Some(ctx.system().to_string()),
            ..Default::default()
        })?,
        None => Vec::new(),
    };
    if store.is_some() {
        resolve_secrets(&mut candidates, &existing, &mut problems);
    }
    check_all(&mut candidates, &settings, config, now, &mut problems);
    if !problems.is_empty() {
        problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(refuse(&problems, "the job files"));
    }
    let Some(store) = store else {
        let jobs: Vec<&Job> = candidates.iter().map(|c| &c.job).collect();
        super::chains::check(&[], &jobs, &[], true)
            .map_err(|e| Failure::usage(format!("the job files: {e}")))?;
        return report_check(&files, &candidates, ctx);
    };
    let existing_by_id: HashMap<i64, Job> = existing.iter().map(|j| (j.id, j.clone())).collect();
    let plan = Plan::by_name(existing.clone(), candidates, args.prune);
    let changed: Vec<&Job> = plan.updates.iter().chain(&plan.inserts).collect();
    super::chains::check(&existing, &changed, &plan.deletes, false)
        .map_err(|e| Failure::usage(format!("the job files cannot be applied: {e}")))?;
    if !args.dry_run {
        plan.require_admin(&store, &existing_by_id, ctx)?;
        plan.execute(&store, ctx, now, "apply")?;
    }
    if ctx.global.json {
        output::json(&Applied {
            dry_run: args.dry_run,
            files: display_paths(&files),
            changes: &plan.changes,
            summary: plan.counts(),
        })?;
        return Ok(ExitCode::Ok);
    }
    if !plan.changes.is_empty() {
        output::text(&plan.table())?;
    }
    let mut summary = plan.summary();
    if plan
        .changes
        .iter()
        .any(|c| c.action == Action::NotInAnyFile)
    {
        summary.push_str(" (--prune removes those not in any file)");
    }
    if args.dry_run {
        output::text(&format!("dry run, nothing changed: would be {summary}"))?;
    } else {
        output::text(&summary)?;
    }
    Ok(ExitCode::Ok)
}

fn report_check(
    files: &[PathBuf],
    candidates: &[Candidate],
    ctx: &Ctx,
) -> crate::exit::Result<ExitCode> {
    if ctx.global.json {
        output::json(&Checked {
            valid: true,
            files: display_paths(files),
            jobs: candidates
                .iter()
                .map(|c| CheckedJob {
                    name: &c.job.name,
                    source: c.source(),
                })
                .collect(),
        })?;
    } else {
        output::text(&format!(
            "ok: {} job{} in {} file{}",
            candidates.len(),
            if candidates.len() == 1 { "" } else { "s" },
            files.len(),
            if files.len() == 1 { "" } else { "s" },
        ))?;
    }
    Ok(ExitCode::Ok)
}
