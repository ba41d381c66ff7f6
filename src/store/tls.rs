//! TLS to PostgreSQL, as libpq does it: the URL's `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey`, with rustls (no OpenSSL).
//!
//! | sslmode | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` (default) | when the server offers it | no (as libpq) |
//! | `require` | always | no; against `sslrootcert` when one is given (as libpq) |
//! | `verify-ca` | always | signed by `sslrootcert` |
//! | `verify-full` | always | signed by `sslrootcert`, and names the host connected to |
//!
//! `sslrootcert=system` trusts the Mozilla roots built in (webpki-roots), for a managed server
//! with a public certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` tries plaintext first: cronmgr never prefers plaintext.
            other => {
                return Err(format!(
                "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS part of a URL's query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    /// The CA file (PEM) the server's certificate must chain to; `system` for the built-in roots.
    pub root_cert: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for servers that authenticate clients by certificate.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Split a `postgres://` URL into the URL the `postgres` crate reads (without the TLS
/// parameters it does not know) and the TLS parameters. Err names the bad parameter.
pub fn split_url(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), params));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            let v = percent_decode(value);
            if v.is_empty() {
                return Err(format!("{key} is empty: give a file"));
            }
            Ok(PathBuf::from(v))
        };
        match key {
            "sslmode" => params.mode = SslMode::parse(&percent_decode(value))?,
            "sslrootcert" => params.root_cert = Some(decoded()?),
            "sslcert" => params.client_cert = Some(decoded()?),
            "sslkey" => params.client_key = Some(decoded()?),
            _ => kept.push(pair),
        }
    }
    if params.client_cert.is_some() != params.client_key.is_some() {
        return Err("sslcert and sslkey go together: give both, or neither".into());
    }
    if params.mode == SslMode::Disable && params.client_cert.is_some() {
        return Err("sslcert with sslmode=disable: a client certificate needs TLS".into());
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, params))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `postgres` crate's mode for these parameters: it negotiates, rustls checks.
pub fn negotiation(params: &TlsParams) -> postgres::config::SslMode {
    match params.mode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    }
}

/// The rustls configuration these parameters ask for (unused with `sslmode=disable`).
pub fn client_config(params: &TlsParams) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    // libpq: `require` with a root certificate verifies it, as `verify-ca` does.
    let check = match (params.mode, &params.root_cert) {
        (SslMode::VerifyFull, _) => Check::Full,
        (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Check::Chain,
        _ => Check::Nothing,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(Unchecked(provider.clone())),
        Check::Chain | Check::Full => {
            let roots = Arc::new(roots(params)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            match check {
                Check::Full => webpki,
                _ => Arc::new(ChainOnly { roots, webpki }),
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&params.client_cert, &params.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("sslcert {}: no certificate in it", cert.display()));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("sslkey {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert/sslkey: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

enum Check {
    Nothing,
    Chain,
    Full,
}

/// The trust anchors: `sslrootcert`'s certificates, libpq's `~/.postgresql/root.crt` without
/// one, or the built-in roots for `sslrootcert=system`.
fn roots(params: &TlsParams) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let file = match &params.root_cert {
        Some(p) if p == Path::new("system") => {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            return Ok(store);
        }
        Some(p) => p.clone(),
        None => {
            let default = std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".postgresql/root.crt"))
                .filter(|p| p.exists());
            default.ok_or_else(|| {
                format!(
                    "sslmode={} needs sslrootcert=FILE: the CA certificate (PEM) that signed the server's certificate",
                    params.mode.as_str()
                )
            })?
        }
    };
    let certs = CertificateDer::pem_file_iter(&file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("sslrootcert {}: {e}", file.display()))?;
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "sslrootcert {}: no CA certificate in it",
            file.display()
        ));
    }
    Ok(store)
}

/// `prefer` and `require`: encrypted, but any certificate is taken (libpq does the same); the
/// handshake's signatures are still checked, so the session is keyed to the certificate shown.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name in the certificate is not
/// compared with the host (a server reached by an address its certificate does not list).
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            algs.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A TLS failure in a connection error, told plainly: which check refused what.
pub fn describe_failure(
    err: &(dyn std::error::Error + 'static),
    params: &TlsParams,
) -> Option<String> {
    let mut source = Some(err);
    while let Some(e) = source {
        let found = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = found {
            let root = params
                .root_cert
                .as_ref()
                .map_or("~/.postgresql/root.crt".to_string(), |p| {
                    p.display().to_string()
                });
            let what = match tls {
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => format!(
                    "the server's certificate is not signed by a CA in sslrootcert ({root})"
                ),
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                ) => "the server's certificate does not name the host connected to (sslmode=verify-full checks the name; verify-ca does not)".to_string(),
                rustls::Error::InvalidCertificate(rustls::CertificateError::Expired
                    | rustls::CertificateError::ExpiredContext { .. }) => {
                    "the server's certificate has expired".to_string()
                }
                rustls::Error::InvalidCertificate(other) => {
                    format!("the server's certificate was refused ({other:?})")
                }
                other => other.to_string(),
            };
            return Some(format!(
                "TLS handshake failed (sslmode={}): {what}",
                params.mode.as_str()
            ));
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_and_the_rest_stays() {
        let (url, p) = split_url(
            "postgres://u:p@db:5432/c?sslmode=verify-full&options=-csearch_path%3Dx&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@db:5432/c?options=-csearch_path%3Dx");
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        let (url, p) = split_url("postgres://db/c").unwrap();
        assert_eq!((url.as_str(), p.mode), ("postgres://db/c", SslMode::Prefer));
        let (url, _) = split_url("postgres://db/c?sslmode=disable").unwrap();
        assert_eq!(url, "postgres://db/c");
    }

    #[test]
    fn bad_tls_parameters_are_named() {
        let e = split_url("postgres://db/c?sslmode=verify").unwrap_err();
        assert!(
            e.contains("sslmode=\"verify\"") && e.contains("verify-full"),
            "{e}"
        );
        let e = split_url("postgres://db/c?sslcert=/a.pem").unwrap_err();
        assert!(e.contains("sslkey"), "{e}");
        let e = split_url("postgres://db/c?sslrootcert=").unwrap_err();
        assert!(e.contains("sslrootcert is empty"), "{e}");
    }

    #[test]
    fn verifying_without_a_root_certificate_says_what_is_missing() {
        let p = TlsParams {
            mode: SslMode::VerifyFull,
            root_cert: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..Default::default()
        };
        let e = client_config(&p).unwrap_err();
        assert!(e.contains("sslrootcert /nonexistent/ca.pem"), "{e}");
        // prefer and require need no file.
        assert!(client_config(&TlsParams::default()).is_ok());
    }
}
