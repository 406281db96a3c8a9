//! A filter module: reads JSON readings on input `input1`, forwards those whose `temperature`
//! exceeds the desired property `threshold` to output `alerts`, reports how many it forwarded,
//! and answers a `reset` method. Run it against a local hub:
//!
//! ```sh
//! edgemodule-hub run --module filter -- cargo run -p edgemodule-core --example filter
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use edgemodule_core::{ClientOptions, Message, ModuleClient};
use serde_json::{json, Value};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> edgemodule_core::Result<()> {
    let client = ModuleClient::from_environment(ClientOptions::default()).await?;
    let forwarded = Arc::new(AtomicU64::new(0));
    let mut desired = client.desired_receiver()?;
    let initial = client.get_twin(None).await?.desired["threshold"].as_f64().unwrap_or(25.0);
    let (threshold_tx, threshold) = watch::channel(initial);
    let reporter = client.clone();
    tokio::spawn(async move {
        while let Some(patch) = desired.recv().await {
            if let Some(t) = patch["threshold"].as_f64() {
                let _ = threshold_tx.send(t);
                // Say which threshold is in force, so operators (and tests) can see it applied.
                let _ = reporter.update_reported(&json!({ "threshold": t }), None).await;
            }
        }
    });

    let mut reset = client.method_receiver(Some("reset"))?;
    let counter = forwarded.clone();
    tokio::spawn(async move {
        while let Some(call) = reset.recv().await {
            let before = counter.swap(0, Ordering::Relaxed);
            let _ = call.respond(200, Some(&json!({ "reset": true, "forwarded": before }))).await;
        }
    });

    let mut input = client.input_receiver("input1")?;
    eprintln!("filter: running with threshold {initial}");
    while let Some(msg) = input.recv().await {
        let reading: Value = serde_json::from_slice(msg.message().body()).unwrap_or(Value::Null);
        let limit = *threshold.borrow();
        if reading["temperature"].as_f64().is_some_and(|t| t > limit) {
            let alert = Message::new(msg.message().body().clone())
                .with_content_type("application/json")
                .with_content_encoding("utf-8")
                .with_property("alert", "true");
            client.send_to_output("alerts", alert).await?;
            let n = forwarded.fetch_add(1, Ordering::Relaxed) + 1;
            client.update_reported(&json!({ "forwarded": n }), None).await?;
        }
        // Acknowledge only once the alert is safely with the hub: nothing is lost on a crash.
        msg.complete()?;
    }
    Ok(())
}
