//! `soak`: steady module → route → module traffic through a hub running in its own process,
//! with every connection cut periodically by a proxy in between. Reports sent, acknowledged,
//! delivered, lost and duplicate messages and the hub's RSS over time; exits non-zero when an
//! acknowledged message was lost or the hub's RSS kept growing.
//!
//! `cargo run --release -p edgemodule-bench --bin soak -- [--duration 10m] [--rate 200]
//! [--cut-every 15s] [--in-flight 64]` (durations: `90`, `90s`, `10m`, `1h`).

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgemodule_core::{ClientOptions, Message, ModuleClient, RetryPolicy};
use edgemodule_hub::server::{start, HubConfig};
use edgemodule_hub::state::StateDir;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Semaphore};

struct Args {
    duration: Duration,
    rate: u64,
    cut_every: Duration,
    in_flight: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: u64 = num.parse().map_err(|_| format!("bad duration '{s}'"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => return Err(format!("bad duration unit in '{s}' (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs(secs))
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a =
        Args { duration: Duration::from_secs(600), rate: 200, cut_every: Duration::from_secs(15), in_flight: 64 };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => a.duration = parse_duration(&value()?)?,
            "--rate" => a.rate = value()?.parse().map_err(|_| "bad --rate")?,
            "--cut-every" => a.cut_every = parse_duration(&value()?)?,
            "--in-flight" => a.in_flight = value()?.parse().map_err(|_| "bad --in-flight")?,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if a.rate == 0 || a.in_flight == 0 || a.cut_every.is_zero() {
        return Err("--rate, --in-flight and --cut-every must be positive".into());
    }
    Ok(a)
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if args.peek().map(String::as_str) == Some("__hub") {
        let state = args.nth(1).expect("state dir");
        let deployment = args.next().expect("deployment");
        return rt.block_on(run_hub(state, deployment));
    }
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let ok = rt.block_on(soak(args));
    std::process::exit(if ok { 0 } else { 1 });
}

/// The hub side: its own process so its RSS is its own. Ends when stdin closes (the parent died).
async fn run_hub(state: String, deployment: String) {
    let mut config = HubConfig::new(&state, &deployment);
    (config.mqtt_port, config.https_port, config.workload, config.control) = (0, 0, false, false);
    let hub = start(config).await.expect("starting the hub");
    println!("ready {}", hub.mqtt_addr.port());
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().lock().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {}
    })
    .await;
    hub.shutdown().await;
}

struct HubChild(Child);

impl Drop for HubChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A loopback proxy whose connections can all be cut at once.
async fn proxy(target: u16) -> (u16, broadcast::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (cut, _) = broadcast::channel::<()>(16);
    let cut_tx = cut.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await else { continue };
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            let mut cut = cut_tx.subscribe();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let up = async {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n @ 1..) = ur.read(&mut buf).await {
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! {
                    _ = async { tokio::join!(up, down) } => {}
                    _ = cut.recv() => {}
                }
            });
        }
    });
    (port, cut)
}

#[derive(Default)]
struct Tally {
    sent: u64,
    acked: HashSet<u64>,
    failed: u64,
    delivered: HashMap<u64, u32>,
}

async fn soak(args: Args) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let st = StateDir::init(&state, "localhost").unwrap();
    let deployment = dir.path().join("deployment.json");
    let manifest = json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"sender": {}, "receiver": {}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
            "soak": "FROM /messages/modules/sender/outputs/o INTO BrokeredEndpoint(\"/modules/receiver/inputs/in\")"
        }}}
    }});
    std::fs::write(&deployment, manifest.to_string()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("__hub")
        .arg(&state)
        .arg(&deployment)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the hub process");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let hub_port: u16 = line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok()).expect("hub did not start");
    let hub = HubChild(child);
    let pid = hub.0.id();

    let (proxy_port, cut) = proxy(hub_port).await;
    let ca = st.ca_pem().unwrap();
    let id = st.identity().clone();
    let options = ClientOptions::default()
        .with_mqtt_port(proxy_port)
        .with_default_timeout(Duration::from_secs(60))
        .with_connect_timeout(Duration::from_secs(10))
        .with_retry(RetryPolicy::ExponentialBackoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(500),
            give_up_after: None,
        });
    let cs = |m: &str| {
        format!(
            "HostName={};DeviceId={};ModuleId={m};SharedAccessKey={};GatewayHostName=localhost",
            id.hub_host_name,
            id.device_id,
            st.module_key(m).unwrap().unwrap()
        )
    };
    let sender = ModuleClient::from_connection_string(&cs("sender"), Some(&ca), options.clone()).await.unwrap();
    let receiver = ModuleClient::from_connection_string(&cs("receiver"), Some(&ca), options).await.unwrap();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut inputs = receiver.input_receiver("in").unwrap();
    let rx_tally = tally.clone();
    tokio::spawn(async move {
        while let Some(m) = inputs.recv().await {
            if let Some(n) = std::str::from_utf8(m.message().body()).ok().and_then(|s| s.parse::<u64>().ok()) {
                *rx_tally.lock().unwrap().delivered.entry(n).or_default() += 1;
            }
            let _ = m.complete();
        }
    });

    let started = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some(kib) = rss_kib(pid) {
                    samples.lock().unwrap().push((started.elapsed().as_secs_f64(), kib));
                }
            }
        })
    };
    let cuts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cutter = {
        let (cut, cuts, every) = (cut.clone(), cuts.clone(), args.cut_every);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                let _ = cut.send(());
                cuts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let reporter = {
        let (tally, samples) = (tally.clone(), samples.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + Duration::from_secs(10),
                Duration::from_secs(10),
            );
            loop {
                tick.tick().await;
                let t = tally.lock().unwrap();
                let rss = samples.lock().unwrap().last().map(|s| s.1).unwrap_or(0);
                eprintln!(
                    "soak: {:>5.0}s sent {} acked {} delivered {} hub RSS {} KiB",
                    started.elapsed().as_secs_f64(),
                    t.sent,
                    t.acked.len(),
                    t.delivered.len(),
                    rss
                );
            }
        })
    };

    // Steady traffic at `rate` messages per second, at most `in_flight` unacknowledged.
    let permits = Arc::new(Semaphore::new(args.in_flight));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while started.elapsed() < args.duration {
        tick.tick().await;
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (s, t) = (sender.clone(), tally.clone());
        t.lock().unwrap().sent += 1;
        let id = n;
        n += 1;
        tokio::spawn(async move {
            let ok = s.send_to_output("o", Message::new(id.to_string())).await.is_ok();
            let mut t = t.lock().unwrap();
            if ok {
                t.acked.insert(id);
            } else {
                t.failed += 1;
            }
            drop(permit);
        });
    }
    cutter.abort();
    // Let every send finish, then wait for every acknowledged message to arrive.
    let _ = tokio::time::timeout(Duration::from_secs(90), permits.acquire_many(args.in_flight as u32)).await;
    let drain = Instant::now();
    while drain.elapsed() < Duration::from_secs(60) {
        {
            let t = tally.lock().unwrap();
            if t.acked.iter().all(|id| t.delivered.contains_key(id)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampler.abort();
    reporter.abort();

    let t = tally.lock().unwrap();
    let lost = t.acked.iter().filter(|id| !t.delivered.contains_key(id)).count();
    let duplicates: u64 = t.delivered.values().map(|c| u64::from(c - 1)).sum();
    let unacked_delivered = t.delivered.keys().filter(|id| !t.acked.contains(id)).count();
    let samples = samples.lock().unwrap().clone();
    let third = (samples.len() / 3).max(1);
    let avg = |s: &[(f64, u64)]| s.iter().map(|x| x.1).sum::<u64>() / s.len().max(1) as u64;
    let (first, last) =
        (avg(&samples[..third.min(samples.len())]), avg(&samples[samples.len().saturating_sub(third)..]));
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    // Bounded: the last third may not exceed the first by more than 30% plus 16 MiB of slack
    // (allocator and store caches settle during the first minutes).
    let rss_ok = last <= first + first * 3 / 10 + 16 * 1024;
    println!(
        "## soak: {:.0} s, {} msg/s target, cut every {:?}",
        args.duration.as_secs_f64(),
        args.rate,
        args.cut_every
    );
    println!();
    println!("| metric | value |");
    println!("|---|---|");
    println!("| connection cuts | {} |", cuts.load(std::sync::atomic::Ordering::Relaxed));
    println!(
        "| client reconnects (sender / receiver) | {} / {} |",
        sender.metrics().reconnects,
        receiver.metrics().reconnects
    );
    println!("| sent | {} |", t.sent);
    println!("| acknowledged | {} |", t.acked.len());
    println!("| send errors (not acknowledged) | {} |", t.failed);
    println!("| delivered (unique) | {} |", t.delivered.len());
    println!("| delivered without an acknowledgement | {unacked_delivered} |");
    println!("| duplicates | {duplicates} |");
    println!("| lost (acknowledged, never delivered) | {lost} |");
    println!("| hub RSS first third avg / last third avg / max (KiB) | {first} / {last} / {max} |");
    println!();
    let series: Vec<String> =
        samples.iter().step_by((samples.len() / 12).max(1)).map(|(t, k)| format!("{t:.0}s:{}M", k / 1024)).collect();
    println!("hub RSS over time: {}", series.join(" "));
    // Cuts that never forced a reconnect would prove nothing.
    let cut_ok = cuts.load(std::sync::atomic::Ordering::Relaxed) == 0 || sender.metrics().reconnects > 0;
    let ok = lost == 0 && rss_ok && cut_ok && !t.acked.is_empty();
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    drop(hub);
    ok
}
