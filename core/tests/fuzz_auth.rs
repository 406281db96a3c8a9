//! Property-based fuzzing of what a module authenticates with (issue #11): SAS tokens
//! (parse never panics; a token verifies with its own key only), connection strings and the
//! IoT Edge environment (no panic on anything; valid inputs round-trip).
//!
//! Default case counts are small; `PROPTEST_CASES=N` runs longer (RELIABILITY.md).

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use edgemodule_core::auth::credentials::Credentials;
use edgemodule_core::wire::connection_string::{ConnectionString, Credential};
use edgemodule_core::wire::sas::{self, ParsedToken};
use edgemodule_core::{ErrorKind, ModuleIdentity};
use proptest::prelude::*;

fn config(default: u32) -> ProptestConfig {
    let mut c = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c
}

fn identity_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9\\-.+%_#*?!(),=@$']{1,32}"
}

fn host() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9\\-]{0,20}(\\.[a-z0-9\\-]{1,10}){0,3}"
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..64)
}

/// Token-ish text: mostly structured so the parser gets past its first checks.
fn token_ish() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "SharedAccessSignature[ \t]{0,2}((sr|SR|sig|se|skn|x)=?[A-Za-z0-9%/+=.]{0,12}&?){0,6}",]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn token_parsing_never_panics(t in token_ish(), k in key()) {
        if let Ok(p) = ParsedToken::parse(&t) {
            let _ = p.audience_parts();
            let _ = p.signed_by(&k);
            let _ = p.is_expired_at(u64::MAX);
            let _ = p.is_expired_at(0);
        }
        let _ = sas::decode_key(&t);
    }

    #[test]
    fn a_token_verifies_with_its_own_key_only(
        h in host(), d in identity_id(), m in identity_id(), k in key(), other in key(), expiry in any::<u64>()
    ) {
        prop_assume!(k != other);
        let token = sas::module_token(&h, &d, &m, &k, expiry);
        let p = ParsedToken::parse(&token).unwrap();
        prop_assert!(p.signed_by(&k));
        prop_assert!(!p.signed_by(&other));
        prop_assert_eq!(p.expiry, expiry);
        let aud = p.audience_parts().unwrap();
        prop_assert_eq!((aud.host, aud.device, aud.module), (h.clone(), d.clone(), Some(m.clone())));
        // The same signature does not verify another expiry or audience.
        let later = token.replace(&format!("se={expiry}"), &format!("se={}", expiry.wrapping_add(1)));
        prop_assert!(!ParsedToken::parse(&later).unwrap().signed_by(&k));
        let moved = sas::format_token(
            &edgemodule_core::wire::encoding::encode(&sas::module_resource_uri(&h, &d, &format!("{m}x"))),
            &p.signature_b64,
            expiry,
        );
        prop_assert!(!ParsedToken::parse(&moved).unwrap().signed_by(&k));
    }

    #[test]
    fn a_mutated_token_never_verifies(
        d in identity_id(), m in identity_id(), k in key(), expiry in any::<u64>(), at in any::<usize>(), c in any::<char>()
    ) {
        let token = sas::module_token("hub.example", &d, &m, &k, expiry);
        let mut chars: Vec<char> = token.chars().collect();
        let at = at % chars.len();
        prop_assume!(chars[at] != c);
        chars[at] = c;
        let mutated: String = chars.into_iter().collect();
        if let Ok(p) = ParsedToken::parse(&mutated) {
            // Unless the change was to the (case-insensitive) field name or the prefix's space,
            // or made a field unknown while a duplicate appeared, it must not verify.
            let same = ParsedToken::parse(&token).unwrap();
            if (p.raw_sr.as_str(), p.raw_se.as_str(), p.signature_b64.as_str())
                != (same.raw_sr.as_str(), same.raw_se.as_str(), same.signature_b64.as_str())
            {
                prop_assert!(!p.signed_by(&k), "{} verifies", mutated);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connection strings.

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(HostName|DeviceId|ModuleId|SharedAccessKey|SharedAccessSignature|GatewayHostName|x509|Bogus)?=?[A-Za-z0-9=+/ ]{0,12}",
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn connection_string_parsing_never_panics(segments in proptest::collection::vec(segment(), 0..8)) {
        let s = segments.join(";");
        match ConnectionString::parse(&s) {
            Ok(cs) => {
                // Whatever parsed writes back to something that parses to the same thing.
                prop_assert_eq!(ConnectionString::parse(&cs.to_connection_string()).unwrap(), cs);
            }
            Err(e) => prop_assert!(matches!(e.kind(), ErrorKind::InvalidArgument | ErrorKind::Unsupported), "{e}"),
        }
        let _ = ModuleIdentity::from_connection_string(&s, None);
    }

    #[test]
    fn valid_connection_strings_round_trip(
        h in host(), d in identity_id(), m in identity_id(), k in key(), g in proptest::option::of(host()),
        use_token in any::<bool>(), expiry in any::<u64>()
    ) {
        let credential = if use_token {
            Credential::SharedAccessSignature(sas::module_token(&h, &d, &m, &k, expiry))
        } else {
            Credential::SharedAccessKey(B64.encode(&k))
        };
        let cs = ConnectionString {
            host_name: h.clone(), device_id: d.clone(), module_id: m.clone(), gateway_host_name: g.clone(), credential,
        };
        let text = cs.to_connection_string();
        prop_assert_eq!(&ConnectionString::parse(&text).unwrap(), &cs);
        let id = ModuleIdentity::from_connection_string(&text, Some("PEM".into())).unwrap();
        prop_assert_eq!((&id.hub_host_name, &id.device_id, &id.module_id), (&h, &d, &m));
        prop_assert_eq!(&id.gateway_host_name, g.as_ref().unwrap_or(&h));
        prop_assert_eq!(id.can_invoke_methods, g.is_some());
        match (&id.credentials, use_token) {
            (Credentials::Key(decoded), false) => prop_assert_eq!(decoded, &k),
            (Credentials::Token(t), true) => prop_assert!(ParsedToken::parse(t).unwrap().signed_by(&k)),
            (other, _) => prop_assert!(false, "unexpected credentials {:?}", other),
        }
        // Segment order and surrounding blanks do not matter.
        let mut parts: Vec<&str> = text.split(';').collect();
        parts.reverse();
        let reordered = format!("  {} ; ", parts.join(" ;"));
        prop_assert_eq!(ConnectionString::parse(&reordered).unwrap(), cs);
    }
}

// ---------------------------------------------------------------------------------------------
// The IoT Edge environment. Workload URIs are kept to loopback/unix paths that do not exist, so
// nothing is ever contacted off this machine.

const VARS: &[&str] = &[
    "IOTEDGE_WORKLOADURI",
    "IOTEDGE_DEVICEID",
    "IOTEDGE_MODULEID",
    "IOTEDGE_IOTHUBHOSTNAME",
    "IOTEDGE_MODULEGENERATIONID",
    "IOTEDGE_GATEWAYHOSTNAME",
    "IOTEDGE_APIVERSION",
    "IOTEDGE_AUTHSCHEME",
    "EdgeHubConnectionString",
    "EdgeModuleCACertificateFile",
    "EDGEMODULE_MQTT_PORT",
    "EDGEMODULE_HTTPS_PORT",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fn ca_file() -> &'static (tempfile::TempDir, String) {
    static CA: std::sync::OnceLock<(tempfile::TempDir, String)> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n").unwrap();
        let path = path.to_str().unwrap().to_string();
        (dir, path)
    })
}

fn env_value(var: &'static str) -> BoxedStrategy<String> {
    let ca = ca_file().1.clone();
    match var {
        "IOTEDGE_WORKLOADURI" => prop_oneof![
            Just("unix:///nonexistent/edgemodule-fuzz/workload.sock".to_string()),
            Just("http://127.0.0.1:1/".to_string()),
            Just("unix://".to_string()),
            "[a-z:/]{0,12}".prop_map(|s| format!("x{s}")),
        ]
        .boxed(),
        "EdgeModuleCACertificateFile" => {
            prop_oneof![Just(ca), Just("/nonexistent/ca.pem".to_string()), Just(String::new())].boxed()
        }
        "EDGEMODULE_MQTT_PORT" | "EDGEMODULE_HTTPS_PORT" => prop_oneof!["[0-9]{0,6}", any::<String>()].boxed(),
        "EdgeHubConnectionString" => (identity_id(), identity_id(), key(), any::<String>(), any::<bool>())
            .prop_map(|(d, m, k, junk, good)| {
                if good {
                    format!(
                        "HostName=h;DeviceId={d};ModuleId={m};SharedAccessKey={};GatewayHostName=localhost",
                        B64.encode(k)
                    )
                } else {
                    junk
                }
            })
            .boxed(),
        _ => prop_oneof![identity_id(), any::<String>(), Just(" ".to_string())].boxed(),
    }
}

fn environment() -> impl Strategy<Value = HashMap<String, String>> {
    let per_var: Vec<_> =
        VARS.iter().map(|v| proptest::option::weighted(0.6, env_value(v)).prop_map(move |x| (*v, x))).collect();
    per_var.prop_map(|pairs| pairs.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn environment_parsing_never_panics_and_fails_as_configuration(env in environment()) {
        let lookup = |k: &str| env.get(k).cloned();
        let result = runtime().block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(15), ModuleIdentity::from_environment(&lookup)).await
        });
        match result.expect("environment parsing took more than 15 s") {
            Ok(id) => {
                // Only the connection-string fallback can succeed here (no workload API runs; an unreachable
                // one is a ConnectionRefused error below).
                let cs = ConnectionString::parse(env.get("EdgeHubConnectionString").unwrap()).unwrap();
                prop_assert_eq!((&id.device_id, &id.module_id), (&cs.device_id, &cs.module_id));
                // Blank variables count as absent.
                let port = |k: &str| env.get(k).filter(|v| !v.trim().is_empty()).map(|v| v.parse::<u16>().unwrap());
                prop_assert_eq!((id.mqtt_port, id.https_port), (port("EDGEMODULE_MQTT_PORT"), port("EDGEMODULE_HTTPS_PORT")));
            }
            Err(e) => prop_assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Configuration | ErrorKind::InvalidArgument | ErrorKind::ConnectionRefused | ErrorKind::ConnectionLost
                ),
                "{:?}: {}", e.kind(), e
            ),
        }
    }
}
