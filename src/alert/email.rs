//! Email over SMTP (STARTTLS, implicit TLS or plain, with authentication) or the local sendmail.
//!
//! The server and its credentials live in the root-owned config file's `[smtp]` section; each
//! field can be overridden from the environment (`CRONMGR_SMTP_HOST`, `_PORT`, `_TLS`,
//! `_USERNAME`, `_PASSWORD`, `_FROM`, `_SENDMAIL`), which keeps the password out of the file.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SendmailTransport, SmtpTransport, Transport};

use crate::config::{SmtpConfig, Tls};
use crate::model::redact;

/// How long one SMTP conversation may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The sender: `[smtp] from`, else cronmgr@<hostname>.
fn sender(cfg: &SmtpConfig) -> Result<Mailbox, String> {
    let from = cfg
        .from
        .clone()
        .unwrap_or_else(|| format!("cronmgr@{}", crate::host::hostname()));
    from.parse()
        .map_err(|e| format!("[smtp] from {from:?} is not an address: {e}"))
}

/// Send one plain-text message to a comma-separated list of addresses.
pub fn send(cfg: &SmtpConfig, to: &str, subject: &str, body: &str) -> Result<(), String> {
    let mut builder = Message::builder().from(sender(cfg)?).subject(subject);
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
        .hello_name(ClientId::Domain(crate::host::hostname()));
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
    fn nothing_configured_is_a_clear_error() {
        let err = send(&SmtpConfig::default(), "a@example.com", "s", "b").unwrap_err();
        assert!(err.contains("[smtp] host"), "{err}");
    }
}
