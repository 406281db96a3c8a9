//! `RouteError`: why a route (or a condition) was rejected, and where.
//!
//! The parsers work with byte offsets because that is what slicing needs; users count
//! characters, so the offset is turned into a 1-based column once the full text is known.

use std::fmt;

/// A route or condition that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    route: Option<String>,
    message: String,
    /// Byte offset into the text that was parsed, when the problem has a location.
    offset: Option<usize>,
    /// 1-based character column derived from `offset` once the text is attached.
    column: Option<usize>,
}

impl RouteError {
    /// An error at a byte offset of the text being parsed.
    pub(crate) fn at(offset: usize, message: impl Into<String>) -> Self {
        RouteError { route: None, message: message.into(), offset: Some(offset), column: None }
    }

    /// An error about the route as a whole (its name, its length), with no location.
    pub(crate) fn general(message: impl Into<String>) -> Self {
        RouteError { route: None, message: message.into(), offset: None, column: None }
    }

    /// Attaches the text the offset refers to, so `Display` can show a column.
    pub(crate) fn in_text(mut self, text: &str) -> Self {
        if let Some(offset) = self.offset {
            self.column = Some(column_of(text, offset));
        }
        self
    }

    /// Attaches the route name, so a deployment with many routes says which one is wrong.
    pub(crate) fn for_route(mut self, name: &str) -> Self {
        self.route = Some(name.to_string());
        self
    }

    /// What went wrong, without route name or column.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The 1-based character column of the problem, when it has one.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// The name of the route the error belongs to, when parsed through `Route::parse`.
    pub fn route_name(&self) -> Option<&str> {
        self.route.as_deref()
    }
}

/// Counts characters (not bytes) up to `offset`; offsets past the end or inside a
/// multi-byte character are clamped rather than trusted, so this never panics.
fn column_of(text: &str, offset: usize) -> usize {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].chars().count() + 1
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.route {
            Some(name) => write!(f, "invalid route '{name}'")?,
            None => f.write_str("invalid route condition")?,
        }
        if let Some(column) = self.column {
            write!(f, " at column {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RouteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_route_column_and_message() {
        let e = RouteError::at(5, "expected INTO, found end of input").in_text("FROM /*").for_route("r1");
        assert_eq!(e.to_string(), "invalid route 'r1' at column 6: expected INTO, found end of input");
        assert_eq!(e.column(), Some(6));
        assert_eq!(e.route_name(), Some("r1"));
        assert_eq!(e.message(), "expected INTO, found end of input");
    }

    #[test]
    fn column_counts_characters_not_bytes() {
        // "é" is two bytes; the error at byte 3 is the third character.
        let e = RouteError::at(3, "x").in_text("éab");
        assert_eq!(e.column(), Some(3));
    }

    #[test]
    fn column_of_never_panics_on_bad_offsets() {
        assert_eq!(column_of("é", 1), 1);
        assert_eq!(column_of("abc", 99), 4);
        assert_eq!(column_of("", 0), 1);
    }

    #[test]
    fn general_error_has_no_column() {
        let e = RouteError::general("route name is empty").in_text("abc").for_route("");
        assert_eq!(e.column(), None);
        assert_eq!(e.to_string(), "invalid route '': route name is empty");
    }
}
