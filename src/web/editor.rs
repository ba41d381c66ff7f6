//! With `--allow-actions`: the job editor (create, edit) and the buttons (enable, disable, run
//! now, kill). The checks, allowlists and audit rows are the command line's, through [`Host`];
//! a refusal is shown next to the field it is about.

use std::collections::HashMap;

use maud::html;
use serde_json::json;

use super::http::{encode, Request, Response};
use super::pages::csrf;
use super::routes::{query_system, App};
use super::{ActionError, JobForm, User};
use crate::schedule::{self, Schedule};

/// The editor's pages; None when the path is not one of them.
pub fn get(
    app: &App,
    req: &Request,
    user: &User,
    parts: &[&str],
    system: &str,
) -> Option<Response> {
    match parts {
        ["jobs", "new"] => Some(form_page(
            app,
            req,
            user,
            system,
            None,
            &JobForm {
                active: true,
                priority: "5".into(),
                ..Default::default()
            },
            None,
        )),
        ["jobs", name, "edit"] => {
            let job = app.with_store(|s| Ok(s.job(system, name)?.redacted()));
            Some(match job {
                Ok(job) => {
                    let f = form_of(&job);
                    form_page(app, req, user, system, Some(name), &f, None)
                }
                Err(e) => Response::text(404, format!("{e:#}")),
            })
        }
        _ => None,
    }
}

/// The form's fields of a stored job (secrets already redacted).
pub fn form_of(job: &crate::store::Job) -> JobForm {
    let argv: Vec<String> = job
        .params
        .get("argv")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let params: Vec<String> = job
        .params
        .iter()
        .filter(|(k, _)| !(job.command == "shell" && k.as_str() == "argv"))
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    JobForm {
        name: job.name.clone(),
        schedule: job.schedule.clone(),
        description: job.description.clone().unwrap_or_default(),
        category: job.category.clone().unwrap_or_default(),
        priority: job.priority.to_string(),
        timeout: job
            .timeout
            .map(crate::duration::human_secs)
            .unwrap_or_default(),
        retries: job.retries.to_string(),
        retry_delay: crate::duration::human_secs(job.retry_delay),
        timezone: job.timezone.clone(),
        command: job.command.clone(),
        argv: if job.command == "shell" {
            argv.join("\n")
        } else {
            String::new()
        },
        params: params.join("\n"),
        allow_concurrent: job.allow_concurrent,
        active: job.is_active,
    }
}

fn form_page(
    app: &App,
    req: &Request,
    user: &User,
    system: &str,
    original: Option<&str>,
    f: &JobForm,
    error: Option<&ActionError>,
) -> Response {
    let target = match original {
        Some(n) => format!(
            "/jobs/{}/edit{}",
            encode(n),
            query_system(system, &app.opts.system)
        ),
        None => format!("/jobs/new{}", query_system(system, &app.opts.system)),
    };
    let err = |field: &str| {
        error
            .filter(|e| e.field == Some(field))
            .map(|e| e.message.clone())
    };
    let general = error
        .filter(|e| e.field.is_none())
        .map(|e| e.message.clone());
    let text = |name: &'static str, label: &str, value: &str, hint: &str| {
        html! {
            label class=(if err(name).is_some() { "field bad" } else { "field" }) {
                span { (label) }
                input name=(name) value=(value) id=(format!("f-{name}"));
                @if let Some(m) = err(name) { span.error { (m) } } @else if !hint.is_empty() { span.hint { (hint) } }
            }
        }
    };
    let body = html! {
        h1 { @if let Some(n) = original { "Edit " (n) } @else { "New job" } span.muted { " · " (system) } }
        @if let Some(m) = &general { p.error.card { (m) } }
        form.editor.card method="post" action=(target) {
            (csrf(Some(user)))
            div.grid2 {
                (text("name", "Name", &f.name, "letters, digits, '.', '_', '-'"))
                label class=(if err("schedule").is_some() { "field bad" } else { "field" }) {
                    span { "Schedule" }
                    input name="schedule" value=(f.schedule) id="f-schedule" data-describe="/api/describe" autocomplete="off";
                    @if let Some(m) = err("schedule") { span.error #schedule-help { (m) } }
                    @else { span.hint #schedule-help { (describe_text(&f.schedule, &f.timezone)) } }
                    ol.fires #schedule-next {}
                }
                (text("description", "Description", &f.description, ""))
                (text("category", "Category", &f.category, "BACKUP, CLEANUP, SYNC, …"))
                (text("priority", "Priority", &f.priority, "1 (first) to 10"))
                (text("timezone", "Time zone", &f.timezone, "IANA name; empty: the system's"))
                (text("timeout", "Timeout", &f.timeout, "90, 30s, 5m, 2h; empty: the system's default"))
                (text("retries", "Retries", &f.retries, "further attempts after a failure"))
                (text("retry_delay", "Retry delay", &f.retry_delay, ""))
                (text("command", "Executor", if f.command.is_empty() { "shell" } else { &f.command }, "shell, http, cleanup, backup, sqlite, …"))
            }
            label class=(if err("argv").is_some() { "field bad" } else { "field" }) {
                span { "Program and arguments (shell), one per line" }
                textarea name="argv" rows="4" { (f.argv) }
                @if let Some(m) = err("argv") { span.error { (m) } }
            }
            label class=(if err("params").is_some() { "field bad" } else { "field" }) {
                span { "Parameters, one KEY=VALUE per line (VALUE may be JSON)" }
                textarea name="params" rows="3" { (f.params) }
                @if let Some(m) = err("params") { span.error { (m) } }
            }
            div.checks {
                label { input type="checkbox" name="allow_concurrent" value="1" checked[f.allow_concurrent]; " allow concurrent runs" }
                @if original.is_none() { label { input type="checkbox" name="active" value="1" checked[f.active]; " enabled" } }
            }
            div.actions { button.primary { "Save" } a.button href=(original.map(|n| format!("/jobs/{}", encode(n))).unwrap_or_else(|| "/jobs".into())) { "Cancel" } }
        }
    };
    let mut r = app.page(req, user, "Editor", "/jobs", body);
    if let Some(e) = error {
        r.status = e.status;
    }
    r
}

fn describe_text(expr: &str, tz: &str) -> String {
    if expr.trim().is_empty() {
        return "5 fields (6 with seconds) or @daily, @hourly, …".into();
    }
    match Schedule::parse(expr.trim()) {
        Ok(s) => {
            let zone = if tz.is_empty() {
                String::new()
            } else {
                format!(" ({tz})")
            };
            format!("{}{zone}", s.describe())
        }
        Err(e) => e.to_string(),
    }
}

/// `GET /api/describe?schedule=EXPR&timezone=ZONE`: the schedule in words and its next fire
/// times, for the editor as you type.
pub fn describe(req: &Request, system_tz: chrono_tz::Tz) -> Response {
    let expr = req.query.get("schedule").map(|s| s.trim()).unwrap_or("");
    let zone = req.query.get("timezone").map(|s| s.trim()).unwrap_or("");
    let tz = if zone.is_empty() {
        Ok(system_tz)
    } else {
        schedule::parse_timezone(zone)
    };
    let tz = match tz {
        Ok(tz) => tz,
        Err(e) => {
            return Response::json(
                422,
                &json!({"valid": false, "field": "timezone", "error": e.to_string()}),
            )
        }
    };
    match Schedule::parse(expr) {
        Ok(s) => {
            let next = super::views::upcoming(&s, tz, 5);
            Response::json(
                200,
                &json!({
                    "valid": true,
                    "description": s.describe(),
                    "timezone": tz.name(),
                    "next": next.iter().map(|(t, n)| json!({"at": t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string(), "dst_note": n})).collect::<Vec<_>>(),
                }),
            )
        }
        Err(e) => Response::json(
            422,
            &json!({"valid": false, "field": "schedule", "error": e.to_string()}),
        ),
    }
}

fn parse_form(form: &HashMap<String, String>) -> JobForm {
    let get = |k: &str| {
        form.get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    JobForm {
        name: get("name"),
        schedule: get("schedule"),
        description: get("description"),
        category: get("category"),
        priority: get("priority"),
        timeout: get("timeout"),
        retries: get("retries"),
        retry_delay: get("retry_delay"),
        timezone: get("timezone"),
        command: get("command"),
        argv: form.get("argv").cloned().unwrap_or_default(),
        params: form.get("params").cloned().unwrap_or_default(),
        allow_concurrent: form.get("allow_concurrent").is_some_and(|v| v == "1"),
        active: form.get("active").is_some_and(|v| v == "1"),
    }
}

fn fail(e: ActionError) -> Response {
    Response::text(e.status, e.message)
}

/// A POST of the editor or a button (CSRF already checked).
pub fn post(
    app: &App,
    req: &Request,
    user: &User,
    path: &str,
    form: &HashMap<String, String>,
) -> Response {
    let system = req
        .query
        .get("system")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| app.opts.system.clone());
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let back = |name: &str| {
        format!(
            "/jobs/{}{}",
            encode(name),
            query_system(&system, &app.opts.system)
        )
    };
    match parts.as_slice() {
        ["jobs", "new"] | ["jobs", _, "edit"] => {
            let original = match parts.as_slice() {
                ["jobs", name, "edit"] => Some(*name),
                _ => None,
            };
            let f = parse_form(form);
            match app.host.save_job(user, &system, original, &f) {
                Ok(name) => Response::redirect(&back(&name)),
                Err(e) => form_page(app, req, user, &system, original, &f, Some(&e)),
            }
        }
        ["jobs", name, action @ ("enable" | "disable")] => {
            match app
                .host
                .set_active(user, &system, name, *action == "enable")
            {
                Ok(()) => Response::redirect(&back(name)),
                Err(e) => fail(e),
            }
        }
        ["jobs", name, "run"] => match app.host.run_now(user, &system, name) {
            Ok(()) => Response::redirect(&back(name)),
            Err(e) => fail(e),
        },
        ["executions", id, "kill"] => match id.parse::<i64>() {
            Ok(id) => match app.host.kill(user, id) {
                Ok(()) => Response::redirect(&format!("/executions/{id}")),
                Err(e) => fail(e),
            },
            Err(_) => Response::text(404, "no such execution"),
        },
        _ => Response::text(404, "no such action"),
    }
}
