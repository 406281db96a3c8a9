//! Property-based fuzzing of the hub's MQTT packet handling (issue #11). Arbitrary bytes,
//! arbitrary bytes after a valid CONNECT, and valid packet sequences with byte-level mutations
//! are fed to a running hub, both straight into its connection handler (fast, many cases) and
//! over real TLS connections to its listener. The hub must not panic, every connection must end
//! once the peer closes, and a well-behaved module connected throughout keeps being served.
//!
//! Default case counts are small; `PROPTEST_CASES=N` runs longer (RELIABILITY.md).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use edgemodule_core::wire::{framing, sas};
use edgemodule_core::{ClientOptions, Message, ModuleClient};
use edgemodule_hub::server::{start, HubConfig, RunningHub};
use edgemodule_hub::state::StateDir;
use proptest::prelude::*;
use rumqttc::mqttbytes::v4::{Connect, Packet, PubAck, Publish, Subscribe, SubscribeFilter, Unsubscribe};
use rumqttc::mqttbytes::QoS;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(default: u32) -> ProptestConfig {
    let mut c = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c
}

/// How long one fuzzed connection may take to end after the peer closed its side.
const CASE_BOUND: Duration = Duration::from_secs(15);

static PANICS: AtomicUsize = AtomicUsize::new(0);
/// Bytes the hub sent back over all cases (a sanity check that cases get past CONNECT).
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

struct Fixture {
    rt: tokio::runtime::Runtime,
    running: RunningHub,
    _dir: tempfile::TempDir,
    ca_pem: String,
    /// A module connected for the whole run, checked after every case.
    watcher: ModuleClient,
    sender: ModuleClient,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Panics inside hub tasks are caught by tokio; count them so the tests can fail on any.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
        if std::env::var_os("FUZZ_STATS").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter("debug").with_writer(std::io::stderr).try_init();
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        StateDir::init(dir.path(), "localhost").unwrap();
        let deployment = json!({"modulesContent": {
            "$edgeAgent": {"properties.desired": {"modules": {"a": {}, "watcher": {}, "sender": {}}}},
            "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
                "fuzzed": "FROM /messages/modules/a/* WHERE $body.t > 1 OR k = 'v' INTO BrokeredEndpoint(\"/modules/a/inputs/in\")",
                "all": "FROM /messages/modules/a/* INTO $upstream",
                "watch": "FROM /messages/modules/sender/outputs/o INTO BrokeredEndpoint(\"/modules/watcher/inputs/w\")"
            }}}
        }});
        let file = dir.path().join("deployment.json");
        std::fs::write(&file, deployment.to_string()).unwrap();
        let mut config = HubConfig::new(dir.path(), &file);
        (config.mqtt_port, config.https_port, config.workload, config.control) = (0, 0, false, false);
        let running = rt.block_on(start(config)).unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let ca_pem = state.ca_pem().unwrap();
        let id = state.identity().clone();
        let connection_strings = ["a", "watcher", "sender"]
            .iter()
            .map(|m| {
                let key = state.module_key(m).unwrap().unwrap();
                let cs = format!(
                    "HostName={};DeviceId={};ModuleId={m};SharedAccessKey={key};GatewayHostName=localhost",
                    id.hub_host_name, id.device_id
                );
                (m.to_string(), cs)
            })
            .collect::<std::collections::HashMap<_, _>>();
        let options = ClientOptions::default()
            .with_mqtt_port(running.mqtt_addr.port())
            .with_default_timeout(Duration::from_secs(10))
            .with_connect_timeout(Duration::from_secs(10));
        let connect = |m: &str| {
            ModuleClient::from_connection_string(&connection_strings[m], Some(&ca_pem), options.clone())
        };
        let (watcher, sender) = rt.block_on(async { (connect("watcher").await.unwrap(), connect("sender").await.unwrap()) });
        Fixture { rt, running, _dir: dir, ca_pem, watcher, sender }
    })
}

impl Fixture {
    fn hub(&self) -> &Arc<edgemodule_hub::hub::Hub> {
        &self.running.hub
    }

    /// A valid CONNECT for module `a`, optionally with a broken credential.
    fn connect_packet(&self, clean: bool, keep_alive: u16) -> Packet {
        let hub = self.hub();
        let (host, device) = (&hub.identity.hub_host_name, &hub.identity.device_id);
        let token = sas::module_token(host, device, "a", hub.module_key("a").unwrap(), sas::unix_now() + 3600);
        let mut c = Connect::new(format!("{device}/a"));
        c.clean_session = clean;
        c.keep_alive = keep_alive;
        c.set_login(format!("{host}/{device}/a/?api-version=2021-04-12"), token);
        Packet::Connect(c)
    }

    /// The well-behaved modules are still served: a routed message arrives and the twin answers.
    fn assert_still_serving(&self, case: &str) {
        assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the hub panicked (see the panic message above)");
        self.rt.block_on(async {
            let marker = format!("alive-{case}");
            self.sender.send_to_output("o", Message::new(marker.clone())).await.expect("send while fuzzing");
            loop {
                let m = self.watcher.recv(Some(Duration::from_secs(10))).await.expect("watcher starved while fuzzing");
                m.complete().unwrap();
                if m.message().body().as_ref() == marker.as_bytes() {
                    break;
                }
            }
            self.watcher.get_twin(None).await.expect("twin while fuzzing");
        });
    }
}

fn own_events(device: &str) -> String {
    format!("devices/{device}/modules/a/messages/events/")
}

/// Packets a module might send after CONNECT, legal and not.
fn packet(device: String) -> impl Strategy<Value = Packet> {
    let qos = prop_oneof![3 => Just(QoS::AtMostOnce), 3 => Just(QoS::AtLeastOnce), 1 => Just(QoS::ExactlyOnce)];
    let ev = own_events(&device);
    let topic = prop_oneof![
        6 => "[a-zA-Z0-9%=&.$]{0,24}".prop_map(move |bag| format!("{ev}{bag}")),
        1 => Just(format!("devices/{device}/modules/watcher/messages/events/")),
        1 => Just(format!("devices/{device}/messages/events/")),
        2 => "[0-9a-z]{0,6}".prop_map(|rid| format!("$iothub/twin/GET/?$rid={rid}")),
        2 => "[0-9a-z]{0,6}".prop_map(|rid| format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")),
        2 => ("[0-9a-z]{0,4}", "[0-9a-z\\-]{0,8}").prop_map(|(s, rid)| format!("$iothub/methods/res/{s}/?$rid={rid}")),
        1 => "[^\u{0}#+]{1,32}",
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"t":5,"x":{"y":[1,2]}}"#.to_vec()),
        Just(br#"{"a.b":1}"#.to_vec()),
    ];
    let publish = (topic, qos.clone(), 1u16..=u16::MAX, body, any::<bool>()).prop_map(|(t, q, pkid, body, retain)| {
        let mut p = Publish::new(t, q, body);
        p.retain = retain;
        if q != QoS::AtMostOnce {
            p.pkid = pkid;
        }
        Packet::Publish(p)
    });
    let dev = device.clone();
    let filter = prop_oneof![
        Just(format!("devices/{dev}/modules/a/inputs/#")),
        Just(format!("devices/{dev}/modules/a/#")),
        Just(format!("devices/{dev}/modules/watcher/inputs/#")),
        Just("$iothub/twin/res/#".to_string()),
        Just("$iothub/methods/POST/#".to_string()),
        Just("#".to_string()),
        "[^\u{0}]{1,24}",
    ];
    let subscribe = (1u16..=u16::MAX, proptest::collection::vec((filter.clone(), qos), 1..4)).prop_map(|(pkid, fs)| {
        Packet::Subscribe(Subscribe {
            pkid,
            filters: fs.into_iter().map(|(p, q)| SubscribeFilter::new(p, q)).collect(),
        })
    });
    let unsubscribe = (1u16..=u16::MAX, proptest::collection::vec(filter, 1..3))
        .prop_map(|(pkid, topics)| Packet::Unsubscribe(Unsubscribe { pkid, topics }));
    prop_oneof![
        6 => publish,
        2 => subscribe,
        1 => unsubscribe,
        1 => any::<u16>().prop_map(|p| Packet::PubAck(PubAck::new(p))),
        1 => Just(Packet::PingReq),
        1 => Just(Packet::PingResp),
        1 => Just(Packet::Disconnect),
        1 => Just(Packet::Connect(Connect::new("again"))),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Remove),
            any::<usize>().prop_map(Mutation::Truncate),
        ],
        0..4,
    )
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        let n = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, x) if !bytes.is_empty() => bytes[i % n] ^= x,
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Remove(i) if !bytes.is_empty() => {
                bytes.remove(i % n);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            _ => {}
        }
    }
}

/// What one case sends: where a valid CONNECT leads, the (possibly mutated) bytes after it.
#[derive(Debug, Clone)]
struct Input {
    connect: Option<(bool, u16)>,
    after: Vec<u8>,
}

fn input() -> impl Strategy<Value = Input> {
    let device = fixture().hub().identity.device_id.clone();
    let sequence = (proptest::collection::vec(packet(device), 0..12), mutations()).prop_map(|(packets, ms)| {
        let mut out = BytesMut::new();
        for p in &packets {
            framing::encode(p, &mut out).unwrap();
        }
        let mut bytes = out.to_vec();
        mutate(&mut bytes, &ms);
        bytes
    });
    let after = prop_oneof![3 => sequence, 1 => proptest::collection::vec(any::<u8>(), 0..256)];
    (proptest::option::weighted(0.85, (any::<bool>(), prop_oneof![Just(0u16), Just(30), 1u16..5])), after)
        .prop_map(|(connect, after)| Input { connect, after })
}

impl Input {
    fn bytes(&self, f: &Fixture) -> Vec<u8> {
        let mut out = BytesMut::new();
        if let Some((clean, keep_alive)) = self.connect {
            framing::encode(&f.connect_packet(clean, keep_alive), &mut out).unwrap();
        }
        out.extend_from_slice(&self.after);
        out.to_vec()
    }
}

/// Writes `bytes`, closes our sending side, and reads until the hub closes; true if it did in time.
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S, bytes: &[u8]) -> bool {
    let (mut r, mut w) = tokio::io::split(stream);
    let reader = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    RECEIVED.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    };
    let writer = async {
        // The hub may close first (malformed input): write errors are expected.
        let _ = w.write_all(bytes).await;
        let _ = w.shutdown().await;
    };
    tokio::time::timeout(CASE_BOUND, async { tokio::join!(reader, writer) }).await.is_ok()
}

proptest! {
    #![proptest_config(config(256))]

    /// Straight into the connection handler over an in-memory pipe: many cases per second.
    #[test]
    fn the_connection_handler_survives_hostile_input(input in input()) {
        let f = fixture();
        let bytes = input.bytes(f);
        let finished = f.rt.block_on(async {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            let serve = tokio::spawn(edgemodule_hub::mqtt::connection::serve(f.hub().clone(), theirs, "fuzz".into()));
            let talked = exchange(ours, &bytes).await;
            let ended = tokio::time::timeout(CASE_BOUND, serve).await;
            talked && matches!(ended, Ok(Ok(())))
        });
        prop_assert!(finished, "the connection did not end (or its task panicked) after the peer closed");
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the hub panicked");
        if std::env::var_os("FUZZ_STATS").is_some() {
            eprintln!("case: {} bytes in, {} bytes out so far", bytes.len(), RECEIVED.load(Ordering::Relaxed));
        }
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Over real TLS connections to the listener, with a well-behaved module checked after each case.
    #[test]
    fn the_tls_listener_survives_hostile_input(input in input()) {
        let f = fixture();
        let bytes = input.bytes(f);
        let finished = f.rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(f.running.mqtt_addr).await.unwrap();
            let tls = tls_connector(&f.ca_pem)
                .connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            exchange(tls, &bytes).await
        });
        prop_assert!(finished, "the hub kept a closed connection open");
        f.assert_still_serving(&format!("{:x}", bytes.len()));
    }
}

fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Raw bytes before any TLS: the listener drops them and keeps accepting.
#[test]
fn plain_bytes_on_the_tls_port_are_dropped() {
    let f = fixture();
    f.rt.block_on(async {
        for junk in [
            &b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            &[0x16, 3, 1, 0xff, 0xff][..],
            b"",
        ] {
            let tcp = tokio::net::TcpStream::connect(f.running.mqtt_addr).await.unwrap();
            assert!(exchange(tcp, junk).await, "a non-TLS connection stayed open");
        }
    });
    f.assert_still_serving("plain");
}

/// Many half-open connections at once do not starve a well-behaved module.
#[test]
fn many_idle_connections_do_not_block_others() {
    let f = fixture();
    let idle: Vec<_> = f.rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..64 {
            v.push(tokio::net::TcpStream::connect(f.running.mqtt_addr).await.unwrap());
        }
        v
    });
    f.assert_still_serving("idle");
    drop(idle);
    // The listener still takes TLS connections afterwards.
    f.rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(f.running.mqtt_addr).await.unwrap();
        let tls = tls_connector(&f.ca_pem)
            .connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut out = BytesMut::new();
        framing::encode(&f.connect_packet(true, 30), &mut out).unwrap();
        let (mut r, mut w) = tokio::io::split(tls);
        w.write_all(&out).await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), r.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(buf, [0x20, 2, 0, 0], "CONNACK accepted");
    });
}

/// Found by `the_connection_handler_survives_hostile_input`: packets that arrive in the same read
/// as CONNECT (MQTT lets a client send them without waiting for CONNACK) must be answered without
/// the client having to send anything else.
#[test]
fn packets_pipelined_with_connect_are_answered() {
    let f = fixture();
    f.rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(f.running.mqtt_addr).await.unwrap();
        let tls = tls_connector(&f.ca_pem)
            .connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut out = BytesMut::new();
        framing::encode(&f.connect_packet(true, 60), &mut out).unwrap();
        framing::encode(&Packet::PingReq, &mut out).unwrap();
        let (mut r, mut w) = tokio::io::split(tls);
        w.write_all(&out).await.unwrap();
        w.flush().await.unwrap();
        let mut got = BytesMut::new();
        let answered = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                while let Some(p) = framing::decode(&mut got, 1 << 20).unwrap() {
                    if p == Packet::PingResp {
                        return;
                    }
                }
                assert_ne!(r.read_buf(&mut got).await.unwrap(), 0, "closed");
            }
        })
        .await;
        assert!(answered.is_ok(), "no PINGRESP for a PINGREQ sent right behind CONNECT");
    });
}
