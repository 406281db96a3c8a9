//! Route sinks: `INTO $upstream` or `INTO BrokeredEndpoint("/modules/{m}/inputs/{i}")`.
//!
//! Only these two forms exist on edgeHub; anything else is rejected when the route is
//! parsed, so a typo in a deployment fails loudly instead of dropping messages.

use std::fmt;

use super::error::RouteError;
use super::lexer::{Cursor, Tok};

/// Where a route delivers matching messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sink {
    /// IoT Hub (or the parent edge device in nested edge).
    Upstream,
    /// Another module's input.
    ModuleInput { module: String, input: String },
}

impl fmt::Display for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Upstream => f.write_str("$upstream"),
            Sink::ModuleInput { module, input } => write!(f, "BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")"),
        }
    }
}

const EXPECTED: &str = "a sink: $upstream or BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")";

/// Parses the sink at the cursor (the tokens after INTO).
pub(crate) fn parse_sink(cursor: &mut Cursor<'_>) -> Result<Sink, RouteError> {
    let token = cursor.peek();
    match &token.tok {
        Tok::Dollar(name) if name.eq_ignore_ascii_case("upstream") => {
            cursor.advance();
            Ok(Sink::Upstream)
        }
        Tok::Ident(name) if name.eq_ignore_ascii_case("brokeredendpoint") => {
            cursor.advance();
            brokered_endpoint(cursor)
        }
        _ => Err(cursor.expected(EXPECTED)),
    }
}

/// `("...")` after the function name.
fn brokered_endpoint(cursor: &mut Cursor<'_>) -> Result<Sink, RouteError> {
    cursor.expect(&Tok::LParen, "'(' after BrokeredEndpoint")?;
    let token = cursor.peek();
    let Tok::Str(address) = &token.tok else {
        return Err(cursor.expected("a quoted endpoint address like \"/modules/{module}/inputs/{input}\""));
    };
    cursor.advance();
    cursor.expect(&Tok::RParen, "')' after the endpoint address")?;
    module_input(address).map_err(|message| RouteError::at(token.pos, message))
}

/// `/modules/{m}/inputs/{i}` with leading and trailing `/` ignored.
fn module_input(address: &str) -> Result<Sink, String> {
    let parts: Vec<&str> = address.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [modules, module, inputs, input]
            if modules.eq_ignore_ascii_case("modules")
                && inputs.eq_ignore_ascii_case("inputs")
                && !module.is_empty()
                && !input.is_empty() =>
        {
            Ok(Sink::ModuleInput { module: module.to_string(), input: input.to_string() })
        }
        _ => Err(format!("invalid endpoint address '{address}': expected \"/modules/{{module}}/inputs/{{input}}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parse(text: &str) -> Result<Sink, RouteError> {
        let tokens = tokenize(text, 0)?;
        parse_sink(&mut Cursor::new(&tokens))
    }

    fn input(m: &str, i: &str) -> Sink {
        Sink::ModuleInput { module: m.into(), input: i.into() }
    }

    #[test]
    fn upstream_any_case() {
        assert_eq!(parse("$upstream").unwrap(), Sink::Upstream);
        assert_eq!(parse("$UpStream").unwrap(), Sink::Upstream);
    }

    #[test]
    fn brokered_endpoint_forms() {
        assert_eq!(parse(r#"BrokeredEndpoint("/modules/filter/inputs/input1")"#).unwrap(), input("filter", "input1"));
        assert_eq!(parse("brokeredendpoint('/modules/filter/inputs/input1')").unwrap(), input("filter", "input1"));
        assert_eq!(parse(r#"BROKEREDENDPOINT ( "modules/Filter/inputs/In/" )"#).unwrap(), input("Filter", "In"));
        assert_eq!(parse(r#"BrokeredEndpoint("//modules/f/INPUTS/i//")"#).unwrap(), input("f", "i"));
    }

    #[test]
    fn rejected_sinks() {
        let cases = [
            ("$downstream", "expected a sink"),
            ("upstream", "expected a sink"),
            ("", "expected a sink"),
            ("Endpoint('/modules/f/inputs/i')", "expected a sink"),
            ("BrokeredEndpoint", "expected '(' after BrokeredEndpoint"),
            ("BrokeredEndpoint(/modules/f/inputs/i)", "expected a quoted endpoint address"),
            ("BrokeredEndpoint('/modules/f/inputs/i'", "expected ')' after the endpoint address"),
            ("BrokeredEndpoint('/modules/f/inputs')", "invalid endpoint address '/modules/f/inputs'"),
            ("BrokeredEndpoint('/modules/f/inputs/i/x')", "invalid endpoint address"),
            ("BrokeredEndpoint('/modules//inputs/i')", "invalid endpoint address"),
            ("BrokeredEndpoint('/devices/f/inputs/i')", "invalid endpoint address"),
            ("BrokeredEndpoint('/modules/f/outputs/i')", "invalid endpoint address"),
            ("BrokeredEndpoint('')", "invalid endpoint address"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.message().starts_with(want), "{text}: {}", e.message());
        }
    }

    #[test]
    fn display_round_trips() {
        for sink in [Sink::Upstream, input("filter", "in1")] {
            assert_eq!(parse(&sink.to_string()).unwrap(), sink);
        }
    }
}
