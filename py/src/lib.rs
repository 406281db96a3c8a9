//! `edgemodule._native`: the Python binding of edgemodule-core. Rust here only converts types,
//! picks the Python idiom (exceptions, awaitables, handlers on a dispatcher thread) and manages
//! lifetimes; every semantic lives in the core (style §3.1).

mod async_client;
#[cfg(unix)]
mod bridge;
#[cfg(not(unix))]
#[path = "bridge_fallback.rs"]
mod bridge;
mod client;
mod convert;
mod dispatch;
mod errors;
mod exit;
mod logging;
mod message;
mod runtime;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    runtime::init()?;
    logging::init();
    exit::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let kinds: Vec<&str> = edgemodule_core::ErrorKind::ALL.iter().map(|k| k.name()).collect();
    m.add("ERROR_KINDS", pyo3::types::PyTuple::new(m.py(), kinds)?)?;
    m.add("OPTION_NAMES", pyo3::types::PyTuple::new(m.py(), convert::OPTION_NAMES)?)?;
    m.add_function(wrap_pyfunction!(errors::error_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(errors::raise_error_kind, m)?)?;
    m.add_function(wrap_pyfunction!(logging::set_log_level, m)?)?;
    m.add_class::<message::PyMessage>()?;
    m.add_class::<message::PyMethodRequest>()?;
    m.add_class::<message::PyMethodResponse>()?;
    m.add_class::<message::PyMethodResult>()?;
    m.add_class::<message::PyTopicMessage>()?;
    m.add_class::<client::ClientBase>()?;
    m.add_class::<client::Registrar>()?;
    m.add_class::<client::PyModuleClient>()?;
    m.add_class::<async_client::PyAsyncModuleClient>()?;
    Ok(())
}
