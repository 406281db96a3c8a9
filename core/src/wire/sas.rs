//! Shared-access-signature tokens (protocol.md §1.3–§1.4): how a module signs, and how the hub
//! verifies, exactly as edgeHub does. Both sides use this one file.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::encoding::{decode, encode};
use crate::error::{Error, Result};

/// edgeHub's allowed clock skew past `se`.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// The audience of a module's token: `{hub}/devices/{device}/modules/{module}`.
pub fn module_resource_uri(hub_host: &str, device: &str, module: &str) -> String {
    format!("{hub_host}/devices/{device}/modules/{module}")
}

/// What gets signed: the `sr` value exactly as written in the token, a newline, the expiry.
pub fn string_to_sign(encoded_sr: &str, expiry: u64) -> String {
    format!("{encoded_sr}\n{expiry}")
}

/// Decodes a base64 symmetric key, with a clear error for a malformed one.
pub fn decode_key(key_b64: &str) -> Result<Vec<u8>> {
    B64.decode(key_b64.trim()).map_err(|_| Error::invalid("SharedAccessKey is not valid base64")).and_then(|k| {
        if k.is_empty() {
            Err(Error::invalid("SharedAccessKey is empty"))
        } else {
            Ok(k)
        }
    })
}

/// HMAC-SHA256 of `data` with `key`, base64 encoded (the workload API's `digest`).
pub fn hmac_b64(key: &[u8], data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    B64.encode(mac.finalize().into_bytes())
}

/// Assembles a token from its parts; `sig_b64` is the plain base64 signature.
pub fn format_token(encoded_sr: &str, sig_b64: &str, expiry: u64) -> String {
    format!("SharedAccessSignature sr={encoded_sr}&sig={}&se={expiry}", encode(sig_b64))
}

/// Builds a module token signed with `key` (decoded), valid until `expiry` (Unix seconds).
pub fn module_token(hub_host: &str, device: &str, module: &str, key: &[u8], expiry: u64) -> String {
    let sr = encode(&module_resource_uri(hub_host, device, module));
    let sig = hmac_b64(key, string_to_sign(&sr, expiry).as_bytes());
    format_token(&sr, &sig, expiry)
}

/// A token split into its fields, as the verifier sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// `sr` exactly as written (still encoded): it is what was signed.
    pub raw_sr: String,
    /// `se` exactly as written.
    pub raw_se: String,
    /// The decoded audience, e.g. `hub/devices/d/modules/m`.
    pub audience: String,
    pub signature_b64: String,
    pub expiry: u64,
    pub key_name: Option<String>,
}

/// The identity a token's audience names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    pub host: String,
    pub device: String,
    pub module: Option<String>,
}

impl ParsedToken {
    /// Splits `SharedAccessSignature k=v&k=v…`: field names case-insensitive, any order.
    pub fn parse(token: &str) -> Result<ParsedToken> {
        let bad = |why: &str| Error::new(crate::ErrorKind::Unauthorized, format!("malformed SAS token: {why}"));
        let rest = token
            .strip_prefix("SharedAccessSignature")
            .filter(|r| r.starts_with(char::is_whitespace))
            .ok_or_else(|| bad("must start with 'SharedAccessSignature '"))?
            .trim_start();
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in rest.split('&') {
            let (name, value) = field.split_once('=').ok_or_else(|| bad("field without '='"))?;
            match name.to_ascii_lowercase().as_str() {
                "sr" => sr = Some(value.to_string()),
                "sig" => sig = Some(decode(value).ok_or_else(|| bad("sig is not UTF-8"))?),
                "se" => se = Some(value.to_string()),
                "skn" => skn = Some(decode(value).ok_or_else(|| bad("skn is not UTF-8"))?),
                _ => {}
            }
        }
        let raw_sr = sr.ok_or_else(|| bad("missing sr"))?;
        let raw_se = se.ok_or_else(|| bad("missing se"))?;
        let signature_b64 = sig.ok_or_else(|| bad("missing sig"))?;
        let expiry = raw_se.parse::<u64>().map_err(|_| bad("se is not an integer"))?;
        let audience = decode(&raw_sr).ok_or_else(|| bad("sr is not UTF-8"))?;
        Ok(ParsedToken { raw_sr, raw_se, audience, signature_b64, expiry, key_name: skn })
    }

    /// The audience split into host, device and optional module.
    pub fn audience_parts(&self) -> Result<Audience> {
        let segments: Vec<&str> = self.audience.trim_end_matches('/').split('/').collect();
        let bad = || {
            Error::new(
                crate::ErrorKind::Unauthorized,
                format!("token audience '{}' is not a device or module", self.audience),
            )
        };
        match segments.as_slice() {
            [host, "devices", device] => {
                Ok(Audience { host: host.to_string(), device: device.to_string(), module: None })
            }
            [host, "devices", device, "modules", module] => {
                Ok(Audience { host: host.to_string(), device: device.to_string(), module: Some(module.to_string()) })
            }
            _ => Err(bad()),
        }
    }

    /// Whether `key` (decoded) produced this signature.
    pub fn signed_by(&self, key: &[u8]) -> bool {
        let expected = hmac_b64(key, format!("{}\n{}", self.raw_sr, self.raw_se).as_bytes());
        constant_time_eq(expected.as_bytes(), self.signature_b64.as_bytes())
    }

    /// Whether the token is past `se` plus edgeHub's clock skew at `now` (Unix seconds).
    pub fn is_expired_at(&self, now: u64) -> bool {
        now > self.expiry.saturating_add(MAX_CLOCK_SKEW_SECS)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn matches_the_reference_vector() {
        // protocol.md §1.4 worked example.
        let key = decode_key(KEY).unwrap();
        let token = module_token("myhub.azure-devices.net", "edge1", "filter", &key, 1_700_000_000);
        assert_eq!(
            token,
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fedge1%2Fmodules%2Ffilter\
             &sig=Z9MVA5MQLovKhLgVFsqEK%2FW9dcjHkN%2BSRB85b1SL0yY%3D&se=1700000000"
        );
        let lower = "myhub.azure-devices.net%2fdevices%2fedge1%2fmodules%2ffilter";
        assert_eq!(
            hmac_b64(&key, string_to_sign(lower, 1_700_000_000).as_bytes()),
            "nYd0DFOsFCbsa6s3BYEZ49vXD3cLHvIfSqAn8wM1mV0="
        );
    }

    #[test]
    fn workload_sign_data_matches_reference() {
        let sr = "myhub.azure-devices.net%2Fdevices%2Fedge1%2Fmodules%2Ffilter";
        assert_eq!(
            B64.encode(string_to_sign(sr, 1_700_000_000)),
            "bXlodWIuYXp1cmUtZGV2aWNlcy5uZXQlMkZkZXZpY2VzJTJGZWRnZTElMkZtb2R1bGVzJTJGZmlsdGVyCjE3MDAwMDAwMDA="
        );
    }

    #[test]
    fn verifies_in_any_field_order_and_case() {
        let key = decode_key(KEY).unwrap();
        let token = module_token("h.example", "d", "m", &key, 2_000_000_000);
        let parsed = ParsedToken::parse(&token).unwrap();
        assert!(parsed.signed_by(&key));
        assert!(!parsed.signed_by(b"other"));
        let fields: Vec<&str> = token["SharedAccessSignature ".len()..].split('&').collect();
        let reordered = format!("SharedAccessSignature {}&SE={}&{}", fields[1], &fields[2][3..], fields[0]);
        let p2 = ParsedToken::parse(&reordered).unwrap();
        assert!(p2.signed_by(&key));
        assert_eq!(
            p2.audience_parts().unwrap(),
            Audience { host: "h.example".into(), device: "d".into(), module: Some("m".into()) }
        );
    }

    #[test]
    fn expiry_allows_five_minutes_of_skew() {
        let key = decode_key(KEY).unwrap();
        let p = ParsedToken::parse(&module_token("h", "d", "m", &key, 1000)).unwrap();
        assert!(!p.is_expired_at(1300));
        assert!(p.is_expired_at(1301));
    }

    #[test]
    fn rejects_malformed_tokens() {
        for t in [
            "",
            "SharedAccessSignaturesr=a",
            "SharedAccessSignature sr=a&se=1",
            "SharedAccessSignature sig=a&se=1",
            "SharedAccessSignature sr=a&sig=b&se=x",
            "Bearer x",
        ] {
            assert!(ParsedToken::parse(t).is_err(), "{t}");
        }
        assert!(decode_key("not base64!").is_err());
    }
}
