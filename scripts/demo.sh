#!/usr/bin/env bash
# The main job: one IoT Edge pipeline in three languages on a local hub, no Azure, no Docker.
#
#   sensor (C, libedgemodule)  --readings-->  [route WHERE quality = 'good' AND IS_DEFINED($body.temperature)]
#     --> filter (Python, edgemodule wheel; desired property `threshold`)  --alerts-->
#     --> alert (Node, edgemodule addon; direct methods `status` and `ack`)
#
# Builds what it needs, starts edgemodule-hub on examples/demo/deployment.json, runs the three
# modules with `edgemodule-hub run`, raises the filter's threshold (desired property) and invokes
# the alert module's methods while they run, prints every routed message (`monitor --text`) and
# each module's own lines, then stops everything and exits 0 (non-zero when a step fails).
#
# Needs cargo, python3 (venv, pip), node/npm and gcc (installed with apt when missing).
# Environment:
#   CARGO_PROFILE       cargo profile for everything built (default release)
#   CARGO_TARGET_DIR    honoured as usual (default <repo>/target)
#   DEMO_READINGS       readings the sensor sends (default 40, one every DEMO_INTERVAL_MS)
#   DEMO_INTERVAL_MS    default 250
#   DEMO_SKIP_BUILD=1   reuse what an earlier run built
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

profile="${CARGO_PROFILE:-release}"
case "$profile" in
  dev | test) profile_dir=debug; napi_profile=() ;;
  release | bench) profile_dir=release; napi_profile=(--release) ;;
  *) profile_dir="$profile"; napi_profile=(--profile "$profile") ;;
esac
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin_dir="$target_dir/$profile_dir"
hub="$bin_dir/edgemodule-hub"
demo_dir="$target_dir/demo"
state="$target_dir/demo-state"
venv="$target_dir/demo-venv"
build_log="$demo_dir/build.log"
readings="${DEMO_READINGS:-40}"
interval_ms="${DEMO_INTERVAL_MS:-250}"
started=$SECONDS

say() { printf '== %s\n' "$*"; }
die() {
  printf '== DEMO FAILED: %s\n' "$*" >&2
  exit 1
}

# Background processes are started as simple commands (never through a function), so that $!
# is the process itself and stopping it by pid leaves nothing behind.
pids=() # everything started below, stopped by pid on exit

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Build steps, or the hub, the monitor and the modules' `run` wrappers (which stop the modules).
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Build (quiet; the full output goes to $build_log and its tail is shown when a step fails).
# ---------------------------------------------------------------------------------------------
build_step() {
  local what="$1"
  shift
  printf '== building: %s\n' "$what"
  # In the background so that a signal to this script stops the step too (see cleanup).
  "$@" >>"$build_log" 2>&1 </dev/null &
  local step_pid=$!
  pids+=("$step_pid")
  if ! wait "$step_pid"; then
    tail -n 40 "$build_log" >&2
    die "building $what failed (full log: $build_log)"
  fi
  pids=()
}

build() {
  for tool in cargo python3 node npm; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
  done
  if ! command -v gcc >/dev/null; then
    say "installing gcc (apt-get install build-essential)"
    apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
  fi
  mkdir -p "$demo_dir"
  : >"$build_log"
  say "building with cargo profile '$profile' (log: ${build_log#"$root"/})"

  build_step "edgemodule-hub and libedgemodule (cargo)" \
    cargo build --profile "$profile" -p edgemodule-hub -p edgemodule-ffi

  build_step "the C sensor (gcc against libedgemodule)" \
    gcc -std=c11 -O2 -Wall -Wextra -pthread -I include examples/demo/sensor.c \
    -L "$bin_dir" -ledgemodule -Wl,-rpath,"$bin_dir" -lm -o "$demo_dir/sensor"

  # The Python package: a wheel built by maturin into the shared target dir, installed in a venv.
  if [ ! -x "$venv/bin/python" ]; then
    build_step "a Python venv (${venv#"$root"/})" python3 -m venv "$venv"
  fi
  build_step "maturin (pip)" "$venv/bin/python" -m pip install --disable-pip-version-check "maturin==1.9.6"
  rm -rf "$demo_dir/wheels"
  build_step "the edgemodule wheel (maturin) and installing it" bash -c '
    cd py && CARGO_TARGET_DIR="$1" "$2/bin/maturin" build --profile "$3" --out "$4" --interpreter "$2/bin/python" &&
      "$2/bin/python" -m pip install --disable-pip-version-check --force-reinstall --no-deps "$4"/edgemodule-*.whl' \
    _ "$target_dir" "$venv" "$profile" "$demo_dir/wheels"

  # The Node package: its dev tools (npm ci, skipped when node_modules is current) and the addon.
  if [ ! -x node/node_modules/.bin/napi ] || [ node/package-lock.json -nt node/node_modules/.package-lock.json ]; then
    # The install hook would build the addon itself; it is built explicitly below.
    build_step "the Node package's tools (npm ci)" \
      env -C node EDGEMODULE_SKIP_BUILD=1 npm ci --no-audit --no-fund
  fi
  build_step "the Node addon (napi build)" \
    env -C node npx --no-install napi build --platform --no-const-enum "${napi_profile[@]}"
}

if [ "${DEMO_SKIP_BUILD:-}" = 1 ]; then
  for f in "$hub" "$demo_dir/sensor" "$venv/bin/python"; do
    [ -x "$f" ] || die "DEMO_SKIP_BUILD=1 but $f is missing"
  done
else
  build
fi
build_seconds=$((SECONDS - started))
run_started=$SECONDS

# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------
hubc() { "$hub" --state-dir "$state" "$@"; }

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local seconds="$1"
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# Prints one reported property of a module twin (empty when absent).
reported() {
  hubc twin get --module "$1" 2>/dev/null |
    python3 -c 'import json,sys; v=json.load(sys.stdin).get("reported",{}).get(sys.argv[1]); print("" if v is None else json.dumps(v))' "$2"
}

monitor_log="$state/monitor.log"
routed() { grep -c -- "$1" "$monitor_log" 2>/dev/null || true; }
at_least() { [ "$(routed "$1")" -ge "$2" ]; }
reported_is() { [ "$(reported "$1" "$2")" = "$3" ]; }
running() { kill -0 "$1" 2>/dev/null; }
exited() { ! kill -0 "$1" 2>/dev/null; }
quiet_for_a_second() {
  local before
  before="$(wc -l <"$monitor_log")"
  sleep 1
  [ "$(wc -l <"$monitor_log")" = "$before" ]
}

rm -rf "$state"
hubc init --hostname localhost >/dev/null
# Ephemeral ports; the modules learn them from `edgemodule-hub run`.
"$hub" --state-dir "$state" start --deployment examples/demo/deployment.json --mqtt-port 0 --https-port 0 &
hub_pid=$!
pids+=("$hub_pid")
wait_for 15 hubc status >/dev/null 2>&1 || die "the hub did not start"
say "hub running on examples/demo/deployment.json, state in ${state#"$root"/}; routes:"
python3 -c '
import json, sys
routes = json.load(open(sys.argv[1]))["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
for name, r in routes.items():
    print("   " + name + ": " + (r if isinstance(r, str) else r["route"]))' examples/demo/deployment.json

# Every routed message, one line each, also kept in $monitor_log for the checks below.
: >"$monitor_log"
"$hub" --state-dir "$state" monitor --text 2>/dev/null | while IFS= read -r line; do
  printf 'hub route        | %s\n' "$line"
  printf '%s\n' "$line" >>"$monitor_log"
done &
monitor_pid="$(jobs -p %%)" # the first process of the pipeline: the monitor itself
pids+=("$monitor_pid")

say "starting the alert (Node) and filter (Python) modules"
"$hub" --state-dir "$state" run --module alert -- node examples/demo/alert.js &
alert_pid=$!
pids+=("$alert_pid")
"$hub" --state-dir "$state" run --module filter -- "$venv/bin/python" -u examples/demo/filter.py &
filter_pid=$!
pids+=("$filter_pid")
# Both say they are ready through their reported properties.
wait_for 30 reported_is alert ready true || die "the alert module did not come up"
wait_for 30 reported_is filter threshold 30.0 || die "the filter module did not come up"

say "starting the sensor (C): $readings readings, one every $interval_ms ms"
SENSOR_READINGS="$readings" SENSOR_INTERVAL_MS="$interval_ms" "$hub" --state-dir "$state" run --module sensor -- "$demo_dir/sensor" &
sensor_pid=$!
pids+=("$sensor_pid")

wait_for 30 at_least '--> alert/' 5 || die "the first alerts did not reach the alert module"
say "raising the filter's threshold from 30 to 40 (desired property)"
printf '   %s\n' "$(hubc twin patch-desired --module filter '{"threshold": 40}')"
wait_for 10 reported_is filter threshold 40.0 || die "the filter did not apply the new threshold"
say "the filter reports threshold 40 (desired version $(reported filter desiredVersion))"

say "invoking the alert module's direct method 'status'"
status_answer="$(hubc invoke --module alert --method status --timeout 10)" || die "status failed: $status_answer"
printf '   %s\n' "$status_answer"

wait_for 60 exited "$sensor_pid" || die "the sensor did not finish"
wait "$sensor_pid" || die "the sensor failed"
# Let the last readings drain through the filter to the alert module: no routing for a second.
wait_for 10 quiet_for_a_second || die "messages kept flowing after the sensor stopped"
running "$filter_pid" || die "the filter module exited early"
running "$alert_pid" || die "the alert module exited early"

say "acknowledging the alerts (direct method 'ack')"
ack_answer="$(hubc invoke --module alert --method ack --payload '{"by": "demo.sh"}' --timeout 10)" || die "ack failed: $ack_answer"
printf '   %s\n' "$ack_answer"

say "stopping the modules and the hub"
kill -TERM "$alert_pid" "$filter_pid" 2>/dev/null || true
wait "$alert_pid" "$filter_pid" 2>/dev/null || true
kill -TERM "$monitor_pid" "$hub_pid"
wait 2>/dev/null || true
pids=()

say "summary: $(routed '^sensor/readings --\[sensorToFilter\]') readings passed the route to the filter," \
  "$(routed '\[filterToAlert\]--> alert/') alerts reached the Node module"
say "demo finished: build $build_seconds s, run $((SECONDS - run_started)) s"
