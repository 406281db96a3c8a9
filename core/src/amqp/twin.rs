//! Twin and direct methods over AMQP (protocol.md §7.4, §7.5): requests carry `operation` and
//! `resource` message annotations and a correlation id; responses a `status` annotation; method
//! calls the `IoThub-methodname` property, their answers `IoThub-status`.

use bytes::Bytes;
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Message as AmqpMessage, MessageAnnotations, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::{SimpleValue, Symbol, Value};

use super::mapping::{
    annotation, app_property, body_bytes, data_body, message_id_string, simple_string, value_i64, value_string, Amqp,
};

pub const REPORTED_RESOURCE: &str = "/properties/reported";
pub const DESIRED_NOTIFICATIONS: &str = "/notifications/twin/properties/desired";
pub const METHOD_NAME: &str = "IoThub-methodname";
pub const METHOD_STATUS: &str = "IoThub-status";
/// Link attach properties of twin and method links.
pub const API_VERSION_PROPERTY: &str = "com.microsoft:api-version";
pub const CHANNEL_CORRELATION_PROPERTY: &str = "com.microsoft:channel-correlation-id";
pub const CLIENT_VERSION_PROPERTY: &str = "com.microsoft:client-version";

/// What a twin request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwinOperation {
    Get,
    PatchReported(Bytes),
    /// PUT on the desired notifications resource.
    SubscribeDesired,
    /// DELETE on it.
    UnsubscribeDesired,
}

/// A twin request message.
pub fn request(correlation_id: &str, op: &TwinOperation) -> Amqp {
    let (operation, resource, body): (&str, Option<&str>, &[u8]) = match op {
        TwinOperation::Get => ("GET", None, b" "),
        TwinOperation::PatchReported(b) => ("PATCH", Some(REPORTED_RESOURCE), b),
        TwinOperation::SubscribeDesired => ("PUT", Some(DESIRED_NOTIFICATIONS), b" "),
        TwinOperation::UnsubscribeDesired => ("DELETE", Some(DESIRED_NOTIFICATIONS), b" "),
    };
    let mut ann = MessageAnnotations::default();
    ann.0.insert(key("operation"), Value::String(operation.into()));
    if let Some(r) = resource {
        ann.0.insert(key("resource"), Value::String(r.into()));
    }
    AmqpMessage::builder()
        .properties(correlated(MessageId::String(correlation_id.into())))
        .message_annotations(ann)
        .body(data_body(body))
        .build()
}

/// Reads a twin request: (correlation id as sent, operation).
pub fn parse_request(msg: &Amqp) -> Result<(Option<MessageId>, TwinOperation), String> {
    let correlation = msg.properties.as_ref().and_then(|p| p.correlation_id.clone());
    let operation = annotation(msg, "operation").and_then(value_string).ok_or("no 'operation' annotation")?;
    let resource = annotation(msg, "resource").and_then(value_string).unwrap_or_default();
    let resource = resource.trim_end_matches('/');
    let op = match operation.to_ascii_uppercase().as_str() {
        "GET" => TwinOperation::Get,
        "PATCH" if resource.eq_ignore_ascii_case(REPORTED_RESOURCE) => {
            TwinOperation::PatchReported(body_bytes(&msg.body))
        }
        "PUT" if resource.eq_ignore_ascii_case(DESIRED_NOTIFICATIONS) => TwinOperation::SubscribeDesired,
        "DELETE" if resource.eq_ignore_ascii_case(DESIRED_NOTIFICATIONS) => TwinOperation::UnsubscribeDesired,
        _ => return Err(format!("unsupported twin operation '{operation}' on '{resource}'")),
    };
    if correlation.is_none() {
        return Err("twin request without a correlation id".into());
    }
    Ok((correlation, op))
}

/// A twin response: the request's correlation id, a `status` annotation and a body (the twin
/// document for GET).
pub fn response(correlation_id: Option<MessageId>, status: i32, body: &[u8]) -> Amqp {
    let mut ann = MessageAnnotations::default();
    ann.0.insert(key("status"), Value::Int(status));
    let properties = Properties { correlation_id, ..Default::default() };
    AmqpMessage::builder().properties(properties).message_annotations(ann).body(data_body(body)).build()
}

/// What arrives on the twin receiver link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwinInbound {
    Response {
        correlation_id: String,
        status: i64,
        body: Bytes,
    },
    /// A desired-properties patch (no correlation id).
    DesiredPatch(Bytes),
}

pub fn parse_inbound(msg: &Amqp) -> TwinInbound {
    let body = body_bytes(&msg.body);
    match msg.properties.as_ref().and_then(|p| p.correlation_id.as_ref()) {
        Some(id) => TwinInbound::Response {
            correlation_id: message_id_string(id),
            status: annotation(msg, "status").and_then(value_i64).unwrap_or(200),
            body,
        },
        None => TwinInbound::DesiredPatch(body),
    }
}

/// A desired-properties patch notification.
pub fn desired_patch(body: &[u8]) -> Amqp {
    AmqpMessage::builder().body(data_body(body)).build()
}

/// A direct-method request (hub → module).
pub fn method_request(rid: &str, name: &str, payload: &[u8]) -> Amqp {
    let app = ApplicationProperties::builder().insert(METHOD_NAME, SimpleValue::String(name.into())).build();
    AmqpMessage::builder()
        .properties(correlated(MessageId::String(rid.into())))
        .application_properties(app)
        .body(data_body(payload))
        .build()
}

/// A method call as the module sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodCall {
    pub rid: String,
    pub name: String,
    pub payload: Bytes,
}

pub fn parse_method_request(msg: &Amqp) -> Result<MethodCall, String> {
    let rid = msg
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.as_ref())
        .ok_or("method request without a correlation id")?;
    let name = app_property(msg, METHOD_NAME).and_then(simple_string).ok_or("method request without a name")?;
    Ok(MethodCall { rid: message_id_string(rid), name, payload: body_bytes(&msg.body) })
}

/// A method response (module → hub).
pub fn method_response(rid: &str, status: i64, payload: &[u8]) -> Amqp {
    let status = i32::try_from(status).map(SimpleValue::Int).unwrap_or(SimpleValue::Long(status));
    let app = ApplicationProperties::builder().insert(METHOD_STATUS, status).build();
    AmqpMessage::builder()
        .properties(correlated(MessageId::String(rid.into())))
        .application_properties(app)
        .body(data_body(payload))
        .build()
}

/// A method response as the hub reads it: (rid, status, payload). A status that is not an
/// integer becomes 400000, as edgeHub does for MQTT.
pub fn parse_method_response(msg: &Amqp) -> Result<(String, i64, Bytes), String> {
    let rid = msg
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.as_ref())
        .ok_or("method response without a correlation id")?;
    let status = app_property(msg, METHOD_STATUS).and_then(|v| value_i64(&Value::from(v.clone()))).unwrap_or(400_000);
    Ok((message_id_string(rid), status, body_bytes(&msg.body)))
}

fn correlated(id: MessageId) -> Properties {
    Properties { correlation_id: Some(id), ..Default::default() }
}

fn key(name: &str) -> OwnedKey {
    OwnedKey::from(Symbol::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_requests_round_trip() {
        for op in [
            TwinOperation::Get,
            TwinOperation::PatchReported(Bytes::from_static(b"{\"a\":1}")),
            TwinOperation::SubscribeDesired,
            TwinOperation::UnsubscribeDesired,
        ] {
            let (id, parsed) = parse_request(&request("c-1", &op)).unwrap();
            assert_eq!(id, Some(MessageId::String("c-1".into())));
            assert_eq!(parsed, op);
        }
    }

    #[test]
    fn twin_responses_and_patches() {
        let r = parse_inbound(&response(Some(MessageId::String("c".into())), 204, b""));
        assert_eq!(r, TwinInbound::Response { correlation_id: "c".into(), status: 204, body: Bytes::new() });
        assert_eq!(parse_inbound(&desired_patch(b"{}")), TwinInbound::DesiredPatch(Bytes::from_static(b"{}")));
    }

    #[test]
    fn methods_round_trip() {
        let call = parse_method_request(&method_request("r1", "reboot", b"{}")).unwrap();
        assert_eq!(call, MethodCall { rid: "r1".into(), name: "reboot".into(), payload: Bytes::from_static(b"{}") });
        let (rid, status, body) = parse_method_response(&method_response("r1", 201, b"[1]")).unwrap();
        assert_eq!((rid.as_str(), status, &body[..]), ("r1", 201, &b"[1]"[..]));
    }

    #[test]
    fn unknown_twin_operations_are_errors() {
        let mut m = request("c", &TwinOperation::Get);
        m.message_annotations.as_mut().unwrap().0.insert(key("operation"), Value::String("POST".into()));
        assert!(parse_request(&m).is_err());
    }
}
