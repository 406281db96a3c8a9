//! Module connection strings (protocol.md §6): `Key=Value;…`, split on the first `=`.

use crate::error::{Error, Result};
use crate::validate;

/// How a connection string authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A base64 symmetric key; tokens are minted and renewed from it.
    SharedAccessKey(String),
    /// A ready-made token; it cannot be renewed.
    SharedAccessSignature(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, not even in debug output.
        match self {
            Credential::SharedAccessKey(_) => f.write_str("SharedAccessKey(<redacted>)"),
            Credential::SharedAccessSignature(_) => f.write_str("SharedAccessSignature(<redacted>)"),
        }
    }
}

/// A parsed module connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub host_name: String,
    pub device_id: String,
    pub module_id: String,
    pub gateway_host_name: Option<String>,
    pub credential: Credential,
}

const KNOWN_KEYS: [&str; 9] = [
    "HostName",
    "DeviceId",
    "ModuleId",
    "SharedAccessKey",
    "SharedAccessKeyName",
    "SharedAccessSignature",
    "GatewayHostName",
    "x509",
    "UseProvisioning",
];

impl ConnectionString {
    pub fn parse(s: &str) -> Result<ConnectionString> {
        let mut fields: Vec<(&str, &str)> = Vec::new();
        for segment in s.trim().split(';').filter(|seg| !seg.trim().is_empty()) {
            let (k, v) = segment
                .split_once('=')
                .ok_or_else(|| Error::invalid(format!("connection string segment '{}' has no '='", redact(segment))))?;
            let k = k.trim();
            if !KNOWN_KEYS.contains(&k) {
                return Err(Error::invalid(format!("connection string has an unknown key '{k}'")));
            }
            if fields.iter().any(|(seen, _)| *seen == k) {
                return Err(Error::invalid(format!("connection string has '{k}' twice")));
            }
            fields.push((k, v.trim()));
        }
        let get =
            |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string()).filter(|v| !v.is_empty());
        let need = |k: &str| get(k).ok_or_else(|| Error::invalid(format!("connection string is missing {k}")));
        let host_name = need("HostName")?;
        let device_id = need("DeviceId")?;
        let module_id = need("ModuleId")?;
        validate::identity_id("DeviceId", &device_id)?;
        validate::identity_id("ModuleId", &module_id)?;
        if get("x509").is_some() {
            return Err(Error::new(
                crate::ErrorKind::Unsupported,
                "x509 connection strings are not supported; use a SharedAccessKey",
            ));
        }
        if get("SharedAccessKeyName").is_some() {
            return Err(Error::invalid("SharedAccessKeyName is for service policies, not module identities"));
        }
        let credential = match (get("SharedAccessKey"), get("SharedAccessSignature")) {
            (Some(key), None) => {
                crate::wire::sas::decode_key(&key)?;
                Credential::SharedAccessKey(key)
            }
            (None, Some(sig)) => {
                crate::wire::sas::ParsedToken::parse(&sig)
                    .map_err(|e| Error::invalid(format!("SharedAccessSignature: {}", e.message())))?;
                Credential::SharedAccessSignature(sig)
            }
            (Some(_), Some(_)) => {
                return Err(Error::invalid("connection string has both SharedAccessKey and SharedAccessSignature"))
            }
            (None, None) => return Err(Error::invalid("connection string is missing SharedAccessKey")),
        };
        Ok(ConnectionString { host_name, device_id, module_id, gateway_host_name: get("GatewayHostName"), credential })
    }

    /// Writes the connection string back (the hub's `connection-string` command uses this).
    pub fn to_connection_string(&self) -> String {
        let mut s = format!("HostName={};DeviceId={};ModuleId={}", self.host_name, self.device_id, self.module_id);
        match &self.credential {
            Credential::SharedAccessKey(k) => s.push_str(&format!(";SharedAccessKey={k}")),
            Credential::SharedAccessSignature(t) => s.push_str(&format!(";SharedAccessSignature={t}")),
        }
        if let Some(g) = &self.gateway_host_name {
            s.push_str(&format!(";GatewayHostName={g}"));
        }
        s
    }
}

/// Keeps a malformed segment's key visible and hides anything that may be a secret.
fn redact(segment: &str) -> String {
    let shown: String = segment.chars().take(16).collect();
    if segment.len() > 16 {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn parses_and_round_trips() {
        let s = format!("HostName=h.example;DeviceId=d;ModuleId=m;SharedAccessKey={KEY};GatewayHostName=localhost");
        let cs = ConnectionString::parse(&s).unwrap();
        assert_eq!(cs.gateway_host_name.as_deref(), Some("localhost"));
        assert_eq!(cs.credential, Credential::SharedAccessKey(KEY.into()));
        assert_eq!(cs.to_connection_string(), s);
        assert!(!format!("{cs:?}").contains(KEY));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "HostName=h;DeviceId=d;SharedAccessKey=a2V5",
            "HostName=h;DeviceId=d;ModuleId=m",
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=!!",
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;Bogus=1",
            "HostName=h;HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5",
            "HostName=h;DeviceId=d;ModuleId=m;garbage",
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessSignature=nope",
        ] {
            let e = ConnectionString::parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad}: {e}");
        }
    }
}
