//! Runs the `filter` example as its own process against a real hub, as a user would with
//! `edgemodule-hub run`, and checks what it forwards, reports and answers.

mod common;

use std::time::Duration;

use common::{bounded, TestHub};
use edgemodule_core::Message;
use serde_json::{json, Value};

fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join("filter")
}

fn deployment() -> Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"sensor": {}, "filter": {}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {
            "in": "FROM /messages/modules/sensor/outputs/readings INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")",
            "out": "FROM /messages/modules/filter/outputs/alerts INTO BrokeredEndpoint(\"/modules/sensor/inputs/alerts\")"
        }}},
        "filter": {"properties.desired": {"threshold": 25}}
    }})
}

/// Waits until the filter's reported `key` equals `value` (reported patches are the module's
/// observable events).
async fn reported(hub: &TestHub, key: &str, value: Value) {
    loop {
        let twin = hub.hub().twin_document("filter").await.unwrap();
        if twin["reported"][key] == value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn filter_example_forwards_above_the_desired_threshold_and_resets() {
    bounded(async {
        let hub = TestHub::start_with(deployment()).await;
        let running = hub.running.as_ref().unwrap();
        let env = edgemodule_hub::control::module_env(hub.hub(), "filter", running.mqtt_addr, running.https_addr);
        let mut child = tokio::process::Command::new(example_binary()).envs(env).kill_on_drop(true).spawn().unwrap();

        let sensor = hub.client("sensor").await;
        let mut alerts = sensor.input_receiver("alerts").unwrap();
        let reading = |t: f64| Message::new(json!({ "temperature": t }).to_string());
        for t in [20.0, 30.0] {
            sensor.send_to_output("readings", reading(t)).await.unwrap();
        }
        let alert = tokio::time::timeout(Duration::from_secs(30), alerts.recv()).await.unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Value>(alert.message().body()).unwrap()["temperature"], 30.0);
        assert_eq!(alert.message().property("alert"), Some("true"));
        alert.complete().unwrap();

        hub.hub().patch_desired("filter", json!({"threshold": 35}).as_object().unwrap()).await.unwrap();
        // The module reports the threshold it applies; wait until the new one is in force.
        reported(&hub, "threshold", json!(35.0)).await;
        for t in [30.0, 40.0] {
            sensor.send_to_output("readings", reading(t)).await.unwrap();
        }
        let alert = tokio::time::timeout(Duration::from_secs(30), alerts.recv()).await.unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Value>(alert.message().body()).unwrap()["temperature"], 40.0);
        alert.complete().unwrap();

        // The count is reported after each forward; the reset must see both.
        reported(&hub, "forwarded", json!(2)).await;
        let out = hub
            .hub()
            .invoke_method("filter", "reset", b"null".to_vec(), Duration::from_secs(10), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.status, 200);
        let payload: Value = serde_json::from_str(out.payload.as_deref().unwrap()).unwrap();
        assert_eq!(payload, json!({"reset": true, "forwarded": 2}));
        child.kill().await.unwrap();
    })
    .await
}
