//! The generic webhook: the JSON payload POSTed to a URL, signed with HMAC-SHA256 when the system
//! has a `webhook_secret` (`X-Cronmgr-Signature: sha256=<hex of HMAC(secret, body)>`).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::redact;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Cronmgr-Signature";
/// How long one HTTP delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Check a signature header against a body (what a receiver does; used by tests and docs).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// POST a JSON body; Ok on a 2xx answer. The error never contains the URL's secret part.
pub fn post_json(url: &str, body: &str, headers: &[(&str, String)]) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("cronmgr/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent.post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let scrub = |e: String| redact::scrub(&e, &[url]);
    match req.send(body) {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!(
            "{} answered HTTP {}",
            redact::secret(url),
            resp.status().as_u16()
        )),
        Err(e) => Err(scrub(format!("{}: {e}", redact::secret(url)))),
    }
}

/// Deliver the payload to a webhook, signed when there is a secret.
pub fn send(
    url: &str,
    secret: Option<&str>,
    payload: &super::payload::Payload,
) -> Result<(), String> {
    let body = serde_json::to_string(payload).map_err(|e| e.to_string())?;
    let mut headers = vec![
        ("X-Cronmgr-Event", "alert".to_string()),
        ("X-Cronmgr-Alert", payload.id.to_string()),
    ];
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        headers.push((SIGNATURE_HEADER, sign(secret.as_bytes(), body.as_bytes())));
    }
    post_json(url, &body, &headers).map_err(|e| redact::scrub(&e, &[secret.unwrap_or("")]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let sig = sign(b"k", b"{\"a\":1}");
        assert!(verify(b"k", b"{\"a\":1}", &sig));
        assert!(!verify(b"other", b"{\"a\":1}", &sig));
        assert!(!verify(b"k", b"{\"a\":2}", &sig));
        assert!(!verify(b"k", b"{\"a\":1}", "md5=00"));
    }

    #[test]
    fn an_unreachable_url_fails_without_leaking_its_path() {
        // Port 9 (discard) on loopback: nothing listens in a test environment.
        let err = post_json("http://127.0.0.1:9/hook/SECRETPATH", "{}", &[]).unwrap_err();
        assert!(!err.contains("SECRETPATH"), "{err}");
        assert!(err.contains("127.0.0.1:9"), "{err}");
    }
}
