#!/usr/bin/env bash
# The test command: the whole suite (unit, fault injection, emulator-backed integration).
# Emulators are started by the test fixtures themselves. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
