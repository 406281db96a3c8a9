//! The conformance suite's line protocol, shared by the driver (tests/) and the Rust agent:
//! `verb key=value ...` with percent-encoded values. See README.md.

pub mod line {
    use std::collections::HashMap;

    pub type Fields = HashMap<String, String>;

    /// Percent-encodes every byte except ASCII letters, digits and `-_.~`.
    pub fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    pub fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `k=v k=v` with percent-encoded values (and key segments between dots).
    pub fn parse_fields(s: &str) -> Fields {
        s.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.split('.').map(dec).collect::<Vec<_>>().join("."), dec(v)))
            .collect()
    }
}
