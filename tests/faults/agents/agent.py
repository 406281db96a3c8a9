"""The Python package's fault agent (tests/faults/README.md).

Configured by FAULT_* environment variables; one event per line on stdout, timestamps from
time.monotonic_ns() (CLOCK_MONOTONIC, the driver's clock).

FAULT_MODE=send: N numbered sends to output "out" with AsyncModuleClient, at most FAULT_WINDOW
unacknowledged, optionally paced at FAULT_RATE per second: "ack SEQ T" / "err SEQ CODE T",
"state 1|0 REASON T", "ready", "done".

FAULT_MODE=deadlines: the blocking ModuleClient (module of FAULT_CS) and AsyncModuleClient
(module of FAULT_CS2) side by side; after "go" every call with a deadline, "op NAME CODE MS"
each (CODE is the error's .code; a TIMEOUT that is not also a builtin TimeoutError is reported
as TIMEOUT_NOT_A_TIMEOUTERROR), "stalled-done", then after the next "go" one more send each.
"""

import asyncio
import os
import sys
import threading
import time

import edgemodule
from edgemodule.errors import EdgeError

_out = threading.Lock()


def say(line):
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def num(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def options():
    o = {
        "mqtt_port": num("FAULT_MQTT_PORT", 8883),
        "https_port": num("FAULT_HTTPS_PORT", 443),
        "operation_timeout": num("FAULT_TIMEOUT_MS", 30000) / 1000,
        "connect_timeout": num("FAULT_CONNECT_TIMEOUT_MS", 10000) / 1000,
        "retry_initial_delay": 0.02,
        "retry_max_delay": 0.5,
        "retry_give_up_after": None,
    }
    transport = os.environ["FAULT_TRANSPORT"]
    if transport != "mqtt":  # the default; a wheel older than the option still runs mqtt
        o["transport"] = transport
    if transport == "amqp":
        o["amqp_port"] = num("FAULT_AMQP_PORT", 5671)
    ttl = num("FAULT_SAS_TTL", 0)
    if ttl:
        o["sastoken_ttl"] = ttl
        o["sastoken_renewal_margin"] = num("FAULT_SAS_MARGIN", 1)
    return o


def on_state(connected, reason):
    say(f"state {1 if connected else 0} {reason} {time.monotonic_ns()}")


def code_of(e):
    if not isinstance(e, EdgeError):
        return "NOT_EDGE_ERROR"
    if e.code == "TIMEOUT" and not isinstance(e, TimeoutError):
        return "TIMEOUT_NOT_A_TIMEOUTERROR"
    return e.code


# ---- send mode ----


async def run_send(cs, ca):
    client = await edgemodule.AsyncModuleClient.create_from_connection_string(cs, ca, **options())
    client.on_connection_state(on_state)
    n, window, rate = num("FAULT_N", 1000), num("FAULT_WINDOW", 100), num("FAULT_RATE", 0)
    say("ready")
    slots = asyncio.Semaphore(window)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(seq):
        try:
            await client.send_message_to_output(edgemodule.Message(str(seq)), "out")
            say(f"ack {seq} {time.monotonic_ns()}")
        except Exception as e:  # noqa: BLE001 - every failure is reported by code
            say(f"err {seq} {code_of(e)} {time.monotonic_ns()}")
        finally:
            slots.release()

    tasks = set()
    for seq in range(n):
        if rate:
            wait = start + seq / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing
        await slots.acquire()
        task = asyncio.ensure_future(one(seq))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    say("done")
    await client.shutdown()


# ---- deadlines mode ----


def timed_sync(prefix, op, call):
    t0 = time.monotonic_ns()
    try:
        call()
        code = "OK"
    except Exception as e:  # noqa: BLE001
        code = code_of(e)
    say(f"op {prefix}.{op} {code} {(time.monotonic_ns() - t0) / 1e6:.1f}")


async def timed_async(prefix, op, coro_fn):
    t0 = time.monotonic_ns()
    try:
        await coro_fn()
        code = "OK"
    except Exception as e:  # noqa: BLE001
        code = code_of(e)
    say(f"op {prefix}.{op} {code} {(time.monotonic_ns() - t0) / 1e6:.1f}")


def sync_ops(c, d, response):
    device = c.device_id
    invoker = threading.Thread(
        target=timed_sync,
        args=("sync", "invoke", lambda: c.invoke_method(device, "receiver", "ping", None, response, 0)),
    )
    invoker.start()
    timed_sync("sync", "send", lambda: c.send_message_to_output(edgemodule.Message("x"), "out", timeout=d))
    timed_sync("sync", "send_batch", lambda: c.send_messages_to_output([b"a", b"b", b"c"], "out", timeout=d))
    timed_sync("sync", "get_twin", lambda: c.get_twin(timeout=d))
    timed_sync("sync", "patch_reported", lambda: c.patch_twin_reported_properties({"stalled": True}, timeout=d))
    if hasattr(c, "publish"):
        timed_sync("sync", "publish", lambda: c.publish("faults/x", b"x", 1, False, timeout=d))
        timed_sync("sync", "subscribe", lambda: c.subscribe("faults/#", lambda m: None, timeout=d))
        timed_sync("sync", "unsubscribe", lambda: c.unsubscribe("faults/#", timeout=d))
    timed_sync("sync", "receive", lambda: c.receive_message(timeout=d))
    invoker.join()


async def async_ops(c, d, response):
    device = c.device_id
    invoker = asyncio.ensure_future(
        timed_async("async", "invoke", lambda: c.invoke_method(device, "receiver", "ping", None, response, 0))
    )
    await timed_async("async", "send", lambda: c.send_message_to_output(edgemodule.Message("x"), "out", timeout=d))
    await timed_async("async", "send_batch", lambda: c.send_messages_to_output([b"a", b"b"], "out", timeout=d))
    await timed_async("async", "get_twin", lambda: c.get_twin(timeout=d))
    await timed_async(
        "async", "patch_reported", lambda: c.patch_twin_reported_properties({"stalled": True}, timeout=d)
    )
    if hasattr(c, "publish"):
        await timed_async("async", "publish", lambda: c.publish("faults/x", b"x", 1, False, timeout=d))
        await timed_async("async", "subscribe", lambda: c.subscribe("faults/#", lambda m: None, timeout=d))
        await timed_async("async", "unsubscribe", lambda: c.unsubscribe("faults/#", timeout=d))
    await timed_async("async", "receive", lambda: c.receive_message(timeout=d))
    await invoker


def expect_go():
    line = sys.stdin.readline().strip()
    if line != "go":
        raise SystemExit(f"expected go on stdin, got {line!r}")


def run_deadlines(cs, cs2, ca):
    d = num("FAULT_DEADLINE_MS", 1000) / 1000
    response = num("FAULT_INVOKE_RESPONSE_S", 5)
    sync_client = edgemodule.ModuleClient.create_from_connection_string(cs, ca, **options())
    sync_client.on_connection_state(on_state)
    loop = asyncio.new_event_loop()

    async def connect():
        c = await edgemodule.AsyncModuleClient.create_from_connection_string(cs2, ca, **options())
        await c.get_twin()
        return c

    async_client = loop.run_until_complete(connect())
    sync_client.get_twin()
    say("ready")
    expect_go()
    # The blocking client's calls on a thread, the asyncio client's on the loop, at once.
    worker = threading.Thread(target=sync_ops, args=(sync_client, d, response))
    worker.start()
    loop.run_until_complete(async_ops(async_client, d, response))
    worker.join()
    say("stalled-done")
    expect_go()
    t0 = time.monotonic_ns()
    try:
        sync_client.send_message_to_output(edgemodule.Message("after"), "out")

        async def send_after():
            await async_client.send_message_to_output(edgemodule.Message("after"), "out")

        loop.run_until_complete(send_after())
        code = "OK"
    except Exception as e:  # noqa: BLE001
        code = code_of(e)
    say(f"op after_send {code} {(time.monotonic_ns() - t0) / 1e6:.1f}")
    say("done")
    sync_client.shutdown()

    async def close():
        await async_client.shutdown()

    loop.run_until_complete(close())
    loop.close()


def main():
    if os.environ["FAULT_TRANSPORT"] == "amqp" and "amqp_port" not in edgemodule._native.OPTION_NAMES:
        say("skip this edgemodule wheel has no amqp_port option (the hub's AMQPS port is not 5671 here)")
        return
    with open(os.environ["FAULT_CA_FILE"]) as f:
        ca = f.read()
    mode = os.environ["FAULT_MODE"]
    if mode == "send":
        asyncio.run(run_send(os.environ["FAULT_CS"], ca))
    elif mode == "deadlines":
        run_deadlines(os.environ["FAULT_CS"], os.environ["FAULT_CS2"], ca)
    else:
        raise SystemExit(f"unknown FAULT_MODE {mode}")


if __name__ == "__main__":
    main()
