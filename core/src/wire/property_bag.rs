//! MQTT property bags: `k=v&k=v` with percent-encoded keys and values, the last topic level of
//! telemetry and input topics (protocol.md §2.1–§2.3).

use super::encoding::{decode, encode};
use crate::error::{Error, Result};
use crate::message::{Message, SystemProperty};

/// Splits a bag into decoded pairs; a key without `=` gets an empty value.
pub fn decode_pairs(bag: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for item in bag.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        let key = decode(k).ok_or_else(|| Error::invalid(format!("property key '{k}' is not UTF-8")))?;
        let value = decode(v).ok_or_else(|| Error::invalid(format!("property value of '{key}' is not UTF-8")))?;
        if key.is_empty() {
            return Err(Error::invalid("empty property key in property bag"));
        }
        if !pairs.iter().any(|(existing, _): &(String, String)| *existing == key) {
            pairs.push((key, value));
        }
    }
    Ok(pairs)
}

fn push_pair(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(&encode(key));
    out.push('=');
    out.push_str(&encode(value));
}

/// The bag a module publishes: system properties first (output name leading), then application ones.
pub fn encode_outbound(msg: &Message) -> String {
    let mut out = String::new();
    if let Some(on) = msg.output_name() {
        push_pair(&mut out, SystemProperty::OutputName.wire_key(), on);
    }
    for (p, v) in msg.system_properties().filter(|(p, _)| *p != SystemProperty::OutputName) {
        push_pair(&mut out, p.wire_key(), v);
    }
    for (k, v) in msg.properties() {
        push_pair(&mut out, k, v);
    }
    out
}

/// The bag the hub delivers to an input: application properties first, then the forwarded system ones.
pub fn encode_delivery(msg: &Message) -> String {
    let mut out = String::new();
    for (k, v) in msg.properties() {
        push_pair(&mut out, k, v);
    }
    for (p, v) in msg.system_properties().filter(|(p, _)| p.forwarded_to_receiver()) {
        push_pair(&mut out, p.wire_key(), v);
    }
    out
}

/// Fills a message's properties from a decoded bag: known system keys become system properties.
pub fn apply_pairs(msg: &mut Message, pairs: Vec<(String, String)>) {
    for (k, v) in pairs {
        match SystemProperty::from_wire_key(&k) {
            Some(p) => msg.set_system(p, Some(v)),
            None => msg.set_property(k, v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_matches_the_python_sdk_shape() {
        let mut m = Message::new("x")
            .with_message_id("mid-1")
            .with_correlation_id("cid-1")
            .with_content_type("application/json")
            .with_content_encoding("utf-8")
            .with_property("k/2", "a&b=c")
            .with_property("k1", "v 1");
        m.set_system(SystemProperty::OutputName, Some("out1".into()));
        assert_eq!(
            encode_outbound(&m),
            "%24.on=out1&%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&k%2F2=a%26b%3Dc&k1=v%201"
        );
    }

    #[test]
    fn delivery_drops_output_name_and_puts_app_properties_first() {
        let mut m = Message::new("x").with_property("temperatureAlert", "true").with_content_type("application/json");
        m.set_system(SystemProperty::OutputName, Some("o".into()));
        m.set_system(SystemProperty::ConnectionDeviceId, Some("edge1".into()));
        m.set_system(SystemProperty::ConnectionModuleId, Some("tempSensor".into()));
        assert_eq!(
            encode_delivery(&m),
            "temperatureAlert=true&%24.ct=application%2Fjson&%24.cdid=edge1&%24.cmid=tempSensor"
        );
    }

    #[test]
    fn decodes_both_dollar_forms_and_round_trips() {
        let pairs = decode_pairs("$.on=a&%24.mid=m&k%2F2=a%26b%3Dc&flag").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("$.on".into(), "a".into()),
                ("$.mid".into(), "m".into()),
                ("k/2".into(), "a&b=c".into()),
                ("flag".into(), "".into())
            ]
        );
        let mut m = Message::new("");
        apply_pairs(&mut m, pairs);
        assert_eq!(m.output_name(), Some("a"));
        assert_eq!(m.message_id(), Some("m"));
        assert_eq!(m.property("k/2"), Some("a&b=c"));
        assert!(decode_pairs("%ff=1").is_err());
    }
}
