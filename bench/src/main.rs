//! `edgemodule-bench`: measures, in one run against one `edgemodule-hub` process, the core
//! client beside a raw rumqttc client doing the same work (send sequential and pipelined,
//! receive, round trip), the hub's route throughput and latency beside mosquitto, and the
//! bindings (C, Python, Node) beside the official Azure IoT SDKs (child processes running
//! `bench/lang/*`). Prints markdown; `--write BENCHMARKS.md` writes the file.
//!
//! Build and run: `cargo build --release -p edgemodule-hub -p edgemodule-bench -p edgemodule-ffi &&
//! target/release/edgemodule-bench [--messages N] [--runs R] [--write BENCHMARKS.md]`.
//! See `--help`.

mod lang;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemodule_core::wire::sas;
use edgemodule_core::{ClientOptions, Message, ModuleClient, Transport as CoreTransport};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};

const BODY: [u8; 256] = [b'x'; 256];

struct HubProcess {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    https_port: u16,
    amqp_port: u16,
    device: String,
    hub_host: String,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hub_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.with_file_name("edgemodule-hub")
}

/// Modules a and b for the core-vs-rumqttc and hub flows, `feeder` to pre-load receive
/// workloads, and one module per (binding row, workload, run) in `extra`: a `c` module gets a
/// route from `feeder`'s output named after it to its input `in`, a `d` module a route from its
/// output `loop` to its own input `loop`.
fn deployment(extra: &[(String, char)]) -> Value {
    let mut modules = serde_json::Map::new();
    let mut routes = serde_json::Map::new();
    for m in ["a", "b", "feeder"] {
        modules.insert(m.into(), json!({}));
    }
    routes.insert(
        "route".into(),
        json!("FROM /messages/modules/a/outputs/route INTO BrokeredEndpoint(\"/modules/b/inputs/in\")"),
    );
    routes.insert(
        "loop".into(),
        json!("FROM /messages/modules/a/outputs/loop INTO BrokeredEndpoint(\"/modules/a/inputs/loop\")"),
    );
    for (m, w) in extra {
        modules.insert(m.clone(), json!({}));
        match w {
            'c' => routes.insert(
                format!("feed-{m}"),
                json!(format!(
                    "FROM /messages/modules/feeder/outputs/{m} INTO BrokeredEndpoint(\"/modules/{m}/inputs/in\")"
                )),
            ),
            'd' => routes.insert(
                format!("loop-{m}"),
                json!(format!(
                    "FROM /messages/modules/{m}/outputs/loop INTO BrokeredEndpoint(\"/modules/{m}/inputs/loop\")"
                )),
            ),
            _ => None,
        };
    }
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": modules}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": routes}}
    }})
}

/// Fails with a clear message when 127.0.0.1:`port` cannot be bound.
fn require_free(port: u16) {
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
        eprintln!(
            "edgemodule-bench: cannot use 127.0.0.1:{port} ({e}). The official SDKs can only connect to \
             ports 8883 (MQTT) and 443 (methods), so the bench starts its hub there: stop whatever holds \
             the port (another edgemodule-hub, the compat tests), or run with `--port 0` (ephemeral ports, \
             no official SDK rows)."
        );
        std::process::exit(2);
    }
}

async fn start_hub(mqtt_port: u16, https_port: u16, extra: &[(String, char)]) -> HubProcess {
    let bin = hub_binary();
    assert!(bin.exists(), "{} not found: build it with `cargo build --release -p edgemodule-hub`", bin.display());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_string();
    let ok = Command::new(&bin)
        .args(["--state-dir", &state, "init", "--hostname", "localhost"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let file = dir.path().join("deployment.json");
    std::fs::write(&file, deployment(extra).to_string()).unwrap();
    let mut child = Command::new(&bin)
        .args([
            "--state-dir",
            &state,
            "start",
            "--deployment",
            file.to_str().unwrap(),
            "--mqtt-port",
            &mqtt_port.to_string(),
            "--https-port",
            &https_port.to_string(),
            // Only the core connects over AMQP here, told the port: an ephemeral one never
            // competes with 5671.
            "--amqp-port",
            "0",
        ])
        .spawn()
        .unwrap();
    let socket = dir.path().join("control.sock");
    for _ in 0..200 {
        if let Ok(status) = edgemodule_hub::control::request(&socket, &json!({"cmd": "status"})).await {
            let port_of = |k: &str| status[k].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
            let (port, https_port, amqp_port) = (port_of("mqtt"), port_of("https"), port_of("amqp"));
            let device = status["device"].as_str().unwrap().to_string();
            let hub_host = status["hub"].as_str().unwrap().to_string();
            return HubProcess { child, dir, port, https_port, amqp_port, device, hub_host };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the hub exited at start ({status})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the hub did not start");
}

impl HubProcess {
    fn state(&self) -> &Path {
        self.dir.path()
    }
    /// `edgemodule-hub --state-dir S connection-string --module M`, as a user would get it.
    fn connection_string(&self, module: &str) -> Result<String, String> {
        let out = Command::new(hub_binary())
            .arg("--state-dir")
            .arg(self.state())
            .args(["connection-string", "--module", module])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "connection-string --module {module}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
    fn ca(&self) -> String {
        std::fs::read_to_string(self.state().join("ca.pem")).unwrap()
    }
    fn key(&self, module: &str) -> String {
        let keys: Value =
            serde_json::from_str(&std::fs::read_to_string(self.state().join("keys.json")).unwrap()).unwrap();
        keys["modules"][module].as_str().unwrap().to_string()
    }
    async fn core(&self, module: &str) -> ModuleClient {
        self.core_over(module, CoreTransport::Mqtt).await
    }
    /// The core client over `transport` (the WebSocket transports go to the hub's HTTPS port).
    async fn core_over(&self, module: &str, transport: CoreTransport) -> ModuleClient {
        let cs = format!(
            "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={};GatewayHostName=localhost",
            self.hub_host,
            self.device,
            self.key(module)
        );
        let opts = ClientOptions::default()
            .with_mqtt_port(self.port)
            .with_https_port(self.https_port)
            .with_amqp_port(self.amqp_port)
            .with_transport(transport)
            .with_max_in_flight(100);
        ModuleClient::from_connection_string(&cs, Some(&self.ca()), opts).await.unwrap()
    }
    /// A raw rumqttc client authenticated as `module`, TCP_NODELAY on, `inflight` window.
    async fn raw(&self, module: &str, inflight: u16) -> (AsyncClient, EventLoop) {
        let key = sas::decode_key(&self.key(module)).unwrap();
        let token = sas::module_token(&self.hub_host, &self.device, module, &key, sas::unix_now() + 3600);
        let user = format!("{}/{}/{module}/?api-version=2021-04-12", self.hub_host, self.device);
        connect_raw(self.port, &format!("{}/{module}", self.device), Some((user, token)), &self.ca(), inflight).await
    }
    fn topic(&self, module: &str, output: &str) -> String {
        format!("devices/{}/modules/{module}/messages/events/%24.on={output}", self.device)
    }
}

/// A raw rumqttc client over TLS trusting only `ca`, TCP_NODELAY on, clean session 0.
async fn connect_raw(
    port: u16,
    client_id: &str,
    credentials: Option<(String, String)>,
    ca: &str,
    inflight: u16,
) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(client_id, "localhost", port);
    if let Some((user, password)) = credentials {
        opts.set_credentials(user, password);
    }
    opts.set_clean_session(false);
    opts.set_inflight(inflight);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    let (client, mut ev) = AsyncClient::new(opts, 1000);
    ev.set_network_options(net);
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = ev.poll().await.unwrap() {
            return (client, ev);
        }
    }
}

/// Waits for `n` packets matching `is`, polling the event loop.
async fn count(ev: &mut EventLoop, n: usize, is: impl Fn(&Packet) -> bool) {
    let mut seen = 0;
    while seen < n {
        if let Event::Incoming(p) = ev.poll().await.unwrap() {
            if is(&p) {
                seen += 1;
            }
        }
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn core_send_seq(hub: &HubProcess, n: usize, transport: CoreTransport) -> f64 {
    let c = hub.core_over("a", transport).await;
    let t = Instant::now();
    for _ in 0..n {
        c.send_to_output("sink", Message::new(&BODY[..])).await.unwrap();
    }
    let r = rate(n, t.elapsed());
    c.close().await.unwrap();
    r
}

async fn raw_send(hub: &HubProcess, n: usize, window: u16) -> f64 {
    let (c, mut ev) = hub.raw("a", window).await;
    let topic = hub.topic("a", "sink");
    let t = Instant::now();
    let publisher = tokio::spawn(async move {
        for _ in 0..n {
            c.publish(topic.clone(), QoS::AtLeastOnce, false, BODY.to_vec()).await.unwrap();
        }
        c
    });
    count(&mut ev, n, |p| matches!(p, Packet::PubAck(_))).await;
    let r = rate(n, t.elapsed());
    let c = publisher.await.unwrap();
    let _ = c.disconnect().await;
    r
}

async fn core_send_pipelined(hub: &HubProcess, n: usize, window: usize, transport: CoreTransport) -> f64 {
    let c = hub.core_over("a", transport).await;
    let t = Instant::now();
    let mut in_flight: FuturesUnordered<_> = FuturesUnordered::new();
    for _ in 0..n {
        if in_flight.len() >= window {
            let done: edgemodule_core::Result<()> = in_flight.next().await.unwrap();
            done.unwrap();
        }
        let c = c.clone();
        in_flight.push(async move { c.send_to_output("sink", Message::new(&BODY[..])).await });
    }
    while let Some(r) = in_flight.next().await {
        r.unwrap();
    }
    let r = rate(n, t.elapsed());
    c.close().await.unwrap();
    r
}

/// Loads `n` messages onto b's input through the route, acknowledged by the hub.
async fn preload_b(hub: &HubProcess, n: usize) {
    preload(hub, "a", "route", n).await
}

/// Publishes `n` messages as `module` on `output` (window 100), all acknowledged by the hub.
async fn preload(hub: &HubProcess, module: &str, output: &str, n: usize) {
    let (c, mut ev) = hub.raw(module, 100).await;
    let topic = hub.topic(module, output);
    let publisher = tokio::spawn(async move {
        for _ in 0..n {
            c.publish(topic.clone(), QoS::AtLeastOnce, false, BODY.to_vec()).await.unwrap();
        }
        c
    });
    count(&mut ev, n, |p| matches!(p, Packet::PubAck(_))).await;
    let _ = publisher.await.unwrap().disconnect().await;
}

async fn core_receive(hub: &HubProcess, n: usize) -> f64 {
    preload_b(hub, n).await;
    let c = hub.core("b").await;
    let mut input = c.input_receiver("in").unwrap();
    let first = input.recv().await.unwrap();
    let t = Instant::now();
    first.complete().unwrap();
    for _ in 1..n {
        input.recv().await.unwrap().complete().unwrap();
    }
    let r = rate(n - 1, t.elapsed());
    c.close().await.unwrap();
    r
}

async fn raw_receive(hub: &HubProcess, n: usize) -> f64 {
    preload_b(hub, n).await;
    let (c, mut ev) = hub.raw("b", 100).await;
    c.subscribe(format!("devices/{}/modules/b/inputs/#", hub.device), QoS::AtLeastOnce).await.unwrap();
    count(&mut ev, 1, |p| matches!(p, Packet::Publish(_))).await;
    let t = Instant::now();
    count(&mut ev, n - 1, |p| matches!(p, Packet::Publish(_))).await;
    let r = rate(n - 1, t.elapsed());
    let _ = c.disconnect().await;
    r
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn core_round_trip(hub: &HubProcess, n: usize, transport: CoreTransport) -> (Duration, Duration) {
    let c = hub.core_over("a", transport).await;
    let mut looped = c.input_receiver("loop").unwrap();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.send_to_output("loop", Message::new(&BODY[..])).await.unwrap();
        looped.recv().await.unwrap().complete().unwrap();
        samples.push(t.elapsed());
    }
    c.close().await.unwrap();
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

async fn raw_round_trip(hub: &HubProcess, n: usize) -> (Duration, Duration) {
    let (c, mut ev) = hub.raw("a", 10).await;
    c.subscribe(format!("devices/{}/modules/a/inputs/#", hub.device), QoS::AtLeastOnce).await.unwrap();
    count(&mut ev, 1, |p| matches!(p, Packet::SubAck(_))).await;
    let topic = hub.topic("a", "loop");
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.publish(topic.clone(), QoS::AtLeastOnce, false, BODY.to_vec()).await.unwrap();
        count(&mut ev, 1, |p| matches!(p, Packet::Publish(_))).await;
        samples.push(t.elapsed());
    }
    let _ = c.disconnect().await;
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// One publisher → one subscriber flow of `n` 256 B QoS 1 messages (window 100): returns
/// end-to-end msg/s and the p50/p99 of publish → delivery latency (timestamps ride in the
/// payload). `per_ms` paces the publisher (messages per millisecond) for latency under load.
struct Flow {
    publisher: (AsyncClient, EventLoop),
    topic: String,
    subscriber: (AsyncClient, EventLoop),
    filter: String,
}

async fn run_flow(flow: Flow, n: usize, per_ms: Option<usize>) -> (f64, Duration, Duration) {
    let Flow { publisher: (a, mut aev), topic, subscriber: (b, mut bev), filter } = flow;
    b.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    count(&mut bev, 1, |p| matches!(p, Packet::SubAck(_))).await;
    let epoch = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            if let Event::Incoming(Packet::Publish(p)) = bev.poll().await.unwrap() {
                let sent = u64::from_le_bytes(p.payload[..8].try_into().unwrap());
                lat.push(epoch.elapsed().saturating_sub(Duration::from_nanos(sent)));
            }
        }
        (lat, epoch.elapsed(), b)
    });
    let start = epoch.elapsed();
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for i in 0..n {
            if per_ms.is_some_and(|k| i % k == 0) {
                tick.tick().await;
            }
            let mut body = BODY.to_vec();
            body[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
            a.publish(topic.clone(), QoS::AtLeastOnce, false, body).await.unwrap();
        }
        a
    });
    count(&mut aev, n, |p| matches!(p, Packet::PubAck(_))).await;
    let (mut lat, end, b) = receiver.await.unwrap();
    let _ = publisher.await.unwrap().disconnect().await;
    let _ = b.disconnect().await;
    lat.sort();
    (rate(n, end - start), percentile(&lat, 0.5), percentile(&lat, 0.99))
}

/// Module a → route → module b through the hub.
async fn hub_flow(hub: &HubProcess) -> Flow {
    Flow {
        subscriber: hub.raw("b", 100).await,
        filter: format!("devices/{}/modules/b/inputs/#", hub.device),
        publisher: hub.raw("a", 100).await,
        topic: hub.topic("a", "route"),
    }
}

/// mosquitto on the same box, TLS with the hub's certificate, plain pub → sub.
struct Mosquitto {
    child: Child,
    port: u16,
    ca: String,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_mosquitto(hub: &HubProcess) -> Option<Mosquitto> {
    let dir = tempfile::tempdir().ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let conf = format!(
        "listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\n\
         max_queued_messages 0\nmax_inflight_messages 0\nset_tcp_nodelay true\npersistence false\nuser root\n",
        ca = hub.state().join("ca.pem").display(),
        cert = hub.state().join("server.pem").display(),
        key = hub.state().join("server.key").display(),
    );
    std::fs::write(dir.path().join("bench.conf"), conf).ok()?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.path().join("bench.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut m = Mosquitto { child, port, ca: hub.ca(), _dir: dir };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(m);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = m.child.kill();
    None
}

async fn mosquitto_flow(m: &Mosquitto) -> Flow {
    Flow {
        subscriber: connect_raw(m.port, "bench-sub", None, &m.ca, 100).await,
        filter: "bench/flow".into(),
        publisher: connect_raw(m.port, "bench-pub", None, &m.ca, 100).await,
        topic: "bench/flow".into(),
    }
}

/// A round trip's p50 and p99.
type Percentiles = (Duration, Duration);

/// One transport's runs of the core workloads: send await each, send 100 in flight, round trip.
struct TransportRuns {
    transport: CoreTransport,
    seq: Vec<f64>,
    pipelined: Vec<f64>,
    trips: Vec<Percentiles>,
}

/// A column heading: the transport and the hub port it uses.
fn transport_label(t: CoreTransport) -> String {
    let what = match t {
        CoreTransport::Mqtt => "MQTT over TLS (MQTT port)",
        CoreTransport::MqttWebSocket => "MQTT over WebSocket (HTTPS port)",
        CoreTransport::Amqp => "AMQP over TLS (AMQPS port)",
        CoreTransport::AmqpWebSocket => "AMQP over WebSocket (HTTPS port)",
        other => other.name(),
    };
    format!("{what}, `{}`", t.name())
}

/// The core over every transport side by side: the sends (await each, 100 in flight) and the
/// round trips, each cell but the first's with its ratio to the first transport (MQTT over TLS).
fn transport_table(n: usize, rtt: usize, runs: &[TransportRuns]) -> String {
    let mut table = String::from("| workload |");
    for r in runs {
        table += &format!(" {} |", transport_label(r.transport));
    }
    table += &format!("\n|---|{}\n", "---|".repeat(runs.len()));
    let ratio =
        |i: usize, x: f64, first: f64| if i == 0 { String::new() } else { format!(" ({:.0} %)", 100.0 * x / first) };
    let sends = [
        (format!("send {n} × 256 B, await each"), runs.iter().map(|r| median(r.seq.clone())).collect::<Vec<_>>()),
        (format!("send {n} × 256 B, 100 in flight"), runs.iter().map(|r| median(r.pipelined.clone())).collect()),
    ];
    for (name, rates) in sends {
        table += &format!("| {name} |");
        for (i, rate) in rates.iter().enumerate() {
            table += &format!(" {rate:.0} msg/s{} |", ratio(i, *rate, rates[0]));
        }
        table += "\n";
    }
    let by_p50 = |mut v: Vec<Percentiles>| {
        v.sort();
        v[v.len() / 2]
    };
    let trips: Vec<Percentiles> = runs.iter().map(|r| by_p50(r.trips.clone())).collect();
    table += &format!("| round trip output → route → input, {rtt} sequential (p50 / p99) |");
    for (i, (p50, p99)) in trips.iter().enumerate() {
        let first = trips[0].0.as_secs_f64();
        table += &format!(" {} / {} µs{} |", p50.as_micros(), p99.as_micros(), ratio(i, p50.as_secs_f64(), first));
    }
    table + "\n"
}

/// The run with the median throughput.
fn median_flow(mut runs: Vec<(f64, Duration, Duration)>) -> (f64, Duration, Duration) {
    runs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    runs[runs.len() / 2]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Command-line options.
struct Opts {
    n: usize,
    rtt: usize,
    runs: usize,
    port: u16,
    write: Option<PathBuf>,
    languages: Vec<String>,
    note: Option<String>,
    quick: bool,
}

const USAGE: &str = "usage: edgemodule-bench [--messages N] [--rtt N] [--runs R] [--quick] [--port 8883|0]
                        [--languages rust,c,python,node,official] [--write BENCHMARKS.md] [--note TEXT]

  --messages N   messages per send/receive workload (default 10000; --quick: 200)
  --rtt N        sequential round trips (default min(N, 2000))
  --runs R       runs per figure, the median is reported (default 3; --quick: 1)
  --port P       8883 (default): the hub listens on 127.0.0.1:8883 and :443, where the official SDKs
                 can reach it (fails if those ports are busy); 0: ephemeral ports, no official rows
  --languages L  rows to measure (default all): rust (also the core-vs-rumqttc and hub-vs-mosquitto
                 sections), c, python, node, official
  --write FILE   also write the markdown report to FILE
  --note TEXT    a paragraph added to the report (e.g. about other load on the machine)";

fn parse_opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut values = std::collections::HashMap::new();
    let mut quick = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            flag @ ("--messages" | "--rtt" | "--runs" | "--port" | "--write" | "--languages" | "--note") => {
                let Some(v) = args.get(i + 1) else {
                    eprintln!("{flag} needs a value\n{USAGE}");
                    std::process::exit(2);
                };
                values.insert(flag.to_string(), v.clone());
                i += 1;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    let num = |name: &str, default: usize| -> usize {
        values.get(name).map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("{name}: not a number: {v}");
                std::process::exit(2)
            })
        })
    };
    let n = num("--messages", if quick { 200 } else { 10_000 }).max(2);
    let languages: Vec<String> = values
        .get("--languages")
        .map_or("rust,c,python,node,official", String::as_str)
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for l in &languages {
        if !["rust", "c", "python", "node", "official"].contains(&l.as_str()) {
            eprintln!("--languages: unknown language {l}");
            std::process::exit(2);
        }
    }
    let port = num("--port", 8883);
    if port != 0 && port != 8883 {
        eprintln!("--port must be 8883 (official SDKs) or 0 (ephemeral)");
        std::process::exit(2);
    }
    Opts {
        n,
        rtt: num("--rtt", n.min(2000)).max(2),
        runs: num("--runs", if quick { 1 } else { 3 }).max(1),
        port: port as u16,
        write: values.get("--write").map(PathBuf::from),
        languages,
        note: values.get("--note").cloned(),
        quick,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Workload (e) for the Rust core, in a child process of its own: RSS with the runtime up and
/// before the client exists, then connected with an input handler after a 2 s settle.
async fn idle_child(cs: &str, ca_file: &str, port: u16) {
    let bare = rss_kib();
    let ca = std::fs::read_to_string(ca_file).unwrap();
    let c = ModuleClient::from_connection_string(cs, Some(&ca), ClientOptions::default().with_mqtt_port(port))
        .await
        .unwrap();
    let mut input = c.input_receiver("in").unwrap();
    tokio::spawn(async move {
        while let Some(m) = input.recv().await {
            let _ = m.complete();
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib();
    println!(
        "{}",
        json!({"impl": "rust", "workload": "e", "rss_bare_kib": bare, "rss_loaded_kib": bare, "rss_idle_kib": idle})
    );
    let _ = c.close().await;
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "?".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(String::new, |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{cpus} vCPU / {mem_gib:.0} GiB, Linux {}", shell("uname", &["-r"]))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--idle-child") {
        idle_child(&args[2], &args[3], args[4].parse().unwrap()).await;
        return;
    }
    let opts = parse_opts();
    let started = Instant::now();
    let (n, runs, rtt) = (opts.n, opts.runs, opts.rtt);
    let wants = |l: &str| opts.languages.iter().any(|x| x == l);
    if opts.port != 0 {
        require_free(8883);
        require_free(443);
    }
    let (mqtt_port, https_port) = if opts.port == 0 { (0, 0) } else { (8883, 443) };

    let work = tempfile::tempdir().unwrap();
    let env = lang::Env::new(work.path());
    let mut results = lang::Results::new();
    let mut active = Vec::new();
    for row in lang::Row::ALL {
        if !wants(row.language()) {
            continue;
        }
        if row.official() && opts.port == 0 {
            for w in lang::WORKLOADS {
                results.insert(
                    (row, w),
                    lang::Cell::Missing("skipped (`--port 0`: the official SDKs only connect to 8883)".into()),
                );
            }
            continue;
        }
        match lang::prerequisites(&env, row) {
            Ok(()) => active.push(row),
            Err(why) => {
                eprintln!("{}: {why}", row.label());
                let cell =
                    if why.starts_with("not installed") { lang::Cell::Missing(why) } else { lang::Cell::Error(why) };
                for w in lang::WORKLOADS {
                    results.insert((row, w), cell.clone());
                }
            }
        }
    }
    let mut extra = Vec::new();
    for &row in &active {
        for &w in row.child_workloads() {
            for run in 0..runs {
                extra.push((lang::module_id(row, w, run), w));
            }
        }
    }
    let hub = start_hub(mqtt_port, https_port, &extra).await;
    let ca_file = hub.state().join("ca.pem");
    let load_start = load_average();

    // The core beside raw rumqttc (and the Rust row's a–d).
    let mut core_section = None;
    let mut transport_section = None;
    let mut core_targets = Vec::new();
    if wants("rust") {
        eprintln!("core vs rumqttc: {runs} run(s) of {n} messages");
        let mut rows: Vec<(String, String, String, String)> = Vec::new();
        let (mut cs, mut rs, mut cp, mut rp, mut cr, mut rr, mut crt, mut rrt) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        // MQTT over TLS is measured beside raw rumqttc above; every other transport beside it.
        let mut transports: Vec<TransportRuns> = CoreTransport::ALL
            .iter()
            .filter(|t| **t != CoreTransport::Mqtt)
            .map(|&transport| TransportRuns { transport, seq: vec![], pipelined: vec![], trips: vec![] })
            .collect();
        let mqtt = CoreTransport::Mqtt;
        for _ in 0..runs {
            cs.push(core_send_seq(&hub, n, mqtt).await);
            rs.push(raw_send(&hub, n, 1).await);
            cp.push(core_send_pipelined(&hub, n, 100, mqtt).await);
            rp.push(raw_send(&hub, n, 100).await);
            cr.push(core_receive(&hub, n).await);
            rr.push(raw_receive(&hub, n).await);
            crt.push(core_round_trip(&hub, rtt, mqtt).await);
            rrt.push(raw_round_trip(&hub, rtt).await);
            for t in &mut transports {
                t.seq.push(core_send_seq(&hub, n, t.transport).await);
                t.pipelined.push(core_send_pipelined(&hub, n, 100, t.transport).await);
                t.trips.push(core_round_trip(&hub, rtt, t.transport).await);
            }
        }
        for (w, v) in [('a', &cs), ('b', &cp), ('c', &cr)] {
            for r in v.iter() {
                lang::push(&mut results, lang::Row::Rust, w, Ok(json!({"rate": r})));
            }
        }
        for (p50, p99) in &crt {
            lang::push(
                &mut results,
                lang::Row::Rust,
                'd',
                Ok(json!({"p50_us": p50.as_secs_f64() * 1e6, "p99_us": p99.as_secs_f64() * 1e6})),
            );
        }
        let mut ratios = Vec::new();
        for (name, c, r) in [
            (format!("send {n} × 256 B, await each"), &cs, &rs),
            (format!("send {n} × 256 B, 100 in flight"), &cp, &rp),
            (format!("receive {n} routed messages (first → last, each completed)"), &cr, &rr),
        ] {
            let (c, r) = (median(c.clone()), median(r.clone()));
            ratios.push(c / r);
            rows.push((name, format!("{c:.0} msg/s"), format!("{r:.0} msg/s"), format!("{:.0} %", 100.0 * c / r)));
        }
        let by_p50 = |mut v: Vec<(Duration, Duration)>| {
            v.sort();
            v[v.len() / 2]
        };
        let ((cp50, cp99), (rp50, rp99)) = (by_p50(crt.clone()), by_p50(rrt.clone()));
        rows.push((
            format!("round trip output → route → input, {rtt} sequential (p50 / p99)"),
            format!("{} / {} µs", cp50.as_micros(), cp99.as_micros()),
            format!("{} / {} µs", rp50.as_micros(), rp99.as_micros()),
            format!("{:.0} % (p50)", 100.0 * rp50.as_secs_f64() / cp50.as_secs_f64()),
        ));
        let mut table = String::from("| workload | edgemodule core | raw rumqttc | core / raw |\n|---|---|---|---|\n");
        for (w, c, r, ratio) in &rows {
            table += &format!("| {w} | {c} | {r} | {ratio} |\n");
        }
        core_targets.push((
            "core send ≥ 90 % of raw rumqttc (await each / 100 in flight)".to_string(),
            format!("{:.0} % / {:.0} %", 100.0 * ratios[0], 100.0 * ratios[1]),
            Some(ratios[0] >= 0.9 && ratios[1] >= 0.9),
        ));
        core_targets.push((
            "core round trip p50 ≤ 0.5 ms".to_string(),
            format!("{:.3} ms", cp50.as_secs_f64() * 1e3),
            Some(cp50 <= Duration::from_micros(500)),
        ));
        core_section = Some(table);
        transports.insert(0, TransportRuns { transport: mqtt, seq: cs, pipelined: cp, trips: crt });
        transport_section = Some(transport_table(n, rtt, &transports));
    }

    // The bindings and the official SDKs, one child process per (row, workload, run).
    for run in 0..runs {
        for &row in &active {
            for &w in row.child_workloads() {
                let module = lang::module_id(row, w, run);
                let res = async {
                    let cs = hub.connection_string(&module)?;
                    if w == 'c' {
                        preload(&hub, "feeder", &module, n).await;
                    }
                    let count = if w == 'd' { rtt } else { n };
                    let t = Instant::now();
                    let target = lang::Target { cs: &cs, ca_file: &ca_file, port: hub.port, n: count };
                    let res = lang::run_child(&env, row, w, &target);
                    eprintln!(
                        "run {}/{runs} {:<14} {w}: {:.1} s {}",
                        run + 1,
                        row.id(),
                        t.elapsed().as_secs_f64(),
                        match &res {
                            Ok(v) => v.to_string(),
                            Err(e) => format!("ERROR {e}"),
                        }
                    );
                    res
                }
                .await;
                lang::push(&mut results, row, w, res);
            }
        }
    }

    // The hub beside mosquitto.
    let mut flow_section = None;
    if wants("rust") {
        let flows = n * 2;
        eprintln!("hub vs mosquitto: {runs} run(s) of {flows} messages");
        let mosquitto = start_mosquitto(&hub).await;
        let mut flow_rows = Vec::new();
        for (label, per_ms) in [("saturated (window 100)", None), ("paced at 5,000 msg/s", Some(5))] {
            let mut hub_runs = Vec::new();
            let mut mosq_runs = Vec::new();
            for _ in 0..runs {
                hub_runs.push(run_flow(hub_flow(&hub).await, flows, per_ms).await);
                if let Some(m) = &mosquitto {
                    mosq_runs.push(run_flow(mosquitto_flow(m).await, flows, per_ms).await);
                }
            }
            flow_rows.push((label, median_flow(hub_runs), (!mosq_runs.is_empty()).then(|| median_flow(mosq_runs))));
        }
        let mut table = format!(
            "| {flows} × 256 B QoS 1, one publisher → one subscriber | edgemodule-hub (module a → route → module b, stored) | mosquitto (topic → topic, not persisted) |\n|---|---|---|\n"
        );
        for (label, (rate, p50, p99), mosq) in &flow_rows {
            let m = match mosq {
                Some((r, m50, m99)) => format!("{r:.0} msg/s, p50 {} µs, p99 {} µs", m50.as_micros(), m99.as_micros()),
                None => "not installed (`apt-get install mosquitto`)".into(),
            };
            table += &format!(
                "| {label} | {rate:.0} msg/s, p50 {} µs, p99 {} µs | {m} |\n",
                p50.as_micros(),
                p99.as_micros()
            );
        }
        let (sat, paced) = (flow_rows[0].1, flow_rows[1].1);
        core_targets.push((
            "hub route throughput ≥ 30,000 msg/s (saturated)".into(),
            format!("{} msg/s", report::thousands(sat.0)),
            Some(sat.0 >= 30_000.0),
        ));
        core_targets.push((
            "hub p99 ≤ 2 ms (paced at 5,000 msg/s)".into(),
            format!("{:.2} ms", paced.2.as_secs_f64() * 1e3),
            Some(paced.2 <= Duration::from_millis(2)),
        ));
        flow_section = Some(table);
    }

    let rep = report::Report {
        date: shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine: machine(),
        profile: env.profile_dir.file_name().map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
        n,
        rtt,
        runs,
        quick: opts.quick,
        port: hub.port,
        languages: opts.languages.clone(),
        load_start,
        load_end: load_average(),
        elapsed: started.elapsed(),
        note: opts.note.clone(),
        core_section,
        transport_section,
        flow_section,
        core_targets,
        results,
    };
    let md = report::render(&rep);
    print!("{md}");
    if let Some(path) = &opts.write {
        std::fs::write(path, &md).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
    }
    drop(hub);
    if rep.results.values().any(|c| matches!(c, lang::Cell::Error(_))) {
        eprintln!("edgemodule-bench: some measurements failed (see the table)");
        std::process::exit(1);
    }
}
