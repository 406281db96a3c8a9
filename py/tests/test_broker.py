"""User topics (the hub's MQTT broker): publish, subscribe and unsubscribe on the sync and the
async client, against a real hub whose policy is conftest.BROKER_DEPLOYMENT."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, List, Tuple

import pytest

from edgemodule import AsyncModuleClient, ModuleClient, TopicMessage, errors

Seen = Tuple[str, bytes, int, bool]
WAIT = 10.0


def connect(hub: Any, module: str) -> ModuleClient:
    return ModuleClient.create_from_connection_string(hub.connection_string(module), hub.ca_pem, **hub.options())


async def connect_async(hub: Any, module: str) -> AsyncModuleClient:
    return await AsyncModuleClient.create_from_connection_string(
        hub.connection_string(module), hub.ca_pem, **hub.options()
    )


class Inbox:
    """A handler that queues what it receives, for the test thread to wait on."""

    def __init__(self) -> None:
        self.q: "queue.Queue[Seen]" = queue.Queue()
        self.threads: List[int] = []

    def __call__(self, m: TopicMessage) -> None:
        self.threads.append(threading.get_ident())
        self.q.put((m.topic, m.payload, m.qos, m.retain))

    def next(self) -> Seen:
        try:
            return self.q.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no topic message within {WAIT} s") from None

    def empty(self) -> bool:
        return self.q.empty()


def test_publish_subscribe_retained_and_unsubscribe(broker_hub: Any) -> None:
    with connect(broker_hub, "sender") as s, connect(broker_hub, "receiver") as r:
        # A retained message published before the subscription arrives first, flagged retained.
        s.publish("sensors/door/state", "closed", retain=True)
        s.publish("sensors/door/state", b"open", qos=1, retain=True)
        doors = Inbox()
        r.subscribe("sensors/door/#", doors)
        assert doors.next() == ("sensors/door/state", b"open", 1, True)

        temps = Inbox()
        r.subscribe("sensors/+/temp", temps, timeout=5)
        s.publish("sensors/kitchen/temp", "21")
        s.publish("sensors/hall/humidity", "40")
        s.publish("sensors/hall/temp", bytearray(b"19"), qos=0)
        s.publish("sensors/empty/temp", None)
        assert temps.next() == ("sensors/kitchen/temp", b"21", 1, False)
        assert temps.next() == ("sensors/hall/temp", b"19", 0, False)
        assert temps.next() == ("sensors/empty/temp", b"", 1, False)
        # Handlers run on the client's dispatcher thread, not the caller's.
        assert len(set(temps.threads)) == 1 and threading.get_ident() not in temps.threads

        # Unsubscribe: the door message, published after the temperature, arrives; the
        # temperature does not.
        r.unsubscribe("sensors/+/temp")
        s.publish("sensors/kitchen/temp", "22")
        s.publish("sensors/door/state", "ajar")
        assert doors.next() == ("sensors/door/state", b"ajar", 1, False)
        assert temps.empty()
        r.unsubscribe("never/subscribed")

        # Subscribing again to the same filter replaces the handler; the retained message comes again.
        doors2 = Inbox()
        r.subscribe("sensors/door/#", doors2)
        assert doors2.next() == ("sensors/door/state", b"open", 1, True)
        s.publish("sensors/door/state", "shut", qos=0)
        assert doors2.next() == ("sensors/door/state", b"shut", 0, False)
        assert doors.empty()

        # A client may subscribe to its own topics and receive what it publishes itself.
        own = Inbox()
        s.subscribe("sensors/sender/#", own)
        s.publish("sensors/sender/echo", "me")
        assert own.next() == ("sensors/sender/echo", b"me", 1, False)


def test_handler_exceptions_are_logged_and_delivery_goes_on(broker_hub: Any, caplog: Any) -> None:
    with connect(broker_hub, "sender") as s, connect(broker_hub, "receiver") as r:
        inbox = Inbox()

        def flaky(m: TopicMessage) -> None:
            inbox(m)
            if m.payload == b"boom":
                raise RuntimeError("handler failed")

        r.subscribe("sensors/#", flaky)
        s.publish("sensors/a", "boom")
        s.publish("sensors/b", "fine")
        assert inbox.next()[1] == b"boom"
        assert inbox.next()[1] == b"fine"
        assert any("topic subscription" in rec.getMessage() for rec in caplog.records)


def test_refusals_and_invalid_arguments(broker_hub: Any) -> None:
    with connect(broker_hub, "sender") as s, connect(broker_hub, "receiver") as r:
        inbox = Inbox()
        # The policy refuses these subscriptions: SUBACK failure.
        for refused in ("sensors/secret/#", "in/sender/#"):
            with pytest.raises(errors.RejectedError) as e:
                r.subscribe(refused, inbox)
            assert e.value.code == "REJECTED"
        # `receiver` may not publish: the hub drops the connection, the client resends once and fails.
        with pytest.raises(errors.ConnectionLostError) as lost:
            r.publish("sensors/x", "y", timeout=30)
        assert lost.value.code == "CONNECTION_LOST"
        with pytest.raises(errors.ConnectionLostError):
            s.publish("sensors/secret/code", "1234", timeout=30)
        # Both clients still work: a new subscription is granted and receives.
        r.subscribe("sensors/after/#", inbox)
        s.publish("sensors/after/x", "still here")
        assert inbox.next() == ("sensors/after/x", b"still here", 1, False)

        # Validation is the core's: same codes as every binding.
        for topic in ("a/+", "a/#", "", "devices/d/modules/m/messages/events", "$iothub/twin/GET/?$rid=1"):
            with pytest.raises(errors.InvalidArgumentError):
                s.publish(topic, "x")
        for qos in (2, -1):
            with pytest.raises(errors.InvalidArgumentError, match="qos must be 0 or 1"):
                s.publish("sensors/q", "x", qos=qos)
        for bad in ("a/#/b", "a+", "#/a", "", "devices/#", "$iothub/#"):
            with pytest.raises(errors.InvalidArgumentError):
                r.subscribe(bad, inbox)
            with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError too
                r.unsubscribe(bad)
        with pytest.raises(errors.MessageTooLargeError):
            s.publish("sensors/big", b"\0" * (256 * 1024 + 1))
        # What the Python types force: a handler must be callable, a payload bytes-like or str.
        with pytest.raises(TypeError):
            r.subscribe("sensors/#", "not callable")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            s.publish("sensors/x", 42)  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidArgumentError):
            s.publish("sensors/x", "y", timeout=-1)
        assert inbox.empty()

    # After shutdown every user-topic call reports CLOSED.
    with pytest.raises(errors.ClientClosedError):
        s.publish("sensors/x", "y")
    with pytest.raises(errors.ClientClosedError):
        r.subscribe("sensors/#", inbox)


@pytest.mark.asyncio
async def test_async_publish_subscribe_unsubscribe(broker_hub: Any) -> None:
    async with await connect_async(broker_hub, "sender") as s, await connect_async(broker_hub, "receiver") as r:
        loop = asyncio.get_running_loop()
        got: "asyncio.Queue[Seen]" = asyncio.Queue()

        async def on_topic(m: TopicMessage) -> None:
            assert asyncio.get_running_loop() is loop  # coroutine handlers run on the client's loop
            await got.put((m.topic, m.payload, m.qos, m.retain))

        async def next_msg() -> Seen:
            return await asyncio.wait_for(got.get(), WAIT)

        await s.publish("sensors/door/state", "open", retain=True)
        await r.subscribe("sensors/#", on_topic)
        assert await next_msg() == ("sensors/door/state", b"open", 1, True)
        await r.subscribe("in/receiver/#", on_topic, timeout=5)
        await s.publish("in/receiver/cmd", b"go", qos=0)
        assert await next_msg() == ("in/receiver/cmd", b"go", 0, False)

        await r.unsubscribe("in/receiver/#")
        await s.publish("in/receiver/cmd", "again")
        await s.publish("sensors/marker", "after")
        assert await next_msg() == ("sensors/marker", b"after", 1, False)
        assert got.empty()

        with pytest.raises(errors.RejectedError):
            await r.subscribe("sensors/secret/#", on_topic)
        with pytest.raises(errors.InvalidArgumentError):
            await s.publish("a/+", "x")
        with pytest.raises(errors.InvalidArgumentError):
            await s.publish("sensors/q", "x", qos=2)
        with pytest.raises(errors.InvalidArgumentError):
            await r.subscribe("a/#/b", on_topic)
        with pytest.raises(errors.InvalidArgumentError):
            await r.unsubscribe("$iothub/#")
        with pytest.raises(errors.ConnectionLostError):
            await r.publish("sensors/x", "y", timeout=30)
