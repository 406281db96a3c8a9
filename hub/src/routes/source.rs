//! Route sources (`FROM /messages/modules/m/*`) and message sources, and how they match.
//!
//! edgeHub does not interpret the source path: it turns it into a prefix (drop one
//! trailing `*`, then one trailing `/`, then add `/`) and checks whether the message's
//! own source path starts with it, ignoring case. A `*` anywhere else stays literal and
//! so matches nothing, exactly as in edgeHub.

use std::fmt;

use super::error::RouteError;

/// Where a message came from, as the route engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageSource {
    /// Telemetry from a module, sent on an output or (with `None`) as plain telemetry.
    Module { module: String, output: Option<String> },
    /// Telemetry from a leaf device.
    Device,
    /// A reported-property change notification.
    TwinChangeNotification,
}

impl MessageSource {
    /// The message's source path, always ending in `/` (edgeHub's `GetMessageSource`).
    pub fn path(&self) -> String {
        match self {
            MessageSource::Module { module, output: Some(output) } => {
                format!("/messages/modules/{module}/outputs/{output}/")
            }
            MessageSource::Module { module, output: None } => format!("/messages/modules/{module}/"),
            MessageSource::Device => "/messages/".to_string(),
            MessageSource::TwinChangeNotification => "/twinChangeNotifications/".to_string(),
        }
    }
}

impl fmt::Display for MessageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A route's FROM clause, normalised to the prefix a message source must start with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// The path as written in the route.
    text: String,
    /// Lower-cased normalised prefix, ending in `/`.
    prefix: String,
}

impl Source {
    /// Parses a source path; `offset` is where it starts in the route text (for errors).
    pub(crate) fn parse(text: &str, offset: usize) -> Result<Source, RouteError> {
        validate(text, offset)?;
        Ok(Source { text: text.to_string(), prefix: normalise(text) })
    }

    /// The path as written in the route, e.g. `/messages/modules/sensor/*`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The normalised, lower-cased prefix, e.g. `/messages/modules/sensor/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether a message from `source` passes this FROM clause.
    pub fn matches(&self, source: &MessageSource) -> bool {
        source.path().to_lowercase().starts_with(&self.prefix)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The matching prefix: one trailing `*` off, one trailing `/` off, then `/` on.
fn normalise(text: &str) -> String {
    let trimmed = text.strip_suffix('*').unwrap_or(text);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    format!("{trimmed}/").to_lowercase()
}

/// Characters that cannot appear in a source item (besides `/`, `*` and whitespace).
const SEPARATORS: &str = "()<>@,;:\\\"[]?={}'";

/// Checks `/item/item...` where an item is `*` or a run of identifier characters.
fn validate(text: &str, offset: usize) -> Result<(), RouteError> {
    let Some(path) = text.strip_prefix('/') else {
        return Err(RouteError::at(offset, "expected a source path starting with '/' after FROM"));
    };
    let mut at = offset + 1;
    for item in path.split('/') {
        validate_item(item, at)?;
        at += item.len() + 1;
    }
    Ok(())
}

fn validate_item(item: &str, at: usize) -> Result<(), RouteError> {
    if item.is_empty() {
        return Err(RouteError::at(at, "expected a source item ('*' or a name) after '/'"));
    }
    if item == "*" {
        return Ok(());
    }
    let bad = item.char_indices().find(|(_, c)| *c == '*' || c.is_control() || SEPARATORS.contains(*c));
    match bad {
        Some((i, c)) => Err(RouteError::at(at + i, format!("invalid character '{c}' in source path"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(m: &str, o: Option<&str>) -> MessageSource {
        MessageSource::Module { module: m.into(), output: o.map(Into::into) }
    }

    fn all_sources() -> Vec<MessageSource> {
        vec![
            module("sensor", Some("temp")),
            module("sensor", Some("humidity")),
            module("sensor", None),
            module("filter", Some("out")),
            module("sensorX", Some("temp")),
            MessageSource::Device,
            MessageSource::TwinChangeNotification,
        ]
    }

    /// Which of `all_sources()` the source accepts, by index.
    fn accepted(source: &str) -> Vec<usize> {
        let s = Source::parse(source, 0).unwrap();
        all_sources().iter().enumerate().filter(|(_, m)| s.matches(m)).map(|(i, _)| i).collect()
    }

    #[test]
    fn message_source_paths() {
        assert_eq!(module("m", Some("o")).path(), "/messages/modules/m/outputs/o/");
        assert_eq!(module("m", None).path(), "/messages/modules/m/");
        assert_eq!(MessageSource::Device.path(), "/messages/");
        assert_eq!(MessageSource::TwinChangeNotification.to_string(), "/twinChangeNotifications/");
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("/*"), "/");
        assert_eq!(normalise("/messages/*"), "/messages/");
        assert_eq!(normalise("/messages/modules/M/outputs/O"), "/messages/modules/m/outputs/o/");
        assert_eq!(normalise("/twinChangeNotifications"), "/twinchangenotifications/");
    }

    #[test]
    fn every_from_form() {
        assert_eq!(accepted("/*"), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(accepted("/messages/*"), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(accepted("/messages/modules/*"), vec![0, 1, 2, 3, 4]);
        assert_eq!(accepted("/messages/modules/sensor/*"), vec![0, 1, 2], "with or without output");
        assert_eq!(accepted("/messages/modules/sensor"), vec![0, 1, 2]);
        assert_eq!(accepted("/messages/modules/sensor/outputs/*"), vec![0, 1]);
        assert_eq!(accepted("/messages/modules/sensor/outputs/temp"), vec![0]);
        assert_eq!(accepted("/twinChangeNotifications"), vec![6]);
        assert_eq!(accepted("/messages"), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn matching_ignores_case() {
        assert_eq!(accepted("/MESSAGES/Modules/SENSOR/outputs/TEMP"), vec![0]);
        assert_eq!(accepted("/TwinChangeNotifications"), vec![6]);
        let s = Source::parse("/messages/modules/sensor/*", 0).unwrap();
        assert!(s.matches(&module("SENSOR", Some("x"))));
    }

    #[test]
    fn inner_star_is_literal() {
        assert_eq!(accepted("/messages/*/outputs/temp"), Vec::<usize>::new());
        assert_eq!(accepted("/messages/modules/*/outputs/*"), Vec::<usize>::new());
    }

    #[test]
    fn prefix_does_not_match_partial_names() {
        // "sensor" must not catch "sensorX": the prefix ends with '/'.
        assert!(!accepted("/messages/modules/sensor/*").contains(&4));
    }

    #[test]
    fn accessors() {
        let s = Source::parse("/messages/modules/A/*", 0).unwrap();
        assert_eq!(s.text(), "/messages/modules/A/*");
        assert_eq!(s.to_string(), "/messages/modules/A/*");
        assert_eq!(s.prefix(), "/messages/modules/a/");
    }

    #[test]
    fn rejects_malformed_paths() {
        let err = |t: &str| Source::parse(t, 10).unwrap_err();
        assert_eq!(err("messages/*").message(), "expected a source path starting with '/' after FROM");
        assert_eq!(err("/messages//x").message(), "expected a source item ('*' or a name) after '/'");
        assert_eq!(err("/messages/").message(), "expected a source item ('*' or a name) after '/'");
        assert_eq!(err("/").message(), "expected a source item ('*' or a name) after '/'");
        assert_eq!(err("/mess*ages").message(), "invalid character '*' in source path");
        assert_eq!(err("/a/b(c)").message(), "invalid character '(' in source path");
        assert_eq!(err("/a=b").message(), "invalid character '=' in source path");
        assert_eq!(err("").message(), "expected a source path starting with '/' after FROM");
        // Position of the bad character: offset 10 + "/a/b" = 14.
        assert_eq!(err("/a/b(c)").in_text(&" ".repeat(30)).column(), Some(15));
    }
}
