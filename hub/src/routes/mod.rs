//! edgeHub's route engine: parse `FROM ... WHERE ... INTO ...` routes from the deployment
//! and decide which routes (and so which sinks) a message goes to (protocol.md §8.1, §8.3).
//!
//! - `parser` reads the statement, `source` and `sink` its two ends, `lexer` +
//!   `expr_parser` the WHERE condition into the tree in `condition`.
//! - `eval` runs a condition on a message with the three-valued logic in `value`,
//!   using `functions` for built-ins and `body` for `$body.` queries.
//!
//! Parsing never panics and is bounded in time and stack (input length, nesting and
//! expression depth limits), because route text comes from a deployment we do not control.

mod body;
mod condition;
mod error;
mod eval;
mod expr_parser;
mod functions;
mod lexer;
mod parser;
mod sink;
mod source;
mod value;

#[cfg(test)]
mod robustness_tests;

use edgemodule_core::Message;

pub use condition::{Condition, MAX_ROUTE_LEN};
pub use error::RouteError;
pub use expr_parser::{MAX_NESTING, MAX_TREE_DEPTH};
pub use sink::Sink;
pub use source::{MessageSource, Source};
pub use value::Value;

/// Priority of a route whose deployment gives none: below every explicit priority (0-9).
pub const DEFAULT_PRIORITY: u32 = 2_000_000_000;

/// One compiled route from the deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub source: Source,
    /// `None` when the route has no WHERE clause (always true).
    pub condition: Option<Condition>,
    pub sink: Sink,
    /// 0 is the highest priority.
    pub priority: u32,
    /// Overrides the global store-and-forward TTL; `None` means "use the global TTL".
    pub ttl_secs: Option<u64>,
}

impl Route {
    /// Parses `text` ("FROM ... WHERE ... INTO ..."). `priority` defaults to
    /// [`DEFAULT_PRIORITY`]. Errors name the route and the column of the problem.
    pub fn parse(name: &str, text: &str, priority: Option<u32>, ttl_secs: Option<u64>) -> Result<Route, RouteError> {
        check_name(name).map_err(|e| e.for_route(name))?;
        let statement = parser::parse_statement(text).map_err(|e| e.in_text(text).for_route(name))?;
        Ok(Route {
            name: name.to_string(),
            source: statement.source,
            condition: statement.condition,
            sink: statement.sink,
            priority: priority.unwrap_or(DEFAULT_PRIORITY),
            ttl_secs,
        })
    }

    /// Whether a message with this source passes the FROM and the WHERE.
    pub fn matches(&self, source: &MessageSource, msg: &Message) -> bool {
        self.source.matches(source) && self.condition.as_ref().is_none_or(|c| c.matches(msg))
    }
}

/// Route names must be non-empty and match `^[^\.\$# ]+$` (edgeHub's manifest schema).
fn check_name(name: &str) -> Result<(), RouteError> {
    if name.is_empty() {
        return Err(RouteError::general("route name is empty"));
    }
    match name.chars().find(|c| matches!(c, '.' | '$' | '#' | ' ')) {
        Some(c) => Err(RouteError::general(format!("route name may not contain '{c}'"))),
        None => Ok(()),
    }
}

/// All routes a message matches, in priority order (0 = highest; equal priorities keep
/// deployment order), each sink once: the highest-priority route for a sink wins, so a
/// message is never delivered twice to the same place.
pub fn select<'a>(routes: &'a [Route], source: &MessageSource, msg: &Message) -> Vec<&'a Route> {
    let mut matched: Vec<&Route> = routes.iter().filter(|r| r.matches(source, msg)).collect();
    matched.sort_by_key(|r| r.priority); // stable: ties stay in deployment order
    let mut seen: Vec<&Sink> = Vec::new();
    matched.retain(|r| {
        let first = !seen.contains(&&r.sink);
        if first {
            seen.push(&r.sink);
        }
        first
    });
    matched
}

#[cfg(test)]
mod tests {
    use edgemodule_core::SystemProperty;

    use super::*;

    fn module(m: &str, o: Option<&str>) -> MessageSource {
        MessageSource::Module { module: m.into(), output: o.map(Into::into) }
    }

    fn route(name: &str, text: &str, priority: Option<u32>) -> Route {
        Route::parse(name, text, priority, None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(selected: &[&Route]) -> Vec<String> {
        selected.iter().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn parse_fills_every_field() {
        let r = Route::parse(
            "r1",
            "FROM /messages/modules/sensor/outputs/temp WHERE level = 'hi' INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")",
            Some(3),
            Some(86400),
        )
        .unwrap();
        assert_eq!(r.name, "r1");
        assert_eq!(r.source.prefix(), "/messages/modules/sensor/outputs/temp/");
        assert_eq!(r.condition.as_ref().unwrap().text(), "level = 'hi'");
        assert_eq!(r.sink, Sink::ModuleInput { module: "filter".into(), input: "input1".into() });
        assert_eq!(r.priority, 3);
        assert_eq!(r.ttl_secs, Some(86400));
    }

    #[test]
    fn priority_defaults_to_two_billion() {
        let r = route("r", "FROM /* INTO $upstream", None);
        assert_eq!(r.priority, 2_000_000_000);
        assert_eq!(r.ttl_secs, None);
    }

    #[test]
    fn errors_name_the_route() {
        let e = Route::parse("bad", "FROM /* INTO $nowhere", None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid route 'bad' at column 14: expected a sink: $upstream or \
             BrokeredEndpoint(\"/modules/{module}/inputs/{input}\"), found '$nowhere'"
        );
        assert_eq!(e.route_name(), Some("bad"));
        let source: &dyn std::error::Error = &e;
        assert!(source.source().is_none());
    }

    #[test]
    fn route_names_are_checked() {
        for bad in ["", "a.b", "$r", "r#1", "my route"] {
            let e = Route::parse(bad, "FROM /* INTO $upstream", None, None).unwrap_err();
            assert!(e.message().starts_with("route name"), "{bad}: {e}");
        }
        assert!(Route::parse("Route-1_x", "FROM /* INTO $upstream", None, None).is_ok());
    }

    #[test]
    fn matches_needs_source_and_condition() {
        let r = route("r", "FROM /messages/modules/sensor/* WHERE $connectionModuleId = 'sensor' INTO $upstream", None);
        let mut msg = Message::new("x");
        msg.set_system(SystemProperty::ConnectionModuleId, Some("sensor".into()));
        assert!(r.matches(&module("sensor", Some("out")), &msg));
        assert!(r.matches(&module("sensor", None), &msg));
        assert!(!r.matches(&module("other", Some("out")), &msg), "source mismatch");
        assert!(!r.matches(&module("sensor", None), &Message::new("x")), "condition undefined");
    }

    #[test]
    fn no_where_means_true() {
        let r = route("r", "FROM /messages/* INTO $upstream", None);
        assert!(r.matches(&MessageSource::Device, &Message::new("")));
        assert!(!r.matches(&MessageSource::TwinChangeNotification, &Message::new("")));
    }

    #[test]
    fn doc_example_only_leaf_device_traffic() {
        let r = route("r", "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream", None);
        let leaf = Message::new("t");
        let mut from_module = Message::new("t");
        from_module.set_system(SystemProperty::ConnectionModuleId, Some("m".into()));
        assert!(r.matches(&MessageSource::Device, &leaf));
        assert!(!r.matches(&module("m", None), &from_module));
    }

    #[test]
    fn select_orders_by_priority_and_dedups_sinks() {
        let routes = vec![
            route("default", "FROM /* INTO $upstream", None),
            route("low", "FROM /messages/* INTO BrokeredEndpoint('/modules/f/inputs/a')", Some(9)),
            route("high", "FROM /messages/modules/s/* INTO $upstream", Some(0)),
            route("mid", "FROM /messages/* INTO BrokeredEndpoint('/modules/f/inputs/a')", Some(5)),
            route("other", "FROM /messages/* INTO BrokeredEndpoint('/modules/f/inputs/b')", Some(5)),
            route("nomatch", "FROM /twinChangeNotifications INTO BrokeredEndpoint('/modules/f/inputs/c')", Some(0)),
            route("filtered", "FROM /* WHERE level = 'x' INTO BrokeredEndpoint('/modules/g/inputs/a')", Some(1)),
        ];
        let msg = Message::new("x");
        let selected = select(&routes, &module("s", Some("o")), &msg);
        assert_eq!(names(&selected), vec!["high", "mid", "other"]);

        let msg = msg.with_property("level", "x");
        let selected = select(&routes, &MessageSource::Device, &msg);
        assert_eq!(names(&selected), vec!["filtered", "mid", "other", "default"]);
    }

    #[test]
    fn select_ties_keep_deployment_order() {
        let routes = vec![
            route("first", "FROM /* INTO $upstream", Some(2)),
            route("second", "FROM /* INTO $upstream", Some(2)),
            route("third", "FROM /* INTO BrokeredEndpoint('/modules/m/inputs/i')", Some(2)),
        ];
        let selected = select(&routes, &MessageSource::Device, &Message::new(""));
        assert_eq!(names(&selected), vec!["first", "third"]);
    }

    #[test]
    fn select_with_nothing_matching() {
        let routes = vec![route("r", "FROM /twinChangeNotifications INTO $upstream", None)];
        assert!(select(&routes, &MessageSource::Device, &Message::new("")).is_empty());
        assert!(select(&[], &MessageSource::Device, &Message::new("")).is_empty());
    }

    #[test]
    fn sinks_compare_case_sensitively_on_names() {
        // Module ids are case-sensitive identities, so two spellings are two sinks.
        let routes = vec![
            route("a", "FROM /* INTO BrokeredEndpoint('/modules/F/inputs/i')", Some(1)),
            route("b", "FROM /* INTO BrokeredEndpoint('/modules/f/inputs/i')", Some(1)),
        ];
        assert_eq!(names(&select(&routes, &MessageSource::Device, &Message::new(""))), vec!["a", "b"]);
    }

    #[test]
    fn body_route_end_to_end() {
        let r = route(
            "hot",
            "FROM /messages/modules/sensor/outputs/temp WHERE $body.machine.temperature > 30 INTO $upstream",
            None,
        );
        let body = r#"{"machine":{"temperature":31.5}}"#;
        let json = Message::new(body).with_content_type("application/json").with_content_encoding("utf-8");
        assert!(r.matches(&module("sensor", Some("temp")), &json));
        assert!(!r.matches(&module("sensor", Some("temp")), &Message::new(body)), "no content type: undefined");
    }
}
