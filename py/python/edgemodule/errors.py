"""The edgemodule exception hierarchy.

Every error raised by edgemodule is an :class:`EdgeError`. Each subclass corresponds to one
canonical error kind of the Rust core (``ErrorKind``) and carries its name in ``code``, the same
string the C (``EDGE_STATUS_*``) and Node (``err.code``) bindings use. Where Python has an
idiomatic builtin for the situation, the subclass also derives from it, so
``except TimeoutError`` or ``except ValueError`` work as expected.
"""

from __future__ import annotations

from typing import Dict, Type

__all__ = [
    "EdgeError",
    "InvalidArgumentError",
    "InvalidStateError",
    "UnauthorizedError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "OperationTimeoutError",
    "ThrottledError",
    "MessageTooLargeError",
    "RejectedError",
    "OperationCancelledError",
    "ClientClosedError",
    "TlsError",
    "EdgeIOError",
    "ProtocolError",
    "UnsupportedError",
    "InternalError",
    "ConfigurationError",
    "QueueFullError",
    "NotFoundError",
    "error_class",
    # Names of the official azure-iot-device exceptions, as aliases.
    "ConnectionDroppedError",
    "OperationTimeout",
    "OperationCancelled",
    "CredentialError",
    "ClientError",
]


class EdgeError(Exception):
    """Base class of every edgemodule error."""

    #: Canonical name of the error kind, e.g. ``"TIMEOUT"``.
    code: str = "INTERNAL"
    #: Whether repeating the same operation later may succeed.
    retryable: bool = False


class InvalidArgumentError(EdgeError, ValueError):
    """A caller-supplied value is malformed or out of range."""

    code = "INVALID_ARGUMENT"


class InvalidStateError(EdgeError):
    """The operation is not possible in the client's current state."""

    code = "INVALID_STATE"


class UnauthorizedError(EdgeError, PermissionError):
    """The hub refused the credentials, or a token expired and could not be renewed."""

    code = "UNAUTHORIZED"


class ConnectionFailedError(EdgeError, ConnectionError):
    """The hub could not be reached or refused the connection for a non-auth reason."""

    code = "CONNECTION_REFUSED"
    retryable = True


class ConnectionLostError(EdgeError, ConnectionError):
    """An established connection dropped while the operation was in flight."""

    code = "CONNECTION_LOST"
    retryable = True


class OperationTimeoutError(EdgeError, TimeoutError):
    """The operation did not finish within its deadline."""

    code = "TIMEOUT"
    retryable = True


class ThrottledError(EdgeError):
    """The hub asked the client to slow down."""

    code = "THROTTLED"
    retryable = True


class MessageTooLargeError(EdgeError, ValueError):
    """A message or payload exceeds the hub's size limit."""

    code = "MESSAGE_TOO_LARGE"


class RejectedError(EdgeError):
    """The hub answered the request with an error status."""

    code = "REJECTED"


class OperationCancelledError(EdgeError):
    """The operation was cancelled."""

    code = "CANCELLED"


class ClientClosedError(EdgeError):
    """The client was shut down; no further operations are accepted."""

    code = "CLOSED"


class TlsError(EdgeError, ConnectionError):
    """TLS set-up or handshake failed (bad CA, name mismatch)."""

    code = "TLS"


class EdgeIOError(EdgeError, OSError):
    """A local I/O failure (files, sockets)."""

    code = "IO"
    retryable = True


class ProtocolError(EdgeError):
    """The peer sent something that violates the protocol."""

    code = "PROTOCOL"


class UnsupportedError(EdgeError, NotImplementedError):
    """The requested feature is not supported by this transport or build."""

    code = "UNSUPPORTED"


class InternalError(EdgeError):
    """A bug in edgemodule; please report it."""

    code = "INTERNAL"


class ConfigurationError(EdgeError):
    """The IoT Edge environment (IOTEDGE_* variables, workload API) is missing or malformed."""

    code = "CONFIGURATION"


class QueueFullError(EdgeError):
    """The bounded queue of operations waiting for a connection is full."""

    code = "QUEUE_FULL"
    retryable = True


class NotFoundError(EdgeError, LookupError):
    """A method-invocation target is not connected or has no handler."""

    code = "NOT_FOUND"


_BY_CODE: Dict[str, Type[EdgeError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        InvalidStateError,
        UnauthorizedError,
        ConnectionFailedError,
        ConnectionLostError,
        OperationTimeoutError,
        ThrottledError,
        MessageTooLargeError,
        RejectedError,
        OperationCancelledError,
        ClientClosedError,
        TlsError,
        EdgeIOError,
        ProtocolError,
        UnsupportedError,
        InternalError,
        ConfigurationError,
        QueueFullError,
        NotFoundError,
    )
}


def error_class(code: str) -> Type[EdgeError]:
    """The exception class for a canonical error name, e.g. ``error_class("TIMEOUT")``."""
    return _BY_CODE[code]


# Official azure-iot-device names, for code being ported.
ConnectionDroppedError = ConnectionLostError
OperationTimeout = OperationTimeoutError
OperationCancelled = OperationCancelledError
CredentialError = UnauthorizedError
ClientError = EdgeError
