//! Starts a real `edgemodule-hub` in-process on ephemeral loopback ports, with a fresh state dir
//! and a deployment, for the core's integration tests.
#![allow(dead_code)]

pub mod connect_proxy;
pub mod proxy;

use std::path::PathBuf;
use std::time::Duration;

use edgemodule_core::{ClientOptions, MethodInvocation, ModuleClient};
use edgemodule_hub::server::{start_restartable, HubConfig, RunningHub};
use edgemodule_hub::state::StateDir;
use serde_json::{json, Value};

pub struct TestHub {
    pub dir: tempfile::TempDir,
    pub running: Option<RunningHub>,
    pub deployment: PathBuf,
    pub mqtt_port: u16,
    pub https_port: u16,
    pub amqp_port: u16,
}

/// Two modules, `sender` and `receiver`, and routes exercising outputs, conditions and inputs.
pub fn default_deployment() -> Value {
    json!({
      "modulesContent": {
        "$edgeAgent": { "properties.desired": { "modules": {
            "sender": { "type": "docker" }, "receiver": { "type": "docker" }, "other": { "type": "docker" }
        } } },
        "$edgeHub": { "properties.desired": {
            "schemaVersion": "1.1",
            "routes": {
              "toReceiver": "FROM /messages/modules/sender/outputs/out1 INTO BrokeredEndpoint(\"/modules/receiver/inputs/in1\")",
              "hot": { "route": "FROM /messages/modules/sender/outputs/temps WHERE $body.t > 30 INTO BrokeredEndpoint(\"/modules/receiver/inputs/hot\")", "priority": 1 },
              "back": "FROM /messages/modules/receiver/outputs/* INTO BrokeredEndpoint(\"/modules/sender/inputs/back\")",
              "up": "FROM /messages/modules/sender/outputs/cloud INTO $upstream"
            },
            "storeAndForwardConfiguration": { "timeToLiveSecs": 7200 }
        } },
        "receiver": { "properties.desired": { "threshold": 25 } }
      }
    })
}

impl TestHub {
    pub async fn start() -> TestHub {
        Self::start_with(default_deployment()).await
    }

    pub async fn start_with(deployment: Value) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        StateDir::init(dir.path(), "localhost").unwrap();
        let file = dir.path().join("deployment.json");
        std::fs::write(&file, deployment.to_string()).unwrap();
        let mut hub = TestHub { dir, running: None, deployment: file, mqtt_port: 0, https_port: 0, amqp_port: 0 };
        hub.restart().await;
        hub
    }

    /// Starts (again) on the same ports and state dir; the first time on ports outside the
    /// ephemeral range, so that no other socket can take them while the hub is stopped.
    pub async fn restart(&mut self) {
        let mut config = HubConfig::new(self.dir.path(), &self.deployment);
        config.mqtt_port = self.mqtt_port;
        config.https_port = self.https_port;
        config.amqp_port = Some(self.amqp_port);
        let running = start_restartable(config).await.unwrap();
        self.mqtt_port = running.mqtt_addr.port();
        self.https_port = running.https_addr.port();
        self.amqp_port = running.amqp_addr.map_or(0, |a| a.port());
        self.running = Some(running);
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub fn hub(&self) -> &edgemodule_hub::hub::Hub {
        &self.running.as_ref().unwrap().hub
    }

    pub fn ca_pem(&self) -> String {
        StateDir::open(self.dir.path()).unwrap().ca_pem().unwrap()
    }

    pub fn connection_string(&self, module: &str) -> String {
        let state = StateDir::open(self.dir.path()).unwrap();
        let id = state.identity();
        let key = state.module_key(module).unwrap().unwrap();
        format!(
            "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={key};GatewayHostName=localhost",
            id.hub_host_name, id.device_id
        )
    }

    pub fn options(&self) -> ClientOptions {
        ClientOptions::default()
            .with_mqtt_port(self.mqtt_port)
            .with_https_port(self.https_port)
            .with_amqp_port(self.amqp_port)
            .with_default_timeout(Duration::from_secs(10))
            .with_connect_timeout(Duration::from_secs(5))
    }

    /// Waits (bounded) until the hub holds `n` undelivered or unacknowledged messages for
    /// `module` (the store has no change event to await).
    pub async fn pending_becomes(&self, module: &str, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.hub().store.pending_count(module).unwrap() != n {
            assert!(tokio::time::Instant::now() < deadline, "pending for {module} never became {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Answers method `echo` on `receiver` with `{"echo": <payload>}` and calls it both ways:
    /// from the hub (as a cloud caller would) and from `sender`, module to module over HTTPS.
    pub async fn echo_methods_both_ways(&self, sender: &ModuleClient, receiver: &ModuleClient) {
        let mut calls = receiver.method_receiver(Some("echo")).unwrap();
        tokio::spawn(async move {
            while let Some(call) = calls.recv().await {
                let payload = call.payload_json().unwrap();
                call.respond(200, Some(&json!({"echo": payload}))).await.unwrap();
            }
        });
        let out = self
            .hub()
            .invoke_method("receiver", "echo", b"{\"n\":1}".to_vec(), Duration::from_secs(5), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!((out.status, out.payload.as_deref()), (200, Some("{\"echo\":{\"n\":1}}")));
        let call = MethodInvocation::new("echo", json!({"n": 2}));
        let result = sender.invoke_method(receiver.device_id(), Some("receiver"), &call).await.unwrap();
        assert_eq!((result.status, result.payload), (200, json!({"echo": {"n": 2}})));
    }

    pub async fn client(&self, module: &str) -> ModuleClient {
        ModuleClient::from_connection_string(&self.connection_string(module), Some(&self.ca_pem()), self.options())
            .await
            .unwrap()
    }
}

/// A loopback port with no listener (a transport that silently used it would fail to connect).
pub async fn closed_port() -> u16 {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
}

/// Bounds every test so nothing can hang CI.
pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(120), f).await.expect("test exceeded 120 s");
}
