//! `edge_status` (the core `ErrorKind` numbers plus binding-only statuses) and the thread-local
//! last-error message.

use std::cell::RefCell;
use std::os::raw::c_char;

use edgemodule_core::{Error, ErrorKind};

/// The result of every fallible `edge_*` function. 0 is success; 1.. are the core's error kinds
/// (same numbers and names in every language binding); 1000.. are statuses only the C ABI has.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum edge_status {
    /// Success.
    Ok = 0,
    /// A caller-supplied value is malformed or out of range (also: a required pointer is NULL,
    /// or a string is not UTF-8).
    InvalidArgument = 1,
    /// The operation is not possible in the current state.
    InvalidState = 2,
    /// The hub refused the credentials.
    Unauthorized = 3,
    /// The hub could not be reached or refused the connection.
    ConnectionRefused = 4,
    /// The connection dropped while the operation was in flight.
    ConnectionLost = 5,
    /// The operation did not finish within its deadline.
    Timeout = 6,
    /// The hub asked the client to slow down.
    Throttled = 7,
    /// A message or payload exceeds the hub's size limit.
    MessageTooLarge = 8,
    /// The hub answered with an error status.
    Rejected = 9,
    /// The operation was cancelled.
    Cancelled = 10,
    /// The client is closed.
    Closed = 11,
    /// TLS set-up or handshake failed.
    Tls = 12,
    /// A local I/O failure.
    Io = 13,
    /// The peer violated the protocol.
    Protocol = 14,
    /// Not supported by this transport or build.
    Unsupported = 15,
    /// A bug in edgemodule (including a caught panic).
    Internal = 16,
    /// The IoT Edge environment is missing or malformed.
    Configuration = 17,
    /// The queue of operations waiting for a connection is full.
    QueueFull = 18,
    /// A method invocation target is not connected or has no handler.
    NotFound = 19,
    /// The caller's buffer is too small; the required length was written to the out-length.
    InsufficientSize = 1000,
    /// A blocking call was made from inside a callback, where it could deadlock the dispatcher.
    WouldDeadlock = 1001,
}

impl edge_status {
    /// Every status, in numeric order.
    pub const ALL: &'static [edge_status] = &[
        edge_status::Ok,
        edge_status::InvalidArgument,
        edge_status::InvalidState,
        edge_status::Unauthorized,
        edge_status::ConnectionRefused,
        edge_status::ConnectionLost,
        edge_status::Timeout,
        edge_status::Throttled,
        edge_status::MessageTooLarge,
        edge_status::Rejected,
        edge_status::Cancelled,
        edge_status::Closed,
        edge_status::Tls,
        edge_status::Io,
        edge_status::Protocol,
        edge_status::Unsupported,
        edge_status::Internal,
        edge_status::Configuration,
        edge_status::QueueFull,
        edge_status::NotFound,
        edge_status::InsufficientSize,
        edge_status::WouldDeadlock,
    ];

    /// The status for a core error kind (same number).
    pub fn from_kind(kind: ErrorKind) -> edge_status {
        Self::from_code(kind.code()).unwrap_or(edge_status::Internal)
    }

    /// Looks a status up by number.
    pub fn from_code(code: u32) -> Option<edge_status> {
        Self::ALL.iter().copied().find(|s| *s as u32 == code)
    }

    /// The name without the `EDGE_STATUS_` prefix: the core kind's name for core kinds.
    pub fn short_name(self) -> &'static str {
        match self {
            edge_status::Ok => "OK",
            edge_status::InsufficientSize => "INSUFFICIENT_SIZE",
            edge_status::WouldDeadlock => "WOULD_DEADLOCK",
            other => ErrorKind::from_code(other as u32).map(ErrorKind::name).unwrap_or("INTERNAL"),
        }
    }

    /// The full C constant name as a NUL-terminated static string.
    pub fn c_name(self) -> &'static [u8] {
        match self {
            edge_status::Ok => b"EDGE_STATUS_OK\0",
            edge_status::InvalidArgument => b"EDGE_STATUS_INVALID_ARGUMENT\0",
            edge_status::InvalidState => b"EDGE_STATUS_INVALID_STATE\0",
            edge_status::Unauthorized => b"EDGE_STATUS_UNAUTHORIZED\0",
            edge_status::ConnectionRefused => b"EDGE_STATUS_CONNECTION_REFUSED\0",
            edge_status::ConnectionLost => b"EDGE_STATUS_CONNECTION_LOST\0",
            edge_status::Timeout => b"EDGE_STATUS_TIMEOUT\0",
            edge_status::Throttled => b"EDGE_STATUS_THROTTLED\0",
            edge_status::MessageTooLarge => b"EDGE_STATUS_MESSAGE_TOO_LARGE\0",
            edge_status::Rejected => b"EDGE_STATUS_REJECTED\0",
            edge_status::Cancelled => b"EDGE_STATUS_CANCELLED\0",
            edge_status::Closed => b"EDGE_STATUS_CLOSED\0",
            edge_status::Tls => b"EDGE_STATUS_TLS\0",
            edge_status::Io => b"EDGE_STATUS_IO\0",
            edge_status::Protocol => b"EDGE_STATUS_PROTOCOL\0",
            edge_status::Unsupported => b"EDGE_STATUS_UNSUPPORTED\0",
            edge_status::Internal => b"EDGE_STATUS_INTERNAL\0",
            edge_status::Configuration => b"EDGE_STATUS_CONFIGURATION\0",
            edge_status::QueueFull => b"EDGE_STATUS_QUEUE_FULL\0",
            edge_status::NotFound => b"EDGE_STATUS_NOT_FOUND\0",
            edge_status::InsufficientSize => b"EDGE_STATUS_INSUFFICIENT_SIZE\0",
            edge_status::WouldDeadlock => b"EDGE_STATUS_WOULD_DEADLOCK\0",
        }
    }
}

/// A failed call: the status to return and the message for the last-error slot.
#[derive(Debug)]
pub struct Failure {
    pub status: edge_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: edge_status, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(edge_status::InvalidArgument, message)
    }
    pub fn null(what: &str) -> Self {
        Failure::invalid(format!("{what} is NULL"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure { status: edge_status::from_kind(e.kind()), message: e.display_chain() }
    }
}

pub type FfiResult<T = ()> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

pub(crate) fn set_last_error(message: &str) {
    LAST_ERROR.with(|m| {
        let mut m = m.borrow_mut();
        m.clear();
        m.push_str(message);
    });
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|m| m.borrow_mut().clear());
}

pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|m| m.borrow().clone())
}

/// Copies `text` plus a NUL into `buf` (capacity `len`), writing the text length (without the
/// NUL) to `out_len` in every case; too small a buffer gives INSUFFICIENT_SIZE and leaves `buf`
/// untouched.
///
/// # Safety
/// `buf` must be NULL or valid for `len` bytes; `out_len` must be NULL or valid for one write.
pub(crate) unsafe fn copy_out(text: &[u8], buf: *mut c_char, len: usize, out_len: *mut usize) -> FfiResult {
    if out_len.is_null() {
        return Err(Failure::null("out_len"));
    }
    // SAFETY: checked non-NULL; the caller guarantees it is writable.
    unsafe { *out_len = text.len() };
    if buf.is_null() || len < text.len() + 1 {
        return Err(Failure::new(
            edge_status::InsufficientSize,
            format!("the buffer needs {} bytes (text plus NUL); it has {len}", text.len() + 1),
        ));
    }
    // SAFETY: the buffer holds at least text.len() + 1 bytes (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(())
}
