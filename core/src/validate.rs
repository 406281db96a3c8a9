//! Input validation, done once here for every binding.

use crate::error::{Error, ErrorKind, Result};
use crate::message::Message;

/// The hub's message size limit (protocol.md §9).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The method payload limit (protocol.md §4.2).
pub const MAX_METHOD_PAYLOAD_BYTES: usize = 128 * 1024;
/// edgeHub's method-name limit.
pub const MAX_METHOD_NAME_CHARS: usize = 100;
const MAX_NAME_CHARS: usize = 128;
/// Characters that the route grammar treats as separators, so an output or input name with one
/// could never be routed.
const NAME_FORBIDDEN: &str = "()<>@,;:\\\"/[]?={}#+*$";

/// Output and input names: non-empty, at most 128 characters, no whitespace, controls or separators.
pub fn endpoint_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{what} name must not be empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(format!("{what} name is longer than {MAX_NAME_CHARS} characters")));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control() || NAME_FORBIDDEN.contains(*c)) {
        return Err(Error::invalid(format!("{what} name '{name}' contains the forbidden character {c:?}")));
    }
    Ok(())
}

/// Device and module ids: ≤ 128 ASCII alphanumerics plus `- . + % _ # * ? ! ( ) , = @ $ '`.
pub fn identity_id(what: &str, id: &str) -> Result<()> {
    const EXTRA: &str = "-.+%_#*?!(),=@$'";
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || EXTRA.contains(c)) {
        return Err(Error::invalid(format!("{what} '{id}' must be 1-128 ASCII letters, digits or one of {EXTRA}")));
    }
    Ok(())
}

/// Application property keys: non-empty, no control characters, not a reserved system key.
pub fn property_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("property key must not be empty"));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid(format!("property key {key:?} contains a control character")));
    }
    if key.starts_with("$.") || key.eq_ignore_ascii_case("iothub-operation") {
        return Err(Error::invalid(format!("property key '{key}' is reserved for system properties")));
    }
    Ok(())
}

/// A message about to be sent: valid property keys and within the size limit.
pub fn outgoing_message(msg: &Message) -> Result<()> {
    for (k, _) in msg.properties() {
        property_key(k)?;
    }
    let size = msg.wire_size();
    if size > MAX_MESSAGE_BYTES {
        return Err(Error::new(
            ErrorKind::MessageTooLarge,
            format!("message is {size} bytes with its properties; the limit is {MAX_MESSAGE_BYTES}"),
        ));
    }
    Ok(())
}

/// Method names: 1–100 printable ASCII characters without separators.
pub fn method_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_METHOD_NAME_CHARS {
        return Err(Error::invalid(format!("method name must be 1-{MAX_METHOD_NAME_CHARS} characters")));
    }
    endpoint_name("method", name)
}

/// A method payload must be JSON and at most 128 KB.
pub fn method_payload(payload: &[u8]) -> Result<serde_json::Value> {
    if payload.len() > MAX_METHOD_PAYLOAD_BYTES {
        return Err(Error::new(
            ErrorKind::MessageTooLarge,
            format!("method payload is {} bytes; the limit is {MAX_METHOD_PAYLOAD_BYTES}", payload.len()),
        ));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(payload).map_err(|e| Error::invalid(format!("method payload is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(endpoint_name("output", "temperature_1").is_ok());
        for bad in ["", "a b", "a/b", "a#", "x\n", &"a".repeat(129)] {
            assert_eq!(endpoint_name("output", bad).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert!(identity_id("module", "filter-1").is_ok());
        assert!(identity_id("module", "fil ter").is_err());
    }

    #[test]
    fn size_limit_counts_properties() {
        let body = vec![0u8; MAX_MESSAGE_BYTES - 4];
        assert!(outgoing_message(&Message::new(body.clone())).is_ok());
        let e = outgoing_message(&Message::new(body).with_property("k", "vvvv")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
    }

    #[test]
    fn payloads() {
        assert_eq!(method_payload(b"").unwrap(), serde_json::Value::Null);
        assert!(method_payload(b"{").is_err());
        assert_eq!(
            method_payload(&vec![b' '; MAX_METHOD_PAYLOAD_BYTES + 1]).unwrap_err().kind(),
            ErrorKind::MessageTooLarge
        );
    }
}
