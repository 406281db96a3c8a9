//! Walks one scenario against one agent: hub steps run here, client steps go to the agent.

use std::collections::HashMap;
use std::time::Duration;

use edgemodule_core::{
    ClientOptions, InputMessage, Message, MethodRequest, ModuleClient, Qos, SystemProperty, TopicMessage, Transport,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::agent::{Agent, Event, Reply, Started};
use super::hub::{Hub, AGENT, PEER};
use super::proto::{check_fields, matches, message_fields, subst_str, substitute, topic_fields, Fields};

/// A scenario file, parsed.
pub struct Scenario {
    pub requires: Vec<String>,
    pub agent_desired: Value,
    /// The hub's broker policy (`$edgeHub` desired `mqttBroker`), if the scenario uses user topics.
    pub mqtt_broker: Option<Value>,
    pub timeout: Duration,
    pub steps: Vec<Value>,
    /// Transports the scenario cannot apply to, with the reason (`skip_transports`).
    pub skip_transports: Vec<(Transport, String)>,
}

impl Scenario {
    pub fn load(path: &std::path::Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let requires = v["requires"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let steps = v["steps"].as_array().cloned().ok_or_else(|| format!("{}: no steps", path.display()))?;
        let mut skip_transports = Vec::new();
        if let Some(skips) = v.get("skip_transports") {
            let skips = skips
                .as_object()
                .ok_or_else(|| format!("{}: skip_transports must map transport names to reasons", path.display()))?;
            for (name, reason) in skips {
                let transport = name.parse::<Transport>().map_err(|e| format!("{}: {e}", path.display()))?;
                match reason.as_str() {
                    Some(r) if !r.trim().is_empty() => skip_transports.push((transport, r.to_string())),
                    _ => return Err(format!("{}: skip_transports.{name} needs a reason", path.display())),
                }
            }
        }
        Ok(Scenario {
            requires,
            agent_desired: v.get("agent_desired").cloned().unwrap_or_else(|| serde_json::json!({ "threshold": 25 })),
            mqtt_broker: v.get("mqtt_broker").cloned(),
            timeout: Duration::from_secs(v["timeout_s"].as_u64().unwrap_or(120)),
            steps,
            skip_transports,
        })
    }

    /// Why the scenario does not run over `transport`, if it declared so.
    pub fn skip_reason(&self, transport: Transport) -> Option<&str> {
        self.skip_transports.iter().find(|(t, _)| *t == transport).map(|(_, r)| r.as_str())
    }
}

pub enum Outcome {
    Passed,
    Skipped(String),
}

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// The connect verbs: the driver adds `transport=<the trial's transport>` to them unless the step
/// names a transport itself.
const CONNECT_VERBS: &[&str] = &["connect_cs", "connect_env"];

struct Run {
    hub: Hub,
    transport: Transport,
    agent: Box<Agent>,
    vars: HashMap<String, String>,
    events: Vec<Event>,
    client_async: HashMap<String, u64>,
    hub_async: HashMap<String, JoinHandle<Fields>>,
    peer: Option<ModuleClient>,
    peer_inputs: HashMap<String, mpsc::UnboundedReceiver<InputMessage>>,
    peer_methods: Vec<JoinHandle<()>>,
    /// The peer's user-topic subscriptions, by filter.
    peer_topics: HashMap<String, mpsc::UnboundedReceiver<TopicMessage>>,
    /// Bodies the peer has received per input: delivery is at-least-once, so a redelivery of
    /// one of these after a reconnect is not an error.
    peer_seen: HashMap<String, Vec<String>>,
}

pub async fn run(
    scenario: &Scenario,
    transport: Transport,
    program: &std::path::Path,
    args: &[String],
) -> Result<Outcome, String> {
    let hub = Hub::start(&scenario.agent_desired, scenario.mqtt_broker.as_ref()).await?;
    // Over any transport but MQTT over TLS, the agent is told an MQTT port nothing listens on
    // (`${mqtt_port}`, EDGEMODULE_MQTT_PORT), and over any but AMQP over TLS an AMQP port nothing
    // listens on (`${amqp_port}`, EDGEMODULE_AMQP_PORT), so a binding that ignored the transport
    // option could not connect and the trial fails instead of silently testing another transport.
    let agent_mqtt_port = match transport {
        Transport::Mqtt => hub.mqtt_port,
        _ => closed_port()?,
    };
    let agent_amqp_port = match transport {
        Transport::Amqp => hub.amqp_port,
        _ => closed_port()?,
    };
    let mut env = hub.module_env(AGENT)?;
    env.insert("EDGEMODULE_MQTT_PORT".into(), agent_mqtt_port.to_string());
    env.insert("EDGEMODULE_AMQP_PORT".into(), agent_amqp_port.to_string());
    let agent = match Agent::start(program, args, &env).await? {
        Started::Skip(reason) => {
            hub_down(hub).await;
            return Ok(Outcome::Skipped(reason));
        }
        Started::Agent(a) => a,
    };
    if let Some(missing) = scenario.requires.iter().find(|f| !agent.features.contains(f)) {
        let _ = agent.quit().await;
        hub_down(hub).await;
        return Ok(Outcome::Skipped(format!("agent lacks feature '{missing}'")));
    }
    let mut vars = HashMap::new();
    vars.insert("device".into(), hub.device_id());
    vars.insert("module".into(), AGENT.into());
    vars.insert("peer".into(), PEER.into());
    vars.insert("cs".into(), hub.connection_string(AGENT, None));
    vars.insert(
        "cs_bad_key".into(),
        hub.connection_string(AGENT, Some("d3JvbmctYnV0LXdlbGwtZm9ybWVkLWtleS0wMTIzNDU2Nzg=")),
    );
    vars.insert("ca".into(), hub.ca_pem());
    vars.insert("mqtt_port".into(), agent_mqtt_port.to_string());
    vars.insert("https_port".into(), hub.https_port.to_string());
    vars.insert("amqp_port".into(), agent_amqp_port.to_string());
    vars.insert("transport".into(), transport.name().into());
    // A JSON string of 140 000 characters: over the 128 KB method payload limit.
    vars.insert("big_json".into(), format!("\"{}\"", "x".repeat(140_000)));
    let mut run = Run {
        hub,
        transport,
        agent,
        vars,
        events: Vec::new(),
        client_async: HashMap::new(),
        hub_async: HashMap::new(),
        peer: None,
        peer_inputs: HashMap::new(),
        peer_methods: Vec::new(),
        peer_topics: HashMap::new(),
        peer_seen: HashMap::new(),
    };
    let result = tokio::time::timeout(scenario.timeout, run.steps(&scenario.steps)).await;
    let result = match result {
        Ok(r) => r,
        Err(_) => Err(format!("the scenario exceeded its {} s bound", scenario.timeout.as_secs())),
    };
    let result = result.map_err(|e| format!("{e}\n{}", run.agent.diagnostics()));
    let finished = run.finish().await;
    result?;
    finished.map(|_| Outcome::Passed)
}

/// A loopback port with no listener.
fn closed_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

async fn hub_down(mut hub: Hub) {
    hub.down().await;
}

fn describe(i: usize, step: &Value) -> String {
    let actor = step["actor"].as_str().unwrap_or("?");
    let verb = step["do"].as_str().unwrap_or("?");
    match step["note"].as_str() {
        Some(n) => format!("step {} ({actor} {verb}: {n})", i + 1),
        None => format!("step {} ({actor} {verb})", i + 1),
    }
}

fn millis(step: &Value, key: &str, default: Duration) -> Duration {
    step[key].as_u64().map(Duration::from_millis).unwrap_or(default)
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, String> {
    args[key].as_str().ok_or_else(|| format!("argument '{key}' is required"))
}

/// An argument as text, whether the scenario wrote it as a string, a number or a boolean.
fn text_arg(args: &Value, key: &str) -> Option<String> {
    match &args[key] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Run {
    async fn steps(&mut self, steps: &[Value]) -> Result<(), String> {
        for (i, step) in steps.iter().enumerate() {
            let result = match step["actor"].as_str() {
                Some("client") => self.client_step(step).await,
                Some("hub") => self.hub_step(step).await,
                _ => Err("actor must be 'client' or 'hub'".into()),
            };
            result.map_err(|e| format!("{} failed: {e}", describe(i, step)))?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<(), String> {
        if let Some(p) = self.peer.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), p.close()).await;
        }
        for t in self.peer_methods.drain(..) {
            t.abort();
        }
        for (_, t) in self.hub_async.drain() {
            t.abort();
        }
        let quit = self.agent.quit().await;
        self.hub.down().await;
        quit
    }

    fn args(&self, step: &Value) -> Value {
        substitute(&step["args"], &self.vars)
    }

    /// Checks a reply against the step's `error` / `expect`, and captures fields.
    fn judge(&mut self, step: &Value, reply: Reply) -> Result<(), String> {
        match (reply, step["error"].as_str()) {
            (Reply::Err { code, message }, Some(want)) => {
                if code == want || want == "*" {
                    Ok(())
                } else {
                    Err(format!("expected error {want}, got {code}: {message}"))
                }
            }
            (Reply::Ok(fields), Some(want)) => Err(format!("expected error {want}, got ok {fields:?}")),
            (Reply::Err { code, message }, None) => Err(format!("expected ok, got error {code}: {message}")),
            (Reply::Ok(fields), None) => self.expect_and_capture(step, &fields),
        }
    }

    fn expect_and_capture(&mut self, step: &Value, fields: &Fields) -> Result<(), String> {
        if let Some(expect) = step.get("expect") {
            check_fields(&substitute(expect, &self.vars), fields)?;
        }
        if let Some(capture) = step["capture"].as_object() {
            for (var, field) in capture {
                let field = field.as_str().unwrap_or_default();
                let v = fields.get(field).ok_or_else(|| format!("cannot capture missing field {field}"))?;
                self.vars.insert(var.clone(), v.clone());
            }
        }
        Ok(())
    }

    async fn client_step(&mut self, step: &Value) -> Result<(), String> {
        let verb = step["do"].as_str().ok_or("'do' is required")?;
        let timeout = millis(step, "timeout_ms", STEP_TIMEOUT);
        match verb {
            "event" => {
                let kind = step["kind"].as_str().unwrap_or("msg");
                let want = substitute(step.get("match").unwrap_or(&Value::Object(Map::new())), &self.vars);
                let ev = self.next_event(kind, &want, timeout).await?;
                self.expect_and_capture(step, &ev.fields)
            }
            "no_event" => {
                let kind = step["kind"].as_str().unwrap_or("msg");
                let want = substitute(step.get("match").unwrap_or(&Value::Object(Map::new())), &self.vars);
                let window = millis(step, "for_ms", Duration::from_millis(1000));
                match self.next_event(kind, &want, window).await {
                    Ok(ev) => Err(format!("unexpected event {kind} {:?}", ev.fields)),
                    Err(_) => Ok(()),
                }
            }
            "await" => {
                let tag = step["tag"].as_str().ok_or("'tag' is required")?;
                let seq = self.client_async.remove(tag).ok_or_else(|| format!("no pending command '{tag}'"))?;
                let reply = self.agent.reply(seq, timeout).await?;
                self.judge(step, reply)
            }
            _ => {
                let mut args = Vec::new();
                if let Some(obj) = self.args(step).as_object() {
                    for (k, v) in obj {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        args.push((k.clone(), text));
                    }
                }
                if CONNECT_VERBS.contains(&verb) && !args.iter().any(|(k, _)| k == "transport") {
                    args.push(("transport".into(), self.transport.name().into()));
                }
                let seq = self.agent.send(verb, &args).await?;
                if let Some(tag) = step["async"].as_str() {
                    self.client_async.insert(tag.to_string(), seq);
                    return Ok(());
                }
                let reply = self.agent.reply(seq, timeout).await?;
                self.judge(step, reply)
            }
        }
    }

    /// The first event of `kind` matching `want`, buffered or arriving within `timeout`.
    async fn next_event(&mut self, kind: &str, want: &Value, timeout: Duration) -> Result<Event, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|e| e.kind == kind && matches(want, &e.fields)) {
                return Ok(self.events.remove(i));
            }
            match tokio::time::timeout_at(deadline, self.agent.events.recv()).await {
                Ok(Some(e)) => self.events.push(e),
                Ok(None) => return Err("the agent exited".into()),
                Err(_) => {
                    let seen: Vec<String> =
                        self.events.iter().filter(|e| e.kind == kind).map(|e| format!("{:?}", e.fields)).collect();
                    return Err(format!(
                        "no '{kind}' event matching {want} within {} ms; unmatched '{kind}' events: [{}]",
                        timeout.as_millis(),
                        seen.join(", ")
                    ));
                }
            }
        }
    }

    fn peer(&self) -> Result<&ModuleClient, String> {
        self.peer.as_ref().ok_or_else(|| "the peer is not connected (hub do peer_connect first)".to_string())
    }

    async fn hub_step(&mut self, step: &Value) -> Result<(), String> {
        let verb = step["do"].as_str().ok_or("'do' is required")?;
        let args = self.args(step);
        let timeout = millis(step, "timeout_ms", STEP_TIMEOUT);
        match verb {
            "sleep" => {
                tokio::time::sleep(Duration::from_millis(args["ms"].as_u64().unwrap_or(100))).await;
                Ok(())
            }
            "stop" => {
                self.hub.down().await;
                Ok(())
            }
            "start" | "restart" => {
                if verb == "restart" {
                    self.hub.down().await;
                }
                if let Some(d) = args.get("agent_desired") {
                    self.hub.write_deployment(d)?;
                }
                self.hub.up().await
            }
            "peer_connect" => {
                let options = ClientOptions::default()
                    .with_mqtt_port(self.hub.mqtt_port)
                    .with_https_port(self.hub.https_port)
                    .with_default_timeout(Duration::from_secs(15))
                    .with_connect_timeout(Duration::from_secs(5));
                let cs = self.hub.connection_string(PEER, None);
                let client = ModuleClient::from_connection_string(&cs, Some(&self.hub.ca_pem()), options)
                    .await
                    .map_err(|e| format!("peer connect: {e}"))?;
                self.peer = Some(client);
                Ok(())
            }
            "peer_input" => {
                let input = str_arg(&args, "input")?;
                let rx = self.peer()?.input_receiver(input).map_err(|e| e.to_string())?;
                self.peer_inputs.insert(input.to_string(), rx);
                Ok(())
            }
            "peer_expect" => {
                let input = str_arg(&args, "input")?.to_string();
                let want = substitute(step.get("match").unwrap_or(&Value::Object(Map::new())), &self.vars);
                let rx = self.peer_inputs.get_mut(&input).ok_or_else(|| format!("no peer_input {input}"))?;
                let m = tokio::time::timeout(timeout, rx.recv())
                    .await
                    .map_err(|_| format!("the peer received nothing on {input} within {} ms", timeout.as_millis()))?
                    .ok_or("the peer's receiver closed")?;
                let _ = m.complete();
                let fields = message_fields(m.message());
                check_fields(&want, &fields).map_err(|e| format!("{e}; message {fields:?}"))?;
                self.expect_and_capture(step, &fields)
            }
            "peer_expect_bodies" => {
                let input = str_arg(&args, "input")?.to_string();
                let mut missing: Vec<String> = args["bodies"]
                    .as_array()
                    .ok_or("'bodies' must be an array")?
                    .iter()
                    .filter_map(|b| b.as_str().map(str::to_string))
                    .collect();
                let seen = self.peer_seen.entry(input.clone()).or_default();
                let mut allowed = missing.clone();
                allowed.extend(seen.iter().cloned());
                seen.extend(missing.iter().cloned());
                let rx = self.peer_inputs.get_mut(&input).ok_or_else(|| format!("no peer_input {input}"))?;
                let deadline = tokio::time::Instant::now() + timeout;
                while !missing.is_empty() {
                    let m = tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .map_err(|_| format!("the peer never received {missing:?} on {input} (silent loss)"))?
                        .ok_or("the peer's receiver closed")?;
                    let _ = m.complete();
                    let body = String::from_utf8_lossy(m.message().body()).into_owned();
                    if !allowed.contains(&body) {
                        return Err(format!("the peer received an unexpected body {body:?} on {input}"));
                    }
                    missing.retain(|b| *b != body);
                }
                Ok(())
            }
            "peer_no_message" => {
                let input = str_arg(&args, "input")?.to_string();
                let window = millis(step, "for_ms", Duration::from_millis(1000));
                let rx = self.peer_inputs.get_mut(&input).ok_or_else(|| format!("no peer_input {input}"))?;
                match tokio::time::timeout(window, rx.recv()).await {
                    Ok(Some(m)) => Err(format!("the peer unexpectedly received {:?}", message_fields(m.message()))),
                    _ => Ok(()),
                }
            }
            "peer_send" => {
                let output = str_arg(&args, "output")?;
                let mut m = Message::new(args["body"].as_str().unwrap_or("").as_bytes().to_vec());
                for (k, p) in [
                    ("mid", SystemProperty::MessageId),
                    ("cid", SystemProperty::CorrelationId),
                    ("ct", SystemProperty::ContentType),
                    ("ce", SystemProperty::ContentEncoding),
                ] {
                    if let Some(v) = args[k].as_str() {
                        m.set_system(p, Some(v.to_string()));
                    }
                }
                if let Some(props) = args["props"].as_object() {
                    for (k, v) in props {
                        m.set_property(k.clone(), v.as_str().unwrap_or_default());
                    }
                }
                let peer = self.peer()?.clone();
                tokio::time::timeout(timeout, peer.send_to_output(output, m))
                    .await
                    .map_err(|_| "peer send timed out".to_string())?
                    .map_err(|e| format!("peer send: {e}"))
            }
            "peer_method" => {
                // Registers a handler that receives calls and never answers them.
                let name = str_arg(&args, "name")?;
                let mut rx = self.peer()?.method_receiver(Some(name)).map_err(|e| e.to_string())?;
                self.peer_methods.push(tokio::spawn(async move {
                    let mut held: Vec<MethodRequest> = Vec::new();
                    while let Some(r) = rx.recv().await {
                        held.push(r);
                    }
                }));
                Ok(())
            }
            "peer_publish" => {
                let topic = str_arg(&args, "topic")?;
                let payload = args["payload"].as_str().unwrap_or("").as_bytes().to_vec();
                let qos = match text_arg(&args, "qos").as_deref() {
                    Some("0") => Qos::AtMostOnce,
                    _ => Qos::AtLeastOnce,
                };
                let retain = text_arg(&args, "retain").as_deref() == Some("true");
                let peer = self.peer()?.clone();
                peer.publish_with_timeout(topic, payload, qos, retain, Some(timeout))
                    .await
                    .map_err(|e| format!("peer publish: {e}"))
            }
            "peer_subscribe" => {
                let filter = str_arg(&args, "filter")?.to_string();
                let peer = self.peer()?.clone();
                let rx = peer.subscribe(&filter).await.map_err(|e| format!("peer subscribe: {e}"))?;
                self.peer_topics.insert(filter, rx);
                Ok(())
            }
            "peer_expect_topic" => {
                let filter = str_arg(&args, "filter")?.to_string();
                let want = substitute(step.get("match").unwrap_or(&Value::Object(Map::new())), &self.vars);
                let rx = self.peer_topics.get_mut(&filter).ok_or_else(|| format!("no peer_subscribe {filter}"))?;
                let m = tokio::time::timeout(timeout, rx.recv())
                    .await
                    .map_err(|_| format!("the peer received nothing on {filter} within {} ms", timeout.as_millis()))?
                    .ok_or("the peer's subscription closed")?;
                let fields = topic_fields(&m);
                check_fields(&want, &fields).map_err(|e| format!("{e}; message {fields:?}"))?;
                self.expect_and_capture(step, &fields)
            }
            "inject" => {
                let input = str_arg(&args, "input")?;
                let mut req = serde_json::json!({
                    "cmd": "send", "module": AGENT, "input": input, "body": args["body"].as_str().unwrap_or("")
                });
                if let Some(p) = args.get("props") {
                    req["properties"] = p.clone();
                }
                let socket = edgemodule_hub::state::StateDir::open(self.hub.dir.path())
                    .map_err(|e| e.to_string())?
                    .control_socket_path();
                let answer = edgemodule_hub::control::request(&socket, &req).await?;
                if answer["ok"] != Value::Bool(true) {
                    return Err(format!("inject failed: {answer}"));
                }
                Ok(())
            }
            "patch_desired" => {
                let patch = args["patch"].as_object().ok_or("'patch' must be an object")?.clone();
                self.hub.hub()?.patch_desired(AGENT, &patch).await.map(|_| ())
            }
            "twin" => {
                let doc = self.hub.hub()?.twin_document(AGENT).await.ok_or("the agent module has no twin")?;
                let mut fields = Fields::new();
                fields.insert("twin".into(), doc.to_string());
                self.expect_and_capture(step, &fields)
            }
            "invoke" => {
                let hub = self.hub.hub()?.clone();
                let method = str_arg(&args, "method")?.to_string();
                let payload = serde_json::to_vec(&args["payload"]).unwrap();
                let response = Duration::from_secs(args["timeout"].as_u64().unwrap_or(10));
                let connect = Duration::from_secs(args["connect_timeout"].as_u64().unwrap_or(0));
                let call = tokio::spawn(async move {
                    let mut f = Fields::new();
                    match hub.invoke_method(AGENT, &method, payload, response, connect).await {
                        Ok(o) => {
                            f.insert("status".into(), o.status.to_string());
                            f.insert("payload".into(), o.payload.unwrap_or_else(|| "null".into()));
                        }
                        Err(e) => {
                            f.insert("http".into(), e.http_status.to_string());
                            f.insert("error".into(), e.message);
                        }
                    }
                    f
                });
                if let Some(tag) = step["async"].as_str() {
                    self.hub_async.insert(tag.to_string(), call);
                    return Ok(());
                }
                let fields = tokio::time::timeout(timeout.max(response + connect + Duration::from_secs(5)), call)
                    .await
                    .map_err(|_| "the invocation did not finish".to_string())?
                    .map_err(|e| e.to_string())?;
                self.expect_and_capture(step, &fields)
            }
            "await" => {
                let tag = step["tag"].as_str().ok_or("'tag' is required")?;
                let call = self.hub_async.remove(tag).ok_or_else(|| format!("no pending hub call '{tag}'"))?;
                let fields = tokio::time::timeout(timeout, call)
                    .await
                    .map_err(|_| format!("hub call '{tag}' did not finish"))?
                    .map_err(|e| e.to_string())?;
                self.expect_and_capture(step, &fields)
            }
            other => Err(format!("unknown hub verb '{}'", subst_str(other, &self.vars))),
        }
    }
}
