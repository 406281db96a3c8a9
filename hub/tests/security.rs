//! Security properties of the hub (issue #11): a module cannot connect as another, publish or
//! subscribe as another, read another's twin responses or method calls, or invoke methods over
//! HTTPS without a valid token of its own; expired tokens are refused; no key or token reaches
//! the log at any verbosity; key files are private. (Closing live connections at token expiry is
//! covered by mqtt_surface.rs.)

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_tls, connack, until, STEP};
use edgemodule_core::invoke::MethodInvocation;
use edgemodule_core::wire::sas;
use edgemodule_core::{ClientOptions, Message, ModuleClient};
use edgemodule_hub::server::{start, HubConfig, RunningHub};
use edgemodule_hub::state::StateDir;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode, TlsConfiguration,
    Transport,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long "nothing arrives" is watched for, after a positive control proved delivery works.
const QUIET: Duration = Duration::from_millis(1500);

fn deployment() -> Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"a": {}, "b": {}, "c": {}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
            "fromA": "FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/b/inputs/fromA\")",
            "fromC": "FROM /messages/modules/c/* INTO BrokeredEndpoint(\"/modules/b/inputs/fromC\")",
            "devices": "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO BrokeredEndpoint(\"/modules/b/inputs/dev\")"
        }}},
        "a": {"properties.desired": {"secret": "for-a-only"}}
    }})
}

struct Fixture {
    dir: tempfile::TempDir,
    running: RunningHub,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        StateDir::init(dir.path(), "localhost").unwrap();
        let file = dir.path().join("deployment.json");
        std::fs::write(&file, deployment().to_string()).unwrap();
        let mut config = HubConfig::new(dir.path(), &file);
        (config.mqtt_port, config.https_port, config.workload, config.control) = (0, 0, false, false);
        let running = start(config).await.unwrap();
        Fixture { dir, running }
    }

    fn state(&self) -> StateDir {
        StateDir::open(self.dir.path()).unwrap()
    }

    fn device(&self) -> String {
        self.running.hub.identity.device_id.clone()
    }

    fn host(&self) -> String {
        self.running.hub.identity.hub_host_name.clone()
    }

    fn key(&self, module: &str) -> Vec<u8> {
        self.running.hub.module_key(module).unwrap().to_vec()
    }

    /// A token for `module`'s audience signed with `signer`'s key.
    fn token_signed_by(&self, module: &str, signer: &str, expiry: u64) -> String {
        sas::module_token(&self.host(), &self.device(), module, &self.key(signer), expiry)
    }

    fn token(&self, module: &str) -> String {
        self.token_signed_by(module, module, sas::unix_now() + 3600)
    }

    fn mqtt(&self, client_id: &str, username_module: &str, password: String) -> (AsyncClient, EventLoop) {
        let username = format!("{}/{}/{username_module}/?api-version=2021-04-12", self.host(), self.device());
        self.mqtt_raw(client_id, &username, password)
    }

    fn mqtt_raw(&self, client_id: &str, username: &str, password: String) -> (AsyncClient, EventLoop) {
        let mut opts = MqttOptions::new(client_id, "localhost", self.running.mqtt_addr.port());
        opts.set_credentials(username, password);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(client_tls(&self.state().ca_pem().unwrap()))));
        AsyncClient::new(opts, 100)
    }

    fn module(&self, module: &str) -> (AsyncClient, EventLoop) {
        self.mqtt(&format!("{}/{module}", self.device()), module, self.token(module))
    }

    async fn client(&self, module: &str) -> ModuleClient {
        let state = self.state();
        let cs = format!(
            "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={};GatewayHostName=localhost",
            self.host(),
            self.device(),
            state.module_key(module).unwrap().unwrap()
        );
        let opts = ClientOptions::default()
            .with_mqtt_port(self.running.mqtt_addr.port())
            .with_https_port(self.running.https_addr.port())
            .with_default_timeout(STEP);
        ModuleClient::from_connection_string(&cs, Some(&state.ca_pem().unwrap()), opts).await.unwrap()
    }
}

/// Every incoming PUBLISH within `for_how_long`; panics if the connection fails.
async fn publishes_within(ev: &mut EventLoop, for_how_long: Duration) -> Vec<rumqttc::Publish> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(for_how_long, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => got.push(p),
                Ok(_) => {}
                Err(e) => panic!("connection failed: {e}"),
            }
        }
    })
    .await;
    got
}

/// True when the connection ends without a PUBACK (or SUBACK) for what was sent.
async fn closed_without_ack(ev: &mut EventLoop) -> bool {
    tokio::time::timeout(STEP, async {
        loop {
            match ev.poll().await {
                Err(_) => return true,
                Ok(Event::Incoming(Packet::PubAck(_))) => return false,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the hub neither acknowledged nor closed")
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(120), f).await.expect("test exceeded 120 s");
}

#[tokio::test]
async fn a_module_cannot_connect_as_another() {
    bounded(async {
        let f = Fixture::start().await;
        let d = f.device();
        let now = sas::unix_now();
        let other_host = sas::module_token("other.azure-devices.net", &d, "a", &f.key("a"), now + 3600);
        let other_device = sas::module_token(&f.host(), "other-device", "a", &f.key("a"), now + 3600);
        let device_level = {
            let sr = edgemodule_core::wire::encoding::encode(&format!("{}/devices/{d}", f.host()));
            let sig = sas::hmac_b64(&f.key("a"), sas::string_to_sign(&sr, now + 3600).as_bytes());
            sas::format_token(&sr, &sig, now + 3600)
        };
        let tampered_expiry = {
            let t = f.token_signed_by("a", "a", now + 60);
            t.replace(&format!("se={}", now + 60), &format!("se={}", now + 86_400))
        };
        let cases: Vec<(&str, (AsyncClient, EventLoop))> = vec![
            ("client id of b, identity and token of a", f.mqtt(&format!("{d}/b"), "a", f.token("a"))),
            ("client id and username of b, token of a", f.mqtt(&format!("{d}/b"), "b", f.token("a"))),
            (
                "b's audience signed with a's key",
                f.mqtt(&format!("{d}/b"), "b", f.token_signed_by("b", "a", now + 3600)),
            ),
            (
                "a's audience signed with b's key",
                f.mqtt(&format!("{d}/a"), "a", f.token_signed_by("a", "b", now + 3600)),
            ),
            ("another hub in the audience", f.mqtt(&format!("{d}/a"), "a", other_host)),
            ("another device in the audience", f.mqtt(&format!("{d}/a"), "a", other_device)),
            ("a device-level audience", f.mqtt(&format!("{d}/a"), "a", device_level)),
            ("expiry edited after signing", f.mqtt(&format!("{d}/a"), "a", tampered_expiry)),
            (
                "expired beyond the clock skew",
                f.mqtt(&format!("{d}/a"), "a", f.token_signed_by("a", "a", now - sas::MAX_CLOCK_SKEW_SECS - 5)),
            ),
            ("a module that is not deployed", f.mqtt(&format!("{d}/z"), "z", f.token_signed_by("a", "a", now + 3600))),
            (
                "another device id as username",
                f.mqtt_raw("other-device/a", &format!("{}/other-device/a/?api-version=1", f.host()), f.token("a")),
            ),
            (
                "a username without api-version",
                f.mqtt_raw(&format!("{d}/a"), &format!("{}/{d}/a/", f.host()), f.token("a")),
            ),
            ("no password", f.mqtt(&format!("{d}/a"), "a", String::new())),
        ];
        for (what, (_c, mut ev)) in cases {
            assert_eq!(connack(&mut ev).await, Ok(ConnectReturnCode::NotAuthorized), "{what}");
        }
        // Positive controls: the right token, and one inside edgeHub's clock skew.
        let (_c, mut ev) = f.module("a");
        assert_eq!(connack(&mut ev).await, Ok(ConnectReturnCode::Success));
        let skewed = f.token_signed_by("b", "b", now - sas::MAX_CLOCK_SKEW_SECS + 60);
        let (_c2, mut ev2) = f.mqtt(&format!("{d}/b"), "b", skewed);
        assert_eq!(connack(&mut ev2).await, Ok(ConnectReturnCode::Success));
    })
    .await
}

#[tokio::test]
async fn publishing_to_another_modules_topics_closes_the_connection_and_routes_nothing() {
    bounded(async {
        let f = Fixture::start().await;
        let d = f.device();
        let (b, mut bev) = f.module("b");
        connack(&mut bev).await.unwrap();
        b.subscribe(format!("devices/{d}/modules/b/inputs/#"), QoS::AtLeastOnce).await.unwrap();
        until(&mut bev, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;

        for spoofed in [
            format!("devices/{d}/modules/a/messages/events/%24.on=x"),
            format!("devices/{d}/modules/a/messages/events/"),
            format!("devices/{d}/messages/events/"),
            "devices/other/modules/c/messages/events/".to_string(),
            format!("devices/{d}/modules/b/inputs/fromA/"),
            format!("devices/{d}/modules/b/inputs/fromC/%24.cmid=a"),
        ] {
            let (c, mut cev) = f.module("c");
            assert_eq!(connack(&mut cev).await, Ok(ConnectReturnCode::Success));
            c.publish(&spoofed, QoS::AtLeastOnce, false, "spoof").await.unwrap();
            assert!(closed_without_ack(&mut cev).await, "c's publish to {spoofed} was acknowledged");
        }
        // A spoofed system property in c's own bag does not make it a's message either.
        let (c, mut cev) = f.module("c");
        connack(&mut cev).await.unwrap();
        c.publish(
            format!("devices/{d}/modules/c/messages/events/%24.cmid=a&%24.cdid=x"),
            QoS::AtLeastOnce,
            false,
            "own",
        )
        .await
        .unwrap();
        until(&mut cev, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;

        // Positive control: a's own message arrives, and it and c's are all that arrive.
        let (a, mut aev) = f.module("a");
        connack(&mut aev).await.unwrap();
        a.publish(format!("devices/{d}/modules/a/messages/events/%24.on=x"), QoS::AtLeastOnce, false, "legit")
            .await
            .unwrap();
        until(&mut aev, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
        let mut got = vec![
            until(&mut bev, |p| match p {
                Packet::Publish(p) => Some(p.clone()),
                _ => None,
            })
            .await,
        ];
        got.extend(publishes_within(&mut bev, QUIET).await);
        let mut seen: Vec<(String, String)> =
            got.iter().map(|p| (p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned())).collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (format!("devices/{d}/modules/b/inputs/fromA/%24.cdid={d}&%24.cmid=a"), "legit".to_string()),
                (format!("devices/{d}/modules/b/inputs/fromC/%24.cdid={d}&%24.cmid=c"), "own".to_string()),
            ],
            "spoofed messages were routed"
        );
    })
    .await
}

#[tokio::test]
async fn a_module_cannot_subscribe_to_or_receive_another_modules_inputs_twin_or_methods() {
    bounded(async {
        let f = Fixture::start().await;
        let d = f.device();
        let (b, mut bev) = f.module("b");
        connack(&mut bev).await.unwrap();
        let refused = [
            format!("devices/{d}/modules/a/inputs/#"),
            format!("devices/{d}/modules/a/inputs/in"),
            format!("devices/{d}/modules/a/#"),
            format!("devices/{d}/modules/+/inputs/#"),
            "devices/+/modules/a/#".to_string(),
            format!("devices/{d}/#"),
            "devices/#".to_string(),
            "#".to_string(),
            "+/+/+/+/inputs/#".to_string(),
            "$iothub/#".to_string(),
            "$iothub/+/res/#".to_string(),
        ];
        for filter in &refused {
            b.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
            let codes = until(&mut bev, |p| match p {
                Packet::SubAck(s) => Some(s.return_codes.clone()),
                _ => None,
            })
            .await;
            assert_eq!(codes, vec![SubscribeReasonCode::Failure], "{filter}");
        }
        // b subscribes to everything it may: its own twin, desired and method topics.
        for filter in ["$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#"] {
            b.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
            let codes = until(&mut bev, |p| match p {
                Packet::SubAck(s) => Some(s.return_codes.clone()),
                _ => None,
            })
            .await;
            assert!(matches!(codes[..], [SubscribeReasonCode::Success(_)]), "{filter}: {codes:?}");
        }

        // a's twin response, desired patch and method call go to a alone.
        let (a, mut aev) = f.module("a");
        connack(&mut aev).await.unwrap();
        for filter in ["$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#"] {
            a.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
            until(&mut aev, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
        }
        a.publish("$iothub/twin/GET/?$rid=7", QoS::AtMostOnce, false, "").await.unwrap();
        let twin = until(&mut aev, |p| match p {
            Packet::Publish(p) if p.topic.starts_with("$iothub/twin/res/200/") => Some(p.payload.clone()),
            _ => None,
        })
        .await;
        assert!(String::from_utf8_lossy(&twin).contains("for-a-only"));
        let hub = f.running.hub.clone();
        hub.patch_desired("a", json!({"secret": "still-a"}).as_object().unwrap()).await.unwrap();
        until(&mut aev, |p| matches!(p, Packet::Publish(p) if p.topic.contains("desired")).then_some(())).await;
        let call = tokio::spawn({
            let hub = hub.clone();
            async move { hub.invoke_method("a", "m", b"{}".to_vec(), Duration::from_secs(5), Duration::ZERO).await }
        });
        let req = until(&mut aev, |p| match p {
            Packet::Publish(p) if p.topic.starts_with("$iothub/methods/POST/m/") => Some(p.topic.clone()),
            _ => None,
        })
        .await;
        let rid = req.rsplit("$rid=").next().unwrap().to_string();
        a.publish(format!("$iothub/methods/res/200/?$rid={rid}"), QoS::AtMostOnce, false, "{}").await.unwrap();
        tokio::spawn(async move { while aev.poll().await.is_ok() {} });
        assert_eq!(call.await.unwrap().unwrap().status, 200);

        let leaked = publishes_within(&mut bev, QUIET).await;
        assert!(leaked.is_empty(), "b received a's traffic: {:?}", leaked.iter().map(|p| &p.topic).collect::<Vec<_>>());
    })
    .await
}

/// One HTTP/1.1 request over TLS to the hub's method endpoint; returns the status code.
async fn https_post(f: &Fixture, path: &str, headers: &[(&str, String)], body: &str) -> u16 {
    let tcp = tokio::net::TcpStream::connect(f.running.https_addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls(&f.state().ca_pem().unwrap()));
    let mut tls = connector.connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut req = format!("POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()));
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut resp)).await.expect("no HTTP response");
    let head = String::from_utf8_lossy(&resp);
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad response {head:?}"))
}

#[tokio::test]
async fn method_calls_over_https_need_the_callers_own_valid_token() {
    bounded(async {
        let f = Fixture::start().await;
        let d = f.device();
        let b = f.client("b").await;
        let mut calls = b.method_receiver(None).unwrap();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = answered.clone();
        tokio::spawn(async move {
            while let Some(c) = calls.recv().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                c.respond(200, Some(&json!({"ok": true}))).await.unwrap();
            }
        });
        let path = format!("/twins/{d}/modules/b/methods?api-version=2018-06-28");
        let body = r#"{"methodName":"ping","payload":{},"responseTimeoutInSeconds":5}"#;
        let now = sas::unix_now();
        let caller = |m: &str| ("x-ms-edge-moduleId", format!("{d}/{m}"));
        let auth = |t: String| ("authorization", t);
        type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16);
        let cases: Vec<Case> = vec![
            ("no token", vec![caller("a")], 401),
            ("not a token", vec![caller("a"), auth("Bearer x".into())], 401),
            ("garbage SAS", vec![caller("a"), auth("SharedAccessSignature sr=x&sig=y&se=1".into())], 401),
            ("a's token claiming to be c", vec![caller("c"), auth(f.token("a"))], 401),
            ("c's audience signed with a's key", vec![caller("c"), auth(f.token_signed_by("c", "a", now + 3600))], 401),
            ("expired", vec![caller("a"), auth(f.token_signed_by("a", "a", now - sas::MAX_CLOCK_SKEW_SECS - 5))], 401),
            ("another device id", vec![("x-ms-edge-moduleId", "other-device/a".to_string()), auth(f.token("a"))], 401),
            ("an undeployed caller", vec![caller("z"), auth(f.token_signed_by("a", "a", now + 3600))], 401),
            ("no x-ms-edge-moduleId", vec![auth(f.token("a"))], 400),
            ("malformed x-ms-edge-moduleId", vec![("x-ms-edge-moduleId", "a".into()), auth(f.token("a"))], 400),
        ];
        for (what, headers, want) in &cases {
            assert_eq!(https_post(&f, &path, headers, body).await, *want, "{what}");
        }
        assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 0, "a refused call reached the module");
        // Positive control: the caller's own valid token.
        assert_eq!(https_post(&f, &path, &[caller("a"), auth(f.token("a"))], body).await, 200);
        assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 1);
    })
    .await
}

#[tokio::test]
async fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::start().await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // A state dir the hub creates is 0700 (an existing directory keeps the mode it has).
    let fresh = f.dir.path().join("fresh");
    StateDir::init(&fresh, "localhost").unwrap().ensure_module_key("m").unwrap();
    assert_eq!(mode(&fresh), 0o700, "state dir");
    for dir in [f.dir.path(), &fresh] {
        for file in ["keys.json", "ca.key", "server.key"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
    }
    // Nothing group- or world-accessible anywhere in the state dir holds a key.
    let keys = std::fs::read_to_string(f.dir.path().join("keys.json")).unwrap();
    let module_keys: Vec<String> = ["a", "b", "c"].iter().map(|m| f.state().module_key(m).unwrap().unwrap()).collect();
    assert!(module_keys.iter().all(|k| keys.contains(k)));
    for entry in std::fs::read_dir(f.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if mode(&path) & 0o077 != 0 && path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for k in &module_keys {
                assert!(!text.contains(k.as_str()), "{} is readable by others and holds a key", path.display());
            }
            assert!(!text.contains("PRIVATE KEY"), "{} is readable by others and holds a private key", path.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Logs: a whole session against the hub binary at the highest verbosity.

struct Running(Child);

impl Running {
    /// Stops the hub as an operator does (SIGTERM) and waits for it to exit, so its log is whole.
    async fn terminate(mut self) {
        // SAFETY: a plain signal to our own child, which has not been waited for yet.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "the hub exited with {status} on SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "the hub did not exit within 10 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hub_cmd(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgemodule-hub"));
    c.arg("--state-dir").arg(state);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_token_appears_in_the_log_at_any_verbosity() {
    bounded(async {
        for (flag, filter) in [("-vv", Some("trace")), ("-vv", None), ("-v", None)] {
            log_session(flag, filter).await;
        }
    })
    .await
}

async fn log_session(flag: &str, filter: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(hub_cmd(&state).args(["init", "--hostname", "localhost"]).output().unwrap().status.success());
    let deployment = dir.path().join("deployment.json");
    std::fs::write(&deployment, deployment_json()).unwrap();
    let log_path = dir.path().join("hub.log");
    let mut cmd = hub_cmd(&state);
    cmd.arg(flag)
        .args(["start", "--deployment", deployment.to_str().unwrap(), "--mqtt-port", "0", "--https-port", "0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .env_remove("EDGEMODULE_LOG")
        .env_remove("RUST_LOG");
    if let Some(filter) = filter {
        cmd.env("EDGEMODULE_LOG", filter);
    }
    let hub = Running(cmd.spawn().unwrap());
    let status: Value = loop {
        let o = hub_cmd(&state).arg("status").output().unwrap();
        if o.status.success() {
            break serde_json::from_slice(&o.stdout).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let port = |k: &str| -> u16 { status[k].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap() };
    let (mqtt_port, https_port) = (port("mqtt"), port("https"));

    let st = StateDir::open(&state).unwrap();
    let (host, device) = (st.identity().hub_host_name.clone(), st.identity().device_id.clone());
    let ca = st.ca_pem().unwrap();
    let key_b64 = |m: &str| st.module_key(m).unwrap().unwrap();
    let mut secrets: Vec<String> = ["a", "b", "c"].iter().map(|m| key_b64(m)).collect();
    let opts = ClientOptions::default()
        .with_mqtt_port(mqtt_port)
        .with_https_port(https_port)
        .with_default_timeout(STEP)
        .with_connect_timeout(STEP);
    let cs = |m: &str| {
        format!(
            "HostName={host};DeviceId={device};ModuleId={m};SharedAccessKey={};GatewayHostName=localhost",
            key_b64(m)
        )
    };

    // Good connects, sends through a route, twin reads and patches, a method call.
    let a = ModuleClient::from_connection_string(&cs("a"), Some(&ca), opts.clone()).await.unwrap();
    let b = ModuleClient::from_connection_string(&cs("b"), Some(&ca), opts.clone()).await.unwrap();
    let mut methods = b.method_receiver(None).unwrap();
    tokio::spawn(async move {
        while let Some(c) = methods.recv().await {
            let _ = c.respond(200, Some(&json!({"pong": 1}))).await;
        }
    });
    for i in 0..5 {
        a.send_to_output("o", Message::new(format!("m{i}")).with_property("k", "v")).await.unwrap();
    }
    for _ in 0..5 {
        b.recv(Some(STEP)).await.unwrap().complete().unwrap();
    }
    b.get_twin(None).await.unwrap();
    b.update_reported(&json!({"r": 1}), None).await.unwrap();
    let patched = hub_cmd(&state).args(["twin", "patch-desired", "--module", "b", r#"{"d": 2}"#]).output().unwrap();
    assert!(patched.status.success());
    let result = a.invoke_method(&device, Some("b"), &MethodInvocation::new("ping", json!({"n": 1}))).await.unwrap();
    assert_eq!(result.status, 200);

    // Bad connects: a token signed with the wrong key, over MQTT and over HTTPS.
    let wrong =
        sas::module_token(&host, &device, "c", &sas::decode_key(&key_b64("a")).unwrap(), sas::unix_now() + 3600);
    secrets.push(wrong.clone());
    let wrong_cs =
        format!("HostName={host};DeviceId={device};ModuleId=c;SharedAccessSignature={wrong};GatewayHostName=localhost");
    let refused = ModuleClient::from_connection_string(&wrong_cs, Some(&ca), opts.clone()).await;
    let err = refused.expect_err("a wrong token was accepted");
    assert_eq!(err.kind(), edgemodule_core::ErrorKind::Unauthorized, "{err}");
    let c_token =
        sas::module_token(&host, &device, "c", &sas::decode_key(&key_b64("c")).unwrap(), sas::unix_now() + 3600);
    secrets.push(c_token.clone());
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https_port)).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_tls(&ca))
        .connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let body = r#"{"methodName":"ping","payload":{}}"#;
    let req = format!(
        "POST /twins/{device}/modules/b/methods HTTP/1.1\r\nhost: localhost\r\nx-ms-edge-moduleId: {device}/a\r\n\
         authorization: {c_token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut resp)).await;
    assert!(String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 401"), "{}", String::from_utf8_lossy(&resp));
    a.close().await.unwrap();
    b.close().await.unwrap();
    hub.terminate().await;

    let log = std::fs::read_to_string(&log_path).unwrap();
    let what = format!("{flag} EDGEMODULE_LOG={filter:?}");
    assert!(log.contains("connection refused"), "{what}: the session was not logged:\n{log}");
    if flag == "-vv" {
        assert!(log.contains("DEBUG"), "{what}: no debug output");
    }
    if filter == Some("trace") {
        assert!(log.contains("TRACE"), "{what}: no trace output");
    }
    // The private keys' PEM bodies, the module keys (plain and percent-encoded) and every token.
    for file in ["ca.key", "server.key"] {
        let pem = std::fs::read_to_string(state.join(file)).unwrap();
        secrets.extend(pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 16).map(str::to_string));
    }
    let encoded: Vec<String> = secrets.iter().map(|s| edgemodule_core::wire::encoding::encode(s)).collect();
    secrets.extend(encoded);
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "{what}: a secret ({}…) is in the log", &s[..8.min(s.len())]);
    }
    for marker in ["SharedAccessSignature", "sig=", "sig%3D", "SharedAccessKey="] {
        let at = log.find(marker);
        assert!(
            at.is_none(),
            "{what}: '{marker}' is in the log: {}",
            at.map(|i| &log[i.saturating_sub(80)..(i + 80).min(log.len())]).unwrap_or("")
        );
    }
}

fn deployment_json() -> String {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"a": {}, "b": {}, "c": {}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
            "ab": "FROM /messages/modules/a/outputs/o INTO BrokeredEndpoint(\"/modules/b/inputs/in\")"
        }}},
        "b": {"properties.desired": {"d": 1}}
    }})
    .to_string()
}
