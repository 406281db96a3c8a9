"""Shared helpers for the tests (kept tiny: the fixture lives in conftest.py)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, List, TypeVar

T = TypeVar("T")

# A well-formed connection string for checks that fail before any connection is made.
OFFLINE_CS = "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=" + "a" * 44


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Collector(List[T]):
    """A list that handlers append to from the dispatcher thread."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def __call__(self, item: T) -> None:
        with self.lock:
            self.append(item)


def closed_port() -> int:
    """A loopback port with no listener."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
