"""The demo's filter module, in Python on the ``edgemodule`` package.

Readings arrive on input ``readings`` as JSON ``{"seq": 3, "temperature": 41.2, "unit": "C"}``.
Those hotter than the desired property ``threshold`` go out on output ``alerts`` (with the
properties ``threshold`` and ``seq``); the others are completed and dropped. A change of the
desired threshold applies to the next reading and is acknowledged in the reported properties,
so ``edgemodule-hub twin get --module filter`` shows which threshold is in force.

Run it as a module: ``edgemodule-hub run --module filter -- python3 examples/demo/filter.py``
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any, Dict

from edgemodule import Message, ModuleClient

TAG = "filter (Python)  |"
DEFAULT_THRESHOLD = 30.0


def say(text: str) -> None:
    print(f"{TAG} {text}", flush=True)


class Filter:
    def __init__(self, client: ModuleClient, threshold: float) -> None:
        self.client = client
        self.threshold = threshold
        self.lock = threading.Lock()
        self.seen = 0
        self.forwarded = 0

    def on_desired(self, patch: Dict[str, Any], quiet: bool = False) -> None:
        value = patch.get("threshold")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        with self.lock:
            old, self.threshold = self.threshold, float(value)
        # Report the threshold in force and the desired version it came from.
        self.client.patch_twin_reported_properties({"threshold": self.threshold, "desiredVersion": patch.get("$version")})
        if not quiet:
            say(f"desired threshold changed: {old:g} -> {self.threshold:g} (reported back to the twin)")

    def on_reading(self, message: Message) -> None:
        try:
            reading = json.loads(message.data)
            temperature = float(reading["temperature"])
        except (ValueError, KeyError, TypeError):
            say(f"dropping a malformed reading: {message.data[:64]!r}")
            return  # returning completes (acknowledges) the message
        with self.lock:
            threshold = self.threshold
            self.seen += 1
        if temperature <= threshold:
            return
        alert = Message(message.data, content_type="application/json", content_encoding="utf-8")
        alert.custom_properties["threshold"] = f"{threshold:g}"
        alert.custom_properties["seq"] = str(reading.get("seq", ""))
        # Raising here would abandon the reading, so the hub would deliver it again.
        self.client.send_message_to_output(alert, "alerts")
        with self.lock:
            self.forwarded += 1


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with ModuleClient.create_from_edge_environment() as client:
        f = Filter(client, DEFAULT_THRESHOLD)
        # Subscribe to patches before reading the twin, so no change can fall in between.
        client.on_twin_desired_properties_patch_received = f.on_desired
        f.on_desired(client.get_twin()["desired"], quiet=True)
        client.on_message("readings", f.on_reading)
        say(f"ready: forwarding readings above {f.threshold:g} C from input 'readings' to output 'alerts'")
        while not stop.wait(0.2):
            pass
        with f.lock:
            say(f"stopping: {f.seen} readings in, {f.forwarded} alerts out")


if __name__ == "__main__":
    main()
