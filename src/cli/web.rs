//! `cronmgr web [--listen ADDR|unix:PATH] [--allow-actions]`: the dashboard. The server lives in
//! `crate::web`; this file gives it what only the command line knows: the checks and audit rows
//! of `add`, `edit`, `enable`, `disable`, `run-now` and `kill`, run as the web user.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use super::job_args::JobArgs;
use super::{add, edit, executions, jobs, Ctx, Global};
use crate::exit::Failure;
use crate::store::{Actor, AuditEvent, Job, Status, Store, StoreError};
use crate::web::{self, ActionError, JobForm, Listen, User};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Authentication: [web] password_hash (from --hash-password) or password_file in the config \
                  file gives a login form; CRONMGR_WEB_TOKEN or [web] token_file a bearer token for scripts. \
                  A unix socket needs neither: its file mode decides who connects. See docs/web.md."
)]
pub struct Args {
    /// Where to listen: IP:PORT, or unix:/path/to.sock
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: Listen,
    /// Allow changes: the job editor, enable, disable, run now, kill (read-only without it)
    #[arg(long)]
    pub allow_actions: bool,
    /// Listen on a non-loopback address without TLS (only on a network you trust)
    #[arg(long)]
    pub insecure_listen: bool,
    /// HTTPS: the certificate chain (PEM)
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the private key (PEM)
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Worker threads answering requests (live-output streams get threads of their own)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Read a password on stdin, print its argon2 hash for [web] password_hash, and exit
    #[arg(long)]
    pub hash_password: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    if ctx.global.json {
        crate::invalid!(
            "web serves pages: --json has no meaning here (the JSON of every page is under /api/)"
        );
    }
    if args.hash_password {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\n', '\r']);
        if password.chars().count() < 8 {
            crate::invalid!("the password must be at least 8 characters long");
        }
        println!("{}", web::auth::hash_password(password)?);
        return Ok(ExitCode::Ok);
    }
    let config = ctx.config()?.clone();
    let opts = web::Options {
        listen: args.listen,
        db: ctx.db_path(),
        system: ctx.system().to_string(),
        allow_actions: args.allow_actions,
        insecure_listen: args.insecure_listen,
        tls: args.tls_cert.zip(args.tls_key),
        workers: usize::from(args.workers),
        config,
    };
    let host = Arc::new(WebHost {
        global: ctx.global.clone(),
    });
    match web::serve(opts, host) {
        Ok(()) => Ok(ExitCode::Ok),
        Err(e) => Err(e.into()),
    }
}

struct WebHost {
    global: Global,
}

/// A refusal as the web shows it: the CLI's exit status as an HTTP status, and the field the
/// message is about.
fn action_error(e: &Failure) -> ActionError {
    let message = e.to_string();
    let not_found = matches!(
        e.find::<StoreError>(),
        Some(StoreError::JobNotFound { .. } | StoreError::ExecutionNotFound(_))
    );
    let status = match e.code() {
        _ if not_found => 404,
        ExitCode::Usage => 422,
        ExitCode::Forbidden => 403,
        _ => 500,
    };
    ActionError {
        status,
        field: field_of(&message),
        message,
    }
}

/// Which editor field a CLI message is about.
fn field_of(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    [
        ("job name", "name"),
        ("--schedule", "schedule"),
        ("schedule", "schedule"),
        ("cron", "schedule"),
        ("--timeout", "timeout"),
        ("timeout", "timeout"),
        ("--retry-delay", "retry_delay"),
        ("--retries", "retries"),
        ("--priority", "priority"),
        ("category", "category"),
        ("time zone", "timezone"),
        ("timezone", "timezone"),
        ("--param", "params"),
        ("param", "params"),
        ("nothing to run", "argv"),
        ("program", "argv"),
        ("allow", "argv"),
        ("executor", "command"),
    ]
    .iter()
    .find(|(needle, _)| m.contains(needle))
    .map(|(_, f)| *f)
}

fn bad(field: &'static str, message: String) -> ActionError {
    ActionError {
        status: 422,
        field: Some(field),
        message,
    }
}

impl WebHost {
    /// A command context for `system` whose audit identity is the web user.
    fn ctx(&self, user: &User, system: &str) -> Result<Ctx, ActionError> {
        super::validate_system(system).map_err(|e| action_error(&e))?;
        let mut global = self.global.clone();
        global.system = system.to_string();
        global.json = true;
        global.quiet = true;
        let mut ctx = Ctx::new(global);
        ctx.creates_db = false;
        let _ = ctx.actor.set(Actor {
            uid: crate::host::euid(),
            user: user.name.clone(),
            sudo_user: None,
        });
        Ok(ctx)
    }

    /// The web's own admin rule on top of the CLI's: a critical job needs a web admin. A refusal
    /// is recorded in the audit log as the CLI records its own.
    fn require_web_admin(
        &self,
        ctx: &Ctx,
        user: &User,
        action: &str,
        job: &Job,
    ) -> Result<(), ActionError> {
        if !job.is_critical || user.admin {
            return Ok(());
        }
        let message = format!(
            "{} is a critical job: the web user {} is no admin ([web] admin = true in a root-owned config file)",
            job.name, user.name
        );
        let store = ctx.store().map_err(|e| action_error(&e))?;
        store
            .record_audit(
                ctx.by(action),
                &AuditEvent {
                    system: ctx.system(),
                    target: Some(&job.name),
                    refused: true,
                    reason: Some(message.clone()),
                    diff: serde_json::Value::Object(Default::default()),
                },
                ctx.now(),
            )
            .map_err(|e| action_error(&e.into()))?;
        Err(ActionError {
            status: 403,
            field: None,
            message: format!("refused: {action} {message}"),
        })
    }

    fn job(&self, ctx: &Ctx, name: &str) -> Result<Job, ActionError> {
        let store = ctx.store().map_err(|e| action_error(&e))?;
        store
            .job(ctx.system(), name)
            .map_err(|e| action_error(&e.into()))
    }
}

/// The form as the flags of `add` (`before` None) or `edit` (only what changed).
fn job_args(form: &JobForm, before: Option<&JobForm>) -> Result<JobArgs, ActionError> {
    let changed = |now: &str, was: fn(&JobForm) -> &str| -> Option<String> {
        match before {
            None => (!now.is_empty()).then(|| now.to_string()),
            Some(b) if was(b) == now => None,
            Some(_) => Some(now.to_string()),
        }
    };
    let clearable = |now: &str, was: fn(&JobForm) -> &str| {
        changed(now, was).map(|v| if v.is_empty() { "none".to_string() } else { v })
    };
    let priority = match changed(&form.priority, |f| &f.priority) {
        None => None,
        Some(p) => Some(
            p.parse::<u8>()
                .ok()
                .filter(|p| (1..=10).contains(p))
                .ok_or_else(|| bad("priority", format!("priority must be 1 to 10, got {p:?}")))?,
        ),
    };
    let retries = match changed(&form.retries, |f| &f.retries) {
        None => None,
        Some(r) => Some(r.parse::<u32>().map_err(|_| {
            bad(
                "retries",
                format!("retries must be a whole number, got {r:?}"),
            )
        })?),
    };
    let lines = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let argv_changed = before.is_none_or(|b| lines(&b.argv) != lines(&form.argv));
    let params_changed = before.is_none_or(|b| lines(&b.params) != lines(&form.params));
    let params = if params_changed {
        lines(&form.params)
    } else {
        Vec::new()
    };
    if let Some(p) = params.iter().find(|p| !p.contains('=')) {
        return Err(bad("params", format!("{p:?} is not KEY=VALUE")));
    }
    Ok(JobArgs {
        schedule: changed(&form.schedule, |f| &f.schedule),
        description: changed(&form.description, |f| &f.description),
        category: changed(&form.category, |f| &f.category),
        priority,
        timeout: clearable(&form.timeout, |f| &f.timeout),
        retries,
        retry_delay: changed(&form.retry_delay, |f| &f.retry_delay),
        backoff: None,
        max_runtime: None,
        allow_concurrent: match before {
            Some(b) if b.allow_concurrent == form.allow_concurrent => None,
            None if !form.allow_concurrent => None,
            _ => Some(form.allow_concurrent),
        },
        timezone: changed(&form.timezone, |f| &f.timezone),
        catch_up: None,
        starting_deadline: None,
        jitter: None,
        command: changed(&form.command, |f| &f.command)
            .filter(|c| before.is_some() || c != "shell"),
        params,
        alert_email: None,
        alert_slack: None,
        alert_webhook: None,
        escalate_after: None,
        disable_after: None,
        max_silence: None,
        no_alerts: None,
        critical: None,
        memory_limit: None,
        cpu_limit: None,
        cpu_quota: None,
        nofile_limit: None,
        nproc_limit: None,
        user: None,
        group: None,
        runner_labels: Vec::new(),
        after: Vec::new(),
        argv: if argv_changed {
            lines(&form.argv)
        } else {
            Vec::new()
        },
    })
}

impl web::Host for WebHost {
    fn runner_pid(&self, store: &Store) -> Option<u32> {
        let ctx = Ctx::new(self.global.clone());
        super::metrics::live_runner_pid(&ctx, store).ok().flatten()
    }

    fn metrics(&self, store: &Store) -> anyhow::Result<String> {
        let ctx = Ctx::new(self.global.clone());
        let view = super::metrics::runner_view(&ctx, store).map_err(anyhow::Error::new)?;
        Ok(crate::metrics::render(store, &view)?)
    }

    fn save_job(
        &self,
        user: &User,
        system: &str,
        original: Option<&str>,
        form: &JobForm,
    ) -> Result<String, ActionError> {
        let ctx = self.ctx(user, system)?;
        // The schedule first, with its own message next to its field.
        // `H` hashes the job's name as it will be (a rename changes it).
        let name = match form.name.trim() {
            "" => original.unwrap_or_default(),
            given => given,
        };
        if let Err(e) = crate::schedule::Schedule::parse_for(&form.schedule, system, name) {
            return Err(bad("schedule", e.to_string()));
        }
        let result = match original {
            None => {
                let args = add::Args {
                    name: form.name.clone(),
                    job: job_args(form, None)?,
                    disabled: !form.active,
                };
                add::run(args, &ctx)
            }
            Some(name) => {
                let before = self.job(&ctx, name)?;
                self.require_web_admin(&ctx, user, "edit", &before)?;
                let was = web::form_of(&before.redacted());
                let args = edit::Args {
                    name: name.to_string(),
                    rename: (form.name != name).then(|| form.name.clone()),
                    job: job_args(form, Some(&was))?,
                };
                if args.job.is_empty() && args.rename.is_none() {
                    return Ok(name.to_string()); // nothing changed (edit would open $EDITOR)
                }
                edit::run(args, &ctx)
            }
        };
        result.map_err(|e| action_error(&e))?;
        Ok(form.name.clone())
    }

    fn set_active(
        &self,
        user: &User,
        system: &str,
        name: &str,
        active: bool,
    ) -> Result<(), ActionError> {
        let ctx = self.ctx(user, system)?;
        let job = self.job(&ctx, name)?;
        if !active {
            self.require_web_admin(&ctx, user, "disable", &job)?;
        }
        jobs::set_active(jobs::NameArgs { name: name.into() }, active, &ctx)
            .map_err(|e| action_error(&e))?;
        Ok(())
    }

    /// As `run-now` from a shell, in a child process of its own (it outlives the request): the
    /// checks it would refuse on are made here first so the page can show them.
    fn run_now(&self, user: &User, system: &str, name: &str) -> Result<(), ActionError> {
        let ctx = self.ctx(user, system)?;
        let job = self.job(&ctx, name)?;
        self.require_web_admin(&ctx, user, "run-now", &job)?;
        let store = ctx.store().map_err(|e| action_error(&e))?;
        if !job.allow_concurrent {
            if let Some(e) = store
                .running(Some(job.id))
                .map_err(|e| action_error(&e.into()))?
                .first()
            {
                return Err(ActionError {
                    status: 409,
                    field: None,
                    message: format!("{} is running now (execution {})", job.name, e.id),
                });
            }
        }
        ctx.audit(
            &store,
            "run-now",
            Some(&job.name),
            Some("from the dashboard".into()),
        )
        .map_err(|e| action_error(&e))?;
        // The child writes no row of its own: it is handed this one (one row per run-now).
        let audited = store
            .audit(&crate::store::AuditFilter {
                system: Some(system.to_string()),
                target: Some(job.name.clone()),
                since: None,
                limit: Some(20),
            })
            .map_err(|e| action_error(&e.into()))?
            .into_iter()
            .find(|r| r.action == "run-now" && r.user == user.name)
            .map(|r| r.id)
            .ok_or_else(|| {
                action_error(&Failure::runtime(
                    "the audit row of this run-now is missing",
                ))
            })?;
        let exe = std::env::current_exe().map_err(|e| action_error(&e.into()))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--db")
            .arg(ctx.db_path())
            .arg("--system")
            .arg(system);
        if let Some(c) = &self.global.config {
            cmd.arg("--config").arg(c);
        }
        cmd.args([
            "--quiet",
            "run-now",
            "--audited",
            &audited.to_string(),
            name,
        ])
        // The dashboard's own credential is nothing the job needs.
        .env_remove("CRONMGR_WEB_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| action_error(&e.into()))?;
        // Reap it when it ends.
        std::thread::spawn(move || child.wait());
        Ok(())
    }

    fn kill(&self, user: &User, execution: i64) -> Result<(), ActionError> {
        let probe = self.ctx(user, &self.global.system)?;
        let store = probe.store().map_err(|e| action_error(&e))?;
        let e = store
            .execution(execution)
            .map_err(|e| action_error(&e.into()))?;
        if e.status != Status::Running {
            return Err(ActionError {
                status: 422,
                field: None,
                message: format!("execution {} is not running (it is {})", e.id, e.status),
            });
        }
        let ctx = self.ctx(user, &e.system)?;
        if let Some(job) = store
            .job_by_id(e.job_id)
            .map_err(|e| action_error(&e.into()))?
        {
            self.require_web_admin(&ctx, user, "kill", &job)?;
        }
        executions::kill(executions::KillArgs { execution }, &ctx).map_err(|e| action_error(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_point_at_their_field() {
        assert_eq!(field_of("invalid job name \"a b\""), Some("name"));
        assert_eq!(
            field_of("--timeout must be more than zero"),
            Some("timeout")
        );
        assert_eq!(field_of("--retry-delay: too long"), Some("retry_delay"));
        assert_eq!(field_of("something else entirely"), None);
    }

    #[test]
    fn an_edit_gives_only_what_changed() {
        let was = JobForm {
            name: "a".into(),
            schedule: "@daily".into(),
            timeout: "5m".into(),
            priority: "5".into(),
            argv: "/bin/true".into(),
            ..Default::default()
        };
        let mut now = was.clone();
        now.schedule = "@hourly".into();
        now.timeout = String::new();
        let args = job_args(&now, Some(&was)).unwrap();
        assert_eq!(args.schedule.as_deref(), Some("@hourly"));
        assert_eq!(args.timeout.as_deref(), Some("none"));
        assert!(args.priority.is_none() && args.argv.is_empty() && args.description.is_none());
        now.priority = "11".into();
        assert_eq!(
            job_args(&now, Some(&was)).unwrap_err().field,
            Some("priority")
        );
    }
}
