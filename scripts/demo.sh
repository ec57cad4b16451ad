#!/usr/bin/env bash
# The demo, with all its set-up: simulated meters, the edge runtime, a Mosquitto broker and the
# local cloud stack, all on this machine. Extra arguments go to `ami-edge demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "edge-ml,train,cloud"
exec .venv/bin/ami-edge demo "$@"
