//! A sensor module: emits a temperature reading every 200 ms on output `readings` and prints
//! the alerts that come back on input `alerts`. Stops after `SENSOR_READINGS` readings (default 40).
//!
//! ```sh
//! edgemodule-hub run --module sensor -- cargo run -p edgemodule-core --example sensor
//! ```

use std::time::Duration;

use edgemodule_core::{ClientOptions, Message, ModuleClient};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> edgemodule_core::Result<()> {
    let client = ModuleClient::from_environment(ClientOptions::default()).await?;
    let count: u32 = std::env::var("SENSOR_READINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mut alerts = client.input_receiver("alerts")?;
    tokio::spawn(async move {
        while let Some(alert) = alerts.recv().await {
            let body: Value = serde_json::from_slice(alert.message().body()).unwrap_or(Value::Null);
            println!("sensor: alert came back for {body}");
            let _ = alert.complete();
        }
    });
    for i in 0..count {
        // A slow wave between 15 and 45 degrees, so the filter's threshold matters.
        let temperature = 30.0 + 15.0 * (i as f64 / 4.0).sin();
        let reading = json!({ "temperature": (temperature * 10.0).round() / 10.0, "seq": i });
        let msg =
            Message::new(reading.to_string()).with_content_type("application/json").with_content_encoding("utf-8");
        client.send_to_output("readings", msg).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.close().await
}
