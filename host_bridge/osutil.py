"""The few operating-system primitives the host side needs in several places, each written once.

- ``atomic_file`` / ``atomic_write``: a file replaced whole or not at all (temporary file, fsync,
  rename, fsync of the folder). Files in the guest's share go through ``share.Share.write_atomic``
  instead (it works on the share's directory descriptor with the hostile-input rules); this one is
  for the bridge's own files.
- ``set_parent_death_signal`` / ``child_preexec``: Linux's parent-death signal (``PR_SET_PDEATHSIG``),
  so that what the bridge starts never outlives it unseen.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None


def _prctl() -> Callable[..., int] | None:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        return _libc.prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return None


@contextlib.contextmanager
def atomic_file(path: Path | str, *, mode: int = 0o644, sync: bool = True) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` atomically when the ``with`` block ends without an error (a
    reader, or a restart after a kill -9 or a power cut with ``sync``, sees the old file or the new one,
    never a mix); on an error the old file stays and the temporary one is removed. The temporary file
    is ``.NAME.tmp`` beside it (one name per destination: a killed writer leaves at most one behind,
    which the next write replaces). Raises OSError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def atomic_write(path: Path | str, data: bytes, *, mode: int = 0o644, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see ``atomic_file``)."""
    with atomic_file(path, mode=mode, sync=sync) as f:
        f.write(data)


def fsync_dir(folder: Path | str) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems refuse a directory fsync)."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send this process ``sig`` when its parent dies. Returns False where that is not
    available. If the parent has already died before the request took effect, nobody will send the
    signal: the caller compares ``os.getppid()`` with the parent it knew and acts (see
    ``child_preexec``)."""
    prctl = _prctl()
    if prctl is None:
        return False
    return prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def child_preexec(parent_pid: int, *, priority: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` for a process the bridge starts (a task, QEMU): SIGKILLed when the bridge dies,
    and ended at once if the bridge died before that took effect; ``priority``: its nice value."""
    prctl = _prctl()  # resolved in the parent: the child between fork and exec does the minimum

    def setup() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the bridge died before prctl took effect
            os._exit(137)
        if priority is not None:
            os.setpriority(os.PRIO_PROCESS, 0, priority)

    return setup
