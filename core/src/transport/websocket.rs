//! MQTT and AMQP over WebSocket (protocol.md §1.1, §7.1): the protocol's byte stream travels in
//! binary WebSocket messages on `GET /$iothub/websocket` over TLS on the HTTPS port; the
//! subprotocol (`mqtt` or `AMQPWSB10`) says which protocol it is. `WsStream` turns a WebSocket back
//! into an `AsyncRead + AsyncWrite` byte stream, so the MQTT and AMQP code above it is the same
//! for every transport. The client and the hub both use it.
//!
//! Neither protocol cares where message boundaries fall: a write becomes one binary message (split
//! above `MAX_WRITE`), and reads hand out message payloads as one continuous stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// The resource path every official SDK uses (edgeHub itself picks the handler by subprotocol).
pub const PATH: &str = "/$iothub/websocket";

/// What a WebSocket on [`PATH`] carries, named by its `Sec-WebSocket-Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subprotocol {
    /// MQTT 3.1.1: `mqtt`.
    Mqtt,
    /// AMQP 1.0: `AMQPWSB10` (what the official SDKs' AMQP-over-WebSocket transports send).
    Amqp,
}

impl Subprotocol {
    pub const ALL: [Subprotocol; 2] = [Subprotocol::Mqtt, Subprotocol::Amqp];

    /// The `Sec-WebSocket-Protocol` token.
    pub fn name(self) -> &'static str {
        match self {
            Subprotocol::Mqtt => "mqtt",
            Subprotocol::Amqp => "AMQPWSB10",
        }
    }

    /// The subprotocol a token names, ignoring case.
    pub fn parse(token: &str) -> Option<Subprotocol> {
        Subprotocol::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(token.trim()))
    }
}
/// The largest binary message written at once; a longer write is split.
const MAX_WRITE: usize = 256 * 1024;
/// The largest message or frame accepted from the peer (an MQTT packet is at most ~512 KB, an
/// AMQP frame is at most the negotiated frame size; peers write one packet/frame or a batch of
/// them per message).
const MAX_READ: usize = 8 * 1024 * 1024;

/// Bytes tungstenite reads from the stream at once. It zero-fills that much before every read
/// attempt, so its 128 KiB default costs more than it gains here (TLS hands out at most a few
/// 16 KiB records per read).
const READ_CHUNK: usize = 16 * 1024;

/// WebSocket settings shared by both ends.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        .max_message_size(Some(MAX_READ))
        .max_frame_size(Some(MAX_READ))
}

/// The `Sec-WebSocket-Accept` value answering a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(client_key)
}

/// Opens a WebSocket carrying `protocol` on an established (TLS) stream: the client side of the
/// upgrade to `wss://{host}:{port}/$iothub/websocket`. The caller bounds it in time.
pub async fn client<S>(io: S, host: &str, port: u16, protocol: Subprotocol) -> Result<WsStream<S>, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut request = format!("wss://{authority}{PATH}").into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol.name()));
    let (ws, _response) = tokio_tungstenite::client_async_with_config(request, io, Some(config())).await?;
    Ok(WsStream::new(ws))
}

/// The server side, after the HTTP upgrade has been answered with 101.
pub async fn server<S>(io: S) -> WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    WsStream::new(WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await)
}

/// A WebSocket seen as a byte stream of binary-message payloads.
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    pending: Bytes,
    eof: bool,
    ws_closed: bool,
}

impl<S> std::fmt::Debug for WsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream").field("pending", &self.pending.len()).field("eof", &self.eof).finish_non_exhaustive()
    }
}

impl<S> WsStream<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        WsStream { ws, pending: Bytes::new(), eof: false, ws_closed: false }
    }
}

fn io_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {other}")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                // Pings are answered by tungstenite itself; pongs and raw frames carry no protocol bytes.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => self.eof = true,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text WebSocket message on a binary protocol's connection",
                    )))
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
        let n = buf.len().min(MAX_WRITE);
        Pin::new(&mut self.ws).start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    /// Sends the WebSocket close frame, then closes the underlying stream (TLS close, FIN).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ws_closed {
            // A peer that already closed makes this fail; the stream below still gets closed.
            let _ = ready!(Pin::new(&mut self.ws).poll_close(cx));
            self.ws_closed = true;
        }
        Pin::new(self.ws.get_mut()).poll_shutdown(cx)
    }
}
