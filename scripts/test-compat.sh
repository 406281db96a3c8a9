#!/usr/bin/env bash
# The official Azure IoT SDKs (Python 2.14, Node 1.18 + MQTT 1.16 + AMQP 1.14) against edgemodule-hub,
# unchanged, over MQTT, MQTT over WebSocket, AMQP and AMQP over WebSocket. They can only reach ports
# 8883, 443 and 5671, so this runs alone, after the other suites.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${CARGO_PROFILE:-dev}"
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
cargo build -q -p edgemodule-hub --profile "$profile"
venv=target/compat-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/compat/requirements.txt
(cd tests/compat && npm ci --no-audit --no-fund --loglevel=error)
timeout 600 python3 tests/compat/driver.py "target/$dir/edgemodule-hub" "$venv/bin/python" tests/compat
