//! An in-process edgemodule-hub on ephemeral 127.0.0.1 ports with a temporary state dir, and the
//! deployment every scenario runs against.

use std::collections::BTreeMap;
use std::path::PathBuf;

use edgemodule_hub::server::{start_restartable, HubConfig, RunningHub};
use edgemodule_hub::state::StateDir;
use serde_json::{json, Value};

/// The module the agent plays.
pub const AGENT: &str = "agent";
/// The module the driver plays with a Rust client of its own.
pub const PEER: &str = "peer";

/// `agent` and `peer` exchange messages both ways; `other` is deployed but never connects. With
/// `mqtt_broker` (a scenario's `mqtt_broker` object, `{"authorizations": [...]}`), the hub's
/// broker policy for user topics (docs/broker.md); without it user topics are closed.
pub fn deployment(agent_desired: &Value, mqtt_broker: Option<&Value>) -> Value {
    let route = |from_module: &str, output: &str, to_module: &str, input: &str| {
        format!("FROM /messages/modules/{from_module}/outputs/{output} INTO BrokeredEndpoint(\"/modules/{to_module}/inputs/{input}\")")
    };
    let mut d = json!({
      "modulesContent": {
        "$edgeAgent": { "properties.desired": { "modules": {
            "agent": { "type": "docker" }, "peer": { "type": "docker" }, "other": { "type": "docker" }
        } } },
        "$edgeHub": { "properties.desired": {
            "schemaVersion": "1.1",
            "routes": {
              "agentOut1": route("agent", "out1", "peer", "in1"),
              "agentOut2": route("agent", "out2", "peer", "in2"),
              "peerIn1": route("peer", "to_in1", "agent", "in1"),
              "peerIn2": route("peer", "to_in2", "agent", "in2"),
              "peerIn3": route("peer", "to_in3", "agent", "in3")
            },
            "storeAndForwardConfiguration": { "timeToLiveSecs": 7200 }
        } },
        "agent": { "properties.desired": agent_desired }
      }
    });
    if let Some(broker) = mqtt_broker {
        let hub = &mut d["modulesContent"]["$edgeHub"]["properties.desired"];
        hub["schemaVersion"] = json!("1.2");
        hub["mqttBroker"] = broker.clone();
    }
    d
}

pub struct Hub {
    pub dir: tempfile::TempDir,
    deployment: PathBuf,
    mqtt_broker: Option<Value>,
    pub running: Option<RunningHub>,
    pub mqtt_port: u16,
    pub https_port: u16,
    pub amqp_port: u16,
}

impl Hub {
    pub async fn start(agent_desired: &Value, mqtt_broker: Option<&Value>) -> Result<Hub, String> {
        let dir = tempfile::Builder::new().prefix("xlang").tempdir().map_err(|e| e.to_string())?;
        StateDir::init(dir.path(), "localhost").map_err(|e| e.to_string())?;
        let deployment = dir.path().join("deployment.json");
        let mut hub = Hub {
            dir,
            deployment,
            mqtt_broker: mqtt_broker.cloned(),
            running: None,
            mqtt_port: 0,
            https_port: 0,
            amqp_port: 0,
        };
        hub.write_deployment(agent_desired)?;
        hub.up().await?;
        Ok(hub)
    }

    pub fn write_deployment(&self, agent_desired: &Value) -> Result<(), String> {
        let d = deployment(agent_desired, self.mqtt_broker.as_ref());
        std::fs::write(&self.deployment, d.to_string()).map_err(|e| e.to_string())
    }

    /// Starts on the same ports and state dir as before (the first time on ports outside the
    /// ephemeral range, so that no other socket can take them while the hub is stopped).
    pub async fn up(&mut self) -> Result<(), String> {
        if self.running.is_some() {
            return Ok(());
        }
        let mut config = HubConfig::new(self.dir.path(), &self.deployment);
        config.mqtt_port = self.mqtt_port;
        config.https_port = self.https_port;
        config.amqp_port = Some(self.amqp_port);
        let running = start_restartable(config).await?;
        self.mqtt_port = running.mqtt_addr.port();
        self.https_port = running.https_addr.port();
        self.amqp_port = running.amqp_addr.ok_or("the hub serves no AMQP")?.port();
        self.running = Some(running);
        Ok(())
    }

    pub async fn down(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub fn hub(&self) -> Result<&std::sync::Arc<edgemodule_hub::hub::Hub>, String> {
        self.running.as_ref().map(|r| &r.hub).ok_or_else(|| "the hub is stopped".to_string())
    }

    fn state(&self) -> StateDir {
        StateDir::open(self.dir.path()).expect("state dir opens")
    }

    pub fn ca_pem(&self) -> String {
        self.state().ca_pem().expect("CA PEM")
    }

    pub fn device_id(&self) -> String {
        self.state().identity().device_id.clone()
    }

    pub fn connection_string(&self, module: &str, key: Option<&str>) -> String {
        let state = self.state();
        let id = state.identity();
        let real = state.module_key(module).unwrap().unwrap();
        format!(
            "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={};GatewayHostName=localhost",
            id.hub_host_name,
            id.device_id,
            key.unwrap_or(&real)
        )
    }

    /// The environment edgeAgent would give the module (IOTEDGE_* + the workload socket + ports,
    /// the AMQP port included).
    pub fn module_env(&self, module: &str) -> Result<BTreeMap<String, String>, String> {
        let r = self.running.as_ref().ok_or("the hub is stopped")?;
        let listeners =
            edgemodule_hub::control::Listeners { mqtt: r.mqtt_addr, https: r.https_addr, amqp: r.amqp_addr };
        Ok(edgemodule_hub::control::module_env_for(&r.hub, module, listeners))
    }
}
