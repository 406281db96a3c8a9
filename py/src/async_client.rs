//! `AsyncModuleClient`: the same operations as awaitables on the caller's asyncio loop.
//! Cancelling the awaiting task drops the Rust future, which cancels the core operation.

use std::sync::Arc;

use edgemodule_core::{ErrorKind, ModuleClient};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::bridge::BridgeSlot;
use crate::client::{self, ClientBase, Inner};
use crate::convert;
use crate::errors;
use crate::message::{self, PyMethodResponse, Received};
use crate::runtime;

/// The asyncio client. Create it with `await AsyncModuleClient.create_from_...(...)`.
#[pyclass(module = "edgemodule._native", name = "AsyncModuleClient", extends = ClientBase, frozen)]
pub struct PyAsyncModuleClient {
    bridge: BridgeSlot,
}

fn inner_of(slf: &Bound<'_, PyAsyncModuleClient>) -> Arc<Inner> {
    slf.as_super().get().inner.clone()
}

/// Becomes the Python client object when a factory's awaitable resolves.
struct Created(Arc<Inner>);

impl<'py> IntoPyObject<'py> for Created {
    type Target = PyAsyncModuleClient;
    type Output = Bound<'py, PyAsyncModuleClient>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAsyncModuleClient>> {
        Bound::new(
            py,
            PyClassInitializer::from(ClientBase { inner: self.0 })
                .add_subclass(PyAsyncModuleClient { bridge: BridgeSlot::default() }),
        )
    }
}

#[pymethods]
impl PyAsyncModuleClient {
    /// Connects with the IoT Edge environment of this process; resolves to the client.
    #[classmethod]
    #[pyo3(signature = (**options))]
    fn create_from_edge_environment<'py>(
        _cls: &Bound<'py, PyType>,
        py: Python<'py>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = convert::options(options)?;
        let event_loop = pyo3_async_runtimes::get_running_loop(py)?.unbind();
        let connect = runtime::connect_from_environment(options)?;
        runtime::awaitable(py, async move {
            let client = connect.await?;
            Ok(Created(Inner::new(client, Some(event_loop))?))
        })
    }

    /// Connects with a module connection string; resolves to the client.
    #[classmethod]
    #[pyo3(signature = (connection_string, server_verification_cert=None, **options))]
    fn create_from_connection_string<'py>(
        _cls: &Bound<'py, PyType>,
        py: Python<'py>,
        connection_string: String,
        server_verification_cert: Option<String>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = convert::options(options)?;
        let event_loop = pyo3_async_runtimes::get_running_loop(py)?.unbind();
        runtime::awaitable(py, async move {
            let client =
                ModuleClient::from_connection_string(&connection_string, server_verification_cert.as_deref(), options)
                    .await
                    .map_err(errors::to_py)?;
            Ok(Created(Inner::new(client, Some(event_loop))?))
        })
    }

    #[pyo3(signature = (message, output_name, timeout=None))]
    fn send_message_to_output<'py>(
        slf: &Bound<'py, Self>,
        message: &Bound<'py, PyAny>,
        output_name: String,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let msg = message::message_arg(py, message)?;
        let timeout = convert::opt_seconds("timeout", timeout)?;
        slf.get().bridge.awaitable(py, inner_of(slf).send(output_name, msg, timeout))
    }

    #[pyo3(signature = (messages, output_name, timeout=None))]
    fn send_messages_to_output<'py>(
        slf: &Bound<'py, Self>,
        messages: &Bound<'py, PyAny>,
        output_name: String,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let msgs = client::message_list(py, messages)?;
        let timeout = convert::opt_seconds("timeout", timeout)?;
        slf.get().bridge.awaitable(py, inner_of(slf).send_batch(output_name, msgs, timeout))
    }

    #[pyo3(signature = (input=None, timeout=None))]
    fn receive_message<'py>(
        slf: &Bound<'py, Self>,
        input: Option<&str>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = convert::opt_seconds("timeout", timeout)?;
        let fut = inner_of(slf).receive(input, timeout)?;
        slf.get().bridge.awaitable(slf.py(), async move { fut.await.map(Received) })
    }

    #[pyo3(signature = (timeout=None))]
    fn get_twin<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let timeout = convert::opt_seconds("timeout", timeout)?;
        slf.get().bridge.awaitable(slf.py(), inner_of(slf).get_twin(timeout))
    }

    #[pyo3(signature = (reported_properties_patch, timeout=None))]
    fn patch_twin_reported_properties<'py>(
        slf: &Bound<'py, Self>,
        reported_properties_patch: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let patch = convert::to_json(reported_properties_patch)?;
        let timeout = convert::opt_seconds("timeout", timeout)?;
        slf.get().bridge.awaitable(slf.py(), inner_of(slf).patch_reported(patch, timeout))
    }

    fn send_method_response<'py>(
        slf: &Bound<'py, Self>,
        method_response: &Bound<'py, PyMethodResponse>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fut = inner_of(slf).method_response(method_response)?;
        slf.get().bridge.awaitable(slf.py(), fut)
    }

    #[pyo3(signature = (device_id, module_id, method_name, payload=None, response_timeout=30.0, connect_timeout=0.0))]
    fn invoke_method<'py>(
        slf: &Bound<'py, Self>,
        device_id: String,
        module_id: Option<String>,
        method_name: String,
        payload: Option<&Bound<'py, PyAny>>,
        response_timeout: f64,
        connect_timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let call = client::invocation(method_name, payload, response_timeout, connect_timeout)?;
        slf.get().bridge.awaitable(slf.py(), inner_of(slf).invoke(device_id, module_id, call))
    }

    #[pyo3(signature = (topic, payload, qos=1, retain=false, timeout=None))]
    fn publish<'py>(
        slf: &Bound<'py, Self>,
        topic: String,
        payload: &Bound<'py, PyAny>,
        qos: i64,
        retain: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let payload = convert::body(payload)?;
        let timeout = convert::opt_seconds("timeout", timeout)?;
        let fut = inner_of(slf).publish(topic, payload, qos, retain, timeout)?;
        slf.get().bridge.awaitable(slf.py(), fut)
    }

    /// Resolves once the hub granted the subscription; `handler` (a function or a coroutine
    /// function) then runs for each message.
    #[pyo3(signature = (filter, handler, timeout=None))]
    fn subscribe<'py>(
        slf: &Bound<'py, Self>,
        filter: String,
        handler: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = convert::opt_seconds("timeout", timeout)?;
        let fut = inner_of(slf).subscribe(filter, handler, timeout)?;
        slf.get().bridge.awaitable(slf.py(), fut)
    }

    #[pyo3(signature = (filter, timeout=None))]
    fn unsubscribe<'py>(slf: &Bound<'py, Self>, filter: String, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let timeout = convert::opt_seconds("timeout", timeout)?;
        slf.get().bridge.awaitable(slf.py(), inner_of(slf).unsubscribe(filter, timeout))
    }

    /// Disconnects and stops the handlers; the dispatcher finishes the handler it is running.
    fn shutdown<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let inner = inner_of(slf);
        let close = inner.close();
        let awaitable = slf.get().bridge.awaitable(slf.py(), async move {
            let r = close.await;
            // Not joined: a coroutine handler may be the one awaiting this shutdown.
            inner.request_dispatcher_stop();
            r
        });
        slf.get().bridge.retire();
        awaitable
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let me = slf.clone().unbind();
        slf.get().bridge.awaitable(slf.py(), async move { Ok(me) })
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(slf: &Bound<'py, Self>, _exc: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        let inner = inner_of(slf);
        let close = inner.close();
        let r = slf.get().bridge.awaitable(slf.py(), async move {
            close.await?;
            inner.request_dispatcher_stop();
            Ok(false)
        });
        slf.get().bridge.retire();
        r
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// `async for message in client`: messages from every input without its own handler,
    /// until shutdown.
    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let fut = inner_of(slf).receive_core(None, None)?;
        slf.get().bridge.awaitable(slf.py(), async move {
            match fut.await {
                Ok(m) => Ok(Received(m)),
                Err(e) if e.kind() == ErrorKind::Closed => Err(PyStopAsyncIteration::new_err(())),
                Err(e) => Err(errors::to_py(e)),
            }
        })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let inner = inner_of(slf);
        format!("<AsyncModuleClient {}/{}>", inner.client.device_id(), inner.client.module_id())
    }
}
