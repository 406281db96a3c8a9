#!/usr/bin/env bash
# The whole test suite (README's test command; .ci/run calls it): formatting, lints, the Rust
# workspace tests (core, hub, C ABI incl. the C programs), the Python and Node packages, and the
# official Azure IoT SDKs against the hub. Everything runs on loopback against the real hub.
# One target dir and one cargo profile (`ci`) are shared by every stage.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_PROFILE="${CARGO_PROFILE:-ci}"
started=$SECONDS
stage() { printf '\n======== %s (t=%ss)\n' "$*" "$((SECONDS - started))"; }

stage "toolchain: C compilers and valgrind (C ABI tests), mosquitto clients (broker test)"
if ! command -v gcc >/dev/null || ! command -v g++ >/dev/null || ! command -v valgrind >/dev/null ||
  ! command -v mosquitto_pub >/dev/null; then
  apt-get update -qq && apt-get install -y -qq build-essential valgrind mosquitto-clients >/dev/null
fi

stage "cargo fmt --check"
cargo fmt --all --check
stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --profile "$CARGO_PROFILE" -- -D warnings
stage "cargo test (core, hub, C ABI, benches build)"
timeout 1800 cargo test --workspace --exclude xlang --exclude faults --profile "$CARGO_PROFILE"
stage "Python package"
timeout 1200 ./scripts/test-python.sh
stage "Node package"
timeout 1200 ./scripts/test-node.sh
stage "conformance suite: every scenario in Rust, C, Python and Node"
timeout 1200 cargo test -p xlang --profile "$CARGO_PROFILE"
# Short variants of the fault matrix (cuts, stall, kill -9, short token TTL) and the deadline
# checks, for every binding; FAULTS_REQUIRE_ALL turns a binding that is not built into a failure.
# The long variants are `fault-matrix` and `soak` (RELIABILITY.md).
stage "fault matrix and deadlines, short variants: Rust, C, Python and Node"
FAULTS_REQUIRE_ALL=1 timeout 600 cargo test -p faults --profile "$CARGO_PROFILE"
stage "benchmark harness smoke run (Rust, C, Python, Node rows on ephemeral ports)"
timeout 600 ./scripts/test-bench.sh
stage "demo: C sensor -> Python filter -> Node alert, end to end"
timeout 1500 ./scripts/test-demo.sh
# The official SDKs need ports 8883 and 443, so they run last and alone.
stage "official Azure IoT SDKs against the hub"
timeout 900 ./scripts/test-compat.sh
stage "all suites passed"
