#!/usr/bin/env bash
# Runs the product locally on a fresh machine: installs what it needs, starts the emulators
# (Azurite, the Cosmos DB server, the Web PubSub dev emulator) and the Functions dev host with
# the offline LLM, and prints the console and API URLs. The app runs as two dev host processes,
# as Flex Consumption scales it: the HTTP functions (API and console) in one, the queue and timer
# functions in the other, so the API never waits behind steps. Ctrl-C stops both;
# `python -m devstack down` stops the emulators. Set PORT to move the API (default 7071).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m devstack up
eval "$(.venv/bin/python -m devstack env --export)"
export SWARM_ENV="${SWARM_ENV:-development}"
export SWARM_QUEUE="${SWARM_QUEUE:-swarm-operations}"
export SWARM_POISON_QUEUE="${SWARM_POISON_QUEUE:-swarm-operations-poison}"
export MAINTENANCE_SCHEDULE="${MAINTENANCE_SCHEDULE:-0 */5 * * * *}"
# As infra/app/api.bicep sets it: threads for the API while steps run.
export PYTHON_THREADPOOL_THREAD_COUNT="${PYTHON_THREADPOOL_THREAD_COUNT:-24}"
port="${PORT:-7071}"
echo "Console: http://localhost:${port}/"
echo "API:     http://localhost:${port}/api  (try: curl http://localhost:${port}/api/health)"
.venv/bin/python -m devhost --triggers queue,timer &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null; wait "$worker"' EXIT
.venv/bin/python -m devhost --port "$port" --triggers http
