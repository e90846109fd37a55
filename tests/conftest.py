"""Shared pytest set-up. The project is installed into .venv by scripts/setup.sh; the path insert
below only lets a checkout's tests run against its own sources when the install is stale."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "guest_sdk" / "python"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
