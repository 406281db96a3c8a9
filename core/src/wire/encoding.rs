//! Percent-encoding as IoT Hub and edgeHub use it: RFC 3986 unreserved characters stay,
//! everything else becomes `%XX` with uppercase hex (`Uri.EscapeDataString`, Python `quote(safe="")`).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything except `A-Z a-z 0-9 - . _ ~` is encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes `s` so it is safe as one topic level, query key or query value.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_official_sdks() {
        // wire.md: `k/2="a&b=c"` → `k%2F2=a%26b%3Dc`, `v 1` → `v%201`, `$.on` → `%24.on`.
        assert_eq!(encode("k/2"), "k%2F2");
        assert_eq!(encode("a&b=c"), "a%26b%3Dc");
        assert_eq!(encode("v 1"), "v%201");
        assert_eq!(encode("$.on"), "%24.on");
        assert_eq!(encode("application/json"), "application%2Fjson");
        assert_eq!(decode("a%26b%3Dc").as_deref(), Some("a&b=c"));
        assert_eq!(decode("%ff"), None);
    }
}
