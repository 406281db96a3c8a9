//! CBS put-token (protocol.md §7.1): the request a client sends to `$cbs` after the connection
//! opens (and again before the token expires), and the hub's answer.

use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Message as AmqpMessage, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};

use super::mapping::{app_property, data_body, message_id_string, simple_string, value_i64, Amqp};

pub const PUT_TOKEN: &str = "put-token";
/// The token type the SDKs send; edgeHub also accepts `azure-devices.net:sastoken`.
pub const TOKEN_TYPE: &str = "servicebus.windows.net:sastoken";
const ALT_TOKEN_TYPE: &str = "azure-devices.net:sastoken";

/// A parsed put-token request.
#[derive(Debug, Clone, PartialEq)]
pub struct PutToken {
    /// The request's message id, echoed as the response's correlation id.
    pub message_id: Option<MessageId>,
    /// The `name` property: the token's audience (URL-encoded or not).
    pub audience: String,
    pub token: String,
}

/// The hub's answer to a put-token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutTokenResponse {
    pub correlation_id: Option<String>,
    pub status: i64,
    pub description: String,
}

/// The put-token request for `audience` (the token's `sr`) carrying `token`.
pub fn request(message_id: &str, audience: &str, token: &str) -> Amqp {
    let app = ApplicationProperties::builder()
        .insert("operation", SimpleValue::String(PUT_TOKEN.into()))
        .insert("type", SimpleValue::String(TOKEN_TYPE.into()))
        .insert("name", SimpleValue::String(audience.into()))
        .build();
    let properties = Properties {
        message_id: Some(MessageId::String(message_id.into())),
        to: Some(super::address::CBS.into()),
        reply_to: Some("cbs".into()),
        ..Default::default()
    };
    AmqpMessage::builder()
        .properties(properties)
        .application_properties(app)
        .body(Body::Value(AmqpValue(Value::String(token.into()))))
        .build()
}

/// Reads a put-token request; the error says what is missing or wrong.
pub fn parse_request(msg: &Amqp) -> Result<PutToken, String> {
    let prop = |name: &str| app_property(msg, name).and_then(simple_string);
    let operation = prop("operation").ok_or("no 'operation' application property")?;
    if !operation.eq_ignore_ascii_case(PUT_TOKEN) {
        return Err(format!("unsupported CBS operation '{operation}'"));
    }
    let kind = prop("type").ok_or("no 'type' application property")?;
    if !kind.eq_ignore_ascii_case(TOKEN_TYPE) && !kind.eq_ignore_ascii_case(ALT_TOKEN_TYPE) {
        return Err(format!("unsupported token type '{kind}'"));
    }
    let audience = prop("name").ok_or("no 'name' application property")?;
    let token = match &msg.body {
        Body::Value(AmqpValue(Value::String(s))) => s.clone(),
        other => String::from_utf8(super::mapping::body_bytes(other).to_vec()).map_err(|_| "token is not UTF-8")?,
    };
    if token.is_empty() {
        return Err("empty token".into());
    }
    Ok(PutToken { message_id: msg.properties.as_ref().and_then(|p| p.message_id.clone()), audience, token })
}

/// The answer: `status-code` (200 = accepted) and `status-description`, correlated to the request.
pub fn response(correlation_id: Option<MessageId>, status: i32, description: &str) -> Amqp {
    let app = ApplicationProperties::builder()
        .insert("status-code", SimpleValue::Int(status))
        .insert("status-description", SimpleValue::String(description.into()))
        .build();
    let properties = Properties { correlation_id, ..Default::default() };
    AmqpMessage::builder().properties(properties).application_properties(app).body(data_body(b"")).build()
}

/// Reads the hub's answer.
pub fn parse_response(msg: &Amqp) -> PutTokenResponse {
    let correlation_id = msg.properties.as_ref().and_then(|p| p.correlation_id.as_ref()).map(message_id_string);
    let status = app_property(msg, "status-code").and_then(|v| value_i64(&Value::from(v.clone()))).unwrap_or(0);
    let description = app_property(msg, "status-description").and_then(simple_string).unwrap_or_default();
    PutTokenResponse { correlation_id, status, description }
}

/// The identity a put-token names: `name` URL-decoded, without `amqps://`, as
/// `{host}/devices/{d}/modules/{m}` → (host, device, module).
pub fn audience_identity(name: &str) -> Option<(String, String, String)> {
    let decoded = crate::wire::encoding::decode(name).unwrap_or_else(|| name.to_string());
    let path = decoded.split_once("://").map_or(decoded.as_str(), |(_, rest)| rest);
    match path.trim_end_matches('/').split('/').collect::<Vec<_>>().as_slice() {
        [host, devices, d, modules, m]
            if devices.eq_ignore_ascii_case("devices") && modules.eq_ignore_ascii_case("modules") =>
        {
            Some((host.to_string(), d.to_string(), m.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let req = request("id-1", "h.net%2Fdevices%2Fd%2Fmodules%2Fm", "SharedAccessSignature sr=x&sig=y&se=1");
        let parsed = parse_request(&req).unwrap();
        assert_eq!(parsed.audience, "h.net%2Fdevices%2Fd%2Fmodules%2Fm");
        assert_eq!(parsed.token, "SharedAccessSignature sr=x&sig=y&se=1");
        assert_eq!(parsed.message_id, Some(MessageId::String("id-1".into())));
        let resp = parse_response(&response(parsed.message_id, 200, "OK"));
        assert_eq!(
            resp,
            PutTokenResponse { correlation_id: Some("id-1".into()), status: 200, description: "OK".into() }
        );
    }

    #[test]
    fn audiences() {
        let want = Some(("h.net".to_string(), "d".to_string(), "m".to_string()));
        assert_eq!(audience_identity("h.net%2Fdevices%2Fd%2Fmodules%2Fm"), want);
        assert_eq!(audience_identity("amqps://h.net/devices/d/modules/m"), want);
        assert_eq!(audience_identity("h.net/devices/d"), None);
    }

    #[test]
    fn rejects_other_operations() {
        let mut req = request("id", "a", "t");
        req.application_properties.as_mut().unwrap().0.insert("operation".into(), SimpleValue::String("x".into()));
        assert!(parse_request(&req).unwrap_err().contains("unsupported CBS operation"));
    }
}
