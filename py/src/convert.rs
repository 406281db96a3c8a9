//! Python ⇄ Rust value conversion: JSON documents, seconds, bodies and client options.
//! No validation beyond what the Python types force; ranges are checked by the core.

use std::time::Duration;

use bytes::Bytes;
use edgemodule_core::{ClientOptions, RetryPolicy, Transport};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};
use serde_json::Value;

use crate::errors;

/// A Python value as a JSON value (through the `json` module, so the accepted types are
/// exactly those `json.dumps` accepts; NaN and infinities are refused).
pub fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = obj.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("allow_nan", false)?;
    let text: String = py.import("json")?.call_method("dumps", (obj,), Some(&kwargs))?.extract()?;
    serde_json::from_str(&text).map_err(|e| errors::internal(format!("json.dumps produced invalid JSON: {e}")))
}

/// A JSON value as a Python value (dict, list, str, int, float, bool or None).
pub fn from_json<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).expect("JSON value serialises");
    py.import("json")?.call_method1("loads", (text,))
}

/// A JSON value that becomes a Python object when an awaitable resolves.
pub struct Json(pub Value);

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json(py, &self.0)
    }
}

/// Seconds (int or float) as a duration; `what` names the argument in the error.
pub fn seconds(what: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| errors::invalid_argument(format!("{what} must be a non-negative number of seconds, got {secs}")))
}

pub fn opt_seconds(what: &str, secs: Option<f64>) -> PyResult<Option<Duration>> {
    secs.map(|s| seconds(what, s)).transpose()
}

/// A message body from bytes, bytearray or str (UTF-8).
pub fn body(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        Ok(Bytes::copy_from_slice(b.as_bytes()))
    } else if let Ok(b) = obj.cast::<PyByteArray>() {
        Ok(Bytes::from(b.to_vec()))
    } else if let Ok(s) = obj.cast::<PyString>() {
        Ok(Bytes::from(s.extract::<String>()?))
    } else if obj.is_none() {
        Ok(Bytes::new())
    } else {
        Err(PyTypeError::new_err(format!(
            "message data must be bytes, bytearray or str, not {}",
            obj.get_type().name()?
        )))
    }
}

/// The keyword options both factories accept, in the order the docs list them.
pub const OPTION_NAMES: &[&str] = &[
    "keep_alive",
    "sastoken_ttl",
    "sastoken_renewal_margin",
    "operation_timeout",
    "connect_timeout",
    "connection_retry",
    "retry_initial_delay",
    "retry_max_delay",
    "retry_give_up_after",
    "max_in_flight",
    "queue_bound",
    "product_info",
    "model_id",
    "extra_ca_cert",
    "mqtt_port",
    "https_port",
    "amqp_port",
    "transport",
    "proxy",
];

/// Builds core options from the factories' keyword arguments. An unknown keyword is a
/// TypeError, as for any Python function; values are range-checked by `ClientOptions::validate`.
pub fn options(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<ClientOptions> {
    let mut o = ClientOptions::default();
    let Some(kwargs) = kwargs else { return Ok(o) };
    let (mut initial, mut max, mut give_up) = match &o.retry {
        RetryPolicy::ExponentialBackoff { initial, max, give_up_after } => (*initial, *max, *give_up_after),
        _ => (Duration::from_millis(100), Duration::from_secs(30), None),
    };
    let mut retry_enabled = true;
    for (key, value) in kwargs.iter() {
        let key: String = key.extract()?;
        let secs = |v: &Bound<'_, PyAny>| -> PyResult<Duration> { seconds(&key, v.extract::<f64>()?) };
        match key.as_str() {
            "keep_alive" => o.keep_alive = secs(&value)?,
            "sastoken_ttl" => o.sas_ttl = secs(&value)?,
            "sastoken_renewal_margin" => o.sas_renewal_margin = secs(&value)?,
            "operation_timeout" => o.default_timeout = secs(&value)?,
            "connect_timeout" => o.connect_timeout = secs(&value)?,
            "connection_retry" => retry_enabled = value.extract()?,
            "retry_initial_delay" => initial = secs(&value)?,
            "retry_max_delay" => max = secs(&value)?,
            "retry_give_up_after" => {
                give_up = if value.is_none() { None } else { Some(secs(&value)?) };
            }
            "max_in_flight" => o.max_in_flight = value.extract()?,
            "queue_bound" => o.queue_bound = value.extract()?,
            "product_info" => o.product_info = value.extract()?,
            "model_id" => o.model_id = value.extract()?,
            "extra_ca_cert" => o.extra_ca_pem = value.extract()?,
            "mqtt_port" => o.mqtt_port = value.extract()?,
            "https_port" => o.https_port = value.extract()?,
            "amqp_port" => o.amqp_port = value.extract()?,
            "transport" => o.transport = value.extract::<String>()?.parse::<Transport>().map_err(errors::to_py)?,
            "proxy" => o.proxy = value.extract()?,
            other => {
                return Err(PyTypeError::new_err(format!(
                    "unexpected keyword argument '{other}' (accepted: {})",
                    OPTION_NAMES.join(", ")
                )))
            }
        }
    }
    o.retry = if retry_enabled {
        RetryPolicy::ExponentialBackoff { initial, max, give_up_after: give_up }
    } else {
        RetryPolicy::None
    };
    Ok(o)
}
