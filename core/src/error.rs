//! The one error type of edgemodule. Every binding maps `ErrorKind` to its own idiom
//! (C `edge_status`, Python `EdgeError` subclasses, Node `err.code`), so the numbers and
//! names here are a public contract: append only, never renumber, never reuse.

use std::fmt;

/// What went wrong, as a stable number and name shared by every language binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A caller-supplied value is malformed or out of range (names, sizes, JSON, options).
    InvalidArgument = 1,
    /// The operation is not possible in the client's current state.
    InvalidState = 2,
    /// The hub refused our credentials, or a token expired and could not be renewed.
    Unauthorized = 3,
    /// The hub could not be reached or refused the connection for a non-auth reason.
    ConnectionRefused = 4,
    /// An established connection dropped while the operation was in flight.
    ConnectionLost = 5,
    /// The operation did not finish within its deadline.
    Timeout = 6,
    /// The hub asked us to slow down (status 429).
    Throttled = 7,
    /// A message or payload exceeds the hub's size limit (256 KB messages, 128 KB method payloads).
    MessageTooLarge = 8,
    /// The hub answered the request with an error status.
    Rejected = 9,
    /// The caller cancelled the operation.
    Cancelled = 10,
    /// The client was closed; no further operations are accepted.
    Closed = 11,
    /// TLS set-up or handshake failed (bad CA, name mismatch).
    Tls = 12,
    /// A local I/O failure (files, sockets).
    Io = 13,
    /// The peer sent something that violates the protocol.
    Protocol = 14,
    /// The requested feature is not supported by this transport or build.
    Unsupported = 15,
    /// A bug in edgemodule; please report it.
    Internal = 16,
    /// The IoT Edge environment (IOTEDGE_* variables, workload API) is missing or malformed.
    Configuration = 17,
    /// The bounded queue of sends waiting for a connection is full.
    QueueFull = 18,
    /// A method invocation target is not connected or has no handler (HTTP 404).
    NotFound = 19,
}

impl ErrorKind {
    /// Every kind, in numeric order; bindings walk this to prove their mapping complete.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidState,
        ErrorKind::Unauthorized,
        ErrorKind::ConnectionRefused,
        ErrorKind::ConnectionLost,
        ErrorKind::Timeout,
        ErrorKind::Throttled,
        ErrorKind::MessageTooLarge,
        ErrorKind::Rejected,
        ErrorKind::Cancelled,
        ErrorKind::Closed,
        ErrorKind::Tls,
        ErrorKind::Io,
        ErrorKind::Protocol,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
        ErrorKind::Configuration,
        ErrorKind::QueueFull,
        ErrorKind::NotFound,
    ];

    /// The stable number of this kind (never 0: 0 means success in C).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The stable SCREAMING_SNAKE name of this kind, e.g. `TIMEOUT`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::InvalidState => "INVALID_STATE",
            ErrorKind::Unauthorized => "UNAUTHORIZED",
            ErrorKind::ConnectionRefused => "CONNECTION_REFUSED",
            ErrorKind::ConnectionLost => "CONNECTION_LOST",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Throttled => "THROTTLED",
            ErrorKind::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorKind::Rejected => "REJECTED",
            ErrorKind::Cancelled => "CANCELLED",
            ErrorKind::Closed => "CLOSED",
            ErrorKind::Tls => "TLS",
            ErrorKind::Io => "IO",
            ErrorKind::Protocol => "PROTOCOL",
            ErrorKind::Unsupported => "UNSUPPORTED",
            ErrorKind::Internal => "INTERNAL",
            ErrorKind::Configuration => "CONFIGURATION",
            ErrorKind::QueueFull => "QUEUE_FULL",
            ErrorKind::NotFound => "NOT_FOUND",
        }
    }

    /// Looks a kind up by its number.
    pub fn from_code(code: u32) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// Looks a kind up by its name.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Whether repeating the same operation later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionLost
                | ErrorKind::Timeout
                | ErrorKind::Throttled
                | ErrorKind::QueueFull
                | ErrorKind::Io
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An edgemodule error: a kind, a human message, and optionally the underlying cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error { kind, message: message.into(), source: Some(Box::new(source)) }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn code(&self) -> u32 {
        self.kind.code()
    }
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The message followed by every cause, `: `-separated, for bindings that have only a string.
    pub fn display_chain(&self) -> String {
        let mut out = self.message.clone();
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Configuration, message)
    }
    pub(crate) fn timeout(what: &str, after: std::time::Duration) -> Self {
        Error::new(ErrorKind::Timeout, format!("{what} timed out after {} ms", after.as_millis()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_dense_and_round_trip() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.code() as usize, i + 1, "{kind} is out of order");
            assert_eq!(ErrorKind::from_code(kind.code()), Some(*kind));
            assert_eq!(ErrorKind::from_name(kind.name()), Some(*kind));
        }
        assert_eq!(ErrorKind::from_code(0), None);
    }

    #[test]
    fn display_chain_includes_causes() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::with_source(ErrorKind::Io, "reading CA", io);
        assert_eq!(e.display_chain(), "reading CA: disk on fire");
        assert_eq!(e.to_string(), "IO: reading CA");
    }
}
