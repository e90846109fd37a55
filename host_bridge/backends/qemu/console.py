"""Excerpts of a VM's console (serial.log) for the volunteer: the lines that say why a VM or its app
failed, then the last lines, cleaned of control characters."""

from __future__ import annotations

import os
import re
from pathlib import Path

# The guest's console (serial.log): what the FAILED message and the failure log quote.
CONSOLE_SCAN_BYTES = 16384  # the tail of the console searched for the telling lines below
CONSOLE_LOG_LINES = 20  # lines logged (stderr.txt) when the app fails or the VM fails
CONSOLE_LOG_BYTES = 4096
CONSOLE_LINE_MAX = 300
# Console lines that say why a VM or its app failed, quoted first (before the last lines, which for a
# kernel panic are the tail of its call trace).
TELLING_CONSOLE_LINES = (
    "Kernel panic - not syncing",
    "VFS: Unable to mount root fs",
    "invalid magic at start of compressed archive",
    "Out of memory",
    "Killed process",
    "cannot run",
)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean_line(line: str) -> str:
    """A console line fit for a log: no control characters (the guest writes the console: no terminal
    escapes into stderr.txt), at most CONSOLE_LINE_MAX characters."""
    line = _CONTROL.sub("?", line.strip())
    return line if len(line) <= CONSOLE_LINE_MAX else line[: CONSOLE_LINE_MAX - 3] + "..."


def console_excerpt(path: Path, lines: int, limit: int) -> tuple[list[str], list[str]]:
    """(telling, tail) of a console log: the last ``lines`` lines within its last ``limit`` bytes, and
    before them the lines of the last CONSOLE_SCAN_BYTES that say why something failed
    (TELLING_CONSOLE_LINES; at most 4, the latest, each once), not repeated in the tail."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - CONSOLE_SCAN_BYTES))
            data = f.read(CONSOLE_SCAN_BYTES)
    except OSError:
        return [], []
    text = data.decode("utf-8", "replace").replace("\r", "")
    raw = text.split("\n")
    if size > CONSOLE_SCAN_BYTES and len(raw) > 1:
        raw = raw[1:]  # a cut first line
    all_lines = [c for c in (_clean_line(ln) for ln in raw) if c]
    tail: list[str] = []
    used = 0
    for ln in reversed(all_lines):
        if len(tail) >= lines or used + len(ln) + 1 > limit:
            break
        tail.insert(0, ln)
        used += len(ln) + 1
    telling: list[str] = []
    for ln in reversed(all_lines):
        if len(telling) >= 4:
            break
        if any(t in ln for t in TELLING_CONSOLE_LINES) and ln not in telling:
            telling.insert(0, ln)
    return telling, [ln for ln in tail if ln not in telling]


def tail(path: Path, lines: int = 5, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(_clean_line(ln) for ln in text.strip().splitlines()[-lines:])
