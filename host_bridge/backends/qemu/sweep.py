"""What QEMU tasks leave behind: the owner-tag marker that tells our VMs from any other QEMU, the VMs of
a task still running from an earlier bridge, and state folders of bridges killed long ago."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import stat
import time
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)


# Leftover state folders (a bridge killed with SIGKILL, its slot then deleted by the client): create()
# removes those under the default base folder whose VM is gone and that nobody touched for a day.
STALE_STATE_AGE = 86400.0
_SWEEP_MAX_DIRS = 256  # folders looked at per sweep
_SWEEP_MAX_FILES = 64  # a folder with more entries is not a VM state folder: left alone
SHARE_ID_FILE = "share.id"  # in a state folder: "DEV INO PATH" of the task's shared folder


def safe_tag(owner_tag: str, fallback: str) -> str:
    """The owner tag as it appears in QEMU's command line: [A-Za-z0-9._-] plus a hash of the full tag."""
    tag = owner_tag or fallback
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", tag)[:40]
    return f"{clean}-{hashlib.sha256(tag.encode()).hexdigest()[:10]}"


def name_arg(tag: str) -> str:
    """The ``-name`` value that marks a VM as ours (exact command-line argument)."""
    return f"guest=boinc-{tag},process=bridge-{tag}"


def find_own_vms(tag: str) -> list[psutil.Process]:
    """QEMU processes whose command line carries exactly the ``-name`` value of ``tag``."""
    marker = name_arg(tag)
    found: list[psutil.Process] = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cl = p.info.get("cmdline") or []
            if marker in cl and "-name" in cl and p.pid != os.getpid():
                found.append(p)
    return found


def sweep_state_dirs(base: Path, keep: str = "", now: float | None = None) -> list[Path]:
    """Remove VM state folders under ``base`` left by bridges that were killed (SIGKILL: no cleanup)
    and whose slots are gone: a sub-folder is removed only when neither it nor its files were modified
    for STALE_STATE_AGE (a day), its ``qemu.pid`` names no live QEMU process, and no live QEMU carries
    its ``-name`` marker. A folder holding a disk overlay (the VM's disk writes) is also kept while the
    shared folder it recorded (``SHARE_ID_FILE``, same device and inode) exists: a task quit by the
    client and suspended for days resumes with it. ``keep``: the caller's own folder name.

    Bounded: at most _SWEEP_MAX_DIRS folders of at most _SWEEP_MAX_FILES entries each; only folders
    owned by this user; links are never followed. Returns what was removed (each logged)."""
    uid = os.getuid()
    now = time.time() if now is None else now
    try:
        st = os.lstat(base)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            return []
        with os.scandir(base) as it:
            entries = [e for _, e in zip(range(_SWEEP_MAX_DIRS), it, strict=False)]
    except OSError:
        return []
    candidates: list[Path] = []
    for e in entries:
        if e.name == keep:
            continue
        try:
            est = e.stat(follow_symlinks=False)
            if not stat.S_ISDIR(est.st_mode) or est.st_uid != uid or now - est.st_mtime < STALE_STATE_AGE:
                continue
            with os.scandir(e.path) as inner:
                files = [f for _, f in zip(range(_SWEEP_MAX_FILES + 1), inner, strict=False)]
            if len(files) > _SWEEP_MAX_FILES:
                continue
            if any(now - f.stat(follow_symlinks=False).st_mtime < STALE_STATE_AGE for f in files):
                continue
        except OSError:
            continue
        if _pidfile_names_qemu(Path(e.path) / "qemu.pid"):
            continue
        if any(f.name == "overlay.qcow2" for f in files) and _share_still_there(Path(e.path)):
            continue
        candidates.append(Path(e.path))
    if not candidates:
        return []
    # A VM whose pidfile is gone or wrong but that still runs keeps its folder too (its -name marker).
    live: set[str] = set()
    with contextlib.suppress(psutil.Error, OSError):
        for proc in psutil.process_iter(["cmdline"]):
            cl = proc.info.get("cmdline") or []
            live.update(a for a in cl if a.startswith("guest=boinc-"))
    removed: list[Path] = []
    for d in candidates:
        if name_arg(d.name) in live:
            continue
        shutil.rmtree(d, ignore_errors=True)
        if not d.exists():
            logger.info("removed the state folder of a VM that ended more than a day ago: %s", d)
            removed.append(d)
    return removed


def _read_small(path: Path, limit: int) -> bytes | None:
    """The first ``limit`` bytes of a small file of a state folder, never through a link (None: absent
    or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _share_still_there(state_dir: Path) -> bool:
    """Whether the shared folder a state folder recorded still exists (same device and inode: a slot
    the client emptied and reused has a new one)."""
    data = _read_small(state_dir / SHARE_ID_FILE, 4096)
    if data is None:
        return False
    try:
        dev, ino, path = data.decode("utf-8", "surrogateescape").rstrip("\n").split(" ", 2)
        st = os.stat(path)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def _pidfile_names_qemu(pidfile: Path) -> bool:
    """Whether ``pidfile`` names a live process that is QEMU (unsure: True, the folder is kept)."""
    data = _read_small(pidfile, 32)
    try:
        pid = int(data.split()[0]) if data is not None else 0
    except (ValueError, IndexError):
        return False
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cl = proc.cmdline()
        return "qemu" in proc.name() or bool(cl and "qemu" in os.path.basename(cl[0]))
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
