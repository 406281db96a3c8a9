//! Helpers shared by the hub's integration tests that drive it with a plain MQTT client.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{ConnectReturnCode, Event, EventLoop, Packet};

/// The longest any single protocol step may take.
pub const STEP: Duration = Duration::from_secs(10);

/// A TLS client configuration that trusts only `ca_pem` (the hub's CA).
pub fn client_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Polls the event loop until CONNACK; returns its code (or the error's text).
pub async fn connack(ev: &mut EventLoop) -> Result<ConnectReturnCode, String> {
    loop {
        match tokio::time::timeout(STEP, ev.poll()).await.map_err(|_| "no CONNACK".to_string())? {
            Ok(Event::Incoming(Packet::ConnAck(a))) => return Ok(a.code),
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Ok(code),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Polls until a packet matching `want` arrives.
pub async fn until<T>(ev: &mut EventLoop, mut want: impl FnMut(&Packet) -> Option<T>) -> T {
    loop {
        match tokio::time::timeout(STEP, ev.poll()).await.expect("timed out waiting for a packet") {
            Ok(Event::Incoming(p)) => {
                if let Some(t) = want(&p) {
                    return t;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("connection failed: {e}"),
        }
    }
}

/// Matches a PUBLISH whose topic starts with `prefix`.
pub fn publish_on(prefix: &str) -> impl FnMut(&Packet) -> Option<rumqttc::Publish> + '_ {
    move |p| match p {
        Packet::Publish(p) if p.topic.starts_with(prefix) => Some(p.clone()),
        _ => None,
    }
}
