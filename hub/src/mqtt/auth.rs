//! CONNECT authentication as edgeHub does it (protocol.md §1.2–§1.4): username shape, client id
//! equal to the identity, SAS token signed with the module's key for the right audience.

use edgemodule_core::wire::sas::{unix_now, ParsedToken};

use crate::hub::Hub;

/// An authenticated module connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub device: String,
    pub module: String,
    /// When the token stops being valid (Unix seconds, clock skew included).
    pub valid_until: u64,
}

/// Checks CONNECT's client id, username and password. The error text is for the log and never
/// contains the token.
pub fn authenticate(hub: &Hub, client_id: &str, username: &str, password: &str) -> Result<Authenticated, String> {
    let (device, module) = parse_username(username)?;
    if client_id != format!("{device}/{module}") {
        return Err(format!("client id '{client_id}' does not match username identity '{device}/{module}'"));
    }
    authenticate_token(hub, device, module, password)
}

/// Verifies a SAS token presented for `device/module` (MQTT password, AMQP CBS put-token or
/// SASL PLAIN password): this edge device, a deployed module, and `check_token`.
pub fn authenticate_token(hub: &Hub, device: &str, module: &str, token: &str) -> Result<Authenticated, String> {
    if device != hub.identity.device_id {
        return Err(format!("device '{device}' is not this edge device"));
    }
    let key = hub.module_key(module).ok_or_else(|| format!("module '{module}' is not deployed"))?;
    let token = ParsedToken::parse(token).map_err(|e| e.message().to_string())?;
    check_token(hub, &token, device, module, key)?;
    Ok(Authenticated {
        device: device.to_string(),
        module: module.to_string(),
        valid_until: token.expiry + edgemodule_core::wire::sas::MAX_CLOCK_SKEW_SECS,
    })
}

/// Verifies a token for `device/module`: audience, expiry and signature.
pub fn check_token(hub: &Hub, token: &ParsedToken, device: &str, module: &str, key: &[u8]) -> Result<(), String> {
    let audience = token.audience_parts().map_err(|e| e.message().to_string())?;
    let host_ok = audience.host.eq_ignore_ascii_case(&hub.identity.hub_host_name)
        || audience.host.eq_ignore_ascii_case(&hub.identity.gateway_host_name);
    if !host_ok {
        return Err(format!("token audience host '{}' is neither the hub nor the gateway", audience.host));
    }
    let module_ok = audience.module.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(module));
    if !audience.device.eq_ignore_ascii_case(device) || !module_ok {
        return Err(format!("token audience '{}' is for another identity than {device}/{module}", token.audience));
    }
    if token.is_expired_at(unix_now()) {
        return Err(format!("token for {device}/{module} expired at {}", token.expiry));
    }
    if !token.signed_by(key) {
        return Err(format!("token signature for {device}/{module} does not match the module key"));
    }
    Ok(())
}

/// `{hub}/{device}/{module}/?api-version=…` → (device, module). The host is not checked
/// (edgeHub ignores it); api-version is required but its value is not.
pub fn parse_username(username: &str) -> Result<(&str, &str), String> {
    let segments: Vec<&str> = username.split('/').collect();
    let (device, module, query) = match segments.as_slice() {
        [_host, device, module, query] if query.starts_with('?') => (*device, *module, &query[1..]),
        _ => return Err(format!("username '{username}' is not '{{hub}}/{{device}}/{{module}}/?api-version=…'")),
    };
    let has_api_version =
        query.split('&').any(|kv| kv.split_once('=').is_some_and(|(k, v)| k == "api-version" && !v.is_empty()));
    if !has_api_version {
        return Err("username has no api-version".into());
    }
    if device.is_empty() || module.is_empty() {
        return Err("username has an empty device or module id".into());
    }
    Ok((device, module))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(parse_username("h.net/d/m/?api-version=2019-10-01&DeviceClientType=x%2F1").unwrap(), ("d", "m"));
        assert!(parse_username("h.net/d/m/?DeviceClientType=x").is_err());
        assert!(parse_username("h.net/d/?api-version=1").is_err());
        assert!(parse_username("h.net/d/m/x/?api-version=1").is_err());
    }
}
