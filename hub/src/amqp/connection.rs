//! One AMQP connection: protocol header, optional SASL, then a supervisor that accepts sessions,
//! registers the module with the hub once CBS (or SASL PLAIN) authenticated it, forwards the
//! hub's commands (desired patches, method calls, eviction) to the right link, and closes the
//! connection when the token expires.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgemodule_core::amqp::mapping::Amqp;
use edgemodule_core::amqp::twin as twin_msg;
use edgemodule_core::transport::write_behind::WriteBehind;
use fe2o3_amqp::acceptor::{ConnectionAcceptor, ListenerConnectionHandle, SessionAcceptor};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::header::{self, Protocol, Replay};
use super::outbox::OutboxSlot;
use crate::hub::{ConnCommand, Hub};
use crate::mqtt::auth::Authenticated;

const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may stay open without a valid token.
const AUTH_TIMEOUT: Duration = Duration::from_secs(60);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// edgeHub's AMQP frame limit allows 1 MiB messages; routing still enforces 256 KB.
const MAX_FRAME: u32 = 64 * 1024;

/// What the link tasks tell the supervisor.
#[derive(Debug)]
pub(super) enum ConnEvent {
    /// `Conn::auth` was set or renewed.
    Authenticated,
}

/// State shared by the supervisor and the link tasks of one connection.
pub(super) struct Conn {
    pub hub: Arc<Hub>,
    pub peer: String,
    /// The identity a put-token (or SASL PLAIN) proved; links of other identities are refused.
    pub auth: Mutex<Option<Authenticated>>,
    pub events: mpsc::UnboundedSender<ConnEvent>,
    /// Outgoing messages of the hub-side sender links, once attached.
    pub cbs_out: OutboxSlot,
    pub twin_out: OutboxSlot,
    pub methods_out: OutboxSlot,
    pub desired_subscribed: AtomicBool,
    /// Whether method calls can be delivered (the hub's method receiver link is attached).
    pub methods_subscribed: Arc<AtomicBool>,
}

impl Conn {
    pub fn identity(&self) -> Option<Authenticated> {
        self.auth.lock().unwrap().clone()
    }

    /// Queues `msg` on a hub-side sender link; false when that link is not attached.
    pub fn send_on(slot: &OutboxSlot, msg: Amqp) -> bool {
        slot.lock().unwrap().as_ref().is_some_and(|tx| tx.send(msg).is_ok())
    }
}

/// Serves one AMQP byte stream (TLS from the AMQPS listener, or a WebSocket on the HTTPS port)
/// until the connection ends.
pub async fn serve<S>(hub: Arc<Hub>, mut stream: S, peer: String, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + std::fmt::Debug + Unpin + Send + 'static,
{
    let (head, protocol) = match tokio::time::timeout(OPEN_TIMEOUT, header::read(&mut stream)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return tracing::debug!(peer, "AMQP: {e}"),
        Err(_) => return tracing::debug!(peer, "AMQP: no protocol header within {OPEN_TIMEOUT:?}"),
    };
    let (events, events_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        hub,
        peer,
        auth: Mutex::new(None),
        events,
        cbs_out: Mutex::new(None),
        twin_out: Mutex::new(None),
        methods_out: Mutex::new(None),
        desired_subscribed: AtomicBool::new(false),
        methods_subscribed: Arc::new(AtomicBool::new(false)),
    });
    let stream = WriteBehind::new(Replay::new(head, stream));
    let opened = tokio::time::timeout(OPEN_TIMEOUT, open(&conn, protocol, stream)).await;
    let handle = match opened {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return tracing::info!(peer = conn.peer, "AMQP connection refused: {e}"),
        Err(_) => return tracing::debug!(peer = conn.peer, "AMQP open timed out"),
    };
    Supervisor::new(conn, events_rx, shutdown).run(handle).await;
}

async fn open<S>(
    conn: &Arc<Conn>,
    protocol: Protocol,
    stream: WriteBehind<Replay<S>>,
) -> Result<ListenerConnectionHandle, String>
where
    S: AsyncRead + AsyncWrite + std::fmt::Debug + Unpin + Send + 'static,
{
    let builder = ConnectionAcceptor::builder().container_id("edgemodule-hub").max_frame_size(MAX_FRAME);
    let result = match protocol {
        Protocol::Amqp => builder.build().accept(stream).await,
        Protocol::Sasl => builder.sasl_acceptor(super::sasl::Sasl::new(conn.clone())).build().accept(stream).await,
    };
    result.map_err(|e| e.to_string())
}

struct Supervisor {
    conn: Arc<Conn>,
    events: mpsc::UnboundedReceiver<ConnEvent>,
    shutdown: watch::Receiver<bool>,
    commands: Option<mpsc::UnboundedReceiver<ConnCommand>>,
    registration: Option<(String, u64)>,
    sessions: JoinSet<()>,
}

impl Supervisor {
    fn new(conn: Arc<Conn>, events: mpsc::UnboundedReceiver<ConnEvent>, shutdown: watch::Receiver<bool>) -> Self {
        Supervisor { conn, events, shutdown, commands: None, registration: None, sessions: JoinSet::new() }
    }

    async fn run(mut self, mut handle: ListenerConnectionHandle) {
        let expiry = tokio::time::sleep(AUTH_TIMEOUT);
        tokio::pin!(expiry);
        if self.conn.identity().is_some() {
            self.on_authenticated(expiry.as_mut());
        }
        let why = loop {
            tokio::select! {
                incoming = handle.next_incoming_session() => match incoming {
                    Some(s) => match SessionAcceptor::new().accept_incoming_session(s, &mut handle).await {
                        Ok(session) => {
                            self.sessions.spawn(super::session::serve(self.conn.clone(), session));
                        }
                        Err(e) => break format!("accepting a session: {e}"),
                    },
                    None => break "the peer closed the connection".to_string(),
                },
                Some(event) = self.events.recv() => match event {
                    ConnEvent::Authenticated => self.on_authenticated(expiry.as_mut()),
                },
                Some(cmd) = next_command(&mut self.commands) => {
                    if let Some(why) = self.on_command(cmd) {
                        break why;
                    }
                }
                _ = &mut expiry => break match self.conn.identity() {
                    Some(_) => "SAS token expired".to_string(),
                    None => format!("not authenticated within {AUTH_TIMEOUT:?}"),
                },
                _ = self.shutdown.changed() => break "hub stopping".to_string(),
            }
        };
        self.finish(handle, &why).await;
    }

    /// Registers the module on the first authentication; every (re)authentication moves the
    /// expiry to the new token's.
    fn on_authenticated(&mut self, expiry: std::pin::Pin<&mut tokio::time::Sleep>) {
        let Some(auth) = self.conn.identity() else { return };
        let left = auth.valid_until.saturating_sub(edgemodule_core::wire::sas::unix_now());
        expiry.reset(Instant::now() + Duration::from_secs(left));
        if self.registration.is_none() {
            let client_id = format!("{}/{}", auth.device, auth.module);
            let (tx, rx) = mpsc::unbounded_channel();
            let id = self.conn.hub.register(&client_id, tx, self.conn.methods_subscribed.clone());
            tracing::info!(peer = self.conn.peer, client_id, "module connected over AMQP");
            self.commands = Some(rx);
            self.registration = Some((client_id, id));
        }
    }

    /// Forwards a hub command; `Some(reason)` closes the connection.
    fn on_command(&self, cmd: ConnCommand) -> Option<String> {
        let conn = &self.conn;
        match cmd {
            ConnCommand::DesiredPatch { body, .. } => {
                if conn.desired_subscribed.load(Ordering::Acquire) {
                    Conn::send_on(&conn.twin_out, twin_msg::desired_patch(&body));
                }
            }
            ConnCommand::MethodRequest { name, rid, payload } => {
                if !Conn::send_on(&conn.methods_out, twin_msg::method_request(&rid, &name, &payload)) {
                    tracing::debug!(peer = conn.peer, rid, "method request with no method link attached");
                }
            }
            // User topics are an MQTT broker feature.
            ConnCommand::UserPublish { .. } => {}
            ConnCommand::Close { reason } => return Some(reason.to_string()),
        }
        None
    }

    async fn finish(mut self, mut handle: ListenerConnectionHandle, why: &str) {
        self.conn.methods_subscribed.store(false, Ordering::Release);
        if let Some((client_id, id)) = self.registration.take() {
            self.conn.hub.unregister(&client_id, id);
            tracing::info!(client_id, "AMQP connection closed: {why}");
        } else {
            tracing::info!(peer = self.conn.peer, "AMQP connection closed: {why}");
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, handle.close()).await;
        self.sessions.abort_all();
        for slot in [&self.conn.cbs_out, &self.conn.twin_out, &self.conn.methods_out] {
            slot.lock().unwrap().take();
        }
    }
}

/// The next hub command, or never while the module is not registered yet.
async fn next_command(commands: &mut Option<mpsc::UnboundedReceiver<ConnCommand>>) -> Option<ConnCommand> {
    match commands {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
