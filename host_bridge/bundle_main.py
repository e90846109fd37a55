"""The single-file app version's entry point (packaging/bundle_entry.py; docs/shipping.md).

Nothing in the package imports this module: it sits above ``cli`` (the bridge) and ``_frozen`` (what
differs in the bundle), so the bundle's start is not an import cycle through the runtime.
"""

from __future__ import annotations

import os
import signal
import sys

from . import _frozen


def main() -> None:
    """A task's Python in python mode (the bundle started by the bridge for a local .py task), or the
    bridge itself."""
    python_mode = os.environ.get(_frozen.PYTHON_MODE_ENV) == "1"
    _frozen.restore_child_environment(keep_bootloader_vars=python_mode)
    if python_mode:
        _frozen.stop_with_parent(signal.SIGKILL)
        sys.exit(_frozen.run_as_python(sys.argv[1:]))
    from .cli import main as cli_main

    parent = _frozen.stop_with_parent(signal.SIGTERM)
    _frozen.sweep_stale_unpacked()
    try:
        cli_main()
    finally:
        _frozen.remove_unpacked_if_orphaned(parent)
