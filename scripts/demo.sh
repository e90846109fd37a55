#!/usr/bin/env bash
# Set up (if needed) and run the demo: examples/worker.py in a real QEMU VM (its image built with
# `host-bridge image build` on first use, then cached), through the host bridge, standalone, with a live
# progress line; it quits half-way and restarts from the worker's checkpoint. `scripts/demo.sh --local`
# runs the worker as a local process instead. The first run builds the image: root (debootstrap) needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/host-bridge demo "$@"
