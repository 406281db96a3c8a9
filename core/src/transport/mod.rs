//! Transports: how the client's MQTT or AMQP byte stream reaches the hub. MQTT over TLS on 8883
//! (the default), AMQP over TLS on 5671, or either over WebSocket over TLS on the HTTPS port (443)
//! at `/$iothub/websocket` (subprotocol `mqtt` / `AMQPWSB10`), optionally through an HTTP CONNECT
//! proxy. Everything above `Stream` is transport-agnostic.

pub mod proxy;
pub mod websocket;
pub mod write_behind;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::{Error, ErrorKind, Result};
use crate::identity::ModuleIdentity;
use crate::options::{ClientOptions, Transport};

/// The default MQTT over TLS port.
pub const MQTT_PORT: u16 = 8883;
/// The default HTTPS port, which also carries the WebSocket transports.
pub const HTTPS_PORT: u16 = 443;
/// The default AMQPS port.
pub const AMQP_PORT: u16 = 5671;

/// One connection's byte stream, whatever carries it.
// Both variants are large (TLS state); one exists per connection and is never copied around, so
// boxing either would only add an indirection to every read and write.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Stream {
    Tls(TlsStream<TcpStream>),
    WebSocket(websocket::WsStream<TlsStream<TcpStream>>),
}

/// Opens the byte stream the options ask for (TCP_NODELAY, TLS with `tls`, and for WebSocket the
/// upgrade with the transport's subprotocol, through the proxy if one is set). The caller bounds
/// it in time.
pub(crate) async fn connect(
    id: &ModuleIdentity,
    options: &ClientOptions,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Stream> {
    let host = id.gateway_host_name.as_str();
    let https_port = options.https_port.or(id.https_port).unwrap_or(HTTPS_PORT);
    let (port, subprotocol) = match options.transport {
        Transport::Mqtt => (options.mqtt_port.or(id.mqtt_port).unwrap_or(MQTT_PORT), None),
        Transport::Amqp => (options.amqp_port.or(id.amqp_port).unwrap_or(AMQP_PORT), None),
        Transport::MqttWebSocket => (https_port, Some(websocket::Subprotocol::Mqtt)),
        Transport::AmqpWebSocket => (https_port, Some(websocket::Subprotocol::Amqp)),
    };
    let Some(subprotocol) = subprotocol else {
        return Ok(Stream::Tls(open_tls(open_tcp(host, port).await?, host, tls).await?));
    };
    let tls = open_tls(reach_https(host, port, options.proxy.as_deref()).await?, host, tls).await?;
    let ws = websocket::client(tls, host, port, subprotocol).await.map_err(|e| websocket_error(e, host, port))?;
    Ok(Stream::WebSocket(ws))
}

/// A TCP stream to the hub's HTTPS port, tunnelled through the HTTP CONNECT proxy when one is set
/// (a network that needs a proxy for the WebSocket transports needs it for every HTTPS request).
pub(crate) async fn reach_https(host: &str, port: u16, proxy: Option<&str>) -> Result<TcpStream> {
    match proxy {
        Some(url) => proxy::ProxyUrl::parse(url)?.tunnel(host, port).await,
        None => open_tcp(host, port).await,
    }
}

pub(crate) async fn open_tcp(host: &str, port: u16) -> Result<TcpStream> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| Error::with_source(ErrorKind::ConnectionRefused, format!("cannot reach {host}:{port}"), e))?;
    tcp.set_nodelay(true).map_err(|e| Error::with_source(ErrorKind::Io, "setting TCP_NODELAY", e))?;
    Ok(tcp)
}

pub(crate) async fn open_tls(
    tcp: TcpStream,
    host: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>> {
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| Error::config(format!("'{host}' is not a valid host name")))?;
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| Error::with_source(ErrorKind::Tls, format!("TLS with {host} failed"), e))
}

fn websocket_error(e: tokio_tungstenite::tungstenite::Error, host: &str, port: u16) -> Error {
    use tokio_tungstenite::tungstenite::Error as Ws;
    match e {
        Ws::Http(response) => Error::new(
            ErrorKind::ConnectionRefused,
            format!("{host}:{port} refused the WebSocket upgrade to {}: HTTP {}", websocket::PATH, response.status()),
        ),
        Ws::Io(e) => Error::with_source(ErrorKind::ConnectionLost, format!("WebSocket upgrade with {host}:{port}"), e),
        other => Error::with_source(ErrorKind::Protocol, format!("WebSocket upgrade with {host}:{port} failed"), other),
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Tls(_) => f.write_str("Stream::Tls"),
            Stream::WebSocket(ws) => write!(f, "Stream::WebSocket({ws:?})"),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::WebSocket(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::WebSocket(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::WebSocket(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::WebSocket(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::WebSocket(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::WebSocket(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
