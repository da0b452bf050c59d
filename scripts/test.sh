#!/usr/bin/env bash
# The test command: the whole suite (unit, fault injection, emulator-backed integration, the web
# console in headless Chromium). Emulators are started by the test fixtures themselves.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --browser
exec .venv/bin/python -m pytest "$@"
