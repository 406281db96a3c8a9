//! The JSON shape of a routed message, used by `monitor` and by the `$upstream` sink file.

use base64::Engine;
use edgemodule_core::Message;
use serde_json::{json, Map, Value};

use crate::routes::MessageSource;

/// One line: source, output, route, target, properties, system properties and body (UTF-8 text
/// as `body`, anything else base64 as `bodyBase64`).
pub fn message_line(source: &MessageSource, route: &str, target: &str, msg: &Message) -> Value {
    let (source_name, output) = match source {
        MessageSource::Module { module, output } => (module.as_str(), output.as_deref()),
        MessageSource::Device => ("$device", None),
        MessageSource::TwinChangeNotification => ("$twinChangeNotifications", None),
    };
    let properties: Map<String, Value> =
        msg.properties().iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
    let system: Map<String, Value> =
        msg.system_properties().map(|(p, v)| (p.route_name().to_string(), Value::from(v))).collect();
    let mut line = json!({
        "source": source_name,
        "output": output,
        "route": route,
        "target": target,
        "properties": properties,
        "system": system,
    });
    match std::str::from_utf8(msg.body()) {
        Ok(text) => line["body"] = Value::from(text),
        Err(_) => line["bodyBase64"] = Value::from(base64::engine::general_purpose::STANDARD.encode(msg.body())),
    }
    line
}
