//! Paths and the root-owned config file (`/etc/cronmgr/config.toml`; `--config` / `CRONMGR_CONFIG`).
//!
//! ```toml
//! jobs_dir = "/etc/cronmgr/jobs.d"
//! [executors]
//! enabled = ["shell"]
//! [executors.shell]
//! allow = ["/usr/bin/pg_dump", "/opt/app/bin/*"]
//! ```
//!
//! Without a config file, a root cronmgr allows no shell program (the file must say which), while a
//! non-root cronmgr allows any program: it can only run what its user could run anyway.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = "/etc/cronmgr/config.toml";
pub const DEFAULT_JOBS_DIR: &str = "/etc/cronmgr/jobs.d";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Which programs the `shell` executor may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Any program (non-root without a config file).
    Any,
    /// Only programs matching these absolute paths or globs (`*`, `?`).
    Only(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, and whether it existed.
    pub path: PathBuf,
    pub loaded: bool,
    /// Executor names that may run; None: every built-in executor.
    pub enabled: Option<Vec<String>>,
    pub shell_allow: Allow,
    pub jobs_dir: PathBuf,
    /// `[smtp]`: the mail server for alerts (environment overrides apply at use).
    pub smtp: crate::alert::email::SmtpConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    jobs_dir: Option<PathBuf>,
    #[serde(default)]
    executors: ExecutorsFile,
    #[serde(default)]
    smtp: crate::alert::email::SmtpConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutorsFile {
    enabled: Option<Vec<String>>,
    shell: Option<ShellFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShellFile {
    #[serde(default)]
    allow: Vec<String>,
}

impl Config {
    /// Load the config file at `path` (or the default). A missing file gives the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::defaults(path)),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// The built-in defaults for a missing config file at `path`.
    pub fn defaults(path: PathBuf) -> Config {
        Config {
            path,
            loaded: false,
            enabled: None,
            shell_allow: if is_root() {
                Allow::Only(Vec::new())
            } else {
                Allow::Any
            },
            jobs_dir: PathBuf::from(DEFAULT_JOBS_DIR),
            smtp: Default::default(),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for pattern in file.executors.shell.iter().flat_map(|s| &s.allow) {
            if !pattern.starts_with('/') {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!(
                        "[executors.shell] allow: {pattern:?} is not an absolute path"
                    ),
                });
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            loaded: true,
            enabled: file.executors.enabled,
            shell_allow: Allow::Only(file.executors.shell.map(|s| s.allow).unwrap_or_default()),
            jobs_dir: file
                .jobs_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_JOBS_DIR)),
            smtp: file.smtp,
        })
    }

    /// May the executor with this name run at all?
    pub fn executor_enabled(&self, name: &str) -> bool {
        self.enabled
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == name))
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The default database: `/var/lib/cronmgr/cronmgr.db` for root, else under the XDG data folder.
pub fn default_db_path() -> PathBuf {
    default_db_path_for(
        is_root(),
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn default_db_path_for(root: bool, xdg: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    if root {
        return PathBuf::from("/var/lib/cronmgr/cronmgr.db");
    }
    let base = xdg
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("cronmgr/cronmgr.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_path_follows_xdg_then_home() {
        assert_eq!(
            default_db_path_for(true, None, None),
            PathBuf::from("/var/lib/cronmgr/cronmgr.db")
        );
        assert_eq!(
            default_db_path_for(false, Some("/x/data".into()), Some("/home/u".into())),
            PathBuf::from("/x/data/cronmgr/cronmgr.db")
        );
        assert_eq!(
            default_db_path_for(false, Some("relative".into()), Some("/home/u".into())),
            PathBuf::from("/home/u/.local/share/cronmgr/cronmgr.db")
        );
    }

    #[test]
    fn parses_allowlist_and_refuses_unknown_keys() {
        let c = Config::parse(
            Path::new("c.toml"),
            "[executors]\nenabled = [\"shell\"]\n[executors.shell]\nallow = [\"/bin/*\"]\n",
        )
        .unwrap();
        assert_eq!(c.shell_allow, Allow::Only(vec!["/bin/*".into()]));
        assert!(c.executor_enabled("shell"));
        assert!(!c.executor_enabled("http"));
        let err = Config::parse(Path::new("c.toml"), "[executors.shel]\nallow=[]\n").unwrap_err();
        assert!(err.to_string().contains("c.toml"), "{err}");
        assert!(Config::parse(Path::new("c"), "[executors.shell]\nallow=[\"bin/x\"]\n").is_err());
    }
}
