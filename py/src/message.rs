//! `Message`, `MethodRequest`, `MethodResponse`, `MethodResult` and `TopicMessage`: Python views
//! of the core's values. Settling a received message and answering a method call are the core's operations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use edgemodule_core::{InputMessage, Message, MethodRequest, SystemProperty, TopicMessage};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use serde_json::Value;

use crate::convert;
use crate::errors;
use crate::runtime;

/// A message sent to an output or received on an input.
#[pyclass(module = "edgemodule._native", name = "Message")]
pub struct PyMessage {
    body: Bytes,
    #[pyo3(get, set)]
    message_id: Option<String>,
    #[pyo3(get, set)]
    correlation_id: Option<String>,
    #[pyo3(get, set)]
    content_type: Option<String>,
    #[pyo3(get, set)]
    content_encoding: Option<String>,
    /// Application properties (str → str); mutate in place.
    #[pyo3(get)]
    custom_properties: Py<PyDict>,
    #[pyo3(get)]
    input_name: Option<String>,
    #[pyo3(get)]
    output_name: Option<String>,
    #[pyo3(get)]
    connection_device_id: Option<String>,
    #[pyo3(get)]
    connection_module_id: Option<String>,
    received: Option<Arc<InputMessage>>,
}

#[pymethods]
impl PyMessage {
    #[new]
    #[pyo3(signature = (data=None, message_id=None, content_encoding=None, content_type=None, *, correlation_id=None, custom_properties=None))]
    fn new(
        py: Python<'_>,
        data: Option<&Bound<'_, PyAny>>,
        message_id: Option<String>,
        content_encoding: Option<String>,
        content_type: Option<String>,
        correlation_id: Option<String>,
        custom_properties: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let props = PyDict::new(py);
        if let Some(p) = custom_properties {
            props.update(p.as_mapping())?;
        }
        Ok(PyMessage {
            body: match data {
                Some(d) => convert::body(d)?,
                None => Bytes::new(),
            },
            message_id,
            correlation_id,
            content_type,
            content_encoding,
            custom_properties: props.unbind(),
            input_name: None,
            output_name: None,
            connection_device_id: None,
            connection_module_id: None,
            received: None,
        })
    }

    /// The body as bytes. Assign bytes, bytearray or str (stored as UTF-8).
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.body)
    }
    #[setter]
    fn set_data(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.body = convert::body(value)?;
        Ok(())
    }
    /// Alias of `data`.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        self.data(py)
    }
    #[setter]
    fn set_body(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_data(value)
    }

    /// Size as the hub counts it against its 256 KB limit (body plus properties).
    fn get_size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.to_core(py)?.wire_size())
    }

    /// Acknowledges a received message to the hub (deferred completion).
    fn complete(&self) -> PyResult<()> {
        self.received()?.complete().map_err(errors::to_py)
    }

    /// Gives a received message back for another delivery: over AMQP the hub delivers it again
    /// at once; over MQTT (no negative acknowledgement) after the next reconnect.
    fn abandon(&self) -> PyResult<()> {
        self.received()?.abandon().map_err(errors::to_py)
    }

    /// Refuses a received message for good: over AMQP the hub drops it; over MQTT it is
    /// acknowledged, so it is not delivered again either.
    fn reject(&self) -> PyResult<()> {
        self.received()?.reject().map_err(errors::to_py)
    }

    fn __repr__(&self) -> String {
        let show = |v: &Option<String>| v.as_ref().map_or("None".to_string(), |s| format!("{s:?}"));
        format!(
            "Message(data=<{} bytes>, message_id={}, input_name={})",
            self.body.len(),
            show(&self.message_id),
            show(&self.input_name)
        )
    }
}

impl PyMessage {
    fn received(&self) -> PyResult<&Arc<InputMessage>> {
        self.received
            .as_ref()
            .ok_or_else(|| errors::invalid_state("only a received message can be completed, abandoned or rejected"))
    }

    /// A core message to send: copies the body, system and application properties.
    pub fn to_core(&self, py: Python<'_>) -> PyResult<Message> {
        let mut m = Message::new(self.body.clone());
        m.set_system(SystemProperty::MessageId, self.message_id.clone());
        m.set_system(SystemProperty::CorrelationId, self.correlation_id.clone());
        m.set_system(SystemProperty::ContentType, self.content_type.clone());
        m.set_system(SystemProperty::ContentEncoding, self.content_encoding.clone());
        for (k, v) in self.custom_properties.bind(py).iter() {
            let (Ok(k), Ok(v)) = (k.cast::<PyString>(), v.cast::<PyString>()) else {
                return Err(PyTypeError::new_err("custom_properties keys and values must be str"));
            };
            m.set_property(k.extract::<String>()?, v.extract::<String>()?);
        }
        Ok(m)
    }

    /// The Python view of a message that arrived on an input.
    pub fn from_input(py: Python<'_>, input: InputMessage) -> PyResult<PyMessage> {
        let m = input.message();
        let props = PyDict::new(py);
        for (k, v) in m.properties() {
            props.set_item(k, v)?;
        }
        let s = |p| m.system(p).map(str::to_string);
        Ok(PyMessage {
            body: m.body().clone(),
            message_id: s(SystemProperty::MessageId),
            correlation_id: s(SystemProperty::CorrelationId),
            content_type: s(SystemProperty::ContentType),
            content_encoding: s(SystemProperty::ContentEncoding),
            custom_properties: props.unbind(),
            input_name: m.input_name().map(str::to_string),
            output_name: s(SystemProperty::OutputName),
            connection_device_id: s(SystemProperty::ConnectionDeviceId),
            connection_module_id: s(SystemProperty::ConnectionModuleId),
            received: Some(Arc::new(input)),
        })
    }

    /// Settles a received message after its handler ran, unless the handler already did.
    pub fn settle_after_handler(&self, ok: bool) {
        if let Some(r) = &self.received {
            // INVALID_STATE here only means the handler settled it itself.
            let _ = if ok { r.complete() } else { r.abandon() };
        }
    }
}

/// A message or a body: what the send methods accept.
pub fn message_arg(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Message> {
    match obj.cast::<PyMessage>() {
        Ok(m) => m.borrow().to_core(py),
        Err(_) => Ok(Message::new(convert::body(obj)?)),
    }
}

/// A received message, turned into a Python `Message` when the awaitable resolves.
pub struct Received(pub InputMessage);

impl<'py> IntoPyObject<'py> for Received {
    type Target = PyMessage;
    type Output = Bound<'py, PyMessage>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyMessage>> {
        Bound::new(py, PyMessage::from_input(py, self.0)?)
    }
}

/// Method calls delivered but not yet answered, by request id, so that a `MethodResponse`
/// built from the id alone can be sent later.
pub type Pending = Arc<Mutex<HashMap<String, Arc<MethodRequest>>>>;

/// A direct-method call to this module; answer it now or later with `respond` or the client's
/// `send_method_response`.
#[pyclass(module = "edgemodule._native", name = "MethodRequest", frozen)]
pub struct PyMethodRequest {
    request: Arc<MethodRequest>,
    pending: Pending,
    #[pyo3(get)]
    payload: Py<PyAny>,
}

impl PyMethodRequest {
    pub fn new(py: Python<'_>, request: MethodRequest, pending: Pending) -> PyResult<Self> {
        let payload = match request.payload_json() {
            Ok(v) => convert::from_json(py, &v)?.unbind(),
            Err(_) => PyString::new(py, &String::from_utf8_lossy(request.payload())).into_any().unbind(),
        };
        let request = Arc::new(request);
        pending.lock().unwrap().insert(request.request_id().to_string(), request.clone());
        Ok(PyMethodRequest { request, pending, payload })
    }

    pub fn core(&self) -> Arc<MethodRequest> {
        self.request.clone()
    }
}

/// Answers `request` through the core and forgets it.
pub async fn respond(request: Arc<MethodRequest>, pending: Pending, status: i64, payload: Value) -> PyResult<()> {
    let r = request.respond(status, Some(&payload)).await;
    pending.lock().unwrap().remove(request.request_id());
    r.map_err(errors::to_py)
}

#[pymethods]
impl PyMethodRequest {
    #[getter]
    fn name(&self) -> &str {
        self.request.name()
    }
    #[getter]
    fn request_id(&self) -> &str {
        self.request.request_id()
    }

    /// Sends the response (blocking, GIL released).
    #[pyo3(signature = (status, payload=None))]
    fn respond(&self, py: Python<'_>, status: i64, payload: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let payload = payload.map(convert::to_json).transpose()?.unwrap_or(Value::Null);
        runtime::wait(py, respond(self.request.clone(), self.pending.clone(), status, payload))?
    }

    /// Sends the response from asyncio code; returns an awaitable.
    #[pyo3(signature = (status, payload=None))]
    fn respond_async<'py>(
        &self,
        py: Python<'py>,
        status: i64,
        payload: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let payload = payload.map(convert::to_json).transpose()?.unwrap_or(Value::Null);
        runtime::awaitable(py, respond(self.request.clone(), self.pending.clone(), status, payload))
    }

    fn __repr__(&self) -> String {
        format!("MethodRequest(name={:?}, request_id={:?})", self.request.name(), self.request.request_id())
    }
}

/// The answer to a method call, for `send_method_response` (official SDK shape).
#[pyclass(module = "edgemodule._native", name = "MethodResponse", frozen)]
pub struct PyMethodResponse {
    #[pyo3(get)]
    request_id: String,
    #[pyo3(get)]
    status: i64,
    payload: Value,
}

#[pymethods]
impl PyMethodResponse {
    #[new]
    #[pyo3(signature = (request_id, status, payload=None))]
    fn new(request_id: String, status: i64, payload: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let payload = payload.map(convert::to_json).transpose()?.unwrap_or(Value::Null);
        Ok(PyMethodResponse { request_id, status, payload })
    }

    #[classmethod]
    #[pyo3(signature = (method_request, status, payload=None))]
    fn create_from_method_request(
        _cls: &Bound<'_, pyo3::types::PyType>,
        method_request: &Bound<'_, PyMethodRequest>,
        status: i64,
        payload: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Self::new(method_request.get().request.request_id().to_string(), status, payload)
    }

    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::from_json(py, &self.payload)
    }

    fn __repr__(&self) -> String {
        format!("MethodResponse(request_id={:?}, status={})", self.request_id, self.status)
    }
}

impl PyMethodResponse {
    /// The pending request this answers, and the answer.
    pub fn resolve(&self, pending: &Pending) -> PyResult<(Arc<MethodRequest>, i64, Value)> {
        let request = pending.lock().unwrap().get(&self.request_id).cloned().ok_or_else(|| {
            errors::invalid_state(format!(
                "no unanswered method request with id '{}' (already answered, or not delivered to this client)",
                self.request_id
            ))
        })?;
        Ok((request, self.status, self.payload.clone()))
    }
}

/// What `invoke_method` returns: the target's status and JSON payload.
#[pyclass(module = "edgemodule._native", name = "MethodResult", frozen)]
pub struct PyMethodResult {
    #[pyo3(get)]
    status: i64,
    payload: Value,
}

impl PyMethodResult {
    pub fn new(r: edgemodule_core::MethodResult) -> Self {
        PyMethodResult { status: r.status, payload: r.payload }
    }
}

#[pymethods]
impl PyMethodResult {
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::from_json(py, &self.payload)
    }
    fn __repr__(&self) -> String {
        format!("MethodResult(status={}, payload={})", self.status, self.payload)
    }
}

/// A message received on a user topic (see `subscribe`): the topic it was published on, its
/// payload, the QoS it was delivered with, and whether it is a retained message sent because the
/// subscription was made.
#[pyclass(module = "edgemodule._native", name = "TopicMessage", frozen)]
pub struct PyTopicMessage {
    #[pyo3(get)]
    topic: String,
    payload: Bytes,
    #[pyo3(get)]
    qos: u8,
    #[pyo3(get)]
    retain: bool,
}

impl PyTopicMessage {
    pub fn new(m: TopicMessage) -> Self {
        PyTopicMessage { topic: m.topic, payload: m.payload, qos: m.qos as u8, retain: m.retain }
    }
}

#[pymethods]
impl PyTopicMessage {
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.payload)
    }
    fn __repr__(&self) -> String {
        format!(
            "TopicMessage(topic={:?}, payload=<{} bytes>, qos={}, retain={})",
            self.topic,
            self.payload.len(),
            self.qos,
            if self.retain { "True" } else { "False" }
        )
    }
}
