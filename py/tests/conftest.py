"""A real ``edgemodule-hub`` process per test, on 127.0.0.1 with ephemeral ports.

The hub binary comes from ``EDGEMODULE_HUB_BIN`` (default ``target/debug/edgemodule-hub``
relative to the workspace root).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[2]

DEPLOYMENT: Dict[str, Any] = {
    "modulesContent": {
        "$edgeAgent": {
            "properties.desired": {
                "modules": {
                    "sender": {"type": "docker"},
                    "receiver": {"type": "docker"},
                    "filter": {"type": "docker"},
                }
            }
        },
        "$edgeHub": {
            "properties.desired": {
                "schemaVersion": "1.1",
                "routes": {
                    "toIn1": 'FROM /messages/modules/sender/outputs/out1 INTO BrokeredEndpoint("/modules/receiver/inputs/in1")',
                    "toIn2": 'FROM /messages/modules/sender/outputs/out2 INTO BrokeredEndpoint("/modules/receiver/inputs/in2")',
                    "back": 'FROM /messages/modules/receiver/outputs/* INTO BrokeredEndpoint("/modules/sender/inputs/back")',
                    "toFilter": 'FROM /messages/modules/sender/outputs/raw INTO BrokeredEndpoint("/modules/filter/inputs/input1")',
                    "filtered": 'FROM /messages/modules/filter/outputs/output1 INTO BrokeredEndpoint("/modules/receiver/inputs/filtered")',
                },
                "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
            }
        },
        "receiver": {"properties.desired": {"threshold": 25}},
        "filter": {"properties.desired": {"threshold": 25}},
    }
}


# The default deployment plus a broker policy: everyone connects; `sender` publishes on sensors/#
# and in/receiver/#; everyone subscribes to sensors/# and in/<own module id>/#; nobody publishes
# or subscribes on sensors/secret/# (docs/broker.md).
BROKER_DEPLOYMENT: Dict[str, Any] = copy.deepcopy(DEPLOYMENT)
BROKER_DEPLOYMENT["modulesContent"]["$edgeHub"]["properties.desired"].update(
    {
        "schemaVersion": "1.2",
        "mqttBroker": {
            "authorizations": [
                {"identities": ["{{iot:identity}}"], "allow": [{"operations": ["mqtt:connect"]}]},
                {
                    "identities": ["{{iot:this_device_id}}/sender"],
                    "allow": [{"operations": ["mqtt:publish"], "resources": ["sensors/#", "in/receiver/#"]}],
                },
                {
                    "identities": ["{{iot:identity}}"],
                    "allow": [{"operations": ["mqtt:subscribe"], "resources": ["sensors/#", "in/{{iot:module_id}}/#"]}],
                    "deny": [{"operations": ["mqtt:publish", "mqtt:subscribe"], "resources": ["sensors/secret/#"]}],
                },
            ]
        },
    }
)


def hub_binary() -> Path:
    env = os.environ.get("EDGEMODULE_HUB_BIN")
    path = Path(env) if env else ROOT / "target" / "debug" / "edgemodule-hub"
    if not path.exists():
        pytest.fail(f"hub binary {path} not found; build it with `cargo build -p edgemodule-hub` or set EDGEMODULE_HUB_BIN")
    return path


@dataclass
class Hub:
    binary: Path
    state_dir: Path
    process: "subprocess.Popen[bytes]"
    mqtt_port: int = 0
    https_port: int = 0
    amqp_port: int = 0
    log: Path = field(default_factory=Path)

    def cli(self, *args: str, timeout: float = 20) -> str:
        out = subprocess.run(
            [str(self.binary), "--state-dir", str(self.state_dir), *args],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"edgemodule-hub {' '.join(args)} failed: {out.stderr.decode()}{out.stdout.decode()}")
        return out.stdout.decode()

    @property
    def ca_pem(self) -> str:
        return (self.state_dir / "ca.pem").read_text()

    def connection_string(self, module: str) -> str:
        return self.cli("connection-string", "--module", module).strip()

    def env(self, module: str) -> Dict[str, str]:
        env: Dict[str, str] = {}
        for line in self.cli("env", "--module", module).splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value.strip("'")
        return env

    def options(self) -> Dict[str, Any]:
        """Keyword options for the factories: this hub's ports and short deadlines."""
        return {
            "mqtt_port": self.mqtt_port,
            "https_port": self.https_port,
            "amqp_port": self.amqp_port,
            "operation_timeout": 10.0,
            "connect_timeout": 5.0,
        }

    def patch_desired(self, module: str, patch: Dict[str, Any]) -> None:
        self.cli("twin", "patch-desired", "--module", module, json.dumps(patch))

    def twin(self, module: str) -> Dict[str, Any]:
        return json.loads(self.cli("twin", "get", "--module", module))

    def send(self, module: str, input_name: str, body: str, **properties: str) -> None:
        args: List[str] = ["send", "--module", module, "--input", input_name]
        for k, v in properties.items():
            args += ["--property", f"{k}={v}"]
        self.cli(*args, body)

    def invoke(self, module: str, method: str, payload: Any = None, timeout: int = 10) -> Dict[str, Any]:
        out = subprocess.run(
            [str(self.binary), "--state-dir", str(self.state_dir), "invoke", "--module", module,
             "--method", method, "--payload", json.dumps(payload), "--timeout", str(timeout)],
            capture_output=True,
            timeout=timeout + 15,
            check=False,
        )
        return json.loads(out.stdout.decode().strip().splitlines()[-1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    yield from run_hub(tmp_path, DEPLOYMENT)


@pytest.fixture
def broker_hub(tmp_path: Path) -> Iterator[Hub]:
    """A hub whose deployment carries the BROKER_DEPLOYMENT policy."""
    yield from run_hub(tmp_path, BROKER_DEPLOYMENT)


def run_hub(tmp_path: Path, manifest: Dict[str, Any]) -> Iterator[Hub]:
    binary = hub_binary()
    state = tmp_path / "hub"
    subprocess.run([str(binary), "--state-dir", str(state), "init"], check=True, capture_output=True, timeout=30)
    deployment = tmp_path / "deployment.json"
    deployment.write_text(json.dumps(manifest))
    log = tmp_path / "hub.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [str(binary), "--state-dir", str(state), "start", "--deployment", str(deployment),
             "--bind", "127.0.0.1", "--mqtt-port", "0", "--https-port", "0", "--amqp-port", "0"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    h = Hub(binary=binary, state_dir=state, process=process, log=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"hub exited with {process.returncode}: {log.read_text()}")
            try:
                status = json.loads(h.cli("status", timeout=5))
                break
            except (RuntimeError, ValueError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    pytest.fail(f"hub did not answer `status` within 30 s: {log.read_text()}")
                time.sleep(0.1)
        h.mqtt_port = int(status["mqtt"].rsplit(":", 1)[1])
        h.https_port = int(status["https"].rsplit(":", 1)[1])
        h.amqp_port = int(status["amqp"].rsplit(":", 1)[1])
        yield h
    finally:
        h.stop()
        if os.environ.get("EDGEMODULE_TEST_HUB_LOG"):
            sys.stderr.write(log.read_text())
