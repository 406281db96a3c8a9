//! Twin documents and patches (protocol.md §3.2): merge semantics with `null` deleting, and the
//! `$version` bookkeeping both sides need.

use serde_json::{Map, Value};

/// Applies a partial JSON object to `target`: members replace, nested objects merge, `null` deletes.
/// Keys starting with `$` in the patch (such as `$version`) are not properties and are skipped.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(existing) = slot {
                    merge_patch(existing, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// The `$version` of a twin section, if present.
pub fn version_of(section: &Value) -> Option<i64> {
    section.get("$version").and_then(Value::as_i64)
}

/// A reported patch must be a JSON object whose keys are legal twin keys.
pub fn validate_reported_patch(patch: &Value) -> Result<(), String> {
    let obj = patch.as_object().ok_or("a reported-properties patch must be a JSON object")?;
    validate_keys(obj, 1)
}

fn validate_keys(obj: &Map<String, Value>, depth: usize) -> Result<(), String> {
    if depth > 10 {
        return Err("twin properties nest deeper than 10 levels".into());
    }
    for (k, v) in obj {
        if k.is_empty() || k.len() > 1024 || k.contains(['.', '$', ' ']) || k.chars().any(char::is_control) {
            return Err(format!(
                "twin key {k:?} is not allowed (no '.', '$', space or control characters, 1-1024 bytes)"
            ));
        }
        if let Value::Object(inner) = v {
            validate_keys(inner, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_replaces_merges_and_deletes() {
        let mut t = json!({"a":1,"b":{"x":1,"y":2},"c":3}).as_object().unwrap().clone();
        let p = json!({"a":2,"b":{"y":null,"z":3},"c":null,"$version":9}).as_object().unwrap().clone();
        merge_patch(&mut t, &p);
        assert_eq!(Value::Object(t), json!({"a":2,"b":{"x":1,"z":3}}));
    }

    #[test]
    fn keys_are_checked() {
        assert!(validate_reported_patch(&json!({"ok":{"fine":1}})).is_ok());
        assert!(validate_reported_patch(&json!({"no.dots":1})).is_err());
        assert!(validate_reported_patch(&json!([1])).is_err());
        assert!(validate_reported_patch(&json!({"$version":1})).is_err());
    }
}
