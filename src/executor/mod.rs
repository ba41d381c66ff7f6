//! The executor whitelist: name -> parameter check -> what to spawn.
//!
//! Only executors registered here exist, and only those the config file enables may run. Each
//! checks its parameters when a job is added and again right before it runs, since the database
//! may have been edited behind our back.
//!
//! The built-ins other than `shell` run their work inside cronmgr itself: their invocation is a
//! re-exec of this binary (`cronmgr __exec NAME`) with the params in the environment, so each
//! still runs in its own process group under the runner's timeout, and [`Executor::run`] does
//! the work in that child (or in-process, in tests).

mod backup;
mod cleanup;
pub mod common;
mod dirfd;
pub mod env;
mod healthcheck;
mod http;
mod report;
mod shell;
mod sqlite;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::Config;

pub use backup::Backup;
pub use cleanup::Cleanup;
pub use healthcheck::Healthcheck;
pub use http::Http;
pub use report::Report;
pub use shell::{glob_match, Shell, DEFAULT_PATH};
pub use sqlite::Sqlite;

/// The first argument of a built-in's child: `cronmgr __exec NAME`.
pub const EXEC_ARG: &str = "__exec";

/// The environment variable carrying a built-in's params (JSON) to its `__exec` child.
pub const PARAMS_ENV: &str = "CRONMGR_EXEC_PARAMS";

/// Parameters an executor refuses, or an executor that does not exist or is not enabled.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct ParamError(pub String);

/// Always the user's input: exit status 2.
impl crate::exit::Coded for ParamError {
    fn exit_code(&self) -> crate::exit::ExitCode {
        crate::exit::ExitCode::Usage
    }
}

impl ParamError {
    pub fn new(msg: impl Into<String>) -> Self {
        ParamError(msg.into())
    }
}

/// A program to spawn: absolute path, arguments, the complete environment and working folder.
#[derive(Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

/// The environment's names only: its values may be secrets.
impl std::fmt::Debug for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Invocation")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &names)
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// Why a built-in's work failed (the child prints it on stderr and exits 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl RunError {
    pub fn failed(msg: impl Into<String>) -> Self {
        RunError::Failed(msg.into())
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RunError::Io {
            what: what.into(),
            source,
        }
    }
}

/// What a built-in's work may need beyond its params and the config.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// cronmgr's own database (for `report`).
    pub db: PathBuf,
}

pub trait Executor: Sync {
    fn name(&self) -> &'static str;
    /// One line for `cronmgr executors` and error messages.
    fn summary(&self) -> &'static str;
    /// Check the parameters against the executor's rules and the config's allowlists.
    fn check(&self, params: &Map<String, Value>, config: &Config) -> Result<(), ParamError>;
    /// What to spawn for these parameters, checked again now (the database may have been edited
    /// since `add`): by default a re-exec of cronmgr that runs [`Executor::run`] in the child
    /// (`cronmgr __exec NAME`).
    fn invocation(
        &self,
        params: &Map<String, Value>,
        config: &Config,
    ) -> Result<Invocation, ParamError> {
        self.check(params, config)?;
        reexec(self.name(), params, config)
    }
    /// Do the work of a built-in that runs inside cronmgr (`cronmgr __exec NAME`), writing a
    /// human report to `out`. The params have been checked.
    fn run(
        &self,
        params: &Map<String, Value>,
        config: &Config,
        ctx: &RunContext,
        out: &mut dyn Write,
    ) -> Result<(), RunError> {
        let _ = (params, config, ctx, out);
        Err(RunError::Failed(format!(
            "executor {:?} runs a program, not work inside cronmgr",
            self.name()
        )))
    }
}

static REGISTRY: &[&dyn Executor] = &[
    &Shell,
    &Http,
    &Cleanup,
    &Backup,
    &Sqlite,
    &Healthcheck,
    &Report,
];

/// The invocation of a built-in that runs inside cronmgr: this binary, `__exec NAME`, and the
/// params in the environment (not on the command line, where `ps` would show secrets).
pub(crate) fn reexec(
    name: &str,
    params: &Map<String, Value>,
    config: &Config,
) -> Result<Invocation, ParamError> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| {
            ParamError(format!(
                "{name}: cannot find the cronmgr binary to run it ({e}); was it replaced while running? restart the runner"
            ))
        })?;
    let config_path = config
        .path
        .canonicalize()
        .unwrap_or_else(|_| absolute(&config.path));
    let home = std::env::var("HOME").unwrap_or_else(|_| "/".to_string());
    let env = vec![
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOME".to_string(), home),
        ("LANG".to_string(), "C.UTF-8".to_string()),
        (
            PARAMS_ENV.to_string(),
            Value::Object(params.clone()).to_string(),
        ),
        (
            "CRONMGR_CONFIG".to_string(),
            config_path.display().to_string(),
        ),
    ];
    Ok(Invocation {
        program: exe,
        args: vec![EXEC_ARG.to_string(), name.to_string()],
        env,
        cwd: Some(PathBuf::from("/")),
    })
}

/// Absolute, so a child (which starts in `/`) finds the same file.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() || crate::store::is_postgres(path) {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Run a checked built-in in this process (the `__exec` child, and tests).
pub fn run_builtin(
    name: &str,
    params: &Map<String, Value>,
    config: &Config,
    ctx: &RunContext,
    out: &mut dyn Write,
) -> Result<(), RunError> {
    let exec = find(name, config)?;
    exec.check(params, config)?;
    exec.run(params, config, ctx, out)
}

/// Every built-in executor.
pub fn all() -> &'static [&'static dyn Executor] {
    REGISTRY
}

/// The executor with this name, if it exists and the config enables it.
pub fn find(name: &str, config: &Config) -> Result<&'static dyn Executor, ParamError> {
    let exec = REGISTRY
        .iter()
        .find(|e| e.name() == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = REGISTRY.iter().map(|e| e.name()).collect();
            ParamError(format!(
                "unknown executor {name:?} (known: {})",
                names.join(", ")
            ))
        })?;
    if !config.executor_enabled(name) {
        return Err(ParamError(format!(
            "executor {name:?} is not enabled in {} ([executors] enabled)",
            config.path.display()
        )));
    }
    Ok(exec)
}

/// Check a job's executor and parameters.
pub fn check(name: &str, params: &Map<String, Value>, config: &Config) -> Result<(), ParamError> {
    find(name, config)?.check(params, config)
}

/// Parse `--param KEY=VALUE`: VALUE is JSON when it parses as JSON, else a string.
pub fn parse_param(text: &str) -> Result<(String, Value), ParamError> {
    let (key, value) = text.split_once('=').ok_or_else(|| {
        ParamError(format!(
            "malformed --param {text:?}: expected KEY=VALUE (VALUE may be JSON, e.g. argv='[\"/bin/echo\",\"hi\"]')"
        ))
    })?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ParamError(format!(
            "malformed --param {text:?}: the key must be letters, digits or _"
        )));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

/// Refuse keys an executor does not know, naming those it does.
pub(crate) fn known_keys(
    executor: &str,
    params: &Map<String, Value>,
    known: &[&str],
) -> Result<(), ParamError> {
    for key in params.keys() {
        if !known.contains(&key.as_str()) {
            return Err(ParamError(format!(
                "executor {executor:?} has no parameter {key:?} (known: {})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_param_takes_json_or_string() {
        assert_eq!(
            parse_param("argv=[\"/bin/echo\",\"hi\"]").unwrap(),
            ("argv".into(), serde_json::json!(["/bin/echo", "hi"]))
        );
        assert_eq!(
            parse_param("url=https://x/y").unwrap(),
            ("url".into(), Value::String("https://x/y".into()))
        );
        assert_eq!(parse_param("n=5").unwrap().1, serde_json::json!(5));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=x").is_err());
        assert!(parse_param("a b=x").is_err());
    }

    #[test]
    fn builtins_reexec_cronmgr_with_params_in_the_environment() {
        let mut config = Config::defaults("/nonexistent/config.toml".into());
        config.http.allow_hosts = vec!["api.example.com".into()];
        let params = serde_json::json!({
            "url": "https://api.example.com/x",
            "headers": {"Authorization": "Bearer secret"}
        });
        let params = params.as_object().unwrap();
        let inv = find("http", &config)
            .unwrap()
            .invocation(params, &config)
            .unwrap();
        assert_eq!(
            inv.program,
            std::env::current_exe().unwrap().canonicalize().unwrap()
        );
        assert_eq!(inv.args, vec!["__exec", "http"]);
        assert!(!inv.args.iter().any(|a| a.contains("secret")));
        let env: std::collections::HashMap<_, _> = inv.env.into_iter().collect();
        let sent: Value = serde_json::from_str(&env[PARAMS_ENV]).unwrap();
        assert_eq!(&sent, &Value::Object(params.clone()));
        assert_eq!(env["CRONMGR_CONFIG"], "/nonexistent/config.toml");
        assert!(env.contains_key("PATH") && env.contains_key("HOME"));
        // Every registered executor has a distinct name.
        let mut names: Vec<&str> = all().iter().map(|e| e.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all().len());
    }

    #[test]
    fn unknown_and_disabled_executors_are_refused() {
        let config = Config::defaults("/nonexistent".into());
        assert!(find("shell", &config).is_ok());
        let err = find("teleport", &config).err().unwrap();
        assert!(err.0.contains("unknown executor"), "{err}");
        let mut config = config;
        config.enabled = Some(vec![]);
        let err = find("shell", &config).err().unwrap();
        assert!(err.0.contains("not enabled"), "{err}");
    }
}
