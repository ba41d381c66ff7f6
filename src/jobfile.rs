//! Job files (`jobs.d/*.toml`): the format, loading with file and line in every error, and the
//! conversion to and from [`Job`].
//!
//! ```toml
//! [[job]]
//! name = "nightly-backup"
//! description = "dump the app database"
//! schedule = "0 3 * * *"
//! argv = ["/usr/bin/pg_dump", "-f", "/backup/db.sql", "app"]
//! category = "BACKUP"
//! timeout = "30m"
//! ```
//!
//! A file is declarative: a field it leaves out takes its default, whatever the job had before.
//! [`JobSpec::from_job`] leaves out every field at its default, so export → apply is a no-op.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;
use toml::Value as Toml;

use crate::duration;
use crate::schedule;
use crate::store::{Backoff, CatchUp, Job};

/// One `[[job]]` table, field for field what `cronmgr add` takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The executor; default `shell`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Shorthand for the shell executor's `params.argv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runtime: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_concurrent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// False: no alert of any kind for this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<bool>,
    /// Alert addresses instead of the system's `alert_email` (comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_email: Option<String>,
    /// Consecutive failures before escalation (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_after: Option<u32>,
    /// Consecutive failures before the job disables itself (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_after: Option<u32>,
    /// How long without a success before a missed-run alert (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_silence: Option<Secs>,
    /// Only admins may change, remove, disable, run or kill it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
    /// Address space per process: bytes or `"512M"` (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<Size>,
    /// CPU time per process (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<Secs>,
    /// Open files per process (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile_limit: Option<u64>,
    /// Processes of the job's user (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nproc_limit: Option<u64>,
    /// Run as this user (root runner only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run with this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Run only on runners carrying all these labels (`cronmgr run --label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_labels: Option<Vec<String>>,
    /// Executor parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<toml::Table>,
}

/// A size in a file: bytes (`1048576`) or text (`"512M"`, `"2G"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Size {
    Number(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Number(n) => Ok(*n),
            Size::Text(t) => crate::model::size::parse_bytes(t),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Size::Number(n) => s.serialize_u64(*n),
            Size::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes (1048576) or text (\"512M\", \"2G\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size::Number)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                crate::model::size::parse_bytes(v).map_err(E::custom)?;
                Ok(Size::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration in a file: whole seconds (`90`) or text (`"30m"`, `"1h30m"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secs {
    Number(u64),
    Text(String),
}

impl Secs {
    fn secs(&self) -> Result<u64, String> {
        match self {
            Secs::Number(n) => Ok(*n),
            Secs::Text(t) => duration::parse_secs(t).map_err(|e| e.to_string()),
        }
    }

    /// The compact form (`"30m"`); zero stays a number, since `"0ms"` would not read back.
    fn of(secs: u64) -> Secs {
        if secs == 0 {
            Secs::Number(0)
        } else {
            Secs::Text(duration::human_secs(secs))
        }
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Secs::Number(n) => s.serialize_u64(*n),
            Secs::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secs, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds (90) or text (\"30s\", \"5m\", \"2h\", \"1d\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                u64::try_from(v)
                    .map(Secs::Number)
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                duration::parse_secs(v).map_err(E::custom)?;
                Ok(Secs::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A whole file: any number of `[[job]]` tables.
#[derive(Debug, Default, Serialize)]
pub struct JobFile {
    pub job: Vec<JobSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    job: Vec<toml::Spanned<JobSpec>>,
}

/// A problem in a job file, with its 1-based line (0 when the file as a whole is at fault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// A job read from a file, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub spec: JobSpec,
    pub file: String,
    /// The line of its `[[job]]` header.
    pub line: usize,
}

impl Located {
    /// `file:line`, for messages and plans.
    pub fn source(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    pub fn problem(&self, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            line: self.line,
            message: message.into(),
        }
    }
}

/// The 1-based line of any byte offset of a text, found by a binary search over where each line
/// starts: a file of n jobs costs O(n log n), not a scan from the top for every job.
struct Lines(Vec<usize>);

impl Lines {
    fn of(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|&(_, b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Lines(starts)
    }

    fn line(&self, offset: usize) -> usize {
        // Lines starting at or before the offset; the first line starts at 0, so this is >= 1.
        self.0.partition_point(|&start| start <= offset)
    }
}

/// Parse a job file's text; `file` names it in problems. Never panics, whatever the text.
pub fn parse(file: &str, text: &str) -> Result<Vec<Located>, Problem> {
    let lines = Lines::of(text);
    let raw: RawFile = toml::from_str(text).map_err(|e| Problem {
        file: file.to_string(),
        line: e.span().map_or(0, |s| lines.line(s.start)),
        message: e.message().trim().to_string(),
    })?;
    Ok(raw
        .job
        .into_iter()
        .map(|spanned| {
            let line = lines.line(spanned.span().start);
            Located {
                spec: spanned.into_inner(),
                file: file.to_string(),
                line,
            }
        })
        .collect())
}

/// Parse a job file, reporting every problem: when the file as a whole does not parse, each
/// `[[job]]` table is parsed on its own, so a mistake in one job hides none of the others'.
/// Returns the jobs that parsed and the problems found.
pub fn parse_all(file: &str, text: &str) -> (Vec<Located>, Vec<Problem>) {
    let whole = match parse(file, text) {
        Ok(jobs) => return (jobs, Vec::new()),
        Err(p) => p,
    };
    // Where each `[[job]]` header starts (the first piece is what comes before any).
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("[[job]]") && offset > 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    if starts.len() < 2 {
        return (Vec::new(), vec![whole]);
    }
    starts.push(text.len());
    let lines = Lines::of(text);
    let (mut jobs, mut problems) = (Vec::new(), Vec::new());
    for piece in starts.windows(2) {
        let (from, to) = (piece[0], piece[1]);
        // Lines before this piece, so its own line numbers become the file's.
        let before = lines.line(from) - 1;
        match parse(file, &text[from..to]) {
            Ok(found) => jobs.extend(found.into_iter().map(|mut j| {
                j.line += before;
                j
            })),
            Err(mut p) => {
                if p.line > 0 {
                    p.line += before;
                }
                problems.push(p);
            }
        }
    }
    if problems.is_empty() {
        // The pieces parse alone but not together (a name or table repeated across jobs).
        problems.push(whole);
    }
    (jobs, problems)
}

/// Render jobs as a job file.
pub fn render(specs: Vec<JobSpec>) -> Result<String, String> {
    toml::to_string(&JobFile { job: specs }).map_err(|e| e.to_string())
}

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

    /// The table for a job, leaving out every field at its default.
    /// Secrets are written as the keep marker (`{ secret = "(stored)" }`), never their value.
    pub fn from_job(job: &Job) -> Result<JobSpec, String> {
        let mut params = crate::model::secrets::keep_markers(&job.params);
        let mut argv = None;
        if job.command == "shell" {
            if let Some(Json::Array(items)) = params.get("argv") {
                let strings: Option<Vec<String>> =
                    items.iter().map(|v| v.as_str().map(String::from)).collect();
                if let Some(strings) = strings.filter(|s| !s.is_empty()) {
                    argv = Some(strings);
                    params.remove("argv");
                }
            }
        }
        let params = if params.is_empty() {
            None
        } else {
            let mut table = toml::Table::new();
            for (k, v) in &params {
                let v = json_to_toml(v)
                    .ok_or_else(|| format!("parameter {k:?} ({v}) cannot be written as TOML"))?;
                table.insert(k.clone(), v);
            }
            Some(table)
        };
        let secs = |v: Option<u64>| v.map(Secs::of);
        Ok(JobSpec {
            name: job.name.clone(),
            description: job.description.clone().filter(|d| !d.is_empty()),
            schedule: job.schedule.clone(),
            timezone: (!job.timezone.is_empty()).then(|| job.timezone.clone()),
            command: (job.command != "shell").then(|| job.command.clone()),
            argv,
            category: job.category.clone(),
            priority: (job.priority != 5).then_some(i64::from(job.priority)),
            timeout: secs(job.timeout),
            retries: (job.retries != 0).then_some(job.retries),
            retry_delay: (job.retry_delay != 60).then(|| Secs::of(job.retry_delay)),
            backoff: (job.backoff != Backoff::Linear).then_some(job.backoff),
            max_runtime: secs(job.max_runtime),
            allow_concurrent: job.allow_concurrent.then_some(true),
            catch_up: (job.catch_up != CatchUp::None).then_some(job.catch_up),
            starting_deadline: secs(job.starting_deadline),
            enabled: (!job.is_active).then_some(false),
            alerts: (!job.alerts_enabled).then_some(false),
            alert_email: job.alert_email.clone(),
            escalate_after: job.escalate_after,
            disable_after: job.disable_after,
            max_silence: secs(job.max_silence),
            critical: job.is_critical.then_some(true),
            memory_limit: job
                .memory_limit
                .map(|m| Size::Text(crate::model::size::compact_bytes(m))),
            cpu_limit: secs(job.cpu_limit),
            nofile_limit: job.nofile_limit,
            nproc_limit: job.nproc_limit,
            user: job.run_user.clone(),
            group: job.run_group.clone(),
            runner_labels: (!job.runner_labels.is_empty()).then(|| job.runner_labels.clone()),
            params,
        })
    }
}

/// The fields a file controls that differ between two versions of a job, by their file names.
/// Compares every stored field except bookkeeping, so fields added to [`Job`] later count too.
pub fn changed_fields(old: &Job, new: &Job) -> Vec<String> {
    const BOOKKEEPING: &[&str] = &[
        "id",
        "system",
        "created_at",
        "updated_at",
        "last_run_at",
        "next_run_at",
        // Kept by the runner, not by files.
        "disabled_reason",
        "failure_streak",
        "last_success_at",
        "enabled_at",
    ];
    let as_map = |job: &Job| match serde_json::to_value(job) {
        Ok(Json::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (a, b) = (as_map(old), as_map(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !BOOKKEEPING.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| match k.as_str() {
            "is_active" => "enabled".to_string(),
            "is_critical" => "critical".to_string(),
            "run_user" => "user".to_string(),
            "run_group" => "group".to_string(),
            _ => k.clone(),
        })
        .collect()
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

/// JSON to TOML; None for what TOML cannot hold (null, integers beyond i64).
pub fn json_to_toml(v: &Json) -> Option<Toml> {
    Some(match v {
        Json::Null => return None,
        Json::Bool(b) => Toml::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Toml::Integer(i),
            None if n.is_f64() => Toml::Float(n.as_f64()?),
            None => return None,
        },
        Json::String(s) => Toml::String(s.clone()),
        Json::Array(items) => Toml::Array(items.iter().map(json_to_toml).collect::<Option<_>>()?),
        Json::Object(map) => Toml::Table(
            map.iter()
                .map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests;
