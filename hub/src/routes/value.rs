//! `Value` and the three-valued operator semantics of the condition language.
//!
//! Like the IoT Hub query language, a missing property is `Undefined` (distinct from JSON
//! `null`) and it propagates: arithmetic, comparisons and functions on it give `Undefined`,
//! and so do operations on mismatched types (`'30' > 5`). Only a result of exactly `true`
//! lets a message through, so `Undefined` behaves as "no match" without being `false`
//! (`NOT undefined` is still `undefined`).

use std::cmp::Ordering;

/// The value of a condition expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    String(String),
}

impl Value {
    /// Whether a condition with this result routes the message.
    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    /// A number result, or `Undefined` for NaN/infinity (`1/0`, `sqrt(-1)`): edgeHub has
    /// no way to write those back as literals, and treating them as "no value" keeps
    /// comparisons with them from silently matching.
    pub(crate) fn number(n: f64) -> Value {
        if n.is_finite() {
            Value::Number(n)
        } else {
            Value::Undefined
        }
    }

    pub(crate) fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// Arithmetic operators, all on numbers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// Ordering operators; numbers compare numerically, strings ordinally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ordered {
    Lt,
    Le,
    Gt,
    Ge,
}

pub(crate) fn arith(op: Arith, a: &Value, b: &Value) -> Value {
    let (Some(x), Some(y)) = (a.as_number(), b.as_number()) else { return Value::Undefined };
    Value::number(match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => x / y,
        Arith::Rem => x % y,
    })
}

/// `||`: string concatenation; no implicit conversion of numbers.
pub(crate) fn concat(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Value::String(format!("{x}{y}")),
        _ => Value::Undefined,
    }
}

/// Orders two values of the same comparable type; `None` when the comparison is undefined.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

pub(crate) fn compare(op: Ordered, a: &Value, b: &Value) -> Value {
    let Some(ord) = order(a, b) else { return Value::Undefined };
    Value::Bool(match op {
        Ordered::Lt => ord == Ordering::Less,
        Ordered::Le => ord != Ordering::Greater,
        Ordered::Gt => ord == Ordering::Greater,
        Ordered::Ge => ord != Ordering::Less,
    })
}

/// `=`: defined only for two values of the same type (null = null is true);
/// anything involving `Undefined` or two different types is `Undefined`.
pub(crate) fn equals(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Null, Value::Null) => Value::Bool(true),
        (Value::Bool(x), Value::Bool(y)) => Value::Bool(x == y),
        (Value::Number(x), Value::Number(y)) => Value::Bool(x == y),
        (Value::String(x), Value::String(y)) => Value::Bool(x == y),
        _ => Value::Undefined,
    }
}

/// `!=` / `<>`: the negation of `=`, keeping `Undefined`.
pub(crate) fn not_equals(a: &Value, b: &Value) -> Value {
    not(&equals(a, b))
}

/// Kleene AND: false wins over undefined, true needs both sides true.
pub(crate) fn and(a: &Value, b: &Value) -> Value {
    match (a.as_bool(), b.as_bool()) {
        (Some(false), _) | (_, Some(false)) => Value::Bool(false),
        (Some(true), Some(true)) => Value::Bool(true),
        _ => Value::Undefined,
    }
}

/// Kleene OR: true wins over undefined, false needs both sides false.
pub(crate) fn or(a: &Value, b: &Value) -> Value {
    match (a.as_bool(), b.as_bool()) {
        (Some(true), _) | (_, Some(true)) => Value::Bool(true),
        (Some(false), Some(false)) => Value::Bool(false),
        _ => Value::Undefined,
    }
}

pub(crate) fn not(a: &Value) -> Value {
    match a.as_bool() {
        Some(b) => Value::Bool(!b),
        None => Value::Undefined,
    }
}

pub(crate) fn negate(a: &Value) -> Value {
    match a.as_number() {
        Some(n) => Value::Number(-n),
        None => Value::Undefined,
    }
}

/// `??`: the left side unless it is undefined (null counts as a value).
pub(crate) fn coalesce(a: Value, b: impl FnOnce() -> Value) -> Value {
    match a {
        Value::Undefined => b(),
        defined => defined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::String(x.to_string())
    }
    const T: Value = Value::Bool(true);
    const F: Value = Value::Bool(false);
    const U: Value = Value::Undefined;
    const N: Value = Value::Null;

    #[test]
    fn arithmetic_on_numbers_only() {
        let (a, b) = (Value::Number(7.0), Value::Number(2.0));
        assert_eq!(arith(Arith::Add, &a, &b), Value::Number(9.0));
        assert_eq!(arith(Arith::Sub, &a, &b), Value::Number(5.0));
        assert_eq!(arith(Arith::Mul, &a, &b), Value::Number(14.0));
        assert_eq!(arith(Arith::Div, &a, &b), Value::Number(3.5));
        assert_eq!(arith(Arith::Rem, &a, &b), Value::Number(1.0));
        assert_eq!(arith(Arith::Add, &s("7"), &b), U);
        assert_eq!(arith(Arith::Add, &U, &b), U);
        assert_eq!(arith(Arith::Add, &N, &b), U);
        assert_eq!(arith(Arith::Div, &a, &Value::Number(0.0)), U);
        assert_eq!(arith(Arith::Rem, &a, &Value::Number(0.0)), U);
    }

    #[test]
    fn concat_on_strings_only() {
        assert_eq!(concat(&s("ab"), &s("cd")), s("abcd"));
        assert_eq!(concat(&s("ab"), &Value::Number(1.0)), U);
        assert_eq!(concat(&U, &s("x")), U);
    }

    #[test]
    fn ordering() {
        let (one, two) = (Value::Number(1.0), Value::Number(2.0));
        assert_eq!(compare(Ordered::Lt, &one, &two), T);
        assert_eq!(compare(Ordered::Le, &two, &two), T);
        assert_eq!(compare(Ordered::Gt, &one, &two), F);
        assert_eq!(compare(Ordered::Ge, &two, &one), T);
        assert_eq!(compare(Ordered::Lt, &s("abc"), &s("abd")), T);
        assert_eq!(compare(Ordered::Gt, &s("B"), &s("a")), F, "ordinal, uppercase sorts first");
        assert_eq!(compare(Ordered::Gt, &s("31"), &Value::Number(30.0)), U);
        assert_eq!(compare(Ordered::Lt, &T, &F), U);
        assert_eq!(compare(Ordered::Lt, &U, &one), U);
        assert_eq!(compare(Ordered::Lt, &N, &N), U);
    }

    #[test]
    fn equality() {
        assert_eq!(equals(&Value::Number(1.0), &Value::Number(1.0)), T);
        assert_eq!(equals(&s("a"), &s("A")), F, "case-sensitive");
        assert_eq!(equals(&T, &T), T);
        assert_eq!(equals(&N, &N), T);
        assert_eq!(equals(&s("1"), &Value::Number(1.0)), U);
        assert_eq!(equals(&N, &s("x")), U);
        assert_eq!(equals(&U, &U), U);
        assert_eq!(not_equals(&s("a"), &s("b")), T);
        assert_eq!(not_equals(&s("a"), &s("a")), F);
        assert_eq!(not_equals(&U, &s("a")), U);
    }

    #[test]
    fn kleene_logic() {
        assert_eq!(and(&T, &T), T);
        assert_eq!(and(&T, &F), F);
        assert_eq!(and(&U, &F), F);
        assert_eq!(and(&U, &T), U);
        assert_eq!(and(&Value::Number(1.0), &T), U, "non-booleans are not truthy");
        assert_eq!(or(&F, &F), F);
        assert_eq!(or(&U, &T), T);
        assert_eq!(or(&U, &F), U);
        assert_eq!(or(&s("true"), &F), U);
        assert_eq!(not(&T), F);
        assert_eq!(not(&U), U);
        assert_eq!(not(&N), U);
    }

    #[test]
    fn negation_and_coalesce() {
        assert_eq!(negate(&Value::Number(2.0)), Value::Number(-2.0));
        assert_eq!(negate(&s("2")), U);
        assert_eq!(coalesce(U, || s("b")), s("b"));
        assert_eq!(coalesce(N, || s("b")), N);
        assert_eq!(coalesce(s("a"), || panic!("right side must not be evaluated")), s("a"));
    }

    #[test]
    fn only_true_is_true() {
        assert!(T.is_true());
        for v in [F, U, N, s("true"), Value::Number(1.0)] {
            assert!(!v.is_true(), "{v:?}");
        }
    }
}
