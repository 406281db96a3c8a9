//! The life of a client's connection task, the same for every transport: connect within the
//! deadline and report the first outcome to `ModuleClient::connect`, serve the connection, and
//! after a loss reconnect with the retry policy's backoff (still taking commands) until the
//! client closes, the credentials are refused or the policy gives up. The MQTT driver
//! (`driver.rs`) and the AMQP driver (`amqp/driver.rs`) supply the transport-specific steps.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::driver::DriverParts;
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;
use crate::state::{ConnectionState, DisconnectReason};

/// How one connection ended.
pub(crate) enum Ended {
    /// The client was closed; answer `done` once everything is failed and the state is final.
    Closed(oneshot::Sender<()>),
    /// The token is about to expire and the transport renews it by reconnecting.
    Renew,
    Lost(DisconnectReason, String),
}

/// The transport-specific steps of a connection task.
pub(crate) trait ConnectionTask: Sized {
    /// An open connection, as `open` returns it and `serve` consumes it.
    type Connection;
    /// Names the transport in logs and in the connect deadline's error ("… over AMQP").
    const OVER: &'static str;

    fn parts(&self) -> &DriverParts;
    /// Connects and authenticates.
    async fn open(&mut self) -> Result<Self::Connection>;
    /// Serves a connection until it ends, including the transport's own cleanup after it.
    async fn serve(&mut self, connection: Self::Connection) -> Ended;
    /// Waits out a backoff while still taking commands; returns a close request if one came.
    async fn wait_disconnected(&mut self, wait: Duration) -> Option<oneshot::Sender<()>>;
    /// Answers every pending operation and queued command with `err()`.
    fn fail_all(&mut self, err: impl Fn() -> Error);

    fn set_state(&self, s: ConnectionState) {
        self.parts().state.send_replace(s);
    }
}

/// Runs `task` until closed. `first` reports the outcome of the first connection attempt.
pub(crate) async fn supervise<T: ConnectionTask>(mut task: T, first: oneshot::Sender<Result<()>>) {
    let mut first = Some(first);
    let (mut attempt, mut down_since) = (0u32, Instant::now());
    loop {
        let deadline = task.parts().options.connect_timeout;
        let opened = match tokio::time::timeout(deadline, task.open()).await {
            Ok(opened) => opened,
            Err(_) => Err(Error::timeout(&format!("connecting to the hub{}", T::OVER), deadline)),
        };
        let connection = match opened {
            Ok(c) => c,
            Err(e) => {
                if let Some(f) = first.take() {
                    let _ = f.send(Err(e));
                    return task.set_state(ConnectionState::disconnected(DisconnectReason::Closed));
                }
                tracing::warn!("reconnect{} failed: {e}", T::OVER);
                if e.kind() == ErrorKind::Unauthorized {
                    return shut_down(task, DisconnectReason::BadCredential, e);
                }
                attempt += 1;
                task.parts().counters.retries.fetch_add(1, Relaxed);
                match task.parts().options.retry.delay(attempt, down_since.elapsed()) {
                    Some(wait) => match task.wait_disconnected(wait).await {
                        Some(done) => return finish_close(task, done),
                        None => continue,
                    },
                    None => return shut_down(task, DisconnectReason::RetryExpired, e),
                }
            }
        };
        attempt = 0;
        task.set_state(ConnectionState::connected());
        if let Some(f) = first.take() {
            let _ = f.send(Ok(()));
        }
        match task.serve(connection).await {
            Ended::Closed(done) => return finish_close(task, done),
            Ended::Renew => {
                task.parts().counters.token_renewals.fetch_add(1, Relaxed);
                task.set_state(ConnectionState::disconnected(DisconnectReason::ExpiredToken));
            }
            Ended::Lost(reason, why) => {
                tracing::info!("connection{} lost: {why}", T::OVER);
                task.set_state(ConnectionState::disconnected(reason));
                if matches!(task.parts().options.retry, RetryPolicy::None) {
                    return shut_down(task, reason, Error::new(ErrorKind::ConnectionLost, why));
                }
            }
        }
        task.parts().counters.reconnects.fetch_add(1, Relaxed);
        down_since = Instant::now();
    }
}

/// Ends the task for good after `cause`: every caller gets its error, handlers stop.
fn shut_down<T: ConnectionTask>(mut task: T, reason: DisconnectReason, cause: Error) {
    let (kind, msg) = (cause.kind(), cause.display_chain());
    task.fail_all(|| Error::new(kind, msg.clone()));
    task.set_state(ConnectionState::disconnected(reason));
    task.parts().handlers.lock().unwrap().close();
}

/// Ends the task after `close()`: pending work fails with CLOSED, then `done` answers the close.
fn finish_close<T: ConnectionTask>(mut task: T, done: oneshot::Sender<()>) {
    task.fail_all(|| Error::new(ErrorKind::Closed, "the client was closed"));
    task.set_state(ConnectionState::disconnected(DisconnectReason::Closed));
    task.parts().handlers.lock().unwrap().close();
    let _ = done.send(());
}
