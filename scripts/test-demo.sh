#!/usr/bin/env bash
# End-to-end test of the README's demo (scripts/demo.sh): the C sensor, the Python filter and
# the Node alert module on a local hub; see tests/demo/run_demo_test.sh for what is checked.
# Builds with cargo profile ${CARGO_PROFILE:-ci} (shared with the other suites) unless set.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_PROFILE="${CARGO_PROFILE:-ci}"
exec "$root/tests/demo/run_demo_test.sh"
