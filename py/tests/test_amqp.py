"""The AMQP transport (`transport="amqp"`, `amqp_port=`) and settling messages three ways
(`complete`, `abandon`, `reject`) against a real hub. Every AMQP client is given an MQTT port
nothing listens on, so none can silently use MQTT over TLS."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest

from edgemodule import AsyncModuleClient, Message, ModuleClient, errors
from edgemodule._native import OPTION_NAMES

from helpers import OFFLINE_CS as CS, Collector, closed_port

def amqp_options(hub: Any) -> Dict[str, Any]:
    return {**hub.options(), "transport": "amqp", "mqtt_port": closed_port(), "connect_timeout": 15.0}


def first_after_reconnect_is(hub: Any, sender: ModuleClient, options: Dict[str, Any], marker: str) -> None:
    """After a reconnect the first message on in1 is `marker`, sent now: nothing settled away
    before came back."""
    with ModuleClient.create_from_connection_string(hub.connection_string("receiver"), hub.ca_pem, **options) as r:
        sender.send_message_to_output(marker, "out1")
        m = r.receive_message("in1", timeout=10)
        assert m.data == marker.encode()
        m.complete()


def test_amqp_port_is_an_option_checked_by_the_core() -> None:
    assert "amqp_port" in OPTION_NAMES
    with pytest.raises(errors.InvalidArgumentError, match="ports must be non-zero"):
        ModuleClient.create_from_connection_string(CS, transport="amqp", amqp_port=0)
    with pytest.raises(TypeError):
        ModuleClient.create_from_connection_string(CS, amqp_port="5671")


def test_amqp_abandon_comes_back_at_once_and_reject_is_gone(hub: Any) -> None:
    cs = hub.connection_string
    options = amqp_options(hub)
    states: Collector[Tuple[bool, str]] = Collector()
    with ModuleClient.create_from_connection_string(cs("sender"), hub.ca_pem, **options) as s:
        with ModuleClient.create_from_connection_string(cs("receiver"), hub.ca_pem, **options) as r:
            r.on_connection_state(lambda connected, reason: states((connected, reason)))
            s.send_message_to_output(Message(b"a", message_id="mid-amqp", custom_properties={"k/2": "a&b=c"}), "out1")
            first = r.receive_message("in1", timeout=10)
            assert (first.data, first.message_id, first.custom_properties) == (b"a", "mid-amqp", {"k/2": "a&b=c"})
            assert (first.input_name, first.connection_module_id) == ("in1", "sender")
            # Released: delivered again at once, without a reconnect.
            first.abandon()
            again = r.receive_message("in1", timeout=10)
            assert again.data == b"a"
            with pytest.raises(errors.InvalidStateError):
                first.complete()
            # Rejected: dropped by the hub; the next message is the next one sent.
            again.reject()
            with pytest.raises(errors.InvalidStateError):
                again.reject()
            s.send_message_to_output("b", "out1")
            b = r.receive_message("in1", timeout=10)
            assert b.data == b"b"
            b.complete()
            assert r.get_twin()["desired"]["threshold"] == 25
            r.patch_twin_reported_properties({"transport": "amqp"})
            assert r.get_twin()["reported"]["transport"] == "amqp"
            # User topics are an MQTT broker feature.
            with pytest.raises(errors.UnsupportedError):
                r.publish("sensors/t", b"x")
            assert [st for st in states if not st[0]] == [], f"no disconnection expected: {list(states)}"
        first_after_reconnect_is(hub, s, options, "after")


def test_mqtt_reject_is_not_redelivered_after_a_reconnect(hub: Any) -> None:
    cs = hub.connection_string
    options = {**hub.options(), "transport": "mqtt"}
    with ModuleClient.create_from_connection_string(cs("sender"), hub.ca_pem, **options) as s:
        with ModuleClient.create_from_connection_string(cs("receiver"), hub.ca_pem, **options) as r:
            s.send_message_to_output("rejected", "out1")
            m = r.receive_message("in1", timeout=10)
            assert m.data == b"rejected"
            m.reject()
            with pytest.raises(errors.InvalidStateError):
                m.complete()
            r.get_twin()  # one round trip so the acknowledgement is on the wire
        first_after_reconnect_is(hub, s, options, "after")


def test_reject_needs_a_received_message() -> None:
    with pytest.raises(errors.InvalidStateError):
        Message("x").reject()


def test_create_from_edge_environment_over_amqp(hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    env = hub.env("receiver")
    assert env["EDGEMODULE_AMQP_PORT"] == str(hub.amqp_port)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EDGEMODULE_MQTT_PORT", str(closed_port()))
    with ModuleClient.create_from_edge_environment(transport="amqp", operation_timeout=10.0, connect_timeout=15.0) as c:
        assert (c.module_id, c.connected) == ("receiver", True)
        assert c.get_twin()["desired"]["threshold"] == 25


@pytest.mark.asyncio
async def test_async_over_amqp_abandon_and_reject(hub: Any) -> None:
    cs = hub.connection_string
    s = await AsyncModuleClient.create_from_connection_string(cs("sender"), hub.ca_pem, **amqp_options(hub))
    r = await AsyncModuleClient.create_from_connection_string(cs("receiver"), hub.ca_pem, **amqp_options(hub))
    async with s, r:
        await s.send_message_to_output(Message("a", message_id="1"), "out1")
        m = await r.receive_message("in1", timeout=10)
        assert (m.data, m.message_id, m.input_name) == (b"a", "1", "in1")
        m.abandon()
        m = await r.receive_message("in1", timeout=10)
        assert m.data == b"a"
        m.reject()
        await s.send_message_to_output("b", "out1")
        bodies: List[bytes] = [(await r.receive_message("in1", timeout=10)).data]
        assert bodies == [b"b"]
        twin = await r.get_twin()
        assert twin["desired"]["threshold"] == 25
