//! HTTPS endpoint for module-to-module direct methods (protocol.md §4.3):
//! `POST /twins/{d}/modules/{m}/methods`, authenticated by the caller's SAS token and
//! `x-ms-edge-moduleId`, answered 200 / 400 / 401 / 404 / 504 with edgeHub's JSON bodies.
//! The same port serves MQTT and AMQP over WebSocket (`GET /$iothub/websocket`, `mqtt::websocket`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgemodule_core::wire::encoding::decode;
use edgemodule_core::wire::sas::ParsedToken;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::hub::Hub;
use crate::listener::{accept_tls, TlsStream};

const MAX_BODY: usize = 256 * 1024;

/// Serves the HTTPS port until `stop` fires: direct methods, and WebSocket upgrades for MQTT
/// and AMQP.
pub async fn run(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let stop_connections = stop.clone();
    accept_tls("HTTPS", listener, tls, stop, move |tls, peer| {
        serve_connection(hub.clone(), tls, peer.to_string(), stop_connections.clone())
    })
    .await
}

async fn serve_connection(hub: Arc<Hub>, tls: TlsStream, peer: String, stop: tokio::sync::watch::Receiver<bool>) {
    let service = hyper::service::service_fn(move |req| {
        let (hub, stop, peer) = (hub.clone(), stop.clone(), peer.clone());
        async move {
            if crate::mqtt::websocket::is_websocket_request(&req) {
                return Ok(crate::mqtt::websocket::upgrade(hub, req, peer, stop));
            }
            Ok::<_, std::convert::Infallible>(handle(&hub, req).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await;
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, json!({ "message": message.into() }))
}

async fn handle(hub: &Hub, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some((device, module)) = parse_path(req.uri().path()) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only POST is supported");
    }
    if let Err((status, message)) = authorize(hub, &req) {
        return error(status, message);
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds {MAX_BODY} bytes")),
    };
    let call = match MethodCall::parse(&body) {
        Ok(c) => c,
        Err(why) => return reply(StatusCode::BAD_REQUEST, Value::from(why)),
    };
    let Some(module) = module.filter(|_| device == hub.identity.device_id) else {
        return error(StatusCode::NOT_FOUND, format!("Client {device} not found"));
    };
    let outcome =
        hub.invoke_method(&module, &call.name, call.payload, call.response_timeout, call.connect_timeout).await;
    match outcome {
        Ok(o) => {
            let payload =
                o.payload.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()).unwrap_or(Value::Null);
            reply(StatusCode::OK, json!({ "status": o.status, "payload": payload }))
        }
        Err(f) => error(StatusCode::from_u16(f.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), f.message),
    }
}

/// `/twins/{d}/modules/{m}/methods` → (d, Some(m)); `/twins/{d}/methods` → (d, None). IDs are URL-decoded.
fn parse_path(path: &str) -> Option<(String, Option<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["twins", d, "modules", m, "methods"] => Some((decode(d)?, Some(decode(m)?))),
        ["twins", d, "methods"] => Some((decode(d)?, None)),
        _ => None,
    }
}

/// Checks the caller's identity header and SAS token; the error is the status and message to answer.
fn authorize(hub: &Hub, req: &Request<Incoming>) -> Result<(), (StatusCode, String)> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let caller = header("x-ms-edge-moduleId")
        .and_then(|v| v.split_once('/'))
        .filter(|(d, m)| !d.is_empty() && !m.is_empty() && !m.contains('/'))
        .ok_or_else(|| (StatusCode::BAD_REQUEST, "Invalid header value for x-ms-edge-moduleId".to_string()))?;
    if caller.0 != hub.identity.device_id {
        return Err((StatusCode::UNAUTHORIZED, "Only modules on the same device can invoke DirectMethods".into()));
    }
    let unauthorized = |why: String| {
        tracing::warn!(caller = ?caller, "method call refused: {why}");
        (StatusCode::UNAUTHORIZED, "Unauthorized".to_string())
    };
    let token = header("authorization").ok_or_else(|| unauthorized("no Authorization header".into()))?;
    let token = ParsedToken::parse(token).map_err(|e| unauthorized(e.message().into()))?;
    let key = hub.module_key(caller.1).ok_or_else(|| unauthorized(format!("module {} is not deployed", caller.1)))?;
    crate::mqtt::auth::check_token(hub, &token, caller.0, caller.1, key).map_err(unauthorized)
}

/// The invoke request body, validated as edgeHub's MethodRequestValidator does.
struct MethodCall {
    name: String,
    payload: Vec<u8>,
    response_timeout: Duration,
    connect_timeout: Duration,
}

impl MethodCall {
    fn parse(body: &[u8]) -> Result<MethodCall, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
        let name = v.get("methodName").and_then(Value::as_str).unwrap_or("");
        if name.trim().is_empty() || name.chars().count() > 100 {
            return Err("methodName must be 1-100 characters".into());
        }
        let payload = serde_json::to_vec(v.get("payload").unwrap_or(&Value::Null)).expect("JSON value serialises");
        if payload.len() > edgemodule_core::validate::MAX_METHOD_PAYLOAD_BYTES {
            return Err("payload exceeds 128 KB".into());
        }
        let seconds = |key: &str, default: u64, range: std::ops::RangeInclusive<u64>| -> Result<Duration, String> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(Duration::from_secs(default)),
                Some(x) => x
                    .as_u64()
                    .filter(|s| range.contains(s))
                    .map(Duration::from_secs)
                    .ok_or_else(|| format!("{key} must be an integer in {range:?}")),
            }
        };
        Ok(MethodCall {
            name: name.to_string(),
            payload,
            response_timeout: seconds("responseTimeoutInSeconds", 30, 5..=300)?,
            connect_timeout: seconds("connectTimeoutInSeconds", 0, 0..=300)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_bodies() {
        assert_eq!(parse_path("/twins/d/modules/m%2Dx/methods"), Some(("d".into(), Some("m-x".into()))));
        assert_eq!(parse_path("/twins/d/methods"), Some(("d".into(), None)));
        assert_eq!(parse_path("/twins/d/modules/m"), None);
        let c = MethodCall::parse(br#"{"methodName":"reset","payload":{"a":1}}"#).unwrap();
        assert_eq!(
            (c.name.as_str(), c.payload.as_slice(), c.response_timeout.as_secs()),
            ("reset", &br#"{"a":1}"#[..], 30)
        );
        assert!(MethodCall::parse(br#"{"methodName":"x","responseTimeoutInSeconds":4}"#).is_err());
        assert!(MethodCall::parse(br#"{"methodName":" "}"#).is_err());
        assert!(MethodCall::parse(b"nope").is_err());
    }
}
