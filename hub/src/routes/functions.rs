//! Built-in functions of the condition language: names, arities and what they compute.
//!
//! Functions are resolved while parsing, so an unknown name or a wrong argument count is
//! a deployment error instead of a route that silently never matches. At run time every
//! function follows the same rule as the operators: wrong argument types give `Undefined`.

use super::value::Value;

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Abs,
    Exp,
    Power,
    Square,
    Ceiling,
    Floor,
    Sign,
    Sqrt,
    AsNumber,
    IsBool,
    IsDefined,
    IsNull,
    IsNumber,
    IsString,
    Concat,
    Length,
    Lower,
    Upper,
    Substring,
    IndexOf,
    StartsWith,
    EndsWith,
    Contains,
    TwinChangeIncludes,
}

use Function::*;

/// Every function with its lower-case name, for lookup and error messages.
const TABLE: [(&str, Function); 24] = [
    ("abs", Abs),
    ("exp", Exp),
    ("power", Power),
    ("square", Square),
    ("ceiling", Ceiling),
    ("floor", Floor),
    ("sign", Sign),
    ("sqrt", Sqrt),
    ("as_number", AsNumber),
    ("is_bool", IsBool),
    ("is_defined", IsDefined),
    ("is_null", IsNull),
    ("is_number", IsNumber),
    ("is_string", IsString),
    ("concat", Concat),
    ("length", Length),
    ("lower", Lower),
    ("upper", Upper),
    ("substring", Substring),
    ("index_of", IndexOf),
    ("starts_with", StartsWith),
    ("ends_with", EndsWith),
    ("contains", Contains),
    ("twin_change_includes", TwinChangeIncludes),
];

impl Function {
    /// Looks a function up by name, ignoring ASCII case.
    pub(crate) fn by_name(name: &str) -> Option<Function> {
        TABLE.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, f)| *f)
    }

    pub(crate) fn name(self) -> &'static str {
        TABLE.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// Minimum and maximum argument count (`None` = no maximum).
    pub(crate) fn arity(self) -> (usize, Option<usize>) {
        match self {
            Power | IndexOf | StartsWith | EndsWith | Contains => (2, Some(2)),
            Substring => (2, Some(3)),
            Concat => (2, None),
            TwinChangeIncludes => (1, None),
            _ => (1, Some(1)),
        }
    }

    /// Checks an argument count; `Err` is the message for the parse error.
    pub(crate) fn check_arity(self, count: usize) -> Result<(), String> {
        let (min, max) = self.arity();
        if count >= min && max.is_none_or(|max| count <= max) {
            return Ok(());
        }
        let expected = match max {
            Some(max) if max == min => format!("{min}"),
            Some(max) => format!("{min} to {max}"),
            None => format!("at least {min}"),
        };
        let plural = if expected == "1" { "" } else { "s" };
        Err(format!("function '{}' takes {expected} argument{plural}, got {count}", self.name()))
    }

    /// Applies the function to already evaluated arguments (arity was checked when parsing).
    pub(crate) fn call(self, args: &[Value]) -> Value {
        let arg = |i: usize| args.get(i).unwrap_or(&Value::Undefined);
        match self {
            Abs | Exp | Square | Ceiling | Floor | Sign | Sqrt => math1(self, arg(0)),
            Power => match (arg(0).as_number(), arg(1).as_number()) {
                (Some(base), Some(exp)) => Value::number(base.powf(exp)),
                _ => Value::Undefined,
            },
            AsNumber => as_number(arg(0)),
            IsBool => Value::Bool(matches!(arg(0), Value::Bool(_))),
            IsDefined => Value::Bool(!matches!(arg(0), Value::Undefined)),
            IsNull => Value::Bool(matches!(arg(0), Value::Null)),
            IsNumber => Value::Bool(matches!(arg(0), Value::Number(_))),
            IsString => Value::Bool(matches!(arg(0), Value::String(_))),
            Concat => concat_all(args),
            Length | Lower | Upper => string1(self, arg(0)),
            Substring => substring(arg(0), arg(1), args.get(2)),
            IndexOf | StartsWith | EndsWith | Contains => string2(self, arg(0), arg(1)),
            // Twin change notifications carry no routable body here; like edgeHub on a
            // message that is not a twin change, the function has no value.
            TwinChangeIncludes => Value::Undefined,
        }
    }
}

fn math1(f: Function, v: &Value) -> Value {
    let Some(x) = v.as_number() else { return Value::Undefined };
    Value::number(match f {
        Abs => x.abs(),
        Exp => x.exp(),
        Square => x * x,
        Ceiling => x.ceil(),
        Floor => x.floor(),
        Sign => sign(x),
        _ => x.sqrt(),
    })
}

/// -1, 0 or 1; `f64::signum` would give 1 for +0.0.
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Numbers pass through; strings are parsed (surrounding whitespace allowed, like .NET's
/// invariant double parsing); anything unparseable or not finite is `Undefined`.
fn as_number(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::Number(*n),
        Value::String(s) => {
            let t = s.trim();
            // Rust also accepts "inf"/"nan"; those are words, not numbers, in a condition.
            if t.chars().any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E')) {
                return Value::Undefined;
            }
            t.parse::<f64>().map(Value::number).unwrap_or(Value::Undefined)
        }
        _ => Value::Undefined,
    }
}

fn concat_all(args: &[Value]) -> Value {
    let mut out = String::new();
    for a in args {
        match a.as_str() {
            Some(s) => out.push_str(s),
            None => return Value::Undefined,
        }
    }
    Value::String(out)
}

fn string1(f: Function, v: &Value) -> Value {
    let Some(s) = v.as_str() else { return Value::Undefined };
    match f {
        Length => Value::Number(s.chars().count() as f64),
        Lower => Value::String(s.to_lowercase()),
        _ => Value::String(s.to_uppercase()),
    }
}

fn string2(f: Function, a: &Value, b: &Value) -> Value {
    let (Some(s), Some(t)) = (a.as_str(), b.as_str()) else { return Value::Undefined };
    match f {
        IndexOf => Value::Number(index_of(s, t)),
        StartsWith => Value::Bool(s.starts_with(t)),
        EndsWith => Value::Bool(s.ends_with(t)),
        _ => Value::Bool(s.contains(t)),
    }
}

/// Zero-based character index of `t` in `s`, or -1.
fn index_of(s: &str, t: &str) -> f64 {
    match s.find(t) {
        Some(byte) => s[..byte].chars().count() as f64,
        None => -1.0,
    }
}

/// `substring(s, start[, length])` in characters, zero-based. A negative or fractional
/// start/length is `Undefined`; ranges past the end are clamped, so it never fails.
fn substring(s: &Value, start: &Value, length: Option<&Value>) -> Value {
    let Some(s) = s.as_str() else { return Value::Undefined };
    let Some(start) = start.as_number().and_then(count) else { return Value::Undefined };
    let take = match length {
        None => usize::MAX,
        Some(len) => match len.as_number().and_then(count) {
            Some(n) => n,
            None => return Value::Undefined,
        },
    };
    Value::String(s.chars().skip(start).take(take).collect())
}

/// A non-negative whole number as a count; saturates on huge values.
fn count(n: f64) -> Option<usize> {
    (n >= 0.0 && n.fract() == 0.0).then_some(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(x: f64) -> Value {
        Value::Number(x)
    }
    fn s(x: &str) -> Value {
        Value::String(x.to_string())
    }
    fn b(x: bool) -> Value {
        Value::Bool(x)
    }
    const U: Value = Value::Undefined;

    fn call(name: &str, args: &[Value]) -> Value {
        let f = Function::by_name(name).unwrap();
        f.check_arity(args.len()).unwrap();
        f.call(args)
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(Function::by_name("UPPER"), Some(Upper));
        assert_eq!(Function::by_name("Is_Defined"), Some(IsDefined));
        assert_eq!(Function::by_name("nope"), None);
        for (name, f) in TABLE {
            assert_eq!(f.name(), name);
        }
    }

    #[test]
    fn arity_messages() {
        assert_eq!(Abs.check_arity(2).unwrap_err(), "function 'abs' takes 1 argument, got 2");
        assert_eq!(Power.check_arity(1).unwrap_err(), "function 'power' takes 2 arguments, got 1");
        assert_eq!(Substring.check_arity(4).unwrap_err(), "function 'substring' takes 2 to 3 arguments, got 4");
        assert_eq!(Concat.check_arity(1).unwrap_err(), "function 'concat' takes at least 2 arguments, got 1");
        assert!(Concat.check_arity(5).is_ok());
        assert!(TwinChangeIncludes.check_arity(0).is_err());
    }

    #[test]
    fn math() {
        assert_eq!(call("abs", &[n(-3.5)]), n(3.5));
        assert_eq!(call("exp", &[n(0.0)]), n(1.0));
        assert_eq!(call("power", &[n(2.0), n(10.0)]), n(1024.0));
        assert_eq!(call("square", &[n(-4.0)]), n(16.0));
        assert_eq!(call("ceiling", &[n(1.2)]), n(2.0));
        assert_eq!(call("ceiling", &[n(-1.2)]), n(-1.0));
        assert_eq!(call("floor", &[n(1.8)]), n(1.0));
        assert_eq!(call("floor", &[n(-1.2)]), n(-2.0));
        assert_eq!(call("sign", &[n(-7.0)]), n(-1.0));
        assert_eq!(call("sign", &[n(0.0)]), n(0.0));
        assert_eq!(call("sign", &[n(3.0)]), n(1.0));
        assert_eq!(call("sqrt", &[n(9.0)]), n(3.0));
        assert_eq!(call("sqrt", &[n(-1.0)]), U, "NaN is no value");
        assert_eq!(call("exp", &[n(1000.0)]), U, "overflow is no value");
        for f in ["abs", "exp", "square", "ceiling", "floor", "sign", "sqrt"] {
            assert_eq!(call(f, &[s("4")]), U, "{f} on a string");
            assert_eq!(call(f, &[U]), U, "{f} on undefined");
        }
        assert_eq!(call("power", &[s("2"), n(2.0)]), U);
    }

    #[test]
    fn as_number_parses_strings() {
        assert_eq!(call("as_number", &[s("42")]), n(42.0));
        assert_eq!(call("as_number", &[s(" -1.5e2 ")]), n(-150.0));
        assert_eq!(call("as_number", &[n(3.0)]), n(3.0));
        for bad in ["", "abc", "12x", "inf", "NaN", "infinity", "0x10", "1e999"] {
            assert_eq!(call("as_number", &[s(bad)]), U, "{bad:?}");
        }
        assert_eq!(call("as_number", &[b(true)]), U);
        assert_eq!(call("as_number", &[Value::Null]), U);
        assert_eq!(call("as_number", &[U]), U);
    }

    #[test]
    fn type_checks_are_always_defined() {
        let all = [U, Value::Null, b(true), n(1.0), s("x")];
        let expect = [
            ("is_bool", [false, false, true, false, false]),
            ("is_defined", [false, true, true, true, true]),
            ("is_null", [false, true, false, false, false]),
            ("is_number", [false, false, false, true, false]),
            ("is_string", [false, false, false, false, true]),
        ];
        for (f, wants) in expect {
            for (v, want) in all.iter().zip(wants) {
                assert_eq!(call(f, std::slice::from_ref(v)), b(want), "{f}({v:?})");
            }
        }
    }

    #[test]
    fn strings() {
        assert_eq!(call("concat", &[s("a"), s("b"), s("c")]), s("abc"));
        assert_eq!(call("concat", &[s("a"), n(1.0)]), U);
        assert_eq!(call("length", &[s("héllo")]), n(5.0), "characters, not bytes");
        assert_eq!(call("length", &[n(5.0)]), U);
        assert_eq!(call("lower", &[s("AbC")]), s("abc"));
        assert_eq!(call("upper", &[s("AbC")]), s("ABC"));
        assert_eq!(call("upper", &[U]), U);
        assert_eq!(call("index_of", &[s("héllo"), s("l")]), n(2.0));
        assert_eq!(call("index_of", &[s("hello"), s("z")]), n(-1.0));
        assert_eq!(call("starts_with", &[s("sensor-1"), s("sensor")]), b(true));
        assert_eq!(call("starts_with", &[s("sensor-1"), s("Sensor")]), b(false));
        assert_eq!(call("ends_with", &[s("sensor-1"), s("-1")]), b(true));
        assert_eq!(call("contains", &[s("sensor-1"), s("sor")]), b(true));
        assert_eq!(call("contains", &[s("sensor-1"), n(1.0)]), U);
    }

    #[test]
    fn substring_clamps_and_rejects_bad_numbers() {
        assert_eq!(call("substring", &[s("héllo"), n(1.0), n(3.0)]), s("éll"));
        assert_eq!(call("substring", &[s("hello"), n(2.0)]), s("llo"));
        assert_eq!(call("substring", &[s("hello"), n(3.0), n(99.0)]), s("lo"));
        assert_eq!(call("substring", &[s("hello"), n(99.0)]), s(""));
        assert_eq!(call("substring", &[s("hello"), n(1e300)]), s(""));
        assert_eq!(call("substring", &[s("hello"), n(-1.0)]), U);
        assert_eq!(call("substring", &[s("hello"), n(1.5)]), U);
        assert_eq!(call("substring", &[s("hello"), n(0.0), n(-2.0)]), U);
        assert_eq!(call("substring", &[n(1.0), n(0.0)]), U);
    }

    #[test]
    fn twin_change_includes_has_no_value() {
        assert_eq!(call("twin_change_includes", &[s("properties.reported.x")]), U);
    }
}
