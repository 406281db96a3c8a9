"""Runs two modules written against the OFFICIAL Azure IoT SDKs (Python azure-iot-device 2.14,
Node azure-iot-device 1.18 + azure-iot-device-mqtt 1.16 + azure-iot-device-amqp 1.14) through a
real edgemodule-hub on the default ports 8883/443/5671: from connection strings and from the edge
environment (`edgemodule-hub run`), each over MQTT (8883), over MQTT over WebSocket (443,
`/$iothub/websocket`: Python `websockets=True`, Node `MqttWs`) and with the Node module over
AMQP 1.0 (5671, Node `Amqp`; the Python SDK has no AMQP, so its module stays on MQTT and messages
cross transports) and over AMQP over WebSocket (443, Node `AmqpWs`, beside Python over MQTT over
WebSocket, with nothing on 8883 or 5671). Checks routing with properties, twin get/reported/desired, a method invoked
from the CLI and module-to-module invoke_method.
Prints 'N passed, M failed'.

Usage: driver.py HUB_BIN PYTHON_WITH_SDK NODE_DIR_WITH_SDK"""
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time

HUB, PY, NODE_DIR = (os.path.abspath(p) for p in sys.argv[1:4])
HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOYMENT = {
    "modulesContent": {
        "$edgeAgent": {"properties.desired": {"modules": {"pymod": {}, "nodemod": {}}}},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": {
                "pyToNode": "FROM /messages/modules/pymod/outputs/out WHERE lang = 'py' INTO BrokeredEndpoint(\"/modules/nodemod/inputs/in\")",
                "nodeToPy": {"route": "FROM /messages/modules/nodemod/outputs/* INTO BrokeredEndpoint(\"/modules/pymod/inputs/in\")", "priority": 0},
            },
            "storeAndForwardConfiguration": {"timeToLiveSecs": 600},
        }},
        "pymod": {"properties.desired": {"threshold": 1}},
        "nodemod": {"properties.desired": {"threshold": 1}},
    }
}
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}", flush=True)


def cli(state, *args, timeout=30):
    out = subprocess.run([HUB, "--state-dir", state, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"edgemodule-hub {' '.join(args)}: {out.stderr.strip()} {out.stdout.strip()}")
    return out.stdout.strip()


class Module:
    """A module process whose JSON stdout lines are collected by a thread."""

    def __init__(self, name, argv, env=None):
        self.name, self.lines, self.events = name, queue.Queue(), []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=HERE)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                print(f"[{self.name}] {line.rstrip()}", flush=True)

    def wait_event(self, event, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                e = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.events.append(e)
            if e.get("event") == "error":
                raise RuntimeError(f"{self.name}: {e}")
            if e.get("event") == event:
                return e
        raise RuntimeError(f"{self.name}: no '{event}' within {timeout}s; stderr: {self.stderr_tail()}")

    def find(self, event):
        return next((e for e in self.events if e.get("event") == event), None)

    def stderr_tail(self):
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()[-2000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def run_mode(state, mode, threshold):
    ca = os.path.join(state, "ca.pem")
    node_env = dict(os.environ, NODE_PATH=os.path.join(NODE_DIR, "node_modules"))
    if mode.startswith("cs"):
        py = Module("pymod", [PY, "py_module.py", mode, cli(state, "connection-string", "--module", "pymod"), ca, "nodemod"])
        node = Module("nodemod", ["node", "node_module.js", mode, cli(state, "connection-string", "--module", "nodemod"), ca, "pymod"], node_env)
    else:
        py = Module("pymod", [HUB, "--state-dir", state, "run", "--module", "pymod", "--", PY, "py_module.py", mode, "nodemod"])
        node = Module("nodemod", [HUB, "--state-dir", state, "run", "--module", "nodemod", "--", "node", "node_module.js", mode, "pymod"], node_env)
    try:
        for m in (py, node):
            twin = m.wait_event("twin")
            check(f"{mode}: {m.name} twin get", twin["desired"].get("threshold") is not None, twin)
            m.wait_event("ready")
        for m in ("pymod", "nodemod"):
            cli(state, "twin", "patch-desired", "--module", m, json.dumps({"threshold": threshold}))
            answer = json.loads(cli(state, "invoke", "--module", m, "--method", "ping", "--payload", '{"n": 7}', "--timeout", "20"))
            check(f"{mode}: CLI invoke ping on {m}", answer.get("status") == 200 and answer["payload"]["echo"] == {"n": 7}, answer)
        for m in (py, node):
            m.wait_event("done", timeout=90)
            got = m.find("input")
            sender = "node" if m is py else "py"
            check(f"{mode}: {m.name} received the routed message with its properties",
                  got and got["props"].get("lang") == sender and got["props"].get("k/2") == "a&b=c" and got["input"] == "in", got)
            desired = m.find("desired")
            check(f"{mode}: {m.name} desired patch", desired and desired["patch"].get("threshold") == threshold, desired)
            if mode.startswith("env"):
                inv = m.find("invoked")
                check(f"{mode}: {m.name} module-to-module invoke_method", inv and inv["status"] == 200, inv)
        for m in ("pymod", "nodemod"):
            twin = json.loads(cli(state, "twin", "get", "--module", m))
            check(f"{mode}: {m} reported properties stored", twin["reported"].get("mode") == mode, twin["reported"])
    except Exception as e:  # noqa: BLE001 - any failure is reported as a failed check
        check(f"{mode}: scenario", False, e)
    finally:
        py.stop()
        node.stop()


def start_hub(state, deployment, *args):
    """Starts the hub and waits until its control socket answers; None if it exited (ports taken)."""
    hub = subprocess.Popen([HUB, "--state-dir", state, "start", "--deployment", deployment, *args],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = []
    threading.Thread(target=lambda: log.extend(hub.stderr), daemon=True).start()  # never let the pipe fill
    hub.log = log
    for _ in range(100):
        try:
            cli(state, "status")
            return hub
        except RuntimeError:
            if hub.poll() is not None:
                break
            time.sleep(0.1)
    hub.terminate()
    hub.wait(10)
    check(f"hub starts ({' '.join(args) or 'ports 8883 and 443'})", False, "".join(log).strip()[-2000:])
    return None


def stop_hub(hub):
    hub.terminate()
    hub.wait(10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def main():
    with tempfile.TemporaryDirectory() as state:
        cli(state, "init", "--hostname", "localhost")
        deployment = os.path.join(state, "deployment.json")
        with open(deployment, "w") as f:
            json.dump(DEPLOYMENT, f)
        # The official SDKs can only reach 8883/443: another process there stops the test.
        hub = start_hub(state, deployment)
        if hub:
            try:
                run_mode(state, "cs", 5)
                run_mode(state, "env", 9)
            finally:
                stop_hub(hub)
        # MQTT over WebSocket: the same state, with nothing on 8883, so an SDK that did not use
        # port 443 cannot connect at all.
        hub = start_hub(state, deployment, "-v", "--mqtt-port", str(free_port()))
        if hub:
            try:
                check("nothing listens on 8883 during the WebSocket runs", not port_open(8883))
                run_mode(state, "cs-ws", 13)
                run_mode(state, "env-ws", 17)
                connected = [line for line in hub.log if "module connected" in line]
                for m in ("pymod", "nodemod"):
                    over_ws = [line for line in connected if f"/{m}" in line and "(WebSocket)" in line]
                    check(f"ws: {m} connections came in over WebSocket", len(over_ws) >= 2, connected[-6:])
            finally:
                stop_hub(hub)
        # AMQP: the Node module on 5671 (nothing on 8883 for it to fall back to would also stop
        # Python, which has no AMQP, so 8883 stays; the hub log shows the transport).
        hub = start_hub(state, deployment, "-v")
        if hub:
            try:
                run_mode(state, "cs-amqp", 21)
                run_mode(state, "env-amqp", 25)
                over_amqp = [line for line in hub.log if "module connected over AMQP" in line and "/nodemod" in line]
                check("amqp: nodemod connections came in over AMQP", len(over_amqp) >= 2, hub.log[-6:])
                on_mqtt = [line for line in hub.log if "module connected" in line and "/nodemod" in line and "AMQP" not in line]
                check("amqp: nodemod never connected over MQTT", not on_mqtt, on_mqtt)
            finally:
                stop_hub(hub)
        # AMQP over WebSocket: the Node module with `AmqpWs`, Python over MQTT over WebSocket, and
        # no MQTT or AMQPS listener on 8883/5671, so only port 443 can carry either.
        hub = start_hub(state, deployment, "-v", "--mqtt-port", str(free_port()), "--no-amqp")
        if hub:
            try:
                check("nothing listens on 8883 or 5671 during the AMQP over WebSocket runs",
                      not port_open(8883) and not port_open(5671))
                run_mode(state, "cs-amqpws", 29)
                run_mode(state, "env-amqpws", 33)
                connected = [line for line in hub.log if "module connected" in line]
                node_ws = [line for line in connected if "/nodemod" in line and "over AMQP" in line and "(WebSocket)" in line]
                check("amqpws: nodemod connections came in over AMQP over WebSocket", len(node_ws) >= 2, connected[-6:])
                node_other = [line for line in connected if "/nodemod" in line and line not in node_ws]
                check("amqpws: nodemod connected over nothing else", not node_other, node_other)
                py_ws = [line for line in connected if "/pymod" in line and "(WebSocket)" in line]
                check("amqpws: pymod connections came in over MQTT over WebSocket", len(py_ws) >= 2, connected[-6:])
            finally:
                stop_hub(hub)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
