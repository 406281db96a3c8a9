//! The hub process is killed with SIGKILL in the middle of 10,000 QoS 1 sends and started again
//! on the same state dir: every send the core client reported as acknowledged must reach the
//! receiver (at least once), and every other send must have failed with an error; nothing is
//! lost silently.

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgemodule_core::{ClientOptions, Message, ModuleClient, RetryPolicy};
use edgemodule_hub::state::StateDir;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::json;

const TOTAL: usize = 10_000;

struct HubProcess {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl HubProcess {
    fn start() -> HubProcess {
        let dir = tempfile::tempdir().unwrap();
        StateDir::init(dir.path(), "localhost").unwrap();
        let deployment = json!({"modulesContent": {
            "$edgeAgent": {"properties.desired": {"modules": {"sender": {}, "receiver": {}}}},
            "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
                "r": "FROM /messages/modules/sender/outputs/* INTO BrokeredEndpoint(\"/modules/receiver/inputs/in\")"
            }}}
        }});
        std::fs::write(dir.path().join("deployment.json"), deployment.to_string()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut hub = HubProcess { dir, port, child: None };
        hub.spawn();
        hub
    }

    fn spawn(&mut self) {
        let state = self.dir.path();
        let child = Command::new(env!("CARGO_BIN_EXE_edgemodule-hub"))
            .arg("--state-dir")
            .arg(state)
            .args(["start", "--https-port", "0", "--mqtt-port", &self.port.to_string(), "--deployment"])
            .arg(state.join("deployment.json"))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL: no shutdown, no flush
        child.wait().unwrap();
    }

    /// Waits until the hub answers on its control socket (keys exist, listeners are bound).
    async fn ready(&self) {
        let socket = self.dir.path().join("control.sock");
        for _ in 0..200 {
            if edgemodule_hub::control::request(&socket, &json!({"cmd": "status"})).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the hub did not start");
    }

    async fn client(&self, module: &str) -> ModuleClient {
        self.ready().await;
        let state = StateDir::open(self.dir.path()).unwrap();
        let id = state.identity();
        let cs = format!(
            "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={};GatewayHostName=localhost",
            id.hub_host_name,
            id.device_id,
            state.module_key(module).unwrap().unwrap()
        );
        let options = ClientOptions::default()
            .with_mqtt_port(self.port)
            .with_default_timeout(Duration::from_secs(60))
            .with_connect_timeout(Duration::from_secs(2))
            .with_retry(RetryPolicy::ExponentialBackoff {
                initial: Duration::from_millis(20),
                max: Duration::from_millis(300),
                give_up_after: Some(Duration::from_secs(30)),
            });
        // The hub may still be starting: retry the first connection for a while.
        for _ in 0..100 {
            if let Ok(c) =
                ModuleClient::from_connection_string(&cs, Some(&state.ca_pem().unwrap()), options.clone()).await
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("could not connect to the hub");
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ten_thousand_sends_loses_no_acknowledged_message() {
    tokio::time::timeout(Duration::from_secs(240), run()).await.expect("test exceeded 240 s");
}

async fn run() {
    let mut hub = HubProcess::start();
    let sender = hub.client("sender").await;
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let sends = {
        let (sender, acked_so_far) = (sender.clone(), acked_so_far.clone());
        tokio::spawn(async move {
            let mut results: Vec<Option<edgemodule_core::Result<()>>> = (0..TOTAL).map(|_| None).collect();
            let mut in_flight = FuturesUnordered::new();
            for i in 0..TOTAL {
                if in_flight.len() >= 100 {
                    let (j, r): (usize, edgemodule_core::Result<()>) = in_flight.next().await.unwrap();
                    if r.is_ok() {
                        acked_so_far.fetch_add(1, Ordering::Relaxed);
                    }
                    results[j] = Some(r);
                }
                let s = sender.clone();
                in_flight.push(async move { (i, s.send_to_output("out", Message::new(i.to_string())).await) });
            }
            while let Some((j, r)) = in_flight.next().await {
                results[j] = Some(r);
            }
            results
        })
    };
    while acked_so_far.load(Ordering::Relaxed) < 2_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub.kill9();
    hub.spawn();
    let results = sends.await.unwrap();
    let acked: HashSet<usize> =
        results.iter().enumerate().filter(|(_, r)| matches!(r, Some(Ok(())))).map(|(i, _)| i).collect();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(acked.len() + failed.len(), TOTAL, "every send resolved one way or the other");

    let receiver = hub.client("receiver").await;
    let mut input = receiver.input_receiver("in").unwrap();
    let mut seen = HashSet::new();
    let mut deliveries = 0usize;
    while !acked.is_subset(&seen) {
        let m = tokio::time::timeout(Duration::from_secs(30), input.recv())
            .await
            .unwrap_or_else(|_| panic!("lost: {} acknowledged sends never arrived", acked.difference(&seen).count()))
            .unwrap();
        deliveries += 1;
        seen.insert(std::str::from_utf8(m.message().body()).unwrap().parse::<usize>().unwrap());
        m.complete().unwrap();
    }
    eprintln!(
        "kill -9: {} acknowledged, {} failed with an error, {} delivered ({} duplicates), 0 lost",
        acked.len(),
        failed.len(),
        deliveries,
        deliveries - seen.len()
    );
    assert!(acked.len() >= 2_000);
}
