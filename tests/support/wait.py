"""One way for a test to wait for a condition: bounded, failing the test with what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    cond: Callable[[], object], timeout: float = 10.0, what: str = "condition", *, interval: float = 0.05
) -> object:
    """Poll ``cond`` until it gives a true value (returned); fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
