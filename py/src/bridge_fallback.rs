//! Platforms without Unix sockets: every awaitable takes pyo3-async-runtimes' path (see
//! bridge.rs for the batched bridge used elsewhere).

use std::future::Future;

use pyo3::prelude::*;

use crate::runtime;

#[derive(Default)]
pub struct BridgeSlot;

impl BridgeSlot {
    pub fn awaitable<'py, F, T>(&self, py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        runtime::awaitable(py, fut)
    }

    pub fn retire(&self) {}
}
