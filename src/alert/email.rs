//! Email over SMTP (STARTTLS, implicit TLS or plain, with authentication) or the local sendmail.
//!
//! The server and its credentials live in the root-owned config file's `[smtp]` section; each
//! field can be overridden from the environment (`CRONMGR_SMTP_HOST`, `_PORT`, `_TLS`,
//! `_USERNAME`, `_PASSWORD`, `_FROM`, `_SENDMAIL`), which keeps the password out of the file.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SendmailTransport, SmtpTransport, Transport};
use serde::Deserialize;

use super::redact;

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
            .field("password", &self.password.as_ref().map(|_| redact::MARK))
            .field("sendmail", &self.sendmail)
            .field("from", &self.from)
            .finish()
    }
}

/// How long one SMTP conversation may take.
const TIMEOUT: Duration = Duration::from_secs(15);

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

    pub fn is_configured(&self) -> bool {
        self.host.is_some() || self.sendmail.is_some()
    }

    fn sender(&self) -> Result<Mailbox, String> {
        let from = self
            .from
            .clone()
            .unwrap_or_else(|| format!("cronmgr@{}", super::payload::hostname()));
        from.parse()
            .map_err(|e| format!("[smtp] from {from:?} is not an address: {e}"))
    }
}

/// Send one plain-text message to a comma-separated list of addresses.
pub fn send(cfg: &SmtpConfig, to: &str, subject: &str, body: &str) -> Result<(), String> {
    let mut builder = Message::builder().from(cfg.sender()?).subject(subject);
    for addr in to.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let mailbox: Mailbox = addr
            .parse()
            .map_err(|e| format!("bad recipient {addr:?}: {e}"))?;
        builder = builder.to(mailbox);
    }
    let message = builder
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|e| format!("building the message: {e}"))?;
    let secrets = [cfg.password.as_deref().unwrap_or("")];
    let scrub = |e: String| redact::scrub(&e, &secrets);
    if let Some(path) = &cfg.sendmail {
        return SendmailTransport::new_with_command(path.as_os_str())
            .send(&message)
            .map_err(|e| scrub(format!("sendmail {}: {e}", path.display())));
    }
    let Some(host) = cfg.host.as_deref() else {
        return Err(
            "no mail server configured: set [smtp] host (or sendmail) in the config file".into(),
        );
    };
    let builder = match cfg.tls {
        Tls::None => SmtpTransport::builder_dangerous(host).port(cfg.port.unwrap_or(25)),
        Tls::Starttls => SmtpTransport::starttls_relay(host)
            .map_err(|e| scrub(format!("SMTP {host}: {e}")))?
            .port(cfg.port.unwrap_or(587)),
        Tls::Tls => SmtpTransport::relay(host)
            .map_err(|e| scrub(format!("SMTP {host}: {e}")))?
            .port(cfg.port.unwrap_or(465)),
    };
    let mut builder = builder
        .timeout(Some(TIMEOUT))
        .hello_name(ClientId::Domain(super::payload::hostname()));
    if let Some(user) = &cfg.username {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            cfg.password.clone().unwrap_or_default(),
        ));
    }
    builder
        .build()
        .send(&message)
        .map(|_| ())
        .map_err(|e| scrub(format!("SMTP {host}: {e}")))
}

#[cfg(test)]
mod tests {
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
    fn nothing_configured_is_a_clear_error() {
        let err = send(&SmtpConfig::default(), "a@example.com", "s", "b").unwrap_err();
        assert!(err.contains("[smtp] host"), "{err}");
    }
}
