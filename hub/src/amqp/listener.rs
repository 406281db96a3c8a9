//! Accepts TCP connections on the AMQPS port, sets TCP_NODELAY, completes the TLS handshake under
//! a deadline and hands the stream to a connection task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::hub::Hub;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until `shutdown` fires; connections end with it too.
pub async fn run(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("AMQP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (hub, acceptor, stop) = (hub.clone(), acceptor.clone(), shutdown.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => super::connection::serve(hub, tls, peer.to_string(), stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, "AMQP TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "AMQP TLS handshake timed out"),
            }
        });
    }
}
