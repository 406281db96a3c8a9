//! Recursive-descent parser for condition expressions.
//!
//! Binary operators are parsed by precedence level (loosest first, see `LEVELS`) with a
//! loop per level, so long `a OR b OR c ...` chains do not recurse. Recursion happens only
//! for parentheses, unary operators and function arguments, and is capped by `MAX_NESTING`;
//! the finished tree's height is capped by `MAX_TREE_DEPTH` because evaluation recurses
//! over it. Together they keep hostile input from overflowing the stack.

use edgemodule_core::SystemProperty;

use super::body::BodyPath;
use super::condition::{BinaryOp, Expr, Lookup, UnaryOp};
use super::error::RouteError;
use super::functions::Function;
use super::lexer::{Cursor, Tok};
use super::value::{Arith, Ordered, Value};

/// Deepest nesting of parentheses, unary operators and function calls.
pub const MAX_NESTING: usize = 64;
/// Tallest expression tree (chains of binary operators count one level per operator).
pub const MAX_TREE_DEPTH: usize = 128;

/// Number of binary precedence levels; level `LEVELS` is the unary level.
const LEVELS: usize = 7;

/// The binary operator `tok` stands for at precedence `level` (0 = loosest).
fn binary_op(level: usize, tok: &Tok) -> Option<BinaryOp> {
    let op = match (level, tok) {
        (0, Tok::Coalesce) => BinaryOp::Coalesce,
        (1, t) if t.is_word("or") => BinaryOp::Or,
        (2, t) if t.is_word("and") => BinaryOp::And,
        (3, Tok::Eq) => BinaryOp::Eq,
        (3, Tok::Ne) => BinaryOp::Ne,
        (4, Tok::Lt) => BinaryOp::Compare(Ordered::Lt),
        (4, Tok::Le) => BinaryOp::Compare(Ordered::Le),
        (4, Tok::Gt) => BinaryOp::Compare(Ordered::Gt),
        (4, Tok::Ge) => BinaryOp::Compare(Ordered::Ge),
        (5, Tok::Plus) => BinaryOp::Arith(Arith::Add),
        (5, Tok::Minus) => BinaryOp::Arith(Arith::Sub),
        (5, Tok::Concat) => BinaryOp::Concat,
        (6, Tok::Star) => BinaryOp::Arith(Arith::Mul),
        (6, Tok::Slash) => BinaryOp::Arith(Arith::Div),
        (6, Tok::Percent) => BinaryOp::Arith(Arith::Rem),
        _ => return None,
    };
    Some(op)
}

/// Words that end or join expressions and so can never be a property name.
const RESERVED: [&str; 4] = ["and", "or", "not", "into"];

/// Parses one expression from the cursor, leaving the cursor on the first token after it.
pub(crate) fn parse_condition(cursor: &mut Cursor<'_>) -> Result<Expr, RouteError> {
    ExprParser { cursor, nesting: 0 }.expression()
}

struct ExprParser<'c, 't> {
    cursor: &'c mut Cursor<'t>,
    nesting: usize,
}

impl ExprParser<'_, '_> {
    fn expression(&mut self) -> Result<Expr, RouteError> {
        self.level(0)
    }

    fn level(&mut self, level: usize) -> Result<Expr, RouteError> {
        if level == LEVELS {
            return self.unary();
        }
        let mut lhs = self.level(level + 1)?;
        while let Some(op) = binary_op(level, &self.cursor.peek().tok) {
            let pos = self.cursor.advance().pos;
            let rhs = self.level(level + 1)?;
            lhs = limit_depth(Expr::Binary(op, Box::new(lhs), Box::new(rhs)), pos)?;
        }
        Ok(lhs)
    }

    /// Runs `inner` one nesting level deeper, failing cleanly past `MAX_NESTING`.
    fn nested<T>(
        &mut self,
        pos: usize,
        inner: impl FnOnce(&mut Self) -> Result<T, RouteError>,
    ) -> Result<T, RouteError> {
        if self.nesting >= MAX_NESTING {
            return Err(RouteError::at(pos, format!("condition is nested too deeply (limit {MAX_NESTING})")));
        }
        self.nesting += 1;
        let result = inner(self);
        self.nesting -= 1;
        result
    }

    fn unary(&mut self) -> Result<Expr, RouteError> {
        let token = self.cursor.peek();
        let op = match &token.tok {
            Tok::Minus => UnaryOp::Neg,
            t if t.is_word("not") => UnaryOp::Not,
            _ => return self.primary(),
        };
        self.cursor.advance();
        // `-5` is one literal, so a negative number costs no nesting.
        if let (UnaryOp::Neg, Tok::Num(n)) = (op, &self.cursor.peek().tok) {
            self.cursor.advance();
            return Ok(Expr::Literal(Value::Number(-n)));
        }
        let operand = self.nested(token.pos, Self::unary)?;
        limit_depth(Expr::Unary(op, Box::new(operand)), token.pos)
    }

    fn primary(&mut self) -> Result<Expr, RouteError> {
        let token = self.cursor.peek();
        let expr = match &token.tok {
            Tok::Num(n) => Expr::Literal(Value::Number(*n)),
            Tok::Str(s) => Expr::Literal(Value::String(s.clone())),
            Tok::Dollar(name) => Expr::Dollar { key: format!("${name}"), target: resolve(name, token.pos)? },
            Tok::Braced(name) => Expr::Forced(resolve(name, token.pos)?),
            Tok::LParen => return self.parenthesized(token.pos),
            Tok::Ident(word) => return self.word(word, token.pos),
            _ => return Err(self.cursor.expected("an expression")),
        };
        self.cursor.advance();
        Ok(expr)
    }

    fn parenthesized(&mut self, pos: usize) -> Result<Expr, RouteError> {
        self.cursor.advance();
        let inner = self.nested(pos, Self::expression)?;
        self.cursor.expect(&Tok::RParen, "')'")?;
        Ok(inner)
    }

    /// A bare word: literal, function call or application property.
    fn word(&mut self, word: &str, pos: usize) -> Result<Expr, RouteError> {
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word)) {
            return Err(self.cursor.expected("an expression"));
        }
        self.cursor.advance();
        if self.cursor.peek().tok == Tok::LParen {
            return self.call(word, pos);
        }
        let literal = match word.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            "undefined" => Value::Undefined,
            _ => return Ok(Expr::Property(word.to_string())),
        };
        Ok(Expr::Literal(literal))
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<Expr, RouteError> {
        let Some(function) = Function::by_name(name) else {
            return Err(RouteError::at(pos, format!("unknown function '{name}'")));
        };
        self.cursor.advance(); // the '('
        let args = self.nested(pos, |p| p.arguments(function))?;
        function.check_arity(args.len()).map_err(|message| RouteError::at(pos, message))?;
        limit_depth(Expr::Call(function, args), pos)
    }

    /// Comma-separated arguments up to and including the closing parenthesis.
    fn arguments(&mut self, function: Function) -> Result<Vec<Expr>, RouteError> {
        let mut args = Vec::new();
        if self.cursor.eat(&Tok::RParen) {
            return Ok(args);
        }
        loop {
            let arg = match function {
                Function::TwinChangeIncludes => self.property_path()?,
                _ => self.expression()?,
            };
            args.push(arg);
            if self.cursor.eat(&Tok::RParen) {
                return Ok(args);
            }
            self.cursor.expect(&Tok::Comma, "',' or ')'")?;
        }
    }

    /// `properties.reported.name`, the argument form of `twin_change_includes`; kept as a
    /// string literal because it names a twin path rather than a message value.
    fn property_path(&mut self) -> Result<Expr, RouteError> {
        let mut path = Vec::new();
        loop {
            match &self.cursor.peek().tok {
                Tok::Ident(part) => path.push(part.clone()),
                _ => return Err(self.cursor.expected("a property path such as properties.reported.name")),
            }
            self.cursor.advance();
            if !self.cursor.eat(&Tok::Dot) {
                return Ok(Expr::Literal(Value::String(path.join("."))));
            }
        }
    }
}

/// Rejects a node whose tree is taller than `MAX_TREE_DEPTH`.
fn limit_depth(expr: Expr, pos: usize) -> Result<Expr, RouteError> {
    if expr.depth() > MAX_TREE_DEPTH {
        return Err(RouteError::at(pos, format!("condition is too complex (expression depth limit {MAX_TREE_DEPTH})")));
    }
    Ok(expr)
}

/// What `$name` / `{$name}` looks up besides application properties.
fn resolve(name: &str, pos: usize) -> Result<Lookup, RouteError> {
    if BodyPath::is_body_name(name) {
        return BodyPath::parse(name).map(Lookup::Body).map_err(|message| RouteError::at(pos, message));
    }
    Ok(SystemProperty::from_route_name(name).map(Lookup::System).unwrap_or(Lookup::Unknown))
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parse(text: &str) -> Result<Expr, RouteError> {
        let tokens = tokenize(text, 0)?;
        let mut cursor = Cursor::new(&tokens);
        let expr = parse_condition(&mut cursor)?;
        match cursor.peek().tok {
            Tok::Eof => Ok(expr),
            _ => Err(cursor.expected("end")),
        }
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().message().to_string()
    }

    /// Prints the tree with explicit parentheses to check precedence and associativity.
    fn show(e: &Expr) -> String {
        match e {
            Expr::Literal(Value::Number(n)) => format!("{n}"),
            Expr::Literal(v) => format!("{v:?}"),
            Expr::Property(p) => p.clone(),
            Expr::Dollar { key, .. } => key.clone(),
            Expr::Forced(l) => format!("{{{l:?}}}"),
            Expr::Unary(op, e) => format!("({op:?} {})", show(e)),
            Expr::Binary(op, l, r) => format!("({} {} {})", show(l), op_name(*op), show(r)),
            Expr::Call(f, args) => format!("{}({})", f.name(), args.iter().map(show).collect::<Vec<_>>().join(", ")),
        }
    }

    fn op_name(op: BinaryOp) -> &'static str {
        match op {
            BinaryOp::Arith(Arith::Add) => "+",
            BinaryOp::Arith(Arith::Sub) => "-",
            BinaryOp::Arith(Arith::Mul) => "*",
            BinaryOp::Arith(Arith::Div) => "/",
            BinaryOp::Arith(Arith::Rem) => "%",
            BinaryOp::Concat => "||",
            BinaryOp::Compare(Ordered::Lt) => "<",
            BinaryOp::Compare(Ordered::Le) => "<=",
            BinaryOp::Compare(Ordered::Gt) => ">",
            BinaryOp::Compare(Ordered::Ge) => ">=",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Coalesce => "??",
        }
    }

    fn tree(text: &str) -> String {
        show(&parse(text).unwrap())
    }

    #[test]
    fn precedence_of_every_level() {
        assert_eq!(tree("a ?? b OR c"), "(a ?? (b OR c))");
        assert_eq!(tree("a OR b AND c"), "(a OR (b AND c))");
        assert_eq!(tree("a AND b = c"), "(a AND (b = c))");
        assert_eq!(tree("a = b < c"), "(a = (b < c))");
        assert_eq!(tree("a != b <= c"), "(a != (b <= c))");
        assert_eq!(tree("a <> b > c"), "(a != (b > c))");
        assert_eq!(tree("a >= b + c"), "(a >= (b + c))");
        assert_eq!(tree("a < b || c"), "(a < (b || c))");
        assert_eq!(tree("a - b * c"), "(a - (b * c))");
        assert_eq!(tree("a + b / c"), "(a + (b / c))");
        assert_eq!(tree("a + b % c"), "(a + (b % c))");
        assert_eq!(tree("-a * b"), "((Neg a) * b)");
        assert_eq!(tree("NOT a AND b"), "((Not a) AND b)");
        assert_eq!(tree("NOT a = b"), "((Not a) = b)");
    }

    #[test]
    fn left_associativity_and_parentheses() {
        assert_eq!(tree("a - b - c"), "((a - b) - c)");
        assert_eq!(tree("a / b * c"), "((a / b) * c)");
        assert_eq!(tree("a - (b - c)"), "(a - (b - c))");
        assert_eq!(tree("(a OR b) AND c"), "((a OR b) AND c)");
        assert_eq!(tree("((a))"), "a");
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(tree("a and b Or not c"), "((a AND b) OR (Not c))");
        assert_eq!(tree("TRUE = True"), "(Bool(true) = Bool(true))");
        assert_eq!(tree("NULL ?? Undefined"), "(Null ?? Undefined)");
    }

    #[test]
    fn literals() {
        assert_eq!(tree("-5"), "-5");
        assert_eq!(tree("- 5"), "-5");
        assert_eq!(tree("--5"), "(Neg -5)");
        assert_eq!(tree("0x10 + 1.5e1"), "(16 + 15)");
        assert_eq!(tree("'x'"), "String(\"x\")");
        assert_eq!(tree("a - -1"), "(a - -1)");
    }

    #[test]
    fn references_resolve_at_parse_time() {
        let Expr::Dollar { key, target } = parse("$connectionModuleId").unwrap() else { panic!() };
        assert_eq!(key, "$connectionModuleId");
        assert_eq!(target, Lookup::System(SystemProperty::ConnectionModuleId));
        assert_eq!(parse("{$cid}").unwrap(), Expr::Forced(Lookup::System(SystemProperty::CorrelationId)));
        assert_eq!(parse("{$correlationId}").unwrap(), Expr::Forced(Lookup::Unknown));
        assert!(matches!(parse("$body.a[1]").unwrap(), Expr::Dollar { target: Lookup::Body(_), .. }));
        assert!(matches!(parse("{$body.a}").unwrap(), Expr::Forced(Lookup::Body(_))));
        assert_eq!(err("$body.a[x]"), "array index '[x]' in body query is not a number");
    }

    #[test]
    fn function_calls() {
        assert_eq!(tree("UPPER(a) = 'X'"), "(upper(a) = String(\"X\"))");
        assert_eq!(tree("concat(a, b, 'c')"), "concat(a, b, String(\"c\"))");
        assert_eq!(tree("power(abs(-2), 2 + 1)"), "power(abs(-2), (2 + 1))");
        assert_eq!(tree("twin_change_includes(properties.reported.temp)"), {
            "twin_change_includes(String(\"properties.reported.temp\"))"
        });
    }

    #[test]
    fn function_errors() {
        assert_eq!(err("nosuch(a)"), "unknown function 'nosuch'");
        assert_eq!(err("abs()"), "function 'abs' takes 1 argument, got 0");
        assert_eq!(err("abs(1, 2)"), "function 'abs' takes 1 argument, got 2");
        assert_eq!(err("substring('a')"), "function 'substring' takes 2 to 3 arguments, got 1");
        assert_eq!(err("abs(1"), "expected ',' or ')', found end of input");
        assert_eq!(err("abs(1,)"), "expected an expression, found ')'");
        assert_eq!(
            err("twin_change_includes('x')"),
            "expected a property path such as properties.reported.name, found a string"
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(err("a ="), "expected an expression, found end of input");
        assert_eq!(err("(a"), "expected ')', found end of input");
        assert_eq!(err("a AND AND b"), "expected an expression, found 'AND'");
        assert_eq!(err("INTO"), "expected an expression, found 'INTO'");
        assert_eq!(err(")"), "expected an expression, found ')'");
        assert_eq!(err("a b"), "expected end, found 'b'");
        assert_eq!(err("."), "expected an expression, found '.'");
    }

    #[test]
    fn error_positions() {
        let e = parse("a = (b +").unwrap_err().in_text("a = (b +");
        assert_eq!(e.column(), Some(9));
        let e = parse("x = nosuch(1)").unwrap_err().in_text("x = nosuch(1)");
        assert_eq!(e.column(), Some(5));
    }

    #[test]
    fn nesting_limits() {
        let ok = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}a{}", "(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1));
        assert!(err(&deep).contains("nested too deeply"));
        assert!(err(&"NOT ".repeat(10_000)).contains("nested too deeply"));
        assert!(err(&format!("{}1", "-".repeat(10_000))).contains("nested too deeply"));
        assert!(err(&"abs(".repeat(10_000)).contains("nested too deeply"));
    }

    #[test]
    fn tree_depth_limit_stops_long_chains() {
        let ok = vec!["a = 1"; MAX_TREE_DEPTH / 2].join(" OR ");
        assert!(parse(&ok).is_ok());
        let long = vec!["a"; 5_000].join(" + ");
        assert!(err(&long).contains("too complex"));
    }
}
