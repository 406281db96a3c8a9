//! The hub's shared state and its public operations: who is connected, the routes, twins,
//! pending method calls and the monitor feed. Connection tasks and the control and HTTP
//! endpoints all act through this one object.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

use crate::broker::{Broker, Policy};
use crate::manifest::Deployment;
use crate::routes::Route;
use crate::state::{Identity, StateDir};
use crate::store::{Store, TwinRecord};
use crate::writer::WriteRequest;

/// What a connection task is asked to do from outside.
#[derive(Debug)]
pub enum ConnCommand {
    /// Send a desired-properties patch if the module subscribed to them.
    DesiredPatch { version: i64, body: Vec<u8> },
    /// Deliver a direct-method request.
    MethodRequest { name: String, rid: String, payload: Vec<u8> },
    /// Deliver a user-topic message (the broker matched one of the connection's subscriptions).
    UserPublish { topic: String, payload: bytes::Bytes, qos: u8, retain: bool },
    /// Close the connection (evicted by a newer one, or the hub stops).
    Close { reason: &'static str },
}

/// A live connection as the hub sees it.
pub struct ConnEntry {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<ConnCommand>,
    pub methods_subscribed: Arc<AtomicBool>,
}

/// A method call's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodOutcome {
    pub status: i64,
    pub payload: Option<String>,
}

/// Why a method call produced no outcome, with the HTTP status edgeHub would answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodFailure {
    pub http_status: u16,
    pub message: String,
}

pub struct Hub {
    pub identity: Identity,
    pub state: Arc<StateDir>,
    pub routes: Vec<Route>,
    pub default_ttl_secs: i64,
    pub store: Arc<Store>,
    pub delivery_window: usize,
    /// User topics and their authorization policy.
    pub broker: Broker,
    keys: HashMap<String, Vec<u8>>,
    writer: std::sync::mpsc::Sender<WriteRequest>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    connections: Mutex<HashMap<String, ConnEntry>>,
    connections_changed: Notify,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    twins: tokio::sync::Mutex<HashMap<String, TwinRecord>>,
    methods: Mutex<HashMap<String, oneshot::Sender<MethodOutcome>>>,
    monitor: broadcast::Sender<Arc<str>>,
    next_conn_id: AtomicU64,
}

impl Hub {
    /// Builds the hub from an opened state dir and a loaded deployment; every deployed module gets
    /// a key (created on first start) and a twin seeded with the manifest's desired properties.
    pub fn new(state: Arc<StateDir>, deployment: &Deployment, delivery_window: usize) -> Result<Arc<Hub>, String> {
        let routes = compile_routes(deployment)?;
        let policy = Policy::from_desired(&deployment.edge_hub_desired, &deployment.edge_hub_desired_path)
            .map_err(|e| e.to_string())?;
        let store = Arc::new(Store::open(&state.db_path()).map_err(|e| e.to_string())?);
        let broker = Broker::new(policy, state.identity(), store.clone())?;
        let mut keys = HashMap::new();
        let mut twins = HashMap::new();
        for module in &deployment.modules {
            let key = state.ensure_module_key(&module.name).map_err(|e| e.to_string())?;
            keys.insert(module.name.clone(), edgemodule_core::wire::sas::decode_key(&key).map_err(|e| e.to_string())?);
            let twin = seed_twin(store.load_twin(&module.name).map_err(|e| e.to_string())?, &module.desired);
            store.save_twin(&module.name, &twin).map_err(|e| e.to_string())?;
            twins.insert(module.name.clone(), twin);
        }
        let (monitor, _) = broadcast::channel(4096);
        Ok(Arc::new_cyclic(|weak: &std::sync::Weak<Hub>| {
            let weak = weak.clone();
            let wake: crate::writer::WakeFn = Arc::new(move |module: &str| {
                if let Some(hub) = weak.upgrade() {
                    hub.waker(module).notify_one();
                }
            });
            let (writer, writer_thread) = crate::writer::spawn(store.clone(), state.upstream_path(), wake);
            Hub {
                identity: state.identity().clone(),
                routes,
                default_ttl_secs: deployment.default_ttl_secs,
                store,
                delivery_window: delivery_window.max(1),
                broker,
                keys,
                writer,
                writer_thread: Mutex::new(Some(writer_thread)),
                connections: Mutex::new(HashMap::new()),
                connections_changed: Notify::new(),
                wakers: Mutex::new(HashMap::new()),
                twins: tokio::sync::Mutex::new(twins),
                methods: Mutex::new(HashMap::new()),
                monitor,
                next_conn_id: AtomicU64::new(1),
                state,
            }
        }))
    }

    /// The decoded SAS key of a deployed module.
    pub fn module_key(&self, module: &str) -> Option<&[u8]> {
        self.keys.get(module).map(Vec::as_slice)
    }

    pub fn module_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn writer(&self) -> &std::sync::mpsc::Sender<WriteRequest> {
        &self.writer
    }

    /// The notifier a module's connection waits on for new deliveries.
    pub fn waker(&self, module: &str) -> Arc<Notify> {
        self.wakers.lock().unwrap().entry(module.to_string()).or_default().clone()
    }

    /// Registers a connection, closing any older one with the same client id (edgeHub does the same).
    pub fn register(&self, client_id: &str, tx: mpsc::UnboundedSender<ConnCommand>, methods: Arc<AtomicBool>) -> u64 {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let old = self
            .connections
            .lock()
            .unwrap()
            .insert(client_id.to_string(), ConnEntry { id, tx, methods_subscribed: methods });
        if let Some(old) = old {
            let _ = old.tx.send(ConnCommand::Close { reason: "another connection with the same identity" });
        }
        self.connections_changed.notify_waiters();
        id
    }

    pub fn unregister(&self, client_id: &str, id: u64) {
        let mut conns = self.connections.lock().unwrap();
        if conns.get(client_id).is_some_and(|e| e.id == id) {
            conns.remove(client_id);
        }
        drop(conns);
        self.connections_changed.notify_waiters();
    }

    /// Tells waiters (method calls waiting for a subscriber) that a connection changed.
    pub fn connection_changed(&self) {
        self.connections_changed.notify_waiters();
    }

    pub fn client_id(&self, module: &str) -> String {
        format!("{}/{module}", self.identity.device_id)
    }

    pub fn is_connected(&self, module: &str) -> bool {
        self.connections.lock().unwrap().contains_key(&self.client_id(module))
    }

    fn send_to(&self, module: &str, cmd: ConnCommand) -> bool {
        let conns = self.connections.lock().unwrap();
        conns.get(&self.client_id(module)).is_some_and(|e| e.tx.send(cmd).is_ok())
    }

    /// Closes every connection (used on shutdown).
    pub fn close_all(&self) {
        for entry in self.connections.lock().unwrap().values() {
            let _ = entry.tx.send(ConnCommand::Close { reason: "hub stopping" });
        }
    }

    /// Stops the store writer after it has committed everything queued before this call.
    pub fn stop_writer(&self) {
        let _ = self.writer.send(WriteRequest::Stop);
        if let Some(t) = self.writer_thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    pub fn subscribe_monitor(&self) -> broadcast::Receiver<Arc<str>> {
        self.monitor.subscribe()
    }

    /// Whether anyone watches the monitor feed (building its lines costs, so skip when not).
    pub fn monitor_active(&self) -> bool {
        self.monitor.receiver_count() > 0
    }

    pub fn publish_monitor(&self, line: String) {
        let _ = self.monitor.send(line.into());
    }

    // ---- twins ----

    /// The twin as a module's GET sees it: `{"desired":{…,"$version"},"reported":{…,"$version"}}`.
    pub async fn twin_document(&self, module: &str) -> Option<Value> {
        let twins = self.twins.lock().await;
        twins.get(module).map(twin_json)
    }

    /// Merges a reported patch, bumps the reported version and persists it before returning.
    pub async fn patch_reported(&self, module: &str, patch: &Map<String, Value>) -> Result<i64, String> {
        let mut twins = self.twins.lock().await;
        let twin = twins.get_mut(module).ok_or_else(|| format!("module {module} has no twin"))?;
        let mut next = twin.clone();
        edgemodule_core::wire::twin::merge_patch(&mut next.reported, patch);
        next.reported_version += 1;
        self.save_twin(module, &next).await?;
        *twin = next;
        Ok(twin.reported_version)
    }

    /// Merges a desired patch (the operator's change), persists it, and notifies the module.
    pub async fn patch_desired(&self, module: &str, patch: &Map<String, Value>) -> Result<i64, String> {
        let mut twins = self.twins.lock().await;
        let twin = twins.get_mut(module).ok_or_else(|| format!("module {module} is not deployed"))?;
        let mut next = twin.clone();
        edgemodule_core::wire::twin::merge_patch(&mut next.desired, patch);
        next.desired_version += 1;
        self.save_twin(module, &next).await?;
        *twin = next;
        let version = twin.desired_version;
        let mut body = patch.clone();
        body.insert("$version".into(), Value::from(version));
        let body = serde_json::to_vec(&Value::Object(body)).expect("JSON map serialises");
        self.send_to(module, ConnCommand::DesiredPatch { version, body });
        Ok(version)
    }

    async fn save_twin(&self, module: &str, twin: &TwinRecord) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(WriteRequest::SaveTwin { module: module.into(), twin: twin.clone(), done })
            .map_err(|_| "store writer stopped".to_string())?;
        wait.await.map_err(|_| "store writer stopped".to_string())?
    }

    // ---- direct methods ----

    /// Invokes `method` on `module` as edgeHub does: waits up to `connect_timeout` for the module to
    /// be connected with a methods subscription (404 otherwise), then up to `response_timeout`
    /// for its answer (504 otherwise).
    pub async fn invoke_method(
        &self,
        module: &str,
        method: &str,
        payload: Vec<u8>,
        response_timeout: std::time::Duration,
        connect_timeout: std::time::Duration,
    ) -> Result<MethodOutcome, MethodFailure> {
        let not_found = || MethodFailure {
            http_status: 404,
            message: format!("Client {}/{module} not found", self.identity.device_id),
        };
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let rid = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        loop {
            let changed = self.connections_changed.notified();
            if self.methods_ready(module) {
                self.methods.lock().unwrap().insert(rid.clone(), tx);
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(not_found());
            }
        }
        let sent = self.send_to(module, ConnCommand::MethodRequest { name: method.into(), rid: rid.clone(), payload });
        if !sent {
            self.methods.lock().unwrap().remove(&rid);
            return Err(not_found());
        }
        match tokio::time::timeout(response_timeout, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => {
                self.methods.lock().unwrap().remove(&rid);
                Err(MethodFailure {
                    http_status: 504,
                    message: format!("Timed out waiting for device to respond to method request {rid}"),
                })
            }
        }
    }

    fn methods_ready(&self, module: &str) -> bool {
        let conns = self.connections.lock().unwrap();
        conns.get(&self.client_id(module)).is_some_and(|e| e.methods_subscribed.load(Ordering::Acquire))
    }

    /// A module's method response; rids match case-insensitively, as in edgeHub.
    pub fn complete_method(&self, rid: &str, outcome: MethodOutcome) -> bool {
        let waiter = {
            let mut methods = self.methods.lock().unwrap();
            let key = methods.keys().find(|k| k.eq_ignore_ascii_case(rid)).cloned();
            key.and_then(|k| methods.remove(&k))
        };
        waiter.is_some_and(|w| w.send(outcome).is_ok())
    }
}

fn twin_json(t: &TwinRecord) -> Value {
    let mut desired = t.desired.clone();
    desired.insert("$version".into(), Value::from(t.desired_version));
    let mut reported = t.reported.clone();
    reported.insert("$version".into(), Value::from(t.reported_version));
    serde_json::json!({ "desired": desired, "reported": reported })
}

/// The manifest's desired properties win over stored ones on (re)deployment; the version moves
/// only when they differ, so a restart with the same manifest does not fire a change.
fn seed_twin(stored: Option<TwinRecord>, manifest_desired: &Map<String, Value>) -> TwinRecord {
    let mut twin =
        stored.unwrap_or_else(|| TwinRecord { desired_version: 1, reported_version: 1, ..Default::default() });
    if twin.desired != *manifest_desired {
        twin.desired = manifest_desired.clone();
        twin.desired_version += 1;
    }
    twin
}

fn compile_routes(deployment: &Deployment) -> Result<Vec<Route>, String> {
    deployment
        .routes
        .iter()
        .map(|spec| {
            Route::parse(&spec.name, &spec.text, spec.priority, spec.ttl_secs)
                .map_err(|e| format!("{}: {e}", spec.json_path))
        })
        .collect()
}
