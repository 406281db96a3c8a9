//! `edgemodule-bench`: measures, in one run against one `edgemodule-hub` process, the core
//! client beside a raw rumqttc client doing the same work (send sequential and pipelined,
//! receive, round trip), and the hub's route throughput and latency. Prints a markdown table.
//!
//! Build and run: `cargo build --release -p edgemodule-hub -p edgemodule-bench &&
//! target/release/edgemodule-bench [--messages N] [--runs R]`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemodule_core::wire::sas;
use edgemodule_core::{ClientOptions, Message, ModuleClient};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};

const BODY: [u8; 256] = [b'x'; 256];

struct HubProcess {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
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

fn deployment() -> Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"a": {}, "b": {}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
            "route": "FROM /messages/modules/a/outputs/route INTO BrokeredEndpoint(\"/modules/b/inputs/in\")",
            "loop": "FROM /messages/modules/a/outputs/loop INTO BrokeredEndpoint(\"/modules/a/inputs/loop\")"
        }}}
    }})
}

async fn start_hub() -> HubProcess {
    let bin = hub_binary();
    assert!(bin.exists(), "{} not found: build it with `cargo build --release -p edgemodule-hub`", bin.display());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_string();
    let ok = Command::new(&bin).args(["--state-dir", &state, "init"]).stdout(Stdio::null()).status().unwrap();
    assert!(ok.success());
    let file = dir.path().join("deployment.json");
    std::fs::write(&file, deployment().to_string()).unwrap();
    let mut child = Command::new(&bin)
        .args([
            "--state-dir",
            &state,
            "start",
            "--deployment",
            file.to_str().unwrap(),
            "--mqtt-port",
            "0",
            "--https-port",
            "0",
        ])
        .spawn()
        .unwrap();
    let socket = dir.path().join("control.sock");
    for _ in 0..200 {
        if let Ok(status) = edgemodule_hub::control::request(&socket, &json!({"cmd": "status"})).await {
            let port = status["mqtt"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
            let device = status["device"].as_str().unwrap().to_string();
            let hub_host = status["hub"].as_str().unwrap().to_string();
            return HubProcess { child, dir, port, device, hub_host };
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
    fn ca(&self) -> String {
        std::fs::read_to_string(self.state().join("ca.pem")).unwrap()
    }
    fn key(&self, module: &str) -> String {
        let keys: Value =
            serde_json::from_str(&std::fs::read_to_string(self.state().join("keys.json")).unwrap()).unwrap();
        keys["modules"][module].as_str().unwrap().to_string()
    }
    async fn core(&self, module: &str) -> ModuleClient {
        let cs = format!(
            "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={};GatewayHostName=localhost",
            self.hub_host,
            self.device,
            self.key(module)
        );
        let opts = ClientOptions::default().with_mqtt_port(self.port).with_max_in_flight(100);
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

async fn core_send_seq(hub: &HubProcess, n: usize) -> f64 {
    let c = hub.core("a").await;
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

async fn core_send_pipelined(hub: &HubProcess, n: usize, window: usize) -> f64 {
    let c = hub.core("a").await;
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
    let (c, mut ev) = hub.raw("a", 100).await;
    let topic = hub.topic("a", "route");
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

async fn core_round_trip(hub: &HubProcess, n: usize) -> (Duration, Duration) {
    let c = hub.core("a").await;
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

/// The run with the median throughput.
fn median_flow(mut runs: Vec<(f64, Duration, Duration)>) -> (f64, Duration, Duration) {
    runs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    runs[runs.len() / 2]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = arg("--messages", 10_000);
    let runs = arg("--runs", 3);
    let hub = start_hub().await;
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    macro_rules! compare {
        ($name:expr, $core:expr, $raw:expr) => {{
            let mut c = Vec::new();
            let mut r = Vec::new();
            for _ in 0..runs {
                c.push($core);
                r.push($raw);
            }
            let (c, r) = (median(c), median(r));
            rows.push((
                $name.to_string(),
                format!("{c:.0} msg/s"),
                format!("{r:.0} msg/s"),
                format!("{:.0} %", 100.0 * c / r),
            ));
        }};
    }
    compare!(format!("send {n} × 256 B, await each"), core_send_seq(&hub, n).await, raw_send(&hub, n, 1).await);
    compare!(
        format!("send {n} × 256 B, 100 in flight"),
        core_send_pipelined(&hub, n, 100).await,
        raw_send(&hub, n, 100).await
    );
    compare!(format!("receive {n} routed messages"), core_receive(&hub, n).await, raw_receive(&hub, n).await);
    let rt = n.min(2000);
    let (cp50, cp99) = core_round_trip(&hub, rt).await;
    let (rp50, rp99) = raw_round_trip(&hub, rt).await;
    rows.push((
        format!("round trip output → route → input, {rt} sequential (p50 / p99)"),
        format!("{} / {} µs", cp50.as_micros(), cp99.as_micros()),
        format!("{} / {} µs", rp50.as_micros(), rp99.as_micros()),
        format!("{:.0} % (p50)", 100.0 * rp50.as_secs_f64() / cp50.as_secs_f64()),
    ));
    let flows = n * 2;
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
    println!("| workload | edgemodule core | raw rumqttc | core / raw |");
    println!("|---|---|---|---|");
    for (w, c, r, ratio) in &rows {
        println!("| {w} | {c} | {r} | {ratio} |");
    }
    println!();
    println!("| {flows} × 256 B QoS 1, one publisher → one subscriber | edgemodule-hub (module a → route → module b, stored) | mosquitto (topic → topic, not persisted) |");
    println!("|---|---|---|");
    for (label, (rate, p50, p99), mosq) in &flow_rows {
        let m = match mosq {
            Some((r, m50, m99)) => format!("{r:.0} msg/s, p50 {} µs, p99 {} µs", m50.as_micros(), m99.as_micros()),
            None => "not installed".into(),
        };
        println!("| {label} | {rate:.0} msg/s, p50 {} µs, p99 {} µs | {m} |", p50.as_micros(), p99.as_micros());
    }
    println!("\nmedian of {runs} runs; hub: {} in its own process; clients in this process", hub_binary().display());
}
