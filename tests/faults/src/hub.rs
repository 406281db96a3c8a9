//! A real `edgemodule-hub` process (the binary users run) on a fresh state dir, which the
//! driver can kill with SIGKILL and start again on the same state dir and ports.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgemodule_hub::server::{restartable_port, StartError, EXIT_PORT_IN_USE};
use edgemodule_hub::state::StateDir;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// How long the hub may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(60);

pub struct HubProcess {
    dir: tempfile::TempDir,
    exe: PathBuf,
    pub mqtt_port: u16,
    pub https_port: u16,
    /// The AMQPS port, when this hub build serves AMQP (picked by the hub, kept on restart so
    /// no two hubs of parallel tests fight over the default 5671).
    pub amqp_port: Option<u16>,
    child: Option<Child>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl HubProcess {
    /// `edgemodule-hub init`, then `edgemodule-hub start` on restartable loopback ports with
    /// `deployment`; returns once the hub listens.
    pub async fn start(exe: &Path, deployment: &Value) -> Result<HubProcess, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let state = dir.path().join("state");
        let out = Command::new(exe)
            .arg("--state-dir")
            .arg(&state)
            .args(["init", "--hostname", "localhost"])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("running {}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!("edgemodule-hub init failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        std::fs::write(dir.path().join("deployment.json"), deployment.to_string())
            .map_err(|e| format!("writing the deployment: {e}"))?;
        let help = Command::new(exe).args(["start", "--help"]).stdin(Stdio::null()).output().await;
        let amqp = help.is_ok_and(|h| String::from_utf8_lossy(&h.stdout).contains("--amqp-port"));
        let mut hub = HubProcess {
            dir,
            exe: exe.to_path_buf(),
            mqtt_port: 0,
            https_port: 0,
            amqp_port: amqp.then_some(0),
            child: None,
            log: Default::default(),
        };
        hub.first_spawn().await?;
        Ok(hub)
    }

    /// The first start, on ports outside the ephemeral range (no other socket can take them
    /// while the hub is killed), picked again if another process takes one first.
    async fn first_spawn(&mut self) -> Result<(), StartError> {
        let mut result = Ok(());
        for _ in 0..20 {
            (self.mqtt_port, self.https_port) = (restartable_port(), restartable_port());
            self.amqp_port = self.amqp_port.map(|_| restartable_port());
            result = self.spawn().await;
            if !matches!(result, Err(StartError::PortInUse(_))) {
                break;
            }
        }
        result
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Starts the process and waits for its "MQTT on …, HTTPS on …" line (printed once both
    /// listeners are bound) on this hub's ports.
    async fn spawn(&mut self) -> Result<(), StartError> {
        let mut child = Command::new(&self.exe)
            .arg("--state-dir")
            .arg(self.state())
            .arg("start")
            .args(["--mqtt-port", &self.mqtt_port.to_string(), "--https-port", &self.https_port.to_string()])
            .args(self.amqp_port.map(|p| format!("--amqp-port={p}")))
            .arg("--deployment")
            .arg(self.dir.path().join("deployment.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.exe.display()))?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let (ready_tx, ready_rx) = oneshot::channel::<Listening>();
        let log = self.log.clone();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addrs) = parse_listening(&line) {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(addrs);
                    }
                }
                let mut log = log.lock().unwrap();
                if log.len() == 200 {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        self.child = Some(child);
        match tokio::time::timeout(START_LIMIT, ready_rx).await {
            Ok(Ok(l)) => {
                (self.mqtt_port, self.https_port) = (l.mqtt.port(), l.https.port());
                if let (Some(_), Some(a)) = (self.amqp_port, l.amqp) {
                    self.amqp_port = Some(a.port());
                }
                Ok(())
            }
            Ok(Err(_)) => {
                let status = match self.child.take() {
                    Some(mut child) => child.wait().await.ok().and_then(|s| s.code()),
                    None => None,
                };
                let message = format!("the hub exited ({status:?}) before listening:\n{}", self.log_tail());
                Err(match status {
                    Some(code) if code == i32::from(EXIT_PORT_IN_USE) => StartError::PortInUse(message),
                    _ => StartError::Other(message),
                })
            }
            Err(_) => {
                self.kill9().await;
                Err(format!("the hub did not listen within {START_LIMIT:?}:\n{}", self.log_tail()).into())
            }
        }
    }

    /// SIGKILL: no shutdown, no flush. Returns once the process is gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill(); // SIGKILL on Unix
            let _ = child.wait().await;
        }
    }

    /// Starts the hub again on the same state dir and ports.
    pub async fn restart(&mut self) -> Result<(), String> {
        Ok(self.spawn().await?)
    }

    /// The module's connection string (with GatewayHostName, as `edgemodule-hub
    /// connection-string` prints it).
    pub fn connection_string(&self, module: &str) -> String {
        let state = StateDir::open(&self.state()).expect("opening the hub's state dir");
        let id = state.identity();
        let key = state.module_key(module).expect("reading keys").expect("the module is deployed");
        format!(
            "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={key};GatewayHostName={}",
            id.hub_host_name, id.device_id, id.gateway_host_name
        )
    }

    /// The PEM file of the CA that issued the hub's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.state().join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_file()).expect("reading the hub's CA")
    }

    /// The last lines the hub wrote to stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter().rev().take(20).rev().cloned().collect::<Vec<_>>().join("\n")
    }
}

struct Listening {
    mqtt: SocketAddr,
    https: SocketAddr,
    amqp: Option<SocketAddr>,
}

/// `edgemodule-hub: MQTT on 127.0.0.1:P, HTTPS on 127.0.0.1:Q[, AMQP on 127.0.0.1:R|off], modules: …`
fn parse_listening(line: &str) -> Option<Listening> {
    let addr = |name: &str| -> Option<SocketAddr> {
        line.split(&format!("{name} on ")).nth(1)?.split(',').next()?.trim().parse().ok()
    };
    Some(Listening { mqtt: addr("MQTT")?, https: addr("HTTPS")?, amqp: addr("AMQP") })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_listening_line() {
        let l =
            super::parse_listening("edgemodule-hub: MQTT on 127.0.0.1:4000, HTTPS on 127.0.0.1:4001, modules: a, b")
                .unwrap();
        assert_eq!((l.mqtt.port(), l.https.port(), l.amqp), (4000, 4001, None));
        let l = super::parse_listening(
            "edgemodule-hub: MQTT on 127.0.0.1:4000, HTTPS on 127.0.0.1:4001, AMQP on 127.0.0.1:4002, modules: a",
        )
        .unwrap();
        assert_eq!(l.amqp.map(|a| a.port()), Some(4002));
        assert!(super::parse_listening(
            "edgemodule-hub: MQTT on 127.0.0.1:1, HTTPS on 127.0.0.1:2, AMQP on off, modules: a"
        )
        .is_some_and(|l| l.amqp.is_none()));
        assert!(super::parse_listening("something else").is_none());
    }
}
