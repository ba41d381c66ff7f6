//! `cronmgr import-crontab --system-wide [--root DIR] [--dry-run] [--disable-sources]`: every job
//! of the host's cron, as one all-or-nothing import.
//!
//! - Crontab lines become jobs as in a single-file import, run as their owner: the user column of
//!   `/etc/crontab` and `/etc/cron.d/*`, the file's name for a user's crontab in the spool.
//! - The run-parts folders become one job per script, not one per folder: each script then has
//!   its own history, exit status, timeout and alerts, where under run-parts one failing script
//!   hides among the rest and a hanging one holds up those after it. The price: the scripts of a
//!   folder no longer run one after another in name order but side by side (at the time of the
//!   crontab line that ran the folder, as its user, with its environment and MAILTO; Debian's
//!   times when only anacron runs it). The lines that ran the folders are not imported.
//! - What cron would not run (see [`crate::crontab::host`]) is listed as not imported, with why.
//! - The report ends with the `[executors.shell] allow` entries the jobs need, each pinned to
//!   the exact arguments its job runs with, ready to paste.
//! - `--disable-sources`, after the import landed, comments out the imported lines (and the lines
//!   that ran the imported folders, anacron's too), keeping `FILE.cronmgr-bak`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::report::{allowlist, print, Disable, Report, SourceRow};
use super::{convert, current_user, Args, Imported};
use crate::cli::apply::{self, Candidate, Plan};
use crate::cli::Ctx;
use crate::crontab::host::{self, Kind, Period, Skipped};
use crate::crontab::{self, Entry, Note};
use crate::jobfile::Problem;
use crate::output;
use crate::store::{Job, JobFilter, Settings};
use crate::ExitCode;

/// A crontab line that runs a run-parts folder: its scripts run when, as whom, with what.
struct Runner {
    entry: Entry,
    user: Option<String>,
    source: String,
}

/// Everything the import gathers before it checks and writes.
#[derive(Default)]
struct Gathered {
    candidates: Vec<Candidate>,
    items: Vec<Imported>,
    problems: Vec<Problem>,
    not_imported: Vec<Skipped>,
    not_carried: Vec<Skipped>,
    sources: Vec<SourceRow>,
    /// By the path read: (the path shown, the lines to comment out).
    migrated: BTreeMap<PathBuf, (String, BTreeSet<usize>)>,
    /// Job names in use.
    taken: HashSet<String>,
    /// What already runs (an earlier import): (argv, user) → the job.
    known: HashMap<(Value, Option<String>), String>,
    /// The user cronmgr runs as.
    me: Option<String>,
}

impl Gathered {
    fn migrate(&mut self, path: &Path, shown: &str, line: usize) {
        self.migrated
            .entry(path.to_path_buf())
            .or_insert_with(|| (shown.to_string(), BTreeSet::new()))
            .1
            .insert(line);
    }

    fn skip(&mut self, source: &str, line: Option<usize>, why: String) {
        self.not_imported.push(Skipped {
            source: source.to_string(),
            line,
            why,
        });
    }

    fn note(&mut self, source: &str, line: Option<usize>, why: String) {
        self.not_carried.push(Skipped {
            source: source.to_string(),
            line,
            why,
        });
    }

    /// The crontabs' lines, as jobs; returns the lines that run a run-parts folder, by folder.
    fn crontabs(&mut self, found: &host::Host, ctx: &Ctx) -> BTreeMap<Period, Runner> {
        // The crontabs; the lines that run a run-parts folder are kept for its scripts.
        let mut runners: BTreeMap<Period, Runner> = BTreeMap::new();
        for tab in &found.crontabs {
            let text = match std::fs::read_to_string(&tab.path) {
                Ok(t) => t,
                Err(e) => {
                    self.skip(&tab.shown, None, format!("cannot read it: {e}"));
                    continue;
                }
            };
            let parsed = crontab::parse(&text, tab.kind == Kind::System);
            let before = self.items.len();
            self.problems.extend(parsed.errors.iter().map(|e| Problem {
                file: tab.shown.clone(),
                line: e.line,
                message: e.message.clone(),
            }));
            for n in &parsed.notes {
                self.note(&tab.shown, Some(n.line), n.text.clone());
            }
            for entry in &parsed.entries {
                let user = match &tab.kind {
                    Kind::System => entry.user.clone(),
                    Kind::User(u) => Some(u.clone()),
                };
                if let Some(period) = host::run_parts_target(&entry.command) {
                    self.skip(
                        &tab.shown,
                        Some(entry.line),
                        format!(
                            "runs {}: imported as one job per script there (this line's time, user and MAILTO)",
                            period.folder()
                        ),
                    );
                    self.migrate(&tab.path, &tab.shown, entry.line);
                    runners.entry(period).or_insert(Runner {
                        entry: entry.clone(),
                        user,
                        source: tab.shown.clone(),
                    });
                    continue;
                }
                if let Some(u) = &user {
                    if crate::access::user_by_name(u).is_none() {
                        self.skip(
                            &tab.shown,
                            Some(entry.line),
                            format!("no user named {u:?}: cron cannot run it either"),
                        );
                        continue;
                    }
                }
                let mut notes: Vec<Note> = Vec::new();
                let (mut job, mut item) = convert(
                    entry,
                    &tab.shown,
                    ctx,
                    &mut self.taken,
                    &mut self.problems,
                    &mut notes,
                );
                for n in notes {
                    self.note(&tab.shown, Some(n.line), n.text);
                }
                if let Some(u) = &user {
                    job.run_user = self.run_as(u, &tab.shown, entry.line);
                }
                item.source = Some(tab.shown.clone());
                item.user = user;
                self.migrate(&tab.path, &tab.shown, entry.line);
                if let Some(name) = self.already(&job) {
                    self.taken.remove(&job.name);
                    self.skip(
                        &tab.shown,
                        Some(entry.line),
                        format!("already imported: job {name} runs it"),
                    );
                    continue;
                }
                self.items.push(item);
                self.candidates.push(Candidate {
                    job,
                    file: tab.shown.clone(),
                    line: entry.line,
                });
            }
            self.sources.push(SourceRow {
                path: tab.shown.clone(),
                kind: match tab.kind {
                    Kind::System => "system",
                    Kind::User(_) => "user",
                },
                user: match &tab.kind {
                    Kind::System => None,
                    Kind::User(u) => Some(u.clone()),
                },
                jobs: self.items.len() - before,
            });
        }
        runners
    }

    /// The run-parts scripts, one job each, run as `runners` say; returns the folders that had any.
    fn scripts(
        &mut self,
        found: &host::Host,
        runners: &BTreeMap<Period, Runner>,
        ctx: &Ctx,
    ) -> BTreeSet<Period> {
        // The run-parts scripts.
        let mut periods: BTreeSet<Period> = BTreeSet::new();
        for period in Period::ALL {
            let scripts: Vec<&host::Script> = found
                .scripts
                .iter()
                .filter(|s| s.period == period)
                .collect();
            if scripts.is_empty() {
                continue;
            }
            periods.insert(period);
            let before = self.items.len();
            let runner = runners.get(&period);
            let folder = period.folder();
            if runner.is_none() {
                self.note(
                    &folder,
                    None,
                    format!(
                        "no crontab line runs {folder} (anacron does, if installed): its scripts run at Debian's time, {}, as root",
                        period.default_schedule()
                    ),
                );
            }
            for script in scripts {
                let entry = Entry {
                    line: 0,
                    schedule: runner
                        .map(|r| r.entry.schedule.clone())
                        .unwrap_or_else(|| period.default_schedule().to_string()),
                    user: None,
                    command: script.path.display().to_string(),
                    stdin: None,
                    env: runner.map(|r| r.entry.env.clone()).unwrap_or_default(),
                    shell: None,
                    timezone: runner.and_then(|r| r.entry.timezone.clone()),
                    mailto: runner.and_then(|r| r.entry.mailto.clone()),
                };
                let name = crontab::unique_name(
                    &format!("{}-{}", period.as_str(), script.name.to_ascii_lowercase()),
                    &mut self.taken,
                );
                let mut notes: Vec<Note> = Vec::new();
                let (mut job, mut item) = convert(
                    &entry,
                    &script.shown,
                    ctx,
                    &mut self.taken,
                    &mut self.problems,
                    &mut notes,
                );
                self.taken.remove(&job.name);
                job.name = name.clone();
                item.name = name;
                // Exactly the file, whatever its name holds: no shell, no PATH search.
                let argv = vec![script.path.display().to_string()];
                job.params.insert("argv".into(), json!(argv));
                job.params.insert("cwd".into(), json!("/"));
                item.argv = argv;
                item.needs_shell = false;
                item.notes.clear();
                job.description = Some(format!(
                    "from {folder} (run-parts, {}): {}",
                    period.as_str(),
                    script.shown
                ));
                for n in notes {
                    self.note(&script.shown, None, n.text);
                }
                let user = runner
                    .and_then(|r| r.user.clone())
                    .unwrap_or_else(|| "root".to_string());
                let source = runner.map_or(folder.clone(), |r| r.source.clone());
                job.run_user = self.run_as(&user, &source, runner.map_or(0, |r| r.entry.line));
                item.user = Some(user);
                item.source = Some(script.shown.clone());
                if let Some(name) = self.already(&job) {
                    self.taken.remove(&job.name);
                    self.skip(
                        &script.shown,
                        None,
                        format!("already imported: job {name} runs it"),
                    );
                    continue;
                }
                self.items.push(item);
                self.candidates.push(Candidate {
                    job,
                    file: script.shown.clone(),
                    line: 0,
                });
            }
            self.sources.push(SourceRow {
                path: folder,
                kind: "run-parts",
                user: None,
                jobs: self.items.len() - before,
            });
        }
        periods
    }

    /// anacron runs the folders on most hosts: its lines for the imported ones are disabled too.
    fn anacron(&mut self, found: &host::Host, periods: &BTreeSet<Period>) {
        if let (Some(tab), false) = (&found.anacrontab, periods.is_empty()) {
            if let Ok(text) = std::fs::read_to_string(&tab.path) {
                for line in host::anacron_lines(&text, periods) {
                    self.skip(
                        &tab.shown,
                        Some(line),
                        "anacron runs a run-parts folder whose scripts are imported one by one"
                            .into(),
                    );
                    self.migrate(&tab.path, &tab.shown, line);
                }
            }
        }
    }

    /// Who a job runs as: Some(user) as root (always explicit: the runner may one day run as
    /// someone else); None for cronmgr's own user otherwise; a problem for anyone else.
    fn run_as(&mut self, user: &str, source: &str, line: usize) -> Option<String> {
        if crate::config::is_root() {
            return Some(user.to_string());
        }
        if self.me.as_deref() != Some(user) {
            self.problems.push(Problem {
                file: source.to_string(),
                line,
                message: format!(
                    "runs as {user}: only root can import jobs that run as another user (run the import as root)"
                ),
            });
        }
        None
    }

    /// The job of an earlier import that runs the same argv as the same user, if there is one.
    fn already(&self, job: &Job) -> Option<String> {
        let argv = job.params.get("argv")?.clone();
        self.known.get(&(argv, job.run_user.clone())).cloned()
    }
}

pub(super) fn run(args: &Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    if !root.is_dir() {
        crate::invalid!("--root {}: not a folder", root.display());
    }
    let found = host::discover(&root);
    let config = ctx.config()?;
    // A dry run is the first step on a host cronmgr has not run on yet: no database is then
    // an empty one (and stays uncreated).
    let store = match ctx.store() {
        Ok(store) => Some(store),
        Err(e)
            if args.dry_run
                && matches!(
                    e.find::<crate::store::StoreError>(),
                    Some(crate::store::StoreError::Missing { .. })
                ) =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    let (settings, existing) = match &store {
        Some(store) => (
            store.settings(ctx.system())?,
            store.jobs(&JobFilter {
                system: Some(ctx.system().to_string()),
                ..Default::default()
            })?,
        ),
        None => (
            Settings::defaults(ctx.system(), crate::schedule::host_timezone().name()),
            Vec::new(),
        ),
    };
    let known: HashMap<(Value, Option<String>), String> = existing
        .iter()
        .filter(|j| j.command == "shell")
        .filter_map(|j| {
            let argv = j.params.get("argv")?.clone();
            Some(((argv, j.run_user.clone()), j.name.clone()))
        })
        .collect();
    let mut g = Gathered {
        not_imported: found.skipped.clone(),
        known,
        taken: existing.into_iter().map(|j| j.name).collect(),
        me: current_user(),
        ..Default::default()
    };

    let runners = g.crontabs(&found, ctx);
    let periods = g.scripts(&found, &runners, ctx);
    g.anacron(&found, &periods);

    let now = ctx.now();
    apply::check_all(&mut g.candidates, &settings, config, now, &mut g.problems);
    g.problems
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let allowlist = allowlist(&g.candidates, config);
    let jobs: Vec<Job> = g.candidates.iter().map(|c| c.job.clone()).collect();
    let toml = super::super::export::render(&jobs, ctx.system())?;
    let refused = !g.problems.is_empty();

    let mut disable: Vec<Disable> = if args.disable_sources {
        g.migrated
            .iter()
            .map(|(_, (shown, lines))| Disable {
                file: shown.clone(),
                lines: lines.iter().copied().collect(),
                backup: None,
                error: None,
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut failed_disable = false;
    if let (false, false, Some(store)) = (refused, args.dry_run, &store) {
        let mut plan = Plan::default();
        for c in std::mem::take(&mut g.candidates) {
            plan.create(c);
        }
        plan.execute(store, ctx, now, "import-crontab")?;
        if args.disable_sources {
            for (d, (path, (_, lines))) in disable.iter_mut().zip(&g.migrated) {
                match host::comment_out(path, lines) {
                    Ok(backup) => d.backup = Some(host_path(&root, &backup)),
                    Err(e) => {
                        failed_disable = true;
                        d.error = Some(e.to_string());
                    }
                }
            }
        }
    }

    let report = Report {
        dry_run: args.dry_run,
        root: root.display().to_string(),
        sources: g.sources,
        jobs: &g.items,
        not_imported: &g.not_imported,
        not_carried_over: &g.not_carried,
        allowlist,
        disable_sources: disable,
        problems: g.problems.iter().map(ToString::to_string).collect(),
        toml: args.dry_run.then_some(toml),
    };
    if ctx.global.json {
        output::json(&report)?;
    } else {
        print(&report, config)?;
    }
    if refused {
        return Err(apply::refuse(&g.problems, "the host's crontabs"));
    }
    if failed_disable {
        crate::fail!(
            "the jobs were imported, but some sources could not be disabled (see above): comment out their lines by hand, or cron runs them too"
        );
    }
    Ok(ExitCode::Ok)
}

/// A path under the root, as the host knows it.
fn host_path(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}
