//! Client of the IoT Edge workload API (protocol.md §5.2–§5.3): the module asks edgelet to sign
//! its SAS token and fetches the trust bundle it must use for edgeHub's TLS certificate.
//!
//! One HTTP/1.1 connection per request, over a unix socket (`unix:///path`) or TCP
//! (`http://host:port`); every request, connect included, is bounded by the client's timeout.

use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, ErrorKind, Result};
use crate::wire::encoding::encode;
use crate::wire::sas::{format_token, module_resource_uri, string_to_sign};

/// Largest answer accepted from the workload API (trust bundles hold a few certificates).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Where the workload API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Unix(PathBuf),
    /// `connect` is `host:port` for `TcpStream::connect`; `host` is the Host header.
    Tcp {
        connect: String,
        host: String,
    },
}

/// A handle on the workload API; cheap to clone, holds no connection.
#[derive(Debug, Clone)]
pub struct WorkloadClient {
    uri: String,
    endpoint: Endpoint,
    api_version: String,
    timeout: Duration,
}

impl WorkloadClient {
    /// uri: "unix:///path/to.sock" or "http://host:port"; api_version e.g. "2018-06-28"; every
    /// request bounded by `timeout`.
    pub fn new(uri: &str, api_version: &str, timeout: Duration) -> Result<Self> {
        let endpoint = parse_uri(uri)?;
        let api_version = api_version.trim();
        if api_version.is_empty() {
            return Err(Error::config("workload API version is empty"));
        }
        if timeout.is_zero() {
            return Err(Error::invalid("workload API timeout must be greater than zero"));
        }
        Ok(WorkloadClient { uri: uri.trim().to_string(), endpoint, api_version: api_version.to_string(), timeout })
    }

    /// The URI this client talks to, as given.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The api-version sent with every request.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// POST sign: returns the base64 digest. `data` = raw bytes to sign (base64-encoded here).
    pub async fn sign(&self, module_id: &str, generation_id: &str, data: &[u8]) -> Result<String> {
        if module_id.is_empty() {
            return Err(Error::config("workload sign: module id is empty"));
        }
        if generation_id.is_empty() {
            return Err(Error::config("workload sign: module generation id is empty"));
        }
        let path = format!("/modules/{}/genid/{}/sign", encode(module_id), encode(generation_id));
        let body = serde_json::json!({ "keyId": "primary", "algo": "HMACSHA256", "data": B64.encode(data) });
        let answer = self.call(Method::POST, &path, Some(body.to_string()), "sign").await?;
        let digest = answer
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| self.protocol("sign", "the answer has no string 'digest'"))?;
        match B64.decode(digest) {
            Ok(bytes) if !bytes.is_empty() => Ok(digest.to_string()),
            _ => Err(self.protocol("sign", "'digest' is not non-empty base64")),
        }
    }

    /// GET trust-bundle: the PEM text edgeHub's certificate must chain to.
    pub async fn trust_bundle(&self) -> Result<String> {
        let answer = self.call(Method::GET, "/trust-bundle", None, "trust-bundle").await?;
        let pem = answer
            .get("certificate")
            .and_then(Value::as_str)
            .ok_or_else(|| self.protocol("trust-bundle", "the answer has no string 'certificate'"))?;
        if pem.trim().is_empty() {
            return Err(Error::config(format!("workload API at {} returned an empty trust bundle", self.uri)));
        }
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::config(format!(
                "workload API at {} returned a trust bundle with no PEM certificate",
                self.uri
            )));
        }
        Ok(pem.to_string())
    }

    fn protocol(&self, what: &str, why: &str) -> Error {
        Error::new(ErrorKind::Protocol, format!("workload API {what} at {}: {why}", self.uri))
    }

    /// One request, bounded by the timeout; a 200 answer's JSON object, or the error.
    async fn call(&self, method: Method, path: &str, body: Option<String>, what: &str) -> Result<Value> {
        let path_and_query = format!("{path}?api-version={}", encode(&self.api_version));
        let (status, bytes) =
            tokio::time::timeout(self.timeout, self.exchange(method, &path_and_query, body))
                .await
                .map_err(|_| Error::timeout(&format!("workload API {what} at {}", self.uri), self.timeout))??;
        if status != StatusCode::OK {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| {
                    let text = String::from_utf8_lossy(&bytes);
                    text.trim().chars().take(200).collect()
                });
            return Err(Error::config(format!("workload API {what} at {} returned {status}: {message}", self.uri)));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(self.protocol(what, "the answer is not a JSON object")),
            Err(e) => Err(Error::with_source(
                ErrorKind::Protocol,
                format!("workload API {what} at {}: the answer is not JSON", self.uri),
                e,
            )),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes)> {
        let refused = |e: std::io::Error| {
            Error::with_source(
                ErrorKind::ConnectionRefused,
                format!("cannot connect to the workload API at {}", self.uri),
                e,
            )
        };
        let host = match &self.endpoint {
            Endpoint::Unix(_) => "localhost",
            Endpoint::Tcp { host, .. } => host.as_str(),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, host)
            .header(USER_AGENT, concat!("edgemodule/", env!("CARGO_PKG_VERSION")))
            .header(CONNECTION, "close");
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| {
            Error::with_source(ErrorKind::Configuration, format!("bad workload API request for {}", self.uri), e)
        })?;
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(refused)?;
                self.send(stream, request).await
            }
            Endpoint::Tcp { connect, .. } => {
                let stream = tokio::net::TcpStream::connect(connect.as_str()).await.map_err(refused)?;
                let _ = stream.set_nodelay(true);
                self.send(stream, request).await
            }
        }
    }

    /// Drives the connection and the request together, so dropping this future drops both.
    async fn send<S>(&self, stream: S, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let lost = |e: hyper::Error| {
            Error::with_source(ErrorKind::ConnectionLost, format!("workload API connection to {} failed", self.uri), e)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(lost)?;
        let exchange = async {
            let response = sender.send_request(request).await.map_err(lost)?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    Error::new(ErrorKind::Protocol, format!("workload API answer from {} is too large", self.uri))
                } else {
                    Error::new(
                        ErrorKind::ConnectionLost,
                        format!("workload API connection to {} failed reading the answer: {e}", self.uri),
                    )
                }
            })?;
            Ok((status, body.to_bytes()))
        };
        tokio::pin!(conn);
        tokio::pin!(exchange);
        tokio::select! {
            result = &mut exchange => result,
            // The connection ended first; the exchange now settles (with an error if the answer
            // never came).
            _ = &mut conn => exchange.await,
        }
    }
}

fn parse_uri(uri: &str) -> Result<Endpoint> {
    let trimmed = uri.trim();
    let bad = |why: &str| Error::config(format!("invalid workload URI '{uri}': {why}"));
    let scheme_is = |s: &str| trimmed.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s));
    if scheme_is("unix://") {
        let path = &trimmed["unix://".len()..];
        if path.is_empty() {
            return Err(bad("no socket path"));
        }
        Ok(Endpoint::Unix(PathBuf::from(path)))
    } else if scheme_is("http://") {
        let rest = &trimmed["http://".len()..];
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('@') || authority.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("malformed host"));
        }
        // `[::1]` and `host` have no port; `[::1]:80` and `host:80` do.
        let has_port = match authority.rfind(']') {
            Some(close) => authority[close..].contains(':'),
            None => authority.contains(':'),
        };
        let connect = if has_port { authority.to_string() } else { format!("{authority}:80") };
        Ok(Endpoint::Tcp { connect, host: authority.to_string() })
    } else {
        Err(Error::config(format!("unsupported workload URI '{uri}': expected unix:// or http://")))
    }
}

/// Builds a module SAS token via the workload API exactly as §5.3:
/// sr = encode(hub/devices/d/modules/m), data = sr + "\n" + expiry, sig = the returned digest.
pub async fn workload_module_token(
    client: &WorkloadClient,
    hub_host: &str,
    device: &str,
    module: &str,
    generation_id: &str,
    expiry: u64,
) -> Result<String> {
    let sr = encode(&module_resource_uri(hub_host, device, module));
    let digest = client.sign(module, generation_id, string_to_sign(&sr, expiry).as_bytes()).await?;
    Ok(format_token(&sr, &digest, expiry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn parses_uris() {
        assert_eq!(
            parse_uri("unix:///var/run/iotedge/workload.sock").unwrap(),
            Endpoint::Unix("/var/run/iotedge/workload.sock".into())
        );
        assert_eq!(parse_uri(" UNIX:///x.sock ").unwrap(), Endpoint::Unix("/x.sock".into()));
        assert_eq!(
            parse_uri("http://127.0.0.1:15580/").unwrap(),
            Endpoint::Tcp { connect: "127.0.0.1:15580".into(), host: "127.0.0.1:15580".into() }
        );
        assert_eq!(
            parse_uri("http://edged").unwrap(),
            Endpoint::Tcp { connect: "edged:80".into(), host: "edged".into() }
        );
        assert_eq!(
            parse_uri("http://[::1]").unwrap(),
            Endpoint::Tcp { connect: "[::1]:80".into(), host: "[::1]".into() }
        );
        assert_eq!(
            parse_uri("http://[::1]:8080").unwrap(),
            Endpoint::Tcp { connect: "[::1]:8080".into(), host: "[::1]:8080".into() }
        );
        for bad in ["", "unix://", "http://", "https://h:1", "/var/run/x.sock", "tcp://h:1", "http://u@h:1"] {
            let e = parse_uri(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Configuration, "{bad}");
            assert!(e.message().contains(&format!("'{bad}'")), "{}", e.message());
        }
        assert_eq!(
            WorkloadClient::new("unix:///x", "", Duration::from_secs(1)).unwrap_err().kind(),
            ErrorKind::Configuration
        );
        assert_eq!(
            WorkloadClient::new("unix:///x", "2018-06-28", Duration::ZERO).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    /// A TCP server that answers every connection with `response` after reading the request head.
    async fn canned(response: String) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(response.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (format!("http://{addr}"), task)
    }

    fn ok(body: &str) -> String {
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
    }

    #[tokio::test]
    async fn maps_answers_to_error_kinds() {
        let cases: Vec<(String, ErrorKind, &str)> = vec![
            (ok("not json"), ErrorKind::Protocol, "not JSON"),
            (ok(r#"{"dig":"x"}"#), ErrorKind::Protocol, "digest"),
            (ok(r#"{"digest":"***"}"#), ErrorKind::Protocol, "digest"),
            (ok(r#"[1]"#), ErrorKind::Protocol, "object"),
            (
                "HTTP/1.1 404 Not Found\r\ncontent-length: 32\r\n\r\n{\"message\":\"module m not found\"}".into(),
                ErrorKind::Configuration,
                "404 Not Found: module m not found",
            ),
            ("HTTP/1.1 500 Oops\r\ncontent-length: 4\r\n\r\nboom".into(), ErrorKind::Configuration, "500"),
            ("garbage\r\n\r\n".into(), ErrorKind::ConnectionLost, "failed"),
        ];
        for (response, kind, needle) in cases {
            let (uri, task) = canned(response).await;
            let client = WorkloadClient::new(&uri, "2018-06-28", Duration::from_secs(5)).unwrap();
            let e = client.sign("m", "g", b"data").await.unwrap_err();
            assert_eq!(e.kind(), kind, "{e}");
            assert!(e.message().contains(needle), "{e}");
            assert!(e.message().contains(&uri), "{e}");
            task.abort();
        }
    }

    #[tokio::test]
    async fn trust_bundle_must_hold_a_certificate() {
        for (body, kind) in [
            (r#"{"certificate":""}"#, Some(ErrorKind::Configuration)),
            (r#"{"certificate":"hello"}"#, Some(ErrorKind::Configuration)),
            (r#"{"cert":"x"}"#, Some(ErrorKind::Protocol)),
            (r#"{"certificate":"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"}"#, None),
        ] {
            let (uri, task) = canned(ok(body)).await;
            let client = WorkloadClient::new(&uri, "2018-06-28", Duration::from_secs(5)).unwrap();
            match (client.trust_bundle().await, kind) {
                (Ok(pem), None) => assert!(pem.starts_with("-----BEGIN CERTIFICATE-----")),
                (Err(e), Some(k)) => assert_eq!(e.kind(), k, "{e}"),
                (r, k) => panic!("{body}: {r:?} vs {k:?}"),
            }
            task.abort();
        }
    }

    #[tokio::test]
    async fn unreachable_socket_is_connection_refused() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("unix://{}/missing.sock", dir.path().display());
        let client = WorkloadClient::new(&uri, "2018-06-28", Duration::from_secs(5)).unwrap();
        let e = client.trust_bundle().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert!(e.message().contains(&uri), "{e}");
    }
}
