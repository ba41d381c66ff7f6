//! The HTML pages. maud escapes every interpolated value; charts come from [`super::charts`]
//! (their own escaping) and are the only raw markup.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::http::encode;
use super::User;
use crate::store::{ExecutionBrief, Status};

/// What every page's frame needs.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The nav entry to highlight.
    pub section: &'a str,
    pub user: Option<&'a User>,
    pub system: &'a str,
    pub systems: &'a [String],
    pub allow_actions: bool,
}

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/jobs", "Jobs"),
    ("/timeline", "Timeline"),
    ("/alerts", "Alerts"),
    ("/audit", "Audit"),
    ("/settings", "Settings"),
    ("/runners", "Runners"),
];

pub fn layout(f: &Frame<'_>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (f.title) " · cronmgr" }
                link rel="stylesheet" href="/static/style.css";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "cronmgr" }
                    nav {
                        @for (href, label) in NAV {
                            a href=(href) class=(if *href == f.section { "on" } else { "" }) { (label) }
                        }
                    }
                    div.right {
                        @if f.systems.len() > 1 {
                            form.sys method="get" action="" {
                                select name="system" data-autosubmit="1" {
                                    @for s in f.systems {
                                        option value=(s) selected[s == f.system] { (s) }
                                    }
                                }
                                noscript { button { "show" } }
                            }
                        } @else {
                            span.muted { "system " (f.system) }
                        }
                        @if !f.allow_actions { span.tag { "read-only" } }
                        @if let Some(u) = f.user {
                            span.muted { (u.name) @if u.admin { " (admin)" } }
                            @if u.name.starts_with("web:") {
                                form.inline method="post" action="/logout" {
                                    (csrf(f.user))
                                    button.link { "log out" }
                                }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

/// The hidden CSRF field of a form.
pub fn csrf(user: Option<&User>) -> Markup {
    html! {
        @if let Some(t) = user.and_then(|u| u.csrf.as_deref()) {
            input type="hidden" name="csrf" value=(t);
        }
    }
}

pub fn login(error: Option<&str>, next: &str) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · cronmgr" }
                link rel="stylesheet" href="/static/style.css";
            }
            body.login {
                form.card method="post" action="/login" {
                    h1 { "cronmgr" }
                    @if let Some(e) = error { p.error { (e) } }
                    input type="hidden" name="next" value=(next);
                    label { "User" input name="user" autocomplete="username" value="web"; }
                    label { "Password" input name="password" type="password" autocomplete="current-password" autofocus; }
                    button.primary { "Log in" }
                }
            }
        }
    }
    .into_string()
}

pub fn status_badge(s: Status) -> Markup {
    html! { span class=(format!("badge {}", s)) { (s.to_string()) } }
}

pub fn job_href(system: &str, name: &str, default_system: &str) -> String {
    if system == default_system {
        format!("/jobs/{}", encode(name))
    } else {
        format!("/jobs/{}?system={}", encode(name), encode(system))
    }
}

pub fn when(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn opt_when(t: Option<DateTime<Utc>>, tz: Tz) -> String {
    t.map(|t| when(t, tz)).unwrap_or_else(|| "–".into())
}

/// A short relative time: "in 4m", "3h ago".
pub fn rel(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let a = secs.unsigned_abs();
    let s = if a < 60 {
        format!("{a}s")
    } else if a < 3600 {
        format!("{}m", a / 60)
    } else if a < 86400 {
        format!(
            "{}h{}",
            a / 3600,
            if a % 3600 >= 60 {
                format!("{}m", (a % 3600) / 60)
            } else {
                String::new()
            }
        )
    } else {
        format!("{}d", a / 86400)
    };
    if secs >= 0 {
        format!("in {s}")
    } else {
        format!("{s} ago")
    }
}

pub fn ms(d: Option<i64>) -> String {
    match d {
        None => "–".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => crate::duration::human_secs((ms / 1000).max(0) as u64),
    }
}

/// A table of executions without output.
pub fn executions_table(
    rows: &[ExecutionBrief],
    tz: Tz,
    default_system: &str,
    with_job: bool,
) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { "none" }
        } @else {
            table.grid {
                thead { tr {
                    th.num { "ID" }
                    @if with_job { th { "Job" } }
                    th { "Status" } th { "Scheduled" } th.num { "Duration" } th.num { "Exit" }
                } }
                tbody {
                    @for e in rows {
                        tr {
                            td.num { a href=(format!("/executions/{}", e.id)) { (e.id) } }
                            @if with_job { td { a href=(job_href(&e.system, &e.job, default_system)) { (e.job) } } }
                            td { (status_badge(e.status))
                                @if let Some(by) = &e.cancelled_by { " " span.muted { "by " (by) } } }
                            td.mono { (when(e.scheduled_for, tz)) }
                            td.num { (ms(e.duration_ms)) }
                            td.num { (e.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "–".into())) }
                        }
                    }
                }
            }
        }
    }
}

/// A chart block.
pub fn chart(title: &str, svg: String) -> Markup {
    html! {
        figure.chart-box {
            figcaption { (title) }
            (PreEscaped(svg))
        }
    }
}

/// Name/value rows.
pub fn pairs(rows: &[(&str, Markup)]) -> Markup {
    html! {
        dl.pairs {
            @for (k, v) in rows {
                dt { (k) } dd { (v) }
            }
        }
    }
}

pub fn not_found(what: &str) -> Markup {
    html! { section.card { h1 { "Not found" } p { (what) } p { a href="/" { "Back to the overview" } } } }
}
