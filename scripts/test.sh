#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: lint, then pytest (slow tests included).
# Extra arguments go to pytest, e.g. scripts/test.sh -k protocol -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
