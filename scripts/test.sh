#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test against the real hub on loopback.
# Builds the workspace once into one target dir (the `ci` profile) and reuses it everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_PROFILE=ci

echo "== cargo fmt"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --profile ci -- -D warnings
echo "== cargo test"
# Every test process is bounded: the suite as a whole gets 40 minutes.
timeout 2400 cargo test --workspace --profile ci
