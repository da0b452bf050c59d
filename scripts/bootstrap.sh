#!/usr/bin/env bash
# Installs what the project needs on a fresh machine: a virtualenv with the pinned Python packages,
# the pinned npm emulators, and the web console built into web/dist (served by the app at /).
# With --browser it also installs Chromium (Debian's package) for the browser tests when missing.
# Safe to run again (it only fills gaps).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  echo "$want" > "$stamp"
fi
if [ -f package.json ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi

# The web console: rebuilt when its sources change.
if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
sources=$(cd web && find . \( -path ./node_modules -o -path ./dist \) -prune -o -type f -print \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
built=web/node_modules/.dist-sources.sha
if [ ! -f web/dist/index.html ] || [ "$(cat "$built" 2>/dev/null)" != "$sources" ]; then
  (cd web && npm run --silent build -- --logLevel warn)
  echo "$sources" > "$built"
fi

if [ "${1:-}" = "--browser" ] && [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "Installing Chromium for the browser tests (apt-get install chromium)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
  else
    echo "cannot install Chromium (not root, no sudo): install the chromium package" >&2
    exit 1
  fi
fi
