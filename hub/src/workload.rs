//! The IoT Edge workload API as edgelet serves it to modules (protocol.md §5.2): HTTP/1.1 on a
//! unix socket, `api-version` on every request, `POST /modules/{id}/genid/{gen}/sign` (HMAC-SHA256
//! with the module's key), `GET /trust-bundle` and `GET /manifest-trust-bundle`.
//!
//! Like edgelet, at most a fixed number of requests are in flight per socket; a request beyond
//! that has its connection closed without a reply. The peer-PID check (403) is not done.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use edgemodule_core::wire::encoding::decode;
use edgemodule_core::wire::sas::hmac_b64;

/// The workload API versions edgelet knows (`edgelet-http/src/version.rs`); every route here
/// accepts all of them.
pub const API_VERSIONS: &[&str] =
    &["2018-06-28", "2019-01-30", "2019-10-22", "2019-11-05", "2020-07-07", "2021-12-07", "2022-08-03"];

/// Largest request body accepted (413 beyond it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Requests in flight per server before new ones are dropped (edgelet: 10 per module socket).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 10;

/// How long a client may take to send a request's headers (and, separately, its body).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `serve` waits for open connections after shutdown before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where the server finds a module's symmetric key.
pub trait KeyLookup: Send + Sync + 'static {
    /// The module's primary key, decoded (raw bytes, not base64); `None` for an unknown module.
    fn module_key(&self, module_id: &str) -> Option<Vec<u8>>;
}

impl KeyLookup for HashMap<String, Vec<u8>> {
    fn module_key(&self, module_id: &str) -> Option<Vec<u8>> {
        self.get(module_id).cloned()
    }
}

/// A workload API server; build it with [`WorkloadServer::new`], then [`WorkloadServer::serve`].
pub struct WorkloadServer {
    inner: Arc<Inner>,
    header_read_timeout: Duration,
}

struct Inner {
    keys: Arc<dyn KeyLookup>,
    trust_bundle_pem: String,
    in_flight: Arc<Semaphore>,
    body_timeout: Duration,
}

impl fmt::Debug for WorkloadServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadServer")
            .field("trust_bundle_len", &self.inner.trust_bundle_pem.len())
            .field("header_read_timeout", &self.header_read_timeout)
            .finish_non_exhaustive()
    }
}

/// The error a service returns to make hyper drop the connection without answering.
#[derive(Debug)]
struct Overloaded;

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("too many concurrent workload requests")
    }
}

impl std::error::Error for Overloaded {}

/// A request reduced to what the routes look at; lets the routing be tested without sockets.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

impl WorkloadServer {
    pub fn new(keys: Arc<dyn KeyLookup>, trust_bundle_pem: String) -> Self {
        WorkloadServer {
            inner: Arc::new(Inner {
                keys,
                trust_bundle_pem,
                in_flight: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT_REQUESTS)),
                body_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            }),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }

    /// Limits how many requests may be in flight at once (at least 1).
    pub fn with_max_concurrent_requests(mut self, max: usize) -> Self {
        self.inner_mut().in_flight = Arc::new(Semaphore::new(max.max(1)));
        self
    }

    /// Sets how long a client may take to send a request's headers, and then its body.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self.inner_mut().body_timeout = timeout;
        self
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("WorkloadServer is configured before it serves")
    }

    /// Answers one request; this is everything but the transport.
    pub fn respond(&self, req: RequestParts<'_>) -> (StatusCode, Value) {
        self.inner.route(req)
    }

    /// Serves HTTP/1.1 on the listener until `shutdown` resolves; each connection handled in its
    /// own task. On shutdown, idle connections close at once and busy ones finish their request
    /// (cut off after a few seconds).
    pub async fn serve(self, listener: UnixListener, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let inner = self.inner.clone();
                        let stop = stop_rx.clone();
                        connections.spawn(serve_connection(inner, stream, self.header_read_timeout, stop));
                    }
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "workload API accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drained =
            tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::debug!("workload API: aborting connections still open after shutdown");
            connections.shutdown().await;
        }
        tracing::debug!("workload API stopped");
    }
}

async fn serve_connection(
    inner: Arc<Inner>,
    stream: UnixStream,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let inner = inner.clone();
        async move { inner.handle(req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "workload API connection ended");
    }
}

impl Inner {
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Overloaded> {
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!("workload API: too many concurrent requests; dropping the connection");
            return Err(Overloaded);
        };
        let (parts, body) = req.into_parts();
        let (status, value) = match self.read_body(&parts, body).await {
            Ok(bytes) => {
                let content_type = parts.headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("\u{fffd}"));
                self.route(RequestParts {
                    method: &parts.method,
                    path: parts.uri.path(),
                    query: parts.uri.query(),
                    content_type,
                    body: &bytes,
                })
            }
            Err(answer) => answer,
        };
        tracing::debug!(method = %parts.method, path = parts.uri.path(), status = status.as_u16(), "workload API");
        let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
        *response.status_mut() = status;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if status == StatusCode::METHOD_NOT_ALLOWED {
            let allow = if parts.uri.path().ends_with("/sign") { "POST" } else { "GET" };
            response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
        }
        Ok(response)
    }

    /// Reads the whole body, bounded in size and time.
    async fn read_body(
        &self,
        parts: &hyper::http::request::Parts,
        body: Incoming,
    ) -> Result<Bytes, (StatusCode, Value)> {
        let too_large = || error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        match tokio::time::timeout(self.body_timeout, Limited::new(body, MAX_BODY_BYTES).collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(_)) => Err(error(StatusCode::BAD_REQUEST, "could not read request body")),
            Err(_) => Err(error(StatusCode::REQUEST_TIMEOUT, "timed out reading request body")),
        }
    }

    fn route(&self, req: RequestParts<'_>) -> (StatusCode, Value) {
        // edgelet checks the api-version before it looks at the path.
        match query_param(req.query, "api-version") {
            None => return error(StatusCode::BAD_REQUEST, "api-version not specified"),
            Some(v) if !API_VERSIONS.contains(&v.as_str()) => {
                return error(StatusCode::BAD_REQUEST, &format!("invalid api-version {v:?}"))
            }
            Some(_) => {}
        }
        let segments: Vec<&str> = req.path.strip_prefix('/').unwrap_or(req.path).split('/').collect();
        match segments.as_slice() {
            ["trust-bundle"] => {
                get_only(req.method, || (StatusCode::OK, json!({ "certificate": self.trust_bundle_pem })))
            }
            ["manifest-trust-bundle"] => get_only(req.method, || (StatusCode::OK, json!({ "certificate": "" }))),
            ["modules", module, "genid", generation, "sign"] if !module.is_empty() && !generation.is_empty() => {
                if req.method != Method::POST {
                    return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                }
                match decode(module) {
                    Some(module) => self.sign(&module, req.content_type, req.body),
                    None => error(StatusCode::NOT_FOUND, "not found"),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn sign(&self, module: &str, content_type: Option<&str>, body: &[u8]) -> (StatusCode, Value) {
        #[derive(Deserialize)]
        struct SignRequest {
            #[serde(rename = "keyId")]
            _key_id: Option<String>,
            algo: Option<String>,
            data: String,
        }
        if let Some(ct) = content_type {
            let base = ct.split(';').next().unwrap_or("").trim();
            if !base.eq_ignore_ascii_case("application/json") {
                return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "request body must be application/json");
            }
        }
        let request: SignRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &format!("malformed request body: {e}")),
        };
        if request.algo.as_deref().is_some_and(|a| a != "HMACSHA256") {
            return error(StatusCode::BAD_REQUEST, "invalid parameter: algo");
        }
        let Ok(data) = B64.decode(request.data.trim()) else {
            return error(StatusCode::BAD_REQUEST, "invalid parameter: data");
        };
        match self.keys.module_key(module) {
            Some(key) => (StatusCode::OK, json!({ "digest": hmac_b64(&key, &data) })),
            None => error(StatusCode::NOT_FOUND, &format!("module {module} not found")),
        }
    }
}

fn get_only(method: &Method, answer: impl FnOnce() -> (StatusCode, Value)) -> (StatusCode, Value) {
    if method == Method::GET {
        answer()
    } else {
        error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (status, json!({ "message": message }))
}

/// The first value of `name` in a query string, form-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let form = |s: &str| decode(&s.replace('+', " "));
        (form(k)?.as_str() == name).then(|| form(v)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> WorkloadServer {
        let mut keys = HashMap::new();
        keys.insert("filter".to_string(), b"0123456789abcdef0123456789abcdef".to_vec());
        keys.insert("a b/c".to_string(), b"k".to_vec());
        WorkloadServer::new(Arc::new(keys), "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".into())
    }

    fn call(s: &WorkloadServer, method: Method, path_query: &str, ct: Option<&str>, body: &str) -> (u16, Value) {
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_query, None),
        };
        let (status, v) =
            s.respond(RequestParts { method: &method, path, query, content_type: ct, body: body.as_bytes() });
        (status.as_u16(), v)
    }

    #[test]
    fn api_version_is_checked_first() {
        let s = server();
        assert_eq!(call(&s, Method::GET, "/nope", None, ""), (400, json!({"message": "api-version not specified"})));
        assert_eq!(
            call(&s, Method::GET, "/trust-bundle?api-version=2017-01-01", None, ""),
            (400, json!({"message": "invalid api-version \"2017-01-01\""}))
        );
        assert_eq!(
            call(&s, Method::GET, "/nope?api-version=2018-06-28", None, ""),
            (404, json!({"message": "not found"}))
        );
        for v in API_VERSIONS {
            assert_eq!(call(&s, Method::GET, &format!("/manifest-trust-bundle?x=1&api-version={v}"), None, "").0, 200);
        }
    }

    #[test]
    fn signs_the_reference_vector() {
        let s = server();
        let body = r#"{"keyId":"primary","algo":"HMACSHA256","data":"bXlodWIuYXp1cmUtZGV2aWNlcy5uZXQlMkZkZXZpY2VzJTJGZWRnZTElMkZtb2R1bGVzJTJGZmlsdGVyCjE3MDAwMDAwMDA="}"#;
        let (status, v) = call(
            &s,
            Method::POST,
            "/modules/filter/genid/1/sign?api-version=2018-06-28",
            Some("application/json"),
            body,
        );
        assert_eq!(status, 200);
        assert_eq!(v, json!({"digest": "Z9MVA5MQLovKhLgVFsqEK/W9dcjHkN+SRB85b1SL0yY="}));
    }

    #[test]
    fn sign_errors() {
        let s = server();
        let p = "/modules/filter/genid/1/sign?api-version=2019-01-30";
        assert_eq!(call(&s, Method::POST, p, None, "{").0, 422);
        assert_eq!(call(&s, Method::POST, p, Some("application/json; charset=utf-8"), "{}").0, 422);
        assert_eq!(call(&s, Method::POST, p, Some("text/plain"), r#"{"data":""}"#).0, 415);
        assert_eq!(
            call(&s, Method::POST, p, None, r#"{"data":"!!"}"#),
            (400, json!({"message": "invalid parameter: data"}))
        );
        assert_eq!(call(&s, Method::POST, p, None, r#"{"data":"", "algo":"MD5"}"#).0, 400);
        assert_eq!(call(&s, Method::GET, p, None, "").0, 405);
        assert_eq!(call(&s, Method::POST, "/trust-bundle?api-version=2019-01-30", None, "").0, 405);
        assert_eq!(
            call(&s, Method::POST, "/modules/other/genid/1/sign?api-version=2019-01-30", None, r#"{"data":""}"#),
            (404, json!({"message": "module other not found"}))
        );
        // Percent-decoded module ids.
        assert_eq!(
            call(&s, Method::POST, "/modules/a%20b%2Fc/genid/1/sign?api-version=2019-01-30", None, r#"{"data":""}"#).0,
            200
        );
        assert_eq!(
            call(&s, Method::POST, "/modules//genid/1/sign?api-version=2019-01-30", None, r#"{"data":""}"#).0,
            404
        );
    }
}
