//! Crontab files as cron reads them: comments, environment lines, schedules (with `@` macros),
//! an optional user column (system crontabs), and `%` in commands. Pure: text in, entries out;
//! finding a host's crontabs on disk is [`host`]'s.
//!
//! What cronmgr cannot carry over is reported as a [`Note`] with its line, never dropped.

pub mod host;

use crate::schedule::Schedule;

/// One job line of a crontab, with the environment in force at that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// The schedule as written: five fields or an `@` macro.
    pub schedule: String,
    /// The user column of a system crontab.
    pub user: Option<String>,
    /// The command, with `\%` turned into `%` and the stdin part taken off.
    pub command: String,
    /// What cron would feed the command on stdin (the text after the first unescaped `%`, with
    /// further `%` as newlines, ending in a newline), if anything.
    pub stdin: Option<String>,
    /// Environment lines above this one, in order, except the ones cron itself interprets.
    pub env: Vec<(String, String)>,
    /// `SHELL=` in force.
    pub shell: Option<String>,
    /// `CRON_TZ=` in force.
    pub timezone: Option<String>,
    /// `MAILTO=` in force, as written (empty: cron mails nothing).
    pub mailto: Option<String>,
}

/// Something on a line that cronmgr does not carry over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub line: usize,
    pub text: String,
}

/// A line that cannot be read as cron would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Crontab {
    pub entries: Vec<Entry>,
    pub notes: Vec<Note>,
    pub errors: Vec<LineError>,
}

/// Does this path hold a system crontab, with a user column (`/etc/crontab`, `/etc/cron.d/*`)?
pub fn is_system_crontab(path: &std::path::Path) -> bool {
    path == std::path::Path::new("/etc/crontab") || path.starts_with("/etc/cron.d/")
}

/// Read a crontab. `user_column`: lines carry a user name after the schedule.
pub fn parse(text: &str, user_column: bool) -> Crontab {
    let mut tab = Crontab::default();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut shell = None;
    let mut timezone = None;
    let mut mailto = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = env_line(trimmed) {
            let note = |text: String| Note { line, text };
            match name.as_str() {
                "SHELL" => shell = Some(value),
                "CRON_TZ" => timezone = (!value.is_empty()).then_some(value),
                // Carried over by the import (see `alert_email`), or noted there.
                "MAILTO" => mailto = Some(value),
                "MAILFROM" => tab.notes.push(note(format!(
                    "{name}={value}: not carried over: alerts come from [smtp] from in cronmgr's config"
                ))),
                "RANDOM_DELAY" | "START_HOURS_RANGE" | "CRON_CORRECT_ALARM" => tab.notes.push(
                    note(format!("{name}={value}: not carried over: cronmgr has no such option")),
                ),
                _ => {
                    env.retain(|(k, _)| *k != name);
                    env.push((name, value));
                }
            }
            continue;
        }
        match entry(trimmed, line, user_column) {
            Ok(mut e) => {
                e.env = env.clone();
                e.shell = shell.clone();
                e.timezone = timezone.clone();
                e.mailto = mailto.clone();
                tab.entries.push(e);
            }
            Err(message) => tab.errors.push(LineError { line, message }),
        }
    }
    tab
}

/// `NAME=VALUE` (spaces allowed around `=`, the value optionally quoted), as cron reads it.
fn env_line(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    let value = value.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)));
    Some((name.to_string(), unquoted.unwrap_or(value).to_string()))
}

/// The first whitespace-separated word and the rest after it.
fn word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn entry(text: &str, line: usize, user_column: bool) -> Result<Entry, String> {
    let mut rest = text;
    let schedule = if text.starts_with('@') {
        let (macro_, after) = word(rest).ok_or("empty line")?;
        rest = after;
        macro_.to_string()
    } else {
        let mut fields = Vec::new();
        for _ in 0..5 {
            let (f, after) = word(rest).ok_or_else(|| {
                format!("expected 5 schedule fields and a command, found {text:?}")
            })?;
            fields.push(f);
            rest = after;
        }
        fields.join(" ")
    };
    Schedule::parse(&schedule).map_err(|e| e.to_string())?;
    let user = if user_column {
        let (user, after) = word(rest)
            .ok_or("expected a user name and a command after the schedule (system crontab)")?;
        rest = after;
        Some(user.to_string())
    } else {
        None
    };
    let raw = rest.trim();
    if raw.is_empty() {
        return Err("no command after the schedule".into());
    }
    let (command, stdin) = split_percent(raw);
    if command.trim().is_empty() {
        return Err("the command is empty (everything after the first % is its input)".into());
    }
    Ok(Entry {
        line,
        schedule,
        user,
        command: command.trim_end().to_string(),
        stdin,
        env: Vec::new(),
        shell: None,
        timezone: None,
        mailto: None,
    })
}

/// Where cron would mail a line's output (`MAILTO=`), as a job's `alert_email`: Ok(None) when
/// it mails nothing (empty or unset), Err(why) when it names what cronmgr cannot send to (a
/// local mailbox such as `root`).
pub fn alert_email(mailto: Option<&str>) -> Result<Option<String>, String> {
    let Some(value) = mailto.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let addresses: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if addresses.iter().all(|a| crate::model::looks_like_email(a)) {
        return Ok(Some(addresses.join(",")));
    }
    Err(format!(
        "MAILTO={value}: not carried over: cronmgr alerts by SMTP and needs full addresses \
         (user@host), not a local mailbox; set one with cronmgr edit NAME --alert-email ADDRESS"
    ))
}

/// Cron's `%`: the first unescaped one ends the command, the rest is stdin with `%` as newlines;
/// `\%` is a literal `%` in both.
pub fn split_percent(raw: &str) -> (String, Option<String>) {
    let mut command = String::new();
    let mut stdin: Option<String> = None;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped = c == '\\' && chars.peek() == Some(&'%');
        if escaped {
            chars.next();
        }
        match (&mut stdin, c, escaped) {
            (None, '%', false) => stdin = Some(String::new()),
            (Some(s), '%', false) => s.push('\n'),
            (Some(s), _, true) => s.push('%'),
            (None, _, true) => command.push('%'),
            (Some(s), _, false) => s.push(c),
            (None, _, false) => command.push(c),
        }
    }
    if let Some(s) = stdin.as_mut() {
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    (command, stdin)
}

/// Characters that make a command need a shell: pipes, redirections, lists, expansions, quotes,
/// globs, comments, subshells.
const SHELL_CHARS: &[char] = &[
    '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '{', '}',
    '~', '#', '\n',
];

/// Does the command need `sh -c` (rather than running as plain words)?
pub fn needs_shell(command: &str) -> bool {
    command.contains(SHELL_CHARS)
        || command
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains('='))
}

/// Programs that run another: a job is named after what they run.
const WRAPPERS: &[&str] = &[
    "nice", "ionice", "nohup", "env", "timeout", "flock", "chronic", "sudo", "setsid", "stdbuf",
    "chrt", "taskset", "exec", "time", "command",
];
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "python", "python2", "python3", "perl", "ruby", "php", "node",
];
/// Does this option of this wrapper take the next word as its value?
fn takes_value(wrapper: &str, option: &str) -> bool {
    let valued: &[&str] = match wrapper {
        "nice" => &["-n"],
        "ionice" => &["-c", "-n", "-p"],
        "timeout" => &["-s", "-k"],
        "flock" => &["-w", "-E"],
        "sudo" => &["-u", "-g"],
        "env" => &["-u", "-C"],
        _ => &[],
    };
    valued.contains(&option)
}

/// A readable job name for a command: the program's basename, past wrappers such as `cd X &&`,
/// `nice`, `ionice`, and interpreters (`python3 /opt/x/report.py` → `report`).
pub fn name_for(command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut i = 0;
    let mut interpreted = false;
    let mut last_wrapper = None;
    while i < words.len() {
        let w = words[i].trim_matches(['"', '\'', '(', '{']);
        let w = match w.find(['|', ';', '&', '<', '>', '`']) {
            Some(0) | None => w,
            Some(cut) => &w[..cut],
        };
        let base = w.rsplit('/').next().unwrap_or(w);
        if w == "cd" {
            // `cd DIR &&` or `cd DIR;`
            i += 2;
            while i < words.len() && matches!(words[i], "&&" | ";" | "||") {
                i += 1;
            }
            continue;
        }
        if matches!(w, "&&" | ";" | "||") {
            i += 1;
            continue;
        }
        if w.contains('=') && !w.starts_with('-') && !w.contains('/') {
            i += 1; // VAR=value
            continue;
        }
        if WRAPPERS.contains(&base) {
            last_wrapper = Some(base);
            i += 1;
            while i < words.len() && (words[i].starts_with('-') || words[i].contains('=')) {
                i += if takes_value(base, words[i]) { 2 } else { 1 };
            }
            if base == "timeout" && i < words.len() {
                i += 1; // the duration
            }
            if base == "flock" && i < words.len() {
                i += 1; // the lock file
            }
            continue;
        }
        if !interpreted && is_interpreter(base) {
            let mut j = i + 1;
            while j < words.len() && words[j].starts_with('-') {
                j += 1;
            }
            if j < words.len() && words[j - 1] != "-c" && !words[j].contains(SHELL_CHARS) {
                interpreted = true;
                i = j;
                continue;
            }
        }
        return sanitize(base);
    }
    // Only wrappers (`env`, `nice` alone): name it after the last.
    last_wrapper.map_or_else(|| "job".to_string(), sanitize)
}

/// `python3`, and versioned names such as `python3.11`, `perl5.36` or `php8.2`.
fn is_interpreter(base: &str) -> bool {
    INTERPRETERS.iter().any(|name| {
        base.strip_prefix(name).is_some_and(|version| {
            version.is_empty()
                || version.chars().next().is_some_and(|c| c.is_ascii_digit())
                    && version.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
    })
}

fn sanitize(word: &str) -> String {
    let cut = word.find(SHELL_CHARS).unwrap_or(word.len());
    let mut name = word[..cut].to_string();
    for ext in [".sh", ".bash", ".py", ".pl", ".rb", ".php", ".js"] {
        if let Some(stem) = name.strip_suffix(ext) {
            name = stem.to_string();
            break;
        }
    }
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_start_matches(['-', '.']);
    let name: String = name.chars().take(90).collect();
    if name.is_empty() {
        "job".to_string()
    } else {
        name
    }
}

/// `base`, else `base-2`, `base-3`, … : the first `taken` does not hold; records it as taken.
pub fn unique_name(base: &str, taken: &mut std::collections::HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

#[cfg(test)]
mod tests;
