//! Module-to-module direct methods over HTTPS to the hub (protocol.md §4.3): `POST
//! /twins/{d}/modules/{m}/methods` with our SAS token and `x-ms-edge-moduleId`, bounded by a
//! connect deadline and by the method's own timeouts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::identity::ModuleIdentity;
use crate::options::ClientOptions;
use crate::validate;
use crate::wire::encoding::encode;

/// What to invoke.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodInvocation {
    pub method_name: String,
    pub payload: Value,
    /// How long the target may take to answer (edgeHub allows 5–300 s).
    pub response_timeout: Duration,
    /// How long to wait for the target to connect (0–300 s).
    pub connect_timeout: Duration,
}

impl MethodInvocation {
    pub fn new(method_name: impl Into<String>, payload: Value) -> Self {
        MethodInvocation {
            method_name: method_name.into(),
            payload,
            response_timeout: Duration::from_secs(30),
            connect_timeout: Duration::ZERO,
        }
    }

    fn validate(&self) -> Result<Vec<u8>> {
        validate::method_name(&self.method_name)?;
        let secs = self.response_timeout.as_secs();
        if !(5..=300).contains(&secs) || self.connect_timeout.as_secs() > 300 {
            return Err(Error::invalid("response_timeout must be 5-300 s and connect_timeout 0-300 s"));
        }
        let body = json!({
            "methodName": self.method_name,
            "payload": self.payload,
            "responseTimeoutInSeconds": secs,
            "connectTimeoutInSeconds": self.connect_timeout.as_secs(),
        });
        let payload_len = serde_json::to_vec(&self.payload).map(|v| v.len()).unwrap_or(0);
        if payload_len > validate::MAX_METHOD_PAYLOAD_BYTES {
            return Err(Error::new(ErrorKind::MessageTooLarge, "method payload exceeds 128 KB"));
        }
        Ok(serde_json::to_vec(&body).expect("JSON value serialises"))
    }
}

/// The target's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResult {
    pub status: i64,
    pub payload: Value,
}

pub(crate) struct Invoker {
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    proxy: Option<String>,
    connect_timeout: Duration,
    sas_ttl: Duration,
}

impl Invoker {
    pub(crate) fn new(identity: &ModuleIdentity, options: &ClientOptions, tls: Arc<rustls::ClientConfig>) -> Self {
        Invoker {
            tls,
            port: options.https_port.or(identity.https_port).unwrap_or(crate::transport::HTTPS_PORT),
            proxy: options.proxy.clone(),
            connect_timeout: options.connect_timeout,
            sas_ttl: options.sas_ttl,
        }
    }

    pub(crate) async fn invoke(
        &self,
        id: &ModuleIdentity,
        device: &str,
        module: Option<&str>,
        call: &MethodInvocation,
    ) -> Result<MethodResult> {
        validate::identity_id("device", device)?;
        if let Some(m) = module {
            validate::identity_id("module", m)?;
        }
        let body = call.validate()?;
        let path = match module {
            Some(m) => format!("/twins/{}/modules/{}/methods?api-version=2020-09-30", encode(device), encode(m)),
            None => format!("/twins/{}/methods?api-version=2020-09-30", encode(device)),
        };
        let token = id.credentials.token(&id.hub_host_name, &id.device_id, &id.module_id, self.sas_ttl).await?;
        let request = hyper::Request::post(path)
            .header("host", &id.gateway_host_name)
            .header("authorization", token.value)
            .header("x-ms-edge-moduleId", format!("{}/{}", id.device_id, id.module_id))
            .header("content-type", "application/json")
            .header("user-agent", format!("edgemodule/{}", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::with_source(ErrorKind::Internal, "building the method request", e))?;
        let total = self.connect_timeout + call.connect_timeout + call.response_timeout + Duration::from_secs(2);
        let (status, body) = tokio::time::timeout(total, self.round_trip(&id.gateway_host_name, request))
            .await
            .map_err(|_| Error::timeout("invoke_method", total))??;
        interpret(status, &body)
    }

    async fn round_trip(&self, host: &str, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes)> {
        // The connect deadline bounds reaching the port; TLS and the call have the call's own.
        let tcp = crate::transport::reach_https(host, self.port, self.proxy.as_deref());
        let tcp = tokio::time::timeout(self.connect_timeout, tcp)
            .await
            .map_err(|_| Error::timeout("connecting to the hub's HTTPS port", self.connect_timeout))??;
        let tls = crate::transport::open_tls(tcp, host, &self.tls).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Error::with_source(ErrorKind::ConnectionLost, "HTTP handshake", e))?;
        tokio::spawn(conn);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Error::with_source(ErrorKind::ConnectionLost, "method request failed", e))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), 1024 * 1024)
            .collect()
            .await
            .map_err(|_| Error::new(ErrorKind::Protocol, "method response body unreadable or over 1 MiB"))?
            .to_bytes();
        Ok((status, body))
    }
}

fn interpret(status: u16, body: &[u8]) -> Result<MethodResult> {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = json.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| json.to_string());
    match status {
        200 => Ok(MethodResult {
            status: json
                .get("status")
                .and_then(Value::as_i64)
                .ok_or_else(|| Error::new(ErrorKind::Protocol, "method response has no integer 'status'"))?,
            payload: json.get("payload").cloned().unwrap_or(Value::Null),
        }),
        404 => Err(Error::new(ErrorKind::NotFound, message)),
        504 => Err(Error::new(ErrorKind::Timeout, message)),
        401 | 403 => Err(Error::new(ErrorKind::Unauthorized, message)),
        400 => Err(Error::new(ErrorKind::InvalidArgument, message)),
        429 => Err(Error::new(ErrorKind::Throttled, message)),
        s => Err(Error::new(ErrorKind::Rejected, format!("hub answered {s}: {message}"))),
    }
}
