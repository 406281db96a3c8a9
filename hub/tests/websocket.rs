//! The hub's MQTT over WebSocket listener on its HTTPS port: upgrade requests are checked byte for
//! byte (path, subprotocol — `mqtt` or AMQP's `AMQPWSB10` —, version, key), the method endpoint on
//! the same port keeps working, and CONNECT over WebSocket is authenticated exactly like CONNECT
//! over the MQTT/TLS listener. AMQP over WebSocket itself is tested in amqp.rs.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{client_tls, STEP};
use edgemodule_core::transport::websocket::{self, Subprotocol};
use edgemodule_core::wire::{framing, sas};
use edgemodule_hub::server::{start, HubConfig, RunningHub};
use edgemodule_hub::state::StateDir;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Login, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

struct Fixture {
    dir: tempfile::TempDir,
    running: RunningHub,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        StateDir::init(dir.path(), "localhost").unwrap();
        let file = dir.path().join("deployment.json");
        let deployment = json!({"modulesContent": {
            "$edgeAgent": {"properties.desired": {"modules": {"a": {}, "b": {}}}},
            "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
                "aToB": "FROM /messages/modules/a/outputs/* INTO BrokeredEndpoint(\"/modules/b/inputs/fromA\")"
            }}}
        }});
        std::fs::write(&file, deployment.to_string()).unwrap();
        let mut config = HubConfig::new(dir.path(), &file);
        (config.mqtt_port, config.https_port, config.workload, config.control) = (0, 0, false, false);
        let running = start(config).await.unwrap();
        Fixture { dir, running }
    }

    fn device(&self) -> String {
        self.running.hub.identity.device_id.clone()
    }

    fn host(&self) -> String {
        self.running.hub.identity.hub_host_name.clone()
    }

    fn token_signed_by(&self, module: &str, signer: &str, expiry: u64) -> String {
        let key = self.running.hub.module_key(signer).unwrap().to_vec();
        sas::module_token(&self.host(), &self.device(), module, &key, expiry)
    }

    async fn tls(&self, port: u16) -> TlsStream<TcpStream> {
        let ca = StateDir::open(self.dir.path()).unwrap().ca_pem().unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_tls(&ca));
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(STEP, connector.connect(name, tcp)).await.unwrap().unwrap()
    }

    /// MQTT over WebSocket: TLS to the HTTPS port, then the upgrade.
    async fn ws(&self) -> websocket::WsStream<TlsStream<TcpStream>> {
        self.ws_for(Subprotocol::Mqtt).await
    }

    /// TLS to the HTTPS port, then the upgrade with `protocol`.
    async fn ws_for(&self, protocol: Subprotocol) -> websocket::WsStream<TlsStream<TcpStream>> {
        let port = self.running.https_addr.port();
        let tls = self.tls(port).await;
        tokio::time::timeout(STEP, websocket::client(tls, "localhost", port, protocol)).await.unwrap().unwrap()
    }

    /// Sends a raw HTTP request over TLS to the HTTPS port; returns the response head, lowercased.
    async fn http(&self, request: &str) -> String {
        let mut tls = self.tls(self.running.https_addr.port()).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tokio::time::timeout(STEP, tls.read(&mut byte)).await.expect("no HTTP response") {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8(head).unwrap().to_ascii_lowercase()
    }
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(120), f).await.expect("test exceeded 120 s");
}

fn upgrade_request(method: &str, path: &str, extra: &[(&str, &str)], skip: &[&str]) -> String {
    let mut headers = vec![
        ("Host", "localhost"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "mqtt"),
    ];
    headers.retain(|(k, _)| !skip.contains(k));
    headers.extend_from_slice(extra);
    let mut r = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r
}

fn status(head: &str) -> u16 {
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad response {head:?}"))
}

#[tokio::test]
async fn upgrades_only_well_formed_mqtt_or_amqp_websocket_requests_on_the_iothub_path() {
    bounded(async {
        let f = Fixture::start().await;
        let p = "/$iothub/websocket";
        let cases: Vec<(&str, String, u16)> = vec![
            ("another path", upgrade_request("GET", "/websocket", &[], &[]), 404),
            ("the path under a prefix", upgrade_request("GET", "/x/$iothub/websocket", &[], &[]), 404),
            ("the methods path", upgrade_request("GET", "/twins/d/modules/m/methods", &[], &[]), 404),
            ("POST", upgrade_request("POST", p, &[("Content-Length", "0")], &[]), 405),
            ("no Upgrade header", upgrade_request("GET", p, &[], &["Upgrade"]), 400),
            (
                "no Connection: upgrade",
                upgrade_request("GET", p, &[("Connection", "keep-alive")], &["Connection"]),
                400,
            ),
            (
                "WebSocket version 8",
                upgrade_request("GET", p, &[("Sec-WebSocket-Version", "8")], &["Sec-WebSocket-Version"]),
                426,
            ),
            ("no key", upgrade_request("GET", p, &[], &["Sec-WebSocket-Key"]), 400),
            ("no subprotocol", upgrade_request("GET", p, &[], &["Sec-WebSocket-Protocol"]), 400),
            (
                "unknown subprotocols",
                upgrade_request(
                    "GET",
                    p,
                    &[("Sec-WebSocket-Protocol", "AMQPWSB11, mqttv5")],
                    &["Sec-WebSocket-Protocol"],
                ),
                400,
            ),
        ];
        for (what, request, want) in &cases {
            assert_eq!(status(&f.http(request).await), *want, "{what}");
        }
        // Accepted, with the RFC 6455 §1.3 sample key's accept value and the first offered
        // subprotocol the hub speaks echoed; also with the `$` percent-encoded.
        let offering = |protocols: &str| {
            upgrade_request("GET", p, &[("Sec-WebSocket-Protocol", protocols)], &["Sec-WebSocket-Protocol"])
        };
        for (request, chosen) in [
            (upgrade_request("GET", p, &[], &[]), "mqtt"),
            (upgrade_request("GET", "/%24iothub/websocket?iothub-no-client-cert=true", &[], &[]), "mqtt"),
            (offering("xmpp, MQTT"), "mqtt"),
            (offering("AMQPWSB10"), "amqpwsb10"),
            (offering("xmpp, AMQPWSB10, mqtt"), "amqpwsb10"),
        ] {
            let head = f.http(&request).await;
            assert_eq!(status(&head), 101, "{request}");
            // (heads are lowercased by `http`)
            assert!(head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"), "{head}");
            assert!(head.contains(&format!("\r\nsec-websocket-protocol: {chosen}\r\n")), "{head}");
            assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
        }
        // The method endpoint on the same port answers as before (401 without a token).
        let d = f.device();
        let body = r#"{"methodName":"ping","payload":{},"responseTimeoutInSeconds":5}"#;
        let post = format!(
            "POST /twins/{d}/modules/b/methods?api-version=2018-06-28 HTTP/1.1\r\nhost: localhost\r\n\
             x-ms-edge-moduleId: {d}/a\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(status(&f.http(&post).await), 401);
    })
    .await
}

async fn write_packet<S: AsyncWrite + Unpin>(s: &mut S, p: Packet) {
    let mut buf = BytesMut::new();
    framing::encode(&p, &mut buf).unwrap();
    tokio::time::timeout(STEP, async {
        s.write_all(&buf).await?;
        s.flush().await
    })
    .await
    .unwrap()
    .unwrap();
}

/// The next packet, or None when the hub closes the stream.
async fn read_packet<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        if let Some(p) = framing::decode(buf, 1 << 20).unwrap() {
            return Some(p);
        }
        match tokio::time::timeout(STEP, s.read_buf(buf)).await.expect("the hub neither answered nor closed") {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// CONNECTs over `s`; returns the CONNACK code and whether the hub then closed the stream.
async fn connect_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    client_id: &str,
    username: &str,
    password: &str,
) -> (ConnectReturnCode, bool) {
    let mut connect = Connect::new(client_id);
    connect.keep_alive = 30;
    connect.clean_session = false;
    connect.login = Some(Login::new(username, password));
    write_packet(&mut s, Packet::Connect(connect)).await;
    let mut buf = BytesMut::new();
    let code = match read_packet(&mut s, &mut buf).await {
        Some(Packet::ConnAck(a)) => a.code,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    let closed = code != ConnectReturnCode::Success && read_packet(&mut s, &mut buf).await.is_none();
    (code, closed)
}

#[tokio::test]
async fn connect_over_websocket_is_authenticated_like_connect_over_tls() {
    bounded(async {
        let f = Fixture::start().await;
        let (d, host) = (f.device(), f.host());
        let now = sas::unix_now();
        let user = |m: &str| format!("{host}/{d}/{m}/?api-version=2021-04-12");
        let cases: Vec<(&str, String, String, String)> = vec![
            ("no password", format!("{d}/a"), user("a"), String::new()),
            ("client id of b, token of a", format!("{d}/b"), user("b"), f.token_signed_by("a", "a", now + 3600)),
            ("a's audience signed with b's key", format!("{d}/a"), user("a"), f.token_signed_by("a", "b", now + 3600)),
            ("expired", format!("{d}/a"), user("a"), f.token_signed_by("a", "a", now - sas::MAX_CLOCK_SKEW_SECS - 5)),
            ("undeployed module", format!("{d}/z"), user("z"), f.token_signed_by("a", "a", now + 3600)),
            ("no api-version", format!("{d}/a"), format!("{host}/{d}/a/"), f.token_signed_by("a", "a", now + 3600)),
            ("garbage token", format!("{d}/a"), user("a"), "SharedAccessSignature sr=x&sig=y&se=1".into()),
        ];
        for (what, client_id, username, password) in &cases {
            let over_tls = connect_over(f.tls(f.running.mqtt_addr.port()).await, client_id, username, password).await;
            let over_ws = connect_over(f.ws().await, client_id, username, password).await;
            assert_eq!(over_tls, (ConnectReturnCode::NotAuthorized, true), "{what} over TLS");
            assert_eq!(over_ws, over_tls, "{what} over WebSocket");
        }
        // A first packet that is not CONNECT closes the WebSocket connection without an answer.
        let mut ws = f.ws().await;
        write_packet(&mut ws, Packet::PingReq).await;
        assert!(read_packet(&mut ws, &mut BytesMut::new()).await.is_none());
        // The subprotocol picks the connection task: a valid CONNECT on a WebSocket upgraded for
        // AMQP reaches the AMQP task, which closes it without a CONNACK.
        let ok = (f.token_signed_by("a", "a", now + 3600), format!("{d}/a"));
        let mut amqp = f.ws_for(Subprotocol::Amqp).await;
        let mut connect = Connect::new(ok.1.as_str());
        connect.login = Some(Login::new(user("a"), ok.0.as_str()));
        write_packet(&mut amqp, Packet::Connect(connect)).await;
        let mut head = Vec::new();
        tokio::time::timeout(STEP, amqp.read_to_end(&mut head)).await.expect("the hub kept an AMQP socket open").ok();
        assert!(head.is_empty() || head.starts_with(b"AMQP"), "not an AMQP answer: {head:?}");
        // Positive control: the right token is accepted over both.
        assert_eq!(connect_over(f.ws().await, &ok.1, &user("a"), &ok.0).await.0, ConnectReturnCode::Success);
        assert_eq!(
            connect_over(f.tls(f.running.mqtt_addr.port()).await, &ok.1, &user("a"), &ok.0).await.0,
            ConnectReturnCode::Success
        );
    })
    .await
}

#[tokio::test]
async fn a_publish_over_websocket_is_routed_and_acknowledged_like_one_over_tls() {
    bounded(async {
        let f = Fixture::start().await;
        let (d, host) = (f.device(), f.host());
        let now = sas::unix_now();
        let login = |m: &str| {
            let mut c = Connect::new(format!("{d}/{m}"));
            c.keep_alive = 30;
            c.login = Some(Login::new(format!("{host}/{d}/{m}/?api-version=2021-04-12"), f.token_signed_by(m, m, now + 3600)));
            Packet::Connect(c)
        };
        // b listens over MQTT/TLS, a publishes over WebSocket.
        let mut b = f.tls(f.running.mqtt_addr.port()).await;
        let mut bbuf = BytesMut::new();
        write_packet(&mut b, login("b")).await;
        assert!(matches!(read_packet(&mut b, &mut bbuf).await, Some(Packet::ConnAck(c)) if c.code == ConnectReturnCode::Success));
        let sub = rumqttc::mqttbytes::v4::Subscribe::new(format!("devices/{d}/modules/b/inputs/#"), QoS::AtLeastOnce);
        write_packet(&mut b, Packet::Subscribe(sub)).await;
        assert!(matches!(read_packet(&mut b, &mut bbuf).await, Some(Packet::SubAck(_))));

        let mut a = f.ws().await;
        let mut abuf = BytesMut::new();
        write_packet(&mut a, login("a")).await;
        assert!(matches!(read_packet(&mut a, &mut abuf).await, Some(Packet::ConnAck(c)) if c.code == ConnectReturnCode::Success));
        let mut publish = Publish::new(format!("devices/{d}/modules/a/messages/events/%24.on=out1&k=v"), QoS::AtLeastOnce, "over ws");
        publish.pkid = 7;
        write_packet(&mut a, Packet::Publish(publish)).await;
        assert!(matches!(read_packet(&mut a, &mut abuf).await, Some(Packet::PubAck(ack)) if ack.pkid == 7));

        let Some(Packet::Publish(got)) = read_packet(&mut b, &mut bbuf).await else { panic!("b got no delivery") };
        assert!(got.topic.starts_with(&format!("devices/{d}/modules/b/inputs/fromA/")), "{}", got.topic);
        assert!(got.topic.contains("k=v"), "{}", got.topic);
        assert_eq!(got.payload.as_ref(), b"over ws");
    })
    .await
}
