//! `soak`: steady module → route → module traffic through a hub running in its own process,
//! with every connection cut periodically by a proxy in between. Reports sent, acknowledged,
//! delivered, lost and duplicate messages, and the RSS of the hub process and of the client
//! process (this one: both core clients and the proxy; its own bookkeeping is a few bits per
//! message) over time, as a table, an ASCII plot and optionally an SVG. Exits non-zero when an
//! acknowledged message was lost or either RSS kept growing.
//!
//! `cargo run --release -p edgemodule-bench --bin soak -- [--duration 10m] [--rate 200]
//! [--cut-every 15s] [--in-flight 64] [--svg docs/soak-rss.svg]` (durations: `90`, `90s`,
//! `10m`, `1h`).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgemodule_core::{ClientOptions, Message, ModuleClient, RetryPolicy};
use edgemodule_hub::server::{start, HubConfig};
use edgemodule_hub::state::StateDir;
use serde_json::json;
use tokio::sync::Semaphore;

/// The fault proxy shared with the fault matrix and the core's tests.
#[path = "../../tests/faults/src/proxy.rs"]
mod proxy;

struct Args {
    duration: Duration,
    rate: u64,
    cut_every: Duration,
    in_flight: usize,
    svg: Option<std::path::PathBuf>,
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
    let mut a = Args {
        duration: Duration::from_secs(600),
        rate: 200,
        cut_every: Duration::from_secs(15),
        in_flight: 64,
        svg: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => a.duration = parse_duration(&value()?)?,
            "--rate" => a.rate = value()?.parse().map_err(|_| "bad --rate")?,
            "--cut-every" => a.cut_every = parse_duration(&value()?)?,
            "--in-flight" => a.in_flight = value()?.parse().map_err(|_| "bad --in-flight")?,
            "--svg" => a.svg = Some(value()?.into()),
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

/// One bit per sequence number: the bookkeeping stays a few KiB, so this process's RSS is the
/// clients' (and the proxy's), not the test's.
#[derive(Default, Clone)]
struct Bits(Vec<u64>);

impl Bits {
    /// Sets bit `i`; returns whether it was set already.
    fn set(&mut self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        let was = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        was
    }
    fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

#[derive(Default)]
struct Tally {
    sent: u64,
    acked: Bits,
    failed: u64,
    delivered: Bits,
    /// Every delivery, duplicates included.
    deliveries: u64,
}

impl Tally {
    fn all_acked_delivered(&self) -> bool {
        self.acked.0.iter().enumerate().all(|(i, a)| a & !self.delivered.0.get(i).copied().unwrap_or(0) == 0)
    }
    fn lost(&self) -> u64 {
        let d = |i: usize| self.delivered.0.get(i).copied().unwrap_or(0);
        self.acked.0.iter().enumerate().map(|(i, a)| u64::from((a & !d(i)).count_ones())).sum()
    }
    fn delivered_unacked(&self) -> u64 {
        let a = |i: usize| self.acked.0.get(i).copied().unwrap_or(0);
        self.delivered.0.iter().enumerate().map(|(i, d)| u64::from((d & !a(i)).count_ones())).sum()
    }
}

/// One RSS sample: seconds since the start, hub KiB, client KiB.
type Sample = (f64, u64, u64);

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

    let proxy = Arc::new(proxy::Proxy::start(hub_port).await);
    let proxy_port = proxy.port;
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
                let mut t = rx_tally.lock().unwrap();
                t.delivered.set(n);
                t.deliveries += 1;
            }
            let _ = m.complete();
        }
    });

    let started = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = {
        let samples = samples.clone();
        let me = std::process::id();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let (Some(hub), Some(client)) = (rss_kib(pid), rss_kib(me)) {
                    samples.lock().unwrap().push((started.elapsed().as_secs_f64(), hub, client));
                }
            }
        })
    };
    let cuts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cutter = {
        let (proxy, cuts, every) = (proxy.clone(), cuts.clone(), args.cut_every);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                proxy.cut_all();
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
                let (hub, client) = samples.lock().unwrap().last().map(|s| (s.1, s.2)).unwrap_or((0, 0));
                eprintln!(
                    "soak: {:>5.0}s sent {} acked {} delivered {} RSS hub {hub} KiB client {client} KiB",
                    started.elapsed().as_secs_f64(),
                    t.sent,
                    t.acked.count(),
                    t.delivered.count(),
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
                t.acked.set(id);
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
            if tally.lock().unwrap().all_acked_delivered() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampler.abort();
    reporter.abort();

    let t = tally.lock().unwrap();
    let lost = t.lost();
    let duplicates = t.deliveries - t.delivered.count();
    let unacked_delivered = t.delivered_unacked();
    let samples = samples.lock().unwrap().clone();
    let hub_rss = Growth::of(samples.iter().map(|s| s.1));
    let client_rss = Growth::of(samples.iter().map(|s| s.2));
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
    println!("| acknowledged | {} |", t.acked.count());
    println!("| send errors (not acknowledged) | {} |", t.failed);
    println!("| delivered (unique) | {} |", t.delivered.count());
    println!("| delivered without an acknowledgement | {unacked_delivered} |");
    println!("| duplicates | {duplicates} |");
    println!("| lost (acknowledged, never delivered) | {lost} |");
    println!("| hub RSS first third avg / last third avg / max (KiB) | {} |", hub_rss.row());
    println!("| client RSS first third avg / last third avg / max (KiB) | {} |", client_rss.row());
    println!();
    println!("RSS over time (MiB; h = hub process, c = client process):");
    println!();
    println!("```");
    print!("{}", ascii_plot(&samples, 64, 12));
    println!("```");
    if let Some(path) = &args.svg {
        let title = format!(
            "soak: {:.0} s, {} msg/s, a cut every {:?}",
            args.duration.as_secs_f64(),
            args.rate,
            args.cut_every
        );
        match std::fs::write(path, svg_plot(&samples, &title)) {
            Ok(()) => println!("\nplot written to {}", path.display()),
            Err(e) => eprintln!("soak: writing {}: {e}", path.display()),
        }
    }
    // Cuts that never forced a reconnect would prove nothing.
    let cut_ok = cuts.load(std::sync::atomic::Ordering::Relaxed) == 0 || sender.metrics().reconnects > 0;
    let ok = lost == 0 && hub_rss.bounded() && client_rss.bounded() && cut_ok && t.acked.count() > 0;
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    drop(hub);
    ok
}

/// RSS level at the start and at the end of a run.
struct Growth {
    first: u64,
    last: u64,
    max: u64,
}

impl Growth {
    /// Averages of the first and the last third of the samples.
    fn of(samples: impl Iterator<Item = u64>) -> Growth {
        let s: Vec<u64> = samples.collect();
        let third = (s.len() / 3).max(1);
        let avg = |x: &[u64]| x.iter().sum::<u64>() / x.len().max(1) as u64;
        Growth {
            first: avg(&s[..third.min(s.len())]),
            last: avg(&s[s.len().saturating_sub(third)..]),
            max: s.iter().copied().max().unwrap_or(0),
        }
    }

    /// Levelled off: the last third may not exceed the first by more than 30 % plus 16 MiB of
    /// slack (allocator and store caches settle during the first minutes).
    fn bounded(&self) -> bool {
        self.last <= self.first + self.first * 3 / 10 + 16 * 1024
    }

    fn row(&self) -> String {
        format!("{} / {} / {}{}", self.first, self.last, self.max, if self.bounded() { "" } else { " (GREW)" })
    }
}

/// Both RSS series on one character grid: `h` hub, `c` client, `*` both.
fn ascii_plot(samples: &[Sample], width: usize, height: usize) -> String {
    if samples.is_empty() {
        return "(no samples)\n".into();
    }
    let mib = |k: u64| k as f64 / 1024.0;
    let top = samples.iter().map(|s| mib(s.1.max(s.2))).fold(1.0, f64::max) * 1.1;
    let t_end = samples.last().map_or(1.0, |s| s.0).max(1.0);
    let mut grid = vec![vec![' '; width]; height];
    for s in samples {
        let x = ((s.0 / t_end) * (width - 1) as f64).round() as usize;
        for (v, ch) in [(mib(s.1), 'h'), (mib(s.2), 'c')] {
            let y = height - 1 - ((v / top) * (height - 1) as f64).round().min((height - 1) as f64) as usize;
            let cell = &mut grid[y][x.min(width - 1)];
            *cell = if *cell == ' ' || *cell == ch { ch } else { '*' };
        }
    }
    let mut out = String::new();
    for (i, row) in grid.iter().enumerate() {
        let label = top * (height - 1 - i) as f64 / (height - 1) as f64;
        out.push_str(&format!("{label:6.1} |{}\n", row.iter().collect::<String>().trim_end()));
    }
    out.push_str(&format!("       +{}\n", "-".repeat(width)));
    out.push_str(&format!("        0 s{:>w$}\n", format!("{t_end:.0} s"), w = width - 3));
    out
}

/// The same two series as a small standalone SVG (no scripts, no external resources).
fn svg_plot(samples: &[Sample], title: &str) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 320.0, 60.0, 20.0, 40.0, 40.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let mib = |k: u64| k as f64 / 1024.0;
    let y_max = samples.iter().map(|s| mib(s.1.max(s.2))).fold(1.0, f64::max) * 1.2;
    let y_step =
        [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0].into_iter().find(|s| y_max / s <= 8.0).unwrap_or(500.0);
    let y_max = (y_max / y_step).ceil() * y_step;
    let t_end = samples.last().map_or(1.0, |s| s.0).max(1.0);
    let t_step =
        [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0].into_iter().find(|s| t_end / s <= 10.0).unwrap_or(3600.0);
    let x = |t: f64| left + t / t_end * pw;
    let y = |v: f64| top + ph - v / y_max * ph;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"20\" font-size=\"14\">{}</text>\n",
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    let mut v = 0.0;
    while v <= y_max + 1e-9 {
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0} MiB</text>\n",
            left + pw,
            left - 6.0,
            y(v) + 4.0,
            yy = y(v)
        ));
        v += y_step;
    }
    let mut t = 0.0;
    while t <= t_end + 1e-9 {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t:.0} s</text>\n",
            x(t),
            top + ph + 18.0
        ));
        t += t_step;
    }
    svg.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\n"
    ));
    for (pick, color, name, ly) in [(1usize, "#c0392b", "hub process", 0.0), (2, "#2471a3", "client process", 16.0)] {
        let points: Vec<String> =
            samples.iter().map(|s| format!("{:.1},{:.1}", x(s.0), y(mib(if pick == 1 { s.1 } else { s.2 })))).collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{name}</text>\n",
            points.join(" "),
            left + pw - 110.0,
            top + 16.0 + ly
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
