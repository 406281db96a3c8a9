//! The route statement: `[SELECT *] FROM <source> [WHERE <condition>] INTO <sink>`.
//!
//! The head up to the source path is scanned by hand because a path like `/*` would
//! otherwise read as a comment and `/`/`*` as operators. Everything after the path goes
//! through the lexer, whose tokens carry offsets into the whole route text.

use super::condition::{Condition, MAX_ROUTE_LEN};
use super::error::RouteError;
use super::expr_parser::parse_condition;
use super::lexer::{skip_trivia, tokenize, Cursor, Tok};
use super::sink::{parse_sink, Sink};
use super::source::Source;

/// The three parts of a parsed route statement.
#[derive(Debug)]
pub(crate) struct Statement {
    pub source: Source,
    pub condition: Option<Condition>,
    pub sink: Sink,
}

/// Parses a route statement; error offsets are byte offsets into `text`.
pub(crate) fn parse_statement(text: &str) -> Result<Statement, RouteError> {
    if text.len() > MAX_ROUTE_LEN {
        return Err(RouteError::general(format!("route is longer than {MAX_ROUTE_LEN} bytes")));
    }
    let (source, after_source) = parse_head(text)?;
    let tokens = tokenize(text, after_source)?;
    let mut cursor = Cursor::new(&tokens);
    let condition = parse_where(text, &mut cursor)?;
    if !cursor.eat_word("into") {
        let what = if condition.is_some() { "an operator or INTO" } else { "WHERE or INTO" };
        return Err(cursor.expected(what));
    }
    let sink = parse_sink(&mut cursor)?;
    if cursor.peek().tok != Tok::Eof {
        return Err(cursor.expected("end of route after the sink"));
    }
    Ok(Statement { source, condition, sink })
}

/// `[SELECT *] FROM <path>`; returns the source and the offset just after the path.
fn parse_head(text: &str) -> Result<(Source, usize), RouteError> {
    let mut pos = skip_trivia(text, 0)?;
    let (word, end) = read_word(text, pos);
    if word.eq_ignore_ascii_case("select") {
        pos = skip_trivia(text, end)?;
        if !text[pos..].starts_with('*') {
            return Err(found(text, pos, "'*' after SELECT"));
        }
        pos = skip_trivia(text, pos + 1)?;
    }
    let (word, end) = read_word(text, pos);
    if !word.eq_ignore_ascii_case("from") {
        return Err(found(text, pos, "FROM"));
    }
    // Only whitespace here: a comment would be indistinguishable from the path `/*`.
    let start = end + (text[end..].len() - text[end..].trim_start().len());
    let len = text[start..].find(char::is_whitespace).unwrap_or(text.len() - start);
    if len == 0 {
        return Err(found(text, start, "a source path after FROM"));
    }
    let source = Source::parse(&text[start..start + len], start)?;
    Ok((source, start + len))
}

/// The ASCII letters starting at `pos`, and the offset after them.
fn read_word(text: &str, pos: usize) -> (&str, usize) {
    let rest = &text[pos..];
    let len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
    (&rest[..len], pos + len)
}

/// "expected X, found 'Y'" for the hand-scanned head, quoting the next word.
fn found(text: &str, pos: usize, what: &str) -> RouteError {
    let rest = &text[pos..];
    let next: String = rest.split_whitespace().next().unwrap_or("").chars().take(20).collect();
    let found = if next.is_empty() { "end of input".to_string() } else { format!("'{next}'") };
    RouteError::at(pos, format!("expected {what}, found {found}"))
}

/// `WHERE <condition>` if present; the condition keeps its own text for diagnostics.
fn parse_where(text: &str, cursor: &mut Cursor<'_>) -> Result<Option<Condition>, RouteError> {
    if !cursor.eat_word("where") {
        return Ok(None);
    }
    let start = cursor.peek().pos;
    let expr = parse_condition(cursor)?;
    let end = cursor.peek().pos.max(start);
    let condition_text = text.get(start..end).unwrap_or_default().trim();
    Ok(Some(Condition::new(condition_text, expr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Statement {
        parse_statement(text).unwrap_or_else(|e| panic!("{text}: {}", e.in_text(text)))
    }

    fn err(text: &str) -> (String, Option<usize>) {
        let e = parse_statement(text).unwrap_err().in_text(text);
        (e.message().to_string(), e.column())
    }

    #[test]
    fn minimal_and_full_forms() {
        let s = ok("FROM /* INTO $upstream");
        assert_eq!(s.source.prefix(), "/");
        assert!(s.condition.is_none());
        assert_eq!(s.sink, Sink::Upstream);

        let s = ok("SELECT * FROM /messages/modules/sensor/outputs/temp WHERE $body.t > 30 INTO BrokeredEndpoint(\"/modules/filter/inputs/in1\")");
        assert_eq!(s.source.text(), "/messages/modules/sensor/outputs/temp");
        assert_eq!(s.condition.unwrap().text(), "$body.t > 30");
        assert_eq!(s.sink, Sink::ModuleInput { module: "filter".into(), input: "in1".into() });
    }

    #[test]
    fn keywords_any_case_and_free_spacing() {
        let s = ok("  select  *  from /messages/*  where a = 'x'  into  $UPSTREAM  ");
        assert_eq!(s.condition.unwrap().text(), "a = 'x'");
        ok("SELECT*FROM /* INTO $upstream");
        ok("From /* Into $upstream");
        ok("FROM\t/*\nINTO\n$upstream");
        ok("/* lead */ FROM /* /* c */ INTO /* c */ $upstream /* trailing */");
    }

    #[test]
    fn into_inside_strings_is_not_a_keyword() {
        let s = ok("FROM /* WHERE a = ' INTO $upstream ' INTO $upstream");
        assert_eq!(s.condition.unwrap().text(), "a = ' INTO $upstream '");
    }

    #[test]
    fn malformed_routes_explain_themselves() {
        let cases: &[(&str, &str, usize)] = &[
            ("", "expected FROM, found end of input", 1),
            ("   ", "expected FROM, found end of input", 4),
            ("TO /* INTO $upstream", "expected FROM, found 'TO'", 1),
            ("SELECT FROM /* INTO $upstream", "expected '*' after SELECT, found 'FROM'", 8),
            ("SELECT a FROM /* INTO $upstream", "expected '*' after SELECT, found 'a'", 8),
            ("FROM", "expected a source path after FROM, found end of input", 5),
            ("FROM  INTO $upstream", "expected a source path starting with '/' after FROM", 7),
            ("FROM /*", "expected WHERE or INTO, found end of input", 8),
            ("FROM /* $upstream", "expected WHERE or INTO, found '$upstream'", 9),
            ("FROM /* WHERE INTO $upstream", "expected an expression, found 'INTO'", 15),
            ("FROM /* WHERE a = 1 $upstream", "expected an operator or INTO, found '$upstream'", 21),
            ("FROM /* WHERE a = 1", "expected an operator or INTO, found end of input", 20),
            ("FROM /* INTO", "expected a sink: $upstream or BrokeredEndpoint(\"/modules/{module}/inputs/{input}\"), found end of input", 13),
            ("FROM /* INTO $upstream extra", "expected end of route after the sink, found 'extra'", 24),
            ("FROM /* INTO $upstream INTO $upstream", "expected end of route after the sink, found 'INTO'", 24),
            ("FROM /messages/ INTO $upstream", "expected a source item ('*' or a name) after '/'", 16),
            ("FROM /* WHERE 'abc INTO $upstream", "unterminated string: missing closing '", 15),
            ("FROM /* WHERE a = 1 /* x INTO $upstream", "unterminated comment: '/*' without '*/'", 21),
            ("FROM /* WHERE nope(1) INTO $upstream", "unknown function 'nope'", 15),
        ];
        for (text, message, column) in cases {
            assert_eq!(err(text), (message.to_string(), Some(*column)), "{text}");
        }
    }

    #[test]
    fn overlong_route_is_rejected() {
        let text = format!("FROM /* WHERE a = '{}' INTO $upstream", "x".repeat(MAX_ROUTE_LEN));
        assert_eq!(err(&text).0, format!("route is longer than {MAX_ROUTE_LEN} bytes"));
    }

    #[test]
    fn source_path_stops_at_whitespace() {
        let s = ok("FROM /messages/modules/a/outputs/b INTO $upstream");
        assert_eq!(s.source.prefix(), "/messages/modules/a/outputs/b/");
        assert!(parse_statement("FROM /messages/*WHERE a INTO $upstream").is_err());
    }
}
