//! The `edgemodule-hub` command line as a user runs it: init, start (good and bad manifests),
//! and every command against a running hub, checked against a real module client.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use edgemodule_core::wire::connection_string::ConnectionString;
use edgemodule_core::{ClientOptions, Message, ModuleClient};
use serde_json::{json, Value};

fn hub_cmd(state: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgemodule-hub"));
    c.arg("--state-dir").arg(state);
    c
}

fn run(state: &std::path::Path, args: &[&str]) -> Output {
    hub_cmd(state).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn deployment() -> Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"a": {}, "b": {}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
            "ab": "FROM /messages/modules/a/outputs/o INTO BrokeredEndpoint(\"/modules/b/inputs/in\")"
        }}},
        "b": {"properties.desired": {"x": 0}}
    }})
}

async fn client(state: &std::path::Path, module: &str, mqtt_port: u16) -> ModuleClient {
    let cs = stdout(&run(state, &["connection-string", "--module", module]));
    let ca = std::fs::read_to_string(state.join("ca.pem")).unwrap();
    let opts = ClientOptions::default().with_mqtt_port(mqtt_port).with_default_timeout(Duration::from_secs(10));
    ModuleClient::from_connection_string(cs.trim(), Some(&ca), opts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_a_running_hub() {
    tokio::time::timeout(Duration::from_secs(120), scenario()).await.expect("CLI test exceeded 120 s");
}

async fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let init = run(&state, &["init", "--hostname", "localhost"]);
    assert!(init.status.success() && stdout(&init).contains("initialised"), "{init:?}");
    let ca_before = std::fs::read(state.join("ca.pem")).unwrap();
    assert!(run(&state, &["init"]).status.success());
    assert_eq!(std::fs::read(state.join("ca.pem")).unwrap(), ca_before, "init is idempotent");

    // A bad manifest: refused at start, naming the file, the JSON path and the problem.
    let bad = dir.path().join("bad.json");
    let mut broken = deployment();
    broken["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]["ab"] = json!("FROM /x INTO nowhere");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let out = run(&state, &["start", "--deployment", bad.to_str().unwrap(), "--mqtt-port", "0", "--https-port", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("bad.json") && err.contains("routes.ab"), "{err}");

    // A taken port: its own exit status, so a supervisor can pick another port.
    let good = dir.path().join("deployment.json");
    std::fs::write(&good, deployment().to_string()).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out =
        run(&state, &["start", "--deployment", good.to_str().unwrap(), "--mqtt-port", &port, "--https-port", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("cannot listen for MQTT on 127.0.0.1:{port}")), "{err}");
    drop(taken);
    let _hub = Running(
        hub_cmd(&state)
            .args(["start", "--deployment", good.to_str().unwrap(), "--mqtt-port", "0", "--https-port", "0"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status: Value = loop {
        let o = run(&state, &["status"]);
        if o.status.success() {
            break serde_json::from_str(&stdout(&o)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["modules"], json!(["a", "b"]));
    let mqtt_port: u16 = status["mqtt"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();

    let cs = ConnectionString::parse(stdout(&run(&state, &["connection-string", "--module", "a"])).trim()).unwrap();
    assert_eq!((cs.module_id.as_str(), cs.gateway_host_name.as_deref()), ("a", Some("localhost")));
    let ghost = run(&state, &["connection-string", "--module", "ghost"]);
    assert!(!ghost.status.success() && String::from_utf8_lossy(&ghost.stderr).contains("not in the deployment"));

    let env = stdout(&run(&state, &["env", "--module", "a"]));
    assert!(env.contains("export IOTEDGE_MODULEID='a'"), "{env}");
    assert!(env.contains(&format!("export EDGEMODULE_MQTT_PORT='{mqtt_port}'")), "{env}");
    let ran = run(&state, &["run", "--module", "a", "--", "sh", "-c", "echo $IOTEDGE_MODULEID/$IOTEDGE_AUTHSCHEME"]);
    assert_eq!(stdout(&ran).trim(), "a/sasToken");
    // `run` passes SIGTERM on to the module, which may shut down cleanly and choose its exit code.
    let script = "trap 'echo stopping; exit 3' TERM; echo started; while :; do sleep 0.05; done";
    let mut module = hub_cmd(&state)
        .args(["run", "--module", "a", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(module.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert_eq!(first.trim(), "started");
    // SAFETY: kill(2) on the child we spawned and have not reaped.
    unsafe { libc::kill(module.id() as libc::pid_t, libc::SIGTERM) };
    let status = module.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!((status.code(), rest.trim()), (Some(3), "stopping"));

    // send: straight onto b's input, with a property.
    let sent = run(&state, &["send", "--module", "b", "--input", "in", "--property", "k=v 1", "hello"]);
    assert!(sent.status.success(), "{sent:?}");
    let b = client(&state, "b", mqtt_port).await;
    let mut input = b.input_receiver("in").unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), input.recv()).await.unwrap().unwrap();
    assert_eq!((m.message().body().as_ref(), m.message().property("k")), (&b"hello"[..], Some("v 1")));
    m.complete().unwrap();

    // monitor: one JSON line per routed message.
    let mut monitor = Running(hub_cmd(&state).arg("monitor").stdout(Stdio::piped()).spawn().unwrap());
    let monitor_out = monitor.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(monitor_out).lines().map_while(Result::ok).find(|l| l.contains("\"route\":\"ab\""))
    });
    let a = client(&state, "a", mqtt_port).await;
    // The monitor subscribes asynchronously: send until a line shows up.
    while !reader.is_finished() {
        a.send_to_output("o", Message::new("watched").with_property("p", "1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line: Value = serde_json::from_str(&reader.join().unwrap().unwrap()).unwrap();
    assert_eq!(
        (&line["source"], &line["output"], &line["target"], &line["body"], &line["properties"]["p"]),
        (&json!("a"), &json!("o"), &json!("b/in"), &json!("watched"), &json!("1"))
    );

    // twin: patch desired, read it back; the connected module is notified.
    let mut desired = b.desired_receiver().unwrap();
    let patched: Value =
        serde_json::from_str(&stdout(&run(&state, &["twin", "patch-desired", "--module", "b", r#"{"x": 7}"#])))
            .unwrap();
    let twin: Value = serde_json::from_str(&stdout(&run(&state, &["twin", "get", "--module", "b"]))).unwrap();
    assert_eq!(twin["desired"]["x"], 7);
    assert_eq!(twin["desired"]["$version"], patched["version"]);
    let patch = tokio::time::timeout(Duration::from_secs(10), desired.recv()).await.unwrap().unwrap();
    assert_eq!(patch["x"], 7);
    let bad_json = run(&state, &["twin", "patch-desired", "--module", "b", "{nope"]);
    assert!(!bad_json.status.success() && String::from_utf8_lossy(&bad_json.stderr).contains("not valid JSON"));

    // invoke: answered by a handler; 404 for a module that is not connected.
    let mut calls = b.method_receiver(Some("ping")).unwrap();
    tokio::spawn(async move {
        while let Some(c) = calls.recv().await {
            let echo = c.payload_json().unwrap();
            c.respond(200, Some(&json!({ "pong": echo }))).await.unwrap();
        }
    });
    let ok = run(&state, &["invoke", "--module", "b", "--method", "ping", "--payload", r#"{"n":1}"#, "--timeout", "5"]);
    let ok: Value = serde_json::from_str(&stdout(&ok)).unwrap();
    assert_eq!((ok["status"].clone(), ok["payload"].clone()), (json!(200), json!({"pong": {"n": 1}})));
    a.close().await.unwrap();
    let absent = run(&state, &["invoke", "--module", "a", "--method", "ping", "--timeout", "5"]);
    assert_eq!(absent.status.code(), Some(1));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&absent)).unwrap()["httpStatus"], 404);
}
