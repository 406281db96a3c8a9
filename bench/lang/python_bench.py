"""One benchmark workload of one Python module client against a running edgemodule-hub.

Usage: python_bench.py --impl edgemodule|official --workload a|b|c|d|e [--mode sync|async]
                       --cs CONNECTION_STRING --ca CA_FILE [--port MQTT_PORT] [--n N]

Workloads (256-byte bodies, QoS 1):
  a  send N messages to output "sink", awaiting each one
  b  send N messages to output "sink", 100 concurrent (asyncio.gather batches; the sync
     edgemodule client uses its pipelined batch call with batches of 100)
  c  receive N messages already queued on input "in" (the orchestrator pre-loads them through a
     route); timed from the first to the last message at the handler
  d  N sequential round trips: output "loop" -> route -> own input "loop"; p50 / p99
  e  RSS: the interpreter with the standard modules this script uses, after importing the SDK,
     and a connected client with an input handler after a 2 s settle

Prints one JSON line. `edgemodule` runs with target/py-venv's interpreter, `official`
(azure-iot-device 2.14) with target/compat-venv's; the official SDK only reaches port 8883.
"""


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

# The bare runtime: the interpreter with the standard modules every variant uses (asyncio,
# threading, json, argparse), before the SDK under test is imported.
RSS_BARE = rss_kib()

BODY = b"x" * 256
WINDOW = 100


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["edgemodule", "official"], required=True)
    p.add_argument("--workload", choices=list("abcde"), required=True)
    p.add_argument("--mode", choices=["sync", "async"], default="async")
    p.add_argument("--cs", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--timeout", type=float, default=300.0)
    return p.parse_args()


def percentile(sorted_samples, p):
    return sorted_samples[round((len(sorted_samples) - 1) * p)]


def result(args, **kv):
    out = {"impl": args.impl, "mode": args.mode, "workload": args.workload, "n": args.n}
    out.update(kv)
    out["cpu_s"] = round(time.process_time(), 3)
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------- edgemodule


def edgemodule_sync(args, ca):
    import edgemodule

    rss_loaded = rss_kib()
    opts = {} if args.port == 8883 else {"mqtt_port": args.port}
    client = edgemodule.ModuleClient.create_from_connection_string(args.cs, server_verification_cert=ca, **opts)
    try:
        w = args.workload
        if w == "a":
            t = time.perf_counter()
            for _ in range(args.n):
                client.send_message_to_output(BODY, "sink")
            return {"rate": args.n / (time.perf_counter() - t)}
        if w == "b":
            t = time.perf_counter()
            left = args.n
            while left:
                k = min(WINDOW, left)
                client.send_messages_to_output([BODY] * k, "sink")
                left -= k
            return {"rate": args.n / (time.perf_counter() - t), "how": "send_messages_to_output, batches of 100"}
        if w == "c":
            done = threading.Event()
            state = {"count": 0, "first": 0.0, "last": 0.0}

            def on_in(msg):
                now = time.perf_counter()
                if state["count"] == 0:
                    state["first"] = now
                state["count"] += 1
                if state["count"] == args.n:
                    state["last"] = now
                    done.set()
                # returning completes the message

            client.on_message("in", on_in)
            if not done.wait(args.timeout):
                raise TimeoutError(f"received {state['count']} of {args.n}")
            return {"rate": (args.n - 1) / (state["last"] - state["first"])}
        if w == "d":
            got = threading.Event()
            client.on_message("loop", lambda msg: got.set())
            samples = []
            for _ in range(args.n):
                t = time.perf_counter()
                client.send_message_to_output(BODY, "loop")
                if not got.wait(args.timeout):
                    raise TimeoutError("round trip message not received")
                got.clear()
                samples.append(time.perf_counter() - t)
            samples.sort()
            return {"p50_us": percentile(samples, 0.5) * 1e6, "p99_us": percentile(samples, 0.99) * 1e6}
        if w == "e":
            client.on_message("in", lambda msg: None)
            time.sleep(2)
            return {"rss_bare_kib": RSS_BARE, "rss_loaded_kib": rss_loaded, "rss_idle_kib": rss_kib()}
    finally:
        client.shutdown()


async def edgemodule_async(args, ca):
    import edgemodule

    rss_loaded = rss_kib()
    opts = {} if args.port == 8883 else {"mqtt_port": args.port}
    client = await edgemodule.AsyncModuleClient.create_from_connection_string(
        args.cs, server_verification_cert=ca, **opts
    )
    try:
        w = args.workload
        if w == "a":
            t = time.perf_counter()
            for _ in range(args.n):
                await client.send_message_to_output(BODY, "sink")
            return {"rate": args.n / (time.perf_counter() - t)}
        if w == "b":
            t = time.perf_counter()
            left = args.n
            while left:
                k = min(WINDOW, left)
                await asyncio.gather(*(client.send_message_to_output(BODY, "sink") for _ in range(k)))
                left -= k
            return {"rate": args.n / (time.perf_counter() - t), "how": "asyncio.gather, batches of 100"}
        if w == "c":
            first = None
            for i in range(args.n):
                msg = await asyncio.wait_for(client.receive_message("in"), args.timeout)
                msg.complete()
                if i == 0:
                    first = time.perf_counter()
            return {"rate": (args.n - 1) / (time.perf_counter() - first), "how": "await receive_message + complete"}
        if w == "d":
            samples = []
            for _ in range(args.n):
                t = time.perf_counter()
                await client.send_message_to_output(BODY, "loop")
                msg = await asyncio.wait_for(client.receive_message("loop"), args.timeout)
                msg.complete()
                samples.append(time.perf_counter() - t)
            samples.sort()
            return {"p50_us": percentile(samples, 0.5) * 1e6, "p99_us": percentile(samples, 0.99) * 1e6}
        if w == "e":
            client.on_message("in", lambda msg: None)
            await asyncio.sleep(2)
            return {"rss_bare_kib": RSS_BARE, "rss_loaded_kib": rss_loaded, "rss_idle_kib": rss_kib()}
    finally:
        await client.shutdown()


# --------------------------------------------------------------------------- official SDK


async def official_async(args, ca):
    from azure.iot.device import Message
    from azure.iot.device.aio import IoTHubModuleClient

    rss_loaded = rss_kib()
    if args.port != 8883:
        raise SystemExit("the official SDK can only connect to port 8883")
    client = IoTHubModuleClient.create_from_connection_string(args.cs, server_verification_cert=ca)
    loop = asyncio.get_running_loop()
    await client.connect()
    try:
        w = args.workload
        if w in "ab":
            t = time.perf_counter()
            if w == "a":
                for _ in range(args.n):
                    await client.send_message_to_output(Message(BODY), "sink")
            else:
                left = args.n
                while left:
                    k = min(WINDOW, left)
                    await asyncio.gather(*(client.send_message_to_output(Message(BODY), "sink") for _ in range(k)))
                    left -= k
            return {"rate": args.n / (time.perf_counter() - t)}
        if w == "c":
            done = loop.create_future()
            state = {"count": 0, "first": 0.0}

            def on_message(msg):  # the SDK runs sync handlers on its handler thread
                now = time.perf_counter()
                if state["count"] == 0:
                    state["first"] = now
                state["count"] += 1
                if state["count"] == args.n:
                    loop.call_soon_threadsafe(done.set_result, now)

            client.on_message_received = on_message
            last = await asyncio.wait_for(done, args.timeout)
            return {"rate": (args.n - 1) / (last - state["first"])}
        if w == "d":
            box = {}

            def on_message(msg):
                loop.call_soon_threadsafe(box["fut"].set_result, None)

            client.on_message_received = on_message
            samples = []
            for _ in range(args.n):
                box["fut"] = loop.create_future()
                t = time.perf_counter()
                await client.send_message_to_output(Message(BODY), "loop")
                await asyncio.wait_for(box["fut"], args.timeout)
                samples.append(time.perf_counter() - t)
            samples.sort()
            return {"p50_us": percentile(samples, 0.5) * 1e6, "p99_us": percentile(samples, 0.99) * 1e6}
        if w == "e":
            client.on_message_received = lambda msg: None
            await asyncio.sleep(2)
            return {"rss_bare_kib": RSS_BARE, "rss_loaded_kib": rss_loaded, "rss_idle_kib": rss_kib()}
    finally:
        await client.shutdown()


def main():
    args = parse()
    with open(args.ca) as f:
        ca = f.read()
    if args.impl == "edgemodule" and args.mode == "sync":
        out = edgemodule_sync(args, ca)
    elif args.impl == "edgemodule":
        out = asyncio.run(edgemodule_async(args, ca))
    else:
        out = asyncio.run(official_async(args, ca))
    result(args, **out)
    sys.stdout.flush()
    os._exit(0)  # do not wait for SDK threads winding down


if __name__ == "__main__":
    main()
