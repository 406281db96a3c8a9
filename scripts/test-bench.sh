#!/usr/bin/env bash
# Smoke test of the benchmark harness (edgemodule-bench + bench/lang/*), so it cannot rot:
# `--quick --port 0` (ephemeral ports, so the official SDK rows must say skipped; 200 messages, 1 run) over the
# Rust core, the C API, and the Python and Node packages when they are installed (a missing one
# must show up as "not installed", never as a number or an error). Checks the exit code and the
# shape of the report, and that `--write` writes what is printed. Takes well under 60 s.
# Environment: CARGO_PROFILE (default dev), as the other test scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${CARGO_PROFILE:-dev}"
case "$profile" in
  dev | test) dir=debug ;;
  release | bench) dir=release ;;
  *) dir="$profile" ;;
esac
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -q -p edgemodule-hub -p edgemodule-bench -p edgemodule-ffi --profile "$profile"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
started=$SECONDS
if ! timeout 120 "$target_dir/$dir/edgemodule-bench" --quick --port 0 --messages 200 \
    --languages rust,c,python,node,official --write "$out/BENCHMARKS.md" >"$out/stdout" 2>"$out/stderr"; then
  cat "$out/stderr" "$out/stdout" >&2
  echo "test-bench: edgemodule-bench failed" >&2
  exit 1
fi
elapsed=$((SECONDS - started))

fail() { echo "test-bench: $*" >&2; cat "$out/stdout" >&2; exit 1; }
cmp -s "$out/stdout" "$out/BENCHMARKS.md" || fail "--write did not write what was printed"
for heading in '# Benchmarks' '### Bindings beside the official SDKs and the Rust core' \
  '### Targets (issues #5–#8)' '### Core client beside raw rumqttc' '### Hub routing beside mosquitto' \
  '| implementation | (a) send, await each | (b) send, 100 concurrent | (c) receive | (d) round trip p50 / p99 | (e) idle RSS |'; do
  grep -qF -- "$heading" "$out/stdout" || fail "missing: $heading"
done
# The Rust and C rows are always measurable here: five numeric cells each.
for row in 'Rust core' 'C API'; do
  line="$(grep -F "| $row " "$out/stdout" | head -1)"
  [ "$(grep -o 'msg/s' <<<"$line" | wc -l)" -eq 3 ] || fail "$row: expected 3 throughput cells: $line"
  grep -q ' µs ' <<<"$line" || fail "$row: no round trip cell: $line"
  grep -q ' MiB ' <<<"$line" || fail "$row: no RSS cell: $line"
done
# Python and Node rows: measured, or "not installed" with the command to install.
for row in 'Python edgemodule, `ModuleClient`' 'Python edgemodule, `AsyncModuleClient`' 'Node edgemodule'; do
  line="$(grep -F "| $row" "$out/stdout" | head -1)"
  [ -n "$line" ] || fail "no row $row"
  if ! grep -q 'not installed' <<<"$line"; then
    [ "$(grep -o 'msg/s' <<<"$line" | wc -l)" -eq 3 ] || fail "$row: expected 3 throughput cells: $line"
  fi
done
grep -q 'official Python.*skipped (`--port 0`' "$out/stdout" || fail "official rows not marked as skipped"
if grep -q 'error:' "$out/stdout"; then fail "a measurement failed"; fi
echo "test-bench: ok (${elapsed}s)"
