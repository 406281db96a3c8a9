//! One cell of the fault matrix: a binding's sender agent sends N numbered QoS 1 messages on
//! output `out`, routed by a real hub process to input `in` of a receiver (the Rust core, in
//! this process); both clients connect through the fault proxy. The driver injects the
//! scenario's fault while traffic flows and then checks that no acknowledged message was lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgemodule_core::{ClientOptions, ModuleClient, RetryPolicy};
use serde_json::json;
use tokio::sync::watch;

use crate::bindings::{Agent, Binding, Env, Program, Transport};
use crate::clock::mono_ns;
use crate::hub::HubProcess;
use crate::proxy::Proxy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Every connection is cut three times (at 1/4, 1/2 and 3/4 of the acknowledgements).
    Cuts,
    /// All traffic is held for `Plan::stall` at 1/2, connections stay open.
    Stall,
    /// The hub process gets SIGKILL at 1/3 and is started again on the same state dir and port.
    Kill9,
    /// SAS tokens live a few seconds, so both clients renew (reconnect) during the traffic.
    TokenTtl,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [Scenario::Cuts, Scenario::Stall, Scenario::Kill9, Scenario::TokenTtl];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cuts => "cuts",
            Scenario::Stall => "stall",
            Scenario::Kill9 => "kill9",
            Scenario::TokenTtl => "token_ttl",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn describe(self, plan: &Plan) -> String {
        match self {
            Scenario::Cuts => "3 connection cuts".into(),
            Scenario::Stall => format!("{} s stall", plan.stall.as_secs_f64()),
            Scenario::Kill9 => "hub kill -9 + restart".into(),
            Scenario::TokenTtl => format!("token TTL {} s (renewal {} s before expiry)", plan.ttl.0, plan.ttl.1),
        }
    }
}

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Messages per cell.
    pub n: usize,
    /// Sends awaiting acknowledgement at once.
    pub window: usize,
    /// Send rate (msg/s): steady traffic, so each fault lands in the middle of it rather than
    /// after a fast sender has already finished.
    pub rate: u64,
    pub stall: Duration,
    /// SAS token lifetime and renewal margin, seconds (token_ttl scenario).
    pub ttl: (u64, u64),
    /// Send rate in the token_ttl scenario (msg/s), so the traffic spans several renewals.
    pub ttl_rate: u64,
    /// Token renewals the sender must have gone through in the token_ttl scenario.
    pub min_renewals: usize,
    /// The whole cell must finish within this.
    pub limit: Duration,
}

impl Plan {
    /// The test-command variant: small N, 2 s stall.
    pub fn short() -> Plan {
        Plan {
            n: 1000,
            window: 50,
            rate: 400,
            stall: Duration::from_secs(2),
            ttl: (6, 3),
            ttl_rate: 120,
            min_renewals: 1,
            limit: Duration::from_secs(120),
        }
    }

    /// The RELIABILITY.md variant: 10,000 messages, 10 s stall.
    pub fn long() -> Plan {
        Plan {
            n: 10_000,
            window: 100,
            rate: 1000,
            stall: Duration::from_secs(10),
            ttl: (6, 3),
            ttl_rate: 400,
            min_renewals: 3,
            limit: Duration::from_secs(900),
        }
    }
}

/// What one cell measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub binding: Binding,
    pub transport: Transport,
    pub scenario: Scenario,
    pub sent: usize,
    pub acked: usize,
    pub failed: usize,
    /// Distinct sequence numbers the receiver got.
    pub delivered: usize,
    /// Delivered although the send was not acknowledged (allowed: stored, then the ack was lost).
    pub delivered_unacked: usize,
    /// Acknowledged but never delivered: must be 0.
    pub lost: usize,
    pub duplicates: u64,
    /// Faults the sender went through (injected, or token renewals).
    pub faults: usize,
    pub disconnects: usize,
    pub renewals: usize,
    /// Seconds from the first to the last acknowledgement.
    pub traffic_secs: f64,
    /// Per fault: fault end → first acknowledgement after the sender was connected again.
    pub recovery_ms: Vec<Option<f64>>,
    pub elapsed: Duration,
    /// Checks that failed (empty = pass).
    pub problems: Vec<String>,
    pub first_error: Option<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn max_recovery_ms(&self) -> Option<f64> {
        self.recovery_ms.iter().flatten().copied().reduce(f64::max)
    }

    pub fn table_header() -> String {
        "| binding | transport | scenario | sent | acknowledged | delivered | lost | duplicates | faults seen | time to recover (max) | run time | result |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|".into()
    }

    pub fn table_row(&self, plan: &Plan) -> String {
        let recover = match self.max_recovery_ms() {
            Some(ms) => format!("{ms:.0} ms"),
            None => "–".into(),
        };
        let faults = match self.scenario {
            Scenario::TokenTtl if self.transport.renews_in_place() => format!(
                "renewed in place ({:.1} token lifetimes, {} disconnects)",
                self.traffic_secs / plan.ttl.0 as f64,
                self.disconnects
            ),
            Scenario::TokenTtl => format!("{} renewals", self.renewals),
            _ => format!("{} ({} disconnects)", self.faults, self.disconnects),
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} |",
            self.binding.label(),
            self.transport.name(),
            self.scenario.describe(plan),
            self.sent,
            self.acked,
            self.delivered,
            self.lost,
            self.duplicates,
            faults,
            recover,
            self.elapsed.as_secs_f64(),
            if self.passed() { "pass".to_string() } else { format!("FAIL: {}", self.problems.join("; ")) }
        )
    }
}

/// The sender's events, as parsed from its stdout.
#[derive(Debug, Default)]
struct Tally {
    acks: Vec<(u64, u64)>,
    errors: Vec<(u64, String, u64)>,
    /// (connected, reason, t)
    states: Vec<(bool, String, u64)>,
    ready: bool,
    done: bool,
    skip: Option<String>,
    bad_lines: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Progress {
    acked: usize,
    ready: bool,
    done: bool,
    ended: bool,
}

fn deployment() -> serde_json::Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"sender": {}, "receiver": {}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
            "faults": "FROM /messages/modules/sender/outputs/out INTO BrokeredEndpoint(\"/modules/receiver/inputs/in\")"
        }}}
    }})
}

/// Runs one cell. `Err` means the cell could not run at all (or was skipped by the agent:
/// `Err("skip: …")`); a run whose checks failed is an `Ok` report with `problems`.
pub async fn run(
    env: &Env,
    program: &Program,
    binding: Binding,
    transport: Transport,
    scenario: Scenario,
    plan: &Plan,
) -> Result<Report, String> {
    let hub_exe = env.hub_exe()?;
    let mut hub = HubProcess::start(&hub_exe, &deployment()).await?;
    let outcome = tokio::time::timeout(plan.limit, drive(&mut hub, program, binding, transport, scenario, plan)).await;
    match outcome {
        Ok(r) => r.map_err(|e| format!("{e}\n-- hub log:\n{}", hub.log_tail())),
        Err(_) => Err(format!("the cell did not finish within {:?}\n-- hub log:\n{}", plan.limit, hub.log_tail())),
    }
}

async fn drive(
    hub: &mut HubProcess,
    program: &Program,
    binding: Binding,
    transport: Transport,
    scenario: Scenario,
    plan: &Plan,
) -> Result<Report, String> {
    let started = Instant::now();
    let proxy = Proxy::start(transport.hub_port(hub)?).await;
    let (mqtt_port, https_port, amqp_port) = transport.ports(hub, proxy.port);
    let ttl = (scenario == Scenario::TokenTtl).then_some(plan.ttl);

    // The receiver: the Rust core, on the same transport, through the same proxy.
    let mut options = ClientOptions::default()
        .with_transport(transport.name().parse().map_err(|e| format!("transport: {e}"))?)
        .with_mqtt_port(mqtt_port)
        .with_https_port(https_port)
        .with_amqp_port(amqp_port)
        .with_default_timeout(Duration::from_secs(60))
        .with_connect_timeout(Duration::from_secs(2))
        .with_retry(RetryPolicy::ExponentialBackoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(500),
            give_up_after: None,
        });
    if let Some((t, m)) = ttl {
        options = options.with_sas_ttl(Duration::from_secs(t), Duration::from_secs(m));
    }
    let receiver =
        ModuleClient::from_connection_string(&hub.connection_string("receiver"), Some(&hub.ca_pem()), options)
            .await
            .map_err(|e| format!("connecting the receiver: {e}"))?;
    let mut input = receiver.input_receiver("in").map_err(|e| e.to_string())?;
    let delivered: Arc<Mutex<HashMap<u64, u32>>> = Default::default();
    let (deliveries_tx, mut deliveries) = watch::channel(0usize);
    let receiving = {
        let delivered = delivered.clone();
        tokio::spawn(async move {
            while let Some(m) = input.recv().await {
                let seq = std::str::from_utf8(m.message().body()).ok().and_then(|s| s.parse::<u64>().ok());
                let _ = m.complete();
                if let Some(seq) = seq {
                    *delivered.lock().unwrap().entry(seq).or_default() += 1;
                }
                deliveries_tx.send_modify(|n| *n += 1);
            }
        })
    };

    // The sender: the binding's agent.
    let rate = if scenario == Scenario::TokenTtl { plan.ttl_rate } else { plan.rate };
    let vars = [
        ("FAULT_MODE", "send".to_string()),
        ("FAULT_CS", hub.connection_string("sender")),
        ("FAULT_CA_FILE", hub.ca_file().display().to_string()),
        ("FAULT_MQTT_PORT", mqtt_port.to_string()),
        ("FAULT_HTTPS_PORT", https_port.to_string()),
        ("FAULT_AMQP_PORT", amqp_port.to_string()),
        ("FAULT_TRANSPORT", transport.name().to_string()),
        ("FAULT_N", plan.n.to_string()),
        ("FAULT_WINDOW", plan.window.to_string()),
        ("FAULT_RATE", rate.to_string()),
        ("FAULT_SAS_TTL", ttl.map_or(0, |t| t.0).to_string()),
        ("FAULT_SAS_MARGIN", ttl.map_or(0, |t| t.1).to_string()),
        ("FAULT_TIMEOUT_MS", "60000".to_string()),
        ("FAULT_CONNECT_TIMEOUT_MS", "2000".to_string()),
    ];
    let mut agent = Agent::spawn(program, &vars)?;
    let tally: Arc<Mutex<Tally>> = Default::default();
    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let mut lines = std::mem::replace(&mut agent.lines, tokio::sync::mpsc::unbounded_channel().1);
    let reading = {
        let tally = tally.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                let mut t = tally.lock().unwrap();
                parse_line(&mut t, &line);
                let p = Progress { acked: t.acks.len(), ready: t.ready, done: t.done, ended: false };
                drop(t);
                progress_tx.send_replace(p);
            }
            progress_tx.send_modify(|p| p.ended = true);
        })
    };

    let wait_acked = |progress: &mut watch::Receiver<Progress>, k: usize| {
        let mut progress = progress.clone();
        async move {
            let p = *progress
                .wait_for(|p| p.acked >= k || p.done || p.ended)
                .await
                .map_err(|_| "the sender's output ended".to_string())?;
            if p.acked < k {
                return Err(format!("the sender finished or exited with {} of {k} acknowledgements", p.acked));
            }
            Ok::<(), String>(())
        }
    };
    let skipped = |tally: &Arc<Mutex<Tally>>| tally.lock().unwrap().skip.clone();
    // Wait for the agent to connect (or to say it cannot run this transport).
    progress.wait_for(|p| p.ready || p.ended).await.map_err(|e| e.to_string())?;
    if let Some(why) = skipped(&tally) {
        return Err(format!("skip: {why}"));
    }
    if !progress.borrow().ready {
        let _ = agent.finish(Duration::from_secs(5)).await;
        return Err(format!("the sender did not connect; stderr:\n{}", agent.stderr_tail()));
    }

    // Inject the fault while the traffic flows.
    let n = plan.n;
    let mut faults: Vec<(u64, u64)> = Vec::new();
    let not_done = |p: &watch::Receiver<Progress>, what: &str| {
        if p.borrow().done {
            Err(format!("the traffic ended before {what}; use a larger N"))
        } else {
            Ok(())
        }
    };
    match scenario {
        Scenario::Cuts => {
            for k in 1..=3 {
                wait_acked(&mut progress, k * n / 4).await.map_err(|e| with_stderr(e, &agent))?;
                not_done(&progress, "a cut")?;
                let t = mono_ns();
                proxy.cut_all();
                faults.push((t, t));
            }
        }
        Scenario::Stall => {
            wait_acked(&mut progress, n / 2).await.map_err(|e| with_stderr(e, &agent))?;
            not_done(&progress, "the stall")?;
            let t0 = mono_ns();
            proxy.stall(true);
            tokio::time::sleep(plan.stall).await; // the fault's duration
            proxy.stall(false);
            faults.push((t0, mono_ns()));
        }
        Scenario::Kill9 => {
            wait_acked(&mut progress, n / 3).await.map_err(|e| with_stderr(e, &agent))?;
            not_done(&progress, "the kill")?;
            let t0 = mono_ns();
            hub.kill9().await;
            hub.restart().await?;
            faults.push((t0, mono_ns()));
        }
        Scenario::TokenTtl => {}
    }

    // The sender finishes on its own; then every acknowledged message must arrive.
    progress.wait_for(|p| p.done || p.ended).await.map_err(|e| e.to_string())?;
    agent.finish(Duration::from_secs(30)).await?;
    let _ = reading.await;
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    if !tally.bad_lines.is_empty() {
        return Err(format!(
            "unexpected lines from the sender: {:?}",
            &tally.bad_lines[..tally.bad_lines.len().min(5)]
        ));
    }
    let acked: std::collections::HashSet<u64> = tally.acks.iter().map(|a| a.0).collect();
    let all_arrived = |d: &HashMap<u64, u32>| acked.iter().all(|s| d.contains_key(s));
    let drain = tokio::time::timeout(Duration::from_secs(60), async {
        while !all_arrived(&delivered.lock().unwrap()) {
            if deliveries.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    let _ = drain; // a timeout shows up as lost messages below
    let _ = receiver.close().await;
    receiving.abort();

    // The figures.
    let d = delivered.lock().unwrap().clone();
    let lost = acked.iter().filter(|s| !d.contains_key(s)).count();
    let duplicates: u64 = d.values().map(|c| u64::from(c.saturating_sub(1))).sum();
    let delivered_unacked = d.keys().filter(|s| !acked.contains(s)).count();
    let disconnects = tally.states.iter().filter(|s| !s.0).filter(|s| s.1 != "CLOSED").count();
    let renewals = tally.states.iter().filter(|s| !s.0 && s.1 == "EXPIRED_TOKEN").count();
    if scenario == Scenario::TokenTtl {
        faults = tally.states.iter().filter(|s| !s.0 && s.1 == "EXPIRED_TOKEN").map(|s| (s.2, s.2)).collect();
    }
    let mut ack_times: Vec<u64> = tally.acks.iter().map(|a| a.1).collect();
    ack_times.sort_unstable();
    let traffic_secs = match (ack_times.first(), ack_times.last()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let recovery_ms: Vec<Option<f64>> = (0..faults.len())
        .map(|i| {
            let next = faults.get(i + 1).map_or(u64::MAX, |f| f.0);
            recovery(faults[i], next, &tally.states, &ack_times)
        })
        .collect();

    let mut problems = Vec::new();
    if lost > 0 {
        let mut some: Vec<u64> = acked.iter().filter(|s| !d.contains_key(s)).copied().collect();
        some.sort_unstable();
        some.truncate(10);
        problems.push(format!("{lost} acknowledged messages never delivered (e.g. {some:?})"));
    }
    if tally.acks.len() + tally.errors.len() != n {
        problems.push(format!(
            "{} sends resolved of {n} ({} acks, {} errors)",
            tally.acks.len() + tally.errors.len(),
            tally.acks.len(),
            tally.errors.len()
        ));
    }
    if acked.len() != tally.acks.len() {
        problems.push("a sequence number was acknowledged twice".into());
    }
    if !tally.errors.is_empty() {
        problems.push(format!(
            "{} sends failed although their deadline (60 s) outlasts the fault (first: {} {})",
            tally.errors.len(),
            tally.errors[0].0,
            tally.errors[0].1
        ));
    }
    match scenario {
        Scenario::Cuts if disconnects < 3 => problems.push(format!("the sender saw {disconnects} disconnects, not 3")),
        Scenario::Kill9 if disconnects < 1 => problems.push("the sender never saw the hub go away".into()),
        Scenario::TokenTtl if transport.renews_in_place() => {
            // No reconnect to count: the proof is that the connection outlived its first token
            // (the hub closes a connection whose token expires) with nothing lost.
            if disconnects > 0 {
                problems.push(format!("{disconnects} disconnects although tokens are renewed in place"));
            }
            if traffic_secs < 1.25 * plan.ttl.0 as f64 {
                problems.push(format!("the traffic lasted {traffic_secs:.1} s, under 1.25 token lifetimes"));
            }
        }
        Scenario::TokenTtl if renewals < plan.min_renewals => problems
            .push(format!("{renewals} token renewals during the traffic, expected at least {}", plan.min_renewals)),
        _ => {}
    }
    if scenario != Scenario::TokenTtl {
        if let Some(i) = recovery_ms.iter().position(Option::is_none) {
            let (start, end) = faults[i];
            let before = ack_times.partition_point(|&t| t < start);
            let last = ack_times.last().map_or(0.0, |&t| (t as f64 - end as f64) / 1e6);
            problems.push(format!(
                "no acknowledgement after fault {} ({before} of {n} acknowledged before it began, the last {last:+.0} ms from its end)",
                i + 1
            ));
        }
    }
    Ok(Report {
        binding,
        transport,
        scenario,
        sent: n,
        acked: acked.len(),
        failed: tally.errors.len(),
        delivered: d.len(),
        delivered_unacked,
        lost,
        duplicates,
        faults: faults.len(),
        disconnects,
        renewals,
        traffic_secs,
        recovery_ms,
        elapsed: started.elapsed(),
        problems,
        first_error: tally.errors.first().map(|e| format!("{} {}", e.0, e.1)),
    })
}

fn with_stderr(e: String, agent: &Agent) -> String {
    format!("{e}; sender stderr:\n{}", agent.stderr_tail())
}

/// Fault end → the first acknowledgement once the sender was connected again: if the sender
/// lost its connection during the fault, the clock for "recovered" starts at its reconnect (an
/// acknowledgement still buffered from the old connection does not count).
fn recovery(fault: (u64, u64), next_fault: u64, states: &[(bool, String, u64)], acks: &[u64]) -> Option<f64> {
    let (start, end) = fault;
    // CLOSED is the client's own close at the end, not a consequence of the fault.
    let disconnect = states.iter().find(|s| !s.0 && s.1 != "CLOSED" && s.2 >= start && s.2 < next_fault);
    let anchor = match disconnect {
        Some(d) => states.iter().find(|s| s.0 && s.2 >= d.2)?.2.max(end),
        None => end,
    };
    let i = acks.partition_point(|&t| t < anchor);
    acks.get(i).map(|&t| (t - end) as f64 / 1e6)
}

fn parse_line(t: &mut Tally, line: &str) {
    let mut it = line.split(' ');
    let head = it.next().unwrap_or("");
    let rest: Vec<&str> = it.collect();
    let num = |i: usize| rest.get(i).and_then(|s| s.parse::<u64>().ok());
    match (head, rest.len()) {
        ("ack", 2) => match (num(0), num(1)) {
            (Some(seq), Some(at)) => t.acks.push((seq, at)),
            _ => t.bad_lines.push(line.into()),
        },
        ("err", 3) => match (num(0), num(2)) {
            (Some(seq), Some(at)) => t.errors.push((seq, rest[1].to_string(), at)),
            _ => t.bad_lines.push(line.into()),
        },
        ("state", 3) => match num(2) {
            Some(at) => t.states.push((rest[0] == "1", rest[1].to_string(), at)),
            None => t.bad_lines.push(line.into()),
        },
        ("ready", 0) => t.ready = true,
        ("done", _) => t.done = true,
        ("skip", _) => t.skip = Some(rest.join(" ")),
        ("log", _) => {}
        _ => t.bad_lines.push(line.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_starts_at_the_reconnect_when_the_sender_lost_its_connection() {
        let states =
            vec![(true, "OK".to_string(), 0), (false, "COMMUNICATION_ERROR".into(), 110), (true, "OK".into(), 150)];
        // An ack at 105 came from the old connection; the first after the reconnect is at 160.
        let acks = [90, 105, 160, 170];
        assert_eq!(recovery((100, 100), u64::MAX, &states, &acks), Some(60.0 / 1e6));
        // No disconnect during a stall: the first ack after its end.
        assert_eq!(recovery((120, 140), u64::MAX, &states[..1], &acks), Some(20.0 / 1e6));
        assert_eq!(recovery((200, 200), u64::MAX, &states, &acks), None);
        // The client closing at the end is not a disconnect caused by the fault.
        let closed = vec![(true, "OK".to_string(), 0), (false, "CLOSED".into(), 500)];
        assert_eq!(recovery((120, 140), u64::MAX, &closed, &acks), Some(20.0 / 1e6));
    }

    #[test]
    fn lines_are_parsed() {
        let mut t = Tally::default();
        for l in ["ready", "ack 3 100", "err 4 TIMEOUT 120", "state 0 EXPIRED_TOKEN 130", "done", "bogus"] {
            parse_line(&mut t, l);
        }
        assert!(t.ready && t.done);
        assert_eq!(t.acks, vec![(3, 100)]);
        assert_eq!(t.errors, vec![(4, "TIMEOUT".to_string(), 120)]);
        assert_eq!(t.states, vec![(false, "EXPIRED_TOKEN".to_string(), 130)]);
        assert_eq!(t.bad_lines, vec!["bogus".to_string()]);
    }
}
