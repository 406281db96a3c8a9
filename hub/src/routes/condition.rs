//! `Condition`: a parsed WHERE clause, and the expression tree it is made of.
//!
//! References are resolved at parse time (`$messageId` becomes a system-property lookup,
//! `$body.a` a body path), so evaluating a message does no string matching on names.

use edgemodule_core::{Message, SystemProperty};

use super::body::BodyPath;
use super::error::RouteError;
use super::eval::{eval, Context};
use super::expr_parser::parse_condition;
use super::functions::Function;
use super::lexer::{tokenize, Cursor, Tok};
use super::value::{Arith, Ordered, Value};

/// Longest route (and standalone condition) text accepted, in bytes. Real routes are a few
/// hundred bytes; the cap bounds parse time and memory for hostile manifests.
pub const MAX_ROUTE_LEN: usize = 16 * 1024;

/// What a `$name` or `{$name}` refers to besides an application property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    System(SystemProperty),
    Body(BodyPath),
    /// A name edgeHub does not know; it evaluates to `Undefined`, as edgeHub's would.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Arith(Arith),
    Concat,
    Compare(Ordered),
    Eq,
    Ne,
    And,
    Or,
    Coalesce,
}

/// A node of a condition expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(Value),
    /// A bare identifier: the application property of that name.
    Property(String),
    /// `$name`: the application property literally called `key` (with its `$`) if the
    /// message has one, otherwise `target`.
    Dollar {
        key: String,
        target: Lookup,
    },
    /// `{$name}`: straight to the system property or body query.
    Forced(Lookup),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
}

impl Expr {
    /// Height of the tree. Only called on subtrees already within the depth limit, so the
    /// recursion here is bounded too.
    pub(crate) fn depth(&self) -> usize {
        match self {
            Expr::Unary(_, e) => 1 + e.depth(),
            Expr::Binary(_, l, r) => 1 + l.depth().max(r.depth()),
            Expr::Call(_, args) => 1 + args.iter().map(Expr::depth).max().unwrap_or(0),
            _ => 1,
        }
    }
}

/// A parsed route condition (the part after WHERE).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    text: String,
    expr: Expr,
}

impl Condition {
    pub(crate) fn new(text: &str, expr: Expr) -> Self {
        Condition { text: text.to_string(), expr }
    }

    /// Parses a condition on its own, e.g. `temp > 30 AND $connectionModuleId = 'sensor'`.
    pub fn parse(text: &str) -> Result<Condition, RouteError> {
        parse_whole(text).map_err(|e| e.in_text(text))
    }

    /// The condition as written in the route.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The three-valued result for a message.
    pub fn evaluate(&self, msg: &Message) -> Value {
        eval(&self.expr, &Context::new(msg))
    }

    /// Whether the condition is exactly `true` for the message (undefined does not match).
    pub fn matches(&self, msg: &Message) -> bool {
        self.evaluate(msg).is_true()
    }
}

fn parse_whole(text: &str) -> Result<Condition, RouteError> {
    if text.len() > MAX_ROUTE_LEN {
        return Err(RouteError::general(format!("condition is longer than {MAX_ROUTE_LEN} bytes")));
    }
    let tokens = tokenize(text, 0)?;
    let mut cursor = Cursor::new(&tokens);
    let expr = parse_condition(&mut cursor)?;
    if cursor.peek().tok != Tok::Eof {
        return Err(cursor.expected("an operator or end of condition"));
    }
    Ok(Condition::new(text.trim(), expr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        let mut m = Message::new(r#"{"temp":35}"#)
            .with_content_type("application/json")
            .with_content_encoding("utf-8")
            .with_property("level", "critical");
        m.set_system(SystemProperty::ConnectionModuleId, Some("sensor".into()));
        m
    }

    #[test]
    fn parse_and_evaluate() {
        let c = Condition::parse("  level = 'critical' AND $body.temp > 30 ").unwrap();
        assert_eq!(c.text(), "level = 'critical' AND $body.temp > 30");
        assert_eq!(c.evaluate(&msg()), Value::Bool(true));
        assert!(c.matches(&msg()));
    }

    #[test]
    fn undefined_does_not_match() {
        let c = Condition::parse("missing = 'x'").unwrap();
        assert_eq!(c.evaluate(&msg()), Value::Undefined);
        assert!(!c.matches(&msg()));
    }

    #[test]
    fn errors_carry_columns() {
        let e = Condition::parse("a = 1 b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid route condition at column 7: expected an operator or end of condition, found 'b'"
        );
        let e = Condition::parse("").unwrap_err();
        assert_eq!(e.message(), "expected an expression, found end of input");
    }

    #[test]
    fn overlong_condition_is_rejected() {
        let text = "a = 1 OR ".repeat(MAX_ROUTE_LEN / 9 + 1) + "a = 1";
        assert!(Condition::parse(&text).unwrap_err().message().contains("longer than"));
    }

    #[test]
    fn depth_of_trees() {
        let leaf = || Box::new(Expr::Literal(Value::Null));
        assert_eq!(Expr::Literal(Value::Null).depth(), 1);
        let two = Expr::Binary(BinaryOp::And, leaf(), leaf());
        assert_eq!(two.depth(), 2);
        assert_eq!(Expr::Unary(UnaryOp::Not, Box::new(two)).depth(), 3);
        assert_eq!(Expr::Call(Function::Abs, vec![]).depth(), 1);
    }
}
