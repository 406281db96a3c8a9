#!/usr/bin/env bash
# Builds the edgemodule wheel and runs the Python checks: stubtest, pytest against a real hub, and
# `pip install ./py` into a clean venv as a user runs it.
#
# Needs only python3 (with venv and pip) and cargo; PyPI must be reachable for the pinned tools.
# Environment:
#   CARGO_PROFILE      cargo profile for the hub and the wheel (default: dev)
#   CARGO_TARGET_DIR   honoured as usual (default: <workspace>/target)
#   PYTEST_ARGS        extra arguments for pytest
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROFILE="${CARGO_PROFILE:-dev}"
case "$PROFILE" in
  dev | test) PROFILE_DIR=debug ;;
  release | bench) PROFILE_DIR=release ;;
  *) PROFILE_DIR="$PROFILE" ;;
esac
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$TARGET_DIR/py-venv"

# Pinned tool versions (all support Python 3.9+).
MATURIN="maturin==1.9.6"
PYTEST="pytest==8.4.2"
PYTEST_ASYNCIO="pytest-asyncio==1.2.0"
PYTEST_TIMEOUT="pytest-timeout==2.4.0"
MYPY="mypy==1.18.2"

step() { printf '\n==> %s\n' "$*"; }

step "venv at $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check "$MATURIN" "$PYTEST" "$PYTEST_ASYNCIO" "$PYTEST_TIMEOUT" "$MYPY"

step "cargo build -p edgemodule-hub --profile $PROFILE"
cargo build -p edgemodule-hub --profile "$PROFILE"
HUB_BIN="$TARGET_DIR/$PROFILE_DIR/edgemodule-hub"

step "maturin build --profile $PROFILE (same target dir)"
WHEEL_DIR="$TARGET_DIR/py-wheels"
rm -rf "$WHEEL_DIR"
(cd py && CARGO_TARGET_DIR="$TARGET_DIR" "$VENV/bin/maturin" build --profile "$PROFILE" --out "$WHEEL_DIR" --interpreter "$PY")
"$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WHEEL_DIR"/edgemodule-*.whl

# Run from outside py/ so the installed wheel, not py/python, is imported.
cd "$ROOT/py/tests"

step "stubtest"
"$PY" -m mypy.stubtest edgemodule._native --allowlist "$ROOT/py/stubtest-allowlist.txt"

step "mypy over the tests and the example (exercises the stubs)"
"$PY" -m mypy --ignore-missing-imports --no-error-summary --python-version 3.9 \
  --explicit-package-bases "$ROOT/py/tests" "$ROOT/py/examples"

step "pytest"
# shellcheck disable=SC2086
EDGEMODULE_HUB_BIN="$HUB_BIN" "$PY" -m pytest "$ROOT/py/tests" -c "$ROOT/py/pyproject.toml" \
  --rootdir "$ROOT/py" -p no:cacheprovider -ra ${PYTEST_ARGS:-}

step "pip install ./py into a clean venv (the PEP 517 build a user runs, profile $PROFILE)"
CLEAN_VENV="$TARGET_DIR/py-install-venv"
rm -rf "$CLEAN_VENV"
python3 -m venv "$CLEAN_VENV"
CARGO_TARGET_DIR="$TARGET_DIR" MATURIN_PEP517_ARGS="--profile $PROFILE" \
  "$CLEAN_VENV/bin/pip" install --quiet --disable-pip-version-check "$ROOT/py"
"$CLEAN_VENV/bin/python" - <<'PY'
import edgemodule

try:
    edgemodule.ModuleClient.create_from_connection_string("HostName=h")
except edgemodule.EdgeError as e:
    assert isinstance(e, ValueError) and e.code == "INVALID_ARGUMENT", (type(e), e.code)
else:
    raise SystemExit("the pip-installed package accepted a malformed connection string")
print("pip install ./py: the package imports and its native module answers")
PY
