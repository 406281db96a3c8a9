//! The hub's AMQP 1.0 surface driven by a plain fe2o3-amqp client over real TLS: CBS put-token
//! with the MQTT listener's SAS verification, SASL PLAIN, link identity checks, telemetry routed
//! to another module's input with settlement (accept, release, reject), redelivery after a cut,
//! twin requests and desired patches, and direct methods. The same checks run over AMQP over
//! WebSocket (`AMQPWSB10` on the HTTPS port's `/$iothub/websocket`) against a hub with no AMQPS
//! listener at all.

mod common;

use std::time::Duration;

use common::{client_tls, STEP};
use edgemodule_core::amqp::{address, cbs, mapping, twin};
use edgemodule_core::message::{Message, SystemProperty};
use edgemodule_core::transport::websocket::{self, Subprotocol};
use edgemodule_core::wire::sas;
use edgemodule_hub::server::{start, HubConfig, RunningHub};
use edgemodule_hub::state::StateDir;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{Body, Outcome};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Connection, Delivery, Receiver, Sender, Session};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// What carries the AMQP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// TLS to the AMQPS listener.
    Tls,
    /// A WebSocket (`AMQPWSB10`) on the HTTPS port, the hub having no AMQPS listener.
    WebSocket,
}

struct Fixture {
    dir: tempfile::TempDir,
    running: RunningHub,
    wire: Wire,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_over(Wire::Tls).await
    }

    async fn start_over(wire: Wire) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        StateDir::init(dir.path(), "localhost").unwrap();
        let file = dir.path().join("deployment.json");
        let deployment = json!({"modulesContent": {
            "$edgeAgent": {"properties.desired": {"modules": {"a": {}, "b": {}}}},
            "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
                "aToB": "FROM /messages/modules/a/outputs/out1 INTO BrokeredEndpoint(\"/modules/b/inputs/fromA\")"
            }}}
        }});
        std::fs::write(&file, deployment.to_string()).unwrap();
        let mut config = HubConfig::new(dir.path(), &file);
        (config.mqtt_port, config.https_port, config.workload, config.control) = (0, 0, false, false);
        config.amqp_port = (wire == Wire::Tls).then_some(0);
        let running = start(config).await.unwrap();
        assert_eq!(running.amqp_addr.is_some(), wire == Wire::Tls);
        Fixture { dir, running, wire }
    }

    fn device(&self) -> String {
        self.running.hub.identity.device_id.clone()
    }

    fn host(&self) -> String {
        self.running.hub.identity.hub_host_name.clone()
    }

    fn token(&self, module: &str, signer: &str) -> String {
        let key = self.running.hub.module_key(signer).unwrap().to_vec();
        sas::module_token(&self.host(), &self.device(), module, &key, sas::unix_now() + 3600)
    }

    fn audience(&self, module: &str) -> String {
        sas::module_resource_uri(&self.host(), &self.device(), module)
    }

    /// TLS to the AMQP port (or the WebSocket upgrade on the HTTPS port), then the AMQP open (with
    /// SASL when `sasl` is given).
    async fn open(&self, sasl: Option<SaslProfile>) -> Result<ConnectionHandle<()>, String> {
        let ca = StateDir::open(self.dir.path()).unwrap().ca_pem().unwrap();
        let addr = match self.wire {
            Wire::Tls => self.running.amqp_addr.unwrap(),
            Wire::WebSocket => self.running.https_addr,
        };
        let tcp = TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_tls(&ca));
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(STEP, connector.connect(name, tcp)).await.unwrap().unwrap();
        match self.wire {
            Wire::Tls => open_on(tls, sasl).await,
            Wire::WebSocket => {
                let upgrade = websocket::client(tls, "localhost", addr.port(), Subprotocol::Amqp);
                open_on(tokio::time::timeout(STEP, upgrade).await.unwrap().unwrap(), sasl).await
            }
        }
    }

    /// A connection authenticated for `module` by CBS put-token.
    async fn module(&self, module: &str) -> Client {
        let mut client = Client::open(self, None).await;
        let resp = client.put_token(&self.audience(module), &self.token(module, module)).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        client
    }
}

/// The AMQP open on an established byte stream, bounded in time.
async fn open_on<S>(stream: S, sasl: Option<SaslProfile>) -> Result<ConnectionHandle<()>, String>
where
    S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let builder = Connection::builder().container_id("test").hostname("localhost").scheme("amqp");
    let open = match sasl {
        Some(p) => tokio::time::timeout(STEP, builder.sasl_profile(p).open_with_stream(stream)).await,
        None => tokio::time::timeout(STEP, builder.open_with_stream(stream)).await,
    };
    open.map_err(|_| "no AMQP open in time".to_string())?.map_err(|e| e.to_string())
}

struct Client {
    connection: ConnectionHandle<()>,
    session: SessionHandle<()>,
    cbs_tx: Sender,
    cbs_rx: Receiver,
}

impl Client {
    async fn open(fx: &Fixture, sasl: Option<SaslProfile>) -> Client {
        let mut connection = fx.open(sasl).await.unwrap();
        let mut session = Session::begin(&mut connection).await.unwrap();
        let cbs_tx = Sender::attach(&mut session, "cbs-sender", address::CBS).await.unwrap();
        let cbs_rx = Receiver::attach(&mut session, "cbs-receiver", address::CBS).await.unwrap();
        Client { connection, session, cbs_tx, cbs_rx }
    }

    async fn put_token(&mut self, audience: &str, token: &str) -> cbs::PutTokenResponse {
        let id = uuid::Uuid::new_v4().to_string();
        self.cbs_tx.send(cbs::request(&id, audience, token)).await.unwrap();
        let reply = recv(&mut self.cbs_rx).await;
        self.cbs_rx.accept(&reply).await.unwrap();
        let resp = cbs::parse_response(reply.message());
        assert_eq!(resp.correlation_id.as_deref(), Some(id.as_str()));
        resp
    }

    async fn sender(&mut self, name: &str, addr: String) -> Sender {
        tokio::time::timeout(STEP, Sender::attach(&mut self.session, name, addr)).await.unwrap().unwrap()
    }

    async fn receiver(&mut self, name: &str, addr: String) -> Receiver {
        tokio::time::timeout(STEP, Receiver::attach(&mut self.session, name, addr)).await.unwrap().unwrap()
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(STEP, self.connection.close()).await;
    }
}

async fn recv(r: &mut Receiver) -> Delivery<Body<Value>> {
    tokio::time::timeout(STEP, r.recv::<Body<Value>>()).await.expect("no delivery in time").unwrap()
}

fn output_message(body: &str) -> mapping::Amqp {
    let mut m = Message::new(body.to_string().into_bytes());
    m.set_system(SystemProperty::OutputName, Some("out1".into()));
    m.set_system(SystemProperty::MessageId, Some(format!("id-{body}")));
    m.set_property("k", "v 1");
    mapping::to_amqp(&m, &[])
}

/// Waits (bounded) until the hub holds `n` undelivered messages for `module`.
async fn pending_becomes(fx: &Fixture, module: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + STEP;
    while fx.running.hub.store.pending_count(module).unwrap() != n {
        assert!(tokio::time::Instant::now() < deadline, "pending for {module} never became {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn telemetry_routes_to_an_input_and_settlement_decides_what_stays(wire: Wire) {
    let fx = Fixture::start_over(wire).await;
    let (d, mut a, mut b) = (fx.device(), fx.module("a").await, fx.module("b").await);
    let mut inputs = b.receiver("inputs", address::events(&d, "b")).await;
    let mut events = a.sender("events", address::events(&d, "a")).await;
    for body in ["one", "two", "three"] {
        let outcome = tokio::time::timeout(STEP, events.send(output_message(body))).await.unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    }
    let first = recv(&mut inputs).await;
    let m = mapping::from_amqp(first.message());
    assert_eq!((m.body().as_ref(), m.input_name()), (&b"one"[..], Some("fromA")));
    assert_eq!((m.message_id(), m.property("k")), (Some("id-one"), Some("v 1")));
    assert_eq!((m.connection_device_id(), m.connection_module_id()), (Some(d.as_str()), Some("a")));
    inputs.accept(&first).await.unwrap();
    let second = recv(&mut inputs).await;
    assert_eq!(mapping::from_amqp(second.message()).body().as_ref(), b"two");
    inputs.release(&second).await.unwrap();
    let third = recv(&mut inputs).await;
    let again = recv(&mut inputs).await;
    let bodies = [third.message(), again.message()].map(|m| mapping::from_amqp(m).body().clone());
    assert!(bodies.contains(&bytes::Bytes::from_static(b"two")), "released message redelivered: {bodies:?}");
    assert!(bodies.contains(&bytes::Bytes::from_static(b"three")));
    for d in [&third, &again] {
        if mapping::from_amqp(d.message()).body().as_ref() == b"two" {
            inputs.accept(d).await.unwrap();
        } else {
            inputs.reject(d, None).await.unwrap();
        }
    }
    pending_becomes(&fx, "b", 0).await;
    a.close().await;
    b.close().await;
    fx.running.shutdown().await;
}

#[tokio::test]
async fn unsettled_inputs_are_delivered_again_on_the_next_connection() {
    let fx = Fixture::start().await;
    let (d, mut a) = (fx.device(), fx.module("a").await);
    let mut events = a.sender("events", address::events(&d, "a")).await;
    events.send(output_message("kept")).await.unwrap();
    let mut b = fx.module("b").await;
    let mut inputs = b.receiver("inputs", address::events(&d, "b")).await;
    let first = recv(&mut inputs).await;
    assert_eq!(mapping::from_amqp(first.message()).body().as_ref(), b"kept");
    b.close().await;
    let mut b = fx.module("b").await;
    let mut inputs = b.receiver("inputs", address::events(&d, "b")).await;
    let again = recv(&mut inputs).await;
    assert_eq!(mapping::from_amqp(again.message()).body().as_ref(), b"kept");
    inputs.accept(&again).await.unwrap();
    pending_becomes(&fx, "b", 0).await;
    b.close().await;
    a.close().await;
    fx.running.shutdown().await;
}

async fn put_token_is_verified_like_an_mqtt_password(wire: Wire) {
    let fx = Fixture::start_over(wire).await;
    let mut client = Client::open(&fx, None).await;
    let wrong_key = client.put_token(&fx.audience("a"), &fx.token("a", "b")).await;
    assert_eq!(wrong_key.status, 401);
    assert!(wrong_key.description.contains("signature"), "{wrong_key:?}");
    let not_deployed = client.put_token(&fx.audience("zz"), &fx.token("a", "a")).await;
    assert_eq!(not_deployed.status, 401);
    // Without a valid token, no module link is served.
    let refused = Sender::attach(&mut client.session, "events", address::events(&fx.device(), "a")).await;
    let refused = match refused {
        Err(e) => e.to_string(),
        Ok(mut s) => tokio::time::timeout(STEP, s.send(output_message("x"))).await.unwrap().unwrap_err().to_string(),
    };
    assert!(!refused.is_empty());
    assert_eq!(client.put_token(&fx.audience("a"), &fx.token("a", "a")).await.status, 200);
    // One identity per connection.
    assert_eq!(client.put_token(&fx.audience("b"), &fx.token("b", "b")).await.status, 401);
    client.close().await;
    fx.running.shutdown().await;
}

#[tokio::test]
async fn links_of_another_module_are_refused() {
    let fx = Fixture::start().await;
    let mut a = fx.module("a").await;
    let attached = Sender::attach(&mut a.session, "events", address::events(&fx.device(), "b")).await;
    let failed = match attached {
        Err(_) => true,
        Ok(mut s) => tokio::time::timeout(STEP, s.send(output_message("x"))).await.unwrap().is_err(),
    };
    assert!(failed, "a module sent on another module's events link");
    assert_eq!(fx.running.hub.store.pending_count("b").unwrap(), 0);
    a.close().await;
    fx.running.shutdown().await;
}

async fn sasl_plain_authenticates_without_cbs(wire: Wire) {
    let fx = Fixture::start_over(wire).await;
    let username = format!("{}/modules/a@sas.{}", fx.device(), fx.host());
    let refused = fx.open(Some(SaslProfile::Plain { username: username.clone(), password: fx.token("a", "b") })).await;
    assert!(refused.is_err(), "a wrong PLAIN password was accepted");
    let mut connection = fx.open(Some(SaslProfile::Plain { username, password: fx.token("a", "a") })).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut events = Sender::attach(&mut session, "events", address::events(&fx.device(), "a")).await.unwrap();
    let outcome = tokio::time::timeout(STEP, events.send(output_message("plain"))).await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Accepted(_)));
    pending_becomes(&fx, "b", 1).await;
    let _ = connection.close().await;
    // SASL ANONYMOUS, then CBS, works too.
    let anonymous = Client::open(&fx, Some(SaslProfile::Anonymous)).await;
    anonymous.close().await;
    fx.running.shutdown().await;
}

async fn twin_requests_and_desired_patches(wire: Wire) {
    let fx = Fixture::start_over(wire).await;
    let mut a = fx.module("a").await;
    let addr = address::twin(&fx.device(), "a");
    let mut tx = a.sender("twin-sender", addr.clone()).await;
    let mut rx = a.receiver("twin-receiver", addr).await;
    let mut ask = async |op: twin::TwinOperation| {
        let id = uuid::Uuid::new_v4().to_string();
        tx.send(twin::request(&id, &op)).await.unwrap();
        let reply = recv(&mut rx).await;
        rx.accept(&reply).await.unwrap();
        match twin::parse_inbound(reply.message()) {
            twin::TwinInbound::Response { correlation_id, status, body } => {
                assert_eq!(correlation_id, id);
                (status, body)
            }
            other => panic!("expected a response, got {other:?}"),
        }
    };
    let (status, body) = ask(twin::TwinOperation::Get).await;
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200);
    assert!(doc["desired"]["$version"].is_i64() && doc["reported"]["$version"].is_i64(), "{doc}");
    let patch = bytes::Bytes::from_static(br#"{"temp": 21}"#);
    assert_eq!(ask(twin::TwinOperation::PatchReported(patch)).await.0, 204);
    assert_eq!(fx.running.hub.twin_document("a").await.unwrap()["reported"]["temp"], 21);
    assert_eq!(ask(twin::TwinOperation::PatchReported(bytes::Bytes::from_static(b"[1]"))).await.0, 400);
    assert_eq!(ask(twin::TwinOperation::SubscribeDesired).await.0, 200);
    let version = fx.running.hub.patch_desired("a", json!({"rate": 5}).as_object().unwrap()).await.unwrap();
    let patch = recv(&mut rx).await;
    match twin::parse_inbound(patch.message()) {
        twin::TwinInbound::DesiredPatch(body) => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((v["rate"].as_i64(), v["$version"].as_i64()), (Some(5), Some(version)));
        }
        other => panic!("expected a desired patch, got {other:?}"),
    }
    a.close().await;
    fx.running.shutdown().await;
}

async fn direct_methods_are_delivered_and_answered(wire: Wire) {
    let fx = Fixture::start_over(wire).await;
    let mut a = fx.module("a").await;
    let addr = address::methods(&fx.device(), "a");
    let mut responses = a.sender("methods-sender", addr.clone()).await;
    let mut requests = a.receiver("methods-receiver", addr).await;
    let hub = fx.running.hub.clone();
    let call =
        tokio::spawn(async move { hub.invoke_method("a", "reboot", br#"{"delay":1}"#.to_vec(), STEP, STEP).await });
    let request = recv(&mut requests).await;
    requests.accept(&request).await.unwrap();
    let call_msg = twin::parse_method_request(request.message()).unwrap();
    assert_eq!((call_msg.name.as_str(), &call_msg.payload[..]), ("reboot", &br#"{"delay":1}"#[..]));
    responses.send(twin::method_response(&call_msg.rid, 201, br#"{"ok":true}"#)).await.unwrap();
    let outcome = tokio::time::timeout(STEP, call).await.unwrap().unwrap().unwrap();
    assert_eq!((outcome.status, outcome.payload.as_deref()), (201, Some(r#"{"ok":true}"#)));
    a.close().await;
    fx.running.shutdown().await;
}

/// Each check above, over TLS to 5671 and over AMQP over WebSocket.
macro_rules! over_tls_and_websocket {
    ($($name:ident),* $(,)?) => {
        mod tls {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Wire::Tls).await
            })*
        }
        mod over_websocket {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Wire::WebSocket).await
            })*
        }
    };
}

over_tls_and_websocket!(
    telemetry_routes_to_an_input_and_settlement_decides_what_stays,
    put_token_is_verified_like_an_mqtt_password,
    sasl_plain_authenticates_without_cbs,
    twin_requests_and_desired_patches,
    direct_methods_are_delivered_and_answered,
);

#[tokio::test]
async fn websocket_connections_end_when_the_hub_stops() {
    let fx = Fixture::start_over(Wire::WebSocket).await;
    let mut a = fx.module("a").await;
    let mut events = a.sender("events", address::events(&fx.device(), "a")).await;
    events.send(output_message("before")).await.unwrap();
    fx.running.shutdown().await;
    let after = tokio::time::timeout(STEP, events.send(output_message("after"))).await.expect("a send hung");
    assert!(after.is_err(), "the connection outlived the hub: {after:?}");
}
