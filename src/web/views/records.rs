//! The pages of what happened and who runs it: the 24-hour timeline, alerts, the audit log,
//! settings per system, the fleet's runners.

use super::*;

pub fn timeline(c: &Ctx<'_>) -> View {
    let st = c.store;
    let settings = st.settings(c.system)?;
    let tz = system_tz(&settings);
    let now = Utc::now();
    let end = now + Duration::hours(24);
    let mut lanes = Vec::new();
    for j in st.jobs(&JobFilter {
        system: Some(c.system.to_string()),
        active: Some(true),
        ..Default::default()
    })? {
        let Ok(s) = Schedule::parse_for(&j.schedule, &j.system, &j.name) else {
            continue;
        };
        let fires = s.fires_between(now, end, job_tz(&j, &settings), 2000);
        if fires.is_empty() {
            continue;
        }
        lanes.push(Lane {
            href: job_href(&j.system, &j.name, c.default_system),
            label: j.name,
            priority: j.priority,
            fires,
        });
    }
    lanes.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.label.cmp(&b.label)));
    let svg = charts::timeline(now, 24, &lanes, tz);
    let body = html! {
        h1 { "Timeline" span.muted { " · next 24 hours · " (tz.name()) " · by priority" } }
        section.card.wide { (maud::PreEscaped(svg)) }
    };
    let api = json!(lanes
        .iter()
        .map(|l| json!({"job": l.label, "priority": l.priority, "fires": l.fires}))
        .collect::<Vec<_>>());
    Ok((body, api))
}

pub fn alerts(c: &Ctx<'_>) -> View {
    let alerts = c.store.alerts(Some(c.system), false, 100)?;
    let tz = system_tz(&c.store.settings(c.system)?);
    let body = html! {
        h1 { "Alerts" span.count { (alerts.len()) } }
        table.grid {
            thead { tr { th.num { "ID" } th { "Kind" } th { "State" } th { "Job" } th { "Summary" } th { "Created" } th { "Resolved" } th { "Deliveries" } } }
            tbody { @for a in &alerts { tr {
                td.num { (a.id) }
                td { (a.kind.to_string()) }
                td { span class=(if a.resolved_at.is_none() { "badge failed" } else { "badge success" }) { (a.state.to_string()) } }
                td { @if let Some(j) = &a.job { a href=(job_href(&a.system, j, c.default_system)) { (j) } } }
                td { (a.summary) }
                td.mono { (when(a.created_at, tz)) }
                td.mono { (opt_when(a.resolved_at, tz)) }
                td { @for d in &a.deliveries {
                    span class=(format!("badge {}", match d.state.to_string().as_str() { "sent" => "success", "failed" => "failed", _ => "running" }))
                        title=(d.last_error.clone().unwrap_or_default()) { (d.channel.to_string()) " " (d.state.to_string()) }
                    " "
                } }
            } } }
        }
    };
    Ok((body, serde_json::to_value(&alerts)?))
}

pub fn audit(c: &Ctx<'_>) -> View {
    let rows = c.store.audit(&AuditFilter {
        system: Some(c.system.to_string()),
        limit: Some(200),
        ..Default::default()
    })?;
    let tz = system_tz(&c.store.settings(c.system)?);
    let body = html! {
        h1 { "Audit log" span.muted { " · newest first, last 200" } }
        table.grid {
            thead { tr { th { "At" } th { "User" } th { "Action" } th { "Target" } th { "Outcome" } th { "Change" } } }
            tbody { @for a in &rows { tr {
                td.mono { (when(a.at, tz)) }
                td { (a.user) @if let Some(s) = &a.sudo_user { span.muted { " (sudo " (s) ")" } } }
                td { (a.action) }
                td { (a.target.clone().unwrap_or_default()) }
                td { span class=(if a.outcome == "ok" { "badge success" } else { "badge failed" }) { (a.outcome) }
                     @if let Some(r) = &a.reason { " " span.muted { (r) } } }
                td.clip.mono { @if a.diff.as_object().is_some_and(|m| !m.is_empty()) { (a.diff.to_string()) } }
            } } }
        }
    };
    Ok((body, serde_json::to_value(&rows)?))
}

pub fn settings(c: &Ctx<'_>) -> View {
    let mut all = Vec::new();
    for sys in c.store.systems()? {
        let s = c.store.settings(&sys)?.redacted();
        all.push(s);
    }
    if all.is_empty() {
        all.push(c.store.settings(c.system)?.redacted());
    }
    let body = html! {
        h1 { "Settings" span.muted { " · per system, secrets redacted" } }
        div.cols {
            @for s in &all {
                section.card {
                    h2 { (s.system) }
                    dl.pairs { @for key in crate::model::SETTINGS_KEYS {
                        dt { (key) } dd.mono { (s.get_shown(key).unwrap_or_else(|| "–".into())) }
                    } }
                }
            }
        }
    };
    Ok((body, serde_json::to_value(&all)?))
}

pub fn runners(c: &Ctx<'_>) -> View {
    let now = Utc::now();
    let rows = c.store.runners(true)?;
    let tz = system_tz(&c.store.settings(c.system)?);
    let body = html! {
        h1 { "Runners" span.muted { " · sharing this database" } }
        @if let Some(pid) = c.runner_pid { p { "This host's runner: pid " (pid) } }
        table.grid {
            thead { tr { th.num { "ID" } th { "Host" } th.num { "PID" } th { "State" } th { "Version" } th { "Labels" } th { "Started" } th { "Heartbeat" } th.num { "Running" } } }
            tbody { @for r in &rows { tr {
                td.num { (r.id) } td { (r.host) } td.num { (r.pid) }
                td { span class=(if r.state(now) == "up" { "badge success" } else { "badge skipped" }) { (r.state(now)) } }
                td { (r.version) } td { (r.labels.join(", ")) }
                td.mono { (when(r.started_at, tz)) } td.mono { (rel(r.heartbeat_at, now)) } td.num { (r.running) }
            } } }
        }
        @if rows.is_empty() { p.muted { "No fleet runner has registered (a SQLite runner shows on the overview)." } }
    };
    Ok((body, serde_json::to_value(&rows)?))
}
