//! A `[[job]]` table to the [`Job`] it describes: every field checked for its own form (and
//! every problem of a table reported), the omitted ones at their defaults.

use serde_json::Value as Json;
use toml::Value as Toml;

use super::{JobSpec, Secs};
use crate::schedule;
use crate::store::{Backoff, CatchUp, Job};

fn positive(field: &str, value: &Option<Secs>) -> Result<Option<u64>, String> {
    match value {
        None => Ok(None),
        Some(v) => match v.secs()? {
            0 => Err(format!("{field} must be more than zero")),
            n => Ok(Some(n)),
        },
    }
}

/// The value, or None after noting the problem.
fn ok<T>(errs: &mut Vec<String>, r: Result<T, String>) -> Option<T> {
    r.map_err(|e| errs.push(e)).ok()
}

impl JobSpec {
    /// The job this table describes, in `system`, with every field it omits at its default.
    /// Checks the fields' own form; the checks every job passes (name, schedule, executor
    /// parameters, the allowlist) are the caller's, the same as for `cronmgr add`.
    pub fn to_job(&self, system: &str) -> Result<Job, String> {
        match self.to_job_all(system) {
            (job, errs) if errs.is_empty() => Ok(job),
            (_, errs) => Err(errs.join("; ")),
        }
    }

    /// [`JobSpec::to_job`] with every problem of the table, not only the first: the job (a
    /// field with a problem left at its default, so the checks every job passes can still run
    /// on the rest) and the problems.
    pub fn to_job_all(&self, system: &str) -> (Job, Vec<String>) {
        let mut errs: Vec<String> = Vec::new();
        let mut job = Job::new(system, &self.name, self.schedule.trim(), "shell");
        if let Some(after) = &self.after {
            let mut entries: Vec<String> = Vec::new();
            for entry in after {
                match crate::model::chain::After::parse(entry) {
                    Ok(a) if !entries.contains(&a.canonical()) => entries.push(a.canonical()),
                    Ok(_) => {}
                    Err(e) => errs.push(format!("after: {e}")),
                }
            }
            job.after = entries;
            if job.schedule.is_empty() {
                job.schedule = schedule::NEVER.to_string();
            }
        }
        job.description = self.description.clone().filter(|d| !d.is_empty());
        if let Some(z) = self.timezone.as_deref().filter(|z| !z.trim().is_empty()) {
            if let Some(tz) = ok(
                &mut errs,
                schedule::parse_timezone(z).map_err(|e| e.to_string()),
            ) {
                job.timezone = tz.name().to_string();
            }
        }
        if let Some(c) = &self.category {
            let c = c.trim();
            if c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch))
            {
                job.category = (!c.is_empty()).then(|| c.to_ascii_uppercase());
            } else {
                errs.push(format!(
                    "invalid category {c:?}: use letters, digits, '_' or '-'"
                ));
            }
        }
        if let Some(p) = self.priority {
            match u8::try_from(p).ok().filter(|p| (1..=10).contains(p)) {
                Some(p) => job.priority = p,
                None => errs.push(format!("priority must be 1 (most urgent) to 10, got {p}")),
            }
        }
        job.timeout = ok(&mut errs, positive("timeout", &self.timeout)).flatten();
        job.retries = self.retries.unwrap_or(0);
        if let Some(d) = &self.retry_delay {
            if let Some(secs) = ok(&mut errs, d.secs()) {
                job.retry_delay = secs;
            }
        }
        job.backoff = self.backoff.unwrap_or(Backoff::Linear);
        job.max_runtime = ok(&mut errs, positive("max_runtime", &self.max_runtime)).flatten();
        job.allow_concurrent = self.allow_concurrent.unwrap_or(false);
        job.catch_up = self.catch_up.unwrap_or(CatchUp::None);
        job.starting_deadline = ok(
            &mut errs,
            positive("starting_deadline", &self.starting_deadline),
        )
        .flatten();
        job.jitter = ok(&mut errs, positive("jitter", &self.jitter)).flatten();
        job.is_active = self.enabled.unwrap_or(true);
        job.alerts_enabled = self.alerts.unwrap_or(true);
        if let Some(e) = self
            .alert_email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if e.split(',')
                .all(|a| crate::model::looks_like_email(a.trim()))
            {
                job.alert_email = Some(e.to_string());
            } else {
                errs.push(format!(
                    "alert_email must be an email address or a comma-separated list of them, got {e:?}"
                ));
            }
        }
        for (key, given, url) in [
            ("alert_slack", &self.alert_slack, &mut job.alert_slack),
            ("alert_webhook", &self.alert_webhook, &mut job.alert_webhook),
        ] {
            match given.as_deref().map(str::trim) {
                // The keep marker: the caller puts the stored URL in its place.
                Some(crate::model::secrets::KEEP) => {
                    *url = Some(crate::model::secrets::KEEP.into())
                }
                Some(v) => *url = ok(&mut errs, crate::model::alert::parse_url(key, v)).flatten(),
                None => {}
            }
        }
        for (key, value) in [
            ("escalate_after", self.escalate_after),
            ("disable_after", self.disable_after),
        ] {
            if value == Some(0) {
                errs.push(format!("{key} must be 1 or more"));
            }
        }
        job.escalate_after = self.escalate_after;
        job.disable_after = self.disable_after;
        job.max_silence = ok(&mut errs, positive("max_silence", &self.max_silence)).flatten();
        job.is_critical = self.critical.unwrap_or(false);
        if let Some(m) = &self.memory_limit {
            match ok(&mut errs, m.bytes()) {
                Some(0) => errs.push("memory_limit must be more than zero".into()),
                Some(n) => job.memory_limit = Some(n),
                None => {}
            }
        }
        job.cpu_limit = ok(&mut errs, positive("cpu_limit", &self.cpu_limit)).flatten();
        if let Some(q) = &self.cpu_quota {
            let text = match q {
                Toml::String(s) => Some(s.clone()),
                Toml::Integer(i) => Some(i.to_string()),
                Toml::Float(f) => Some(f.to_string()),
                _ => None,
            };
            match text {
                Some(t) => {
                    job.cpu_quota =
                        ok(&mut errs, crate::model::quota::parse("cpu_quota", &t)).flatten()
                }
                None => errs.push(format!(
                    "cpu_quota must be a number of CPUs (0.5) or a percent (\"50%\"), got {q}"
                )),
            }
        }
        for (key, value) in [
            ("nofile_limit", self.nofile_limit),
            ("nproc_limit", self.nproc_limit),
        ] {
            if value == Some(0) {
                errs.push(format!("{key} must be 1 or more"));
            }
        }
        job.nofile_limit = self.nofile_limit;
        job.nproc_limit = self.nproc_limit;
        let name = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
        };
        job.run_user = name(&self.user);
        job.run_group = name(&self.group);
        if let Some(l) = &self.runner_labels {
            let labels = crate::runner::fleet::labels(l).map_err(|e| format!("runner_labels: {e}"));
            job.runner_labels = ok(&mut errs, labels).unwrap_or_default();
        }
        if let Some(command) = &self.command {
            job.command = command.trim().to_string();
        }
        if let Some(params) = &self.params {
            for (k, v) in params {
                job.params.insert(k.clone(), toml_to_json(v));
            }
        }
        if let Some(argv) = &self.argv {
            if job.command != "shell" {
                errs.push(format!(
                    "argv is for the shell executor, not {:?}; give its parameters in [job.params]",
                    job.command
                ));
            } else if job.params.contains_key("argv") {
                errs.push("argv is given twice: as argv and as params.argv".into());
            } else {
                let argv = argv.iter().cloned().map(Json::String).collect();
                job.params.insert("argv".into(), Json::Array(argv));
            }
        }
        // Every number within its range (the keys are the fields' names), once the fields
        // themselves read.
        if errs.is_empty() {
            ok(&mut errs, crate::model::bounds::check_job(&job));
        }
        (job, errs)
    }
}

/// TOML to JSON; dates and times become their text.
pub fn toml_to_json(v: &Toml) -> Json {
    match v {
        Toml::String(s) => Json::String(s.clone()),
        Toml::Integer(i) => Json::from(*i),
        Toml::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(f.to_string())),
        Toml::Boolean(b) => Json::Bool(*b),
        Toml::Datetime(d) => Json::String(d.to_string()),
        Toml::Array(items) => Json::Array(items.iter().map(toml_to_json).collect()),
        Toml::Table(t) => Json::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}
