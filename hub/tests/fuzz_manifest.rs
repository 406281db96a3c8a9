//! Property-based fuzzing of the deployment manifest loader (issue #11): arbitrary JSON values,
//! arbitrary text and mutated valid manifests never panic, and every error names the file and a
//! JSON path (`$…`).
//!
//! Default case counts are small; `PROPTEST_CASES=N` runs longer (RELIABILITY.md).

use std::path::Path;

use edgemodule_hub::manifest::Deployment;
use proptest::prelude::*;
use serde_json::{json, Value};

fn config(default: u32) -> ProptestConfig {
    let mut c = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c
}

const FILE: &str = "/fuzz/deployment.json";

/// Keys the loader looks for, so random objects reach deep into it.
const KEYS: &[&str] = &[
    "modulesContent",
    "content",
    "$edgeAgent",
    "$edgeHub",
    "properties.desired",
    "properties",
    "desired",
    "modules",
    "schemaVersion",
    "routes",
    "route",
    "priority",
    "timeToLiveSecs",
    "storeAndForwardConfiguration",
    "a",
    "b",
    "my module",
    "it's",
    "",
    "r.1",
    "$r",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => (0..KEYS.len()).prop_map(|i| KEYS[i].to_string()), 1 => any::<String>()]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("1.1".to_string()),
            Just("1.0".to_string()),
            Just("FROM /* INTO $upstream".to_string()),
            Just("FROM /messages/* WHERE a = 1 INTO BrokeredEndpoint(\"/modules/a/inputs/i\")".to_string()),
            any::<String>(),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(7, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn valid() -> Value {
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"a": {"type": "docker"}, "b": {}}}},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.2",
            "routes": {
                "r1": "FROM /messages/modules/a/outputs/* INTO BrokeredEndpoint(\"/modules/b/inputs/in\")",
                "r2": {"route": "FROM /messages/* INTO $upstream", "priority": 3, "timeToLiveSecs": 60}
            },
            "storeAndForwardConfiguration": {"timeToLiveSecs": 100}
        }},
        "b": {"properties.desired": {"x": 1}}
    }})
}

/// Replaces the node at `path` (indices into object keys / array items; a leaf ends the walk).
fn replace_at(node: &mut Value, path: &[usize], with: Value) {
    let Some((step, rest)) = path.split_first() else {
        *node = with;
        return;
    };
    match node {
        Value::Object(m) if !m.is_empty() => {
            let k = m.keys().nth(step % m.len()).unwrap().clone();
            replace_at(m.get_mut(&k).unwrap(), rest, with);
        }
        Value::Array(a) if !a.is_empty() => {
            let n = a.len();
            replace_at(&mut a[step % n], rest, with);
        }
        _ => *node = with,
    }
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match Deployment::parse(Path::new(FILE), text) {
        Ok(d) => {
            for r in &d.routes {
                prop_assert!(r.json_path.starts_with("$."), "{}", r.json_path);
            }
        }
        Err(e) => {
            prop_assert!(e.json_path.starts_with('$'), "no JSON path: {e}");
            prop_assert!(!e.problem.is_empty());
            let shown = e.to_string();
            prop_assert!(shown.starts_with(&format!("{FILE}: $")), "{shown}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        check(&v.to_string())?;
    }

    #[test]
    fn arbitrary_text_never_panics(s in prop_oneof![any::<String>(), "[\\[\\]{}\",:0-9a-z ]{0,64}"]) {
        check(&s)?;
    }

    #[test]
    fn mutated_valid_manifests_never_panic(path in proptest::collection::vec(any::<usize>(), 0..7), with in json_value()) {
        let mut doc = valid();
        replace_at(&mut doc, &path, with);
        check(&doc.to_string())?;
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(depth in 1usize..5000, open in prop_oneof![Just("["), Just("{\"a\":")]) {
        let text = format!("{{\"modulesContent\":{}", open.repeat(depth));
        check(&text)?;
    }
}

#[test]
fn the_valid_manifest_loads() {
    let d = Deployment::parse(Path::new(FILE), &valid().to_string()).unwrap();
    assert_eq!(d.routes.len(), 2);
}
