//! `edgemodule-hub`: run a local edge hub and talk to a running one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgemodule_hub::control;
use edgemodule_hub::server::{start, HubConfig, StartError, EXIT_PORT_IN_USE};
use edgemodule_hub::state::StateDir;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "edgemodule-hub", version, about = "A local Azure IoT Edge hub for running and testing modules")]
struct Cli {
    /// The hub's state directory (identity, certificates, keys, store).
    #[arg(long, global = true, env = "EDGEMODULE_HUB_STATE", default_value = ".edgehub")]
    state_dir: PathBuf,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the device identity, CA and server certificate.
    Init {
        #[arg(long, default_value = "localhost")]
        hostname: String,
    },
    /// Run the hub with a deployment manifest. Exits 3 when a port is taken, 2 on other errors.
    Start {
        #[arg(long)]
        deployment: PathBuf,
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        #[arg(long, default_value_t = 8883)]
        mqtt_port: u16,
        #[arg(long, default_value_t = 443)]
        https_port: u16,
        /// AMQPS port (0 = ephemeral).
        #[arg(long, default_value_t = 5671)]
        amqp_port: u16,
        /// No AMQPS listener (AMQP over WebSocket on the HTTPS port stays, as MQTT over WebSocket does).
        #[arg(long)]
        no_amqp: bool,
    },
    /// Print what the running hub listens on and which modules it knows.
    Status,
    /// Print a module's connection string (with GatewayHostName).
    ConnectionString {
        #[arg(long)]
        module: String,
    },
    /// Print a module's IOTEDGE_* environment as `export` lines.
    Env {
        #[arg(long)]
        module: String,
    },
    /// Print a SAS token for a module (signed with its key), usable as the MQTT password of any
    /// MQTT client (see docs/broker.md).
    Token {
        #[arg(long)]
        module: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = control::DEFAULT_TOKEN_TTL_SECS)]
        ttl: u64,
    },
    /// Run a command with a module's environment, as edgeAgent would.
    Run {
        #[arg(long)]
        module: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Invoke a direct method on a module.
    Invoke {
        #[arg(long)]
        module: String,
        #[arg(long)]
        method: String,
        #[arg(long, default_value = "null")]
        payload: String,
        /// Response timeout in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// How long to wait for the module to connect, in seconds.
        #[arg(long, default_value_t = 0)]
        connect_timeout: u64,
    },
    /// Read a module twin, or patch its desired properties.
    Twin {
        #[command(subcommand)]
        action: TwinAction,
    },
    /// Put a message on a module input.
    Send {
        #[arg(long)]
        module: String,
        #[arg(long)]
        input: String,
        /// Application properties as key=value (repeatable).
        #[arg(long = "property")]
        properties: Vec<String>,
        body: String,
    },
    /// Print one line per routed message (JSON, or `--text` for people).
    Monitor {
        #[arg(long)]
        text: bool,
    },
}

#[derive(Subcommand)]
enum TwinAction {
    Get {
        #[arg(long)]
        module: String,
    },
    PatchDesired {
        #[arg(long)]
        module: String,
        patch: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edgemodule-hub: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,edgemodule_hub=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEMODULE_LOG").unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn parse_json(what: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} is not valid JSON: {e}"))
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let socket = cli.state_dir.join("control.sock");
    let ask = |req: Value| {
        let socket = socket.clone();
        async move {
            let answer = control::request(&socket, &req).await?;
            if answer["ok"] == true {
                Ok(answer)
            } else {
                Err(answer["error"].as_str().unwrap_or("request failed").to_string())
            }
        }
    };
    match cli.command {
        Command::Init { hostname } => {
            let state = StateDir::init(&cli.state_dir, &hostname).map_err(|e| e.to_string())?;
            println!(
                "initialised {} for device '{}' (gateway {hostname})",
                state.path().display(),
                state.identity().device_id
            );
        }
        Command::Start { deployment, bind, mqtt_port, https_port, amqp_port, no_amqp } => {
            let mut config = HubConfig::new(&cli.state_dir, deployment);
            (config.bind, config.mqtt_port, config.https_port) = (bind, mqtt_port, https_port);
            config.amqp_port = (!no_amqp).then_some(amqp_port);
            let hub = match start(config).await {
                Ok(hub) => hub,
                Err(e @ StartError::PortInUse(_)) => {
                    eprintln!("edgemodule-hub: {e}");
                    return Ok(ExitCode::from(EXIT_PORT_IN_USE));
                }
                Err(e) => return Err(e.into()),
            };
            let amqp = hub.amqp_addr.map_or("off".to_string(), |a| a.to_string());
            eprintln!(
                "edgemodule-hub: MQTT on {}, HTTPS on {}, AMQP on {amqp}, modules: {}",
                hub.mqtt_addr,
                hub.https_addr,
                hub.hub.module_ids().join(", ")
            );
            wait_for_signal().await;
            hub.shutdown().await;
        }
        Command::Status => println!("{}", ask(json!({"cmd": "status"})).await?),
        Command::ConnectionString { module } => {
            println!(
                "{}",
                ask(json!({"cmd": "connection-string", "module": module})).await?["value"].as_str().unwrap_or("")
            )
        }
        Command::Env { module } => {
            let answer = ask(json!({"cmd": "env", "module": module})).await?;
            for (k, v) in answer["env"].as_object().into_iter().flatten() {
                println!("export {k}='{}'", v.as_str().unwrap_or(""));
            }
        }
        Command::Token { module, ttl } => {
            let answer = ask(json!({"cmd": "token", "module": module, "ttl": ttl})).await?;
            println!("{}", answer["token"].as_str().unwrap_or(""));
        }
        Command::Run { module, command } => {
            let answer = ask(json!({"cmd": "env", "module": module})).await?;
            let mut cmd = tokio::process::Command::new(&command[0]);
            cmd.args(&command[1..]);
            for (k, v) in answer["env"].as_object().into_iter().flatten() {
                cmd.env(k, v.as_str().unwrap_or(""));
            }
            let mut child = cmd.kill_on_drop(true).spawn().map_err(|e| format!("cannot run {}: {e}", command[0]))?;
            // Like edgeAgent stopping a module: a signal to us stops the module too.
            let status = tokio::select! {
                status = child.wait() => status.map_err(|e| e.to_string())?,
                _ = wait_for_signal() => match stop_gracefully(&mut child).await {
                    Some(status) => status,
                    None => return Ok(ExitCode::from(137)),
                },
            };
            return Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8));
        }
        Command::Invoke { module, method, payload, timeout, connect_timeout } => {
            let payload = parse_json("--payload", &payload)?;
            let answer = control::request(
                &socket,
                &json!({"cmd": "invoke", "module": module, "method": method, "payload": payload,
                        "timeout": timeout, "connectTimeout": connect_timeout}),
            )
            .await?;
            println!("{answer}");
            return Ok(if answer["ok"] == true { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Twin { action: TwinAction::Get { module } } => {
            println!("{}", ask(json!({"cmd": "twin-get", "module": module})).await?["twin"])
        }
        Command::Twin { action: TwinAction::PatchDesired { module, patch } } => {
            let patch = parse_json("the patch", &patch)?;
            println!("{}", ask(json!({"cmd": "twin-patch-desired", "module": module, "patch": patch})).await?)
        }
        Command::Send { module, input, properties, body } => {
            let mut props = serde_json::Map::new();
            for p in properties {
                let (k, v) = p.split_once('=').ok_or_else(|| format!("--property '{p}' is not key=value"))?;
                props.insert(k.into(), Value::from(v));
            }
            ask(json!({"cmd": "send", "module": module, "input": input, "body": body, "properties": props})).await?;
        }
        Command::Monitor { text } => monitor(&socket, text).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn monitor(socket: &std::path::Path, text: bool) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut stream =
        tokio::net::UnixStream::connect(socket).await.map_err(|e| format!("no hub on {}: {e}", socket.display()))?;
    stream.write_all(b"{\"cmd\":\"monitor\"}\n").await.map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(stream).lines();
    lines.next_line().await.map_err(|e| e.to_string())?;
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Value>(&line) {
            Ok(v) if text => println!("{}", monitor_text(&v)),
            _ => println!("{line}"),
        }
    }
    Ok(())
}

/// `sensor/readings --[route]--> filter/input1  {"temperature":31} (alert=true)`
fn monitor_text(v: &Value) -> String {
    let source = match v["output"].as_str() {
        Some(o) => format!("{}/{o}", v["source"].as_str().unwrap_or("?")),
        None => v["source"].as_str().unwrap_or("?").to_string(),
    };
    let props: Vec<String> = v["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, val)| format!("{k}={}", val.as_str().unwrap_or("")))
        .collect();
    let body = v["body"].as_str().map(str::to_string).unwrap_or_else(|| "<binary>".into());
    let props = if props.is_empty() { String::new() } else { format!(" ({})", props.join(", ")) };
    format!(
        "{source} --[{}]--> {}  {body}{props}",
        v["route"].as_str().unwrap_or("?"),
        v["target"].as_str().unwrap_or("?")
    )
}

/// Stops a module as edgeAgent stops a container: SIGTERM, then SIGKILL after a grace period.
/// Returns the module's exit status when it stopped by itself.
async fn stop_gracefully(child: &mut tokio::process::Child) -> Option<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped) and a valid signal.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = child.kill().await;
            None
        }
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
