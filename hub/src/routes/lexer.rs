//! Lexer for the part of a route after its source: the WHERE condition and the INTO sink.
//!
//! The source path is scanned separately (see `parser.rs`) because `/` and `*` mean path
//! separators there but operators here. Every token keeps the byte offset of its first
//! character in the *whole* route text, so errors point at the right column.

use super::error::RouteError;

/// One lexical element of a condition or sink.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A bare word: property name, keyword (AND, OR, NOT, WHERE, INTO, literals) or function.
    Ident(String),
    /// `$name`, without the `$`; `$body.a[0]` keeps its whole path.
    Dollar(String),
    /// `{$name}`, without the braces and the `$`.
    Braced(String),
    /// A string literal with its escapes already decoded.
    Str(String),
    Num(f64),
    LParen,
    RParen,
    Comma,
    /// Only meaningful inside `twin_change_includes(properties.reported.x)`.
    Dot,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    /// `||`, string concatenation.
    Concat,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    /// `!=` or `<>`.
    Ne,
    /// `??`, coalesce.
    Coalesce,
    Eof,
}

impl Tok {
    /// How the token reads in an error message ("found ...").
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Dollar(s) => format!("'${s}'"),
            Tok::Braced(s) => format!("'{{${s}}}'"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Num(n) => format!("number {n}"),
            Tok::Eof => "end of input".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Dot => ".",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Concat => "||",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Eq => "=",
            Tok::Ne => "!=",
            Tok::Coalesce => "??",
            _ => "?",
        }
    }

    /// Whether this is the bare word `word`, ignoring ASCII case (keywords are case-insensitive).
    pub(crate) fn is_word(&self, word: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }
}

/// A token and the byte offset where it starts in the route text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Tokenizes `text[start..]`; the result always ends with `Tok::Eof`.
pub(crate) fn tokenize(text: &str, start: usize) -> Result<Vec<Token>, RouteError> {
    let mut lexer = Lexer { text, pos: start };
    let mut out = Vec::new();
    loop {
        lexer.pos = skip_trivia(text, lexer.pos)?;
        let pos = lexer.pos;
        let tok = lexer.next_token()?;
        let done = tok == Tok::Eof;
        out.push(Token { tok, pos });
        if done {
            return Ok(out);
        }
    }
}

/// Skips whitespace and `/* ... */` comments starting at `pos`; returns the next offset.
pub(crate) fn skip_trivia(text: &str, mut pos: usize) -> Result<usize, RouteError> {
    loop {
        let rest = &text[pos..];
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if !trimmed.starts_with("/*") {
            return Ok(pos);
        }
        match trimmed[2..].find("*/") {
            Some(end) => pos += 2 + end + 2,
            None => return Err(RouteError::at(pos, "unterminated comment: '/*' without '*/'")),
        }
    }
}

/// Characters allowed in bare identifiers after the first one.
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn next_token(&mut self) -> Result<Tok, RouteError> {
        let Some(c) = self.peek() else { return Ok(Tok::Eof) };
        match c {
            '"' | '\'' => self.string(c),
            '$' => self.dollar(),
            '{' => self.braced(),
            c if c.is_ascii_digit() => self.number(),
            '.' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(),
            c if is_ident_start(c) => Ok(Tok::Ident(self.take_while(is_ident_char))),
            _ => self.operator(c),
        }
    }

    /// Consumes characters while `keep` holds and returns them.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let rest = self.rest();
        let len = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        let word = rest[..len].to_string();
        self.pos += len;
        word
    }

    fn operator(&mut self, c: char) -> Result<Tok, RouteError> {
        // Two-character operators first, so `<=` is not read as `<` then `=`.
        let two = match self.rest().get(..2) {
            Some("<=") => Some(Tok::Le),
            Some(">=") => Some(Tok::Ge),
            Some("!=") | Some("<>") => Some(Tok::Ne),
            Some("||") => Some(Tok::Concat),
            Some("??") => Some(Tok::Coalesce),
            _ => None,
        };
        if let Some(tok) = two {
            self.pos += 2;
            return Ok(tok);
        }
        let one = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            '+' => Tok::Plus,
            '-' => Tok::Minus,
            '*' => Tok::Star,
            '/' => Tok::Slash,
            '%' => Tok::Percent,
            '<' => Tok::Lt,
            '>' => Tok::Gt,
            '=' => Tok::Eq,
            _ => return Err(RouteError::at(self.pos, format!("unexpected character '{c}'"))),
        };
        self.pos += c.len_utf8();
        Ok(one)
    }

    /// `$name`. Besides identifier characters the name may contain `-` before a letter
    /// (`$dt-subject`, `$iothub-interface-id`), so `$a - 1` and `$a-1` still subtract,
    /// and `.field` / `[n]` parts so body queries like `$body.a.b[0]` are one token.
    fn dollar(&mut self) -> Result<Tok, RouteError> {
        let start = self.pos;
        self.pos += 1;
        let mut name = String::new();
        while let Some(c) = self.peek() {
            let next = self.peek_at(1);
            let continues = is_ident_char(c)
                || (c == '-' && next.is_some_and(|n| n.is_ascii_alphabetic()))
                || (c == '.' && next.is_some_and(is_ident_char))
                || c == '['
                || c == ']';
            if !continues {
                break;
            }
            name.push(c);
            self.pos += c.len_utf8();
        }
        if name.is_empty() {
            return Err(RouteError::at(start, "expected a name after '$'"));
        }
        Ok(Tok::Dollar(name))
    }

    /// `{$name}`: everything up to `}` is the name, so any system name can be spelled.
    fn braced(&mut self) -> Result<Tok, RouteError> {
        let start = self.pos;
        if !self.rest().starts_with("{$") {
            return Err(RouteError::at(start, "expected '{$name}'"));
        }
        let Some(end) = self.rest().find('}') else {
            return Err(RouteError::at(start, "unterminated '{$': missing '}'"));
        };
        let name = self.rest()[2..end].to_string();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '{' || c == '$') {
            return Err(RouteError::at(start, format!("invalid name in '{{${name}}}'")));
        }
        self.pos += end + 1;
        Ok(Tok::Braced(name))
    }

    fn number(&mut self) -> Result<Tok, RouteError> {
        let start = self.pos;
        let rest = self.rest();
        if rest.starts_with("0x") || rest.starts_with("0X") {
            return self.hex_number(start);
        }
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let mut len = digits(rest);
        if rest[len..].starts_with('.') {
            len += 1 + digits(&rest[len + 1..]);
        }
        if rest[len..].starts_with(['e', 'E']) {
            let mut exp = len + 1;
            if rest[exp..].starts_with(['+', '-']) {
                exp += 1;
            }
            let exp_digits = digits(&rest[exp..]);
            if exp_digits == 0 {
                return Err(RouteError::at(start, "invalid number: exponent has no digits"));
            }
            len = exp + exp_digits;
        }
        self.finish_number(start, len, rest[..len].parse::<f64>().ok())
    }

    fn hex_number(&mut self, start: usize) -> Result<Tok, RouteError> {
        let hex = &self.rest()[2..];
        let len = hex.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(hex.len());
        if len == 0 {
            return Err(RouteError::at(start, "invalid number: '0x' without hex digits"));
        }
        let value = u64::from_str_radix(&hex[..len], 16).ok().map(|v| v as f64);
        self.finish_number(start, 2 + len, value)
    }

    /// Rejects numbers glued to letters (`12abc`) and values that do not fit a double.
    fn finish_number(&mut self, start: usize, len: usize, value: Option<f64>) -> Result<Tok, RouteError> {
        self.pos += len;
        if self.peek().is_some_and(|c| is_ident_char(c) || c == '.') {
            return Err(RouteError::at(start, "invalid number"));
        }
        match value {
            Some(v) if v.is_finite() => Ok(Tok::Num(v)),
            _ => Err(RouteError::at(start, "number out of range")),
        }
    }

    fn string(&mut self, quote: char) -> Result<Tok, RouteError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(RouteError::at(start, format!("unterminated string: missing closing {quote}")));
            };
            self.pos += c.len_utf8();
            match c {
                c if c == quote => return Ok(Tok::Str(out)),
                '\\' => out.push(self.escape()?),
                c => out.push(c),
            }
        }
    }

    /// The character after a backslash: only `\" \' \\ \uXXXX` exist in the condition grammar.
    fn escape(&mut self) -> Result<char, RouteError> {
        let at = self.pos - 1;
        let Some(c) = self.peek() else {
            return Err(RouteError::at(at, "unterminated string: input ends after '\\'"));
        };
        self.pos += c.len_utf8();
        match c {
            '"' | '\'' | '\\' => Ok(c),
            'u' => self.unicode_escape(at),
            _ => Err(RouteError::at(at, format!("invalid escape '\\{c}' (allowed: \\\" \\' \\\\ \\uXXXX)"))),
        }
    }

    /// `\uXXXX`, combining a UTF-16 surrogate pair written as two escapes.
    fn unicode_escape(&mut self, at: usize) -> Result<char, RouteError> {
        let high = self.hex4(at)?;
        if let Some(c) = char::from_u32(high) {
            return Ok(c);
        }
        let is_high = (0xD800..0xDC00).contains(&high);
        if is_high && self.rest().starts_with("\\u") {
            self.pos += 2;
            let low = self.hex4(at)?;
            if (0xDC00..0xE000).contains(&low) {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                if let Some(c) = char::from_u32(code) {
                    return Ok(c);
                }
            }
        }
        Err(RouteError::at(at, "invalid \\u escape: unpaired surrogate"))
    }

    fn hex4(&mut self, at: usize) -> Result<u32, RouteError> {
        let digits = self.rest().get(..4).filter(|d| d.chars().all(|c| c.is_ascii_hexdigit()));
        let Some(digits) = digits else {
            return Err(RouteError::at(at, "invalid \\u escape: expected 4 hex digits"));
        };
        let value = u32::from_str_radix(digits, 16).map_err(|_| RouteError::at(at, "invalid \\u escape"))?;
        self.pos += 4;
        Ok(value)
    }
}

/// A read position over a token list, shared by the condition and sink parsers.
pub(crate) struct Cursor<'t> {
    tokens: &'t [Token],
    index: usize,
}

impl<'t> Cursor<'t> {
    pub(crate) fn new(tokens: &'t [Token]) -> Self {
        Cursor { tokens, index: 0 }
    }

    /// The current token; past the end this keeps returning the final `Eof`.
    pub(crate) fn peek(&self) -> &'t Token {
        static EOF: Token = Token { tok: Tok::Eof, pos: 0 };
        self.tokens.get(self.index).or(self.tokens.last()).unwrap_or(&EOF)
    }

    pub(crate) fn advance(&mut self) -> &'t Token {
        let token = self.peek();
        if self.index < self.tokens.len() {
            self.index += 1;
        }
        token
    }

    /// Consumes the token if it equals `tok`.
    pub(crate) fn eat(&mut self, tok: &Tok) -> bool {
        let found = self.peek().tok == *tok;
        if found {
            self.advance();
        }
        found
    }

    /// Consumes the bare word `word` (any case) if it is next.
    pub(crate) fn eat_word(&mut self, word: &str) -> bool {
        let found = self.peek().tok.is_word(word);
        if found {
            self.advance();
        }
        found
    }

    /// An error at the current token: "expected X, found Y".
    pub(crate) fn expected(&self, what: &str) -> RouteError {
        let token = self.peek();
        RouteError::at(token.pos, format!("expected {what}, found {}", token.tok.describe()))
    }

    pub(crate) fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), RouteError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text, 0).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn err(text: &str) -> String {
        tokenize(text, 0).unwrap_err().message().to_string()
    }

    #[test]
    fn operators_and_punctuation() {
        use Tok::*;
        assert_eq!(
            toks("( ) , + - * / % || < <= > >= = != <> ??"),
            vec![
                LParen, RParen, Comma, Plus, Minus, Star, Slash, Percent, Concat, Lt, Le, Gt, Ge, Eq, Ne, Ne, Coalesce,
                Eof
            ]
        );
    }

    #[test]
    fn identifiers_and_references() {
        assert_eq!(
            toks("temp $connectionModuleId {$dt-subject} $body.a.b[0] $dt-subject"),
            vec![
                Tok::Ident("temp".into()),
                Tok::Dollar("connectionModuleId".into()),
                Tok::Braced("dt-subject".into()),
                Tok::Dollar("body.a.b[0]".into()),
                Tok::Dollar("dt-subject".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn dollar_name_does_not_swallow_subtraction() {
        assert_eq!(toks("$a-1"), vec![Tok::Dollar("a".into()), Tok::Minus, Tok::Num(1.0), Tok::Eof]);
        assert_eq!(toks("$a - b"), vec![Tok::Dollar("a".into()), Tok::Minus, Tok::Ident("b".into()), Tok::Eof]);
    }

    #[test]
    fn numbers() {
        assert_eq!(toks("42"), vec![Tok::Num(42.0), Tok::Eof]);
        assert_eq!(toks("0x1F 0XfF"), vec![Tok::Num(31.0), Tok::Num(255.0), Tok::Eof]);
        assert_eq!(toks("1.5 .5 2e3 2.5E-1 7e+2"), {
            vec![Tok::Num(1.5), Tok::Num(0.5), Tok::Num(2000.0), Tok::Num(0.25), Tok::Num(700.0), Tok::Eof]
        });
        // The sign is an operator; the parser folds it into the literal.
        assert_eq!(toks("-3"), vec![Tok::Minus, Tok::Num(3.0), Tok::Eof]);
    }

    #[test]
    fn bad_numbers() {
        assert_eq!(err("12abc"), "invalid number");
        assert_eq!(err("0x"), "invalid number: '0x' without hex digits");
        assert_eq!(err("1e"), "invalid number: exponent has no digits");
        assert_eq!(err("1e999"), "number out of range");
        assert_eq!(err("0xFFFFFFFFFFFFFFFFFF"), "number out of range");
        assert_eq!(err("1.2.3"), "invalid number");
    }

    #[test]
    fn string_escapes() {
        assert_eq!(toks(r#""a\"b""#), vec![Tok::Str("a\"b".into()), Tok::Eof]);
        assert_eq!(toks(r"'a\'b'"), vec![Tok::Str("a'b".into()), Tok::Eof]);
        assert_eq!(toks(r"'a\\b'"), vec![Tok::Str("a\\b".into()), Tok::Eof]);
        assert_eq!(toks(r#"'say "hi"'"#), vec![Tok::Str("say \"hi\"".into()), Tok::Eof]);
        assert_eq!(toks(r"'\u00e9\u0041'"), vec![Tok::Str("éA".into()), Tok::Eof]);
        assert_eq!(toks(r"'\ud83d\ude00'"), vec![Tok::Str("😀".into()), Tok::Eof]);
        assert_eq!(toks("'héllo wörld'"), vec![Tok::Str("héllo wörld".into()), Tok::Eof]);
    }

    #[test]
    fn bad_strings() {
        assert_eq!(err("'abc"), "unterminated string: missing closing '");
        assert_eq!(err("\"abc\\"), "unterminated string: input ends after '\\'");
        assert!(err(r"'\n'").starts_with("invalid escape '\\n'"));
        assert_eq!(err(r"'\u12'"), "invalid \\u escape: expected 4 hex digits");
        assert_eq!(err(r"'\ud800'"), "invalid \\u escape: unpaired surrogate");
        assert_eq!(err(r"'\ud800\u0041'"), "invalid \\u escape: unpaired surrogate");
    }

    #[test]
    fn comments_are_trivia() {
        assert_eq!(toks("a /* x */ = /**/ 1"), vec![Tok::Ident("a".into()), Tok::Eq, Tok::Num(1.0), Tok::Eof]);
        assert_eq!(err("a /* never closed"), "unterminated comment: '/*' without '*/'");
    }

    #[test]
    fn unexpected_characters() {
        assert_eq!(err("a & b"), "unexpected character '&'");
        assert_eq!(err("a ! b"), "unexpected character '!'");
        assert_eq!(err("$"), "expected a name after '$'");
        assert_eq!(err("{a}"), "expected '{$name}'");
        assert_eq!(err("{$a"), "unterminated '{$': missing '}'");
        assert_eq!(err("{$}"), "invalid name in '{$}'");
    }

    #[test]
    fn positions_are_offsets_in_the_whole_text() {
        let tokens = tokenize("xxxx a = 'b'", 4).unwrap();
        let positions: Vec<usize> = tokens.iter().map(|t| t.pos).collect();
        assert_eq!(positions, vec![5, 7, 9, 12]);
    }

    #[test]
    fn cursor_stays_on_eof() {
        let tokens = tokenize("a", 0).unwrap();
        let mut cursor = Cursor::new(&tokens);
        assert!(cursor.eat_word("A"));
        assert_eq!(cursor.advance().tok, Tok::Eof);
        assert_eq!(cursor.advance().tok, Tok::Eof);
        assert_eq!(cursor.expected("INTO").message(), "expected INTO, found end of input");
    }
}
