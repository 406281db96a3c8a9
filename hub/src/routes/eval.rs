//! Evaluates a condition expression against one message.
//!
//! Property values are strings (that is all a message's property bag holds), so
//! `temp > 30` on a string property is `Undefined`; `as_number(temp) > 30` converts
//! explicitly. Body-query values keep their JSON types.

use std::cell::OnceCell;

use edgemodule_core::Message;
use serde_json::Value as Json;

use super::body::parse_json_body;
use super::condition::{BinaryOp, Expr, Lookup, UnaryOp};
use super::value::{self, Value};

/// Per-evaluation state: the message and its body parsed at most once, however many
/// body queries the condition has.
pub(crate) struct Context<'m> {
    msg: &'m Message,
    body: OnceCell<Option<Json>>,
}

impl<'m> Context<'m> {
    pub(crate) fn new(msg: &'m Message) -> Self {
        Context { msg, body: OnceCell::new() }
    }

    fn json_body(&self) -> Option<&Json> {
        self.body.get_or_init(|| parse_json_body(self.msg)).as_ref()
    }

    fn property(&self, name: &str) -> Option<Value> {
        self.msg.property(name).map(|v| Value::String(v.to_string()))
    }

    fn lookup(&self, target: &Lookup) -> Value {
        match target {
            Lookup::System(p) => self.msg.system(*p).map_or(Value::Undefined, |v| Value::String(v.to_string())),
            Lookup::Body(path) => path.query(self.json_body()),
            Lookup::Unknown => Value::Undefined,
        }
    }
}

/// The value of `expr` for the message in `ctx`. Recursion is bounded by the parser's
/// tree-depth limit.
pub(crate) fn eval(expr: &Expr, ctx: &Context<'_>) -> Value {
    match expr {
        Expr::Literal(v) => v.clone(),
        Expr::Property(name) => ctx.property(name).unwrap_or(Value::Undefined),
        Expr::Dollar { key, target } => ctx.property(key).unwrap_or_else(|| ctx.lookup(target)),
        Expr::Forced(target) => ctx.lookup(target),
        Expr::Unary(UnaryOp::Neg, e) => value::negate(&eval(e, ctx)),
        Expr::Unary(UnaryOp::Not, e) => value::not(&eval(e, ctx)),
        Expr::Binary(op, l, r) => binary(*op, l, r, ctx),
        Expr::Call(f, args) => {
            let values: Vec<Value> = args.iter().map(|a| eval(a, ctx)).collect();
            f.call(&values)
        }
    }
}

fn binary(op: BinaryOp, l: &Expr, r: &Expr, ctx: &Context<'_>) -> Value {
    let left = eval(l, ctx);
    // Short-circuit only where the right side cannot change the result.
    match (op, &left) {
        (BinaryOp::And, Value::Bool(false)) => return Value::Bool(false),
        (BinaryOp::Or, Value::Bool(true)) => return Value::Bool(true),
        (BinaryOp::Coalesce, _) => return value::coalesce(left, || eval(r, ctx)),
        _ => {}
    }
    let right = eval(r, ctx);
    match op {
        BinaryOp::Arith(a) => value::arith(a, &left, &right),
        BinaryOp::Concat => value::concat(&left, &right),
        BinaryOp::Compare(o) => value::compare(o, &left, &right),
        BinaryOp::Eq => value::equals(&left, &right),
        BinaryOp::Ne => value::not_equals(&left, &right),
        BinaryOp::And => value::and(&left, &right),
        BinaryOp::Or => value::or(&left, &right),
        BinaryOp::Coalesce => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use edgemodule_core::SystemProperty;

    use super::super::condition::Condition;
    use super::*;

    fn eval_on(text: &str, msg: &Message) -> Value {
        Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).evaluate(msg)
    }

    fn sensor_msg() -> Message {
        let mut m = Message::new(r#"{"temp":35.5,"unit":"C","ok":true,"tags":["a","b"],"nested":{"x":null}}"#)
            .with_content_type("application/json")
            .with_content_encoding("utf-8")
            .with_message_id("m-1")
            .with_correlation_id("c-1")
            .with_property("level", "critical")
            .with_property("temp", "31")
            .with_property("$messageId", "app-wins");
        m.set_system(SystemProperty::ConnectionModuleId, Some("sensor".into()));
        m.set_system(SystemProperty::ConnectionDeviceId, Some("dev1".into()));
        m.set_system(SystemProperty::ComponentName, Some("thermostat".into()));
        m
    }

    fn check(cases: &[(&str, Value)]) {
        let m = sensor_msg();
        for (text, want) in cases {
            assert_eq!(eval_on(text, &m), *want, "{text}");
        }
    }

    const T: Value = Value::Bool(true);
    const F: Value = Value::Bool(false);
    const U: Value = Value::Undefined;

    fn s(x: &str) -> Value {
        Value::String(x.to_string())
    }

    #[test]
    fn application_properties_are_strings() {
        check(&[
            ("level = 'critical'", T),
            ("level = \"critical\"", T),
            ("level = 'CRITICAL'", F),
            ("temp = '31'", T),
            ("temp > 30", U),
            ("temp = 31", U),
            ("as_number(temp) > 30", T),
            ("as_number(temp) = 31", T),
            ("missing = 'x'", U),
            ("Level = 'critical'", U),
        ]);
    }

    #[test]
    fn dollar_names_prefer_application_properties() {
        check(&[
            ("$messageId", s("app-wins")),
            ("{$messageId}", s("m-1")),
            ("$connectionModuleId = 'sensor'", T),
            ("$connectionDeviceId = 'dev1'", T),
            ("$cid = 'c-1'", T),
            ("$correlationId", U),
            ("$dt-subject = 'thermostat'", T),
            ("{$dt-subject}", s("thermostat")),
            ("$contentType", s("application/json")),
            ("$noSuchThing", U),
            ("$outputName", U),
            ("NOT IS_DEFINED($connectionModuleId)", F),
        ]);
    }

    #[test]
    fn body_queries_keep_json_types() {
        check(&[
            ("$body.temp > 30", T),
            ("$body.temp = 35.5", T),
            ("$body.temp = '35.5'", U),
            ("$body.unit = 'C'", T),
            ("$body.ok", T),
            ("$body.ok = true", T),
            ("$body.tags[1] = 'b'", T),
            ("$body.tags", U),
            ("$body.nested", U),
            ("is_null($body.nested.x)", T),
            ("is_defined($body.nested.missing)", F),
            ("{$body.temp} >= 35.5", T),
        ]);
    }

    #[test]
    fn body_query_needs_json_content_type_and_encoding() {
        let plain = Message::new(r#"{"temp":35}"#);
        assert_eq!(eval_on("$body.temp > 30", &plain), U);
        let wrong_ct = Message::new(r#"{"temp":35}"#).with_content_type("text/json").with_content_encoding("utf-8");
        assert_eq!(eval_on("$body.temp > 30", &wrong_ct), U);
        let no_ce = Message::new(r#"{"temp":35}"#).with_content_type("application/json");
        assert_eq!(eval_on("$body.temp > 30", &no_ce), U);
        let ok = no_ce.with_content_encoding("UTF-8");
        assert_eq!(eval_on("$body.temp > 30", &ok), T);
    }

    #[test]
    fn operators_evaluate() {
        check(&[
            ("1 + 2 * 3 = 7", T),
            ("(1 + 2) * 3 = 9", T),
            ("10 / 4 = 2.5", T),
            ("10 % 4 = 2", T),
            ("7 - 2 - 1 = 4", T),
            ("-(2) = -2", T),
            ("- 2 < 0", T),
            ("'a' || 'b' = 'ab'", T),
            ("'a' + 'b'", U),
            ("1 < 2 AND 2 <= 2 AND 3 > 2 AND 3 >= 3", T),
            ("1 != 2 AND 1 <> 2", T),
            ("NOT (1 = 2)", T),
            ("NOT NOT true", T),
            ("missing ?? 'fallback'", s("fallback")),
            ("level ?? 'fallback'", s("critical")),
            ("null ?? 'x'", Value::Null),
            ("0x10 = 16", T),
            ("1.5e2 = 150", T),
        ]);
    }

    #[test]
    fn undefined_propagates_through_logic() {
        check(&[
            ("missing = 'x' OR level = 'critical'", T),
            ("missing = 'x' AND level = 'critical'", U),
            ("missing = 'x' AND level = 'other'", F),
            ("missing = 'x' OR level = 'other'", U),
            ("NOT (missing = 'x')", U),
            ("undefined = undefined", U),
            ("is_defined(undefined)", F),
            ("missing ?? missing2", U),
            ("1 / 0", U),
            ("true AND 1", U),
        ]);
    }

    #[test]
    fn functions_in_conditions() {
        check(&[
            ("abs(-3) = 3", T),
            ("exp(0) = 1", T),
            ("power(2, 3) = 8", T),
            ("square(3) = 9", T),
            ("ceiling(1.1) = 2", T),
            ("floor(1.9) = 1", T),
            ("sign(-4) = -1", T),
            ("sqrt(16) = 4", T),
            ("is_bool($body.ok)", T),
            ("is_number($body.temp)", T),
            ("is_string(level)", T),
            ("is_null(null)", T),
            ("concat(level, '-', $body.unit) = 'critical-C'", T),
            ("length(level) = 8", T),
            ("lower('AB') = 'ab'", T),
            ("upper(level) = 'CRITICAL'", T),
            ("substring(level, 0, 4) = 'crit'", T),
            ("index_of(level, 'tic') = 3", T),
            ("starts_with($connectionModuleId, 'sen')", T),
            ("ends_with($connectionModuleId, 'sor')", T),
            ("contains(level, 'iti')", T),
            ("twin_change_includes(properties.reported.x)", U),
            ("NOT twin_change_includes(properties.reported.x)", U),
        ]);
    }

    #[test]
    fn body_is_parsed_once_per_evaluation() {
        let m = sensor_msg();
        let ctx = Context::new(&m);
        let first = ctx.json_body().map(|j| j as *const Json);
        let second = ctx.json_body().map(|j| j as *const Json);
        assert!(first.is_some());
        assert_eq!(first, second);
    }
}
