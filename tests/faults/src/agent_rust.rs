//! The Rust core's agent: the same protocol as tests/faults/agents/agent.{c,py,mjs}, written
//! against edgemodule-core's public API. It runs as a child process (this executable re-run
//! with [`ARG`]), like the other bindings' agents, so a fault or a hang in it is contained the
//! same way.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemodule_core::{ClientOptions, Message, MethodInvocation, ModuleClient, Qos, Result as EdgeResult, RetryPolicy};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::clock::mono_ns;

/// The first argument that turns an executable of this crate into the Rust agent.
pub const ARG: &str = "__fault-agent-rust";

/// Runs the agent and exits when this process was started as one; returns otherwise. Call it
/// first thing in `main` of every executable that may be used as the Rust agent.
pub fn run_if_requested() {
    if std::env::args().nth(1).as_deref() != Some(ARG) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let code = match rt.block_on(main()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fault-agent-rust: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn num(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

fn say(line: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

async fn main() -> Result<(), String> {
    let transport = var("FAULT_TRANSPORT")?.parse().map_err(|e| format!("FAULT_TRANSPORT: {e}"))?;
    let mut options = ClientOptions::default()
        .with_transport(transport)
        .with_mqtt_port(num("FAULT_MQTT_PORT", 8883)? as u16)
        .with_https_port(num("FAULT_HTTPS_PORT", 443)? as u16)
        .with_amqp_port(num("FAULT_AMQP_PORT", 5671)? as u16)
        .with_default_timeout(Duration::from_millis(num("FAULT_TIMEOUT_MS", 30_000)?))
        .with_connect_timeout(Duration::from_millis(num("FAULT_CONNECT_TIMEOUT_MS", 10_000)?))
        .with_retry(RetryPolicy::ExponentialBackoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(500),
            give_up_after: None,
        });
    let ttl = num("FAULT_SAS_TTL", 0)?;
    if ttl > 0 {
        options = options.with_sas_ttl(Duration::from_secs(ttl), Duration::from_secs(num("FAULT_SAS_MARGIN", 1)?));
    }
    let ca = std::fs::read_to_string(var("FAULT_CA_FILE")?).map_err(|e| format!("reading the CA: {e}"))?;
    let client = ModuleClient::from_connection_string(&var("FAULT_CS")?, Some(&ca), options)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut state = client.connection_state();
    tokio::spawn(async move {
        loop {
            let s = *state.borrow_and_update();
            say(format_args!("state {} {} {}", u8::from(s.is_connected()), s.reason.name(), mono_ns()));
            if state.changed().await.is_err() {
                return;
            }
        }
    });
    match var("FAULT_MODE")?.as_str() {
        "send" => send(client).await,
        "deadlines" => deadlines(client).await,
        other => Err(format!("unknown FAULT_MODE {other}")),
    }
}

/// N numbered sends, at most `window` unacknowledged, optionally paced at `rate` per second.
async fn send(client: ModuleClient) -> Result<(), String> {
    let (n, window, rate) = (num("FAULT_N", 1000)?, num("FAULT_WINDOW", 100)? as usize, num("FAULT_RATE", 0)?);
    say(format_args!("ready"));
    let slots = Arc::new(tokio::sync::Semaphore::new(window));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0..n {
        if rate > 0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / rate as f64)).await;
            // pacing
        }
        let slot = slots.clone().acquire_owned().await.expect("semaphore");
        let c = client.clone();
        tasks.spawn(async move {
            let r = c.send_to_output("out", Message::new(seq.to_string())).await;
            let at = mono_ns();
            match r {
                Ok(()) => say(format_args!("ack {seq} {at}")),
                Err(e) => say(format_args!("err {seq} {} {at}", e.kind().name())),
            }
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    say(format_args!("done"));
    client.close().await.map_err(|e| e.to_string())
}

fn report<T>(op: &str, started: Instant, r: &EdgeResult<T>) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let code = match r {
        Ok(_) => "OK",
        Err(e) => e.kind().name(),
    };
    say(format_args!("op {op} {code} {ms:.1}"));
}

/// Every call with a deadline, against the stalled hub, then one send after the stall.
async fn deadlines(client: ModuleClient) -> Result<(), String> {
    let d = Duration::from_millis(num("FAULT_DEADLINE_MS", 1000)?);
    client.get_twin(None).await.map_err(|e| format!("get_twin before the stall: {e}"))?;
    say(format_args!("ready"));
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let go =
        |l: Option<String>| if l.as_deref() == Some("go") { Ok(()) } else { Err(format!("expected go, got {l:?}")) };
    go(stdin.next_line().await.map_err(|e| e.to_string())?)?;

    let invoke = {
        let c = client.clone();
        let mut call = MethodInvocation::new("ping", json!(null));
        call.response_timeout = Duration::from_secs(num("FAULT_INVOKE_RESPONSE_S", 5)?);
        tokio::spawn(async move {
            let t = Instant::now();
            let device = c.device_id().to_string();
            let r = c.invoke_method(&device, Some("receiver"), &call).await;
            report("invoke", t, &r);
        })
    };
    let t = Instant::now();
    report("send", t, &client.send_to_output_with_timeout("out", Message::new("x"), Some(d)).await);
    let t = Instant::now();
    let batch = vec![Message::new("a"), Message::new("b"), Message::new("c")];
    report("send_batch", t, &client.send_batch_to_output("out", batch, Some(d)).await);
    let t = Instant::now();
    report("get_twin", t, &client.get_twin(Some(d)).await);
    let t = Instant::now();
    report("patch_reported", t, &client.update_reported(&json!({"stalled": true}), Some(d)).await);
    let t = Instant::now();
    report("publish", t, &client.publish_with_timeout("faults/x", "x", Qos::AtLeastOnce, false, Some(d)).await);
    let t = Instant::now();
    report("subscribe", t, &client.subscribe_with("faults/#", Qos::AtLeastOnce, Some(d)).await);
    let t = Instant::now();
    report("unsubscribe", t, &client.unsubscribe_with_timeout("faults/#", Some(d)).await);
    let t = Instant::now();
    report("recv", t, &client.recv(Some(d)).await);
    let _ = invoke.await;
    say(format_args!("stalled-done"));

    go(stdin.next_line().await.map_err(|e| e.to_string())?)?;
    let t = Instant::now();
    report("after_send", t, &client.send_to_output("out", Message::new("after")).await);
    say(format_args!("done"));
    client.close().await.map_err(|e| e.to_string())
}
