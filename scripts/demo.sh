#!/usr/bin/env bash
# Set up (if needed) and run the demo: examples/worker.py through the host bridge, standalone, with a
# live progress line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/host-bridge demo "$@"
