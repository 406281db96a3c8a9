//! `ErrorKind` → the pure-Python exception classes of `edgemodule.errors` (style §3.4).
//! The match below names every kind; `tests/test_errors.py` walks `ErrorKind::ALL` through
//! `_raise_error_kind` to prove no kind falls through to the catch-all.

use edgemodule_core::{Error, ErrorKind};
use pyo3::prelude::*;

pyo3::import_exception!(edgemodule.errors, InvalidArgumentError);
pyo3::import_exception!(edgemodule.errors, InvalidStateError);
pyo3::import_exception!(edgemodule.errors, UnauthorizedError);
pyo3::import_exception!(edgemodule.errors, ConnectionFailedError);
pyo3::import_exception!(edgemodule.errors, ConnectionLostError);
pyo3::import_exception!(edgemodule.errors, OperationTimeoutError);
pyo3::import_exception!(edgemodule.errors, ThrottledError);
pyo3::import_exception!(edgemodule.errors, MessageTooLargeError);
pyo3::import_exception!(edgemodule.errors, RejectedError);
pyo3::import_exception!(edgemodule.errors, OperationCancelledError);
pyo3::import_exception!(edgemodule.errors, ClientClosedError);
pyo3::import_exception!(edgemodule.errors, TlsError);
pyo3::import_exception!(edgemodule.errors, EdgeIOError);
pyo3::import_exception!(edgemodule.errors, ProtocolError);
pyo3::import_exception!(edgemodule.errors, UnsupportedError);
pyo3::import_exception!(edgemodule.errors, InternalError);
pyo3::import_exception!(edgemodule.errors, ConfigurationError);
pyo3::import_exception!(edgemodule.errors, QueueFullError);
pyo3::import_exception!(edgemodule.errors, NotFoundError);

/// The Python exception for `kind` carrying `message`.
pub fn from_kind(kind: ErrorKind, message: String) -> PyErr {
    match kind {
        ErrorKind::InvalidArgument => InvalidArgumentError::new_err(message),
        ErrorKind::InvalidState => InvalidStateError::new_err(message),
        ErrorKind::Unauthorized => UnauthorizedError::new_err(message),
        ErrorKind::ConnectionRefused => ConnectionFailedError::new_err(message),
        ErrorKind::ConnectionLost => ConnectionLostError::new_err(message),
        ErrorKind::Timeout => OperationTimeoutError::new_err(message),
        ErrorKind::Throttled => ThrottledError::new_err(message),
        ErrorKind::MessageTooLarge => MessageTooLargeError::new_err(message),
        ErrorKind::Rejected => RejectedError::new_err(message),
        ErrorKind::Cancelled => OperationCancelledError::new_err(message),
        ErrorKind::Closed => ClientClosedError::new_err(message),
        ErrorKind::Tls => TlsError::new_err(message),
        ErrorKind::Io => EdgeIOError::new_err(message),
        ErrorKind::Protocol => ProtocolError::new_err(message),
        ErrorKind::Unsupported => UnsupportedError::new_err(message),
        ErrorKind::Internal => InternalError::new_err(message),
        ErrorKind::Configuration => ConfigurationError::new_err(message),
        ErrorKind::QueueFull => QueueFullError::new_err(message),
        ErrorKind::NotFound => NotFoundError::new_err(message),
        // ErrorKind is #[non_exhaustive]; a kind added to the core without a class here shows up
        // as INTERNAL and fails the ErrorKind::ALL walk in the tests.
        _ => InternalError::new_err(format!("[{}] {message}", kind.name())),
    }
}

/// Converts a core error, keeping its cause chain in the message.
pub fn to_py(e: Error) -> PyErr {
    from_kind(e.kind(), e.display_chain())
}

pub fn invalid_argument(message: impl Into<String>) -> PyErr {
    from_kind(ErrorKind::InvalidArgument, message.into())
}
pub fn invalid_state(message: impl Into<String>) -> PyErr {
    from_kind(ErrorKind::InvalidState, message.into())
}
pub fn internal(message: impl Into<String>) -> PyErr {
    from_kind(ErrorKind::Internal, message.into())
}

/// `(name, number, retryable)` for every core kind, in numeric order.
#[pyfunction]
pub fn error_kinds() -> Vec<(&'static str, u32, bool)> {
    ErrorKind::ALL.iter().map(|k| (k.name(), k.code(), k.is_retryable())).collect()
}

/// Raises the exception the binding maps `name` to (a test hook for the completeness check).
#[pyfunction]
#[pyo3(name = "_raise_error_kind")]
pub fn raise_error_kind(name: &str) -> PyResult<()> {
    let kind = ErrorKind::from_name(name).ok_or_else(|| invalid_argument(format!("unknown error kind '{name}'")))?;
    Err(from_kind(kind, format!("raised for {name}")))
}
