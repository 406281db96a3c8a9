//! The control socket: a unix socket in the state dir through which the CLI talks to a running
//! hub. One JSON request per line, one JSON answer per line (`monitor` streams many).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edgemodule_core::message::{Message, SystemProperty};
use edgemodule_core::wire::connection_string::{ConnectionString, Credential};
use edgemodule_core::wire::property_bag;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::hub::Hub;
use crate::store::NewDelivery;
use crate::writer::WriteRequest;

/// The generation id the hub hands out; the workload API matches but does not check it.
pub const GENERATION_ID: &str = "1";
/// The workload API version given to modules (one Python sends through unchanged).
pub const WORKLOAD_API_VERSION: &str = "2019-01-30";
/// Lifetime of a token from `edgemodule-hub token` when `--ttl` is not given (the SDKs' default).
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// The longest token `edgemodule-hub token` signs (one year).
pub const MAX_TOKEN_TTL_SECS: u64 = 365 * 24 * 3600;

/// Where the hub listens, for `status` and the modules' environment.
#[derive(Debug, Clone, Copy)]
pub struct Listeners {
    pub mqtt: SocketAddr,
    pub https: SocketAddr,
    /// The AMQPS listener, when the hub serves AMQP.
    pub amqp: Option<SocketAddr>,
}

pub fn start(
    hub: Arc<Hub>,
    path: &Path,
    listeners: Listeners,
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, String> {
    let listener = crate::server::bind_unix(path)?;
    Ok(tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                _ = stop.changed() => return,
            };
            let hub = hub.clone();
            tokio::spawn(crate::listener::ends_with_hub(stop.clone(), async move {
                if let Err(e) = serve(hub, stream, listeners).await {
                    tracing::debug!("control connection: {e}");
                }
            }));
        }
    }))
}

async fn serve(hub: Arc<Hub>, stream: UnixStream, listeners: Listeners) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let request: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                write.write_all(format!("{}\n", failure(format!("request is not JSON: {e}"))).as_bytes()).await?;
                continue;
            }
        };
        if request["cmd"] == "monitor" {
            return monitor(&hub, write).await;
        }
        let answer = match handle(&hub, &request, listeners).await {
            Ok(v) => v,
            Err(e) => failure(e),
        };
        write.write_all(format!("{answer}\n").as_bytes()).await?;
    }
    Ok(())
}

fn failure(message: String) -> Value {
    json!({ "ok": false, "error": message })
}

async fn monitor(hub: &Hub, mut write: tokio::net::unix::OwnedWriteHalf) -> std::io::Result<()> {
    let mut feed = hub.subscribe_monitor();
    write.write_all(b"{\"ok\":true,\"monitoring\":true}\n").await?;
    loop {
        match feed.recv().await {
            Ok(line) => write.write_all(format!("{line}\n").as_bytes()).await?,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                write.write_all(format!("{{\"lagged\":{n}}}\n").as_bytes()).await?
            }
            Err(_) => return Ok(()),
        }
    }
}

fn str_arg<'a>(req: &'a Value, key: &str) -> Result<&'a str, String> {
    req[key].as_str().filter(|s| !s.is_empty()).ok_or_else(|| format!("'{key}' is required"))
}

fn deployed_module<'a>(hub: &Hub, req: &'a Value) -> Result<&'a str, String> {
    let module = str_arg(req, "module")?;
    if hub.module_key(module).is_none() {
        return Err(format!("module '{module}' is not in the deployment (deployed: {})", hub.module_ids().join(", ")));
    }
    Ok(module)
}

async fn handle(hub: &Hub, req: &Value, listeners: Listeners) -> Result<Value, String> {
    match req["cmd"].as_str().unwrap_or("") {
        "status" => Ok(json!({
            "ok": true, "mqtt": listeners.mqtt.to_string(), "https": listeners.https.to_string(),
            "amqp": listeners.amqp.map(|a| a.to_string()),
            "device": hub.identity.device_id, "hub": hub.identity.hub_host_name,
            "modules": hub.module_ids(),
        })),
        "connection-string" => {
            let module = deployed_module(hub, req)?;
            Ok(json!({ "ok": true, "value": connection_string(hub, module)? }))
        }
        "env" => {
            let module = deployed_module(hub, req)?;
            Ok(json!({ "ok": true, "env": module_env_for(hub, module, listeners) }))
        }
        "token" => {
            let module = deployed_module(hub, req)?;
            let ttl = req["ttl"].as_u64().unwrap_or(DEFAULT_TOKEN_TTL_SECS);
            if ttl == 0 || ttl > MAX_TOKEN_TTL_SECS {
                return Err(format!("'ttl' must be between 1 and {MAX_TOKEN_TTL_SECS} seconds"));
            }
            let expiry = edgemodule_core::wire::sas::unix_now() + ttl;
            Ok(json!({ "ok": true, "token": module_token(hub, module, expiry)?, "expiry": expiry }))
        }
        "twin-get" => {
            let module = deployed_module(hub, req)?;
            Ok(json!({ "ok": true, "twin": hub.twin_document(module).await }))
        }
        "twin-patch-desired" => {
            let module = deployed_module(hub, req)?;
            let patch = req["patch"].as_object().ok_or("'patch' must be a JSON object")?;
            let version = hub.patch_desired(module, patch).await?;
            Ok(json!({ "ok": true, "version": version }))
        }
        "invoke" => invoke(hub, req).await,
        "send" => inject(hub, req).await,
        other => Err(format!("unknown command '{other}'")),
    }
}

async fn invoke(hub: &Hub, req: &Value) -> Result<Value, String> {
    let module = deployed_module(hub, req)?;
    let method = str_arg(req, "method")?;
    edgemodule_core::validate::method_name(method).map_err(|e| e.message().to_string())?;
    let payload = serde_json::to_vec(&req["payload"]).expect("JSON value serialises");
    let timeout = Duration::from_secs(req["timeout"].as_u64().unwrap_or(30).clamp(1, 300));
    let connect = Duration::from_secs(req["connectTimeout"].as_u64().unwrap_or(0).min(300));
    match hub.invoke_method(module, method, payload, timeout, connect).await {
        Ok(o) => {
            let payload =
                o.payload.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()).unwrap_or(Value::Null);
            Ok(json!({ "ok": true, "status": o.status, "payload": payload }))
        }
        Err(f) => Ok(json!({ "ok": false, "httpStatus": f.http_status, "error": f.message })),
    }
}

/// A SAS token for `module`, signed with its key, usable as the MQTT password of any client
/// (protocol.md §1.4; the audience is the IoT Hub host, as the SDKs sign it).
fn module_token(hub: &Hub, module: &str, expiry: u64) -> Result<String, String> {
    let key = hub.module_key(module).ok_or_else(|| format!("module '{module}' has no key"))?;
    let id = &hub.identity;
    Ok(edgemodule_core::wire::sas::module_token(&id.hub_host_name, &id.device_id, module, key, expiry))
}

/// Puts a message straight onto a module's input, as if a route had delivered it.
async fn inject(hub: &Hub, req: &Value) -> Result<Value, String> {
    let module = deployed_module(hub, req)?;
    let input = str_arg(req, "input")?;
    edgemodule_core::validate::endpoint_name("input", input).map_err(|e| e.message().to_string())?;
    let mut msg = Message::new(req["body"].as_str().unwrap_or("").as_bytes().to_vec());
    if let Some(props) = req["properties"].as_object() {
        for (k, v) in props {
            msg.set_property(k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
    }
    msg.set_system(SystemProperty::ConnectionDeviceId, Some(hub.identity.device_id.clone()));
    let delivery = NewDelivery {
        module: module.to_string(),
        input: input.to_string(),
        bag: property_bag::encode_delivery(&msg),
        body: msg.body().to_vec(),
        expires_at_ms: None,
        route: "$cli".into(),
    };
    let (done, wait) = oneshot::channel();
    hub.writer()
        .send(WriteRequest::Route { deliveries: vec![delivery], upstream: vec![], done })
        .map_err(|_| "store writer stopped")?;
    wait.await.map_err(|_| "store writer stopped")??;
    Ok(json!({ "ok": true }))
}

fn connection_string(hub: &Hub, module: &str) -> Result<String, String> {
    let key = hub.state.module_key(module).map_err(|e| e.to_string())?.ok_or("module has no key")?;
    Ok(ConnectionString {
        host_name: hub.identity.hub_host_name.clone(),
        device_id: hub.identity.device_id.clone(),
        module_id: module.to_string(),
        gateway_host_name: Some(hub.identity.gateway_host_name.clone()),
        credential: Credential::SharedAccessKey(key),
    }
    .to_connection_string())
}

/// The variables edgeAgent would give the module. Non-default ports travel in edgemodule's own
/// variables, which the official SDKs ignore (they always use 8883, 443 and 5671).
pub fn module_env(hub: &Hub, module: &str, mqtt: SocketAddr, https: SocketAddr) -> BTreeMap<String, String> {
    module_env_for(hub, module, Listeners { mqtt, https, amqp: None })
}

/// `module_env` with every listener, the AMQP port included.
pub fn module_env_for(hub: &Hub, module: &str, listeners: Listeners) -> BTreeMap<String, String> {
    let Listeners { mqtt, https, amqp } = listeners;
    let id = &hub.identity;
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("IOTEDGE_WORKLOADURI", format!("unix://{}", hub.state.workload_socket_path().display()));
    set("IOTEDGE_DEVICEID", id.device_id.clone());
    set("IOTEDGE_MODULEID", module.to_string());
    set("IOTEDGE_MODULEGENERATIONID", GENERATION_ID.into());
    set("IOTEDGE_IOTHUBHOSTNAME", id.hub_host_name.clone());
    set("IOTEDGE_GATEWAYHOSTNAME", id.gateway_host_name.clone());
    set("IOTEDGE_APIVERSION", WORKLOAD_API_VERSION.into());
    set("IOTEDGE_AUTHSCHEME", "sasToken".into());
    if mqtt.port() != 8883 {
        set("EDGEMODULE_MQTT_PORT", mqtt.port().to_string());
    }
    if https.port() != 443 {
        set("EDGEMODULE_HTTPS_PORT", https.port().to_string());
    }
    if let Some(amqp) = amqp.filter(|a| a.port() != 5671) {
        set("EDGEMODULE_AMQP_PORT", amqp.port().to_string());
    }
    env
}

/// Sends one request to a running hub's control socket and returns its answer.
pub async fn request(socket: &Path, req: &Value) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).await.map_err(|e| {
        format!("no hub is running on {} ({e}); start one with `edgemodule-hub start`", socket.display())
    })?;
    stream.write_all(format!("{req}\n").as_bytes()).await.map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(stream).lines();
    let line = lines.next_line().await.map_err(|e| e.to_string())?.ok_or("hub closed the control connection")?;
    serde_json::from_str(&line).map_err(|e| format!("bad answer from hub: {e}"))
}
