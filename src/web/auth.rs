//! Who may see the dashboard: a password (argon2 hash) that gives a session cookie, a bearer token
//! for scripts, or a unix-socket client (the socket's file mode already limits who connects).
//! Sessions live in memory (a restart logs everyone out); failed logins are rate-limited per
//! client address.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::http::{Peer, Request};
use super::WebError;
use crate::config::Config;

pub const COOKIE: &str = "cronmgr_session";
/// Failed logins allowed per client address per window, and over all clients.
const FAILURES_PER_PEER: usize = 5;
const FAILURES_TOTAL: usize = 50;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
const MIN_TOKEN: usize = 16;

/// The `[web]` section of the config file.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The name the password logs in as (the audit log's `web:NAME`).
    pub user: String,
    pub password_hash: Option<String>,
    pub token: Option<String>,
    /// Whether the web user may touch critical jobs and their systems' settings. Counts only in a
    /// config file owned by root and writable by no one else, as `[admins]` does.
    pub admin: bool,
}

impl Settings {
    /// Read `[web]`: `user`, `password_hash` or `password_file`, `token_file`, `admin`; and the
    /// token from `CRONMGR_WEB_TOKEN`, which wins over `token_file`.
    pub fn load(config: &Config, env_token: Option<String>) -> Result<Settings, WebError> {
        let bad = |m: String| WebError::Config(format!("{}: [web] {m}", config.path.display()));
        let mut s = Settings {
            user: "web".into(),
            ..Default::default()
        };
        let table = config.web.clone().unwrap_or_default();
        for (key, value) in &table {
            let text = || {
                value
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("{key}: expected a string")))
            };
            match key.as_str() {
                "user" => {
                    let u = text()?;
                    if u.is_empty()
                        || !u
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    {
                        return Err(bad(format!(
                            "user: {u:?} must be letters, digits, '.', '_' or '-'"
                        )));
                    }
                    s.user = u;
                }
                "password_hash" => s.password_hash = Some(text()?),
                "password_file" => {
                    s.password_hash = Some(read_secret_file(Path::new(&text()?)).map_err(bad)?)
                }
                "token_file" => {
                    s.token = Some(read_secret_file(Path::new(&text()?)).map_err(bad)?);
                }
                "admin" => {
                    let yes = value
                        .as_bool()
                        .ok_or_else(|| bad("admin: expected true or false".into()))?;
                    if yes && !config.root_owned {
                        return Err(bad(
                            "admin = true counts only in a config file owned by root and writable by no one else".into(),
                        ));
                    }
                    s.admin = yes;
                }
                other => {
                    return Err(bad(format!(
                        "unknown key {other:?} (known: user, password_hash, password_file, token_file, admin)"
                    )))
                }
            }
        }
        if let Some(h) = &s.password_hash {
            PasswordHash::new(h).map_err(|e| {
                bad(format!(
                    "password_hash: not an argon2 hash ({e}); make one with `cronmgr web --hash-password`"
                ))
            })?;
        }
        if let Some(t) = env_token.filter(|t| !t.is_empty()) {
            s.token = Some(t);
        }
        if let Some(t) = &s.token {
            if t.len() < MIN_TOKEN {
                return Err(WebError::Config(format!(
                    "the web token is {} characters long: use at least {MIN_TOKEN} (e.g. `openssl rand -hex 32`)",
                    t.len()
                )));
            }
        }
        Ok(s)
    }
}

/// A root-only secret file: owned by root (or by the user running the dashboard), readable by no
/// one else, not a symbolic link. Its content, trimmed.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let me = crate::host::euid();
    if !meta.is_file() || (meta.uid() != 0 && meta.uid() != me) || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} must be a file owned by root (or by the dashboard's user) with mode 0600 or 0400",
            path.display()
        ));
    }
    let mut text = String::new();
    f.take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.trim().to_string())
}

/// An argon2id hash of `password` with a fresh random salt (argon2's default cost: 19 MiB, 2
/// passes, as OWASP recommends).
pub fn hash_password(password: &str) -> Result<String, WebError> {
    hash_with(&Argon2::default(), password)
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, WebError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| WebError::Config(format!("salt: {e}")))?;
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WebError::Config(format!("hashing: {e}")))
}

/// Random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: the pointer and length describe the unfilled tail of buf.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
    buf
}

pub fn random_token() -> String {
    hex::encode(random_bytes::<32>())
}

/// Equal in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The person or script behind a request.
#[derive(Debug, Clone)]
pub struct User {
    /// As the audit log records it: `web:NAME`, `web-token`, or `web-socket:UID`.
    pub name: String,
    pub admin: bool,
    /// The token forms must carry; None for a bearer token (no ambient credential to forge).
    pub csrf: Option<String>,
}

struct Session {
    user: String,
    admin: bool,
    csrf: String,
    expires: Instant,
}

pub struct Auth {
    pub settings: Settings,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    /// The CSRF token of unix-socket clients (who have no session).
    socket_csrf: String,
}

pub enum Login {
    /// The session id for the cookie.
    Ok(String),
    Wrong,
    TooMany,
    NoPassword,
}

impl Auth {
    pub fn new(settings: Settings) -> Auth {
        Auth {
            settings,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            socket_csrf: random_token(),
        }
    }

    /// Who sent `req`, if anyone we know.
    pub fn identify(&self, req: &Request) -> Option<User> {
        if let Peer::Unix(uid) = req.peer {
            return Some(User {
                name: format!(
                    "web-socket:{}",
                    uid.and_then(crate::access::user_by_uid)
                        .map(|u| u.name)
                        .or_else(|| uid.map(|u| u.to_string()))
                        .unwrap_or_else(|| "?".into())
                ),
                admin: uid == Some(0) || self.settings.admin,
                csrf: Some(self.socket_csrf.clone()),
            });
        }
        if let Some(auth) = req.header("authorization") {
            let given = auth.strip_prefix("Bearer ")?.trim();
            let token = self.settings.token.as_deref()?;
            return same(given, token).then(|| User {
                name: "web-token".into(),
                admin: self.settings.admin,
                csrf: None,
            });
        }
        let id = req.cookie(COOKIE)?;
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        let key = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()));
        let s = sessions.get(&key)?;
        Some(User {
            name: format!("web:{}", s.user),
            admin: s.admin,
            csrf: Some(s.csrf.clone()),
        })
    }

    pub fn login(&self, peer: &Peer, user: &str, password: &str) -> Login {
        let Some(hash) = self.settings.password_hash.as_deref() else {
            return Login::NoPassword;
        };
        let key = peer.key();
        let now = Instant::now();
        {
            let Ok(mut f) = self.failures.lock() else {
                return Login::TooMany;
            };
            f.retain(|_, v| {
                v.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
                !v.is_empty()
            });
            let total: usize = f.values().map(Vec::len).sum();
            if total >= FAILURES_TOTAL || f.get(&key).map_or(0, Vec::len) >= FAILURES_PER_PEER {
                return Login::TooMany;
            }
        }
        let ok = user == self.settings.user
            && PasswordHash::new(hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            });
        if !ok {
            if let Ok(mut f) = self.failures.lock() {
                f.entry(key).or_default().push(now);
            }
            return Login::Wrong;
        }
        let id = random_token();
        let key = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()));
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(
                key,
                Session {
                    user: self.settings.user.clone(),
                    admin: self.settings.admin,
                    csrf: random_token(),
                    expires: now + SESSION_LIFE,
                },
            );
        }
        Login::Ok(id)
    }

    pub fn logout(&self, req: &Request) {
        if let (Some(id), Ok(mut s)) = (req.cookie(COOKIE), self.sessions.lock()) {
            s.remove(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                id.as_bytes(),
            )));
        }
    }

    /// The Set-Cookie value of a new session.
    pub fn cookie(id: &str, tls: bool) -> String {
        format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            SESSION_LIFE.as_secs(),
            if tls { "; Secure" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(web: &str) -> Config {
        let mut c = Config::defaults("/etc/cronmgr/config.toml".into());
        c.web = Some(toml::from_str(web).unwrap());
        c
    }

    /// A cheap hash for tests (verification reads the cost from the hash itself).
    fn cheap_hash(password: &str) -> String {
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        hash_with(&argon, password).unwrap()
    }

    #[test]
    fn the_default_hash_is_argon2id() {
        assert!(hash_password("x")
            .unwrap()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = cheap_hash("s3cret pass");
        let auth =
            Auth::new(Settings::load(&config(&format!("password_hash = {hash:?}")), None).unwrap());
        let peer = Peer::Tcp("127.0.0.1:1".parse().unwrap());
        assert!(matches!(auth.login(&peer, "web", "wrong"), Login::Wrong));
        assert!(matches!(
            auth.login(&peer, "web", "s3cret pass"),
            Login::Ok(_)
        ));
        assert!(matches!(
            auth.login(&peer, "other", "s3cret pass"),
            Login::Wrong
        ));
    }

    #[test]
    fn failed_logins_are_rate_limited_per_peer() {
        let hash = cheap_hash("pw-long-enough");
        let auth =
            Auth::new(Settings::load(&config(&format!("password_hash = {hash:?}")), None).unwrap());
        let peer = Peer::Tcp("10.0.0.1:1".parse().unwrap());
        for _ in 0..FAILURES_PER_PEER {
            assert!(matches!(auth.login(&peer, "web", "x"), Login::Wrong));
        }
        // Even the right password is refused until the window passes.
        assert!(matches!(
            auth.login(&peer, "web", "pw-long-enough"),
            Login::TooMany
        ));
        let other = Peer::Tcp("10.0.0.2:1".parse().unwrap());
        assert!(matches!(
            auth.login(&other, "web", "pw-long-enough"),
            Login::Ok(_)
        ));
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Settings::load(&config("password_hash = \"plain\""), None).unwrap_err();
        assert!(e.to_string().contains("password_hash"), "{e}");
        let e = Settings::load(&config("colour = \"red\""), None).unwrap_err();
        assert!(e.to_string().contains("unknown key \"colour\""), "{e}");
        let e = Settings::load(&config(""), Some("short".into())).unwrap_err();
        assert!(e.to_string().contains("at least"), "{e}");
        // admin = true in a file anyone may have written does not count.
        let e = Settings::load(&config("admin = true"), None).unwrap_err();
        assert!(e.to_string().contains("owned by root"), "{e}");
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
