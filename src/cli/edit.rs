//! `cronmgr edit NAME [flags]`: change the given fields, keep the rest. Without flags: edit the
//! job as TOML in `$VISUAL`/`$EDITOR`, as `crontab -e` does.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::exit::Context as _;

use super::apply::{self, Candidate, Plan};
use super::job_args::{self, JobArgs};
use super::Ctx;
use crate::jobfile::{self, JobSpec, Problem};
use crate::output;
use crate::store::{Job, Store};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Optional durations (--timeout, --max-runtime, --starting-deadline) take `none` to go back to the default.\n\
                  With no flag at all, the job opens as TOML in $VISUAL, $EDITOR or vi; saving applies it."
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

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    if args.job.is_empty() && args.rename.is_none() {
        return in_editor(&args.name, ctx);
    }
    let store = ctx.store()?;
    let before = store.job(ctx.system(), &args.name)?;
    let mut job = before.clone();
    if let Some(new_name) = &args.rename {
        job.name = new_name.clone();
    }
    args.job.apply(&mut job, true)?;
    crate::model::secrets::resolve_job(&mut job, Some(&before))
        .map_err(crate::exit::Failure::usage)?;
    let settings = store.settings(ctx.system())?;
    let now = ctx.now();
    job.next_run_at = job_args::validate(&job, &settings, ctx.config()?, now)?;
    let existing = store.jobs(&crate::store::JobFilter {
        system: Some(ctx.system().to_string()),
        ..Default::default()
    })?;
    super::chains::check(&existing, &[&job], &[], false)?;
    ctx.require_admin(&store, "edit", &before.name, &[&before, &job])?;
    let job = store.update_job(&job, now, ctx.by("edit"))?;
    crate::runner::nudge(&ctx.db_path());
    if ctx.global.json {
        output::json(&job.redacted())?;
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

const HEADER: &str = "# Edit the job, save and quit to apply it. Fields left out take their defaults;\n\
                      # renaming it here renames the job. Save it unchanged or empty to change nothing.\n\n";
const ERROR_MARK: &str = "# cronmgr error: ";

/// The file being edited, removed when done.
struct TempFile(PathBuf);

impl TempFile {
    fn create(name: &str, text: &str) -> std::io::Result<TempFile> {
        let dir = std::env::temp_dir();
        for n in 0.. {
            let path = dir.join(format!(
                "cronmgr-edit-{name}-{}-{n}.toml",
                std::process::id()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(text.as_bytes())?;
                    return Ok(TempFile(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("an unbounded range ends only by returning")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `$VISUAL` or `$EDITOR`, if set.
fn editor() -> Option<String> {
    ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
}

/// `$VISUAL`, `$EDITOR` or `vi`, run through `sh` so that `EDITOR="code -w"` works (as git does).
fn open_editor(path: &Path) -> crate::exit::Result<()> {
    let editor = editor().unwrap_or_else(|| "vi".to_string());
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$@\""))
        .arg(&editor)
        .arg(path)
        .status()
        .with_context(|| format!("starting the editor {editor:?}"))?;
    if !status.success() {
        crate::fail!("the editor ({editor}) exited with {status}; nothing was changed");
    }
    Ok(())
}

/// The text without the error notes a previous round appended.
fn strip_errors(text: &str) -> String {
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(ERROR_MARK))
        .collect();
    let mut out = kept.join("\n").trim_end().to_string();
    out.push('\n');
    out
}

/// Nothing but blank lines and comments.
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#'))
}

/// Ask on stderr whether to edit again (stdin is a terminal).
fn ask_again() -> bool {
    eprint!("edit again? [Y/n] ");
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    !matches!(answer.trim().to_ascii_lowercase().as_str(), "n" | "no")
}

fn in_editor(name: &str, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    // A script that forgot its flags should fail, not hang in vi.
    if editor().is_none() && !std::io::stdin().is_terminal() {
        crate::invalid!(
            "nothing to change: give at least one flag (see cronmgr edit --help), or set EDITOR to edit the job as TOML"
        );
    }
    let store = ctx.store()?;
    let before = store.job(ctx.system(), name)?;
    let spec = JobSpec::from_job(&before)
        .map_err(|e| anyhow::anyhow!("cannot edit job {name:?} as TOML: {e}"))?;
    let body = jobfile::render(vec![spec]).map_err(anyhow::Error::msg)?;
    let original = strip_errors(&format!("{HEADER}{body}"));
    let file = TempFile::create(name, &original)
        .context("creating the file to edit in the temporary folder")?;
    let label = file.0.display().to_string();
    loop {
        open_editor(&file.0)?;
        let edited = strip_errors(
            &std::fs::read_to_string(&file.0).with_context(|| format!("reading back {label}"))?,
        );
        if edited == original || is_blank(&edited) {
            eprintln!(
                "{}: nothing changed",
                if is_blank(&edited) {
                    "file emptied"
                } else {
                    "file unchanged"
                }
            );
            return Ok(ExitCode::Ok);
        }
        let problems = match save(&store, &before, &edited, &label, ctx)? {
            Ok(code) => return Ok(code),
            Err(problems) => problems,
        };
        if !std::io::stdin().is_terminal() {
            return Err(apply::refuse(&problems, "the edited job"));
        }
        for p in &problems {
            eprintln!("cronmgr: {p}");
        }
        if !ask_again() {
            return Err(apply::refuse(&problems, "the edited job"));
        }
        let notes: String = problems
            .iter()
            .map(|p| {
                format!(
                    "{ERROR_MARK}line {}: {}\n",
                    p.line,
                    p.message.replace('\n', " ")
                )
            })
            .collect();
        std::fs::write(&file.0, format!("{edited}\n{notes}"))
            .with_context(|| format!("writing {label}"))?;
    }
}

/// Check the edited text as `apply` would and store it; the problems if it cannot be.
fn save(
    store: &Store,
    before: &Job,
    text: &str,
    label: &str,
    ctx: &Ctx,
) -> crate::exit::Result<Result<ExitCode, Vec<Problem>>> {
    let mut jobs = match jobfile::parse(label, text) {
        Ok(jobs) => jobs,
        Err(p) => return Ok(Err(vec![p])),
    };
    if jobs.len() != 1 {
        return Ok(Err(vec![Problem {
            file: label.to_string(),
            line: jobs.get(1).map_or(0, |j| j.line),
            message: format!(
                "the file must hold exactly one [[job]], found {}",
                jobs.len()
            ),
        }]));
    }
    let located = jobs.remove(0);
    let job = match located.spec.to_job(ctx.system()) {
        Ok(job) => job,
        Err(e) => return Ok(Err(vec![located.problem(e)])),
    };
    let mut candidates = [Candidate {
        job,
        file: located.file.clone(),
        line: located.line,
    }];
    let mut problems = Vec::new();
    // The file names the job it edits: its stored secrets are `before`'s, whatever its new name.
    if let Err(e) = crate::model::secrets::resolve_job(&mut candidates[0].job, Some(before)) {
        problems.push(located.problem(e));
    }
    let settings = store.settings(ctx.system())?;
    let now = ctx.now();
    apply::check_all(
        &mut candidates,
        &settings,
        ctx.config()?,
        now,
        &mut problems,
    );
    let [candidate] = candidates;
    if candidate.job.name != before.name && store.job(ctx.system(), &candidate.job.name).is_ok() {
        problems.push(located.problem(format!(
            "cannot rename to {:?}: a job of that name exists",
            candidate.job.name
        )));
    }
    let mut edited = candidate.job.clone();
    edited.id = before.id;
    let existing = store.jobs(&crate::store::JobFilter {
        system: Some(ctx.system().to_string()),
        ..Default::default()
    })?;
    if let Err(e) = super::chains::check(&existing, &[&edited], &[], false) {
        problems.push(located.problem(e.to_string()));
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let mut plan = Plan::default();
    plan.update(before, &candidate);
    if !plan.changes_anything() {
        eprintln!("no field changed: nothing to do");
        return Ok(Ok(ExitCode::Ok));
    }
    ctx.require_admin(store, "edit", &before.name, &[before, &candidate.job])?;
    plan.execute(store, ctx, now, "edit")?;
    let after = store.job(ctx.system(), &candidate.job.name)?;
    if ctx.global.json {
        output::json(&after.redacted())?;
    } else {
        let fields = &plan.changes[0].fields;
        let renamed = if after.name != before.name {
            format!(" (renamed from {})", before.name)
        } else {
            String::new()
        };
        let tz = job_args::effective_tz(&after, &settings)?;
        output::text(&format!(
            "updated {}{renamed}: {}; next run {}",
            after.name,
            fields.join(", "),
            output::opt_local(after.next_run_at, tz)
        ))?;
    }
    Ok(Ok(ExitCode::Ok))
}
