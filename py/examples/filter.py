"""Example module: forward readings above a threshold.

Messages on input ``input1`` carry JSON such as ``{"temperature": 31.5}``. Those hotter than the
``threshold`` desired property go out on ``output1``; the rest are dropped (and completed).
The ``reset`` direct method restores the default threshold and reports it.

Run it with a module's environment, as edgeAgent would::

    edgemodule-hub run --module filter -- python py/examples/filter.py
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import Any, Dict

from edgemodule import Message, MethodRequest, ModuleClient

DEFAULT_THRESHOLD = 25.0
log = logging.getLogger("filter")


class Filter:
    def __init__(self, client: ModuleClient) -> None:
        self.client = client
        self.threshold = DEFAULT_THRESHOLD
        self.forwarded = 0

    def apply_desired(self, desired: Dict[str, Any]) -> None:
        value = desired.get("threshold")
        if isinstance(value, (int, float)):
            self.threshold = float(value)
            self.client.patch_twin_reported_properties({"threshold": self.threshold})
            log.info("threshold is now %s", self.threshold)

    def on_input(self, message: Message) -> None:
        try:
            reading = json.loads(message.data)
            temperature = float(reading["temperature"])
        except (ValueError, KeyError, TypeError):
            log.warning("dropping malformed message %r", message.data[:64])
            return  # returning completes the message
        if temperature > self.threshold:
            out = Message(message.data, content_type="application/json", content_encoding="utf-8")
            out.custom_properties["threshold"] = str(self.threshold)
            self.client.send_message_to_output(out, "output1")
            self.forwarded += 1

    def on_reset(self, request: MethodRequest) -> None:
        self.threshold = DEFAULT_THRESHOLD
        self.client.patch_twin_reported_properties({"threshold": self.threshold})
        request.respond(200, {"threshold": self.threshold, "forwarded": self.forwarded})


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ModuleClient.create_from_edge_environment() as client:
        f = Filter(client)
        f.apply_desired(client.get_twin()["desired"])
        client.on_twin_desired_properties_patch_received = f.apply_desired
        client.on_method("reset", f.on_reset)
        client.on_message("input1", f.on_input)
        log.info("filter running with threshold %s", f.threshold)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
