"""The process's logging, set up in one place for every command of ``host-bridge`` (the run, check, demo,
image): the format, the level, and the libraries whose own lines are kept quiet."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s host-bridge %(levelname)s [%(name)s] %(message)s"


def setup_logging(verbose: int, fmt: str = LOG_FORMAT) -> None:
    """The process's logging, configured here once for every command (the run, check, demo, image)."""
    level = logging.DEBUG if verbose > 0 else logging.INFO
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    # qemu.qmp logs a QEMU that ends while a command is connected ("Task.Reader: ConnectionResetError")
    # as an error of its own; the call raises it too, and the backend says what it means (e.g. the VM
    # powered off): the library's line would only alarm a volunteer or admin
    logging.getLogger("qemu").setLevel(logging.CRITICAL)
