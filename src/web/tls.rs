//! HTTPS with rustls: a certificate chain and a private key, both PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::http::{Conn, Wrap};
use super::WebError;

/// What wraps each accepted TCP stream in a TLS session (the handshake runs on first read, in
/// the worker thread, under the socket's timeouts).
pub fn wrapper(cert: &Path, key: &Path) -> Result<Wrap, WebError> {
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        WebError::Config(format!("TLS: {}: {e}", what.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(key, &e))?;
    let config = Arc::new(config);
    Ok(Arc::new(move |stream| {
        let conn =
            rustls::ServerConnection::new(Arc::clone(&config)).map_err(std::io::Error::other)?;
        Ok(Box::new(rustls::StreamOwned::new(conn, stream)) as Box<dyn Conn>)
    }))
}
