#!/usr/bin/env bash
# The main job: build everything, start a local edge hub on the bundled deployment, run a sensor
# and a filter module against it, change the filter's threshold and invoke its `reset` method
# while it runs, and print every routed message. Needs only cargo (installed by rustup).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== building (release)"
cargo build --release -q -p edgemodule-hub
cargo build --release -q -p edgemodule-core --examples
hub=target/release/edgemodule-hub
state=target/demo-state
rm -rf "$state"
$hub --state-dir "$state" init --hostname localhost
# Ephemeral ports: modules learn them through `edgemodule-hub run`.
$hub --state-dir "$state" start --deployment examples/demo/deployment.json --mqtt-port 0 --https-port 0 &
hub_pid=$!
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do $hub --state-dir "$state" status >/dev/null 2>&1 && break; sleep 0.1; done
echo "== hub: $($hub --state-dir "$state" status)"
$hub --state-dir "$state" monitor --text | sed 's/^/route: /' &
$hub --state-dir "$state" run --module filter -- target/release/examples/filter &
SENSOR_READINGS=40 $hub --state-dir "$state" run --module sensor -- target/release/examples/sensor &
sensor_pid=$!
sleep 3
echo "== lowering the filter threshold to 35 (desired property)"
$hub --state-dir "$state" twin patch-desired --module filter '{"threshold": 35}'
sleep 3
echo "== invoking filter.reset"
$hub --state-dir "$state" invoke --module filter --method reset --payload '{}' --timeout 10
wait $sensor_pid
echo "== filter twin: $($hub --state-dir "$state" twin get --module filter)"
echo "== upstream sink: $(wc -l < "$state/upstream.jsonl" 2>/dev/null || echo 0) alert(s) in $state/upstream.jsonl"
kill $hub_pid
echo "== demo finished"
