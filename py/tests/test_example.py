"""py/examples/filter.py runs as a module process against the hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgemodule import ModuleClient

from helpers import wait_until

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "filter.py"


def test_filter_example(hub: Any, tmp_path: Path) -> None:
    env = dict(os.environ, **hub.env("filter"))
    log = open(tmp_path / "filter.log", "wb")
    proc = subprocess.Popen([sys.executable, str(EXAMPLE)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        opts = hub.options()
        with ModuleClient.create_from_connection_string(hub.connection_string("sender"), hub.ca_pem, **opts) as s, \
                ModuleClient.create_from_connection_string(hub.connection_string("receiver"), hub.ca_pem, **opts) as r:
            # The hub stores routed messages until the filter connects, so no start-up race.
            for t in (10, 30, 20, 40):
                s.send_message_to_output(json.dumps({"temperature": t}), "raw")
            got = []
            for _ in range(2):
                m = r.receive_message("filtered", timeout=20)
                got.append(json.loads(m.data)["temperature"])
                m.complete()
            assert got == [30, 40]
            hub.patch_desired("filter", {"threshold": 35})
            # The filter reports the threshold it applies: once it reads 35, the new one is in force.
            wait_until(lambda: hub.twin("filter")["reported"].get("threshold") == 35, 20, "reported threshold 35")
            s.send_message_to_output(json.dumps({"temperature": 33}), "raw")
            s.send_message_to_output(json.dumps({"temperature": 36}), "raw")
            m = r.receive_message("filtered", timeout=20)
            assert json.loads(m.data)["temperature"] == 36
            assert m.custom_properties["threshold"] == "35.0"
            m.complete()
            answer = hub.invoke("filter", "reset", None)
            assert answer["status"] == 200 and answer["payload"]["threshold"] == 25.0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert proc.returncode == 0, (tmp_path / "filter.log").read_text()
