"""Test mode hooks (tests/vectors/README.md, "Session ops").

In test mode the SDK starts no background thread and registers no atexit hook, its clocks are the
values given to :func:`set_times`, ``boinc_finish*`` / ``boinc_temporary_exit`` return instead of
ending the process, and quit / abort requests do not end it. Call :func:`enable` before
``boinc_init``; :func:`reset` brings the SDK back to its state before ``boinc_init`` (test mode stays).
"""

from __future__ import annotations

import atexit

from . import _runtime


def enable() -> None:
    """Switch test mode on (before ``boinc_init``)."""
    _runtime._rt.test_mode = True


def disable() -> None:
    """Switch test mode off (before ``boinc_init``)."""
    _runtime._rt.test_mode = False


def set_times(cpu: float, elapsed: float) -> None:
    """The test clock: CPU seconds and wall seconds of this run, used from now on."""
    rt = _runtime._rt
    rt.test_cpu = float(cpu)
    rt.test_elapsed = float(elapsed)


def flush() -> int:
    """Write the state now, unconditionally (``hb`` unchanged). 0 or ERR_WRITE."""
    return _runtime._rt.write()


def heartbeat() -> int:
    """``hb`` + 1, then write (what the background thread does once a second)."""
    rt = _runtime._rt
    with rt.lock:
        if rt.active():
            rt.hb += 1
        return rt.write()


def reload_control() -> bool:
    """Re-read the control file now (what the background thread does every 0.1 s); True if it
    changed. Acknowledged events are dropped from the queue (written at the next write)."""
    return _runtime._rt.reload_control()


def reset() -> None:
    """Forget everything since import: stop the background thread, drop the atexit hook, fresh state
    (the test-mode flag is kept)."""
    old = _runtime._rt
    old.stop_thread()
    atexit.unregister(_runtime._at_exit)
    _runtime._rt = _runtime._Runtime(test_mode=old.test_mode)


def runtime() -> _runtime._Runtime:
    """The SDK's current state object (read-only use in tests)."""
    return _runtime._rt
