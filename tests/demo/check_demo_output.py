#!/usr/bin/env python3
"""Checks the output of scripts/demo.sh: did the three-language pipeline really do its job?

    check_demo_output.py OUTPUT_FILE [--max-run-seconds N] [--self-test]

Exits 0 when every check passes, 1 with one line per failed check otherwise. With --self-test
it first checks OUTPUT_FILE (which must pass), then damaged copies of it (each must fail), so a
checker that cannot see a broken demo fails too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, Callable, Dict, List, Optional

ROUTE = re.compile(r"^hub route\s+\| (\S+) --\[([^\]]+)\]--> (\S+)  (\{.*?\})(?: \((.*)\))?$")
NODE_ALERT = re.compile(r"^alert \(Node\)\s+\| ALERT #(\d+): (-?[\d.]+) C at reading (\d+) \(threshold ([\d.]+)\)$")
GLITCH = re.compile(r"^sensor \(C\)\s+\| reading (\d+) is a glitch")
FINISHED = re.compile(r"^== demo finished: build (\d+) s, run (\d+) s$")


def parse_props(text: Optional[str]) -> Dict[str, str]:
    props: Dict[str, str] = {}
    for part in (text or "").split(", "):
        if "=" in part:
            k, v = part.split("=", 1)
            props[k] = v
    return props


def answer_after(lines: List[str], heading: str) -> Optional[Dict[str, Any]]:
    """The JSON answer the demo prints (indented) after the heading line."""
    for i, line in enumerate(lines):
        if line.startswith("== ") and heading in line:
            for later in lines[i + 1 : i + 30]:
                if later.startswith("   {"):
                    try:
                        answer = json.loads(later.strip())
                    except ValueError:
                        return None
                    return answer if isinstance(answer, dict) else None
            return None
    return None


def check(text: str, max_run_seconds: int) -> List[str]:
    lines = text.splitlines()
    problems: List[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    def has(pattern: str) -> bool:
        return any(re.search(pattern, line) for line in lines)

    expect(not has(r"DEMO FAILED"), "the demo reported a failure")

    # All three modules came up, each in its own language.
    expect(has(r"^sensor \(C\)\s+\| connected as 'sensor'"), "the C sensor did not connect")
    expect(has(r"^filter \(Python\)\s+\| ready: forwarding readings above 30 "), "the Python filter did not start with threshold 30")
    expect(has(r"^alert \(Node\)\s+\| ready:"), "the Node alert module did not start")
    expect(has(r"^sensor \(C\)\s+\| done: \d+ readings sent"), "the C sensor did not finish")

    routes = [m for m in (ROUTE.match(line) for line in lines) if m]
    readings = [(json.loads(m.group(4)), parse_props(m.group(5))) for m in routes
                if m.group(1) == "sensor/readings" and m.group(3) == "filter/readings"]
    alerts = [(json.loads(m.group(4)), parse_props(m.group(5))) for m in routes
              if m.group(1) == "filter/alerts" and m.group(3) == "alert/alerts"]

    # The route's WHERE clause: good readings pass, glitches (quality=bad) never reach the filter.
    expect(len(readings) >= 10, f"only {len(readings)} readings were routed to the filter")
    expect(all(p.get("quality") == "good" for _, p in readings), "a reading with quality other than 'good' passed the route")
    glitches = {int(m.group(1)) for m in (GLITCH.match(line) for line in lines) if m}
    expect(len(glitches) > 0, "the sensor sent no glitch, so the route condition was not exercised")
    leaked = glitches & {b.get("seq") for b, _ in readings}
    expect(not leaked, f"glitch readings {sorted(leaked)} reached the filter despite the route's WHERE")

    # The filter's threshold: alerts only above the threshold in force; 30 first, then 40.
    thresholds = [p.get("threshold") for _, p in alerts]
    expect("30" in thresholds, "no alert was forwarded under the initial threshold 30")
    expect("40" in thresholds, "no alert was forwarded under the changed threshold 40")
    if "40" in thresholds:
        after = thresholds[thresholds.index("40"):]
        expect(all(t == "40" for t in after), "an alert under threshold 30 came after the change to 40")
    for body, props in alerts:
        try:
            over = float(body["temperature"]) > float(props.get("threshold", "nan"))
        except (KeyError, TypeError, ValueError):
            over = False
        expect(over, f"alert {body} does not exceed its threshold {props.get('threshold')}")
    alerted = {b.get("seq") for b, _ in alerts}
    for body, _ in readings:
        t = float(body.get("temperature", 0))
        if t > 40:
            expect(body.get("seq") in alerted, f"reading {body} is above every threshold but raised no alert")
        if t <= 30:
            expect(body.get("seq") not in alerted, f"reading {body} is below every threshold but raised an alert")
    expect(has(r"^filter \(Python\)\s+\| desired threshold changed: 30 -> 40"), "the filter did not see the desired threshold change")
    expect(has(r"^== the filter reports threshold 40 "), "the filter's reported threshold did not become 40")

    # Every routed alert reached the Node module, once, with the same reading and threshold.
    node = [m for m in (NODE_ALERT.match(line) for line in lines) if m]
    expect(len(node) > 0, "no alert reached the Node module")
    expect(len(node) == len(alerts), f"{len(alerts)} alerts were routed to the Node module but it printed {len(node)}")
    expect([int(m.group(1)) for m in node] == list(range(1, len(node) + 1)), "the Node module's alert numbers are not 1..n")
    expect(sorted(int(m.group(3)) for m in node) == sorted(int(b["seq"]) for b, _ in alerts if "seq" in b),
           "the Node module did not print the readings that were routed to it")

    # The direct methods were answered by the Node module.
    status = answer_after(lines, "direct method 'status'")
    expect(status is not None and status.get("ok") is True and status.get("status") == 200,
           f"method 'status' was not answered with 200: {status}")
    if status and isinstance(status.get("payload"), dict):
        payload = status["payload"]
        expect(isinstance(payload.get("alerts"), int) and payload["alerts"] >= 5,
               f"method 'status' reports too few alerts: {payload}")
        expect(isinstance(payload.get("byThreshold"), dict) and "30" in payload["byThreshold"],
               f"method 'status' shows no alert under threshold 30: {payload}")
    expect(has(r"^alert \(Node\)\s+\| method status -> "), "the Node module did not print the 'status' call")
    ack = answer_after(lines, "direct method 'ack'")
    expect(ack is not None and ack.get("ok") is True and ack.get("status") == 200, f"method 'ack' was not answered with 200: {ack}")
    if ack and isinstance(ack.get("payload"), dict):
        expect(ack["payload"].get("by") == "demo.sh", f"method 'ack' did not receive the demo's payload: {ack}")
        expect(ack["payload"].get("acknowledged") == len(node),
               f"method 'ack' acknowledged {ack['payload'].get('acknowledged')} alerts, the Node module printed {len(node)}")

    # It ended by itself, in time.
    finished = [m for m in (FINISHED.match(line) for line in lines) if m]
    expect(len(finished) == 1, "the demo did not print its final line")
    if finished:
        run = int(finished[0].group(2))
        expect(run <= max_run_seconds, f"the demo ran for {run} s (limit {max_run_seconds} s, build excluded)")
    return problems


def drop(pattern: str) -> Callable[[str], str]:
    return lambda text: "\n".join(line for line in text.splitlines() if not re.search(pattern, line))


def replace(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new)


def add_after(pattern: str, extra: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        out: List[str] = []
        for line in text.splitlines():
            out.append(line)
            if re.search(pattern, line):
                out.append(extra)
        return "\n".join(out)

    return mutate


# Damaged outputs the checker must reject: what a misbehaving demo would print.
MUTATIONS: Dict[str, Callable[[str], str]] = {
    "no alert reached Node": drop(r"^alert \(Node\)\s+\| ALERT #"),
    "one alert lost on the way to Node": drop(r"^alert \(Node\)\s+\| ALERT #2:"),
    "threshold change not applied": replace("threshold=40", "threshold=30"),
    "filter never saw the patch": drop(r"desired threshold changed"),
    "reported threshold not 40": drop(r"^== the filter reports threshold 40"),
    "method status not answered": replace('"status":200', '"status":504'),
    "method ack missing": drop(r"^   \{.*acknowledged"),
    "route WHERE let a glitch through": add_after(
        r"reading \d+ is a glitch",
        'hub route        | sensor/readings --[sensorToFilter]--> filter/readings  {"seq":8,"temperature":88.0,"unit":"C"} (quality=bad)',
    ),
    "demo did not finish": drop(r"^== demo finished"),
    "demo reported a failure": lambda text: text + "\n== DEMO FAILED: something\n",
    "python filter never started": drop(r"^filter \(Python\)\s+\| ready"),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--max-run-seconds", type=int, default=60)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    with open(args.output, encoding="utf-8", errors="replace") as f:
        text = f.read()

    problems = check(text, args.max_run_seconds)
    for p in problems:
        print(f"FAIL: {p}")
    if problems:
        return 1
    print("demo output: all checks passed")
    if args.self_test:
        missed = [name for name, mutate in MUTATIONS.items() if not check(mutate(text), args.max_run_seconds)]
        for name in missed:
            print(f"FAIL: self-test: the checker accepted a damaged output ({name})")
        if missed:
            return 1
        print(f"checker self-test: all {len(MUTATIONS)} damaged outputs rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
