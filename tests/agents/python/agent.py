"""The Python conformance agent: one command per stdin line (`verb key=value ...`, values
percent-encoded), one public `edgemodule` call per command, one result line (`ok ...` or
`err CODE message`), plus `event ...` lines for handler calls. See tests/xlang/README.md."""

import json
import sys
import threading
from urllib.parse import quote, unquote

try:
    from edgemodule import EdgeError, Message, ModuleClient
except Exception as e:  # the wheel is not installed in this interpreter
    print(f"skip the edgemodule package cannot be imported ({e!r})", flush=True)
    sys.exit(0)

FEATURES = "recv,method_defer,invoke"
out_lock = threading.Lock()
held_lock = threading.Lock()
held = {}
next_id = [0]


def enc(s):
    return quote(s, safe="-_.~")


def dec(s):
    return unquote(s, errors="replace")


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def hold(obj):
    with held_lock:
        next_id[0] += 1
        key = str(next_id[0])
        if obj is not None:
            held[key] = obj
        return key


def take(a, keep=False):
    with held_lock:
        if a.get("id") not in held:
            raise AgentError("unknown id")
        return held[a["id"]] if keep else held.pop(a["id"])


def message_fields(m):
    parts = ["body=" + enc(m.data.decode("utf-8", "replace"))]
    for key, value in (
        ("input", m.input_name),
        ("mid", m.message_id),
        ("cid", m.correlation_id),
        ("ct", m.content_type),
        ("ce", m.content_encoding),
        ("cmid", m.connection_module_id),
    ):
        if value is not None:
            parts.append(f"{key}={enc(value)}")
    props = m.custom_properties
    parts.append(f"nprops={len(props)}")
    parts += [f"p.{enc(k)}={enc(v)}" for k, v in props.items()]
    return " ".join(parts)


def options(a):
    o = {}
    seconds = {"timeout_ms": "operation_timeout", "connect_timeout_ms": "connect_timeout"}
    for k, name in seconds.items():
        if k in a:
            o[name] = int(a[k]) / 1000.0
    if "sas_ttl" in a:
        o["sastoken_ttl"] = int(a["sas_ttl"])
        o["sastoken_renewal_margin"] = int(a["sas_margin"])
    for k in ("mqtt_port", "https_port", "amqp_port"):
        if k in a:
            o[k] = int(a[k])
    for k in ("transport", "proxy"):
        if k in a:
            o[k] = a[k]
    return o


def timeout(a):
    return int(a["timeout_ms"]) / 1000.0 if "timeout_ms" in a else None


class AgentError(Exception):
    pass


state = {"client": None}


def client():
    if state["client"] is None:
        raise AgentError("not connected")
    return state["client"]


def message_handler(handler, mode):
    if mode == "defer":
        raise AgentError("a Python handler cannot keep a message past its return (use recv)")

    def on_message(m):
        say(f"event msg handler={enc(handler)} id={hold(None)} {message_fields(m)}")
        m.complete()

    return on_message


def method_handler(handler, mode, status):
    def on_method(req):
        key = hold(req if mode == "defer" else None)
        payload = json.dumps(req.payload, separators=(",", ":"))
        say(f"event method handler={enc(handler)} name={enc(req.name)} id={key} payload={enc(payload)}")
        if mode != "defer":
            req.respond(status, {"handler": handler, "request": req.payload})

    return on_method


def on_desired(patch):
    say("event desired patch=" + enc(json.dumps(patch, separators=(",", ":"))))


def topic_handler(flt):
    def on_topic(m):
        payload = m.payload.decode("utf-8", "replace")
        retain = "true" if m.retain else "false"
        say(f"event topic filter={enc(flt)} topic={enc(m.topic)} payload={enc(payload)} qos={m.qos} retain={retain}")

    return on_topic


def run(verb, a):
    if verb == "connect_env":
        state["client"] = ModuleClient.create_from_edge_environment(**options(a))
    elif verb == "connect_cs":
        state["client"] = ModuleClient.create_from_connection_string(a["cs"], a.get("ca"), **options(a))
    elif verb == "ids":
        return f"device={enc(client().device_id)} module={enc(client().module_id)}"
    elif verb == "close":
        client().shutdown()
    elif verb == "send":
        body = "x" * int(a["body_size"]) if "body_size" in a else a.get("body", "")
        props = {k[2:]: v for k, v in a.items() if k.startswith("p.")}
        m = Message(body, a.get("mid"), a.get("ce"), a.get("ct"), correlation_id=a.get("cid"), custom_properties=props)
        client().send_message_to_output(m, a["output"], timeout=timeout(a))
    elif verb == "on_input":
        handler = a.get("input", "*")
        client().on_message(a.get("input"), message_handler(handler, a.get("mode", "auto")))
    elif verb == "recv":
        m = client().receive_message(a.get("input"), timeout=timeout(a))
        return f"id={hold(m)} {message_fields(m)}"
    elif verb == "complete":
        take(a, keep=True).complete()
    elif verb == "abandon":
        take(a, keep=True).abandon()
    elif verb == "reject":
        take(a, keep=True).reject()
    elif verb == "on_method":
        status = int(a.get("status", "200"))
        client().on_method(a.get("name"), method_handler(a.get("name", "*"), a.get("mode", "auto"), status))
    elif verb == "respond":
        payload = json.loads(a["payload"]) if "payload" in a else None
        take(a).respond(int(a["status"]), payload)
    elif verb == "on_desired":
        client().on_desired(on_desired)
    elif verb == "get_twin":
        t = client().get_twin(timeout=timeout(a))
        return "twin=" + enc(json.dumps({"desired": t["desired"], "reported": t["reported"]}))
    elif verb == "patch_reported":
        client().patch_twin_reported_properties(json.loads(a["patch"]), timeout=timeout(a))
    elif verb == "invoke":
        r = client().invoke_method(
            a["device"],
            a.get("module"),
            a["method"],
            json.loads(a["payload"]) if "payload" in a else None,
            response_timeout=float(a.get("response_timeout", "30")),
            connect_timeout=float(a.get("connect_timeout", "0")),
        )
        return f"status={r.status} payload={enc(json.dumps(r.payload, separators=(',', ':')))}"
    elif verb == "publish":
        payload = "x" * int(a["payload_size"]) if "payload_size" in a else a.get("payload", "")
        kwargs = {"qos": int(a["qos"])} if "qos" in a else {}
        client().publish(a["topic"], payload, retain=a.get("retain") == "true", timeout=timeout(a), **kwargs)
    elif verb == "subscribe":
        client().subscribe(a["filter"], topic_handler(a["filter"]), timeout=timeout(a))
    elif verb == "unsubscribe":
        client().unsubscribe(a["filter"], timeout=timeout(a))
    else:
        raise AgentError(f"unknown verb {verb}")
    return ""


def main():
    say(f"hello lang=python features={FEATURES}")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        args = {}
        for w in words[1:]:
            k, _, v = w.partition("=")
            args[".".join(dec(p) for p in k.split("."))] = dec(v)
        try:
            fields = run(words[0], args)
            say("ok " + fields if fields else "ok")
        except EdgeError as e:
            say(f"err {e.code} {str(e).splitlines()[0] if str(e) else ''}")
        except AgentError as e:
            say(f"err AGENT {e}")
        except Exception as e:  # a binding raising something other than EdgeError is a finding
            say(f"err NOT_EDGE_ERROR {type(e).__name__}: {e}")
    if state["client"] is not None:
        try:
            state["client"].shutdown()
        except EdgeError:
            pass


if __name__ == "__main__":
    main()
