//! Body queries: `$body.a.b[0]` looks into a JSON message body.
//!
//! edgeHub only reads the body when the message says it is JSON text: content type exactly
//! `application/json` and content encoding utf-8/16/32 (both case-insensitive). Anything
//! else, an undecodable body, a missing path or a path that ends on an object or array
//! evaluates to `Undefined`, so a condition on it simply does not match.

use edgemodule_core::Message;
use serde_json::Value as Json;

use super::value::Value;

/// One step of a body path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Field(String),
    Index(usize),
}

/// A parsed `body...` path (the name after `$`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyPath {
    steps: Vec<Step>,
}

impl BodyPath {
    /// Whether a `$` name asks for the body rather than a system property.
    pub(crate) fn is_body_name(name: &str) -> bool {
        name == "body" || name.starts_with("body.") || name.starts_with("body[")
    }

    /// Parses `body`, `body.a.b`, `body.list[2].x`; `Err` says what is wrong.
    pub(crate) fn parse(name: &str) -> Result<BodyPath, String> {
        let mut rest = name.strip_prefix("body").ok_or("a body query starts with $body")?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            let (step, after) = parse_step(rest)?;
            steps.push(step);
            rest = after;
        }
        Ok(BodyPath { steps })
    }

    /// Runs the query against the message body; `json` caches the parsed body per evaluation.
    pub(crate) fn query(&self, json: Option<&Json>) -> Value {
        let mut node = match json {
            Some(node) => node,
            None => return Value::Undefined,
        };
        for step in &self.steps {
            let next = match step {
                Step::Field(name) => node.as_object().and_then(|o| o.get(name)),
                Step::Index(i) => node.as_array().and_then(|a| a.get(*i)),
            };
            match next {
                Some(n) => node = n,
                None => return Value::Undefined,
            }
        }
        scalar(node)
    }
}

/// One `.field` or `[index]` from the front of `rest`, and what follows it.
fn parse_step(rest: &str) -> Result<(Step, &str), String> {
    if let Some(field) = rest.strip_prefix('.') {
        let len = field.find(['.', '[', ']']).unwrap_or(field.len());
        if len == 0 {
            return Err("empty field name in body query".to_string());
        }
        return Ok((Step::Field(field[..len].to_string()), &field[len..]));
    }
    if let Some(index) = rest.strip_prefix('[') {
        let close = index.find(']').ok_or("missing ']' in body query")?;
        let digits = &index[..close];
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("array index '[{digits}]' in body query is not a number"));
        }
        let i = digits.parse().map_err(|_| "array index in body query is too large".to_string())?;
        return Ok((Step::Index(i), &index[close + 1..]));
    }
    Err(format!("unexpected '{rest}' in body query; expected '.field' or '[index]'"))
}

/// JSON scalars keep their type; objects and arrays are not values a condition can use.
fn scalar(node: &Json) -> Value {
    match node {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n.as_f64().map(Value::number).unwrap_or(Value::Undefined),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(_) | Json::Object(_) => Value::Undefined,
    }
}

/// The parsed body when the message qualifies for body queries, else `None`.
pub(crate) fn parse_json_body(msg: &Message) -> Option<Json> {
    let is_json = msg.content_type().is_some_and(|ct| ct.eq_ignore_ascii_case("application/json"));
    if !is_json {
        return None;
    }
    let text = decode(msg.body(), msg.content_encoding()?)?;
    serde_json::from_str(&text).ok()
}

/// Decodes the body text for the encodings edgeHub accepts; `None` for any other encoding
/// or bytes that are not valid in the declared one.
fn decode(body: &[u8], encoding: &str) -> Option<String> {
    match encoding.to_ascii_lowercase().as_str() {
        "utf-8" => decode_utf8(body),
        "utf-16" => decode_utf16(body),
        "utf-32" => decode_utf32(body),
        _ => None,
    }
}

fn decode_utf8(body: &[u8]) -> Option<String> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    std::str::from_utf8(body).ok().map(str::to_string)
}

/// UTF-16 as .NET's `Encoding.Unicode` writes it: little-endian unless a BOM says otherwise.
fn decode_utf16(body: &[u8]) -> Option<String> {
    let (big_endian, data) = match body {
        [0xFE, 0xFF, rest @ ..] => (true, rest),
        [0xFF, 0xFE, rest @ ..] => (false, rest),
        _ => (false, body),
    };
    if data.len() % 2 != 0 {
        return None;
    }
    let units = data.chunks_exact(2).map(|b| {
        let pair = [b[0], b[1]];
        if big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    });
    char::decode_utf16(units).collect::<Result<String, _>>().ok()
}

/// UTF-32, little-endian unless a BOM says otherwise.
fn decode_utf32(body: &[u8]) -> Option<String> {
    let (big_endian, data) = match body {
        [0x00, 0x00, 0xFE, 0xFF, rest @ ..] => (true, rest),
        [0xFF, 0xFE, 0x00, 0x00, rest @ ..] => (false, rest),
        _ => (false, body),
    };
    if data.len() % 4 != 0 {
        return None;
    }
    data.chunks_exact(4)
        .map(|b| {
            let quad = [b[0], b[1], b[2], b[3]];
            let code = if big_endian { u32::from_be_bytes(quad) } else { u32::from_le_bytes(quad) };
            char::from_u32(code)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_msg(body: impl Into<bytes::Bytes>, ct: &str, ce: &str) -> Message {
        Message::new(body).with_content_type(ct).with_content_encoding(ce)
    }

    fn query(path: &str, msg: &Message) -> Value {
        BodyPath::parse(path).unwrap().query(parse_json_body(msg).as_ref())
    }

    const DOC: &str = r#"{"a":{"b":[10,"x",true,null,{"c":1}]},"s":"str","n":-2.5,"dash-key":1}"#;

    #[test]
    fn parses_paths() {
        let p = BodyPath::parse("body.a.b[0].c").unwrap();
        assert_eq!(
            p.steps,
            vec![Step::Field("a".into()), Step::Field("b".into()), Step::Index(0), Step::Field("c".into())]
        );
        assert_eq!(BodyPath::parse("body").unwrap().steps, vec![]);
        assert_eq!(BodyPath::parse("body[1][2]").unwrap().steps, vec![Step::Index(1), Step::Index(2)]);
    }

    #[test]
    fn rejects_bad_paths() {
        assert!(BodyPath::parse("body.").unwrap_err().contains("empty field"));
        assert!(BodyPath::parse("body[x]").unwrap_err().contains("not a number"));
        assert!(BodyPath::parse("body[1").unwrap_err().contains("missing ']'"));
        assert!(BodyPath::parse("body]").unwrap_err().contains("unexpected"));
        assert!(BodyPath::parse("body[99999999999999999999999]").unwrap_err().contains("too large"));
        assert!(BodyPath::parse("other").is_err());
    }

    #[test]
    fn body_name_detection() {
        assert!(BodyPath::is_body_name("body.a"));
        assert!(BodyPath::is_body_name("body[0]"));
        assert!(BodyPath::is_body_name("body"));
        assert!(!BodyPath::is_body_name("bodyTemp"));
        assert!(!BodyPath::is_body_name("messageId"));
    }

    #[test]
    fn scalars_keep_their_json_type() {
        let msg = json_msg(DOC, "application/json", "utf-8");
        assert_eq!(query("body.a.b[0]", &msg), Value::Number(10.0));
        assert_eq!(query("body.a.b[1]", &msg), Value::String("x".into()));
        assert_eq!(query("body.a.b[2]", &msg), Value::Bool(true));
        assert_eq!(query("body.a.b[3]", &msg), Value::Null);
        assert_eq!(query("body.a.b[4].c", &msg), Value::Number(1.0));
        assert_eq!(query("body.n", &msg), Value::Number(-2.5));
        assert_eq!(query("body.s", &msg), Value::String("str".into()));
        assert_eq!(query("body.dash-key", &msg), Value::Number(1.0));
    }

    #[test]
    fn objects_arrays_and_missing_paths_are_undefined() {
        let msg = json_msg(DOC, "application/json", "utf-8");
        for path in ["body", "body.a", "body.a.b", "body.a.b[9]", "body.zz", "body.s.x", "body.s[0]", "body[0]"] {
            assert_eq!(query(path, &msg), Value::Undefined, "{path}");
        }
    }

    #[test]
    fn scalar_body_root() {
        let msg = json_msg("42", "application/json", "utf-8");
        assert_eq!(query("body", &msg), Value::Number(42.0));
    }

    #[test]
    fn content_type_and_encoding_gate_body_queries() {
        let ok = [("application/json", "utf-8"), ("APPLICATION/JSON", "UTF-8"), ("application/json", "Utf-8")];
        for (ct, ce) in ok {
            assert_eq!(query("body.s", &json_msg(DOC, ct, ce)), Value::String("str".into()), "{ct} {ce}");
        }
        let rejected = [
            ("application/json;charset=utf-8", "utf-8"),
            ("text/plain", "utf-8"),
            ("application/json", "utf8"),
            ("application/json", "ascii"),
            ("application/json", ""),
        ];
        for (ct, ce) in rejected {
            assert_eq!(query("body.s", &json_msg(DOC, ct, ce)), Value::Undefined, "{ct} {ce}");
        }
        assert_eq!(query("body.s", &Message::new(DOC)), Value::Undefined, "no content type at all");
        assert_eq!(query("body.s", &Message::new(DOC).with_content_type("application/json")), Value::Undefined);
    }

    #[test]
    fn invalid_json_or_bytes_are_undefined() {
        assert_eq!(query("body.s", &json_msg("{not json", "application/json", "utf-8")), Value::Undefined);
        assert_eq!(query("body.s", &json_msg(&b"\xFF\xFE"[..], "application/json", "utf-8")), Value::Undefined);
    }

    fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if bom {
            out.extend(if big_endian { [0xFE, 0xFF] } else { [0xFF, 0xFE] });
        }
        for unit in text.encode_utf16() {
            out.extend(if big_endian { unit.to_be_bytes() } else { unit.to_le_bytes() });
        }
        out
    }

    fn utf32(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if bom {
            out.extend(if big_endian { [0, 0, 0xFE, 0xFF] } else { [0xFF, 0xFE, 0, 0] });
        }
        for c in text.chars() {
            out.extend(if big_endian { (c as u32).to_be_bytes() } else { (c as u32).to_le_bytes() });
        }
        out
    }

    #[test]
    fn decodes_utf16_and_utf32() {
        let doc = r#"{"s":"é😀"}"#;
        let want = Value::String("é😀".into());
        for (be, bom) in [(false, false), (false, true), (true, true)] {
            let m16 = json_msg(utf16(doc, be, bom), "application/json", "utf-16");
            assert_eq!(query("body.s", &m16), want, "utf-16 be={be} bom={bom}");
            let m32 = json_msg(utf32(doc, be, bom), "application/json", "UTF-32");
            assert_eq!(query("body.s", &m32), want, "utf-32 be={be} bom={bom}");
        }
        let bom8 = [b"\xEF\xBB\xBF".as_slice(), doc.as_bytes()].concat();
        assert_eq!(query("body.s", &json_msg(bom8, "application/json", "utf-8")), want);
    }

    #[test]
    fn bad_utf16_and_utf32_are_undefined() {
        assert_eq!(decode_utf16(&[0x41]), None, "odd length");
        assert_eq!(decode_utf16(&[0x00, 0xD8]), None, "lone surrogate");
        assert_eq!(decode_utf32(&[0x41, 0, 0]), None, "not a multiple of 4");
        assert_eq!(decode_utf32(&[0, 0xD8, 0, 0]), None, "surrogate code point");
        assert_eq!(decode_utf32(&[0xFF, 0xFF, 0xFF, 0xFF]), None, "beyond U+10FFFF");
    }
}
