#!/usr/bin/env bash
# End-to-end test of scripts/demo.sh: runs it in a session of its own, then checks that
#   - it exits 0 by itself (a hard limit of DEMO_TEST_TIMEOUT s, default 1500, covers a cold
#     build; the run itself, build excluded, must take at most DEMO_MAX_RUN_SECONDS, default 60),
#   - no process of its session is left behind,
#   - its output shows the pipeline working (tests/demo/check_demo_output.py: modules up in C,
#     Python and Node, the route's WHERE dropping glitches, alerts only above the threshold in
#     force, the desired threshold change applied and reported, every alert reaching the Node
#     module, the `status` and `ack` methods answered), and that checker rejects damaged outputs.
# Exits non-zero on the first failed check. CARGO_PROFILE is passed through to the demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out_dir="$target_dir/demo-test"
mkdir -p "$out_dir"
output="$out_dir/demo-output.log"
sid_file="$out_dir/demo.sid"
rm -f "$output" "$sid_file"
limit="${DEMO_TEST_TIMEOUT:-1500}"

fail() {
  echo "demo test FAILED: $*" >&2
  if [ -s "$output" ]; then
    echo "---- last lines of the demo output ($output):" >&2
    tail -n 40 "$output" >&2
  fi
  exit 1
}

# A new session (and process group) whose id is the demo's pid: whatever the demo starts stays
# in it unless it detaches on purpose, so leftovers can be found, and killed, by that id.
setsid bash -c 'echo $$ >"$1"; exec "$2"' _ "$sid_file" "$root/scripts/demo.sh" >"$output" 2>&1 </dev/null &
demo_pid=$!
echo "demo running (pid $demo_pid, output $output)"

deadline=$((SECONDS + limit))
while kill -0 "$demo_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
sid="$(cat "$sid_file" 2>/dev/null || echo "$demo_pid")"
if kill -0 "$demo_pid" 2>/dev/null; then
  kill -TERM -- "-$sid" 2>/dev/null || true
  sleep 5
  kill -KILL -- "-$sid" 2>/dev/null || true
  fail "the demo did not exit within $limit s"
fi
status=0
wait "$demo_pid" || status=$?
[ "$status" = 0 ] || fail "the demo exited with status $status"

# Nothing of the demo's session may outlive it (a moment of grace for processes already exiting).
for _ in $(seq 20); do
  left="$(pgrep -s "$sid" || true)"
  [ -z "$left" ] && break
  sleep 0.25
done
if [ -n "$left" ]; then
  ps -o pid,ppid,etime,args -p "$(echo "$left" | paste -sd,)" >&2 || true
  kill -KILL $left 2>/dev/null || true
  fail "the demo left processes behind: $(echo "$left" | paste -sd' ')"
fi

python3 "$root/tests/demo/check_demo_output.py" "$output" --self-test \
  --max-run-seconds "${DEMO_MAX_RUN_SECONDS:-60}" || fail "the demo's output is wrong (see FAIL lines above)"
echo "demo test passed"
