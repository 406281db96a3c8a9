//! `Message`: a body plus system and application properties. Received messages also carry the
//! acknowledgement handle behind `complete()`, `abandon()` and `reject()`.

use std::collections::HashMap;
use std::sync::Arc;

use edgemodule_core::{InputMessage, Message as CoreMessage, SystemProperty};
use napi::bindgen_prelude::{Buffer, Either};
use napi::Env;
use napi_derive::napi;

use crate::errors::to_js;

/// A message sent to an output or received on an input.
#[napi]
pub struct Message {
    pub(crate) inner: CoreMessage,
    received: Option<Arc<InputMessage>>,
}

pub(crate) fn body_bytes(body: Either<Buffer, String>) -> Vec<u8> {
    match body {
        Either::A(buf) => buf.to_vec(),
        Either::B(text) => text.into_bytes(),
    }
}

impl Message {
    pub(crate) fn received(input: InputMessage) -> Message {
        Message { inner: input.message().clone(), received: Some(Arc::new(input)) }
    }

    fn system(&self, p: SystemProperty) -> Option<String> {
        self.inner.system(p).map(str::to_string)
    }
}

#[napi]
impl Message {
    /// Creates a message; the body is a Buffer or a string (sent as UTF-8).
    #[napi(constructor, catch_unwind)]
    pub fn new(body: Option<Either<Buffer, String>>) -> Self {
        Message { inner: CoreMessage::new(body.map(body_bytes).unwrap_or_default()), received: None }
    }

    /// The body bytes (a copy).
    #[napi(getter, catch_unwind)]
    pub fn body(&self) -> Buffer {
        self.inner.body().to_vec().into()
    }

    #[napi(setter, catch_unwind)]
    pub fn set_body(&mut self, body: Either<Buffer, String>) {
        self.inner.set_body(body_bytes(body));
    }

    /// `$.mid`: the message id.
    #[napi(getter, catch_unwind)]
    pub fn message_id(&self) -> Option<String> {
        self.system(SystemProperty::MessageId)
    }

    #[napi(setter, catch_unwind)]
    pub fn set_message_id(&mut self, value: Option<String>) {
        self.inner.set_system(SystemProperty::MessageId, value);
    }

    /// `$.cid`: the correlation id.
    #[napi(getter, catch_unwind)]
    pub fn correlation_id(&self) -> Option<String> {
        self.system(SystemProperty::CorrelationId)
    }

    #[napi(setter, catch_unwind)]
    pub fn set_correlation_id(&mut self, value: Option<String>) {
        self.inner.set_system(SystemProperty::CorrelationId, value);
    }

    /// `$.ct`: the content type, e.g. `application/json`.
    #[napi(getter, catch_unwind)]
    pub fn content_type(&self) -> Option<String> {
        self.system(SystemProperty::ContentType)
    }

    #[napi(setter, catch_unwind)]
    pub fn set_content_type(&mut self, value: Option<String>) {
        self.inner.set_system(SystemProperty::ContentType, value);
    }

    /// `$.ce`: the content encoding, e.g. `utf-8`.
    #[napi(getter, catch_unwind)]
    pub fn content_encoding(&self) -> Option<String> {
        self.system(SystemProperty::ContentEncoding)
    }

    #[napi(setter, catch_unwind)]
    pub fn set_content_encoding(&mut self, value: Option<String>) {
        self.inner.set_system(SystemProperty::ContentEncoding, value);
    }

    /// The application properties, as a copy: change them with `setProperty` or by assigning a
    /// whole object.
    #[napi(getter, catch_unwind)]
    pub fn properties(&self) -> HashMap<String, String> {
        self.inner.properties().iter().cloned().collect()
    }

    #[napi(setter, catch_unwind)]
    pub fn set_properties(&mut self, properties: HashMap<String, String>) {
        let mut msg = CoreMessage::new(self.inner.body().clone());
        for (p, v) in self.inner.system_properties() {
            msg.set_system(p, Some(v.to_string()));
        }
        msg.set_input_name(self.inner.input_name().map(str::to_string));
        for (k, v) in properties {
            msg.set_property(k, v);
        }
        self.inner = msg;
    }

    /// Sets one application property, replacing an earlier value for the same key.
    #[napi(catch_unwind)]
    pub fn set_property(&mut self, key: String, value: String) {
        self.inner.set_property(key, value);
    }

    /// One application property, or `null`.
    #[napi(catch_unwind)]
    pub fn get_property(&self, key: String) -> Option<String> {
        self.inner.property(&key).map(str::to_string)
    }

    /// The input a received message arrived on (`null` for messages created here).
    #[napi(getter, catch_unwind)]
    pub fn input_name(&self) -> Option<String> {
        self.inner.input_name().map(str::to_string)
    }

    /// `$.cdid`: the device that sent a received message.
    #[napi(getter, catch_unwind)]
    pub fn connection_device_id(&self) -> Option<String> {
        self.system(SystemProperty::ConnectionDeviceId)
    }

    /// `$.cmid`: the module that sent a received message.
    #[napi(getter, catch_unwind)]
    pub fn connection_module_id(&self) -> Option<String> {
        self.system(SystemProperty::ConnectionModuleId)
    }

    /// Acknowledges a received message to the hub. May be called later, after the handler
    /// returned. Throws `INVALID_STATE` when the message was already settled or was not received.
    #[napi(catch_unwind)]
    pub fn complete(&self, env: Env) -> napi::Result<()> {
        self.settle(&env, InputMessage::complete)
    }

    /// Gives a received message back for another delivery: over AMQP the hub delivers it again
    /// at once; over MQTT (no negative acknowledgement) after the next reconnect.
    #[napi(catch_unwind)]
    pub fn abandon(&self, env: Env) -> napi::Result<()> {
        self.settle(&env, InputMessage::abandon)
    }

    /// Refuses a received message for good: over AMQP the hub drops it; over MQTT it is
    /// acknowledged, so it is not delivered again either.
    #[napi(catch_unwind)]
    pub fn reject(&self, env: Env) -> napi::Result<()> {
        self.settle(&env, InputMessage::reject)
    }
}

impl Message {
    fn settle(&self, env: &Env, f: impl FnOnce(&InputMessage) -> edgemodule_core::Result<()>) -> napi::Result<()> {
        match &self.received {
            Some(input) => f(input).map_err(|e| to_js(env, &e)),
            None => Err(to_js(
                env,
                &edgemodule_core::Error::new(
                    edgemodule_core::ErrorKind::InvalidState,
                    "only a received message can be completed, abandoned or rejected",
                ),
            )),
        }
    }
}
