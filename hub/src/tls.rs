//! The hub's TLS server configuration: TLS 1.2 (the Python SDK pins it) and 1.3 (Node negotiates it).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Builds a rustls server config from PEM text; `alpn` lists protocols to offer (empty for none).
pub fn server_config(cert_chain_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("server certificate PEM holds no certificate".into());
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| format!("server key PEM: {e}"))?
        .ok_or("server key PEM holds no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server certificate/key: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
