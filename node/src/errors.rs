//! Core errors as JavaScript `Error`s: `err.code` is the core `ErrorKind` name, `err.message` the
//! message with its cause chain, `err.retryable` the core's retry hint.

use edgemodule_core::{Error as CoreError, ErrorKind};
use napi::bindgen_prelude::{JsObjectValue, Object, ToNapiValue};
use napi::{Env, JsValue};
use napi_derive::napi;

/// The `code` of every error edgemodule rejects or throws with (the core's error kinds).
#[napi(string_enum = "UPPER_SNAKE")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A caller-supplied value is malformed or out of range (names, sizes, JSON, options).
    InvalidArgument,
    /// The operation is not possible in the current state (e.g. completing a message twice).
    InvalidState,
    /// The hub refused the credentials, or a token expired and could not be renewed.
    Unauthorized,
    /// The hub could not be reached or refused the connection for a non-auth reason.
    ConnectionRefused,
    /// An established connection dropped while the operation was in flight.
    ConnectionLost,
    /// The operation did not finish within its deadline.
    Timeout,
    /// The hub asked the client to slow down.
    Throttled,
    /// A message or payload exceeds the hub's size limit.
    MessageTooLarge,
    /// The hub answered the request with an error status.
    Rejected,
    /// The operation was cancelled.
    Cancelled,
    /// The client was closed.
    Closed,
    /// TLS set-up or handshake failed (bad CA, name mismatch).
    Tls,
    /// A local I/O failure.
    Io,
    /// The peer violated the protocol.
    Protocol,
    /// Not supported by this transport or build.
    Unsupported,
    /// A bug in edgemodule.
    Internal,
    /// The IoT Edge environment is missing or malformed.
    Configuration,
    /// The bounded queue of sends waiting for a connection is full.
    QueueFull,
    /// A method invocation target is not connected or has no handler.
    NotFound,
}

/// The Node code for a core kind. A kind this binding does not know yet maps to `INTERNAL`;
/// `errorCodes()` then lists `INTERNAL` twice, which the test suite rejects.
pub fn code_for(kind: ErrorKind) -> ErrorCode {
    match kind {
        ErrorKind::InvalidArgument => ErrorCode::InvalidArgument,
        ErrorKind::InvalidState => ErrorCode::InvalidState,
        ErrorKind::Unauthorized => ErrorCode::Unauthorized,
        ErrorKind::ConnectionRefused => ErrorCode::ConnectionRefused,
        ErrorKind::ConnectionLost => ErrorCode::ConnectionLost,
        ErrorKind::Timeout => ErrorCode::Timeout,
        ErrorKind::Throttled => ErrorCode::Throttled,
        ErrorKind::MessageTooLarge => ErrorCode::MessageTooLarge,
        ErrorKind::Rejected => ErrorCode::Rejected,
        ErrorKind::Cancelled => ErrorCode::Cancelled,
        ErrorKind::Closed => ErrorCode::Closed,
        ErrorKind::Tls => ErrorCode::Tls,
        ErrorKind::Io => ErrorCode::Io,
        ErrorKind::Protocol => ErrorCode::Protocol,
        ErrorKind::Unsupported => ErrorCode::Unsupported,
        ErrorKind::Internal => ErrorCode::Internal,
        ErrorKind::Configuration => ErrorCode::Configuration,
        ErrorKind::QueueFull => ErrorCode::QueueFull,
        ErrorKind::NotFound => ErrorCode::NotFound,
        _ => ErrorCode::Internal,
    }
}

/// The code of every core error kind, in the core's numeric order.
// Registered with Node by the macro; unit-test builds see no caller.
#[cfg_attr(test, allow(dead_code))]
#[napi(catch_unwind)]
pub fn error_codes() -> Vec<ErrorCode> {
    ErrorKind::ALL.iter().map(|k| code_for(*k)).collect()
}

/// Builds the JavaScript `Error` for `err` and wraps it so napi throws or rejects with exactly
/// that object.
pub fn to_js(env: &Env, err: &CoreError) -> napi::Error {
    build(env, err)
        .unwrap_or_else(|e| napi::Error::from_reason(format!("{}: {} ({e})", err.name(), err.display_chain())))
}

fn build(env: &Env, err: &CoreError) -> napi::Result<napi::Error> {
    let mut obj: Object = env.create_error(napi::Error::from_reason(err.display_chain()))?;
    // SAFETY: `env` is the live environment of the current JavaScript thread.
    let code = unsafe { ToNapiValue::to_napi_value(env.raw(), code_for(err.kind()))? };
    // SAFETY: as above; `code` was just created in this environment.
    let code = unsafe { napi::bindgen_prelude::Unknown::from_raw_unchecked(env.raw(), code) };
    obj.set_named_property("code", code)?;
    obj.set_named_property("retryable", err.is_retryable())?;
    Ok(napi::Error::from(obj.to_unknown()))
}
