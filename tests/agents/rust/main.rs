//! The Rust conformance agent: reads one command per line on stdin (`verb key=value ...`, values
//! percent-encoded), calls one public `edgemodule_core` operation per command and prints one
//! result line (`ok key=value ...` or `err CODE message`), plus `event ...` lines for deliveries.
//! See tests/xlang/README.md for the protocol.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgemodule_core::{
    ClientOptions, Error, InputMessage, Message, MethodInvocation, MethodRequest, ModuleClient, Qos, SystemProperty,
    Transport,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use xlang::line::{enc, parse_fields};

const FEATURES: &str = "recv,handler_defer,method_defer,invoke";

fn say(line: String) {
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[derive(Default)]
struct Held {
    next: u64,
    messages: HashMap<String, InputMessage>,
    methods: HashMap<String, MethodRequest>,
}

impl Held {
    fn id(&mut self) -> String {
        self.next += 1;
        self.next.to_string()
    }
}

type Shared = Arc<Mutex<Held>>;

fn message_fields(m: &Message) -> String {
    let mut s = format!("body={}", enc(&String::from_utf8_lossy(m.body())));
    for (key, p) in [
        ("input", m.input_name()),
        ("mid", m.message_id()),
        ("cid", m.correlation_id()),
        ("ct", m.content_type()),
        ("ce", m.content_encoding()),
        ("cmid", m.connection_module_id()),
    ] {
        if let Some(v) = p {
            s.push_str(&format!(" {key}={}", enc(v)));
        }
    }
    s.push_str(&format!(" nprops={}", m.properties().len()));
    for (k, v) in m.properties() {
        s.push_str(&format!(" p.{}={}", enc(k), enc(v)));
    }
    s
}

fn options(a: &HashMap<String, String>) -> Result<ClientOptions, Error> {
    let mut o = ClientOptions::default();
    let num = |k: &str| a.get(k).and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = num("timeout_ms") {
        o = o.with_default_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = num("connect_timeout_ms") {
        o = o.with_connect_timeout(Duration::from_millis(ms));
    }
    if let (Some(ttl), Some(margin)) = (num("sas_ttl"), num("sas_margin")) {
        o = o.with_sas_ttl(Duration::from_secs(ttl), Duration::from_secs(margin));
    }
    if let Some(p) = num("mqtt_port") {
        o = o.with_mqtt_port(p as u16);
    }
    if let Some(p) = num("https_port") {
        o = o.with_https_port(p as u16);
    }
    if let Some(p) = num("amqp_port") {
        o = o.with_amqp_port(p as u16);
    }
    if let Some(t) = a.get("transport") {
        o = o.with_transport(t.parse::<Transport>()?);
    }
    if let Some(url) = a.get("proxy") {
        o = o.with_proxy(url);
    }
    Ok(o)
}

fn json_arg(a: &HashMap<String, String>, k: &str) -> Result<Value, Fail> {
    match a.get(k) {
        None => Ok(Value::Null),
        Some(t) => serde_json::from_str(t).map_err(|e| bad(format!("agent: {k} is not JSON: {e}"))),
    }
}

/// Why a command failed: the binding's error, or the agent's own (reported as code AGENT so it
/// can never pass for a binding's error code).
enum Fail {
    Edge(Error),
    Agent(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Edge(e)
    }
}

fn bad(msg: String) -> Fail {
    Fail::Agent(msg)
}

fn need<'a>(a: &'a HashMap<String, String>, k: &str) -> Result<&'a str, Fail> {
    a.get(k).map(String::as_str).ok_or_else(|| bad(format!("missing argument {k}")))
}

fn timeout(a: &HashMap<String, String>) -> Option<Duration> {
    a.get("timeout_ms").and_then(|v| v.parse().ok()).map(Duration::from_millis)
}

async fn run(
    verb: &str,
    a: &HashMap<String, String>,
    client: &mut Option<ModuleClient>,
    held: &Shared,
) -> Result<String, Fail> {
    let c = || client.clone().ok_or_else(|| bad("not connected".into()));
    match verb {
        "connect_env" => {
            *client = Some(ModuleClient::from_environment(options(a)?).await?);
            Ok(String::new())
        }
        "connect_cs" => {
            let ca = a.get("ca").map(String::as_str);
            *client = Some(ModuleClient::from_connection_string(need(a, "cs")?, ca, options(a)?).await?);
            Ok(String::new())
        }
        "ids" => {
            let c = c()?;
            Ok(format!("device={} module={}", enc(c.device_id()), enc(c.module_id())))
        }
        "close" => Ok(c()?.close().await.map(|_| String::new())?),
        "send" => {
            let body = match a.get("body_size") {
                Some(n) => "x".repeat(n.parse().unwrap_or(0)),
                None => a.get("body").cloned().unwrap_or_default(),
            };
            let mut m = Message::new(body.into_bytes());
            for (k, p) in [
                ("mid", SystemProperty::MessageId),
                ("cid", SystemProperty::CorrelationId),
                ("ct", SystemProperty::ContentType),
                ("ce", SystemProperty::ContentEncoding),
            ] {
                if let Some(v) = a.get(k) {
                    m.set_system(p, Some(v.clone()));
                }
            }
            let mut props: Vec<_> = a.iter().filter_map(|(k, v)| k.strip_prefix("p.").map(|k| (k, v))).collect();
            props.sort();
            for (k, v) in props {
                m.set_property(k, v.clone());
            }
            Ok(c()?.send_to_output_with_timeout(need(a, "output")?, m, timeout(a)).await.map(|_| String::new())?)
        }
        "on_input" => {
            let handler = a.get("input").cloned().unwrap_or_else(|| "*".into());
            let defer = a.get("mode").map(String::as_str) == Some("defer");
            let c = c()?;
            let held = held.clone();
            if handler == "*" {
                tokio::spawn(async move {
                    while let Ok(m) = c.recv(None).await {
                        deliver(&held, "*", m, defer);
                    }
                });
            } else {
                let mut rx = c.input_receiver(&handler)?;
                tokio::spawn(async move {
                    while let Some(m) = rx.recv().await {
                        deliver(&held, &handler, m, defer);
                    }
                });
            }
            Ok(String::new())
        }
        "recv" => {
            let c = c()?;
            let t = timeout(a);
            let m = match a.get("input") {
                None => c.recv(t).await?,
                Some(i) => {
                    let mut rx = c.input_receiver(i)?;
                    let next = rx.recv();
                    match t {
                        Some(t) => tokio::time::timeout(t, next)
                            .await
                            .map_err(|_| Error::new(edgemodule_core::ErrorKind::Timeout, "recv timed out"))?,
                        None => next.await,
                    }
                    .ok_or_else(|| Error::new(edgemodule_core::ErrorKind::Closed, "closed"))?
                }
            };
            let mut h = held.lock().unwrap();
            let id = h.id();
            let fields = message_fields(m.message());
            h.messages.insert(id.clone(), m);
            Ok(format!("id={id} {fields}"))
        }
        "complete" | "abandon" | "reject" => {
            let h = held.lock().unwrap();
            let m = h.messages.get(need(a, "id")?).ok_or_else(|| bad("unknown id".into()))?;
            let settled = match verb {
                "complete" => m.complete(),
                "abandon" => m.abandon(),
                _ => m.reject(),
            };
            Ok(settled.map(|_| String::new())?)
        }
        "on_method" => {
            let handler = a.get("name").cloned().unwrap_or_else(|| "*".into());
            let defer = a.get("mode").map(String::as_str) == Some("defer");
            let status: i64 = a.get("status").and_then(|s| s.parse().ok()).unwrap_or(200);
            let mut rx = c()?.method_receiver(a.get("name").map(String::as_str))?;
            let held = held.clone();
            tokio::spawn(async move {
                while let Some(r) = rx.recv().await {
                    let payload = String::from_utf8_lossy(r.payload()).into_owned();
                    let to_answer = {
                        let mut h = held.lock().unwrap();
                        let id = h.id();
                        say(format!(
                            "event method handler={} name={} id={id} payload={}",
                            enc(&handler),
                            enc(r.name()),
                            enc(&payload)
                        ));
                        if defer {
                            h.methods.insert(id, r);
                            None
                        } else {
                            Some(r)
                        }
                    };
                    if let Some(r) = to_answer {
                        let reply = json!({ "handler": handler, "request": r.payload_json().unwrap_or(Value::Null) });
                        let _ = r.respond(status, Some(&reply)).await;
                    }
                }
            });
            Ok(String::new())
        }
        "respond" => {
            let r = held.lock().unwrap().methods.remove(need(a, "id")?).ok_or_else(|| bad("unknown id".into()))?;
            let status = need(a, "status")?.parse().map_err(|_| bad("status".into()))?;
            Ok(r.respond(status, Some(&json_arg(a, "payload")?)).await.map(|_| String::new())?)
        }
        "on_desired" => {
            let mut rx = c()?.desired_receiver()?;
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    say(format!("event desired patch={}", enc(&p.to_string())));
                }
            });
            Ok(String::new())
        }
        "get_twin" => {
            let t = c()?.get_twin(timeout(a)).await?;
            Ok(format!("twin={}", enc(&json!({ "desired": t.desired, "reported": t.reported }).to_string())))
        }
        "patch_reported" => {
            Ok(c()?.update_reported(&json_arg(a, "patch")?, timeout(a)).await.map(|_| String::new())?)
        }
        "invoke" => {
            let mut call = MethodInvocation::new(need(a, "method")?, json_arg(a, "payload")?);
            if let Some(s) = a.get("response_timeout").and_then(|s| s.parse().ok()) {
                call.response_timeout = Duration::from_secs(s);
            }
            if let Some(s) = a.get("connect_timeout").and_then(|s| s.parse().ok()) {
                call.connect_timeout = Duration::from_secs(s);
            }
            let r = c()?.invoke_method(need(a, "device")?, a.get("module").map(String::as_str), &call).await?;
            Ok(format!("status={} payload={}", r.status, enc(&r.payload.to_string())))
        }
        "publish" => {
            let payload = match a.get("payload_size") {
                Some(n) => "x".repeat(n.parse().unwrap_or(0)),
                None => a.get("payload").cloned().unwrap_or_default(),
            };
            let qos = match a.get("qos") {
                Some(q) => Qos::try_from(q.parse::<i64>().map_err(|_| bad(format!("qos {q:?} is not a number")))?)?,
                None => Qos::default(),
            };
            let retain = a.get("retain").map(String::as_str) == Some("true");
            c()?.publish_with_timeout(need(a, "topic")?, payload.into_bytes(), qos, retain, timeout(a)).await?;
            Ok(String::new())
        }
        "subscribe" => {
            let filter = need(a, "filter")?.to_string();
            let mut rx = c()?.subscribe(&filter).await?;
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    say(format!(
                        "event topic filter={} topic={} payload={} qos={} retain={}",
                        enc(&filter),
                        enc(&m.topic),
                        enc(&String::from_utf8_lossy(&m.payload)),
                        m.qos as u8,
                        m.retain
                    ));
                }
            });
            Ok(String::new())
        }
        "unsubscribe" => Ok(c()?.unsubscribe(need(a, "filter")?).await.map(|_| String::new())?),
        other => Err(bad(format!("unknown verb {other}"))),
    }
}

fn deliver(held: &Shared, handler: &str, m: InputMessage, defer: bool) {
    let mut h = held.lock().unwrap();
    let id = h.id();
    say(format!("event msg handler={} id={id} {}", enc(handler), message_fields(m.message())));
    if defer {
        h.messages.insert(id, m);
    } else {
        let _ = m.complete();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    say(format!("hello lang=rust features={FEATURES}"));
    let held: Shared = Arc::default();
    let mut client = None;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_start();
        let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if verb.is_empty() {
            continue;
        }
        if verb == "quit" {
            break;
        }
        let args = parse_fields(rest);
        match run(verb, &args, &mut client, &held).await {
            Ok(fields) if fields.is_empty() => say("ok".into()),
            Ok(fields) => say(format!("ok {fields}")),
            Err(Fail::Edge(e)) => say(format!("err {} {}", e.kind().name(), e.message().replace('\n', " "))),
            Err(Fail::Agent(m)) => say(format!("err AGENT {m}")),
        }
    }
    if let Some(c) = client {
        let _ = c.close().await;
    }
}
