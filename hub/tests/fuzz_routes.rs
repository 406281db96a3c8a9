//! Property-based fuzzing of the route and condition parser (issue #11): any text returns a
//! route or an error naming the route, never panics, and parses in bounded time; whatever
//! parses also evaluates on arbitrary messages without panicking.
//!
//! Default case counts are small; `PROPTEST_CASES=N` runs longer (RELIABILITY.md).

use std::time::{Duration, Instant};

use edgemodule_core::{Message, SystemProperty};
use edgemodule_hub::routes::{select, Condition, MessageSource, Route, MAX_ROUTE_LEN};
use proptest::prelude::*;

fn config(default: u32) -> ProptestConfig {
    let mut c = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c
}

/// Generous for a debug build on a shared, loaded 2-core machine; real parses take microseconds.
const PARSE_BUDGET: Duration = Duration::from_secs(2);

/// Tokens of the route language, glued into mostly-almost-valid text.
const TOKENS: &[&str] = &[
    "FROM",
    "WHERE",
    "INTO",
    "SELECT",
    "*",
    "/messages/*",
    "/messages/modules/m/outputs/o",
    "/twinChangeNotifications",
    "$upstream",
    "BrokeredEndpoint(\"/modules/f/inputs/i\")",
    "BrokeredEndpoint('/modules/f/inputs/",
    "AND",
    "OR",
    "NOT",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "=",
    "<>",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "||",
    "??",
    "'x'",
    "'it\\'s'",
    "\"dq\"",
    "'\\u00e9'",
    "1",
    "-0x1F",
    "3.5e10",
    "1e999",
    "true",
    "false",
    "null",
    "undefined",
    "a",
    "$body",
    "$body.a.b[0]",
    "$connectionModuleId",
    "{$dt-subject}",
    "$contentType",
    "is_defined(",
    "is_string(",
    "as_number(",
    "lower(",
    "upper(",
    "substring(",
    "concat(",
    "length(",
    "abs(",
    "index_of(",
    "starts_with(",
    "ends_with(",
    "contains(",
    "twin_change_includes(",
    "properties.reported.a",
    "/*",
    "*/",
    "--",
    "\t",
    "\n",
    "é",
    "😀",
    "\u{0}",
    "\\",
];

fn token_text() -> impl Strategy<Value = String> {
    proptest::collection::vec((0..TOKENS.len(), prop_oneof![Just(" "), Just(""), Just("  ")]), 0..40)
        .prop_map(|ts| ts.into_iter().map(|(i, sep)| format!("{}{sep}", TOKENS[i])).collect())
}

fn route_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        token_text(),
        token_text().prop_map(|c| format!("FROM /messages/* WHERE {c} INTO $upstream")),
        (token_text(), token_text())
            .prop_map(|(s, c)| format!("FROM {s} WHERE {c} INTO BrokeredEndpoint(\"/modules/m/inputs/i\")")),
        token_text().prop_map(|s| format!("FROM /* INTO {s}")),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "\\{\"a\":\\{\"b\":\\[[0-9]{1,3}(,\"x\")?\\]\\},\"t\":[0-9.e\\-]{1,6}\\}".prop_map(String::into_bytes),
        Just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec()),
    ];
    let ce = prop_oneof![Just("utf-8"), Just("utf-16"), Just("utf-32"), Just("latin1")];
    (body, any::<bool>(), ce, proptest::collection::vec(("[a-z]{1,3}", any::<String>()), 0..4), any::<Option<String>>())
        .prop_map(|(body, json, ce, props, cmid)| {
            let mut m = Message::new(body);
            if json {
                m = m.with_content_type("application/json").with_content_encoding(ce);
            }
            for (k, v) in props {
                m.set_property(k, v);
            }
            m.set_system(SystemProperty::ConnectionModuleId, cmid);
            m
        })
}

fn source() -> impl Strategy<Value = MessageSource> {
    prop_oneof![
        Just(MessageSource::Device),
        Just(MessageSource::TwinChangeNotification),
        ("[a-zA-Z*/]{1,6}", proptest::option::of("[a-zA-Z*/]{1,6}"))
            .prop_map(|(module, output)| MessageSource::Module { module, output }),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn any_route_text_parses_or_errors_quickly(name in "[a-zA-Z0-9_\\-]{1,8}", text in route_text(), msg in message(), src in source()) {
        let started = Instant::now();
        let parsed = Route::parse(&name, &text, Some(1), None);
        prop_assert!(started.elapsed() < PARSE_BUDGET, "parse took {:?}", started.elapsed());
        match parsed {
            Ok(route) => {
                prop_assert_eq!(&route.name, &name);
                let started = Instant::now();
                let _ = route.matches(&src, &msg);
                let _ = select(std::slice::from_ref(&route), &src, &msg);
                prop_assert!(started.elapsed() < PARSE_BUDGET, "evaluation took {:?}", started.elapsed());
            }
            Err(e) => {
                prop_assert_eq!(e.route_name(), Some(name.as_str()));
                prop_assert!(!e.message().is_empty());
                if let Some(col) = e.column() {
                    prop_assert!(col >= 1 && col <= text.chars().count() + 1, "column {} of {}", col, text.chars().count());
                }
            }
        }
    }

    #[test]
    fn any_condition_text_parses_or_errors_quickly(text in prop_oneof![any::<String>(), token_text()], msg in message()) {
        let started = Instant::now();
        let parsed = Condition::parse(&text);
        prop_assert!(started.elapsed() < PARSE_BUDGET, "parse took {:?}", started.elapsed());
        if let Ok(c) = parsed {
            let _ = c.evaluate(&msg);
            let _ = c.matches(&msg);
            prop_assert!(!c.text().is_empty() || text.trim().is_empty());
        }
    }

    #[test]
    fn huge_inputs_are_refused_quickly(unit in token_text(), reps in 1usize..4000) {
        let body: String = unit.repeat(reps.min(MAX_ROUTE_LEN * 2 / unit.len().max(1) + 1));
        let started = Instant::now();
        let _ = Route::parse("r", &format!("FROM /* WHERE {body} INTO $upstream"), None, None);
        let _ = Condition::parse(&body);
        prop_assert!(started.elapsed() < PARSE_BUDGET * 2, "took {:?} on {} bytes", started.elapsed(), body.len());
    }
}
