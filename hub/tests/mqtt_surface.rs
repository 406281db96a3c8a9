//! The hub's MQTT surface driven by a plain MQTT client (rumqttc's own event loop, not our
//! core client) over TLS on loopback: authentication, authorization, routing, store and forward,
//! restarts, twins and methods, as edgeHub behaves.

mod common;

use std::time::Duration;

use common::{client_tls, connack, publish_on, until, STEP};
use edgemodule_core::wire::sas;
use edgemodule_hub::server::{start, start_restartable, HubConfig, RunningHub, StartError};
use edgemodule_hub::state::StateDir;
use edgemodule_hub::store::Store;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{json, Value};

struct Hub {
    dir: tempfile::TempDir,
    running: Option<RunningHub>,
    port: u16,
}

fn deployment() -> Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"a": {}, "b": {}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
            "hot": "FROM /messages/modules/a/outputs/t WHERE as_number(temp) > 30 OR $connectionModuleId = 'nobody' INTO BrokeredEndpoint(\"/modules/b/inputs/hot\")",
            "all": "FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/b/inputs/all\")"
        }}},
        "b": {"properties.desired": {"level": 1}}
    }})
}

impl Hub {
    async fn start() -> Hub {
        let dir = tempfile::tempdir().unwrap();
        StateDir::init(dir.path(), "localhost").unwrap();
        std::fs::write(dir.path().join("deployment.json"), deployment().to_string()).unwrap();
        let mut hub = Hub { dir, running: None, port: 0 };
        hub.restart().await;
        hub
    }

    async fn restart(&mut self) {
        let mut config = HubConfig::new(self.dir.path(), self.dir.path().join("deployment.json"));
        (config.mqtt_port, config.https_port) = (self.port, 0);
        let running = start_restartable(config).await.unwrap();
        self.port = running.mqtt_addr.port();
        self.running = Some(running);
    }

    async fn stop(&mut self) {
        self.running.take().unwrap().shutdown().await;
    }

    fn state(&self) -> StateDir {
        StateDir::open(self.dir.path()).unwrap()
    }

    fn token(&self, module: &str, expiry: u64) -> String {
        let state = self.state();
        let key = sas::decode_key(&state.module_key(module).unwrap().unwrap()).unwrap();
        let id = state.identity();
        sas::module_token(&id.hub_host_name, &id.device_id, module, &key, expiry)
    }

    /// A raw MQTT client for `module` with the given password and client id.
    fn raw(&self, module: &str, client_id: &str, password: String) -> (AsyncClient, EventLoop) {
        let state = self.state();
        let id = state.identity();
        let mut opts = MqttOptions::new(client_id, "localhost", self.port);
        opts.set_credentials(
            format!("{}/{}/{module}/?api-version=2021-04-12", id.hub_host_name, id.device_id),
            password,
        );
        opts.set_clean_session(false);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(client_tls(&state.ca_pem().unwrap()))));
        AsyncClient::new(opts, 100)
    }

    fn module(&self, module: &str) -> (AsyncClient, EventLoop) {
        let device = self.state().identity().device_id.clone();
        self.raw(module, &format!("{device}/{module}"), self.token(module, sas::unix_now() + 3600))
    }

    fn device(&self) -> String {
        self.state().identity().device_id.clone()
    }
}

#[tokio::test]
async fn authentication_accepts_the_right_token_and_refuses_everything_else() {
    let hub = Hub::start().await;
    let (_c, mut ev) = hub.module("a");
    assert_eq!(connack(&mut ev).await, Ok(ConnectReturnCode::Success));

    let d = hub.device();
    let cases = [
        ("wrong key", hub.raw("a", &format!("{d}/a"), hub.token("b", sas::unix_now() + 3600).replace("%2Fb", "%2Fa"))),
        ("expired", hub.raw("a", &format!("{d}/a"), hub.token("a", sas::unix_now() - 600))),
        ("another module's token", hub.raw("a", &format!("{d}/a"), hub.token("b", sas::unix_now() + 3600))),
        ("client id of another module", hub.raw("a", &format!("{d}/b"), hub.token("a", sas::unix_now() + 3600))),
        ("not a token", hub.raw("a", &format!("{d}/a"), "password".into())),
    ];
    for (what, (_c, mut ev)) in cases {
        assert_eq!(connack(&mut ev).await, Ok(ConnectReturnCode::NotAuthorized), "{what}");
    }
    // The hub keeps serving the good connection.
    let (c, mut ev) = hub.module("a");
    connack(&mut ev).await.unwrap();
    c.subscribe("$iothub/twin/res/#", QoS::AtLeastOnce).await.unwrap();
    until(&mut ev, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
}

#[tokio::test]
async fn a_module_cannot_subscribe_to_or_publish_as_another() {
    let hub = Hub::start().await;
    let d = hub.device();
    let (c, mut ev) = hub.module("a");
    connack(&mut ev).await.unwrap();
    c.subscribe(format!("devices/{d}/modules/b/inputs/#"), QoS::AtLeastOnce).await.unwrap();
    let codes = until(&mut ev, |p| match p {
        Packet::SubAck(s) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Failure]);
    c.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    let codes = until(&mut ev, |p| match p {
        Packet::SubAck(s) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Failure]);

    c.publish(format!("devices/{d}/modules/b/messages/events/%24.on=x"), QoS::AtLeastOnce, false, "spoof")
        .await
        .unwrap();
    let dropped = tokio::time::timeout(STEP, async {
        loop {
            match ev.poll().await {
                Err(_) => return true,
                Ok(Event::Incoming(Packet::PubAck(_))) => return false,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(dropped, "a spoofed publish was acknowledged");
}

#[tokio::test]
async fn routes_with_conditions_store_for_late_subscribers_and_survive_restart() {
    let mut hub = Hub::start().await;
    let d = hub.device();
    let (a, mut aev) = hub.module("a");
    connack(&mut aev).await.unwrap();
    for temp in [10, 35] {
        a.publish(
            format!("devices/{d}/modules/a/messages/events/%24.on=t&temp={temp}"),
            QoS::AtLeastOnce,
            false,
            format!("{temp}"),
        )
        .await
        .unwrap();
        until(&mut aev, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    }
    // Acknowledged messages are durable: restart the hub before the receiver ever connects.
    drop(a);
    hub.stop().await;
    hub.restart().await;

    let (b, mut bev) = hub.module("b");
    connack(&mut bev).await.unwrap();
    b.subscribe(format!("devices/{d}/modules/b/inputs/#"), QoS::AtLeastOnce).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let p = until(&mut bev, publish_on(&format!("devices/{d}/modules/b/inputs/"))).await;
        got.push((p.topic.clone(), String::from_utf8(p.payload.to_vec()).unwrap()));
    }
    got.sort();
    let topic =
        |input: &str, temp: u32| format!("devices/{d}/modules/b/inputs/{input}/temp={temp}&%24.cdid={d}&%24.cmid=a");
    assert_eq!(
        got,
        vec![(topic("all", 10), "10".into()), (topic("all", 35), "35".into()), (topic("hot", 35), "35".into())]
    );
}

/// A client that finished TLS but never sent CONNECT (or an HTTP request) is not a registered
/// connection the hub can tell to close; it must not keep the stopped hub's store open until its
/// own deadline (60 s), or a hub restarted on the same state dir finds the database locked.
#[tokio::test]
async fn a_hub_restarts_while_clients_idle_before_their_first_packet() {
    let mut hub = Hub::start().await;
    let running = hub.running.as_ref().unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls(&hub.state().ca_pem().unwrap()));
    let mut idle = Vec::new();
    for addr in [running.mqtt_addr, running.https_addr] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        idle.push(tokio::time::timeout(STEP, connector.connect(name, tcp)).await.unwrap().unwrap());
    }
    hub.stop().await;
    hub.restart().await;
    let (_b, mut ev) = hub.module("b");
    assert_eq!(connack(&mut ev).await.unwrap(), ConnectReturnCode::Success);
    drop(idle);
}

/// A start that fails (here: a port taken) must leave the state dir free at once: the retry
/// that `start_restartable` makes on another port opens the same store right away, and a store
/// still held by the failed attempt (its writer thread) made that retry fail for good with
/// "Database already open".
#[tokio::test]
async fn a_failed_start_leaves_the_store_free_at_once() {
    let dir = tempfile::tempdir().unwrap();
    StateDir::init(dir.path(), "localhost").unwrap();
    let manifest = dir.path().join("deployment.json");
    std::fs::write(&manifest, deployment().to_string()).unwrap();
    let assert_store_free = || {
        if let Err(e) = Store::open(&dir.path().join("hub.redb")) {
            panic!("the store is still held after the failed start: {e}");
        }
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for _ in 0..20 {
        let mut config = HubConfig::new(dir.path(), &manifest);
        (config.mqtt_port, config.https_port) = (0, taken.local_addr().unwrap().port());
        let Err(err) = start(config).await else { panic!("the hub started on a taken port") };
        assert!(matches!(err, StartError::PortInUse(_)), "{err}");
        assert_store_free();
    }
    // A failure after the store is open (the workload socket cannot be bound) releases it too.
    let socket = StateDir::open(dir.path()).unwrap().workload_socket_path();
    std::fs::create_dir_all(socket.join("in-the-way")).unwrap();
    let free_ports = || {
        let mut config = HubConfig::new(dir.path(), &manifest);
        (config.mqtt_port, config.https_port) = (0, 0);
        config
    };
    let Err(err) = start(free_ports()).await else { panic!("the hub started without its workload socket") };
    assert!(matches!(err, StartError::Other(_)), "{err}");
    assert_store_free();
    std::fs::remove_dir_all(&socket).unwrap();
    start(free_ports()).await.unwrap().shutdown().await;
}

#[tokio::test]
async fn twin_versions_and_desired_notifications() {
    let hub = Hub::start().await;
    let (b, mut ev) = hub.module("b");
    connack(&mut ev).await.unwrap();
    b.subscribe("$iothub/twin/res/#", QoS::AtLeastOnce).await.unwrap();
    b.subscribe("$iothub/twin/PATCH/properties/desired/#", QoS::AtLeastOnce).await.unwrap();
    b.publish("$iothub/twin/GET/?$rid=1", QoS::AtMostOnce, false, " ").await.unwrap();
    let res = until(&mut ev, publish_on("$iothub/twin/res/")).await;
    assert_eq!(res.topic, "$iothub/twin/res/200/?$rid=1");
    let twin: Value = serde_json::from_slice(&res.payload).unwrap();
    assert_eq!(twin["desired"]["level"], 1);
    let (dv, rv) = (twin["desired"]["$version"].as_i64().unwrap(), twin["reported"]["$version"].as_i64().unwrap());

    b.publish("$iothub/twin/PATCH/properties/reported/?$rid=abc", QoS::AtLeastOnce, false, r#"{"x":{"y":1}}"#)
        .await
        .unwrap();
    assert_eq!(until(&mut ev, publish_on("$iothub/twin/res/")).await.topic, "$iothub/twin/res/204/?$rid=abc");
    b.publish("$iothub/twin/PATCH/properties/reported/?$rid=bad", QoS::AtLeastOnce, false, "{not json").await.unwrap();
    assert_eq!(until(&mut ev, publish_on("$iothub/twin/res/")).await.topic, "$iothub/twin/res/400/?$rid=bad");

    let hub_ref = &hub.running.as_ref().unwrap().hub;
    hub_ref.patch_desired("b", json!({"level": 2}).as_object().unwrap()).await.unwrap();
    let patch = until(&mut ev, publish_on("$iothub/twin/PATCH/properties/desired/")).await;
    assert_eq!(patch.topic, format!("$iothub/twin/PATCH/properties/desired/?$version={}", dv + 1));
    assert_eq!(serde_json::from_slice::<Value>(&patch.payload).unwrap(), json!({"level": 2, "$version": dv + 1}));

    b.publish("$iothub/twin/GET/?$rid=2", QoS::AtMostOnce, false, " ").await.unwrap();
    let twin: Value = serde_json::from_slice(&until(&mut ev, publish_on("$iothub/twin/res/")).await.payload).unwrap();
    assert_eq!(twin["reported"]["$version"], rv + 1);
    assert_eq!(twin["reported"]["x"]["y"], 1);
}

#[tokio::test]
async fn methods_reach_the_module_and_time_out_without_an_answer() {
    let hub = Hub::start().await;
    let (b, mut ev) = hub.module("b");
    connack(&mut ev).await.unwrap();
    b.subscribe("$iothub/methods/POST/#", QoS::AtLeastOnce).await.unwrap();
    until(&mut ev, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    let running = hub.running.as_ref().unwrap().hub.clone();
    let call = tokio::spawn(async move {
        running.invoke_method("b", "reboot", b"{\"now\":true}".to_vec(), Duration::from_secs(5), Duration::ZERO).await
    });
    let req = until(&mut ev, publish_on("$iothub/methods/POST/")).await;
    let rid = req.topic.rsplit("$rid=").next().unwrap().to_string();
    assert!(req.topic.starts_with("$iothub/methods/POST/reboot/?$rid="), "{}", req.topic);
    assert_eq!(req.payload.as_ref(), b"{\"now\":true}");
    // edgeHub matches the rid case-insensitively.
    b.publish(format!("$iothub/methods/res/201/?$rid={}", rid.to_uppercase()), QoS::AtMostOnce, false, r#"{"ok":1}"#)
        .await
        .unwrap();
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let outcome = call.await.unwrap().unwrap();
    assert_eq!((outcome.status, outcome.payload.as_deref()), (201, Some(r#"{"ok":1}"#)));

    let running = &hub.running.as_ref().unwrap().hub;
    let started = std::time::Instant::now();
    let err =
        running.invoke_method("b", "ignored", vec![], Duration::from_millis(500), Duration::ZERO).await.unwrap_err();
    assert_eq!(err.http_status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    let err =
        running.invoke_method("a", "x", vec![], Duration::from_secs(5), Duration::from_millis(200)).await.unwrap_err();
    assert_eq!(err.http_status, 404);
}

#[tokio::test]
async fn malformed_manifests_are_rejected_naming_file_path_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    StateDir::init(dir.path(), "localhost").unwrap();
    let mut bad = deployment();
    bad["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]["hot"] = json!("FROM /messages/* INTO $nowhere");
    let file = dir.path().join("bad.json");
    std::fs::write(&file, bad.to_string()).unwrap();
    let err = start(HubConfig::new(dir.path(), &file)).await.err().unwrap().to_string();
    assert!(err.contains("bad.json") && err.contains("routes.hot") && err.contains("sink"), "{err}");
    std::fs::write(&file, "{ not json").unwrap();
    let err = start(HubConfig::new(dir.path(), &file)).await.err().unwrap().to_string();
    assert!(err.contains("bad.json") && err.contains("line 1"), "{err}");
}

#[tokio::test]
async fn a_connection_is_closed_when_its_token_expires() {
    let hub = Hub::start().await;
    let d = hub.device();
    // Valid for two more seconds: edgeHub allows five minutes of clock skew past `se`.
    let almost_expired = hub.token("a", sas::unix_now() + 2 - sas::MAX_CLOCK_SKEW_SECS);
    let (_c, mut ev) = hub.raw("a", &format!("{d}/a"), almost_expired);
    assert_eq!(connack(&mut ev).await, Ok(ConnectReturnCode::Success));
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if ev.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the hub kept a connection whose token expired");
    assert!(started.elapsed() >= Duration::from_secs(1), "closed too early: {:?}", started.elapsed());
}
