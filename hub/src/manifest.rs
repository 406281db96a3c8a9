//! Loading a standard IoT Edge deployment manifest (protocol.md §8.2).
//!
//! Accepted top levels: `{"modulesContent": {...}}` (the deployment template form) and
//! `{"content": {"modulesContent": {...}}}` (the `az iot edge deployment` form; sibling keys such as `id`,
//! `targetCondition` or `priority` are ignored). Within `modulesContent`, each entry's desired properties are read
//! from the key `"properties.desired"` (the usual spelling) or from a nested `{"properties": {"desired": ...}}`.
//!
//! Errors name the file, a JSON path such as `$.modulesContent.$edgeHub.properties.desired.routes.r1.priority`,
//! and the problem. Keys that are not plain identifiers are written in brackets: `$.modulesContent['my module']`.
//! Route text (`FROM … INTO …`) is only checked to be a non-empty string here; the route parser checks the rest.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The global message TTL when `storeAndForwardConfiguration.timeToLiveSecs` is absent.
pub const DEFAULT_TTL_SECS: i64 = 7200;
/// The priority edgeHub gives routes that have none (lower than every explicit priority 0-9).
pub const DEFAULT_ROUTE_PRIORITY: u32 = 2_000_000_000;
/// The `$edgeHub` schema versions edgeHub accepts.
pub const SCHEMA_VERSIONS: &[&str] = &["1.0", "1.1", "1.2", "1.3"];

/// A validated deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// `$edgeHub` desired `schemaVersion`: one of [`SCHEMA_VERSIONS`].
    pub schema_version: String,
    /// The modules in `$edgeAgent` desired `modules`, in file order.
    pub modules: Vec<ModuleSpec>,
    /// The `$edgeHub` routes, in file order.
    pub routes: Vec<RouteSpec>,
    /// `storeAndForwardConfiguration.timeToLiveSecs`; [`DEFAULT_TTL_SECS`] if absent; negative means forever.
    pub default_ttl_secs: i64,
    /// The whole `$edgeHub` desired properties object.
    pub edge_hub_desired: Value,
    /// JSON path of `edge_hub_desired` in the manifest, for error messages of later stages.
    pub edge_hub_desired_path: String,
}

/// One deployed module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSpec {
    /// The module id (the key in `$edgeAgent` desired `modules`).
    pub name: String,
    /// The module twin's desired properties from `modulesContent.<name>.properties.desired` (empty if absent).
    pub desired: Map<String, Value>,
}

/// One route from `$edgeHub` desired `routes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The route name (its key).
    pub name: String,
    /// The route text, `FROM … INTO …`, unparsed.
    pub text: String,
    /// Priority 0 (highest) to 9; `None` when not given (edgeHub then uses [`DEFAULT_ROUTE_PRIORITY`]).
    pub priority: Option<u32>,
    /// Per-route TTL; `None` when absent or 0 (use the global TTL).
    pub ttl_secs: Option<u64>,
    /// JSON path of the route in the manifest, for error messages of later stages.
    pub json_path: String,
}

/// A manifest problem: `{file}: {json_path}: {problem}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {json_path}: {problem}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    pub json_path: String,
    pub problem: String,
}

impl Deployment {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Deployment, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_owned(),
            json_path: "$".into(),
            problem: format!("cannot read the file: {e}"),
        })?;
        Deployment::parse(path, &text)
    }

    /// Validates manifest text; `file` is used only in error messages.
    pub fn parse(file: &Path, text: &str) -> Result<Deployment, ManifestError> {
        Checker { file }.deployment(text)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// An order-preserving JSON tree (serde_json's Map is sorted without its `preserve_order` feature) that also rejects
// duplicate keys.

#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.clone()),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(entries) => Value::Object(object_to_map(entries)),
        }
    }
}

fn object_to_map(entries: &[(String, Node)]) -> Map<String, Value> {
    entries.iter().map(|(k, v)| (k.clone(), v.to_value())).collect()
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Number::from_f64(v).map(Node::Number).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value: Node = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Object(entries))
    }
}

fn get<'n>(entries: &'n [(String, Node)], key: &str) -> Option<&'n Node> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

// ---------------------------------------------------------------------------------------------------------------
// JSON paths.

#[derive(Debug, Clone)]
struct JPath(String);

impl JPath {
    fn root() -> JPath {
        JPath("$".into())
    }

    /// `.key` for plain keys (and the conventional `properties.desired`), `['key']` otherwise.
    fn key(&self, key: &str) -> JPath {
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
        if plain || key == "properties.desired" {
            JPath(format!("{}.{key}", self.0))
        } else {
            JPath(format!("{}['{}']", self.0, key.replace('\\', "\\\\").replace('\'', "\\'")))
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Validation.

struct Checker<'a> {
    file: &'a Path,
}

type Entries = [(String, Node)];

impl Checker<'_> {
    fn err(&self, path: &JPath, problem: impl Into<String>) -> ManifestError {
        ManifestError { file: self.file.to_owned(), json_path: path.0.clone(), problem: problem.into() }
    }

    fn object<'n>(&self, node: &'n Node, path: &JPath) -> Result<&'n Entries, ManifestError> {
        match node {
            Node::Object(entries) => Ok(entries),
            other => Err(self.err(path, format!("must be an object, found {}", other.kind()))),
        }
    }

    fn required<'n>(&self, entries: &'n Entries, path: &JPath, key: &str) -> Result<&'n Node, ManifestError> {
        get(entries, key).ok_or_else(|| self.err(path, format!("{key} is missing")))
    }

    fn deployment(&self, text: &str) -> Result<Deployment, ManifestError> {
        let root_path = JPath::root();
        let root: Node = serde_json::from_str(text).map_err(|e| self.err(&root_path, format!("invalid JSON: {e}")))?;
        let top = self.object(&root, &root_path)?;

        let (mc_node, mc_path) = match (get(top, "modulesContent"), get(top, "content")) {
            (Some(node), None) => (node, root_path.key("modulesContent")),
            (None, Some(content)) => {
                let content_path = root_path.key("content");
                let content = self.object(content, &content_path)?;
                let node = self.required(content, &content_path, "modulesContent")?;
                (node, content_path.key("modulesContent"))
            }
            (Some(_), Some(_)) => {
                return Err(self.err(&root_path, "both modulesContent and content are present; use only one"));
            }
            (None, None) => {
                return Err(self.err(
                    &root_path,
                    "modulesContent is missing (expected {\"modulesContent\": {...}} or \
                     {\"content\": {\"modulesContent\": {...}}})",
                ));
            }
        };
        let modules_content = self.object(mc_node, &mc_path)?;

        // $edgeAgent: the deployed modules.
        let agent_path = mc_path.key("$edgeAgent");
        let agent = self.required(modules_content, &mc_path, "$edgeAgent")?;
        let (agent_desired, agent_desired_path) = self
            .desired_of(agent, &agent_path)?
            .ok_or_else(|| self.err(&agent_path, "properties.desired is missing"))?;
        let agent_desired = self.object(agent_desired, &agent_desired_path)?;
        let modules_path = agent_desired_path.key("modules");
        let modules = self.object(self.required(agent_desired, &agent_desired_path, "modules")?, &modules_path)?;
        for (name, definition) in modules {
            let path = modules_path.key(name);
            if let Err(problem) = check_module_id(name) {
                return Err(self.err(&path, problem));
            }
            self.object(definition, &path)?;
        }

        // $edgeHub: schema version, routes, store-and-forward.
        let hub_path = mc_path.key("$edgeHub");
        let hub = self.required(modules_content, &mc_path, "$edgeHub")?;
        let (hub_desired_node, hub_desired_path) =
            self.desired_of(hub, &hub_path)?.ok_or_else(|| self.err(&hub_path, "properties.desired is missing"))?;
        let hub_desired = self.object(hub_desired_node, &hub_desired_path)?;

        let schema_path = hub_desired_path.key("schemaVersion");
        let schema_version = match self.required(hub_desired, &hub_desired_path, "schemaVersion")? {
            Node::String(s) if SCHEMA_VERSIONS.contains(&s.as_str()) => s.clone(),
            Node::String(s) => {
                return Err(self.err(
                    &schema_path,
                    format!("unsupported schemaVersion {s:?} (expected one of {})", SCHEMA_VERSIONS.join(", ")),
                ));
            }
            other => return Err(self.err(&schema_path, format!("must be a string, found {}", other.kind()))),
        };

        let routes_path = hub_desired_path.key("routes");
        let routes_obj = self.object(self.required(hub_desired, &hub_desired_path, "routes")?, &routes_path)?;
        let mut routes = Vec::with_capacity(routes_obj.len());
        for (name, value) in routes_obj {
            routes.push(self.route(name, value, &routes_path.key(name), &schema_version)?);
        }

        let mut default_ttl_secs = DEFAULT_TTL_SECS;
        if let Some(saf) = get(hub_desired, "storeAndForwardConfiguration") {
            let saf_path = hub_desired_path.key("storeAndForwardConfiguration");
            let saf = self.object(saf, &saf_path)?;
            if let Some(ttl) = get(saf, "timeToLiveSecs") {
                let ttl_path = saf_path.key("timeToLiveSecs");
                default_ttl_secs = match ttl {
                    Node::Number(n) if n.is_i64() || n.is_u64() => {
                        n.as_i64().ok_or_else(|| self.err(&ttl_path, format!("{n} is out of range")))?
                    }
                    other => return Err(self.err(&ttl_path, format!("must be an integer, found {}", describe(other)))),
                };
            }
        }

        // Per-module desired properties; every entry other than the two system ones must name a deployed module.
        let deployed: HashSet<&str> = modules.iter().map(|(name, _)| name.as_str()).collect();
        let mut desired_by_module: HashMap<&str, Map<String, Value>> = HashMap::new();
        for (name, entry) in modules_content {
            if name == "$edgeAgent" || name == "$edgeHub" {
                continue;
            }
            let path = mc_path.key(name);
            if !deployed.contains(name.as_str()) {
                return Err(self.err(
                    &path,
                    format!(
                        "module {name:?} has desired properties but is not deployed \
                         (it is not in $edgeAgent properties.desired.modules)"
                    ),
                ));
            }
            if let Some((desired, desired_path)) = self.desired_of(entry, &path)? {
                desired_by_module.insert(name, object_to_map(self.object(desired, &desired_path)?));
            }
        }
        let modules = modules
            .iter()
            .map(|(name, _)| ModuleSpec {
                name: name.clone(),
                desired: desired_by_module.remove(name.as_str()).unwrap_or_default(),
            })
            .collect();

        Ok(Deployment {
            schema_version,
            modules,
            routes,
            default_ttl_secs,
            edge_hub_desired: hub_desired_node.to_value(),
            edge_hub_desired_path: hub_desired_path.0.clone(),
        })
    }

    /// The desired properties of a `modulesContent` entry, from `"properties.desired"` or `properties.desired`.
    fn desired_of<'n>(&self, entry: &'n Node, path: &JPath) -> Result<Option<(&'n Node, JPath)>, ManifestError> {
        let entry = self.object(entry, path)?;
        match (get(entry, "properties.desired"), get(entry, "properties")) {
            (Some(_), Some(_)) => {
                Err(self.err(path, "both \"properties.desired\" and \"properties\" are present; use only one"))
            }
            (Some(desired), None) => Ok(Some((desired, path.key("properties.desired")))),
            (None, Some(properties)) => {
                let properties_path = path.key("properties");
                let properties = self.object(properties, &properties_path)?;
                Ok(get(properties, "desired").map(|d| (d, properties_path.key("desired"))))
            }
            (None, None) => Ok(None),
        }
    }

    fn route(&self, name: &str, value: &Node, path: &JPath, schema_version: &str) -> Result<RouteSpec, ManifestError> {
        if name.is_empty() {
            return Err(self.err(path, "route name must not be empty"));
        }
        if let Some(c) = name.chars().find(|c| matches!(c, '.' | '$' | '#' | ' ')) {
            return Err(self
                .err(path, format!("route name {name:?} must not contain {c:?} (route names match ^[^\\.\\$# ]+$)")));
        }
        let text_of = |node: &Node, path: &JPath| -> Result<String, ManifestError> {
            match node {
                Node::String(s) if s.trim().is_empty() => Err(self.err(path, "route text must not be empty")),
                Node::String(s) => Ok(s.clone()),
                other => Err(self.err(path, format!("route text must be a string, found {}", other.kind()))),
            }
        };
        let mut spec = RouteSpec {
            name: name.to_owned(),
            text: String::new(),
            priority: None,
            ttl_secs: None,
            json_path: path.0.clone(),
        };
        match value {
            Node::String(_) => spec.text = text_of(value, path)?,
            Node::Object(entries) => {
                if schema_version == "1.0" {
                    return Err(self.err(
                        path,
                        "route objects (with route/priority/timeToLiveSecs) need schemaVersion 1.1 or later; \
                         schemaVersion is 1.0",
                    ));
                }
                let mut text = None;
                for (key, v) in entries {
                    let key_path = path.key(key);
                    match key.as_str() {
                        "route" => text = Some(text_of(v, &key_path)?),
                        "priority" => match v {
                            Node::Number(n) if n.as_u64().is_some_and(|p| p <= 9) => {
                                spec.priority = n.as_u64().map(|p| p as u32);
                            }
                            Node::Number(n) if n.is_i64() || n.is_u64() => {
                                return Err(self.err(&key_path, format!("priority must be between 0 and 9, found {n}")));
                            }
                            other => {
                                return Err(self.err(
                                    &key_path,
                                    format!("priority must be an integer between 0 and 9, found {}", describe(other)),
                                ));
                            }
                        },
                        "timeToLiveSecs" => match v {
                            Node::Number(n) if n.is_u64() => {
                                spec.ttl_secs = n.as_u64().filter(|&t| t != 0);
                            }
                            Node::Number(n) if n.is_i64() => {
                                return Err(
                                    self.err(&key_path, format!("timeToLiveSecs must not be negative, found {n}"))
                                );
                            }
                            other => {
                                return Err(self.err(
                                    &key_path,
                                    format!("timeToLiveSecs must be a non-negative integer, found {}", describe(other)),
                                ));
                            }
                        },
                        _ => {
                            return Err(self.err(
                                &key_path,
                                format!(
                                    "unknown key {key:?} in a route object (expected route, priority, timeToLiveSecs)"
                                ),
                            ));
                        }
                    }
                }
                spec.text = text.ok_or_else(|| self.err(path, "route is missing"))?;
            }
            other => {
                return Err(self.err(
                    path,
                    format!("a route must be a string or an object with \"route\", found {}", other.kind()),
                ));
            }
        }
        Ok(spec)
    }
}

/// A short description of a node for "found …" messages: numbers are shown, other values are named by kind.
fn describe(node: &Node) -> String {
    match node {
        Node::Number(n) => n.to_string(),
        other => other.kind().to_owned(),
    }
}

/// IoT Hub module ids: 1-128 ASCII alphanumerics plus `- . + % _ # * ? ! ( ) , = @ $ '`, not starting with `$`.
pub fn check_module_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("module name must not be empty".into());
    }
    if id.len() > 128 {
        return Err(format!("module name is longer than 128 characters ({})", id.len()));
    }
    if id.starts_with('$') {
        return Err(format!("module name {id:?} must not start with '$' (reserved for system modules)"));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "-.+%_#*?!(),=@$'".contains(*c))) {
        return Err(format!(
            "module name {id:?} contains {c:?}; only ASCII letters, digits and - . + % _ # * ? ! ( ) , = @ $ ' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "deployment.json";

    fn parse(text: &str) -> Result<Deployment, ManifestError> {
        Deployment::parse(Path::new(FILE), text)
    }

    /// A manifest with the given `$edgeHub` desired properties, `$edgeAgent` modules and extra modulesContent.
    fn manifest(hub_desired: Value, modules: Value, extra: Value) -> String {
        let mut mc = json!({
            "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": modules}},
            "$edgeHub": {"properties.desired": hub_desired},
        });
        for (k, v) in extra.as_object().unwrap() {
            mc[k] = v.clone();
        }
        json!({ "modulesContent": mc }).to_string()
    }

    fn hub(routes: Value) -> Value {
        json!({"schemaVersion": "1.1", "routes": routes})
    }

    fn module() -> Value {
        json!({"type": "docker", "settings": {"image": "x"}})
    }

    fn reject(text: &str, json_path: &str, problem_part: &str) {
        let err = parse(text).expect_err("manifest should be rejected");
        assert_eq!(err.file, PathBuf::from(FILE));
        assert_eq!(err.json_path, json_path, "problem: {}", err.problem);
        assert!(err.problem.contains(problem_part), "problem {:?} should contain {problem_part:?}", err.problem);
        assert_eq!(err.to_string(), format!("{FILE}: {json_path}: {}", err.problem));
    }

    fn reject_routes(routes: Value, json_path: &str, problem_part: &str) {
        reject(&manifest(hub(routes), json!({}), json!({})), json_path, problem_part);
    }

    const ROUTES: &str = "$.modulesContent.$edgeHub.properties.desired.routes";

    const FULL: &str = r#"{
      "id": "my-deployment",
      "targetCondition": "tags.env='dev'",
      "priority": 10,
      "content": {
        "modulesContent": {
          "$edgeAgent": {
            "properties.desired": {
              "schemaVersion": "1.1",
              "runtime": {"type": "docker", "settings": {}},
              "systemModules": {"edgeAgent": {"type": "docker"}, "edgeHub": {"type": "docker"}},
              "modules": {
                "sensor": {"type": "docker", "status": "running", "settings": {"image": "sensor:1"}},
                "filter": {"type": "docker", "status": "running", "settings": {"image": "filter:1"}},
                "archiver": {"type": "docker", "status": "running", "settings": {"image": "archiver:1"}}
              }
            }
          },
          "$edgeHub": {
            "properties.desired": {
              "schemaVersion": "1.2",
              "routes": {
                "sensorToFilter": "FROM /messages/modules/sensor/outputs/temp INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")",
                "filterToCloud": {"route": "FROM /messages/modules/filter/outputs/* INTO $upstream", "priority": 0, "timeToLiveSecs": 86400},
                "all": {"route": "FROM /* INTO $upstream", "timeToLiveSecs": 0},
                "low": {"route": "FROM /messages/* INTO $upstream", "priority": 9}
              },
              "storeAndForwardConfiguration": {"timeToLiveSecs": 3600},
              "mqttBroker": {"authorizations": []}
            }
          },
          "filter": {"properties.desired": {"threshold": 25, "nested": {"a": [1, 2]}}},
          "sensor": {"properties": {"desired": {"interval": 5}}}
        }
      }
    }"#;

    #[test]
    fn full_manifest_in_az_content_form() {
        let d = parse(FULL).unwrap();
        assert_eq!(d.schema_version, "1.2");
        assert_eq!(d.default_ttl_secs, 3600);
        let names: Vec<_> = d.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["sensor", "filter", "archiver"], "file order");
        assert_eq!(Value::Object(d.modules[0].desired.clone()), json!({"interval": 5}));
        assert_eq!(Value::Object(d.modules[1].desired.clone()), json!({"threshold": 25, "nested": {"a": [1, 2]}}));
        assert!(d.modules[2].desired.is_empty());

        let p = "$.content.modulesContent.$edgeHub.properties.desired.routes";
        assert_eq!(
            d.routes,
            vec![
                RouteSpec {
                    name: "sensorToFilter".into(),
                    text: "FROM /messages/modules/sensor/outputs/temp INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")"
                        .into(),
                    priority: None,
                    ttl_secs: None,
                    json_path: format!("{p}.sensorToFilter"),
                },
                RouteSpec {
                    name: "filterToCloud".into(),
                    text: "FROM /messages/modules/filter/outputs/* INTO $upstream".into(),
                    priority: Some(0),
                    ttl_secs: Some(86400),
                    json_path: format!("{p}.filterToCloud"),
                },
                RouteSpec {
                    name: "all".into(),
                    text: "FROM /* INTO $upstream".into(),
                    priority: None,
                    ttl_secs: None,
                    json_path: format!("{p}.all"),
                },
                RouteSpec {
                    name: "low".into(),
                    text: "FROM /messages/* INTO $upstream".into(),
                    priority: Some(9),
                    ttl_secs: None,
                    json_path: format!("{p}.low"),
                },
            ]
        );
        assert_eq!(d.edge_hub_desired["mqttBroker"], json!({"authorizations": []}));
        assert_eq!(d.edge_hub_desired["schemaVersion"], "1.2");
    }

    #[test]
    fn plain_form_defaults_and_load() {
        let text = manifest(
            json!({"schemaVersion": "1.0", "routes": {"r1": "FROM /* INTO $upstream"}}),
            json!({"m1": module()}),
            json!({}),
        );
        let d = parse(&text).unwrap();
        assert_eq!(d.schema_version, "1.0");
        assert_eq!(d.default_ttl_secs, DEFAULT_TTL_SECS);
        assert_eq!(d.modules.len(), 1);
        assert_eq!(d.routes[0].json_path, format!("{ROUTES}.r1"));

        // Empty modules and routes are fine; a negative global TTL means forever.
        let text = manifest(
            json!({"schemaVersion": "1.3", "routes": {}, "storeAndForwardConfiguration": {"timeToLiveSecs": -1}}),
            json!({}),
            json!({}),
        );
        let d = parse(&text).unwrap();
        assert!(d.modules.is_empty() && d.routes.is_empty());
        assert_eq!(d.default_ttl_secs, -1);

        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.json");
        std::fs::write(&path, FULL).unwrap();
        assert_eq!(Deployment::load(&path).unwrap(), parse(FULL).unwrap());
        let err = Deployment::load(&tmp.path().join("missing.json")).unwrap_err();
        assert_eq!(err.json_path, "$");
        assert!(err.problem.contains("cannot read the file"), "{}", err.problem);
    }

    #[test]
    fn rejects_invalid_json_with_position() {
        let err = parse("{\n  \"modulesContent\": {\n    \"a\": ,\n}").unwrap_err();
        assert_eq!(err.json_path, "$");
        assert!(err.problem.starts_with("invalid JSON"), "{}", err.problem);
        assert!(err.problem.contains("line 3 column"), "{}", err.problem);
        reject("{\"modulesContent\": {}, \"modulesContent\": {}}", "$", "duplicate key \"modulesContent\" at line 1");
    }

    #[test]
    fn rejects_bad_top_level() {
        reject("[]", "$", "must be an object, found an array");
        reject("{}", "$", "modulesContent is missing");
        reject(r#"{"modulesContent": {}, "content": {}}"#, "$", "both modulesContent and content");
        reject(r#"{"modulesContent": []}"#, "$.modulesContent", "must be an object, found an array");
        reject(r#"{"content": {"id": 1}}"#, "$.content", "modulesContent is missing");
    }

    #[test]
    fn rejects_bad_edge_agent() {
        reject(r#"{"modulesContent": {"$edgeHub": {}}}"#, "$.modulesContent", "$edgeAgent is missing");
        reject(
            r#"{"modulesContent": {"$edgeAgent": {"properties.reported": {}}}}"#,
            "$.modulesContent.$edgeAgent",
            "properties.desired is missing",
        );
        reject(
            r#"{"modulesContent": {"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1"}}}}"#,
            "$.modulesContent.$edgeAgent.properties.desired",
            "modules is missing",
        );
        reject(
            r#"{"modulesContent": {"$edgeAgent": {"properties.desired": {"modules": []}}}}"#,
            "$.modulesContent.$edgeAgent.properties.desired.modules",
            "must be an object, found an array",
        );
        reject(
            r#"{"modulesContent": {"$edgeAgent": {"properties.desired": {"modules": {"m": "x"}}}}}"#,
            "$.modulesContent.$edgeAgent.properties.desired.modules.m",
            "must be an object, found a string",
        );
    }

    #[test]
    fn rejects_bad_module_names() {
        let base = "$.modulesContent.$edgeAgent.properties.desired.modules";
        let hub_ok = hub(json!({}));
        reject(
            &manifest(hub_ok.clone(), json!({"$custom": module()}), json!({})),
            &format!("{base}.$custom"),
            "must not start with '$'",
        );
        reject(
            &manifest(hub_ok.clone(), json!({"my module": module()}), json!({})),
            &format!("{base}['my module']"),
            "contains ' '",
        );
        reject(
            &manifest(hub_ok.clone(), json!({"a/b": module()}), json!({})),
            &format!("{base}['a/b']"),
            "contains '/'",
        );
        reject(
            &manifest(hub_ok.clone(), json!({"": module()}), json!({})),
            &format!("{base}['']"),
            "must not be empty",
        );
        let long = "m".repeat(129);
        reject(
            &manifest(hub_ok.clone(), json!({ &long: module() }), json!({})),
            &format!("{base}.{long}"),
            "longer than 128",
        );
        // Every allowed special character, and exactly 128 characters, is fine.
        let odd = "a-.+%_#*?!(),=@$'";
        let ok128 = "n".repeat(128);
        let d = parse(&manifest(hub_ok, json!({ odd: module(), &ok128: module() }), json!({}))).unwrap();
        assert_eq!(d.modules.len(), 2);
    }

    #[test]
    fn rejects_bad_edge_hub() {
        let agent = json!({"properties.desired": {"modules": {}}});
        reject(
            &json!({"modulesContent": {"$edgeAgent": agent}}).to_string(),
            "$.modulesContent",
            "$edgeHub is missing",
        );
        reject(
            &json!({"modulesContent": {"$edgeAgent": agent, "$edgeHub": {}}}).to_string(),
            "$.modulesContent.$edgeHub",
            "properties.desired is missing",
        );
        reject(
            &json!({"modulesContent": {"$edgeAgent": agent, "$edgeHub": {"properties.desired": 1}}}).to_string(),
            "$.modulesContent.$edgeHub.properties.desired",
            "must be an object, found a number",
        );
        let hub_desired = "$.modulesContent.$edgeHub.properties.desired";
        reject(&manifest(json!({"routes": {}}), json!({}), json!({})), hub_desired, "schemaVersion is missing");
        reject(
            &manifest(json!({"schemaVersion": "2.0", "routes": {}}), json!({}), json!({})),
            &format!("{hub_desired}.schemaVersion"),
            "unsupported schemaVersion \"2.0\" (expected one of 1.0, 1.1, 1.2, 1.3)",
        );
        reject(
            &manifest(json!({"schemaVersion": 1.1, "routes": {}}), json!({}), json!({})),
            &format!("{hub_desired}.schemaVersion"),
            "must be a string, found a number",
        );
        reject(&manifest(json!({"schemaVersion": "1.1"}), json!({}), json!({})), hub_desired, "routes is missing");
        reject(
            &manifest(json!({"schemaVersion": "1.1", "routes": ["FROM /* INTO $upstream"]}), json!({}), json!({})),
            &format!("{hub_desired}.routes"),
            "must be an object, found an array",
        );
    }

    #[test]
    fn rejects_bad_route_names() {
        reject_routes(json!({"": "FROM /* INTO $upstream"}), &format!("{ROUTES}['']"), "route name must not be empty");
        reject_routes(json!({"a.b": "FROM /* INTO $upstream"}), &format!("{ROUTES}['a.b']"), "must not contain '.'");
        reject_routes(json!({"$r": "FROM /* INTO $upstream"}), &format!("{ROUTES}.$r"), "must not contain '$'");
        reject_routes(json!({"r#1": "FROM /* INTO $upstream"}), &format!("{ROUTES}['r#1']"), "must not contain '#'");
        reject_routes(json!({"r 1": "FROM /* INTO $upstream"}), &format!("{ROUTES}['r 1']"), "must not contain ' '");
    }

    #[test]
    fn rejects_bad_route_values() {
        reject_routes(json!({"r1": 5}), &format!("{ROUTES}.r1"), "a route must be a string or an object");
        reject_routes(json!({"r1": "  "}), &format!("{ROUTES}.r1"), "route text must not be empty");
        reject_routes(json!({"r1": {"priority": 1}}), &format!("{ROUTES}.r1"), "route is missing");
        reject_routes(json!({"r1": {"route": ""}}), &format!("{ROUTES}.r1.route"), "route text must not be empty");
        reject_routes(json!({"r1": {"route": 1}}), &format!("{ROUTES}.r1.route"), "route text must be a string");
        reject(
            &manifest(
                json!({"schemaVersion": "1.0", "routes": {"r1": {"route": "FROM /* INTO $upstream"}}}),
                json!({}),
                json!({}),
            ),
            &format!("{ROUTES}.r1"),
            "need schemaVersion 1.1 or later",
        );
        reject_routes(
            json!({"r1": {"route": "FROM /* INTO $upstream", "condition": "x"}}),
            &format!("{ROUTES}.r1.condition"),
            "unknown key \"condition\" in a route object",
        );
    }

    #[test]
    fn rejects_bad_priority_and_ttl() {
        let r = |extra: Value| {
            let mut obj = json!({"route": "FROM /* INTO $upstream"});
            for (k, v) in extra.as_object().unwrap() {
                obj[k] = v.clone();
            }
            json!({ "r1": obj })
        };
        let prio = format!("{ROUTES}.r1.priority");
        reject_routes(r(json!({"priority": 10})), &prio, "priority must be between 0 and 9, found 10");
        reject_routes(r(json!({"priority": -1})), &prio, "priority must be between 0 and 9, found -1");
        reject_routes(r(json!({"priority": "1"})), &prio, "must be an integer between 0 and 9, found a string");
        reject_routes(r(json!({"priority": 1.5})), &prio, "found 1.5");
        let ttl = format!("{ROUTES}.r1.timeToLiveSecs");
        reject_routes(r(json!({"timeToLiveSecs": -5})), &ttl, "timeToLiveSecs must not be negative, found -5");
        reject_routes(r(json!({"timeToLiveSecs": 2.5})), &ttl, "must be a non-negative integer, found 2.5");
        reject_routes(r(json!({"timeToLiveSecs": null})), &ttl, "must be a non-negative integer, found null");

        let saf = "$.modulesContent.$edgeHub.properties.desired.storeAndForwardConfiguration";
        let with_saf = |saf: Value| {
            manifest(
                json!({"schemaVersion": "1.1", "routes": {}, "storeAndForwardConfiguration": saf}),
                json!({}),
                json!({}),
            )
        };
        reject(
            &with_saf(json!({"timeToLiveSecs": "7200"})),
            &format!("{saf}.timeToLiveSecs"),
            "must be an integer, found a string",
        );
        reject(
            &with_saf(json!({"timeToLiveSecs": 1.5})),
            &format!("{saf}.timeToLiveSecs"),
            "must be an integer, found 1.5",
        );
        reject(
            &with_saf(json!({"timeToLiveSecs": u64::MAX})),
            &format!("{saf}.timeToLiveSecs"),
            "18446744073709551615 is out of range",
        );
        reject(&with_saf(json!(7200)), saf, "must be an object, found a number");
    }

    #[test]
    fn rejects_bad_module_desired_properties() {
        let mods = json!({"filter": module()});
        reject(
            &manifest(hub(json!({})), mods.clone(), json!({"filter": {"properties.desired": [1]}})),
            "$.modulesContent.filter.properties.desired",
            "must be an object, found an array",
        );
        reject(
            &manifest(hub(json!({})), mods.clone(), json!({"filter": {"properties": {"desired": "x"}}})),
            "$.modulesContent.filter.properties.desired",
            "must be an object, found a string",
        );
        reject(
            &manifest(hub(json!({})), mods.clone(), json!({"filter": "x"})),
            "$.modulesContent.filter",
            "must be an object, found a string",
        );
        reject(
            &manifest(hub(json!({})), mods.clone(), json!({"filter": {"properties.desired": {}, "properties": {}}})),
            "$.modulesContent.filter",
            "both \"properties.desired\" and \"properties\"",
        );
        reject(
            &manifest(hub(json!({})), mods, json!({"ghost": {"properties.desired": {"a": 1}}})),
            "$.modulesContent.ghost",
            "module \"ghost\" has desired properties but is not deployed",
        );
    }

    #[test]
    fn module_desired_properties_absent_means_empty() {
        let d = parse(&manifest(hub(json!({})), json!({"a": module()}), json!({"a": {"properties.reported": {}}})))
            .unwrap();
        assert!(d.modules[0].desired.is_empty());
    }
}
