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
//!
//! The built-in executors have allowlists of their own (`[executors.http]`, `.cleanup`, `.backup`,
//! `.sqlite`; see `docs/executors.md`). An empty list refuses everything. Without a config file,
//! root gets empty lists; another user gets its own home folder for the file executors (cleanup
//! roots, backup sources and destinations, sqlite databases) and no network hosts at all.

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
    pub http: HttpRules,
    pub cleanup: CleanupRules,
    pub backup: BackupRules,
    pub sqlite: SqliteRules,
    pub jobs_dir: PathBuf,
    /// `[smtp]`: the mail server for alerts (environment overrides apply at use).
    pub smtp: crate::alert::email::SmtpConfig,
    /// `[admins]`: who may touch critical jobs besides root.
    pub admins: Admins,
    /// The file is owned by root and writable by no one else: only then do its `[admins]` count.
    pub root_owned: bool,
}

/// `[admins]`: users and groups (names) allowed to change, run and kill critical jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admins {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[executors.http]`: hosts the `http` executor (and healthcheck probes) may call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRules {
    /// `host`, `host:port`, `*.domain` or `*.domain:port`; `*` alone is any host.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
}

/// `[executors.cleanup]`: folders under which `cleanup` may delete files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupRules {
    #[serde(default)]
    pub roots: Vec<PathBuf>,
}

/// `[executors.backup]`: what `backup` may read, where it may write, where it may upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRules {
    #[serde(default)]
    pub sources: Vec<PathBuf>,
    #[serde(default)]
    pub destinations: Vec<PathBuf>,
    /// Host patterns, as `[executors.http] allow_hosts`.
    #[serde(default)]
    pub upload_hosts: Vec<String>,
}

/// `[executors.sqlite]`: application databases `sqlite` may change (paths or globs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteRules {
    #[serde(default)]
    pub databases: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    jobs_dir: Option<PathBuf>,
    #[serde(default)]
    executors: ExecutorsFile,
    #[serde(default)]
    smtp: crate::alert::email::SmtpConfig,
    #[serde(default)]
    admins: Admins,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutorsFile {
    enabled: Option<Vec<String>>,
    shell: Option<ShellFile>,
    #[serde(default)]
    http: HttpRules,
    #[serde(default)]
    cleanup: CleanupRules,
    #[serde(default)]
    backup: BackupRules,
    #[serde(default)]
    sqlite: SqliteRules,
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
            Ok(text) => {
                let mut config = Config::parse(&path, &text)?;
                config.root_owned = std::fs::metadata(&path).is_ok_and(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.uid() == 0 && m.mode() & 0o022 == 0
                });
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::defaults(path)),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// The built-in defaults for a missing config file at `path`.
    pub fn defaults(path: PathBuf) -> Config {
        // Non-root without a config: the file executors may work in the user's own home folder.
        let home = (!is_root())
            .then(|| std::env::var_os("HOME").map(PathBuf::from))
            .flatten()
            .filter(|h| h.is_absolute() && h != Path::new("/"));
        let homes: Vec<PathBuf> = home.iter().cloned().collect();
        Config {
            path,
            loaded: false,
            enabled: None,
            shell_allow: if is_root() {
                Allow::Only(Vec::new())
            } else {
                Allow::Any
            },
            http: HttpRules::default(),
            cleanup: CleanupRules {
                roots: homes.clone(),
            },
            backup: BackupRules {
                sources: homes.clone(),
                destinations: homes,
                upload_hosts: Vec::new(),
            },
            sqlite: SqliteRules {
                databases: home
                    .map(|h| format!("{}/**", h.display()))
                    .into_iter()
                    .collect(),
            },
            jobs_dir: PathBuf::from(DEFAULT_JOBS_DIR),
            smtp: Default::default(),
            admins: Admins::default(),
            root_owned: false,
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
        let bad = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let ex = &file.executors;
        for (key, list) in [
            ("[executors.cleanup] roots", &ex.cleanup.roots),
            ("[executors.backup] sources", &ex.backup.sources),
            ("[executors.backup] destinations", &ex.backup.destinations),
        ] {
            if let Some(p) = list.iter().find(|p| !p.is_absolute()) {
                return Err(bad(format!("{key}: {p:?} is not an absolute path")));
            }
        }
        if let Some(p) = ex.sqlite.databases.iter().find(|p| !p.starts_with('/')) {
            return Err(bad(format!(
                "[executors.sqlite] databases: {p:?} is not an absolute path"
            )));
        }
        for (key, list) in [
            ("[executors.http] allow_hosts", &ex.http.allow_hosts),
            ("[executors.backup] upload_hosts", &ex.backup.upload_hosts),
        ] {
            if let Some(h) = list
                .iter()
                .find(|h| h.is_empty() || h.contains(['/', '@', ' ']))
            {
                return Err(bad(format!(
                    "{key}: {h:?} is not a host pattern (host, host:port or *.domain)"
                )));
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            loaded: true,
            enabled: file.executors.enabled,
            shell_allow: Allow::Only(file.executors.shell.map(|s| s.allow).unwrap_or_default()),
            http: file.executors.http,
            cleanup: file.executors.cleanup,
            backup: file.executors.backup,
            sqlite: file.executors.sqlite,
            jobs_dir: file
                .jobs_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_JOBS_DIR)),
            smtp: file.smtp,
            admins: file.admins,
            root_owned: false,
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
    euid() == 0
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
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

    #[test]
    fn parses_builtin_allowlists() {
        let c = Config::parse(
            Path::new("c.toml"),
            r#"
[executors.http]
allow_hosts = ["api.example.com", "*.internal", "127.0.0.1:8080"]
[executors.cleanup]
roots = ["/var/log/app"]
[executors.backup]
sources = ["/etc/app"]
destinations = ["/backup"]
upload_hosts = ["backup.example.com"]
[executors.sqlite]
databases = ["/var/lib/app/*.db"]
"#,
        )
        .unwrap();
        assert_eq!(c.http.allow_hosts.len(), 3);
        assert_eq!(c.cleanup.roots, vec![PathBuf::from("/var/log/app")]);
        assert_eq!(c.backup.upload_hosts, vec!["backup.example.com"]);
        assert_eq!(c.sqlite.databases, vec!["/var/lib/app/*.db"]);
        // Absent sections refuse everything.
        let c = Config::parse(Path::new("c.toml"), "").unwrap();
        assert!(c.http.allow_hosts.is_empty() && c.cleanup.roots.is_empty());
        for bad in [
            "[executors.cleanup]\nroots = [\"relative\"]\n",
            "[executors.sqlite]\ndatabases = [\"x.db\"]\n",
            "[executors.http]\nallow_hosts = [\"http://x\"]\n",
            "[executors.http]\nallow = []\n",
            "[executors.backup]\nsource = []\n",
        ] {
            let err = Config::parse(Path::new("c.toml"), bad).unwrap_err();
            assert!(err.to_string().contains("c.toml"), "{bad}: {err}");
        }
    }
}
