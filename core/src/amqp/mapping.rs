//! Messages ↔ AMQP (protocol.md §7.3, edgeHub's converter): AMQP properties carry the system
//! properties, `iothub-outputname` the output, the `x-opt-input-name` annotation the input, every
//! other application property is a user property; the body is one Data section.

use bytes::Bytes;
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, Message as AmqpMessage, MessageAnnotations, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Value};

use crate::message::{Message, SystemProperty};

/// Application property: the output a module sends on.
pub const OUTPUT_NAME: &str = "iothub-outputname";
/// Message annotation: the input a delivered message arrives on.
pub const INPUT_NAME: &str = "x-opt-input-name";
/// Message annotations edgeHub stamps on delivered messages.
pub const CONNECTION_DEVICE_ID: &str = "iothub-connection-device-id";
pub const CONNECTION_MODULE_ID: &str = "iothub-connection-module-id";
pub const ENQUEUED_TIME: &str = "iothub-enqueuedtime";
/// Application properties and annotations with a system meaning.
const MESSAGE_SCHEMA: &str = "iothub-message-schema";
const CREATION_TIME: &str = "iothub-creation-time-utc";
const OPERATION: &str = "iothub-operation";
const INTERFACE_ID: &str = "iothub-interface-id";
const COMPONENT: &str = "dt-subject";

/// The message type both sides send and receive: any body kind, usually one Data section.
pub type Amqp = AmqpMessage<Body<Value>>;

/// Application properties with a system meaning, and the property each one fills.
const SYSTEM_APP_PROPERTIES: [(&str, SystemProperty); 4] = [
    (OUTPUT_NAME, SystemProperty::OutputName),
    (MESSAGE_SCHEMA, SystemProperty::MessageSchema),
    (CREATION_TIME, SystemProperty::CreationTime),
    (OPERATION, SystemProperty::Operation),
];
/// Message annotations with a system meaning.
const SYSTEM_ANNOTATIONS: [(&str, SystemProperty); 4] = [
    (INTERFACE_ID, SystemProperty::InterfaceId),
    (COMPONENT, SystemProperty::ComponentName),
    (CONNECTION_DEVICE_ID, SystemProperty::ConnectionDeviceId),
    (CONNECTION_MODULE_ID, SystemProperty::ConnectionModuleId),
];

/// Builds the AMQP message for `msg`: system properties in the AMQP properties, the output name
/// and other system application properties, user properties, and `annotations` (name, value).
pub fn to_amqp(msg: &Message, annotations: &[(&str, Value)]) -> Amqp {
    let properties = Properties {
        message_id: msg.message_id().map(|v| MessageId::String(v.to_string())),
        correlation_id: msg.correlation_id().map(|v| MessageId::String(v.to_string())),
        user_id: msg.system(SystemProperty::UserId).map(|v| Binary::from(v.as_bytes().to_vec())),
        to: msg.system(SystemProperty::To).map(str::to_string),
        content_type: msg.content_type().map(|v| Symbol::from(v.to_string())),
        content_encoding: msg.content_encoding().map(|v| Symbol::from(v.to_string())),
        ..Default::default()
    };
    let mut app = ApplicationProperties::default();
    for (name, p) in SYSTEM_APP_PROPERTIES {
        if let Some(v) = msg.system(p) {
            app.0.insert(name.to_string(), SimpleValue::String(v.to_string()));
        }
    }
    for (k, v) in msg.properties() {
        app.0.insert(k.clone(), SimpleValue::String(v.clone()));
    }
    let mut ann = MessageAnnotations::default();
    for (name, p) in SYSTEM_ANNOTATIONS {
        if let Some(v) = msg.system(p) {
            ann.0.insert(OwnedKey::from(Symbol::from(name)), Value::String(v.to_string()));
        }
    }
    for (name, v) in annotations {
        ann.0.insert(OwnedKey::from(Symbol::from(*name)), v.clone());
    }
    AmqpMessage::builder()
        .properties(properties)
        .application_properties(app)
        .message_annotations(ann)
        .body(data_body(msg.body()))
        .build()
}

/// Reads an AMQP message into a `Message` (the input name from its annotation, when present).
pub fn from_amqp(amqp: &Amqp) -> Message {
    let mut msg = Message::new(body_bytes(&amqp.body));
    if let Some(p) = &amqp.properties {
        msg.set_system(SystemProperty::MessageId, p.message_id.as_ref().map(message_id_string));
        msg.set_system(SystemProperty::CorrelationId, p.correlation_id.as_ref().map(message_id_string));
        msg.set_system(SystemProperty::UserId, p.user_id.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()));
        msg.set_system(SystemProperty::To, p.to.clone());
        msg.set_system(SystemProperty::ContentType, p.content_type.as_ref().map(|s| s.0.clone()));
        msg.set_system(SystemProperty::ContentEncoding, p.content_encoding.as_ref().map(|s| s.0.clone()));
    }
    if let Some(app) = &amqp.application_properties {
        for (k, v) in app.0.iter() {
            let Some(v) = simple_string(v) else { continue };
            match SYSTEM_APP_PROPERTIES.iter().find(|(name, _)| k.eq_ignore_ascii_case(name)) {
                Some((_, p)) => msg.set_system(*p, Some(v)),
                None => msg.set_property(k.clone(), v),
            }
        }
    }
    for (name, p) in SYSTEM_ANNOTATIONS {
        if let Some(v) = annotation(amqp, name).and_then(value_string) {
            msg.set_system(p, Some(v));
        }
    }
    if let Some(input) = annotation(amqp, INPUT_NAME).and_then(value_string) {
        msg.set_input_name(Some(input));
    }
    msg
}

/// A Data section holding `bytes`.
pub fn data_body(bytes: &[u8]) -> Body<Value> {
    Body::from(Data(Binary::from(bytes.to_vec())))
}

/// The body's bytes: Data sections concatenated, a string or binary value as is, else empty.
pub fn body_bytes(body: &Body<Value>) -> Bytes {
    match body {
        Body::Data(sections) => {
            let mut out = Vec::new();
            for d in sections.iter() {
                out.extend_from_slice(&d.0);
            }
            out.into()
        }
        Body::Value(v) => match &v.0 {
            Value::String(s) => Bytes::from(s.clone().into_bytes()),
            Value::Binary(b) => Bytes::from(b.to_vec()),
            _ => Bytes::new(),
        },
        _ => Bytes::new(),
    }
}

/// A message annotation by (symbol or string) name.
pub fn annotation<'a>(amqp: &'a Amqp, name: &str) -> Option<&'a Value> {
    let ann = amqp.message_annotations.as_ref()?;
    ann.0.iter().find(|(k, _)| key_is(k, name)).map(|(_, v)| v)
}

/// An application property by name (case-insensitive: edgeHub reads `IoThub-status` that way).
pub fn app_property<'a>(amqp: &'a Amqp, name: &str) -> Option<&'a SimpleValue> {
    let app = amqp.application_properties.as_ref()?;
    app.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn key_is(key: &OwnedKey, name: &str) -> bool {
    match key {
        OwnedKey::Symbol(s) => s.0.eq_ignore_ascii_case(name),
        OwnedKey::Ulong(_) => false,
    }
}

/// A message or correlation id as text: uuids hyphenated (rhea sends UUID-looking ids as uuid).
pub fn message_id_string(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Uuid(u) => uuid::Uuid::from_bytes(*u.as_inner()).to_string(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Binary(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// A scalar as text (strings, symbols, numbers, booleans, uuids); `None` for the rest.
pub fn value_string(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Symbol(s) => s.0.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Ubyte(n) => n.to_string(),
        Value::Ushort(n) => n.to_string(),
        Value::Uint(n) => n.to_string(),
        Value::Ulong(n) => n.to_string(),
        Value::Byte(n) => n.to_string(),
        Value::Short(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Long(n) => n.to_string(),
        Value::Uuid(u) => uuid::Uuid::from_bytes(*u.as_inner()).to_string(),
        Value::Timestamp(t) => t.milliseconds().to_string(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => return None,
    })
}

/// An application property value as text.
pub fn simple_string(v: &SimpleValue) -> Option<String> {
    value_string(&Value::from(v.clone()))
}

/// An integer annotation or property value (any integer type, or a decimal string).
pub fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Ubyte(n) => Some(*n as i64),
        Value::Ushort(n) => Some(*n as i64),
        Value::Uint(n) => Some(*n as i64),
        Value::Ulong(n) => i64::try_from(*n).ok(),
        Value::Byte(n) => Some(*n as i64),
        Value::Short(n) => Some(*n as i64),
        Value::Int(n) => Some(*n as i64),
        Value::Long(n) => Some(*n),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_system_and_user_properties() {
        let mut m = Message::new(&b"{\"t\":1}"[..]);
        m.set_system(SystemProperty::MessageId, Some("mid-1".into()));
        m.set_system(SystemProperty::CorrelationId, Some("cid-1".into()));
        m.set_system(SystemProperty::ContentType, Some("application/json".into()));
        m.set_system(SystemProperty::ContentEncoding, Some("utf-8".into()));
        m.set_system(SystemProperty::OutputName, Some("out1".into()));
        m.set_property("k/2", "a&b=c");
        let amqp = to_amqp(&m, &[(INPUT_NAME, Value::String("in1".into()))]);
        assert!(app_property(&amqp, OUTPUT_NAME).is_some());
        let back = from_amqp(&amqp);
        assert_eq!(back.body(), m.body());
        assert_eq!(back.message_id(), Some("mid-1"));
        assert_eq!(back.correlation_id(), Some("cid-1"));
        assert_eq!(back.content_type(), Some("application/json"));
        assert_eq!(back.content_encoding(), Some("utf-8"));
        assert_eq!(back.output_name(), Some("out1"));
        assert_eq!(back.input_name(), Some("in1"));
        assert_eq!(back.property("k/2"), Some("a&b=c"));
        assert_eq!(back.properties().len(), 1);
    }

    #[test]
    fn uuid_ids_become_hyphenated_text() {
        let u = uuid::Uuid::new_v4();
        let id = MessageId::Uuid((*u.as_bytes()).into());
        assert_eq!(message_id_string(&id), u.to_string());
    }

    #[test]
    fn integers_of_any_width_are_read() {
        assert_eq!(value_i64(&Value::Int(200)), Some(200));
        assert_eq!(value_i64(&Value::Long(-3)), Some(-3));
        assert_eq!(value_i64(&Value::String("404".into())), Some(404));
        assert_eq!(value_i64(&Value::Bool(true)), None);
    }
}
