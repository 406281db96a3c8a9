"""A module written against the OFFICIAL azure-iot-device 2.14 Python SDK, unchanged, to prove the
hub speaks edgeHub's wire protocol. Usage: py_module.py (env | cs CONNECTION_STRING CA_FILE) PEER
where a mode ending in `ws` (`env-ws`, `cs-ws`, and `env-amqpws`, `cs-amqpws`, where the Node peer
uses AMQP over WebSocket: this SDK has no AMQP) connects with `websockets=True` (MQTT over
WebSocket on port 443) instead of MQTT on 8883.

Prints one JSON line per milestone; the compat driver reads them."""
import json
import os
import sys
import threading

from azure.iot.device import IoTHubModuleClient, Message, MethodResponse

mode, peer = sys.argv[1], sys.argv[-1]
source, websockets = mode.split("-")[0], mode.endswith("ws")
events = {"input": threading.Event(), "desired": threading.Event(), "ping": threading.Event(),
          "hello": threading.Event()}


def say(**kv):
    print(json.dumps(kv), flush=True)


if source == "env":
    client = IoTHubModuleClient.create_from_edge_environment(websockets=websockets)
else:
    with open(sys.argv[3]) as f:
        ca = f.read()
    client = IoTHubModuleClient.create_from_connection_string(sys.argv[2], server_verification_cert=ca,
                                                              websockets=websockets)


def on_message(msg):
    say(event="input", input=msg.input_name, body=msg.data.decode(), props=msg.custom_properties,
        content_type=msg.content_type)
    events["input"].set()


def on_desired(patch):
    say(event="desired", patch=patch)
    events["desired"].set()


def on_method(req):
    client.send_method_response(MethodResponse.create_from_method_request(req, 200, {"echo": req.payload, "by": "py"}))
    say(event="method", name=req.name, payload=req.payload)
    if req.name in events:
        events[req.name].set()


client.on_message_received = on_message
client.on_twin_desired_properties_patch_received = on_desired
client.on_method_request_received = on_method
client.connect()
twin = client.get_twin()
say(event="twin", desired=twin["desired"])
client.patch_twin_reported_properties({"sdk": "python", "mode": mode})
msg = Message("hello from python", content_encoding="utf-8", content_type="application/json")
msg.custom_properties["lang"] = "py"
msg.custom_properties["k/2"] = "a&b=c"
client.send_message_to_output(msg, "out")
say(event="ready")


def wait_for(*names):
    for name in names:
        if not events[name].wait(60):
            say(event="error", missing=name)
            sys.exit(1)


wait_for("input", "desired", "ping")
if source == "env":
    # Module-to-module calls exist only for clients created from the edge environment.
    params = {"methodName": "hello", "payload": {"from": "py"}, "responseTimeoutInSeconds": 10}
    result = client.invoke_method(params, os.environ["IOTEDGE_DEVICEID"], peer)
    say(event="invoked", status=result["status"], payload=result["payload"])
    wait_for("hello")  # stay up until the peer's call to us has been answered
twin = client.get_twin()
say(event="twin-final", reported=twin["reported"])
client.shutdown()
say(event="done")
