//! The workload API end to end: the hub's server on a real unix socket, driven by the core's
//! client and by raw HTTP/1.1 requests.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemodule_core::auth::workload::{workload_module_token, WorkloadClient};
use edgemodule_core::wire::sas::{decode_key, module_token, ParsedToken};
use edgemodule_core::ErrorKind;
use edgemodule_hub::workload::WorkloadServer;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// protocol.md §1.4's key.
const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const BUNDLE: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
const LIMIT: Duration = Duration::from_secs(20);

/// Every test body is bounded in time.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("test took too long")
}

struct Running {
    _dir: tempfile::TempDir,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    fn uri(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    fn client(&self, api_version: &str) -> WorkloadClient {
        WorkloadClient::new(&self.uri(), api_version, Duration::from_secs(5)).unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task).await.expect("serve stops").unwrap();
    }
}

fn keys() -> Arc<HashMap<String, Vec<u8>>> {
    let mut keys = HashMap::new();
    keys.insert("filter".to_string(), decode_key(KEY_B64).unwrap());
    keys.insert("odd module/1".to_string(), b"another key".to_vec());
    Arc::new(keys)
}

fn start_with(configure: impl FnOnce(WorkloadServer) -> WorkloadServer) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workload.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = configure(WorkloadServer::new(keys(), BUNDLE.to_string()));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = rx.await;
    }));
    Running { _dir: dir, path, stop: Some(tx), task }
}

fn start() -> Running {
    start_with(|s| s)
}

/// Sends `request` verbatim, reads until the server closes; `None` when it closed without a reply.
async fn raw(path: &Path, request: &str) -> Option<(u16, String, Value)> {
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await; // a reset counts as "no reply"
    if buf.is_empty() {
        return None;
    }
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-type")))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Some((status, content_type, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

fn post(target: &str, content_type: Option<&str>, body: &str) -> String {
    let ct = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
    format!(
        "POST {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn expect(path: &Path, request: &str, status: u16, body: Value) {
    let (got_status, content_type, got_body) = raw(path, request).await.expect("a reply");
    assert_eq!((got_status, &got_body), (status, &body), "{request}");
    assert_eq!(content_type, "application/json");
}

#[tokio::test]
async fn module_token_through_the_workload_api_verifies() {
    bounded(async {
        let hub = start();
        let key = decode_key(KEY_B64).unwrap();
        for version in ["2018-06-28", "2022-08-03"] {
            let client = hub.client(version);
            let expiry = edgemodule_core::wire::sas::unix_now() + 3600;
            let token = workload_module_token(&client, "myhub.azure-devices.net", "edge1", "filter", "gen1", expiry)
                .await
                .unwrap();
            let parsed = ParsedToken::parse(&token).unwrap();
            assert!(parsed.signed_by(&key));
            assert_eq!(parsed.audience, "myhub.azure-devices.net/devices/edge1/modules/filter");
            assert_eq!(token, module_token("myhub.azure-devices.net", "edge1", "filter", &key, expiry));
        }
        // protocol.md §1.4's reference token.
        let token = workload_module_token(
            &hub.client("2018-06-28"),
            "myhub.azure-devices.net",
            "edge1",
            "filter",
            "1",
            1_700_000_000,
        )
        .await
        .unwrap();
        assert_eq!(
            token,
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fedge1%2Fmodules%2Ffilter\
             &sig=Z9MVA5MQLovKhLgVFsqEK%2FW9dcjHkN%2BSRB85b1SL0yY%3D&se=1700000000"
        );
        // Module ids are percent-encoded on the way and decoded by the server.
        let odd = workload_module_token(&hub.client("2019-01-30"), "h.example", "d", "odd module/1", "g/1", 99)
            .await
            .unwrap();
        assert!(ParsedToken::parse(&odd).unwrap().signed_by(b"another key"));
        hub.stop().await;
    })
    .await
}

#[tokio::test]
async fn worked_example_signs_through_the_server() {
    bounded(async {
        let hub = start();
        let data = "bXlodWIuYXp1cmUtZGV2aWNlcy5uZXQlMkZkZXZpY2VzJTJGZWRnZTElMkZtb2R1bGVzJTJGZmlsdGVyCjE3MDAwMDAwMDA=";
        let digest = json!({"digest": "Z9MVA5MQLovKhLgVFsqEK/W9dcjHkN+SRB85b1SL0yY="});
        let target = "/modules/filter/genid/1/sign?api-version=2018-06-28";
        // As NODE (application/json), C (charset) and PY (no Content-Type) send it.
        let full = format!(r#"{{"keyId":"primary","algo":"HMACSHA256","data":"{data}"}}"#);
        expect(&hub.path, &post(target, Some("application/json"), &full), 200, digest.clone()).await;
        expect(&hub.path, &post(target, Some("application/json; charset=utf-8"), &full), 200, digest.clone()).await;
        expect(&hub.path, &post(target, None, &format!(r#"{{"data":"{data}"}}"#)), 200, digest.clone()).await;
        // And the client hands the same bytes over.
        let sr = "myhub.azure-devices.net%2Fdevices%2Fedge1%2Fmodules%2Ffilter";
        let sig = hub.client("2018-06-28").sign("filter", "1", format!("{sr}\n1700000000").as_bytes()).await.unwrap();
        assert_eq!(sig, digest["digest"].as_str().unwrap());
        hub.stop().await;
    })
    .await
}

#[tokio::test]
async fn trust_bundle_round_trips() {
    bounded(async {
        let hub = start();
        assert_eq!(hub.client("2018-06-28").trust_bundle().await.unwrap(), BUNDLE);
        expect(&hub.path, &get("/trust-bundle?api-version=2022-08-03"), 200, json!({"certificate": BUNDLE})).await;
        expect(&hub.path, &get("/manifest-trust-bundle?api-version=2022-08-03"), 200, json!({"certificate": ""})).await;
        hub.stop().await;
    })
    .await
}

#[tokio::test]
async fn error_answers() {
    bounded(async {
        let hub = start();
        let p = hub.path.as_path();
        let sign = "/modules/filter/genid/1/sign";
        let ok_body = r#"{"keyId":"primary","algo":"HMACSHA256","data":"aGk="}"#;
        expect(p, &get("/trust-bundle"), 400, json!({"message": "api-version not specified"})).await;
        expect(p, &post(sign, None, ok_body), 400, json!({"message": "api-version not specified"})).await;
        expect(
            p,
            &get("/trust-bundle?api-version=2099-01-01"),
            400,
            json!({"message": "invalid api-version \"2099-01-01\""}),
        )
        .await;
        expect(
            p,
            &post("/modules/nobody/genid/1/sign?api-version=2018-06-28", None, ok_body),
            404,
            json!({"message": "module nobody not found"}),
        )
        .await;
        let target = format!("{sign}?api-version=2018-06-28");
        for (ct, body) in
            [(None, "{not json"), (Some("application/json"), r#"{"keyId":"primary"}"#), (Some("application/json"), "")]
        {
            let (status, _, v) = raw(p, &post(&target, ct, body)).await.unwrap();
            assert_eq!(status, 422, "{body}");
            assert!(v["message"].as_str().unwrap().starts_with("malformed request body"), "{v}");
        }
        expect(p, &post(&target, None, r#"{"data":"***"}"#), 400, json!({"message": "invalid parameter: data"})).await;
        expect(
            p,
            &post(&target, None, r#"{"data":"aGk=","algo":"SHA1"}"#),
            400,
            json!({"message": "invalid parameter: algo"}),
        )
        .await;
        let (status, _, _) = raw(p, &post(&target, Some("text/plain"), ok_body)).await.unwrap();
        assert_eq!(status, 415);
        expect(p, &get("/modules?api-version=2018-06-28"), 404, json!({"message": "not found"})).await;
        expect(p, &get("/nothing/here?api-version=2018-06-28"), 404, json!({"message": "not found"})).await;
        expect(p, &get(&target), 405, json!({"message": "method not allowed"})).await;
        expect(
            p,
            &post("/trust-bundle?api-version=2018-06-28", None, ""),
            405,
            json!({"message": "method not allowed"}),
        )
        .await;
        // 64 KiB body limit.
        let big = format!(r#"{{"data":"{}"}}"#, "A".repeat(64 * 1024));
        let (status, _, _) = raw(p, &post(&target, None, &big)).await.unwrap();
        assert_eq!(status, 413);

        // The client reports non-200 answers as configuration errors carrying the server's message.
        let e = hub.client("2018-06-28").sign("nobody", "1", b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration);
        assert!(e.message().contains("404") && e.message().contains("module nobody not found"), "{e}");
        let e = hub.client("1999-01-01").trust_bundle().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration);
        assert!(e.message().contains("invalid api-version \"1999-01-01\""), "{e}");
        hub.stop().await;
    })
    .await
}

#[tokio::test]
async fn missing_socket_is_connection_refused_quickly() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("unix://{}", dir.path().join("absent.sock").display());
        let client = WorkloadClient::new(&uri, "2018-06-28", Duration::from_secs(5)).unwrap();
        let started = Instant::now();
        let e = client.sign("filter", "1", b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        assert!(e.message().contains(&uri), "{e}");
        assert!(started.elapsed() < Duration::from_secs(1));
    })
    .await
}

#[tokio::test]
async fn silent_server_times_out_within_the_deadline() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let deadline = Duration::from_millis(300);
        let client = WorkloadClient::new(&format!("unix://{}", path.display()), "2018-06-28", deadline).unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            let e = client.trust_bundle().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            assert!(started.elapsed() >= deadline);
            assert!(started.elapsed() < deadline + Duration::from_millis(700), "{:?}", started.elapsed());
            let e = client.sign("m", "g", b"x").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        }
        holder.abort();
    })
    .await
}

#[tokio::test]
async fn silent_client_is_disconnected_after_the_header_timeout() {
    bounded(async {
        let hub = start_with(|s| s.with_header_read_timeout(Duration::from_millis(300)));
        // One client sends half a head, one sends nothing at all.
        for partial in [&b"GET /trust-bundle?api-version=2018-06-28 HTTP/1.1\r\nHost: x\r\n"[..], b""] {
            let mut stream = UnixStream::connect(&hub.path).await.unwrap();
            stream.write_all(partial).await.unwrap();
            let started = Instant::now();
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await.expect("closed");
            assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        }
        // The server still answers others.
        assert_eq!(hub.client("2018-06-28").trust_bundle().await.unwrap(), BUNDLE);
        hub.stop().await;
    })
    .await
}

#[tokio::test]
async fn requests_beyond_the_limit_are_dropped_without_reply() {
    bounded(async {
        let hub = start_with(|s| s.with_max_concurrent_requests(2));
        // Two requests whose bodies never finish hold both slots.
        let mut holders = Vec::new();
        for _ in 0..2 {
            let mut s = UnixStream::connect(&hub.path).await.unwrap();
            s.write_all(
                b"POST /modules/filter/genid/1/sign?api-version=2018-06-28 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
            )
            .await
            .unwrap();
            holders.push(s);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(raw(&hub.path, &get("/trust-bundle?api-version=2018-06-28")).await.is_none());
        let e = hub.client("2018-06-28").trust_bundle().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionLost, "{e}");
        drop(holders);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(hub.client("2018-06-28").trust_bundle().await.unwrap(), BUNDLE);
        hub.stop().await;
    })
    .await
}

#[tokio::test]
async fn serve_returns_on_shutdown_with_an_idle_connection_open() {
    bounded(async {
        let hub = start();
        let _idle = UnixStream::connect(&hub.path).await.unwrap();
        assert_eq!(hub.client("2018-06-28").trust_bundle().await.unwrap(), BUNDLE);
        let started = Instant::now();
        hub.stop().await;
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    })
    .await
}
