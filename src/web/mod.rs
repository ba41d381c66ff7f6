//! `cronmgr web`: the dashboard. A small synchronous HTTP server ([`http`]), authentication
//! ([`auth`]), pages rendered on the server with maud (compile-time templates that escape every
//! interpolated value), SVG charts drawn by hand ([`charts`]), live output by Server-Sent Events.
//!
//! It reads the database through [`Store`]. What only the command line knows how to do (the
//! editor's checks, run-now, kill, enable, disable, the runner's liveness, the metrics text) it
//! asks of a [`Host`], which `cli/web.rs` implements with the very code of those commands: the
//! same validation, allowlists and audit rows.

pub mod auth;
mod charts;
mod editor;
pub mod http;
mod pages;
mod routes;
mod tls;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::store::Store;

pub use auth::User;
pub use editor::form_of;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Listen(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl WebError {
    /// Bad input (exit status 2) rather than a runtime failure.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, WebError::Config(_) | WebError::Listen(_))
    }
}

/// Bad input (exit 2) for [`WebError::is_bad_input`], else a runtime error.
impl crate::exit::Coded for WebError {
    fn exit_code(&self) -> crate::exit::ExitCode {
        if self.is_bad_input() {
            crate::exit::ExitCode::Usage
        } else {
            crate::exit::ExitCode::Error
        }
    }
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Listen, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            let p = PathBuf::from(path);
            if !p.is_absolute() {
                return Err(format!("unix:{path}: the socket path must be absolute"));
            }
            return Ok(Listen::Unix(p));
        }
        s.parse::<SocketAddr>().map(Listen::Tcp).map_err(|_| {
            format!("{s:?} is not an address: give IP:PORT (127.0.0.1:8080, [::1]:8080) or unix:/path/to.sock")
        })
    }
}

pub struct Options {
    pub listen: Listen,
    pub db: PathBuf,
    /// The system shown when a URL names none.
    pub system: String,
    pub allow_actions: bool,
    pub insecure_listen: bool,
    /// Certificate chain and private key (PEM) for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub workers: usize,
    pub config: Config,
}

/// A refused or failed action, as the editor and the buttons report it.
#[derive(Debug)]
pub struct ActionError {
    /// The HTTP status: 422 bad input (the CLI's exit 2), 403 not allowed (exit 5), 404, 500.
    pub status: u16,
    /// The form field the problem is about, when it is about one.
    pub field: Option<&'static str>,
    pub message: String,
}

/// The job editor's fields, as the form sends them (empty: not given).
#[derive(Debug, Clone, Default)]
pub struct JobForm {
    pub name: String,
    pub schedule: String,
    pub description: String,
    pub category: String,
    pub priority: String,
    pub timeout: String,
    pub retries: String,
    pub retry_delay: String,
    pub timezone: String,
    pub command: String,
    /// The shell executor's program and arguments, one per line.
    pub argv: String,
    /// Executor parameters, one KEY=VALUE per line.
    pub params: String,
    pub allow_concurrent: bool,
    pub active: bool,
}

/// What the dashboard asks of the command line.
pub trait Host: Send + Sync {
    /// The pid of the runner that is up on this host, if any.
    fn runner_pid(&self, store: &Store) -> Option<u32>;
    /// The Prometheus text of `cronmgr metrics`.
    fn metrics(&self, store: &Store) -> anyhow::Result<String>;
    /// Create (`original` None) or change a job, as `add` and `edit` do. The job's name.
    fn save_job(
        &self,
        user: &User,
        system: &str,
        original: Option<&str>,
        form: &JobForm,
    ) -> Result<String, ActionError>;
    fn set_active(
        &self,
        user: &User,
        system: &str,
        name: &str,
        active: bool,
    ) -> Result<(), ActionError>;
    /// Start a run now (in the background, as `run-now` does).
    fn run_now(&self, user: &User, system: &str, name: &str) -> Result<(), ActionError>;
    fn kill(&self, user: &User, execution: i64) -> Result<(), ActionError>;
}

fn is_loopback(listen: &Listen) -> bool {
    match listen {
        Listen::Tcp(a) => a.ip().is_loopback(),
        Listen::Unix(_) => true,
    }
}

/// Check the options, bind, and serve until killed.
pub fn serve(opts: Options, host: Arc<dyn Host>) -> Result<(), WebError> {
    if !is_loopback(&opts.listen) && opts.tls.is_none() && !opts.insecure_listen {
        return Err(WebError::Listen(format!(
            "refusing to listen on {} without TLS: job output and the login would cross the network in clear. \
             Give --tls-cert and --tls-key, or put a TLS reverse proxy in front on 127.0.0.1, \
             or pass --insecure-listen if this network is trusted",
            match &opts.listen {
                Listen::Tcp(a) => a.to_string(),
                Listen::Unix(p) => p.display().to_string(),
            }
        )));
    }
    let auth_settings =
        auth::Settings::load(&opts.config, std::env::var("CRONMGR_WEB_TOKEN").ok())?;
    let is_unix = matches!(opts.listen, Listen::Unix(_));
    if !is_unix && auth_settings.password_hash.is_none() && auth_settings.token.is_none() {
        return Err(WebError::Config(format!(
            "no way to log in: set [web] password_hash (from `cronmgr web --hash-password`) or password_file in {}, \
             or a token (CRONMGR_WEB_TOKEN, [web] token_file); or listen on a unix socket",
            opts.config.path.display()
        )));
    }
    // Fail now, not at the first request, on a database that is not there.
    Store::open_existing(&opts.db).map_err(|e| {
        WebError::Config(format!(
            "opening database {}: {e}",
            crate::store::display_db(&opts.db)
        ))
    })?;
    let wrap = match &opts.tls {
        Some((cert, key)) => Some(tls::wrapper(cert, key)?),
        None => None,
    };
    let listener = match &opts.listen {
        Listen::Tcp(addr) => http::Listener::Tcp(
            std::net::TcpListener::bind(addr)
                .map_err(|e| WebError::Listen(format!("cannot listen on {addr}: {e}")))?,
        ),
        Listen::Unix(path) => {
            // A stale socket from a previous run: remove it, but never anything else.
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
            let l = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
                WebError::Listen(format!("cannot listen on {}: {e}", path.display()))
            })?;
            use std::os::unix::fs::PermissionsExt;
            // Owner and group only: the file mode is the access control here.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
            http::Listener::Unix(l)
        }
    };
    let shown = match &listener {
        http::Listener::Tcp(l) => format!(
            "{}://{}",
            if wrap.is_some() { "https" } else { "http" },
            l.local_addr()?
        ),
        http::Listener::Unix(_) => format!("{:?}", opts.listen),
    };
    // One line on stderr that scripts (and the tests) wait for.
    eprintln!(
        "cronmgr web: listening on {shown} ({})",
        if opts.allow_actions {
            "actions allowed"
        } else {
            "read-only"
        }
    );
    let workers = opts.workers;
    let app = Arc::new(routes::App::new(opts, auth::Auth::new(auth_settings), host));
    let handle = Arc::new(move |req| app.handle(req));
    http::serve(listener, workers, wrap, handle)?;
    Ok(())
}
