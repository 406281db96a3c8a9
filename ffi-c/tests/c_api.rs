//! Builds the C tests (tests/c) and the C example against the libedgemodule that cargo built for
//! this test run, runs them (the int_* ones and the example against an in-process hub over TLS on
//! 127.0.0.1), and checks their exit codes. Needs gcc and g++.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use edgemodule_core::{ClientOptions, Message, ModuleClient};
use edgemodule_hub::server::{start, HubConfig, RunningHub};
use edgemodule_hub::state::StateDir;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-g", "-pthread"];
const SANITIZE: &[&str] = &["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding a libedgemodule.so built from the current sources for this test run's
/// profile and target dir (target/<profile>/, the parent of this test's deps/ directory). The
/// test build itself only needs the rlib, so the cdylib is (re)built here once per process.
fn library_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let target = dir.parent().unwrap();
        let profile = match dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev".to_string(),
            other => other.to_string(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "edgemodule-ffi", "--lib", "--profile", &profile])
            .arg("--manifest-path")
            .arg(crate_dir().join("../Cargo.toml"))
            .arg("--target-dir")
            .arg(target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building libedgemodule failed");
        assert!(dir.join("libedgemodule.so").exists(), "libedgemodule.so not found in {}", dir.display());
        dir
    })
    .clone()
}

/// Compiles `sources` into an executable in `out_dir`, linked against libedgemodule.so.
fn compile(out_dir: &Path, name: &str, sources: &[PathBuf], cxx: bool, extra: &[&str]) -> PathBuf {
    let lib = library_dir();
    let exe = out_dir.join(name);
    let mut cmd = std::process::Command::new(if cxx { "g++" } else { "gcc" });
    if cxx {
        cmd.args(["-std=c++17", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-g", "-pthread"]);
    } else {
        cmd.args(C_FLAGS);
    }
    cmd.args(extra)
        .arg("-I")
        .arg(crate_dir().join("../include"))
        .arg("-I")
        .arg(crate_dir().join("tests/c"))
        .args(sources)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib)
        .arg("-ledgemodule")
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    let out = cmd.output().expect("the C compiler (gcc/g++) runs");
    assert!(
        out.status.success(),
        "compiling {name} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn c_source(name: &str) -> PathBuf {
    crate_dir().join("tests/c").join(name)
}

struct Hub {
    dir: tempfile::TempDir,
    running: RunningHub,
}

/// Modules `sender`, `receiver` and `other`; routes sender/out1 → receiver/in1 and receiver/* →
/// sender/back; receiver's desired threshold 25.
fn default_deployment() -> serde_json::Value {
    json!({
          "modulesContent": {
            "$edgeAgent": { "properties.desired": { "modules": {
                "sender": { "type": "docker" }, "receiver": { "type": "docker" }, "other": { "type": "docker" }
            } } },
            "$edgeHub": { "properties.desired": {
                "schemaVersion": "1.1",
                "routes": {
                  "toReceiver": "FROM /messages/modules/sender/outputs/out1 INTO BrokeredEndpoint(\"/modules/receiver/inputs/in1\")",
                  "back": "FROM /messages/modules/receiver/outputs/* INTO BrokeredEndpoint(\"/modules/sender/inputs/back\")"
                },
                "storeAndForwardConfiguration": { "timeToLiveSecs": 7200 }
            } },
            "receiver": { "properties.desired": { "threshold": 25 } }
          }
    })
}

/// The default deployment plus the broker policy int_broker.c expects: everyone connects;
/// `sender` publishes on `sensors/#` and `in/receiver/#`; everyone subscribes to `sensors/#` and
/// `in/<own module id>/#`; nobody publishes or subscribes on `sensors/secret/#`.
fn broker_deployment() -> serde_json::Value {
    let mut d = default_deployment();
    let hub = &mut d["modulesContent"]["$edgeHub"]["properties.desired"];
    hub["schemaVersion"] = json!("1.2");
    hub["mqttBroker"] = json!({"authorizations": [
        {"identities": ["{{iot:identity}}"], "allow": [{"operations": ["mqtt:connect"]}]},
        {"identities": ["{{iot:this_device_id}}/sender"], "allow": [
            {"operations": ["mqtt:publish"], "resources": ["sensors/#", "in/receiver/#"]}]},
        {"identities": ["{{iot:identity}}"],
         "allow": [{"operations": ["mqtt:subscribe"], "resources": ["sensors/#", "in/{{iot:module_id}}/#"]}],
         "deny": [{"operations": ["mqtt:publish", "mqtt:subscribe"], "resources": ["sensors/secret/#"]}]}
    ]});
    d
}

impl Hub {
    async fn start() -> Hub {
        Hub::start_with(default_deployment()).await
    }

    async fn start_with(deployment: serde_json::Value) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        StateDir::init(dir.path(), "localhost").unwrap();
        let file = dir.path().join("deployment.json");
        std::fs::write(&file, deployment.to_string()).unwrap();
        let mut config = HubConfig::new(dir.path(), &file);
        config.mqtt_port = 0;
        config.https_port = 0;
        config.amqp_port = Some(0);
        let running = start(config).await.unwrap();
        Hub { dir, running }
    }

    fn state(&self) -> StateDir {
        StateDir::open(self.dir.path()).unwrap()
    }

    fn ca_path(&self) -> PathBuf {
        let path = self.dir.path().join("ca-for-c.pem");
        std::fs::write(&path, self.state().ca_pem().unwrap()).unwrap();
        path
    }

    fn connection_string(&self, module: &str) -> String {
        let state = self.state();
        let id = state.identity();
        let key = state.module_key(module).unwrap().unwrap();
        format!(
            "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={key};GatewayHostName=localhost",
            id.hub_host_name, id.device_id
        )
    }

    fn ports(&self) -> (u16, u16) {
        (self.running.mqtt_addr.port(), self.running.https_addr.port())
    }

    fn amqp_port(&self) -> u16 {
        self.running.amqp_addr.expect("the hub serves AMQP").port()
    }

    /// The environment a module would get via the EdgeHubConnectionString fallback.
    fn module_env(&self, module: &str) -> Vec<(String, String)> {
        let (mqtt, https) = self.ports();
        vec![
            ("EdgeHubConnectionString".into(), self.connection_string(module)),
            ("EdgeModuleCACertificateFile".into(), self.ca_path().display().to_string()),
            ("EDGEMODULE_MQTT_PORT".into(), mqtt.to_string()),
            ("EDGEMODULE_HTTPS_PORT".into(), https.to_string()),
            ("EDGEMODULE_AMQP_PORT".into(), self.amqp_port().to_string()),
        ]
    }

    async fn client(&self, module: &str) -> ModuleClient {
        let (mqtt, https) = self.ports();
        let options = ClientOptions::default()
            .with_mqtt_port(mqtt)
            .with_https_port(https)
            .with_default_timeout(Duration::from_secs(10))
            .with_connect_timeout(Duration::from_secs(5));
        let ca = self.state().ca_pem().unwrap();
        ModuleClient::from_connection_string(&self.connection_string(module), Some(&ca), options).await.unwrap()
    }
}

/// Runs a C program with a deadline; `on_line` sees each stdout line (to drive hub-side steps).
/// Returns (success, stdout, stderr).
async fn run<F, Fut>(exe: &Path, args: &[String], env: &[(String, String)], mut on_line: F) -> (bool, String, String)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for var in ["EdgeHubConnectionString", "EdgeModuleCACertificateFile", "IOTEDGE_WORKLOADURI", "IOTEDGE_MODULEID"] {
        cmd.env_remove(var);
    }
    cmd.env("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0");
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            on_line(line).await;
        }
        child.wait().await.unwrap()
    })
    .await;
    let status = match outcome {
        Ok(status) => status.success(),
        Err(_) => {
            let _ = child.kill().await;
            stdout.push_str("(killed after 120 s)\n");
            false
        }
    };
    let stderr =
        tokio::time::timeout(Duration::from_secs(5), err_task).await.ok().and_then(Result::ok).unwrap_or_default();
    (status, stdout, stderr)
}

async fn run_plain(exe: &Path) -> (bool, String, String) {
    run(exe, &[], &[], |_| async {}).await
}

fn assert_ran(name: &str, (ok, stdout, stderr): (bool, String, String)) {
    assert!(ok, "{name} failed\n--- stdout\n{stdout}--- stderr\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_api_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = compile(tmp.path(), "api_contract", &[c_source("api_contract.c")], false, &[]);
    let out = run_plain(&exe).await;
    assert!(out.1.contains("api_contract: ok"));
    assert_ran("api_contract", out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_header_compiles_as_cpp() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = compile(tmp.path(), "api_header_cpp", &[c_source("api_header.cpp")], true, &[]);
    assert_ran("api_header_cpp", run_plain(&exe).await);
}

#[derive(Clone, Copy, PartialEq)]
enum Build {
    Plain,
    Sanitized,
    /// Plain build run under valgrind's memcheck: no definite or indirect leak, no memory error.
    Valgrind,
}

async fn int_module(build: Build) {
    int_test("int_module", default_deployment(), build).await;
}

async fn int_broker(build: Build) {
    int_test("int_broker", broker_deployment(), build).await;
}

/// int_transport.c is given an MQTT port nothing listens on, so a client that did not use the
/// WebSocket transport could not connect.
async fn int_transport(build: Build) {
    int_test_on("int_transport", default_deployment(), build, Some(closed_port())).await;
}

/// A loopback port with no listener.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// int_amqp.c gets the hub's AMQP port and real MQTT port after the usual arguments, an MQTT
/// port nothing listens on in their place, and the same in its environment, so its AMQP clients
/// could not fall back to MQTT.
async fn int_amqp(build: Build) {
    int_test_with(
        "int_amqp",
        default_deployment(),
        build,
        Some(closed_port()),
        |hub| vec![hub.amqp_port().to_string(), hub.ports().0.to_string()],
        |hub| {
            let mut env = hub.module_env("other");
            env.push(("EDGEMODULE_MQTT_PORT".into(), closed_port().to_string()));
            env
        },
    )
    .await;
}

/// Builds tests/c/<name>.c and runs it against a hub with `deployment`; it must print "<name>: ok".
async fn int_test(name: &str, deployment: serde_json::Value, build: Build) {
    int_test_on(name, deployment, build, None).await;
}

/// As `int_test`, giving the program `mqtt_port` instead of the hub's MQTT port when set.
async fn int_test_on(name: &str, deployment: serde_json::Value, build: Build, mqtt_port: Option<u16>) {
    int_test_with(name, deployment, build, mqtt_port, |_| Vec::new(), |hub| hub.module_env("other")).await;
}

/// As `int_test_on`, with `more_args` appended to the program's arguments and `env` as its
/// environment.
async fn int_test_with(
    name: &str,
    deployment: serde_json::Value,
    build: Build,
    mqtt_port: Option<u16>,
    more_args: impl Fn(&Hub) -> Vec<String>,
    env: impl Fn(&Hub) -> Vec<(String, String)>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let extra = if build == Build::Sanitized { SANITIZE } else { &[] };
    let exe = compile(tmp.path(), name, &[c_source(&format!("{name}.c"))], false, extra);
    let hub = Hub::start_with(deployment).await;
    let (mqtt, https) = hub.ports();
    let mqtt = mqtt_port.unwrap_or(mqtt);
    let mut args = vec![
        hub.connection_string("sender"),
        hub.connection_string("receiver"),
        hub.ca_path().display().to_string(),
        mqtt.to_string(),
        https.to_string(),
    ];
    args.extend(more_args(&hub));
    let (exe, args) = match build {
        Build::Valgrind => {
            let mut wrapped: Vec<String> = [
                "--suppressions=tests/valgrind.supp",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite,indirect",
                "--show-leak-kinds=definite,indirect",
                "--error-exitcode=99",
            ]
            .map(String::from)
            .to_vec();
            wrapped.push(exe.display().to_string());
            wrapped.extend(args);
            (PathBuf::from("valgrind"), wrapped)
        }
        _ => (exe, args),
    };
    let env = env(&hub);
    let h = hub.running.hub.clone();
    let out = run(&exe, &args, &env, |line| {
        let h = h.clone();
        async move {
            if line == "WAIT desired" {
                h.patch_desired("receiver", json!({"threshold": 30}).as_object().unwrap()).await.unwrap();
            }
        }
    })
    .await;
    assert!(out.1.contains(&format!("{name}: ok")), "{}\n{}", out.1, out.2);
    assert_ran(name, out);
    hub.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_module_against_hub() {
    int_module(Build::Plain).await;
}

/// The full connect → send → receive → twin → method → close cycle under valgrind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_module_under_valgrind_has_no_leaks() {
    int_module(Build::Valgrind).await;
}

/// The same C tests built with AddressSanitizer and UBSan (leak detection off: the process-wide
/// runtime lives until exit by design).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_tests_under_asan_ubsan() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = compile(tmp.path(), "api_contract_asan", &[c_source("api_contract.c")], false, SANITIZE);
    assert_ran("api_contract (asan)", run_plain(&exe).await);
    int_module(Build::Sanitized).await;
}

/// Publish, subscribe (retained and live messages, QoS), unsubscribe, replacement, refusals by
/// the hub's policy and invalid topics and filters, through the C API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_broker_against_hub() {
    int_broker(Build::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_broker_under_asan_ubsan() {
    int_broker(Build::Sanitized).await;
}

/// The broker cycle (including refused publishes and the reconnects they cause) under valgrind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_broker_under_valgrind_has_no_leaks() {
    int_broker(Build::Valgrind).await;
}

/// send → route → input (a 200 KB body too), twin get / reported / desired, a client from the
/// environment, and 20 connect/close cycles that must not die of SIGPIPE, all over MQTT over
/// WebSocket (`edge_options_set_transport(opts, "mqtt_ws")`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_transport_websocket_against_hub() {
    int_transport(Build::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_transport_websocket_under_asan_ubsan() {
    int_transport(Build::Sanitized).await;
}

/// The WebSocket cycle under valgrind: no leak or memory error on the WebSocket path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_transport_websocket_under_valgrind_has_no_leaks() {
    int_transport(Build::Valgrind).await;
}

/// Over AMQP (`edge_options_set_transport(opts, "amqp")`, `edge_options_set_amqp_port`, an MQTT
/// port nothing listens on): send -> route -> input with properties, abandon comes back at once
/// with no reconnect, reject is gone (also after a reconnect), twin, a client from the
/// environment (EDGEMODULE_AMQP_PORT), user topics UNSUPPORTED. Over MQTT: a rejected message
/// is not delivered again after a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_amqp_and_settlement_against_hub() {
    int_amqp(Build::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_amqp_under_asan_ubsan() {
    int_amqp(Build::Sanitized).await;
}

/// The AMQP cycle under valgrind: no leak or memory error on the AMQP path or in reject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_int_amqp_under_valgrind_has_no_leaks() {
    int_amqp(Build::Valgrind).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_example_filter_module() {
    example_filter_module(true).await;
}

/// The reset arrives after the forwards; the example answers before it lets its main thread
/// free the client (answering after would race the close and leave the caller with a 504).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_example_reset_right_after_forwarding() {
    example_filter_module(false).await;
}

async fn example_filter_module(reset_first: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let exe = compile(tmp.path(), "filter_module", &[crate_dir().join("examples/filter_module.c")], false, &[]);
    let hub = Hub::start().await;
    let sender = hub.client("sender").await;
    let mut back = sender.input_receiver("back").unwrap();
    let env = hub.module_env("receiver");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let example = tokio::spawn({
        let exe = exe.clone();
        async move {
            run(&exe, &["--max-messages".into(), "2".into()], &env, move |line| {
                if line.starts_with("filter: ready") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                async {}
            })
            .await
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx).await.expect("example ready").unwrap();
    if reset_first {
        // The reset method answers from C.
        let h = hub.running.hub.clone();
        let out = h
            .invoke_method("receiver", "reset", b"{}".to_vec(), Duration::from_secs(20), Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("invoking reset failed: {e:?}"));
        assert_eq!(out.status, 200);
    }
    // Threshold 25 from the desired properties: 21 is dropped, 31 is forwarded.
    for t in [21, 31] {
        let m = Message::new(format!("{{\"t\":{t}}}")).with_content_type("application/json");
        sender.send_to_output("out1", m).await.unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(15), back.recv()).await.unwrap().unwrap();
    assert_eq!(got.message().body().as_ref(), b"{\"t\":31}");
    assert_eq!(got.message().property("alert"), Some("true"));
    got.complete().unwrap();
    if !reset_first {
        // The reset method answers from C.
        let h = hub.running.hub.clone();
        let out = h
            .invoke_method("receiver", "reset", b"{}".to_vec(), Duration::from_secs(20), Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("invoking reset failed: {e:?}"));
        assert_eq!(out.status, 200);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), example).await.unwrap().unwrap();
    assert!(out.1.contains("filter: done"), "{}\n{}", out.1, out.2);
    assert_ran("filter_module", out);
    sender.close().await.unwrap();
    hub.running.shutdown().await;
}
