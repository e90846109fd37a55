"""A VM's console (serial.log): kept within bounds on the host's disk, and excerpts of it for the
volunteer: the lines that say why a VM or its app failed, then the last lines, cleaned of control
characters.

The guest writes the console (the kernel, the agent, and an app's stdout / stderr unless the job file
names files for them), so its size is the guest's choice: QEMU appends to the file (``append=on``) and
the backend's poll calls ``bound_console``, which keeps the last CONSOLE_KEEP bytes beside it
(``serial.log.old``) and empties the file once it passes CONSOLE_FILE_MAX. The excerpts read both."""

from __future__ import annotations

import os
import re
from pathlib import Path

# The guest's console (serial.log): what the FAILED message and the failure log quote.
CONSOLE_SCAN_BYTES = 16384  # the tail of the console searched for the telling lines below
CONSOLE_LOG_LINES = 20  # lines logged (stderr.txt) when the app fails or the VM fails
CONSOLE_LOG_BYTES = 4096
CONSOLE_LINE_MAX = 300
CONSOLE_FILE_MAX = 8 << 20  # bytes of serial.log before bound_console empties it
CONSOLE_KEEP = 64 << 10  # ... keeping this much of its end in serial.log.old
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


def _old(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def _last_bytes(path: Path, n: int) -> tuple[bytes, bool]:
    """The console's last ``n`` bytes (the kept end of serial.log.old, then serial.log) and whether
    there was more before them."""
    data, more = b"", False
    for p in (path, _old(path)):
        want = n - len(data)
        if want <= 0:
            more = True
            break
        try:
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - want))
                data = f.read(want) + data
                more = more or size > want
        except OSError:
            continue
    return data, more


def bound_console(path: Path) -> int:
    """Keep the console file within CONSOLE_FILE_MAX: past it, its last CONSOLE_KEEP bytes replace
    serial.log.old and the file is emptied (QEMU appends, so its next write starts the file again).
    Returns the bytes dropped (0: within bounds, or no file)."""
    try:
        size = os.stat(path).st_size
        if size <= CONSOLE_FILE_MAX:
            return 0
        with open(path, "rb") as f:
            f.seek(size - CONSOLE_KEEP)
            keep = f.read(CONSOLE_KEEP)
        tmp = path.with_name(f".{path.name}.old.tmp")
        tmp.write_bytes(keep)
        os.replace(tmp, _old(path))
        os.truncate(path, 0)
    except OSError:
        return 0
    return size - len(keep)


def console_excerpt(path: Path, lines: int, limit: int) -> tuple[list[str], list[str]]:
    """(telling, tail) of a console log: the last ``lines`` lines within its last ``limit`` bytes, and
    before them the lines of the last CONSOLE_SCAN_BYTES that say why something failed
    (TELLING_CONSOLE_LINES; at most 4, the latest, each once), not repeated in the tail."""
    data, cut = _last_bytes(path, CONSOLE_SCAN_BYTES)
    if not data:
        return [], []
    text = data.decode("utf-8", "replace").replace("\r", "")
    raw = text.split("\n")
    if cut and len(raw) > 1:
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
    text = _last_bytes(path, limit)[0].decode("utf-8", "replace")
    return " | ".join(_clean_line(ln) for ln in text.strip().splitlines()[-lines:])
