//! TLS for the client: trust exactly the given PEM roots (the workload trust bundle or the CA
//! file), never the system store, as the official SDKs do for edgeHub.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, ErrorKind, Result};

pub fn client_config(trusted_pem: &[&str]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for pem in trusted_pem {
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            let cert =
                cert.map_err(|e| Error::with_source(ErrorKind::Tls, "trusted certificate PEM is malformed", e))?;
            roots.add(cert).map_err(|e| Error::with_source(ErrorKind::Tls, "trusted certificate is not usable", e))?;
        }
    }
    if roots.is_empty() {
        return Err(Error::new(
            ErrorKind::Tls,
            "no trusted CA certificate was given (trust bundle or CA file is empty)",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::with_source(ErrorKind::Tls, "TLS protocol versions", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
