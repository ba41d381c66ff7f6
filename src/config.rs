//! Paths and the root-owned config file (`/etc/cronmgr/config.toml`; `--config` / `CRONMGR_CONFIG`).
//!
//! ```toml
//! jobs_dir = "/etc/cronmgr/jobs.d"
//! [executors]
//! enabled = ["shell"]
//! [executors.shell]
//! allow = [
//!     "/usr/bin/pg_dump",                                                 # any arguments
//!     { program = "/usr/bin/apt-get", args = ["--simulate", "upgrade"] }, # exactly these
//!     { program = "/opt/app/bin/*", args_prefix = ["--config", "/etc/app.toml"] },
//! ]
//! allow_env = ["LD_LIBRARY_PATH"] # variables jobs may set although they load code
//! [secrets]
//! dir = "/etc/cronmgr/secrets" # where `{"secret_ref": "NAME"}` env values are read from
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
pub const DEFAULT_SECRETS_DIR: &str = "/etc/cronmgr/secrets";

/// The executors `[executors] enabled` may name (the registry in `executor/` has exactly these;
/// a test there keeps the two in step).
pub const EXECUTORS: &[&str] = &[
    "shell",
    "http",
    "cleanup",
    "backup",
    "sqlite",
    "healthcheck",
    "report",
];

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

/// A file cronmgr cannot make sense of is bad input (exit 2); one it cannot read is not.
impl crate::exit::Coded for ConfigError {
    fn exit_code(&self) -> crate::exit::ExitCode {
        match self {
            ConfigError::Parse { .. } => crate::exit::ExitCode::Usage,
            _ => crate::exit::ExitCode::Error,
        }
    }
}

/// Which programs the `shell` executor may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Any program (non-root without a config file).
    Any,
    /// Only programs matching one of these entries.
    Only(Vec<AllowRule>),
}

/// One `[executors.shell] allow` entry: a program (absolute path or glob: `*`, `?`, `**`) and
/// the arguments it may be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    pub program: String,
    pub args: ArgsRule,
}

/// What arguments an allowed program may get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsRule {
    /// Any (the entry is a plain string).
    Any,
    /// Exactly these, in this order (`args = [...]`; `[]` is none at all).
    Exact(Vec<String>),
    /// These first, then anything (`args_prefix = [...]`).
    Prefix(Vec<String>),
}

impl AllowRule {
    /// A program allowed with any arguments.
    pub fn any(program: impl Into<String>) -> AllowRule {
        AllowRule {
            program: program.into(),
            args: ArgsRule::Any,
        }
    }
}

impl ArgsRule {
    pub fn matches(&self, args: &[String]) -> bool {
        match self {
            ArgsRule::Any => true,
            ArgsRule::Exact(want) => want.as_slice() == args,
            ArgsRule::Prefix(want) => args.starts_with(want),
        }
    }
}

impl std::fmt::Display for ArgsRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgsRule::Any => write!(f, "any arguments"),
            ArgsRule::Exact(a) if a.is_empty() => write!(f, "no arguments"),
            ArgsRule::Exact(a) => write!(f, "exactly the arguments {a:?}"),
            ArgsRule::Prefix(a) => write!(f, "arguments starting with {a:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, and whether it existed.
    pub path: PathBuf,
    pub loaded: bool,
    /// Executor names that may run; None: every built-in executor.
    pub enabled: Option<Vec<String>>,
    pub shell_allow: Allow,
    /// `[executors.shell] allow_env`: variables a job may set although they load code. Read it
    /// through [`Config::allowed_env`], which honours it only from a root-owned file.
    pub shell_allow_env: Vec<String>,
    /// `[secrets] dir`: where `{"secret_ref": "NAME"}` env values are read from at spawn time
    /// (after `$CREDENTIALS_DIRECTORY`).
    pub secrets_dir: PathBuf,
    pub http: HttpRules,
    pub cleanup: CleanupRules,
    pub backup: BackupRules,
    pub sqlite: SqliteRules,
    pub jobs_dir: PathBuf,
    /// `[smtp]`: the mail server for alerts (environment overrides apply at use).
    pub smtp: SmtpConfig,
    /// `[admins]`: who may touch critical jobs besides root.
    pub admins: Admins,
    /// The file is owned by root and writable by no one else: only then do its `[admins]` count.
    pub root_owned: bool,
    /// `[web]` as written: the dashboard (`cronmgr web`) checks it when it starts.
    pub web: Option<toml::Table>,
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
    smtp: SmtpConfig,
    #[serde(default)]
    admins: Admins,
    #[serde(default)]
    secrets: SecretsFile,
    /// `[web]`: the dashboard's keys, read and checked by `web::auth::Settings`.
    web: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    dir: Option<PathBuf>,
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
    /// Strings (any arguments) or tables `{ program, args | args_prefix }`.
    #[serde(default)]
    allow: Vec<toml::Value>,
    #[serde(default)]
    allow_env: Vec<String>,
}

/// One `allow` entry as written: a path (or glob), or a table pinning the arguments.
fn allow_rule(entry: &toml::Value) -> Result<AllowRule, String> {
    const SHAPE: &str = "each entry is a path (\"/usr/bin/echo\", any arguments) or a table \
        { program = \"/usr/bin/apt-get\", args = [\"--simulate\", \"upgrade\"] } (exactly these) \
        or { program = …, args_prefix = [\"--simulate\"] } (these first)";
    let rule = match entry {
        toml::Value::String(p) => AllowRule::any(p.clone()),
        toml::Value::Table(t) => {
            if let Some(key) = t
                .keys()
                .find(|k| !matches!(k.as_str(), "program" | "args" | "args_prefix"))
            {
                return Err(format!("unknown key {key:?}; {SHAPE}"));
            }
            let program = match t.get("program") {
                Some(toml::Value::String(p)) => p.clone(),
                _ => {
                    return Err(format!(
                        "a table needs program = \"/absolute/path\"; {SHAPE}"
                    ))
                }
            };
            let strings = |key: &str, v: &toml::Value| -> Result<Vec<String>, String> {
                v.as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|s| s.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| format!("{program}: {key} must be an array of strings"))
            };
            let args = match (t.get("args"), t.get("args_prefix")) {
                (Some(a), None) => ArgsRule::Exact(strings("args", a)?),
                (None, Some(a)) => ArgsRule::Prefix(strings("args_prefix", a)?),
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{program}: give args (exact) or args_prefix, not both"
                    ))
                }
                (None, None) => {
                    return Err(format!(
                        "{program}: a table pins arguments with args or args_prefix; for any arguments write the path as a plain string"
                    ))
                }
            };
            AllowRule { program, args }
        }
        _ => return Err(SHAPE.to_string()),
    };
    if !rule.program.starts_with('/') {
        return Err(format!("{:?} is not an absolute path", rule.program));
    }
    if Path::new(&rule.program)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!("{:?} must not contain '..'", rule.program));
    }
    Ok(rule)
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
            shell_allow_env: Vec::new(),
            secrets_dir: PathBuf::from(DEFAULT_SECRETS_DIR),
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
            web: None,
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let bad = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let ex = &file.executors;
        if let Some(name) = ex
            .enabled
            .iter()
            .flatten()
            .find(|n| !EXECUTORS.contains(&n.as_str()))
        {
            return Err(bad(format!(
                "[executors] enabled: unknown executor {name:?} (known: {})",
                EXECUTORS.join(", ")
            )));
        }
        let shell = ex.shell.as_ref();
        let allow = shell
            .iter()
            .flat_map(|s| &s.allow)
            .map(|entry| {
                allow_rule(entry).map_err(|e| bad(format!("[executors.shell] allow: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allow_env = shell.map(|s| s.allow_env.clone()).unwrap_or_default();
        if let Some(name) = allow_env
            .iter()
            .find(|n| n.is_empty() || n.contains(['=', '\0']))
        {
            return Err(bad(format!(
                "[executors.shell] allow_env: {name:?} is not an environment variable name"
            )));
        }
        let secrets_dir = file
            .secrets
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SECRETS_DIR));
        if !secrets_dir.is_absolute() {
            return Err(bad(format!(
                "[secrets] dir: {secrets_dir:?} is not an absolute path"
            )));
        }
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
            shell_allow: Allow::Only(allow),
            shell_allow_env: allow_env,
            secrets_dir,
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
            web: file.web,
        })
    }

    /// `[executors.shell] allow_env` when the file is root-owned and writable by no one else
    /// (as `[admins]`); nothing otherwise.
    pub fn allowed_env(&self) -> &[String] {
        if self.root_owned {
            &self.shell_allow_env
        } else {
            &[]
        }
    }

    /// May the executor with this name run at all?
    pub fn executor_enabled(&self, name: &str) -> bool {
        self.enabled
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == name))
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Plain connection upgraded with STARTTLS (required), port 587 by default.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS), port 465 by default.
    Tls,
    /// No encryption (a local relay, tests), port 25 by default.
    None,
}

/// The `[smtp]` section.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Send through this sendmail-compatible binary instead of SMTP.
    pub sendmail: Option<PathBuf>,
    /// The sender [default: cronmgr@<hostname>].
    pub from: Option<String>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field(
                "password",
                &self.password.as_ref().map(|_| crate::model::redact::MARK),
            )
            .field("sendmail", &self.sendmail)
            .field("from", &self.from)
            .finish()
    }
}

impl SmtpConfig {
    /// This config with the `CRONMGR_SMTP_*` environment variables applied over it.
    pub fn with_env(self) -> Result<SmtpConfig, String> {
        self.with_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn with_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Result<SmtpConfig, String> {
        if let Some(v) = var("CRONMGR_SMTP_HOST") {
            self.host = Some(v);
        }
        if let Some(v) = var("CRONMGR_SMTP_PORT") {
            self.port = Some(
                v.parse()
                    .map_err(|_| format!("CRONMGR_SMTP_PORT: bad port {v:?}"))?,
            );
        }
        if let Some(v) = var("CRONMGR_SMTP_TLS") {
            self.tls = match v.as_str() {
                "starttls" => Tls::Starttls,
                "tls" => Tls::Tls,
                "none" => Tls::None,
                _ => {
                    return Err(format!(
                        "CRONMGR_SMTP_TLS must be starttls, tls or none, got {v:?}"
                    ))
                }
            };
        }
        if let Some(v) = var("CRONMGR_SMTP_USERNAME") {
            self.username = Some(v);
        }
        if let Some(v) = var("CRONMGR_SMTP_PASSWORD") {
            self.password = Some(v);
        }
        if let Some(v) = var("CRONMGR_SMTP_FROM") {
            self.from = Some(v);
        }
        if let Some(v) = var("CRONMGR_SMTP_SENDMAIL") {
            self.sendmail = Some(PathBuf::from(v));
        }
        Ok(self)
    }
}

pub fn is_root() -> bool {
    crate::host::euid() == 0
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
    #[test]
    fn a_config_that_does_not_parse_is_bad_input_and_one_that_cannot_be_read_is_not() {
        let parse = crate::exit::Failure::from(ConfigError::Parse {
            path: "c.toml".into(),
            message: "expected `]`".into(),
        });
        assert_eq!(
            parse.context("loading the config").code(),
            crate::exit::ExitCode::Usage
        );
        let read = crate::exit::Failure::from(ConfigError::Read {
            path: "c.toml".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
        assert_eq!(read.code(), crate::exit::ExitCode::Error);
    }

    use super::*;

    #[test]
    fn environment_overrides_the_file_and_debug_hides_the_password() {
        let file: SmtpConfig = toml::from_str(
            "host = \"mail.example.com\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        assert_eq!(file.tls, Tls::Starttls);
        let vars = |k: &str| match k {
            "CRONMGR_SMTP_PASSWORD" => Some("from-env".to_string()),
            "CRONMGR_SMTP_TLS" => Some("tls".to_string()),
            "CRONMGR_SMTP_PORT" => Some("2465".to_string()),
            _ => None,
        };
        let c = file.clone().with_vars(vars).unwrap();
        assert_eq!(c.password.as_deref(), Some("from-env"));
        assert_eq!(c.tls, Tls::Tls);
        assert_eq!(c.port, Some(2465));
        assert!(!format!("{file:?}").contains("hunter2"));
        assert!(SmtpConfig::default()
            .with_vars(|k| (k == "CRONMGR_SMTP_TLS").then(|| "maybe".into()))
            .is_err());
    }

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
        assert_eq!(c.shell_allow, Allow::Only(vec![AllowRule::any("/bin/*")]));
        assert!(c.executor_enabled("shell"));
        assert!(!c.executor_enabled("http"));
        let err = Config::parse(Path::new("c.toml"), "[executors.shel]\nallow=[]\n").unwrap_err();
        assert!(err.to_string().contains("c.toml"), "{err}");
        assert!(Config::parse(Path::new("c"), "[executors.shell]\nallow=[\"bin/x\"]\n").is_err());
    }

    #[test]
    fn allow_entries_may_pin_arguments() {
        let c = Config::parse(
            Path::new("c.toml"),
            r#"
[executors.shell]
allow = [
    "/usr/bin/echo",
    { program = "/usr/bin/apt-get", args = ["--simulate", "upgrade"] },
    { program = "/usr/bin/date", args = [] },
    { program = "/opt/bin/*", args_prefix = ["--safe"] },
]
allow_env = ["LD_LIBRARY_PATH"]
"#,
        )
        .unwrap();
        let Allow::Only(rules) = &c.shell_allow else {
            panic!("{:?}", c.shell_allow)
        };
        assert_eq!(rules[0], AllowRule::any("/usr/bin/echo"));
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert!(rules[1].args.matches(&s(&["--simulate", "upgrade"])));
        assert!(!rules[1]
            .args
            .matches(&s(&["--simulate", "upgrade", "-o", "x"])));
        assert!(!rules[1]
            .args
            .matches(&s(&["-o", "x", "--simulate", "upgrade"])));
        assert!(rules[2].args.matches(&[]));
        assert!(!rules[2].args.matches(&s(&["-f", "/etc/shadow"])));
        assert!(rules[3].args.matches(&s(&["--safe", "x"])));
        assert!(!rules[3].args.matches(&s(&["x", "--safe"])));
        // allow_env counts only from a root-owned file.
        assert!(c.allowed_env().is_empty());
        let owned = Config {
            root_owned: true,
            ..c
        };
        assert_eq!(owned.allowed_env(), ["LD_LIBRARY_PATH"]);
        for (bad, needle) in [
            ("allow = [{ program = \"/bin/x\" }]", "plain string"),
            (
                "allow = [{ program = \"/bin/x\", args = [], args_prefix = [] }]",
                "not both",
            ),
            (
                "allow = [{ program = \"/bin/x\", argz = [] }]",
                "unknown key",
            ),
            ("allow = [{ args = [] }]", "program"),
            (
                "allow = [{ program = \"/bin/x\", args = [1] }]",
                "array of strings",
            ),
            ("allow = [\"/usr/bin/../bin/sh\"]", "'..'"),
            ("allow = [1]", "each entry"),
            ("allow_env = [\"A=B\"]", "allow_env"),
        ] {
            let err = Config::parse(Path::new("c.toml"), &format!("[executors.shell]\n{bad}\n"))
                .unwrap_err();
            assert!(
                matches!(err, ConfigError::Parse { .. }) && err.to_string().contains(needle),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_executors_and_relative_secret_dirs_are_refused() {
        let err = Config::parse(
            Path::new("c.toml"),
            "[executors]\nenabled = [\"shell\", \"teleport\"]\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"teleport\"") && text.contains(&EXECUTORS.join(", ")),
            "{text}"
        );
        let c = Config::parse(Path::new("c.toml"), "[secrets]\ndir = \"/run/keys\"\n").unwrap();
        assert_eq!(c.secrets_dir, PathBuf::from("/run/keys"));
        assert_eq!(
            Config::parse(Path::new("c.toml"), "").unwrap().secrets_dir,
            PathBuf::from(DEFAULT_SECRETS_DIR)
        );
        assert!(Config::parse(Path::new("c.toml"), "[secrets]\ndir = \"keys\"\n").is_err());
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
