"""The `transport`, `https_port` and `proxy` options: names are the core's, and both clients work
over MQTT over WebSocket against a real hub. Every WebSocket client is given an MQTT port nothing
listens on, so none can silently use MQTT over TLS."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from edgemodule import AsyncModuleClient, Message, ModuleClient, errors

from helpers import OFFLINE_CS as CS, closed_port


def ws_options(hub: Any) -> Dict[str, Any]:
    return {**hub.options(), "transport": "mqtt_ws", "mqtt_port": closed_port()}


def check_unknown_transport(error: errors.EdgeError) -> None:
    assert isinstance(error, errors.InvalidArgumentError) and isinstance(error, ValueError)
    assert error.code == "INVALID_ARGUMENT"
    # The core's message, naming the accepted transports.
    assert "unknown transport 'carrier_pigeon'" in str(error)
    assert "mqtt_ws" in str(error)


def test_unknown_transport_is_invalid_argument() -> None:
    with pytest.raises(errors.InvalidArgumentError) as caught:
        ModuleClient.create_from_connection_string(CS, transport="carrier_pigeon")
    check_unknown_transport(caught.value)
    with pytest.raises(errors.InvalidArgumentError):
        ModuleClient.create_from_edge_environment(transport="")
    with pytest.raises(TypeError):
        ModuleClient.create_from_connection_string(CS, transport=1)
    # Names are case-insensitive, as everywhere.
    with pytest.raises(errors.ConfigurationError):
        ModuleClient.create_from_connection_string(CS, transport="MQTT", proxy="http://127.0.0.1:3128")


@pytest.mark.asyncio
async def test_async_unknown_transport_is_invalid_argument() -> None:
    with pytest.raises(errors.InvalidArgumentError) as caught:
        await AsyncModuleClient.create_from_connection_string(CS, transport="carrier_pigeon")
    check_unknown_transport(caught.value)
    with pytest.raises(errors.InvalidArgumentError):
        await AsyncModuleClient.create_from_edge_environment(transport="carrier_pigeon")


def test_proxy_is_checked_by_the_core() -> None:
    # Only the WebSocket transport uses a proxy ...
    with pytest.raises(errors.ConfigurationError, match="WebSocket"):
        ModuleClient.create_from_connection_string(CS, transport="mqtt", proxy="http://127.0.0.1:3128")
    # ... and it must be an http:// URL.
    with pytest.raises(errors.ConfigurationError):
        ModuleClient.create_from_connection_string(CS, transport="mqtt_ws", proxy="127.0.0.1:3128")


def test_send_receive_and_twin_over_websocket(hub: Any) -> None:
    cs = hub.connection_string
    with ModuleClient.create_from_connection_string(cs("sender"), hub.ca_pem, **ws_options(hub)) as s, \
            ModuleClient.create_from_connection_string(cs("receiver"), hub.ca_pem, **ws_options(hub)) as r:
        s.send_message_to_output(Message(b'{"t":21}', message_id="mid-ws", custom_properties={"k/2": "a&b=c"}), "out1")
        m = r.receive_message("in1", timeout=10)
        assert (m.data, m.message_id, m.custom_properties) == (b'{"t":21}', "mid-ws", {"k/2": "a&b=c"})
        assert m.connection_module_id == "sender"
        m.complete()
        big = bytes(i % 251 for i in range(200 * 1024))
        s.send_message_to_output(big, "out1")
        m = r.receive_message("in1", timeout=10)
        assert m.data == big
        m.complete()
        assert r.get_twin()["desired"]["threshold"] == 25
        r.patch_twin_reported_properties({"transport": "mqtt_ws"})
        assert r.get_twin()["reported"]["transport"] == "mqtt_ws"


def test_create_from_edge_environment_over_websocket(hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    env = hub.env("receiver")
    assert env["EDGEMODULE_HTTPS_PORT"] == str(hub.https_port)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EDGEMODULE_MQTT_PORT", str(closed_port()))
    with ModuleClient.create_from_edge_environment(transport="mqtt_ws", operation_timeout=10.0) as c:
        assert (c.module_id, c.connected) == ("receiver", True)
        assert c.get_twin()["desired"]["threshold"] == 25


@pytest.mark.asyncio
async def test_async_send_receive_over_websocket(hub: Any) -> None:
    cs = hub.connection_string
    s = await AsyncModuleClient.create_from_connection_string(cs("sender"), hub.ca_pem, **ws_options(hub))
    r = await AsyncModuleClient.create_from_connection_string(cs("receiver"), hub.ca_pem, **ws_options(hub))
    async with s, r:
        await s.send_message_to_output(Message("a", message_id="1", custom_properties={"k": "v"}), "out1")
        m = await r.receive_message("in1", timeout=10)
        assert (m.data, m.message_id, m.custom_properties, m.input_name) == (b"a", "1", {"k": "v"}, "in1")
        m.complete()
        twin = await r.get_twin()
        assert twin["desired"]["threshold"] == 25
