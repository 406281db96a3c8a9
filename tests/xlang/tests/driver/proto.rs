//! The line protocol's encoding, and matching of results against a scenario's expectations.

use std::collections::HashMap;

use edgemodule_core::{Message, TopicMessage};
use serde_json::Value;

pub use xlang::line::{enc, parse_fields, Fields};

/// A user-topic message as the agents print it in `topic` events (without `filter`).
pub fn topic_fields(m: &TopicMessage) -> Fields {
    let mut f = Fields::new();
    f.insert("topic".into(), m.topic.clone());
    f.insert("payload".into(), String::from_utf8_lossy(&m.payload).into_owned());
    f.insert("qos".into(), (m.qos as u8).to_string());
    f.insert("retain".into(), m.retain.to_string());
    f
}

/// A received message as the agents print it, so hub-side checks use the same expectations.
pub fn message_fields(m: &Message) -> Fields {
    let mut f = Fields::new();
    f.insert("body".into(), String::from_utf8_lossy(m.body()).into_owned());
    for (key, p) in [
        ("input", m.input_name()),
        ("mid", m.message_id()),
        ("cid", m.correlation_id()),
        ("ct", m.content_type()),
        ("ce", m.content_encoding()),
        ("cmid", m.connection_module_id()),
    ] {
        if let Some(v) = p {
            f.insert(key.into(), v.into());
        }
    }
    f.insert("nprops".into(), m.properties().len().to_string());
    for (k, v) in m.properties() {
        f.insert(format!("p.{k}"), v.clone());
    }
    f
}

/// Replaces `${name}` in every string of `v`.
pub fn substitute(v: &Value, vars: &HashMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(subst_str(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, vars)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (subst_str(k, vars), substitute(x, vars))).collect()),
        other => other.clone(),
    }
}

pub fn subst_str(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + end];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + end + 1]),
                }
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks `actual` fields against an expectation object: a string must be equal (`"*"`: any
/// value), `null` means absent, anything else is compared as JSON (objects: expected members
/// must be present and match, extra members are allowed).
pub fn check_fields(expect: &Value, actual: &Fields) -> Result<(), String> {
    let Some(obj) = expect.as_object() else { return Err(format!("expectation {expect} is not an object")) };
    for (k, want) in obj {
        let got = actual.get(k);
        match (want, got) {
            (Value::Null, None) => {}
            (Value::Null, Some(g)) => return Err(format!("field {k}: expected absent, got {g:?}")),
            (_, None) => return Err(format!("field {k}: expected {want}, but it is absent")),
            (Value::String(w), Some(g)) => {
                if w != "*" && w != g {
                    return Err(format!("field {k}: expected {w:?}, got {g:?}"));
                }
            }
            (w, Some(g)) => {
                let parsed: Value = serde_json::from_str(g).unwrap_or(Value::String(g.clone()));
                subset(w, &parsed).map_err(|e| format!("field {k}: {e} (whole value {g})"))?;
            }
        }
    }
    Ok(())
}

pub fn matches(expect: &Value, actual: &Fields) -> bool {
    check_fields(expect, actual).is_ok()
}

fn subset(want: &Value, got: &Value) -> Result<(), String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                match (wv, g.get(k)) {
                    (Value::Null, None) => {}
                    (wv, Some(gv)) => subset(wv, gv).map_err(|e| format!("{k}.{e}"))?,
                    (_, None) => return Err(format!("{k}: missing")),
                }
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            w.iter().zip(g).enumerate().try_for_each(|(i, (a, b))| subset(a, b).map_err(|e| format!("[{i}]{e}")))
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => Ok(()),
        (Value::Number(a), Value::String(b)) if a.to_string() == *b => Ok(()),
        (Value::String(a), _) if a == "*" => Ok(()),
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!(": expected {a}, got {b}")),
    }
}
