//! The executor whitelist: name -> parameter check -> what to spawn.
//!
//! Only executors registered here exist, and only those the config file enables may run. Each
//! checks its parameters when a job is added and again right before it runs, since the database
//! may have been edited behind our back.

mod shell;

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::config::Config;

pub use shell::{glob_match, Shell, DEFAULT_PATH};

/// Parameters an executor refuses, or an executor that does not exist or is not enabled.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct ParamError(pub String);

impl ParamError {
    pub fn new(msg: impl Into<String>) -> Self {
        ParamError(msg.into())
    }
}

/// A program to spawn: absolute path, arguments, the complete environment and working folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

pub trait Executor: Sync {
    fn name(&self) -> &'static str;
    /// One line for `cronmgr executors` and error messages.
    fn summary(&self) -> &'static str;
    /// Check the parameters against the executor's rules and the config's allowlists.
    fn check(&self, params: &Map<String, Value>, config: &Config) -> Result<(), ParamError>;
    /// What to spawn for these (checked) parameters.
    fn invocation(
        &self,
        params: &Map<String, Value>,
        config: &Config,
    ) -> Result<Invocation, ParamError>;
}

static REGISTRY: &[&dyn Executor] = &[&Shell];

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
