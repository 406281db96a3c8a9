//! The state both Python clients share (`Inner`), their common base class with handler
//! registration, and the synchronous `ModuleClient`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edgemodule_core::{Error as CoreError, ErrorKind, InputMessage, MethodInvocation, ModuleClient, Qos};
use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::AbortHandle;

use crate::convert::{self, Json};
use crate::dispatch::{Dispatcher, Event, Handler};
use crate::errors;
use crate::message::{self, Pending, PyMessage, PyMethodResponse, PyMethodResult};
use crate::runtime;

/// How long `shutdown()` waits for a running handler to return.
const DISPATCHER_JOIN_LIMIT: Duration = Duration::from_secs(5);

/// What a handler is registered for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Messages on one input, or (None) on every input without its own handler.
    Input(Option<String>),
    /// Calls of one method, or (None) of every method without its own handler.
    Method(Option<String>),
    Desired,
    State,
    /// A user-topic subscription, by filter (registered by `subscribe`, not `set_handler`).
    Topic(String),
}

type PullReceiver = Arc<tokio::sync::Mutex<UnboundedReceiver<InputMessage>>>;

pub struct Inner {
    pub client: ModuleClient,
    pub pending: Pending,
    pulls: Mutex<HashMap<String, PullReceiver>>,
    handlers: Mutex<HashMap<Slot, (Py<PyAny>, AbortHandle)>>,
    dispatcher: Dispatcher,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, (_, task)) in self.handlers.get_mut().unwrap().drain() {
            task.abort();
        }
        self.dispatcher.request_stop();
    }
}

async fn send_all<T: Send + 'static>(
    mut rx: UnboundedReceiver<T>,
    tx: mpsc::Sender<Event>,
    handler: Handler,
    wrap: fn(Handler, T) -> Event,
) {
    while let Some(item) = rx.recv().await {
        if tx.send(wrap(handler.clone(), item)).is_err() {
            break;
        }
    }
}

impl Inner {
    pub fn new(client: ModuleClient, event_loop: Option<Py<PyAny>>) -> PyResult<Arc<Inner>> {
        let pending = Pending::default();
        let dispatcher = Dispatcher::start(pending.clone(), event_loop)?;
        Ok(Arc::new(Inner {
            client,
            pending,
            pulls: Mutex::new(HashMap::new()),
            handlers: Mutex::new(HashMap::new()),
            dispatcher,
        }))
    }

    /// Registers (or with `None` removes) the handler for `slot`, replacing an earlier one.
    pub fn set_handler(&self, slot: Slot, handler: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        if let Some(h) = handler {
            if !h.is_callable() {
                return Err(PyTypeError::new_err("a handler must be callable"));
            }
        }
        let rt = runtime::get()?;
        if let Some((_, old)) = self.handlers.lock().unwrap().remove(&slot) {
            old.abort();
        }
        let Some(handler) = handler else { return Ok(()) };
        let shared: Handler = Arc::new(handler.clone().unbind());
        let tx = self.dispatcher.sender();
        let c = &self.client;
        let task = match &slot {
            Slot::Input(Some(name)) => {
                let rx = c.input_receiver(name).map_err(errors::to_py)?;
                self.pulls.lock().unwrap().remove(name);
                rt.spawn(send_all(rx, tx, shared, |h, m| Event::Message(h, Box::new(m))))
            }
            Slot::Input(None) => {
                let c = c.clone();
                rt.spawn(async move {
                    while let Ok(m) = c.recv(None).await {
                        if tx.send(Event::Message(shared.clone(), Box::new(m))).is_err() {
                            break;
                        }
                    }
                })
            }
            Slot::Method(name) => {
                let rx = c.method_receiver(name.as_deref()).map_err(errors::to_py)?;
                rt.spawn(send_all(rx, tx, shared, Event::Method))
            }
            Slot::Desired => {
                let rx = c.desired_receiver().map_err(errors::to_py)?;
                rt.spawn(send_all(rx, tx, shared, Event::Desired))
            }
            Slot::Topic(filter) => {
                return Err(errors::internal(format!("subscription '{filter}' registered without subscribing")));
            }
            Slot::State => {
                let mut state = c.connection_state();
                rt.spawn(async move {
                    while state.changed().await.is_ok() {
                        let s = *state.borrow_and_update();
                        if tx.send(Event::State(shared.clone(), s)).is_err() {
                            break;
                        }
                    }
                })
            }
        };
        self.handlers.lock().unwrap().insert(slot, (handler.clone().unbind(), task.abort_handle()));
        Ok(())
    }

    pub fn handler(&self, py: Python<'_>, slot: &Slot) -> Option<Py<PyAny>> {
        self.handlers.lock().unwrap().get(slot).map(|(h, _)| h.clone_ref(py))
    }

    /// The pull receiver of a named input, created on first use.
    fn pull(&self, input: &str) -> PyResult<PullReceiver> {
        if self.handlers.lock().unwrap().contains_key(&Slot::Input(Some(input.to_string()))) {
            return Err(errors::invalid_state(format!(
                "input '{input}' has a handler; remove it (on_message(input, None)) before receiving from it"
            )));
        }
        let mut pulls = self.pulls.lock().unwrap();
        if let Some(rx) = pulls.get(input) {
            return Ok(rx.clone());
        }
        let rx = Arc::new(tokio::sync::Mutex::new(self.client.input_receiver(input).map_err(errors::to_py)?));
        pulls.insert(input.to_string(), rx.clone());
        Ok(rx)
    }

    /// The next message on `input` (or on any input without its own receiver).
    pub fn receive_core(
        &self,
        input: Option<&str>,
        timeout: Option<Duration>,
    ) -> PyResult<impl Future<Output = edgemodule_core::Result<InputMessage>> + Send + 'static> {
        let client = self.client.clone();
        let rx = input.map(|i| self.pull(i)).transpose()?;
        Ok(async move {
            let Some(rx) = rx else {
                return client.recv(timeout).await;
            };
            let mut rx = rx.lock().await;
            let next = rx.recv();
            let msg = match timeout {
                Some(t) => tokio::time::timeout(t, next).await.map_err(|_| {
                    CoreError::new(ErrorKind::Timeout, format!("recv timed out after {} ms", t.as_millis()))
                })?,
                None => next.await,
            };
            msg.ok_or_else(|| CoreError::new(ErrorKind::Closed, "the client is closed"))
        })
    }

    pub fn receive(
        &self,
        input: Option<&str>,
        timeout: Option<Duration>,
    ) -> PyResult<impl Future<Output = PyResult<InputMessage>> + Send + 'static> {
        let fut = self.receive_core(input, timeout)?;
        Ok(async move { fut.await.map_err(errors::to_py) })
    }

    pub fn send(
        &self,
        output: String,
        msg: edgemodule_core::Message,
        timeout: Option<Duration>,
    ) -> impl Future<Output = PyResult<()>> + Send + 'static {
        let client = self.client.clone();
        async move { client.send_to_output_with_timeout(&output, msg, timeout).await.map_err(errors::to_py) }
    }

    pub fn send_batch(
        &self,
        output: String,
        msgs: Vec<edgemodule_core::Message>,
        timeout: Option<Duration>,
    ) -> impl Future<Output = PyResult<()>> + Send + 'static {
        let client = self.client.clone();
        async move { client.send_batch_to_output(&output, msgs, timeout).await.map_err(errors::to_py) }
    }

    pub fn get_twin(&self, timeout: Option<Duration>) -> impl Future<Output = PyResult<Json>> + Send + 'static {
        let client = self.client.clone();
        async move {
            let twin = client.get_twin(timeout).await.map_err(errors::to_py)?;
            Ok(Json(serde_json::json!({ "desired": twin.desired, "reported": twin.reported })))
        }
    }

    pub fn patch_reported(
        &self,
        patch: Value,
        timeout: Option<Duration>,
    ) -> impl Future<Output = PyResult<()>> + Send + 'static {
        let client = self.client.clone();
        async move { client.update_reported(&patch, timeout).await.map_err(errors::to_py) }
    }

    pub fn invoke(
        &self,
        device_id: String,
        module_id: Option<String>,
        call: MethodInvocation,
    ) -> impl Future<Output = PyResult<PyMethodResult>> + Send + 'static {
        let client = self.client.clone();
        async move {
            let r = client.invoke_method(&device_id, module_id.as_deref(), &call).await.map_err(errors::to_py)?;
            Ok(PyMethodResult::new(r))
        }
    }

    pub fn method_response(
        &self,
        response: &Bound<'_, PyMethodResponse>,
    ) -> PyResult<impl Future<Output = PyResult<()>> + Send + 'static> {
        let (request, status, payload) = response.get().resolve(&self.pending)?;
        Ok(message::respond(request, self.pending.clone(), status, payload))
    }

    /// Publishes on a user topic; resolves on PUBACK (QoS 1) or once written (QoS 0).
    pub fn publish(
        &self,
        topic: String,
        payload: Bytes,
        qos: i64,
        retain: bool,
        timeout: Option<Duration>,
    ) -> PyResult<impl Future<Output = PyResult<()>> + Send + 'static> {
        let qos = edgemodule_core::validate::qos(qos).map_err(errors::to_py)?;
        let client = self.client.clone();
        Ok(
            async move { client.publish_with_timeout(&topic, payload, qos, retain, timeout).await.map_err(errors::to_py) },
        )
    }

    /// Subscribes to a user-topic filter; once the hub granted it, `handler(TopicMessage)` runs on
    /// the dispatcher for each message, replacing an earlier handler of the same filter.
    pub fn subscribe(
        self: &Arc<Self>,
        filter: String,
        handler: &Bound<'_, PyAny>,
        timeout: Option<Duration>,
    ) -> PyResult<impl Future<Output = PyResult<()>> + Send + 'static> {
        if !handler.is_callable() {
            return Err(PyTypeError::new_err("a handler must be callable"));
        }
        let rt = runtime::get()?;
        let (stored, shared): (Py<PyAny>, Handler) = (handler.clone().unbind(), Arc::new(handler.clone().unbind()));
        let inner = self.clone();
        Ok(async move {
            let rx = inner.client.subscribe_with(&filter, Qos::AtLeastOnce, timeout).await.map_err(errors::to_py)?;
            let task = rt.spawn(send_all(rx, inner.dispatcher.sender(), shared, Event::Topic));
            let old = inner.handlers.lock().unwrap().insert(Slot::Topic(filter), (stored, task.abort_handle()));
            if let Some((_, old)) = old {
                old.abort();
            }
            Ok(())
        })
    }

    /// Ends a subscription (on the hub's UNSUBACK); its handler is not called any more.
    pub fn unsubscribe(
        self: &Arc<Self>,
        filter: String,
        timeout: Option<Duration>,
    ) -> impl Future<Output = PyResult<()>> + Send + 'static {
        let inner = self.clone();
        async move {
            inner.client.unsubscribe_with_timeout(&filter, timeout).await.map_err(errors::to_py)?;
            let removed = inner.handlers.lock().unwrap().remove(&Slot::Topic(filter));
            if let Some((handler, task)) = removed {
                task.abort();
                drop(handler);
            }
            Ok(())
        }
    }

    /// Closes the connection; handlers stop receiving events.
    pub fn close(self: &Arc<Self>) -> impl Future<Output = PyResult<()>> + Send + 'static {
        let inner = self.clone();
        async move {
            let r = inner.client.close().await.map_err(errors::to_py);
            let tasks: Vec<_> = inner.handlers.lock().unwrap().drain().map(|(_, (h, t))| (t, h)).collect();
            for (task, handler) in tasks {
                task.abort();
                drop(handler);
            }
            inner.pending.lock().unwrap().clear();
            r
        }
    }

    /// Stops the dispatcher and waits for it (called with the GIL released).
    pub fn join_dispatcher(&self) {
        self.dispatcher.stop_and_join(DISPATCHER_JOIN_LIMIT);
    }

    pub fn request_dispatcher_stop(&self) {
        self.dispatcher.request_stop();
    }
}

/// Parses `invoke_method`'s arguments into the core's request.
pub fn invocation(
    method_name: String,
    payload: Option<&Bound<'_, PyAny>>,
    response_timeout: f64,
    connect_timeout: f64,
) -> PyResult<MethodInvocation> {
    let payload = payload.map(convert::to_json).transpose()?.unwrap_or(Value::Null);
    let mut call = MethodInvocation::new(method_name, payload);
    call.response_timeout = convert::seconds("response_timeout", response_timeout)?;
    call.connect_timeout = convert::seconds("connect_timeout", connect_timeout)?;
    Ok(call)
}

/// Messages (or bodies) for a batch send.
pub fn message_list(py: Python<'_>, messages: &Bound<'_, PyAny>) -> PyResult<Vec<edgemodule_core::Message>> {
    messages.try_iter()?.map(|m| message::message_arg(py, &m?)).collect()
}

/// Handler registration and connection facts, shared by `ModuleClient` and `AsyncModuleClient`.
#[pyclass(module = "edgemodule._native", name = "_ClientBase", subclass, frozen)]
pub struct ClientBase {
    pub inner: Arc<Inner>,
}

/// Returned by `on_message(...)` and friends when called without a handler: a decorator.
#[pyclass(module = "edgemodule._native", name = "_Registrar", frozen)]
pub struct Registrar {
    inner: Arc<Inner>,
    slot: Slot,
}

#[pymethods]
impl Registrar {
    fn __call__<'py>(&self, handler: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.set_handler(self.slot.clone(), Some(&handler))?;
        Ok(handler)
    }
}

impl ClientBase {
    fn register<'py>(
        &self,
        py: Python<'py>,
        slot: Slot,
        handler: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match handler {
            Some(h) => {
                self.inner.set_handler(slot, if h.is_none() { None } else { Some(&h) })?;
                Ok(h)
            }
            None => Ok(Bound::new(py, Registrar { inner: self.inner.clone(), slot })?.into_any()),
        }
    }

    fn property_set(&self, slot: Slot, handler: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.inner.set_handler(slot, handler.filter(|h| !h.is_none()))
    }
}

#[pymethods]
impl ClientBase {
    /// Registers `handler(message)` for `input` (None: every input without its own handler).
    /// Without `handler`, returns a decorator. Handlers run on the client's dispatcher thread.
    #[pyo3(signature = (input=None, handler=None))]
    fn on_message<'py>(
        &self,
        py: Python<'py>,
        input: Option<String>,
        handler: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.register(py, Slot::Input(input), handler)
    }

    /// Registers `handler(request)` for method `name` (None: every method without its own).
    #[pyo3(signature = (name=None, handler=None))]
    fn on_method<'py>(
        &self,
        py: Python<'py>,
        name: Option<String>,
        handler: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.register(py, Slot::Method(name), handler)
    }

    /// Registers `handler(patch)` for desired-property patches.
    #[pyo3(signature = (handler=None))]
    fn on_desired<'py>(&self, py: Python<'py>, handler: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        self.register(py, Slot::Desired, handler)
    }

    /// Registers `handler(connected, reason)` for connection-state changes.
    #[pyo3(signature = (handler=None))]
    fn on_connection_state<'py>(
        &self,
        py: Python<'py>,
        handler: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.register(py, Slot::State, handler)
    }

    #[getter]
    fn get_on_message_received(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.handler(py, &Slot::Input(None))
    }
    #[setter]
    fn set_on_message_received(&self, handler: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.property_set(Slot::Input(None), handler)
    }
    #[getter]
    fn get_on_method_request_received(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.handler(py, &Slot::Method(None))
    }
    #[setter]
    fn set_on_method_request_received(&self, handler: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.property_set(Slot::Method(None), handler)
    }
    #[getter]
    fn get_on_twin_desired_properties_patch_received(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.handler(py, &Slot::Desired)
    }
    #[setter]
    fn set_on_twin_desired_properties_patch_received(&self, handler: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.property_set(Slot::Desired, handler)
    }
    #[getter]
    fn get_on_connection_state_change(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.handler(py, &Slot::State)
    }
    #[setter]
    fn set_on_connection_state_change(&self, handler: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.property_set(Slot::State, handler)
    }

    /// Whether the connection to the hub is up right now.
    #[getter]
    fn connected(&self) -> bool {
        self.inner.client.connection_state().borrow().is_connected()
    }

    /// Why the connection state last changed (`OK`, `NO_NETWORK`, `CLOSED`, ...).
    #[getter]
    fn connection_reason(&self) -> &'static str {
        self.inner.client.connection_state().borrow().reason.name()
    }

    #[getter]
    fn device_id(&self) -> String {
        self.inner.client.device_id().to_string()
    }

    #[getter]
    fn module_id(&self) -> String {
        self.inner.client.module_id().to_string()
    }

    /// Counters: sent, acknowledged, received, reconnects, token_renewals.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.inner.client.metrics();
        let d = PyDict::new(py);
        d.set_item("sent", m.sent)?;
        d.set_item("acknowledged", m.acknowledged)?;
        d.set_item("received", m.received)?;
        d.set_item("reconnects", m.reconnects)?;
        d.set_item("token_renewals", m.token_renewals)?;
        Ok(d)
    }
}

/// The synchronous client: every call blocks with the GIL released and honours Ctrl-C.
#[pyclass(module = "edgemodule._native", name = "ModuleClient", extends = ClientBase, frozen)]
pub struct PyModuleClient;

fn inner_of(slf: &Bound<'_, PyModuleClient>) -> Arc<Inner> {
    slf.as_super().get().inner.clone()
}

impl PyModuleClient {
    fn build(py: Python<'_>, client: ModuleClient) -> PyResult<Py<PyModuleClient>> {
        let init =
            PyClassInitializer::from(ClientBase { inner: Inner::new(client, None)? }).add_subclass(PyModuleClient);
        Py::new(py, init)
    }
}

#[pymethods]
impl PyModuleClient {
    /// Connects with the IoT Edge environment of this process (IOTEDGE_* variables and the
    /// workload API). Keyword options are listed in the package README.
    #[classmethod]
    #[pyo3(signature = (**options))]
    fn create_from_edge_environment(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyModuleClient>> {
        let options = convert::options(options)?;
        let client = runtime::wait(py, runtime::connect_from_environment(options)?)??;
        Self::build(py, client)
    }

    /// Connects with a module connection string; `server_verification_cert` is the PEM of the
    /// CA that issued the hub's certificate.
    #[classmethod]
    #[pyo3(signature = (connection_string, server_verification_cert=None, **options))]
    fn create_from_connection_string(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        connection_string: String,
        server_verification_cert: Option<String>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyModuleClient>> {
        let options = convert::options(options)?;
        let connect =
            ModuleClient::from_connection_string(&connection_string, server_verification_cert.as_deref(), options);
        let client = runtime::wait(py, connect)?.map_err(errors::to_py)?;
        Self::build(py, client)
    }

    /// Sends a message (or bytes/str body) on `output_name`; returns once the hub stored it.
    #[pyo3(signature = (message, output_name, timeout=None))]
    fn send_message_to_output(
        slf: &Bound<'_, Self>,
        message: &Bound<'_, PyAny>,
        output_name: String,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let py = slf.py();
        let msg = message::message_arg(py, message)?;
        let timeout = convert::opt_seconds("timeout", timeout)?;
        runtime::wait(py, inner_of(slf).send(output_name, msg, timeout))?
    }

    /// Sends several messages pipelined on `output_name`; returns once all are stored.
    #[pyo3(signature = (messages, output_name, timeout=None))]
    fn send_messages_to_output(
        slf: &Bound<'_, Self>,
        messages: &Bound<'_, PyAny>,
        output_name: String,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let py = slf.py();
        let msgs = message_list(py, messages)?;
        let timeout = convert::opt_seconds("timeout", timeout)?;
        runtime::wait(py, inner_of(slf).send_batch(output_name, msgs, timeout))?
    }

    /// The next message on `input` (None: any input without its own handler or receiver).
    /// `timeout` in seconds (None waits until a message arrives or Ctrl-C).
    #[pyo3(signature = (input=None, timeout=None))]
    fn receive_message(slf: &Bound<'_, Self>, input: Option<&str>, timeout: Option<f64>) -> PyResult<PyMessage> {
        let py = slf.py();
        let timeout = convert::opt_seconds("timeout", timeout)?;
        let fut = inner_of(slf).receive(input, timeout)?;
        let input = runtime::wait(py, fut)??;
        PyMessage::from_input(py, input)
    }

    /// The module twin as `{"desired": {...}, "reported": {...}}`.
    #[pyo3(signature = (timeout=None))]
    fn get_twin<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let timeout = convert::opt_seconds("timeout", timeout)?;
        let Json(doc) = runtime::wait(py, inner_of(slf).get_twin(timeout))??;
        convert::from_json(py, &doc)
    }

    /// Sends a reported-properties patch (a dict; None values delete).
    #[pyo3(signature = (reported_properties_patch, timeout=None))]
    fn patch_twin_reported_properties(
        slf: &Bound<'_, Self>,
        reported_properties_patch: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let py = slf.py();
        let patch = convert::to_json(reported_properties_patch)?;
        let timeout = convert::opt_seconds("timeout", timeout)?;
        runtime::wait(py, inner_of(slf).patch_reported(patch, timeout))?
    }

    /// Answers a method request delivered to this client.
    fn send_method_response(slf: &Bound<'_, Self>, method_response: &Bound<'_, PyMethodResponse>) -> PyResult<()> {
        let fut = inner_of(slf).method_response(method_response)?;
        runtime::wait(slf.py(), fut)?
    }

    /// Calls method `method_name` on module `module_id` of device `device_id` (or on the device
    /// itself when `module_id` is None) through the hub.
    #[pyo3(signature = (device_id, module_id, method_name, payload=None, response_timeout=30.0, connect_timeout=0.0))]
    fn invoke_method(
        slf: &Bound<'_, Self>,
        device_id: String,
        module_id: Option<String>,
        method_name: String,
        payload: Option<&Bound<'_, PyAny>>,
        response_timeout: f64,
        connect_timeout: f64,
    ) -> PyResult<PyMethodResult> {
        let call = invocation(method_name, payload, response_timeout, connect_timeout)?;
        runtime::wait(slf.py(), inner_of(slf).invoke(device_id, module_id, call))?
    }

    /// Publishes `payload` (bytes, bytearray or str) on user topic `topic` with QoS `qos` (0 or
    /// 1); with `retain` the hub keeps it for later subscribers. Returns on the hub's PUBACK (QoS
    /// 1) or once written (QoS 0).
    #[pyo3(signature = (topic, payload, qos=1, retain=false, timeout=None))]
    fn publish(
        slf: &Bound<'_, Self>,
        topic: String,
        payload: &Bound<'_, PyAny>,
        qos: i64,
        retain: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let payload = convert::body(payload)?;
        let timeout = convert::opt_seconds("timeout", timeout)?;
        let fut = inner_of(slf).publish(topic, payload, qos, retain, timeout)?;
        runtime::wait(slf.py(), fut)?
    }

    /// Subscribes to user-topic filter `filter` (wildcards allowed) and returns once the hub
    /// granted it (RejectedError if its policy refuses). `handler(message: TopicMessage)` then
    /// runs on the dispatcher thread for each message, retained ones first. Subscribing to the
    /// same filter again replaces the handler.
    #[pyo3(signature = (filter, handler, timeout=None))]
    fn subscribe(
        slf: &Bound<'_, Self>,
        filter: String,
        handler: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let timeout = convert::opt_seconds("timeout", timeout)?;
        let fut = inner_of(slf).subscribe(filter, handler, timeout)?;
        runtime::wait(slf.py(), fut)?
    }

    /// Ends the subscription to `filter`; its handler is not called any more.
    #[pyo3(signature = (filter, timeout=None))]
    fn unsubscribe(slf: &Bound<'_, Self>, filter: String, timeout: Option<f64>) -> PyResult<()> {
        let timeout = convert::opt_seconds("timeout", timeout)?;
        runtime::wait(slf.py(), inner_of(slf).unsubscribe(filter, timeout))?
    }

    /// Disconnects and stops the handlers. Calling it again is harmless.
    fn shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let inner = inner_of(slf);
        let r = runtime::wait(py, inner.close())?;
        py.detach(|| inner.join_dispatcher());
        r
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(slf: &Bound<'_, Self>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        Self::shutdown(slf)?;
        Ok(false)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Iteration yields messages from every input without its own handler, until shutdown.
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<PyMessage> {
        match Self::receive_message(slf, None, None) {
            Err(e) if e.is_instance_of::<errors::ClientClosedError>(slf.py()) => Err(PyStopIteration::new_err(())),
            other => other,
        }
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let inner = inner_of(slf);
        format!("<ModuleClient {}/{}>", inner.client.device_id(), inner.client.module_id())
    }
}
