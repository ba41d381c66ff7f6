//! `shell`: run a program from the allowlist directly (no shell), with a clean environment.
//!
//! Params: `argv` (array of strings, required), `env` (object of strings, of `{"secret": "…"}`
//! for values no listing shows: see `crate::model::secrets`, or of `{"secret_ref": "NAME"}` for values
//! read from a root-owned file when the job starts: see [`super::env`]), `cwd` (absolute path).
//!
//! A job's environment may not choose code (`LD_PRELOAD`, `PATH`, …: [`super::env::UNSAFE`]),
//! and its program must match `[executors.shell] allow`, arguments included where the entry pins
//! them.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use super::env::{self as job_env, SECRET_REF};
use super::{known_keys, Executor, Invocation, ParamError};
use crate::config::{Allow, Config};

/// PATH given to jobs (and used to find a bare program name).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Shell;

struct Params {
    argv: Vec<String>,
    env: Vec<(String, EnvValue)>,
    cwd: Option<PathBuf>,
}

/// One value of `env`, as stored.
enum EnvValue {
    /// A string, or a `{"secret": "…"}` (stored, hidden from listings).
    Text(String),
    /// `{"secret_ref": "NAME"}`: read from a file when the job starts.
    Ref(String),
}

fn env_value(name: &str, v: &Value) -> Result<EnvValue, ParamError> {
    if let Value::String(s) = v {
        return Ok(EnvValue::Text(s.clone()));
    }
    if let Some(secret) = crate::model::secrets::value(v) {
        return Ok(EnvValue::Text(secret.to_string()));
    }
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key(SECRET_REF) => {
            let Some(Value::String(r)) = m.get(SECRET_REF) else {
                return Err(ParamError(format!(
                    "shell: env {name}: {SECRET_REF} must be a string (the secret's name)"
                )));
            };
            job_env::check_secret_name(name, r)?;
            Ok(EnvValue::Ref(r.clone()))
        }
        _ => Err(ParamError(format!(
            "shell: env value of {name} must be a string, {{\"secret\": \"…\"}} for one no listing shows, \
             or {{\"{SECRET_REF}\": \"NAME\"}} for one read from a file when the job starts"
        ))),
    }
}

fn parse(params: &Map<String, Value>, config: &Config) -> Result<Params, ParamError> {
    known_keys("shell", params, &["argv", "env", "cwd"])?;
    let argv = match params.get("argv") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    ParamError::new("shell: every element of argv must be a string")
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => return Err(ParamError::new("shell: argv is empty")),
        Some(_) => {
            return Err(ParamError::new(
                "shell: argv must be an array of strings, e.g. [\"/usr/bin/pg_dump\", \"-f\", \"/backup/db.sql\"]",
            ))
        }
        None => {
            return Err(ParamError::new(
                "shell: argv is required (give the program after `--`, e.g. cronmgr add NAME --schedule ... -- /bin/echo hi)",
            ))
        }
    };
    if argv[0].is_empty() {
        return Err(ParamError::new("shell: the program name is empty"));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(ParamError::new(
            "shell: argv holds a NUL byte, which no program can be given",
        ));
    }
    let env = match params.get("env") {
        None => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                let value = env_value(k, v)?;
                let text = match &value {
                    EnvValue::Text(t) => Some(t.as_str()),
                    EnvValue::Ref(_) => None,
                };
                job_env::check(k, text, config)?;
                Ok((k.clone(), value))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ParamError::new(
                "shell: env must be an object of strings, e.g. {\"PGHOST\": \"db\"}",
            ))
        }
    };
    let cwd = match params.get("cwd") {
        None => None,
        Some(Value::String(s)) if s.contains('\0') => {
            return Err(ParamError::new("shell: cwd holds a NUL byte"))
        }
        Some(Value::String(s)) if s.starts_with('/') => Some(PathBuf::from(s)),
        Some(_) => return Err(ParamError::new("shell: cwd must be an absolute path")),
    };
    Ok(Params { argv, env, cwd })
}

/// Find the program: an absolute path as given, or a bare name on PATH; then resolve symlinks.
fn resolve(program: &str, path_var: &str) -> Result<PathBuf, ParamError> {
    let candidate = if program.contains('/') {
        if !program.starts_with('/') {
            return Err(ParamError(format!(
                "shell: program {program:?} must be an absolute path or a name found on PATH"
            )));
        }
        let path = PathBuf::from(program);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(ParamError(format!(
                "shell: program {program:?} must not contain '..'"
            )));
        }
        path
    } else {
        path_var
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(program))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                ParamError(format!(
                    "shell: program {program:?} not found on PATH ({path_var})"
                ))
            })?
    };
    let resolved = candidate.canonicalize().map_err(|e| {
        ParamError(format!(
            "shell: program {} cannot be used: {e}",
            candidate.display()
        ))
    })?;
    if !resolved.is_file() {
        return Err(ParamError(format!(
            "shell: program {} is not a file",
            resolved.display()
        )));
    }
    Ok(resolved)
}

/// Does the resolved program match this allowlist pattern? Patterns are resolved too: an exact
/// path through its symlinks, a glob through the symlinks of the folder before its first wildcard.
fn program_matches(resolved: &Path, pattern: &str) -> bool {
    // `resolved` is canonical, and so is every folder above it: a pattern that matches it as
    // written would resolve to itself. Only the others are resolved (a few syscalls each).
    let text = resolved.to_string_lossy();
    if pattern == text || glob_match(pattern, &text) {
        return true;
    }
    if !pattern.contains(['*', '?', '[']) {
        return Path::new(pattern)
            .canonicalize()
            .is_ok_and(|p| p == resolved);
    }
    // Resolve the literal folder prefix, keep the wildcard part as written.
    let wild = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    let split = pattern[..wild].rfind('/').unwrap_or(0);
    let (dir, rest) = pattern.split_at(split);
    let dir = if dir.is_empty() { "/" } else { dir };
    let base = Path::new(dir)
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(dir));
    let full = format!(
        "{}{}",
        base.display().to_string().trim_end_matches('/'),
        rest
    );
    glob_match(&full, &text)
}

/// Why the program with these arguments is not allowed, or None when an entry allows it.
fn refusal(resolved: &Path, args: &[String], allow: &Allow) -> Option<Refusal> {
    let rules = match allow {
        Allow::Any => return None,
        Allow::Only(rules) => rules,
    };
    let mut pinned = Vec::new();
    for rule in rules {
        if program_matches(resolved, &rule.program) {
            if rule.args.matches(args) {
                return None;
            }
            pinned.push(rule.args.to_string());
        }
    }
    Some(if pinned.is_empty() {
        Refusal::Program
    } else {
        Refusal::Args(pinned)
    })
}

enum Refusal {
    /// No entry names the program.
    Program,
    /// Entries name it, each with arguments these are not.
    Args(Vec<String>),
}

/// Shell-style glob: `*` any run of characters except `/`, `**` any run including `/`, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) if rest.first() == Some(&'*') => {
                let rest = &rest[1..];
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some(('*', rest)) => {
                let limit = t.iter().position(|&c| c == '/').unwrap_or(t.len());
                (0..=limit).any(|i| go(rest, &t[i..]))
            }
            Some(('?', rest)) => t.first().is_some_and(|&c| c != '/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// PATH to find a bare program name on: the job's own, when the config allows it one.
fn path_var(params: &Params) -> String {
    params
        .env
        .iter()
        .find_map(|(k, v)| match v {
            EnvValue::Text(t) if k == "PATH" => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_else(|| DEFAULT_PATH.to_string())
}

fn check_allowed(params: &Params, config: &Config) -> Result<PathBuf, ParamError> {
    let resolved = resolve(&params.argv[0], &path_var(params))?;
    let args = &params.argv[1..];
    match refusal(&resolved, args, &config.shell_allow) {
        None => {}
        Some(Refusal::Args(pinned)) => {
            return Err(ParamError(format!(
                "shell: program {} is allowlisted only with {} ([executors.shell] allow in {}), not with the arguments {args:?}",
                resolved.display(),
                pinned.join(", or "),
                config.path.display()
            )))
        }
        Some(Refusal::Program) => {
            let hint = if config.loaded {
                format!(
                    "add it to [executors.shell] allow in {}",
                    config.path.display()
                )
            } else {
                format!(
                    "as root, programs must be allowed in {} ([executors.shell] allow = [\"{}\"])",
                    config.path.display(),
                    resolved.display()
                )
            };
            return Err(ParamError(format!(
                "shell: program {} is not allowlisted; {hint}",
                resolved.display()
            )));
        }
    }
    if let Some(cwd) = &params.cwd {
        if cwd.components().any(|c| c == Component::ParentDir) {
            return Err(ParamError::new("shell: cwd must not contain '..'"));
        }
    }
    Ok(resolved)
}

impl Executor for Shell {
    fn name(&self) -> &'static str {
        "shell"
    }

    fn summary(&self) -> &'static str {
        "run an allowlisted program directly (no shell): argv, env, cwd"
    }

    fn check(&self, params: &Map<String, Value>, config: &Config) -> Result<(), ParamError> {
        check_allowed(&parse(params, config)?, config).map(|_| ())
    }

    fn invocation(
        &self,
        params: &Map<String, Value>,
        config: &Config,
    ) -> Result<Invocation, ParamError> {
        let p = parse(params, config)?;
        let program = check_allowed(&p, config)?;
        let home = std::env::var("HOME").unwrap_or_else(|_| "/".to_string());
        let mut env = vec![
            ("PATH".to_string(), DEFAULT_PATH.to_string()),
            ("HOME".to_string(), home),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ];
        for (k, v) in p.env {
            let v = match v {
                EnvValue::Text(t) => t,
                EnvValue::Ref(name) => {
                    let secret = job_env::read_secret(&k, &name, config)?;
                    job_env::check(&k, Some(&secret), config)?;
                    secret
                }
            };
            env.retain(|(name, _)| *name != k);
            env.push((k, v));
        }
        Ok(Invocation {
            program,
            args: p.argv[1..].to_vec(),
            env,
            cwd: p.cwd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AllowRule, ArgsRule};
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn config(allow: &[&str]) -> Config {
        let mut c = Config::defaults("/etc/cronmgr/config.toml".into());
        c.loaded = true;
        c.shell_allow = Allow::Only(allow.iter().map(|s| AllowRule::any(*s)).collect());
        c
    }

    #[test]
    fn globs() {
        assert!(glob_match("/opt/app/bin/*", "/opt/app/bin/sync"));
        assert!(!glob_match("/opt/app/bin/*", "/opt/app/bin/sub/sync"));
        assert!(glob_match("/opt/**", "/opt/app/bin/sub/sync"));
        assert!(glob_match("/bin/e?ho", "/bin/echo"));
        assert!(!glob_match("/bin/echo", "/bin/echo2"));
    }

    #[test]
    fn allowlisted_program_resolves_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let p = params(json!({"argv": [link.to_str().unwrap()]}));
        // Allowing the link allows what it points to; allowing something else does not.
        assert!(Shell.check(&p, &config(&[link.to_str().unwrap()])).is_ok());
        assert!(Shell.check(&p, &config(&[real.to_str().unwrap()])).is_ok());
        let err = Shell.check(&p, &config(&["/usr/bin/*"])).unwrap_err();
        assert!(err.0.contains("not allowlisted"), "{err}");
        // A glob over the folder allows it, the folder written as it is or through a symlink.
        let glob = format!("{}/*", dir.path().display());
        assert!(Shell.check(&p, &config(&[&glob])).is_ok());
        let other = tempfile::tempdir().unwrap();
        let folder_link = other.path().join("bin");
        std::os::unix::fs::symlink(dir.path(), &folder_link).unwrap();
        let linked_glob = format!("{}/*", folder_link.display());
        assert!(Shell.check(&p, &config(&[&linked_glob])).is_ok());
        // A path with `..` is refused outright, even one that leads back into the folder.
        let sneaky = format!(
            "{}/../{}/real",
            dir.path().display(),
            dir.path().file_name().unwrap().to_str().unwrap()
        );
        let err = Shell
            .check(&params(json!({"argv": [sneaky]})), &config(&[&glob]))
            .unwrap_err();
        assert!(err.0.contains("must not contain '..'"), "{err}");
        assert!(Shell
            .check(&params(json!({"argv": ["/bin/sh"]})), &config(&[&glob]))
            .is_err());
    }

    #[test]
    fn bad_params_are_refused_with_reasons() {
        let c = config(&["/**"]);
        for (p, needle) in [
            (json!({}), "argv is required"),
            (json!({"argv": []}), "argv is empty"),
            (json!({"argv": "ls"}), "array of strings"),
            (json!({"argv": [1]}), "must be a string"),
            (json!({"argv": ["relative/x"]}), "absolute path"),
            (
                json!({"argv": ["no-such-program-xyz"]}),
                "not found on PATH",
            ),
            (
                json!({"argv": ["/bin/true"], "cwd": "tmp"}),
                "cwd must be an absolute",
            ),
            (
                json!({"argv": ["/bin/true"], "env": {"A": 1}}),
                "must be a string",
            ),
            (
                json!({"argv": ["/bin/true"], "shell": true}),
                "no parameter \"shell\"",
            ),
        ] {
            let err = Shell.check(&params(p.clone()), &c).unwrap_err();
            assert!(err.0.contains(needle), "{p}: {err}");
        }
    }

    #[test]
    fn allowlist_entries_may_pin_arguments() {
        let mut c = config(&["/usr/bin/true"]);
        let Allow::Only(rules) = &mut c.shell_allow else {
            unreachable!()
        };
        rules.push(AllowRule {
            program: "/usr/bin/echo".into(),
            args: ArgsRule::Exact(vec!["-n".into(), "x".into()]),
        });
        rules.push(AllowRule {
            program: "/usr/bin/e?ho".into(),
            args: ArgsRule::Prefix(vec!["--".into()]),
        });
        let check = |argv: Value| Shell.check(&params(json!({ "argv": argv })), &c);
        assert!(check(json!(["/usr/bin/true", "anything"])).is_ok());
        assert!(check(json!(["/usr/bin/echo", "-n", "x"])).is_ok());
        assert!(check(json!(["/usr/bin/echo", "--", "y", "z"])).is_ok());
        let err = check(json!(["/usr/bin/echo", "-e", "x"])).unwrap_err();
        assert!(
            err.0.contains("only with exactly the arguments [\"-n\", \"x\"], or arguments starting with [\"--\"]"),
            "{err}"
        );
        let err = check(json!(["/usr/bin/sleep", "1"])).unwrap_err();
        assert!(err.0.contains("not allowlisted"), "{err}");
    }

    #[test]
    fn the_environment_may_not_choose_code_and_secret_refs_resolve_at_spawn() {
        let mut c = config(&["/**"]);
        let with_env = |env: Value| params(json!({"argv": ["/bin/true"], "env": env}));
        let err = Shell
            .check(&with_env(json!({"LD_PRELOAD": "/tmp/x.so"})), &c)
            .unwrap_err();
        assert!(err.0.contains("LD_PRELOAD"), "{err}");
        // The re-check before a spawn refuses it too.
        assert!(Shell
            .invocation(&with_env(json!({"PATH": "/tmp"})), &c)
            .is_err());
        let err = Shell
            .check(&with_env(json!({"T": {"secret": "a\u{0}b"}})), &c)
            .unwrap_err();
        assert!(err.0.contains("NUL") && !err.0.contains("a\0b"), "{err}");
        // A reference is checked by name at add, read when the job starts.
        let dir = tempfile::tempdir().unwrap();
        c.secrets_dir = dir.path().to_path_buf();
        let p = with_env(json!({"T": {"secret_ref": "tok"}}));
        assert!(Shell.check(&p, &c).is_ok());
        let err = Shell.invocation(&p, &c).unwrap_err();
        assert!(err.0.contains("\"tok\""), "{err}");
        let file = dir.path().join("tok");
        std::fs::write(&file, "v4lue\n").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let inv = Shell.invocation(&p, &c).unwrap();
        assert!(inv.env.contains(&("T".into(), "v4lue".into())));
        let err = Shell
            .check(&with_env(json!({"T": {"secret_ref": "../etc/shadow"}})), &c)
            .unwrap_err();
        assert!(err.0.contains("secret_ref"), "{err}");
    }

    #[test]
    fn the_config_knows_every_registered_executor() {
        let mut names: Vec<&str> = crate::executor::all().iter().map(|e| e.name()).collect();
        let mut known = crate::config::EXECUTORS.to_vec();
        names.sort_unstable();
        known.sort_unstable();
        assert_eq!(names, known);
    }

    #[test]
    fn invocation_has_a_clean_environment() {
        let c = config(&["/**"]);
        let inv = Shell
            .invocation(
                &params(
                    json!({"argv": ["true", "x"], "env": {"FOO": "bar", "LANG": "de_DE.UTF-8"}}),
                ),
                &c,
            )
            .unwrap();
        assert!(inv.program.is_absolute());
        assert_eq!(inv.args, vec!["x"]);
        let names: Vec<&str> = inv.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["PATH", "HOME", "FOO", "LANG"]);
        assert!(inv.env.contains(&("LANG".into(), "de_DE.UTF-8".into())));
    }
}
