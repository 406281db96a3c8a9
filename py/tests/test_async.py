"""The AsyncModuleClient: the same primitives as test_sync.py, as awaitables."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import pytest

from edgemodule import AsyncModuleClient, Message, MethodRequest, MethodResponse, errors

pytestmark = pytest.mark.asyncio


async def connect(hub: Any, module: str) -> AsyncModuleClient:
    return await AsyncModuleClient.create_from_connection_string(
        hub.connection_string(module), hub.ca_pem, **hub.options()
    )


async def eventually(predicate: Any, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_send_receive_batch_and_async_for(hub: Any) -> None:
    async with await connect(hub, "sender") as s, await connect(hub, "receiver") as r:
        await s.send_message_to_output(Message("a", message_id="1", custom_properties={"k": "v"}), "out1")
        m = await r.receive_message("in1", timeout=10)
        assert (m.data, m.message_id, m.custom_properties, m.input_name) == (b"a", "1", {"k": "v"}, "in1")
        m.complete()
        await s.send_messages_to_output([b"x", "y", Message(b"z")], "out2")
        got: List[bytes] = []
        async for msg in r:
            got.append(msg.data)
            msg.complete()
            if len(got) == 3:
                break
        assert got == [b"x", b"y", b"z"]


async def test_coroutine_and_plain_handlers(hub: Any) -> None:
    async with await connect(hub, "sender") as s, await connect(hub, "receiver") as r:
        loop = asyncio.get_running_loop()
        seen: List[Any] = []

        @r.on_message("in1")
        async def on_in1(m: Message) -> None:
            assert asyncio.get_running_loop() is loop  # runs on the client's loop
            seen.append(("in1", m.data))

        r.on_message_received = lambda m: seen.append((m.input_name, m.data))
        await s.send_message_to_output("one", "out1")
        await s.send_message_to_output("two", "out2")
        await eventually(lambda: len(seen) == 2)
        assert sorted(seen) == [("in1", b"one"), ("in2", b"two")]


async def test_receive_timeout_and_cancellation(hub: Any) -> None:
    async with await connect(hub, "receiver") as r:
        with pytest.raises(errors.OperationTimeoutError):
            await r.receive_message("in1", timeout=0.2)
        task = asyncio.ensure_future(r.receive_message("in1"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The loop stays responsive while a receive is pending.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(r.receive_message("in1"), 0.3)


async def test_cancelled_receive_keeps_message_and_concurrent_calls(hub: Any) -> None:
    async with await connect(hub, "sender") as s, await connect(hub, "receiver") as r:
        # A receive cancelled while waiting must not take (and lose) the next message.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(r.receive_message("in1"), 0.2)
        await s.send_message_to_output(b"kept", "out1")
        m = await r.receive_message("in1", timeout=10)
        assert m.data == b"kept"
        m.complete()
        # Many calls in flight at once, and receives already waiting when the messages arrive.
        waiting = [asyncio.ensure_future(r.receive_message("in1", timeout=10)) for _ in range(50)]
        await asyncio.gather(*(s.send_message_to_output(str(i), "out1") for i in range(250)))
        got = [m.data for m in await asyncio.gather(*waiting)]
        got += [(await r.receive_message("in1", timeout=10)).data for _ in range(200)]
        assert sorted(got) == sorted(str(i).encode() for i in range(250))


async def test_twin_and_desired_handler(hub: Any) -> None:
    async with await connect(hub, "receiver") as r:
        assert (await r.get_twin())["desired"]["threshold"] == 25
        await r.patch_twin_reported_properties({"mode": "async"})
        assert (await r.get_twin())["reported"]["mode"] == "async"
        patches: List[Dict[str, Any]] = []
        r.on_desired(patches.append)
        await asyncio.get_running_loop().run_in_executor(None, hub.patch_desired, "receiver", {"threshold": 7})
        await eventually(lambda: len(patches) >= 1)
        assert patches[-1]["threshold"] == 7


async def test_method_late_response_and_invoke(hub: Any) -> None:
    async with await connect(hub, "sender") as s, await connect(hub, "receiver") as r:
        pending: List[MethodRequest] = []
        r.on_method("later", pending.append)
        call = asyncio.ensure_future(s.invoke_method(s.device_id, "receiver", "later", "hi", response_timeout=10))
        await eventually(lambda: len(pending) == 1)
        await asyncio.sleep(0.2)
        await r.send_method_response(MethodResponse.create_from_method_request(pending[0], 202, {"late": True}))
        result = await asyncio.wait_for(call, 15)
        assert (result.status, result.payload) == (202, {"late": True})

        @r.on_method()
        async def default(req: MethodRequest) -> None:
            await req.respond_async(200, {"name": req.name})

        assert (await s.invoke_method(s.device_id, "receiver", "zzz", response_timeout=10)).payload == {"name": "zzz"}
        with pytest.raises(errors.NotFoundError):
            await s.invoke_method(s.device_id, "filter", "nobody", response_timeout=5)


async def test_invalid_inputs_and_closed(hub: Any) -> None:
    c = await connect(hub, "sender")
    with pytest.raises(errors.InvalidArgumentError):
        await c.send_message_to_output(b"x", "")
    with pytest.raises(errors.InvalidArgumentError):
        c.send_message_to_output(b"x", "out1", timeout=-1)
    await c.shutdown()
    with pytest.raises(errors.ClientClosedError):
        await c.send_message_to_output(b"x", "out1")
    assert [m async for m in c] == []


async def test_create_from_edge_environment(hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in hub.env("sender").items():
        monkeypatch.setenv(key, value)
    c = await AsyncModuleClient.create_from_edge_environment(operation_timeout=10.0)
    try:
        assert c.module_id == "sender" and c.connected
        assert "desired" in await c.get_twin()
    finally:
        await c.shutdown()


async def test_connection_state_handler(hub: Any) -> None:
    c = await connect(hub, "sender")
    try:
        events: List[Any] = []
        c.on_connection_state(lambda connected, reason: events.append((connected, reason)))
        await asyncio.get_running_loop().run_in_executor(None, hub.stop)
        await eventually(lambda: any(not connected for connected, _ in events))
    finally:
        await c.shutdown()
