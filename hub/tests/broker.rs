//! The broker for user topics driven by plain MQTT clients (rumqttc's event loop, and
//! mosquitto_pub/mosquitto_sub when installed) over TLS on loopback: the authorization policy
//! for connect, publish and subscribe (identities, variables, deny over allow), retained
//! messages, the behaviour without a policy, and a bad policy refused at start.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{client_tls, connack, until, STEP};
use edgemodule_core::wire::sas;
use edgemodule_hub::server::{start, start_restartable, HubConfig, RunningHub};
use edgemodule_hub::state::StateDir;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode, TlsConfiguration,
    Transport,
};
use serde_json::{json, Value};

struct Hub {
    dir: tempfile::TempDir,
    running: Option<RunningHub>,
    port: u16,
}

/// Modules a, b and c, a route from a's outputs to b, and `broker` as `mqttBroker` (if any).
fn deployment(broker: Option<Value>) -> Value {
    let mut hub = json!({"schemaVersion": "1.2", "routes": {
        "all": "FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/b/inputs/all\")"
    }});
    if let Some(b) = broker {
        hub["mqttBroker"] = b;
    }
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"a": {}, "b": {}, "c": {}}}},
        "$edgeHub": {"properties.desired": hub}
    }})
}

impl Hub {
    /// A fresh state dir; `broker` may use `HUB` and `DEVICE`, replaced by the real names.
    async fn start(broker: Option<Value>) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub { dir, running: None, port: 0 };
        hub.write_deployment(broker);
        let mut hub = hub;
        hub.restart().await.unwrap();
        hub
    }

    fn write_deployment(&self, broker: Option<Value>) {
        if !self.dir.path().join("identity.json").exists() && StateDir::open(self.dir.path()).is_err() {
            StateDir::init(self.dir.path(), "localhost").unwrap();
        }
        let id = self.state().identity().clone();
        let text = deployment(broker).to_string().replace("HUB", &id.hub_host_name).replace("DEVICE", &id.device_id);
        std::fs::write(self.deployment_file(), text).unwrap();
    }

    fn deployment_file(&self) -> PathBuf {
        self.dir.path().join("deployment.json")
    }

    async fn restart(&mut self) -> Result<(), String> {
        let mut config = HubConfig::new(self.dir.path(), self.deployment_file());
        (config.mqtt_port, config.https_port) = (self.port, 0);
        let running = start_restartable(config).await?;
        self.port = running.mqtt_addr.port();
        self.running = Some(running);
        Ok(())
    }

    async fn stop(&mut self) {
        self.running.take().unwrap().shutdown().await;
    }

    fn state(&self) -> StateDir {
        StateDir::open(self.dir.path()).unwrap()
    }

    fn device(&self) -> String {
        self.state().identity().device_id.clone()
    }

    /// A raw MQTT 3.1.1 client for `module` with a fresh token.
    fn module(&self, module: &str) -> (AsyncClient, EventLoop) {
        let state = self.state();
        let id = state.identity();
        let key = sas::decode_key(&state.module_key(module).unwrap().unwrap()).unwrap();
        let token = sas::module_token(&id.hub_host_name, &id.device_id, module, &key, sas::unix_now() + 3600);
        let mut opts = MqttOptions::new(format!("{}/{module}", id.device_id), "localhost", self.port);
        opts.set_credentials(format!("{}/{}/{module}/?api-version=2018-06-30", id.hub_host_name, id.device_id), token);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(client_tls(&state.ca_pem().unwrap()))));
        AsyncClient::new(opts, 100)
    }

    /// A connected module (CONNACK 0 asserted).
    async fn connected(&self, module: &str) -> (AsyncClient, EventLoop) {
        let (c, mut ev) = self.module(module);
        assert_eq!(connack(&mut ev).await, Ok(ConnectReturnCode::Success), "{module} should connect");
        (c, ev)
    }
}

/// Polls a client's event loop until its next PUBLISH has gone out (QoS 0 needs no answer).
async fn flushed(ev: &mut EventLoop) {
    loop {
        match tokio::time::timeout(STEP, ev.poll()).await.expect("publish not sent") {
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) => return,
            Ok(_) => {}
            Err(e) => panic!("connection failed: {e}"),
        }
    }
}

async fn subscribe(c: &AsyncClient, ev: &mut EventLoop, filter: &str) -> SubscribeReasonCode {
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    until(ev, |p| match p {
        Packet::SubAck(s) => Some(s.return_codes[0]),
        _ => None,
    })
    .await
}

async fn next_publish(ev: &mut EventLoop) -> rumqttc::Publish {
    until(ev, |p| match p {
        Packet::Publish(p) => Some(p.clone()),
        _ => None,
    })
    .await
}

/// Publishes at QoS 1 and waits for the PUBACK.
async fn publish_acked(c: &AsyncClient, ev: &mut EventLoop, topic: &str, body: &str, retain: bool) {
    c.publish(topic, QoS::AtLeastOnce, retain, body.as_bytes().to_vec()).await.unwrap();
    until(ev, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
}

/// Publishes at QoS 1 and expects the hub to close the connection without a PUBACK.
async fn publish_refused(c: &AsyncClient, ev: &mut EventLoop, topic: &str) {
    c.publish(topic, QoS::AtLeastOnce, false, "nope").await.unwrap();
    let closed = tokio::time::timeout(STEP, async {
        loop {
            match ev.poll().await {
                Err(_) => return true,
                Ok(Event::Incoming(Packet::PubAck(_))) => return false,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("neither PUBACK nor close");
    assert!(closed, "a refused publish to {topic} was acknowledged");
}

fn policy() -> Value {
    json!({"authorizations": [
        {"identities": ["{{iot:identity}}"], "allow": [{"operations": ["mqtt:connect"]}]},
        {"identities": ["HUB/DEVICE/a"], "allow": [
            {"operations": ["mqtt:publish"], "resources": ["sensors/#", "to/{{iot:device_id}}/+/cmd"]}]},
        {"identities": ["{{iot:identity}}"],
         "allow": [{"operations": ["mqtt:subscribe"], "resources": ["sensors/#", "to/{{iot:identity}}/#"]}],
         "deny": [{"operations": ["mqtt:publish", "mqtt:subscribe"], "resources": ["sensors/secret/#"]}]}
    ]})
}

#[tokio::test]
async fn policy_allows_and_denies_by_identity_and_variables_with_deny_winning() {
    let hub = Hub::start(Some(policy())).await;
    let d = hub.device();
    let (a, mut aev) = hub.connected("a").await;
    let (b, mut bev) = hub.connected("b").await;

    // Subscriptions: allowed filters, the policy's variables, and a deny that overlaps.
    assert_eq!(subscribe(&b, &mut bev, "sensors/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    assert_eq!(subscribe(&b, &mut bev, &format!("to/{d}/b/#")).await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    assert_eq!(subscribe(&b, &mut bev, &format!("to/{d}/a/#")).await, SubscribeReasonCode::Failure);
    assert_eq!(subscribe(&b, &mut bev, "sensors/secret/x").await, SubscribeReasonCode::Failure);
    assert_eq!(subscribe(&b, &mut bev, "#").await, SubscribeReasonCode::Failure);
    assert_eq!(subscribe(&b, &mut bev, "elsewhere/+").await, SubscribeReasonCode::Failure);
    // IoT Hub topics keep their own rules, whatever the policy says.
    assert_eq!(subscribe(&b, &mut bev, "$iothub/twin/res/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));

    // Allowed publishes reach the subscriber, QoS and payload intact.
    publish_acked(&a, &mut aev, "sensors/t1", "21.5", false).await;
    let p = next_publish(&mut bev).await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos, p.retain),
        ("sensors/t1", &b"21.5"[..], QoS::AtLeastOnce, false)
    );
    a.publish(format!("to/{d}/b/cmd"), QoS::AtMostOnce, false, "go").await.unwrap();
    flushed(&mut aev).await;
    let p = next_publish(&mut bev).await;
    assert_eq!((p.topic.clone(), p.qos), (format!("to/{d}/b/cmd"), QoS::AtMostOnce));

    // Deny wins over the earlier allow: `a` is disconnected and nothing is delivered.
    publish_refused(&a, &mut aev, "sensors/secret/code").await;
    // Not allowed at all: `b` may not publish.
    publish_refused(&b, &mut bev, "sensors/t1").await;

    // Reconnect both; the next thing `b` sees on sensors/# is the marker, not the secret.
    let (a, mut aev) = hub.connected("a").await;
    let (b, mut bev) = hub.connected("b").await;
    assert_eq!(subscribe(&b, &mut bev, "sensors/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    publish_acked(&a, &mut aev, "sensors/marker", "m", false).await;
    assert_eq!(next_publish(&mut bev).await.topic, "sensors/marker");
    drop((a, b));
}

#[tokio::test]
async fn a_granted_wildcard_never_delivers_topics_denied_to_the_subscriber() {
    let hub = Hub::start(Some(json!({"authorizations": [
        {"identities": ["{{iot:identity}}"], "allow": [
            {"operations": ["mqtt:connect"]},
            {"operations": ["mqtt:publish", "mqtt:subscribe"], "resources": ["sensors/#"]}]},
        {"identities": ["HUB/DEVICE/b"], "deny": [{"operations": ["mqtt:subscribe"], "resources": ["sensors/secret/#"]}]}
    ]})))
    .await;
    let (a, mut aev) = hub.connected("a").await;
    let (b, mut bev) = hub.connected("b").await;
    let (c, mut cev) = hub.connected("c").await;
    assert_eq!(subscribe(&b, &mut bev, "sensors/secret/+").await, SubscribeReasonCode::Failure);
    for (client, ev) in [(&b, &mut bev), (&c, &mut cev)] {
        assert_eq!(subscribe(client, ev, "sensors/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    }
    publish_acked(&a, &mut aev, "sensors/secret/pin", "1234", false).await;
    publish_acked(&a, &mut aev, "sensors/open", "hello", false).await;
    assert_eq!(next_publish(&mut cev).await.topic, "sensors/secret/pin");
    assert_eq!(next_publish(&mut cev).await.topic, "sensors/open");
    assert_eq!(next_publish(&mut bev).await.topic, "sensors/open", "b must not get the denied topic");
}

#[tokio::test]
async fn connect_needs_an_explicit_allow_once_a_policy_exists() {
    let hub = Hub::start(Some(json!({"authorizations": [
        {"identities": ["HUB/DEVICE/a", "{{iot:this_device_id}}/c"], "allow": [{"operations": ["mqtt:connect"]}]},
        {"identities": ["{{iot:identity}}"], "deny": [{"operations": ["mqtt:connect"]}]}
    ]})))
    .await;
    for (module, expected) in [("a", ConnectReturnCode::NotAuthorized), ("b", ConnectReturnCode::NotAuthorized)] {
        let (_c, mut ev) = hub.module(module);
        assert_eq!(connack(&mut ev).await, Ok(expected), "{module}");
    }
    let hub2 = Hub::start(Some(json!({"authorizations": [
        {"identities": ["HUB/DEVICE/a"], "allow": [{"operations": ["mqtt:connect"]}]}
    ]})))
    .await;
    let (a, mut aev) = hub2.connected("a").await;
    let (_b, mut bev) = hub2.module("b");
    assert_eq!(connack(&mut bev).await, Ok(ConnectReturnCode::NotAuthorized));
    // `a` uses its IoT Hub topics without any publish/subscribe statement.
    assert_eq!(subscribe(&a, &mut aev, "$iothub/twin/res/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    a.publish("$iothub/twin/GET/?$rid=1", QoS::AtMostOnce, false, " ").await.unwrap();
    assert_eq!(next_publish(&mut aev).await.topic, "$iothub/twin/res/200/?$rid=1");
}

#[tokio::test]
async fn retained_messages_reach_late_subscribers_and_survive_a_restart() {
    let mut hub = Hub::start(Some(policy())).await;
    let (a, mut aev) = hub.connected("a").await;
    publish_acked(&a, &mut aev, "sensors/door", "closed", true).await;
    publish_acked(&a, &mut aev, "sensors/door", "open", true).await;
    publish_acked(&a, &mut aev, "sensors/window", "shut", true).await;
    publish_acked(&a, &mut aev, "sensors/live", "not retained", false).await;
    drop(a);

    let (b, mut bev) = hub.connected("b").await;
    assert_eq!(subscribe(&b, &mut bev, "sensors/door").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    let p = next_publish(&mut bev).await;
    assert_eq!((p.topic.as_str(), &p.payload[..], p.retain), ("sensors/door", &b"open"[..], true));
    drop(b);

    hub.stop().await;
    hub.restart().await.unwrap();
    let (b, mut bev) = hub.connected("b").await;
    b.subscribe("sensors/+", QoS::AtMostOnce).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let p = next_publish(&mut bev).await;
        assert!(p.retain && p.qos == QoS::AtMostOnce, "{p:?}");
        got.push((p.topic.clone(), String::from_utf8(p.payload.to_vec()).unwrap()));
    }
    assert_eq!(got, vec![("sensors/door".into(), "open".into()), ("sensors/window".into(), "shut".into())]);

    // An empty retained publish clears it; live delivery to existing subscribers has RETAIN 0.
    let (a, mut aev) = hub.connected("a").await;
    publish_acked(&a, &mut aev, "sensors/door", "", true).await;
    let p = next_publish(&mut bev).await;
    assert_eq!((p.topic.as_str(), p.payload.len(), p.retain), ("sensors/door", 0, false));
    let (c, mut cev) = hub.connected("c").await;
    assert_eq!(subscribe(&c, &mut cev, "sensors/+").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    assert_eq!(next_publish(&mut cev).await.topic, "sensors/window");
    publish_acked(&a, &mut aev, "sensors/marker", "m", false).await;
    assert_eq!(next_publish(&mut cev).await.topic, "sensors/marker");
}

#[tokio::test]
async fn without_a_broker_section_user_topics_stay_closed_and_the_short_telemetry_topic_routes() {
    let hub = Hub::start(None).await;
    let d = hub.device();
    let (b, mut bev) = hub.connected("b").await;
    assert_eq!(subscribe(&b, &mut bev, "sensors/#").await, SubscribeReasonCode::Failure);
    assert_eq!(
        subscribe(&b, &mut bev, &format!("devices/{d}/modules/b/inputs/#")).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let (a, mut aev) = hub.connected("a").await;
    // The IoT Edge 1.2 docs' short form `devices/{d}/{m}/messages/events` is telemetry.
    publish_acked(&a, &mut aev, &format!("devices/{d}/a/messages/events/%24.on=short&k=v"), "via alias", false).await;
    let p = next_publish(&mut bev).await;
    assert!(p.topic.starts_with(&format!("devices/{d}/modules/b/inputs/all/")), "{}", p.topic);
    assert!(p.topic.contains("k=v"), "{}", p.topic);
    assert_eq!(&p.payload[..], b"via alias");
    // ...but only for the module's own identity.
    publish_refused(&a, &mut aev, &format!("devices/{d}/c/messages/events")).await;
    let (a, mut aev) = hub.connected("a").await;
    publish_refused(&a, &mut aev, "sensors/x").await;
}

#[tokio::test]
async fn a_bad_policy_is_refused_at_start_with_its_json_path() {
    let dir = tempfile::tempdir().unwrap();
    StateDir::init(dir.path(), "localhost").unwrap();
    let file = dir.path().join("deployment.json");
    let connect = json!({"operations": ["mqtt:connect"]});
    let cases = [
        (
            json!({"authorizations": [
                {"identities": ["{{iot:identity}}"], "allow": [connect]},
                {"identities": ["{{iot:identity}}"], "allow": [connect]},
                {"identities": ["{{iot:identity}}"], "allow": [{"operations": ["mqtt:publish", "mqtt:pub"], "resources": ["x"]}]}
            ]}),
            ".authorizations[2].allow[0].operations[1]",
            "unknown operation",
        ),
        (
            json!({"authorizations": [{"identities": ["{{iot:identity}}"], "deny": [{"operations": ["mqtt:subscribe"], "resources": ["a/#/b"]}]}]}),
            ".authorizations[0].deny[0].resources[0]",
            "not a topic filter",
        ),
        (
            json!({"authorizations": [{"identities": ["{{iot:nobody}}"], "allow": [connect]}]}),
            ".authorizations[0].identities[0]",
            "unknown variable",
        ),
        (json!({"authorizations": {}}), ".authorizations", "must be an array"),
    ];
    for (broker, path, problem) in cases {
        std::fs::write(&file, deployment(Some(broker)).to_string()).unwrap();
        let mut config = HubConfig::new(dir.path(), &file);
        (config.mqtt_port, config.https_port) = (0, 0);
        let err = match start(config).await {
            Ok(running) => {
                running.shutdown().await;
                panic!("a bad policy was accepted ({path})");
            }
            Err(e) => e.to_string(),
        };
        let expected = format!("{}: $.modulesContent.$edgeHub.properties.desired.mqttBroker{path}: ", file.display());
        assert!(err.starts_with(&expected), "{err}\nexpected to start with {expected}");
        assert!(err.contains(problem), "{err}");
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}

#[tokio::test]
async fn mosquitto_clients_use_the_broker_with_a_cli_token() {
    let (Some(mpub), Some(msub)) = (which("mosquitto_pub"), which("mosquitto_sub")) else {
        eprintln!("skipped: mosquitto_pub/mosquitto_sub not installed (apt-get install mosquitto-clients)");
        return;
    };
    let hub = Hub::start(Some(policy())).await;
    let state = hub.dir.path().to_path_buf();
    let id = hub.state().identity().clone();
    // The CLI talks to this in-process hub over its control socket, so it must not block the runtime.
    let token = |module: &str| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_edgemodule-hub"));
        cmd.arg("--state-dir").arg(&state).args(["token", "--module", module, "--ttl", "600"]).kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(STEP, cmd.output()).await.expect("token hung").unwrap();
            assert!(out.status.success(), "token: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }
    };
    let tokens = [("a", token("a").await), ("b", token("b").await)];
    assert!(tokens.iter().all(|(_, t)| t.starts_with("SharedAccessSignature sr=")), "{tokens:?}");
    let token = |module: &str| tokens.iter().find(|(m, _)| *m == module).unwrap().1.clone();
    let args = |module: &str| -> Vec<String> {
        vec![
            "-h".into(),
            "localhost".into(),
            "-p".into(),
            hub.port.to_string(),
            "--cafile".into(),
            state.join("ca.pem").display().to_string(),
            "-i".into(),
            format!("{}/{module}", id.device_id),
            "-u".into(),
            format!("{}/{}/{module}/?api-version=2018-06-30", id.hub_host_name, id.device_id),
            "-P".into(),
            token(module),
            "-V".into(),
            "mqttv311".into(),
        ]
    };
    assert!(state.join("ca.pem").is_file(), "the CA file the docs point to");
    let run = |program: &Path, args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).kill_on_drop(true);
        async move {
            tokio::time::timeout(Duration::from_secs(20), cmd.output()).await.expect("mosquitto client hung").unwrap()
        }
    };

    // A retained publish by `a`, then `b` subscribes and gets it.
    let mut pub_args = args("a");
    pub_args.extend(["-t", "sensors/mosquitto", "-m", "hello", "-q", "1", "-r"].map(String::from));
    let out = run(&mpub, pub_args).await;
    assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
    let mut sub_args = args("b");
    sub_args.extend(["-t", "sensors/#", "-q", "1", "-C", "1", "-W", "15", "-v"].map(String::from));
    let out = run(&msub, sub_args).await;
    assert!(out.status.success(), "mosquitto_sub: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sensors/mosquitto hello");

    // A denied subscription and a wrong password are refused.
    let mut sub_args = args("b");
    sub_args.extend(["-t", "sensors/secret/#", "-C", "1", "-W", "5"].map(String::from));
    let out = run(&msub, sub_args).await;
    // mosquitto_sub 2.x reports a SUBACK failure on stderr and exits 0.
    assert!(
        out.stdout.is_empty() && String::from_utf8_lossy(&out.stderr).contains("denied"),
        "a denied subscription succeeded: {:?} {} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bad = args("a");
    let pw = bad.iter().position(|a| a == "-P").unwrap() + 1;
    bad[pw] = token("b");
    bad.extend(["-t", "sensors/x", "-m", "x", "-q", "1"].map(String::from));
    let out = run(&mpub, bad).await;
    assert!(!out.status.success(), "another module's token was accepted");
}
