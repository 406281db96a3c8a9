//! Deadlines in every binding: an agent connects through the proxy, the driver stalls all
//! traffic (MQTT and HTTPS), and the agent calls every public operation that has a deadline.
//! Each must fail with the binding's TIMEOUT error (C `EDGE_STATUS_TIMEOUT`, Python
//! `edgemodule.errors.OperationTimeoutError` with `.code == "TIMEOUT"`, Node `err.code ===
//! 'TIMEOUT'`, Rust `ErrorKind::Timeout`) no earlier than its deadline and no later than the
//! deadline plus a small margin. After the stall ends the same client sends again.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::bindings::{Agent, Binding, Env, Program, Transport};
use crate::hub::HubProcess;
use crate::proxy::Proxy;

/// The deadline given to every call (or to the client, where the binding has no per-call one).
pub const DEADLINE: Duration = Duration::from_millis(1000);
/// Connect timeout of the agent's client (it also bounds the HTTPS connect of `invoke`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// `invoke` is called with the smallest response timeout the hub accepts (5 s) and no connect
/// timeout; the core bounds the whole call by connect timeout + response timeout + 2 s.
pub const INVOKE_RESPONSE: Duration = Duration::from_secs(5);
pub const INVOKE_SLACK: Duration = Duration::from_secs(2);

/// The calls each agent must report, by binding. Agents also report calls their binding gained
/// since (Python and Node report `publish`/`subscribe`/`unsubscribe` once their package has
/// them); every reported call is checked.
pub fn expected_ops(binding: Binding) -> Vec<&'static str> {
    match binding {
        Binding::Rust => vec![
            "send",
            "send_batch",
            "get_twin",
            "patch_reported",
            "publish",
            "subscribe",
            "unsubscribe",
            "recv",
            "invoke",
        ],
        Binding::C => vec![
            "send",
            "send_batch",
            "get_twin",
            "get_twin_string",
            "patch_reported",
            "publish",
            "subscribe",
            "unsubscribe",
            "invoke",
        ],
        Binding::Python => vec![
            "sync.send",
            "sync.send_batch",
            "sync.get_twin",
            "sync.patch_reported",
            "sync.receive",
            "sync.invoke",
            "async.send",
            "async.send_batch",
            "async.get_twin",
            "async.patch_reported",
            "async.receive",
            "async.invoke",
        ],
        Binding::Node => vec!["send", "send_batch", "get_twin", "patch_reported", "invoke"],
    }
}

#[derive(Debug, Clone)]
pub struct OpResult {
    pub op: String,
    pub code: String,
    pub took: Duration,
    /// Must not return before this…
    pub earliest: Duration,
    /// …nor after this (deadline + margin).
    pub latest: Duration,
}

impl OpResult {
    /// The deadline the call should honour: the one it was given, or for `invoke` the bound
    /// the core puts on the whole call.
    pub fn nominal(&self) -> Duration {
        if self.op.ends_with("invoke") {
            CONNECT_TIMEOUT + INVOKE_RESPONSE + INVOKE_SLACK
        } else {
            self.earliest
        }
    }

    pub fn ok(&self) -> bool {
        self.code == "TIMEOUT" && self.took + Duration::from_millis(20) >= self.earliest && self.took <= self.latest
    }
}

#[derive(Debug, Clone)]
pub struct DeadlineReport {
    pub binding: Binding,
    pub ops: Vec<OpResult>,
    /// The first send after the stall ended (same client): `OK` expected.
    pub after: String,
    pub problems: Vec<String>,
}

impl DeadlineReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn table_header() -> String {
        "| binding | call | deadline | returned | took | overshoot |\n|---|---|---:|---|---:|---:|".into()
    }

    pub fn table_rows(&self) -> String {
        let rows: Vec<String> = self
            .ops
            .iter()
            .map(|o| {
                let bound = o.nominal();
                format!(
                    "| {} | `{}` | {} ms | {}{} | {:.0} ms | {:+.0} ms |",
                    self.binding.label(),
                    o.op,
                    bound.as_millis(),
                    o.code,
                    if o.ok() { "" } else { " (FAIL)" },
                    o.took.as_secs_f64() * 1e3,
                    (o.took.as_secs_f64() - bound.as_secs_f64()) * 1e3
                )
            })
            .collect();
        rows.join("\n")
    }
}

/// Runs the deadline check of one binding; `margin` is how late a call may return.
pub async fn run(
    env: &Env,
    program: &Program,
    binding: Binding,
    transport: Transport,
    margin: Duration,
) -> Result<DeadlineReport, String> {
    let hub_exe = env.hub_exe()?;
    // User topics `faults/#` are open to every module, so the publish and subscribe the stall
    // held are accepted once it ends.
    let deployment = json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"sender": {}, "sender2": {}, "receiver": {}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.2", "routes": {
            "r": "FROM /messages/modules/sender/outputs/out INTO BrokeredEndpoint(\"/modules/receiver/inputs/in\")"
        }, "mqttBroker": {"authorizations": [
            {"identities": ["{{iot:identity}}"], "allow": [
                {"operations": ["mqtt:connect"]},
                {"operations": ["mqtt:publish", "mqtt:subscribe"], "resources": ["faults/#"]}
            ]}
        ]}}}
    }});
    let hub = HubProcess::start(&hub_exe, &deployment).await?;
    let limit = Duration::from_secs(90);
    match tokio::time::timeout(limit, drive(&hub, program, binding, transport, margin)).await {
        Ok(r) => r.map_err(|e| format!("{e}\n-- hub log:\n{}", hub.log_tail())),
        Err(_) => Err(format!("the deadline check did not finish within {limit:?}")),
    }
}

async fn drive(
    hub: &HubProcess,
    program: &Program,
    binding: Binding,
    transport: Transport,
    margin: Duration,
) -> Result<DeadlineReport, String> {
    // The HTTPS port (invoke) is proxied and stalled too.
    let mqtt = Proxy::start(transport.hub_port(hub)?).await;
    let https = Proxy::start(hub.https_port).await;
    let vars = [
        ("FAULT_MODE", "deadlines".to_string()),
        ("FAULT_CS", hub.connection_string("sender")),
        // A second module for agents that connect two clients (Python: blocking and asyncio).
        ("FAULT_CS2", hub.connection_string("sender2")),
        ("FAULT_CA_FILE", hub.ca_file().display().to_string()),
        ("FAULT_MQTT_PORT", mqtt.port.to_string()),
        ("FAULT_HTTPS_PORT", https.port.to_string()),
        ("FAULT_TRANSPORT", transport.name().to_string()),
        ("FAULT_DEADLINE_MS", DEADLINE.as_millis().to_string()),
        ("FAULT_TIMEOUT_MS", "20000".to_string()),
        ("FAULT_CONNECT_TIMEOUT_MS", CONNECT_TIMEOUT.as_millis().to_string()),
        ("FAULT_INVOKE_RESPONSE_S", INVOKE_RESPONSE.as_secs().to_string()),
    ];
    let mut agent = Agent::spawn(program, &vars)?;
    let step = Duration::from_secs(30);
    loop {
        let line = agent.next_line(step).await?;
        if line == "ready" {
            break;
        }
        if let Some(why) = line.strip_prefix("skip ") {
            return Err(format!("skip: {why}"));
        }
        if !line.starts_with("state ") && !line.starts_with("log ") {
            return Err(format!("unexpected line before ready: {line}"));
        }
    }
    mqtt.stall(true);
    https.stall(true);
    agent.tell("go").await?;
    let stalled_at = Instant::now();
    let mut ops = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let line = agent.next_line(step).await.map_err(|e| format!("{e}\n-- agent output so far: {seen:?}"))?;
        seen.push(line.clone());
        if line == "stalled-done" {
            break;
        }
        if let Some(rest) = line.strip_prefix("op ") {
            let f: Vec<&str> = rest.split(' ').collect();
            let (Some(op), Some(code), Some(ms)) = (f.first(), f.get(1), f.get(2).and_then(|m| m.parse::<f64>().ok()))
            else {
                return Err(format!("bad op line: {line}"));
            };
            let (earliest, latest) = if op.ends_with("invoke") {
                (INVOKE_RESPONSE, CONNECT_TIMEOUT + INVOKE_RESPONSE + INVOKE_SLACK + margin)
            } else {
                (DEADLINE, DEADLINE + margin)
            };
            ops.push(OpResult {
                op: op.to_string(),
                code: code.to_string(),
                took: Duration::from_secs_f64(ms / 1e3),
                earliest,
                latest,
            });
        }
    }
    let stalled_for = stalled_at.elapsed();
    mqtt.stall(false);
    https.stall(false);
    agent.tell("go").await?;
    let mut after = String::from("(none)");
    loop {
        let line = agent.next_line(step).await?;
        if line == "done" {
            break;
        }
        if let Some(rest) = line.strip_prefix("op after_send ") {
            after = rest.split(' ').next().unwrap_or("").to_string();
        }
    }
    agent.finish(Duration::from_secs(20)).await?;

    let mut problems = Vec::new();
    for want in expected_ops(binding) {
        if !ops.iter().any(|o| o.op == want) {
            problems.push(format!("{want}: not reported"));
        }
    }
    for o in ops.iter().filter(|o| !o.ok()) {
        problems.push(format!(
            "{}: {} after {:.0} ms (expected TIMEOUT within {}–{} ms)",
            o.op,
            o.code,
            o.took.as_secs_f64() * 1e3,
            o.earliest.as_millis(),
            o.latest.as_millis()
        ));
    }
    if after != "OK" {
        problems.push(format!("the send after the stall ended returned {after}"));
    }
    if stalled_for > Duration::from_secs(60) {
        problems.push(format!("the calls took {stalled_for:?} in all"));
    }
    Ok(DeadlineReport { binding, ops, after, problems })
}
