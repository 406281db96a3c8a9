//! Input validation, done once here for every binding.

use crate::client::Qos;
use crate::error::{Error, ErrorKind, Result};
use crate::message::Message;

/// The hub's message size limit (protocol.md §9).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The method payload limit (protocol.md §4.2).
pub const MAX_METHOD_PAYLOAD_BYTES: usize = 128 * 1024;
/// edgeHub's method-name limit.
pub const MAX_METHOD_NAME_CHARS: usize = 100;
const MAX_NAME_CHARS: usize = 128;
/// Characters that the route grammar treats as separators, so an output or input name with one
/// could never be routed.
const NAME_FORBIDDEN: &str = "()<>@,;:\\\"/[]?={}#+*$";

/// Output and input names: non-empty, at most 128 characters, no whitespace, controls or separators.
pub fn endpoint_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{what} name must not be empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(format!("{what} name is longer than {MAX_NAME_CHARS} characters")));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control() || NAME_FORBIDDEN.contains(*c)) {
        return Err(Error::invalid(format!("{what} name '{name}' contains the forbidden character {c:?}")));
    }
    Ok(())
}

/// Device and module ids: ≤ 128 ASCII alphanumerics plus `- . + % _ # * ? ! ( ) , = @ $ '`.
pub fn identity_id(what: &str, id: &str) -> Result<()> {
    const EXTRA: &str = "-.+%_#*?!(),=@$'";
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || EXTRA.contains(c)) {
        return Err(Error::invalid(format!("{what} '{id}' must be 1-128 ASCII letters, digits or one of {EXTRA}")));
    }
    Ok(())
}

/// Application property keys: non-empty, no control characters, not a reserved system key.
pub fn property_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("property key must not be empty"));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid(format!("property key {key:?} contains a control character")));
    }
    if key.starts_with("$.") || key.eq_ignore_ascii_case("iothub-operation") {
        return Err(Error::invalid(format!("property key '{key}' is reserved for system properties")));
    }
    Ok(())
}

/// A message about to be sent: valid property keys and within the size limit.
pub fn outgoing_message(msg: &Message) -> Result<()> {
    for (k, _) in msg.properties() {
        property_key(k)?;
    }
    let size = msg.wire_size();
    if size > MAX_MESSAGE_BYTES {
        return Err(Error::new(
            ErrorKind::MessageTooLarge,
            format!("message is {size} bytes with its properties; the limit is {MAX_MESSAGE_BYTES}"),
        ));
    }
    Ok(())
}

/// Method names: 1–100 printable ASCII characters without separators.
pub fn method_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_METHOD_NAME_CHARS {
        return Err(Error::invalid(format!("method name must be 1-{MAX_METHOD_NAME_CHARS} characters")));
    }
    endpoint_name("method", name)
}

/// A method payload must be JSON and at most 128 KB.
pub fn method_payload(payload: &[u8]) -> Result<serde_json::Value> {
    if payload.len() > MAX_METHOD_PAYLOAD_BYTES {
        return Err(Error::new(
            ErrorKind::MessageTooLarge,
            format!("method payload is {} bytes; the limit is {MAX_METHOD_PAYLOAD_BYTES}", payload.len()),
        ));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(payload).map_err(|e| Error::invalid(format!("method payload is not JSON: {e}")))
}

/// The MQTT limit on topic names and filters (a two-byte length prefix).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Topic prefixes of the IoT Hub surface (telemetry, inputs, twins, methods). The hub serves them
/// itself, so they are not user topics: `publish`/`subscribe` refuse them.
pub const RESERVED_TOPIC_PREFIXES: &[&str] = &["devices/", "$iothub/"];

/// Whether `topic` (a name or a filter) belongs to the IoT Hub surface rather than to user topics.
pub fn is_reserved_topic(topic: &str) -> bool {
    RESERVED_TOPIC_PREFIXES.iter().any(|p| topic.starts_with(p))
}

fn topic_common(what: &str, topic: &str) -> Result<()> {
    if topic.is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(Error::invalid(format!("{what} is longer than {MAX_TOPIC_BYTES} bytes")));
    }
    if topic.contains('\0') {
        return Err(Error::invalid(format!("{what} {topic:?} contains a NUL character")));
    }
    Ok(())
}

/// MQTT topic-name syntax (what a PUBLISH may carry): non-empty, no NUL, no `+` or `#`.
pub fn topic_name_syntax(topic: &str) -> Result<()> {
    topic_common("topic", topic)?;
    if topic.contains(['+', '#']) {
        return Err(Error::invalid(format!("topic '{topic}' contains a wildcard; wildcards belong in filters")));
    }
    Ok(())
}

/// MQTT topic-filter syntax: non-empty, no NUL, `+` only as a whole level, `#` only as the whole
/// last level.
pub fn topic_filter_syntax(filter: &str) -> Result<()> {
    topic_common("topic filter", filter)?;
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(Error::invalid(format!("topic filter '{filter}': '#' must be the whole last level")));
        }
        if level.contains('+') && *level != "+" {
            return Err(Error::invalid(format!("topic filter '{filter}': '+' must be a whole level")));
        }
    }
    Ok(())
}

/// A user topic to publish on: valid topic-name syntax and not an IoT Hub topic.
pub fn user_topic(topic: &str) -> Result<()> {
    topic_name_syntax(topic)?;
    if is_reserved_topic(topic) {
        return Err(Error::invalid(format!(
            "topic '{topic}' is an IoT Hub topic; use send_to_output, the twin and method APIs instead"
        )));
    }
    Ok(())
}

/// A user topic filter to subscribe to: valid filter syntax and not an IoT Hub filter.
pub fn user_topic_filter(filter: &str) -> Result<()> {
    topic_filter_syntax(filter)?;
    if is_reserved_topic(filter) {
        return Err(Error::invalid(format!(
            "topic filter '{filter}' is an IoT Hub topic; use the input, twin and method receivers instead"
        )));
    }
    Ok(())
}

/// A QoS number as the bindings receive it (a C int, a Python int, a JavaScript number): 0 or 1.
/// IoT Edge does not support QoS 2.
pub fn qos(value: i64) -> Result<Qos> {
    match value {
        0 => Ok(Qos::AtMostOnce),
        1 => Ok(Qos::AtLeastOnce),
        _ => Err(Error::invalid(format!("qos must be 0 or 1, got {value} (IoT Edge does not support QoS 2)"))),
    }
}

impl TryFrom<i64> for Qos {
    type Error = Error;

    fn try_from(value: i64) -> Result<Qos> {
        qos(value)
    }
}

/// Whether `topic` matches `filter` under MQTT 3.1.1 rules, including that a filter starting
/// with a wildcard does not match topics starting with `$`. Both are assumed syntactically valid.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(endpoint_name("output", "temperature_1").is_ok());
        for bad in ["", "a b", "a/b", "a#", "x\n", &"a".repeat(129)] {
            assert_eq!(endpoint_name("output", bad).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert!(identity_id("module", "filter-1").is_ok());
        assert!(identity_id("module", "fil ter").is_err());
    }

    #[test]
    fn size_limit_counts_properties() {
        let body = vec![0u8; MAX_MESSAGE_BYTES - 4];
        assert!(outgoing_message(&Message::new(body.clone())).is_ok());
        let e = outgoing_message(&Message::new(body).with_property("k", "vvvv")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
    }

    #[test]
    fn payloads() {
        assert_eq!(method_payload(b"").unwrap(), serde_json::Value::Null);
        assert!(method_payload(b"{").is_err());
        assert_eq!(
            method_payload(&vec![b' '; MAX_METHOD_PAYLOAD_BYTES + 1]).unwrap_err().kind(),
            ErrorKind::MessageTooLarge
        );
    }

    #[test]
    fn topics_and_filters() {
        for good in ["a", "a/b", "/", "a//b", "$share-less/x", "sensors/temp 1"] {
            assert!(user_topic(good).is_ok(), "{good}");
        }
        for bad in ["", "a/+", "a/#", "devices/d/modules/m/x", "$iothub/twin/GET", "a\0b"] {
            assert_eq!(user_topic(bad).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        for good in ["#", "+", "a/+/b", "a/#", "+/+", "a//#"] {
            assert!(user_topic_filter(good).is_ok(), "{good}");
        }
        for bad in ["", "a#", "a/#/b", "a+/b", "#/a", "devices/#", "$iothub/#"] {
            assert!(user_topic_filter(bad).is_err(), "{bad:?}");
        }
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "a/b"));
        assert!(!topic_matches("#", "$SYS/x"));
        assert!(!topic_matches("+/x", "$SYS/x"));
        assert!(topic_matches("$SYS/#", "$SYS/x"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(topic_matches("+", ""));
        assert!(topic_matches("a/+", "a/"));
    }

    #[test]
    fn qos_numbers() {
        assert_eq!(qos(0).unwrap(), Qos::AtMostOnce);
        assert_eq!(Qos::try_from(1).unwrap(), Qos::AtLeastOnce);
        for bad in [2, -1, 256] {
            let e = qos(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.message().starts_with("qos must be 0 or 1"), "{e}");
        }
        assert_eq!(Qos::AtLeastOnce as u8, 1);
    }
}
