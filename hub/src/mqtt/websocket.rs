//! MQTT and AMQP over WebSocket on the HTTPS port (protocol.md §1.1, §7.1): `GET /$iothub/websocket`
//! with `Sec-WebSocket-Protocol: mqtt` or `AMQPWSB10` is upgraded, and the binary messages' byte
//! stream goes to the same connection task as the MQTT/TLS (8883) or AMQPS (5671) listener's, so
//! authentication, routes, twins, methods, the store and the broker behave identically on both.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgemodule_core::transport::websocket::{self, Subprotocol, PATH};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::hub::Hub;

/// How long the upgraded connection may take to be handed over after the 101 is written.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the request asks for a WebSocket (`Upgrade: websocket`), or targets the WebSocket path.
pub fn is_websocket_request(req: &Request<Incoming>) -> bool {
    header_has_token(req.headers(), header::UPGRADE, "websocket") || is_websocket_path(req.uri().path())
}

/// `/$iothub/websocket`, with the `$` as is or percent-encoded.
fn is_websocket_path(path: &str) -> bool {
    path == PATH || edgemodule_core::wire::encoding::decode(path).as_deref() == Some(PATH)
}

/// Answers a WebSocket request: 101 and an MQTT or AMQP connection task on the upgraded stream
/// (the first offered subprotocol the hub speaks), or the reason it is refused (404 on another
/// path, 400/426 for a malformed upgrade, 400 without `mqtt` or `AMQPWSB10`). AMQP connections end
/// when `shutdown` fires, as the AMQPS listener's do.
pub fn upgrade(
    hub: Arc<Hub>,
    mut req: Request<Incoming>,
    peer: String,
    shutdown: watch::Receiver<bool>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !is_websocket_path(path) {
        return refuse(StatusCode::NOT_FOUND, format!("no WebSocket endpoint at {path} (use {PATH})"));
    }
    if req.method() != Method::GET {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "a WebSocket upgrade is a GET".into());
    }
    let headers = req.headers();
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return refuse(StatusCode::BAD_REQUEST, format!("{PATH} only serves WebSocket upgrades"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        let mut r = refuse(StatusCode::UPGRADE_REQUIRED, "Sec-WebSocket-Version must be 13".into());
        r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return r;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|k| !k.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing".into());
    };
    // Echo the offered spelling (clients compare it with what they sent).
    let Some((offered, protocol)) = offered_subprotocol(headers) else {
        let names = Subprotocol::ALL.map(Subprotocol::name).join(" or ");
        return refuse(StatusCode::BAD_REQUEST, format!("no supported WebSocket subprotocol (expected {names})"));
    };
    let accept = websocket::accept_key(key.as_bytes());
    let upgraded = hyper::upgrade::on(&mut req);
    tokio::spawn(crate::listener::ends_with_hub(shutdown.clone(), async move {
        match tokio::time::timeout(UPGRADE_TIMEOUT, upgraded).await {
            Ok(Ok(io)) => {
                let stream = websocket::server(TokioIo::new(io)).await;
                let peer = format!("{peer} (WebSocket)");
                match protocol {
                    Subprotocol::Mqtt => super::connection::serve(hub, stream, peer).await,
                    Subprotocol::Amqp => crate::amqp::serve(hub, stream, peer, shutdown).await,
                }
            }
            Ok(Err(e)) => tracing::debug!(peer, "WebSocket upgrade failed: {e}"),
            Err(_) => tracing::debug!(peer, "WebSocket upgrade timed out"),
        }
    }));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, offered)
        .body(Full::new(Bytes::new()))
        .expect("static response parts are valid")
}

fn refuse(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    tracing::debug!(%status, "WebSocket request refused: {message}");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(serde_json::json!({ "message": message }).to_string())))
        .expect("static response parts are valid")
}

/// Whether a comma-separated header (any of its occurrences) lists `token`, case-insensitively.
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The tokens of a comma-separated header (all its occurrences), in order.
fn header_tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// The first offered subprotocol the hub speaks, as the client spelled it.
fn offered_subprotocol(headers: &HeaderMap) -> Option<(String, Subprotocol)> {
    header_tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).find_map(|t| Some((t.to_string(), Subprotocol::parse(t)?)))
}
