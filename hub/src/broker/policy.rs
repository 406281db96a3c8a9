//! The broker's authorization policy: `$edgeHub` desired `mqttBroker.authorizations`
//! (protocol.md §10), parsed and validated at hub start, evaluated per operation.
//!
//! ```json
//! [{"identities": ["{{iot:identity}}"],
//!   "allow": [{"operations": ["mqtt:connect"]},
//!             {"operations": ["mqtt:publish", "mqtt:subscribe"], "resources": ["sensors/{{iot:module_id}}/#"]}],
//!   "deny":  [{"operations": ["mqtt:publish"], "resources": ["sensors/secret"]}]}]
//! ```
//!
//! Evaluation: everything is denied by default; the statements whose identities match the client
//! are checked in order; any matching deny rule wins over every allow rule (whatever its
//! position); otherwise the first matching allow rule allows. For a subscription, a rule applies
//! when its resource covers the whole requested filter. A granted filter that only partly
//! overlaps a denied one (`sensors/#` with a deny on `sensors/secret/#`) is checked again per
//! message at delivery, with the message's topic as the resource: the denied topics never reach
//! that subscriber (see `Broker::publish`).
//!
//! Identities are `{hub}/{device}/{module}` (the host compared case-insensitively), `{device}/{module}`,
//! or contain variables; `{{iot:identity}}` alone matches every client. Variables:
//! `{{iot:identity}}` = `{device}/{module}`, `{{iot:device_id}}`, `{{iot:module_id}}`,
//! `{{iot:this_device_id}}` (the edge device). A variable whose value contains `+`, `#` or NUL makes
//! its rule not match (fail closed), so an id can never act as a wildcard.

use serde_json::Value;

use super::topics::{filter_covers, topic_filter_syntax, topic_matches};

/// An operation a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Connect,
    Publish,
    Subscribe,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Connect => "mqtt:connect",
            Operation::Publish => "mqtt:publish",
            Operation::Subscribe => "mqtt:subscribe",
        }
    }

    fn parse(s: &str) -> Option<Operation> {
        [Operation::Connect, Operation::Publish, Operation::Subscribe].into_iter().find(|o| o.name() == s)
    }
}

/// Who asks: the connected module and the edge device it runs on.
#[derive(Debug, Clone, Copy)]
pub struct PolicyClient<'a> {
    pub hub: &'a str,
    pub device: &'a str,
    pub module: &'a str,
    pub this_device: &'a str,
}

/// The outcome of an evaluation, naming the deciding statement (its index in `authorizations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        statement: usize,
    },
    /// `statement` is the deny that matched; `None` when nothing allowed (the default).
    Denied {
        statement: Option<usize>,
    },
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Allowed { statement } => write!(f, "allowed by authorizations[{statement}]"),
            Decision::Denied { statement: Some(s) } => write!(f, "denied by authorizations[{s}]"),
            Decision::Denied { statement: None } => write!(f, "not allowed by any authorization statement"),
        }
    }
}

/// A policy problem at a JSON path (relative paths are completed by [`Policy::from_desired`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub json_path: String,
    pub problem: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.json_path, self.problem)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Identity,
    DeviceId,
    ModuleId,
    ThisDeviceId,
}

const VARIABLES: &[(&str, Var)] = &[
    ("{{iot:identity}}", Var::Identity),
    ("{{iot:device_id}}", Var::DeviceId),
    ("{{iot:module_id}}", Var::ModuleId),
    ("{{iot:this_device_id}}", Var::ThisDeviceId),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A string with `{{iot:…}}` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

impl Template {
    fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let end = rest[start..].find("}}").ok_or_else(|| format!("unclosed variable in {s:?}"))? + start + 2;
            let name = &rest[start..end];
            let var = VARIABLES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).ok_or_else(|| {
                let known: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).collect();
                format!("unknown variable {name} (known: {})", known.join(", "))
            })?;
            pieces.push(Piece::Var(var));
            rest = &rest[end..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(pieces))
    }

    fn is_only(&self, var: Var) -> bool {
        self.0 == [Piece::Var(var)]
    }

    /// The text with the client's values; `None` when a value could act as a wildcard.
    fn expand(&self, c: &PolicyClient<'_>) -> Option<String> {
        let mut out = String::new();
        for piece in &self.0 {
            let value = match piece {
                Piece::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Piece::Var(Var::Identity) => format!("{}/{}", c.device, c.module),
                Piece::Var(Var::DeviceId) => c.device.to_string(),
                Piece::Var(Var::ModuleId) => c.module.to_string(),
                Piece::Var(Var::ThisDeviceId) => c.this_device.to_string(),
            };
            if value.contains(['+', '#', '\0']) {
                return None;
            }
            out.push_str(&value);
        }
        Some(out)
    }

    /// The text with placeholder ids, for syntax checks.
    fn sample(&self) -> String {
        let c = PolicyClient { hub: "hub", device: "device", module: "module", this_device: "device" };
        self.expand(&c).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct Rule {
    operations: Vec<Operation>,
    resources: Vec<Template>,
}

impl Rule {
    /// Whether this rule speaks about `op` on `resource`.
    fn applies(&self, c: &PolicyClient<'_>, op: Operation, resource: Option<&str>) -> bool {
        if !self.operations.contains(&op) {
            return false;
        }
        let Some(resource) = resource else { return op == Operation::Connect };
        self.resources.iter().filter_map(|r| r.expand(c)).any(|r| match op {
            Operation::Connect => true,
            Operation::Publish => topic_matches(&r, resource),
            Operation::Subscribe => filter_covers(&r, resource),
        })
    }
}

#[derive(Debug, Clone)]
struct Statement {
    identities: Vec<Template>,
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

impl Statement {
    fn concerns(&self, c: &PolicyClient<'_>) -> bool {
        let full = format!("{}/{}/{}", c.hub, c.device, c.module);
        let short = format!("{}/{}", c.device, c.module);
        self.identities.iter().any(|t| {
            if t.is_only(Var::Identity) {
                return true;
            }
            t.expand(c).is_some_and(|id| id == short || same_identity(&id, &full))
        })
    }
}

/// `{hub}/{device}/{module}` equality with the host compared case-insensitively.
fn same_identity(a: &str, b: &str) -> bool {
    match (a.split_once('/'), b.split_once('/')) {
        (Some((ha, ra)), Some((hb, rb))) => ha.eq_ignore_ascii_case(hb) && ra == rb,
        _ => false,
    }
}

/// A validated authorization policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

impl Policy {
    /// Reads `mqttBroker.authorizations` from the `$edgeHub` desired properties found at
    /// `desired_path`. `Ok(None)` when there is no `mqttBroker` section or no (or an empty)
    /// `authorizations` array: the broker then keeps user topics closed.
    pub fn from_desired(desired: &Value, desired_path: &str) -> Result<Option<Policy>, PolicyError> {
        let Some(broker) = desired.get("mqttBroker") else { return Ok(None) };
        let broker_path = format!("{desired_path}.mqttBroker");
        let err = |path: &str, problem: String| PolicyError { json_path: path.to_string(), problem };
        let broker = broker
            .as_object()
            .ok_or_else(|| err(&broker_path, format!("must be an object, found {}", kind(broker))))?;
        if broker.contains_key("bridges") {
            tracing::warn!("{broker_path}.bridges: MQTT bridges (nested edge) are not supported and are ignored");
        }
        let Some(auth) = broker.get("authorizations") else { return Ok(None) };
        let auth_path = format!("{broker_path}.authorizations");
        let list = auth.as_array().ok_or_else(|| err(&auth_path, format!("must be an array, found {}", kind(auth))))?;
        if list.is_empty() {
            return Ok(None);
        }
        let statements = list
            .iter()
            .enumerate()
            .map(|(i, s)| statement(s, &format!("{auth_path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Policy { statements }))
    }

    /// Decides `op` for `client`; `resource` is the topic (publish) or filter (subscribe).
    pub fn evaluate(&self, client: &PolicyClient<'_>, op: Operation, resource: Option<&str>) -> Decision {
        let mut allowed = None;
        for (i, s) in self.statements.iter().enumerate() {
            if !s.concerns(client) {
                continue;
            }
            if s.deny.iter().any(|r| r.applies(client, op, resource)) {
                return Decision::Denied { statement: Some(i) };
            }
            if allowed.is_none() && s.allow.iter().any(|r| r.applies(client, op, resource)) {
                allowed = Some(i);
            }
        }
        match allowed {
            Some(statement) => Decision::Allowed { statement },
            None => Decision::Denied { statement: None },
        }
    }

    pub fn len(&self) -> usize {
        self.statements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn fail<T>(path: &str, problem: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError { json_path: path.to_string(), problem: problem.into() })
}

fn string_array<'v>(v: &'v Value, path: &str, what: &str) -> Result<Vec<(&'v str, String)>, PolicyError> {
    let Some(items) = v.as_array() else { return fail(path, format!("{what} must be an array, found {}", kind(v))) };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{path}[{i}]");
            match item.as_str() {
                Some("") => fail(&p, format!("{what} entries must not be empty")),
                Some(s) => Ok((s, p)),
                None => fail(&p, format!("{what} entries must be strings, found {}", kind(item))),
            }
        })
        .collect()
}

fn statement(v: &Value, path: &str) -> Result<Statement, PolicyError> {
    let Some(obj) = v.as_object() else {
        return fail(path, format!("a statement must be an object, found {}", kind(v)));
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "identities" | "allow" | "deny" | "description") {
            return fail(&format!("{path}.{key}"), "unknown key (expected identities, allow, deny)");
        }
    }
    let ids_path = format!("{path}.identities");
    let Some(ids) = obj.get("identities") else { return fail(path, "identities is missing") };
    let ids = string_array(ids, &ids_path, "identities")?;
    if ids.is_empty() {
        return fail(&ids_path, "identities must not be empty");
    }
    let identities = ids
        .into_iter()
        .map(|(s, p)| {
            let t = Template::parse(s).map_err(|e| PolicyError { json_path: p.clone(), problem: e })?;
            if !t.is_only(Var::Identity) && !(1..=2).contains(&t.sample().matches('/').count()) {
                return fail(&p, format!("identity {s:?} is not '{{hub}}/{{device}}/{{module}}' or a variable"));
            }
            Ok(t)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rules = |key: &str| -> Result<Vec<Rule>, PolicyError> {
        let p = format!("{path}.{key}");
        match obj.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().enumerate().map(|(i, r)| rule(r, &format!("{p}[{i}]"))).collect(),
            Some(other) => fail(&p, format!("{key} must be an array of rules, found {}", kind(other))),
        }
    };
    let (allow, deny) = (rules("allow")?, rules("deny")?);
    if allow.is_empty() && deny.is_empty() {
        return fail(path, "a statement needs at least one allow or deny rule");
    }
    Ok(Statement { identities, allow, deny })
}

fn rule(v: &Value, path: &str) -> Result<Rule, PolicyError> {
    let Some(obj) = v.as_object() else { return fail(path, format!("a rule must be an object, found {}", kind(v))) };
    for key in obj.keys() {
        if !matches!(key.as_str(), "operations" | "resources") {
            return fail(&format!("{path}.{key}"), "unknown key (expected operations, resources)");
        }
    }
    let ops_path = format!("{path}.operations");
    let Some(ops) = obj.get("operations") else { return fail(path, "operations is missing") };
    let ops = string_array(ops, &ops_path, "operations")?;
    if ops.is_empty() {
        return fail(&ops_path, "operations must not be empty");
    }
    let operations = ops
        .into_iter()
        .map(|(s, p)| {
            Operation::parse(s).ok_or_else(|| PolicyError {
                json_path: p,
                problem: format!("unknown operation {s:?} (expected mqtt:connect, mqtt:publish or mqtt:subscribe)"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let res_path = format!("{path}.resources");
    let resources = match obj.get("resources") {
        None => Vec::new(),
        Some(r) => string_array(r, &res_path, "resources")?
            .into_iter()
            .map(|(s, p)| {
                let t = Template::parse(s).map_err(|e| PolicyError { json_path: p.clone(), problem: e })?;
                topic_filter_syntax(&t.sample()).map_err(|e| PolicyError {
                    json_path: p,
                    problem: format!("{s:?} is not a topic filter: {}", e.message()),
                })?;
                Ok(t)
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if resources.is_empty() && operations.iter().any(|o| *o != Operation::Connect) {
        return fail(path, "mqtt:publish and mqtt:subscribe need resources (topic filters)");
    }
    Ok(Rule { operations, resources })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = "$.modulesContent.$edgeHub.properties.desired";

    fn policy(auth: Value) -> Policy {
        Policy::from_desired(&json!({"mqttBroker": {"authorizations": auth}}), BASE).unwrap().unwrap()
    }

    fn reject(auth: Value, path: &str, part: &str) {
        let e = Policy::from_desired(&json!({"mqttBroker": {"authorizations": auth}}), BASE).unwrap_err();
        assert_eq!(e.json_path, format!("{BASE}.mqttBroker.authorizations{path}"), "{}", e.problem);
        assert!(e.problem.contains(part), "{}", e.problem);
    }

    fn client<'a>(module: &'a str) -> PolicyClient<'a> {
        PolicyClient { hub: "Hub.example.net", device: "edge1", module, this_device: "edge1" }
    }

    #[test]
    fn absent_or_empty_means_no_policy() {
        assert!(Policy::from_desired(&json!({}), BASE).unwrap().is_none());
        assert!(Policy::from_desired(&json!({"mqttBroker": {}}), BASE).unwrap().is_none());
        assert!(Policy::from_desired(&json!({"mqttBroker": {"authorizations": []}}), BASE).unwrap().is_none());
        let e = Policy::from_desired(&json!({"mqttBroker": 3}), BASE).unwrap_err();
        assert_eq!(e.json_path, format!("{BASE}.mqttBroker"));
    }

    #[test]
    fn rejects_bad_statements_with_their_path() {
        let ok = json!({"operations": ["mqtt:connect"]});
        reject(json!({}), "", "must be an array");
        reject(json!(["x"]), "[0]", "statement must be an object");
        reject(json!([{"allow": [ok]}]), "[0]", "identities is missing");
        reject(json!([{"identities": [], "allow": [ok]}]), "[0].identities", "must not be empty");
        reject(json!([{"identities": [1], "allow": [ok]}]), "[0].identities[0]", "strings");
        reject(json!([{"identities": ["{{iot:who}}"], "allow": [ok]}]), "[0].identities[0]", "unknown variable");
        reject(json!([{"identities": ["justone"], "allow": [ok]}]), "[0].identities[0]", "is not");
        reject(json!([{"identities": ["{{iot:identity}}"]}]), "[0]", "at least one");
        reject(json!([{"identities": ["{{iot:identity}}"], "allows": [ok]}]), "[0].allows", "unknown key");
        reject(json!([{"identities": ["{{iot:identity}}"], "allow": ok}]), "[0].allow", "array of rules");
        let st = |rules: Value| json!({"identities": ["{{iot:identity}}"], "allow": [ok], "deny": rules});
        reject(
            json!([
                st(json!([])),
                st(json!([])),
                st(json!([{"operations": ["mqtt:publish", "mqtt:pub"], "resources": ["a"]}]))
            ]),
            "[2].deny[0].operations[1]",
            "unknown operation",
        );
        reject(
            json!([st(json!([{"operations": [], "resources": ["a"]}]))]),
            "[0].deny[0].operations",
            "must not be empty",
        );
        reject(json!([st(json!([{"operations": ["mqtt:publish"]}]))]), "[0].deny[0]", "need resources");
        reject(
            json!([st(json!([{"operations": ["mqtt:publish"], "resources": ["a/#/b"]}]))]),
            "[0].deny[0].resources[0]",
            "not a topic filter",
        );
        reject(
            json!([st(json!([{"operations": ["mqtt:publish"], "resources": ["a/{{iot:x}}"]}]))]),
            "[0].deny[0].resources[0]",
            "unknown variable",
        );
        reject(
            json!([st(json!([{"operations": ["mqtt:publish"], "resources": ["a/{{iot:module_id"]}]))]),
            "[0].deny[0].resources[0]",
            "unclosed",
        );
        reject(json!([st(json!([{"operation": ["mqtt:publish"]}]))]), "[0].deny[0].operation", "unknown key");
    }

    #[test]
    fn default_deny_allow_and_deny_wins() {
        let p = policy(json!([
            {"identities": ["{{iot:identity}}"], "allow": [{"operations": ["mqtt:connect"]}]},
            {"identities": ["hub.example.net/edge1/sensor"], "allow": [
                {"operations": ["mqtt:publish"], "resources": ["sensors/#"]}]},
            {"identities": ["{{iot:identity}}"], "allow": [
                {"operations": ["mqtt:subscribe"], "resources": ["sensors/+/temp", "own/{{iot:module_id}}/#"]}],
             "deny": [{"operations": ["mqtt:subscribe", "mqtt:publish"], "resources": ["sensors/secret/#"]}]}
        ]));
        let (sensor, reader) = (client("sensor"), client("reader"));
        assert_eq!(p.evaluate(&sensor, Operation::Connect, None), Decision::Allowed { statement: 0 });
        assert_eq!(p.evaluate(&sensor, Operation::Publish, Some("sensors/a/temp")), Decision::Allowed { statement: 1 });
        assert_eq!(
            p.evaluate(&reader, Operation::Publish, Some("sensors/a/temp")),
            Decision::Denied { statement: None }
        );
        // deny in a later statement beats the earlier allow
        assert_eq!(
            p.evaluate(&sensor, Operation::Publish, Some("sensors/secret/x")),
            Decision::Denied { statement: Some(2) }
        );
        assert!(p.evaluate(&reader, Operation::Subscribe, Some("sensors/a/temp")).is_allowed());
        assert!(p.evaluate(&reader, Operation::Subscribe, Some("sensors/+/temp")).is_allowed());
        assert!(!p.evaluate(&reader, Operation::Subscribe, Some("sensors/#")).is_allowed());
        // a filter inside a denied one is refused; per-message checks use the topic itself
        assert!(!p.evaluate(&reader, Operation::Subscribe, Some("sensors/secret/temp")).is_allowed());
        assert!(!p.evaluate(&reader, Operation::Subscribe, Some("sensors/secret/+")).is_allowed());
        assert!(p.evaluate(&reader, Operation::Subscribe, Some("own/reader/x")).is_allowed());
        assert!(!p.evaluate(&reader, Operation::Subscribe, Some("own/sensor/x")).is_allowed());
    }

    #[test]
    fn identities_and_variables() {
        let p = policy(json!([
            {"identities": ["{{iot:this_device_id}}/a"], "allow": [{"operations": ["mqtt:connect"]}]},
            {"identities": ["HUB.example.net/edge1/b"], "allow": [
                {"operations": ["mqtt:connect", "mqtt:publish"], "resources": ["d/{{iot:device_id}}/{{iot:identity}}"]}]}
        ]));
        assert!(p.evaluate(&client("a"), Operation::Connect, None).is_allowed());
        assert!(p.evaluate(&client("b"), Operation::Connect, None).is_allowed());
        assert!(!p.evaluate(&client("c"), Operation::Connect, None).is_allowed());
        assert!(p.evaluate(&client("b"), Operation::Publish, Some("d/edge1/edge1/b")).is_allowed());
        assert!(!p.evaluate(&client("b"), Operation::Publish, Some("d/edge1/edge1/a")).is_allowed());
        // an id that contains a wildcard never widens a rule
        let p = policy(json!([{"identities": ["{{iot:identity}}"], "allow": [
            {"operations": ["mqtt:publish"], "resources": ["x/{{iot:module_id}}"]}]}]));
        assert!(!p.evaluate(&client("#"), Operation::Publish, Some("x/y")).is_allowed());
    }
}
