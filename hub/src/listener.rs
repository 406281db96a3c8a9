//! The accept loop of every TLS port of the hub (MQTT, AMQPS, HTTPS): accept, set TCP_NODELAY
//! (request/response latency depends on it), complete the TLS handshake under a deadline and hand
//! the stream to that port's connection task.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// A client connection once its TLS handshake is done.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A client that opens TCP and never finishes the handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed accept (e.g. out of file descriptors), before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long a connection may go on after the hub stops: enough to send its close.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Accepts on `listener` until `shutdown` fires, running `serve(stream, peer)` as a task of its
/// own for every connection whose handshake completes. `port` names the port in logs.
pub async fn accept_tls<S, F>(
    port: &'static str,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
    serve: S,
) where
    S: Fn(TlsStream, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let serve = Arc::new(serve);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("{port} accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, serve) = (acceptor.clone(), serve.clone());
        tokio::spawn(ends_with_hub(shutdown.clone(), async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => serve(tls, peer).await,
                Ok(Err(e)) => tracing::debug!(%peer, "{port} TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "{port} TLS handshake timed out"),
            }
        }));
    }
}

/// Runs a connection task until it ends, or until [`STOP_GRACE`] after the hub stops. A
/// registered connection closes itself when the hub tells it to, but one still in its TLS
/// handshake, AMQP open or WebSocket upgrade (or a CLI monitor) is not told and would keep the
/// hub — and its store's file lock — alive for its own timeout, so a hub restarted on the same
/// state dir could not open the store.
pub async fn ends_with_hub(mut shutdown: watch::Receiver<bool>, connection: impl Future<Output = ()>) {
    let _live = LiveTask::enter();
    let hub_stopped = async {
        let stopped = shutdown.wait_for(|stopped| *stopped).await.is_ok();
        if stopped {
            tokio::time::sleep(STOP_GRACE).await;
        } else {
            // The hub was dropped without `shutdown`: open connections go on (see `RunningHub`).
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = connection => {}
        _ = hub_stopped => tracing::debug!("connection cut off {STOP_GRACE:?} after the hub stopped"),
    }
}

/// Connection tasks running in this process (every hub's): a hub that stays referenced after
/// shutdown says how many, which tells a connection that outlived its cut-off from a reference
/// held elsewhere.
static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);

pub fn live_connection_tasks() -> usize {
    LIVE_TASKS.load(Ordering::Relaxed)
}

struct LiveTask;

impl LiveTask {
    fn enter() -> LiveTask {
        LIVE_TASKS.fetch_add(1, Ordering::Relaxed);
        LiveTask
    }
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        LIVE_TASKS.fetch_sub(1, Ordering::Relaxed);
    }
}
