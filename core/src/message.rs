//! `Message`: a body plus system and application properties, the unit that flows through outputs,
//! routes and inputs.

use bytes::Bytes;

/// A system property: one a module or the hub sets with a defined meaning (protocol.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SystemProperty {
    MessageId,
    CorrelationId,
    UserId,
    To,
    ContentType,
    ContentEncoding,
    CreationTime,
    ExpiryTime,
    MessageSchema,
    ComponentName,
    InterfaceId,
    ConnectionDeviceId,
    ConnectionModuleId,
    OutputName,
    Operation,
}

impl SystemProperty {
    pub const ALL: [SystemProperty; 15] = [
        SystemProperty::MessageId,
        SystemProperty::CorrelationId,
        SystemProperty::UserId,
        SystemProperty::To,
        SystemProperty::ContentType,
        SystemProperty::ContentEncoding,
        SystemProperty::CreationTime,
        SystemProperty::ExpiryTime,
        SystemProperty::MessageSchema,
        SystemProperty::ComponentName,
        SystemProperty::InterfaceId,
        SystemProperty::ConnectionDeviceId,
        SystemProperty::ConnectionModuleId,
        SystemProperty::OutputName,
        SystemProperty::Operation,
    ];

    /// The decoded key in an MQTT property bag.
    pub fn wire_key(self) -> &'static str {
        match self {
            SystemProperty::MessageId => "$.mid",
            SystemProperty::CorrelationId => "$.cid",
            SystemProperty::UserId => "$.uid",
            SystemProperty::To => "$.to",
            SystemProperty::ContentType => "$.ct",
            SystemProperty::ContentEncoding => "$.ce",
            SystemProperty::CreationTime => "$.ctime",
            SystemProperty::ExpiryTime => "$.exp",
            SystemProperty::MessageSchema => "$.schema",
            SystemProperty::ComponentName => "$.sub",
            SystemProperty::InterfaceId => "$.ifid",
            SystemProperty::ConnectionDeviceId => "$.cdid",
            SystemProperty::ConnectionModuleId => "$.cmid",
            SystemProperty::OutputName => "$.on",
            SystemProperty::Operation => "iothub-operation",
        }
    }

    /// edgeHub's internal name, which route conditions use as `$name`.
    pub fn route_name(self) -> &'static str {
        match self {
            SystemProperty::MessageId => "messageId",
            SystemProperty::CorrelationId => "cid",
            SystemProperty::UserId => "userId",
            SystemProperty::To => "to",
            SystemProperty::ContentType => "contentType",
            SystemProperty::ContentEncoding => "contentEncoding",
            SystemProperty::CreationTime => "creationTime",
            SystemProperty::ExpiryTime => "absolute-expiry-time",
            SystemProperty::MessageSchema => "messageSchema",
            SystemProperty::ComponentName => "dt-subject",
            SystemProperty::InterfaceId => "iothub-interface-id",
            SystemProperty::ConnectionDeviceId => "connectionDeviceId",
            SystemProperty::ConnectionModuleId => "connectionModuleId",
            SystemProperty::OutputName => "outputName",
            SystemProperty::Operation => "operation",
        }
    }

    pub fn from_wire_key(key: &str) -> Option<SystemProperty> {
        Self::ALL.iter().copied().find(|p| p.wire_key() == key)
    }

    pub fn from_route_name(name: &str) -> Option<SystemProperty> {
        Self::ALL.iter().copied().find(|p| p.route_name() == name)
    }

    /// Whether the hub forwards this property to the receiving module (edgeHub drops `$.on` and `$.ifid`).
    pub fn forwarded_to_receiver(self) -> bool {
        !matches!(self, SystemProperty::OutputName | SystemProperty::InterfaceId)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A message: body bytes, system properties and application properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    body: Bytes,
    system: [Option<String>; 15],
    properties: Vec<(String, String)>,
    input_name: Option<String>,
}

impl Message {
    pub fn new(body: impl Into<Bytes>) -> Self {
        Message { body: body.into(), ..Default::default() }
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
    }

    pub fn system(&self, p: SystemProperty) -> Option<&str> {
        self.system[p.index()].as_deref()
    }
    pub fn set_system(&mut self, p: SystemProperty, value: Option<String>) {
        self.system[p.index()] = value;
    }
    /// All set system properties in a stable order.
    pub fn system_properties(&self) -> impl Iterator<Item = (SystemProperty, &str)> {
        SystemProperty::ALL.iter().filter_map(|p| self.system(*p).map(|v| (*p, v)))
    }

    pub fn message_id(&self) -> Option<&str> {
        self.system(SystemProperty::MessageId)
    }
    pub fn correlation_id(&self) -> Option<&str> {
        self.system(SystemProperty::CorrelationId)
    }
    pub fn content_type(&self) -> Option<&str> {
        self.system(SystemProperty::ContentType)
    }
    pub fn content_encoding(&self) -> Option<&str> {
        self.system(SystemProperty::ContentEncoding)
    }
    pub fn connection_device_id(&self) -> Option<&str> {
        self.system(SystemProperty::ConnectionDeviceId)
    }
    pub fn connection_module_id(&self) -> Option<&str> {
        self.system(SystemProperty::ConnectionModuleId)
    }
    pub fn output_name(&self) -> Option<&str> {
        self.system(SystemProperty::OutputName)
    }
    /// The input this message arrived on (inbound messages only).
    pub fn input_name(&self) -> Option<&str> {
        self.input_name.as_deref()
    }
    pub fn set_input_name(&mut self, input: Option<String>) {
        self.input_name = input;
    }

    /// Application properties in insertion order.
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    /// Sets an application property, replacing an earlier value for the same key.
    pub fn set_property(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.properties.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.properties.push((key, value)),
        }
    }

    pub fn with_message_id(mut self, v: impl Into<String>) -> Self {
        self.set_system(SystemProperty::MessageId, Some(v.into()));
        self
    }
    pub fn with_correlation_id(mut self, v: impl Into<String>) -> Self {
        self.set_system(SystemProperty::CorrelationId, Some(v.into()));
        self
    }
    pub fn with_content_type(mut self, v: impl Into<String>) -> Self {
        self.set_system(SystemProperty::ContentType, Some(v.into()));
        self
    }
    pub fn with_content_encoding(mut self, v: impl Into<String>) -> Self {
        self.set_system(SystemProperty::ContentEncoding, Some(v.into()));
        self
    }
    pub fn with_creation_time(mut self, v: impl Into<String>) -> Self {
        self.set_system(SystemProperty::CreationTime, Some(v.into()));
        self
    }
    pub fn with_expiry_time(mut self, v: impl Into<String>) -> Self {
        self.set_system(SystemProperty::ExpiryTime, Some(v.into()));
        self
    }
    pub fn with_property(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.set_property(k, v);
        self
    }

    /// Size as edgeHub counts it against the 256 KB limit: body plus every key and value.
    pub fn wire_size(&self) -> usize {
        let sys: usize = self.system_properties().map(|(p, v)| p.wire_key().len() + v.len()).sum();
        let app: usize = self.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.body.len() + sys + app
    }
}
