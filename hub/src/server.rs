//! Starting and stopping a hub: listeners for MQTT/TLS, AMQP/TLS, HTTPS (module-to-module method calls and
//! MQTT over WebSocket), the workload API and the control socket, all sharing one `Hub`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::hub::Hub;
use crate::listener::accept_tls;
use crate::manifest::Deployment;
use crate::state::StateDir;

/// How to run a hub. Ports 0 pick ephemeral ports (tests).
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub state_dir: PathBuf,
    pub deployment_file: PathBuf,
    pub bind: IpAddr,
    pub mqtt_port: u16,
    pub https_port: u16,
    /// The AMQPS port (5671 in the CLI); `None` serves no AMQP. Off by default here so embedding
    /// tests do not compete for the standard port; they ask for `Some(0)`.
    pub amqp_port: Option<u16>,
    /// Deliveries in flight to one module before waiting for its PUBACKs.
    pub delivery_window: usize,
    /// Serve the workload API on the state dir's socket.
    pub workload: bool,
    /// Serve the control socket used by the CLI.
    pub control: bool,
}

impl HubConfig {
    pub fn new(state_dir: impl Into<PathBuf>, deployment_file: impl Into<PathBuf>) -> Self {
        HubConfig {
            state_dir: state_dir.into(),
            deployment_file: deployment_file.into(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mqtt_port: 8883,
            https_port: 443,
            amqp_port: None,
            delivery_window: 256,
            workload: true,
            control: true,
        }
    }
}

/// Why a hub did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// A listener's port is taken (by another process, or by a hub that has not stopped yet).
    PortInUse(String),
    /// Anything else: the deployment, the state dir, the TLS material, a socket.
    Other(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::PortInUse(m) | StartError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StartError {}

/// `edgemodule-hub start`'s exit status when a port is taken (2 for every other failure), so a
/// supervisor can pick other ports without reading the message.
pub const EXIT_PORT_IN_USE: u8 = 3;

impl From<String> for StartError {
    fn from(message: String) -> Self {
        StartError::Other(message)
    }
}

impl From<StartError> for String {
    fn from(e: StartError) -> String {
        e.to_string()
    }
}

/// A started hub. `shutdown` stops it; dropping it only stops the listeners (open connections
/// and the store stay until their tasks end).
pub struct RunningHub {
    pub hub: Arc<Hub>,
    pub mqtt_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub amqp_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningHub {
    /// Stops accepting, closes every connection, waits for the listeners and connection tasks to
    /// end and for the store to be closed, so a new hub can open the same state dir.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.hub.close_all();
        for t in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&self.hub) > 1 && tokio::time::Instant::now() < deadline {
            self.hub.close_all();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&self.hub) > 1 {
            tracing::warn!(
                references = Arc::strong_count(&self.hub) - 1,
                connection_tasks = crate::listener::live_connection_tasks(),
                "hub still referenced after shutdown: its store stays open"
            );
        }
        let hub = self.hub;
        tokio::task::spawn_blocking(move || {
            hub.stop_writer();
            drop(hub);
        })
        .await
        .ok();
    }

    /// The workload API and the control socket, as configured.
    fn serve_unix_sockets(
        &mut self,
        config: &HubConfig,
        state: &StateDir,
        stop: watch::Receiver<bool>,
    ) -> Result<(), String> {
        if config.workload {
            self.tasks.push(start_workload(&self.hub, &state.workload_socket_path(), stop.clone())?);
        }
        if config.control {
            let listeners =
                crate::control::Listeners { mqtt: self.mqtt_addr, https: self.https_addr, amqp: self.amqp_addr };
            self.tasks.push(crate::control::start(self.hub.clone(), &state.control_socket_path(), listeners, stop)?);
        }
        Ok(())
    }
}

/// Loads the deployment and state, binds every listener, and starts serving. A start that fails
/// leaves the state dir free for the next attempt at once (`start_restartable` retries on other
/// ports right away): the ports are bound before the store is opened, and a failure after that
/// shuts down what was started, store writer included.
pub async fn start(config: HubConfig) -> Result<RunningHub, StartError> {
    let deployment = Deployment::load(&config.deployment_file).map_err(|e| e.to_string())?;
    let state = Arc::new(StateDir::open(&config.state_dir).map_err(|e| e.to_string())?);
    let tls = crate::tls::server_config(
        &state.server_cert_chain_pem().map_err(|e| e.to_string())?,
        &state.server_key_pem().map_err(|e| e.to_string())?,
        &[],
    )?;
    let mqtt = bind(config.bind, config.mqtt_port, "MQTT").await?;
    let https = bind(config.bind, config.https_port, "HTTPS").await?;
    let amqp = match config.amqp_port {
        Some(port) => Some(bind(config.bind, port, "AMQP").await?),
        None => None,
    };
    let hub = Hub::new(state.clone(), &deployment, config.delivery_window)
        .map_err(|e| format!("{}: {e}", config.deployment_file.display()))?;
    let (stop, stop_rx) = watch::channel(false);
    let (mqtt_addr, https_addr) = (mqtt.local_addr().unwrap(), https.local_addr().unwrap());
    let amqp_addr = amqp.as_ref().map(|l| l.local_addr().unwrap());
    let mut tasks = vec![
        tokio::spawn(accept_tls("MQTT", mqtt, tls.clone(), stop_rx.clone(), {
            let hub = hub.clone();
            move |stream, peer| crate::mqtt::connection::serve(hub.clone(), stream, peer.to_string())
        })),
        tokio::spawn(crate::http::run(hub.clone(), https, tls.clone(), stop_rx.clone())),
    ];
    if let Some(amqp) = amqp {
        let (hub, stop) = (hub.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(accept_tls("AMQP", amqp, tls, stop_rx.clone(), move |stream, peer| {
            crate::amqp::serve(hub.clone(), stream, peer.to_string(), stop.clone())
        })));
    }
    let mut running = RunningHub { hub, mqtt_addr, https_addr, amqp_addr, stop, tasks };
    if let Err(e) = running.serve_unix_sockets(&config, &state, stop_rx) {
        running.shutdown().await;
        return Err(e.into());
    }
    tracing::info!(%mqtt_addr, %https_addr, ?amqp_addr, modules = ?running.hub.module_ids(), "hub started");
    Ok(running)
}

/// Ports below the kernel's ephemeral range (32768–60999 by default on Linux): neither a
/// listener bound to port 0 nor the local end of an outgoing connection is ever placed there.
const RESTARTABLE_PORTS: std::ops::Range<u16> = 20000..32000;

/// A free loopback port for a hub that will be stopped and started again on it (reconnection
/// tests). A port from the ephemeral range, once the stopped hub releases it, can be handed to
/// any socket on the machine before the restart binds it again; one from below that range
/// cannot. Free when returned; a caller that loses it to another process picks again (see
/// [`start_restartable`]).
pub fn restartable_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let span = u64::from(RESTARTABLE_PORTS.end - RESTARTABLE_PORTS.start);
    loop {
        // A fresh RandomState is freshly keyed: its empty hash is a random number.
        let pick = std::collections::hash_map::RandomState::new().build_hasher().finish() % span;
        let port = RESTARTABLE_PORTS.start + pick as u16;
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// [`start`] with every port left at 0 replaced by a [`restartable_port`], picking again (a few
/// times) when another process takes one between the pick and the bind.
pub async fn start_restartable(config: HubConfig) -> Result<RunningHub, StartError> {
    let picks_ports = config.mqtt_port == 0 || config.https_port == 0 || config.amqp_port == Some(0);
    if !picks_ports {
        return start(config).await; // a restart: the ports are the ones it had
    }
    let mut last_error = StartError::Other("no ports tried".into());
    for _ in 0..20 {
        let mut attempt = config.clone();
        for port in [&mut attempt.mqtt_port, &mut attempt.https_port].into_iter().chain(attempt.amqp_port.as_mut()) {
            if *port == 0 {
                *port = restartable_port();
            }
        }
        match start(attempt).await {
            Err(e @ StartError::PortInUse(_)) => last_error = e,
            other => return other,
        }
    }
    Err(last_error)
}

async fn bind(ip: IpAddr, port: u16, what: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(SocketAddr::new(ip, port)).await.map_err(|e| {
        let message = format!("cannot listen for {what} on {ip}:{port}: {e}");
        match e.kind() {
            std::io::ErrorKind::AddrInUse => StartError::PortInUse(message),
            _ => StartError::Other(message),
        }
    })
}

/// Binds a unix socket, replacing a stale socket file from an earlier run.
pub fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, String> {
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| format!("removing stale socket {}: {e}", path.display()))?;
    }
    tokio::net::UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))
}

struct HubKeys(Arc<Hub>);

impl crate::workload::KeyLookup for HubKeys {
    fn module_key(&self, module_id: &str) -> Option<Vec<u8>> {
        self.0.module_key(module_id).map(<[u8]>::to_vec)
    }
}

fn start_workload(hub: &Arc<Hub>, path: &Path, mut stop: watch::Receiver<bool>) -> Result<JoinHandle<()>, String> {
    let listener = bind_unix(path)?;
    let bundle = hub.state.ca_pem().map_err(|e| e.to_string())?;
    let server = crate::workload::WorkloadServer::new(Arc::new(HubKeys(hub.clone())), bundle);
    Ok(tokio::spawn(server.serve(listener, async move {
        let _ = stop.changed().await;
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restartable_ports_are_free_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..20).map(|_| restartable_port()).collect();
        for &port in &ports {
            assert!(RESTARTABLE_PORTS.contains(&port), "{port}");
            assert!(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok(), "{port} is taken");
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert!(distinct.len() > 1, "the picks vary: {ports:?}");
    }
}
