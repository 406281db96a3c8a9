"""edgemodule: an Azure IoT Edge module client with a Rust core.

``ModuleClient`` is the blocking client (calls release the GIL and honour Ctrl-C);
``AsyncModuleClient`` offers the same operations as awaitables. See the package README for
the mapping to the official ``azure-iot-device`` API.
"""

from __future__ import annotations

from . import errors
from ._native import (
    ERROR_KINDS,
    AsyncModuleClient,
    Message,
    MethodRequest,
    MethodResponse,
    MethodResult,
    ModuleClient,
    TopicMessage,
    __version__,
    set_log_level,
)
from .errors import EdgeError

__all__ = [
    "AsyncModuleClient",
    "ERROR_KINDS",
    "EdgeError",
    "Message",
    "MethodRequest",
    "MethodResponse",
    "MethodResult",
    "ModuleClient",
    "TopicMessage",
    "__version__",
    "errors",
    "set_log_level",
]
