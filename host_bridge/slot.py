"""BOINC slot-directory helpers: logical file names and job-file macros.

BOINC gives an app its files under *logical* names in the slot directory. On Windows and in
pre-6.12 clients (and still for some files), the slot holds a small "soft link" file whose first
line is ``<soft_link>../../projects/PROJECT/PHYSICAL</soft_link>``; on newer Unix clients the slot
entry may be a real symbolic link, which the operating system follows when the file is opened.
``resolve_logical`` mirrors ``boinc_resolve_filename`` (BOINC lib/app_ipc.cpp):

* the name is a symbolic link -> the name itself (the OS follows it on open; we read nothing);
* the name is a regular file whose first line holds ``<soft_link>X</soft_link>`` -> X, resolved
  against the slot directory when relative (pointing outside the slot, into the project
  directory, is normal and allowed);
* anything else (no such file, not a soft link, a directory, a FIFO, ...) -> the name itself.

Reads are bounded (a soft link file is tiny; at most 4 KiB is read) and are done with
``O_NOFOLLOW | O_NONBLOCK`` so that nothing but the one named file is ever opened.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

SOFT_LINK_MAX_READ = 4096  # bytes read from a candidate soft-link file
_SOFT_LINK_RE = re.compile(r"<soft_link>(.*?)</soft_link>", re.DOTALL)
_XML_ENTITIES = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&amp;": "&"}


class SlotNameError(ValueError):
    """A logical name that cannot name a file in the slot (absolute, '..', NUL, empty)."""


def check_logical_name(name: str) -> str:
    """Validate ``name`` and drop a leading ``./`` (the VMwrapper spelling of a logical name)."""
    if not isinstance(name, str) or not name:
        raise SlotNameError("empty file name: give the logical name of a file in the slot directory")
    if "\0" in name:
        raise SlotNameError(f"file name {name!r} contains a NUL byte")
    while name.startswith("./"):
        name = name[2:]
    if not name or name == ".":
        raise SlotNameError("file name './' names the slot directory itself, not a file")
    if name.startswith("/"):
        raise SlotNameError(
            f"file name {name!r} is absolute: a logical name is relative to the slot directory"
        )
    if ".." in name.split("/"):
        raise SlotNameError(f"file name {name!r} contains '..': a logical name must stay in the slot")
    return name


def _unescape(text: str) -> str:
    return re.sub(r"&(lt|gt|quot|apos|amp);", lambda m: _XML_ENTITIES[m.group(0)], text)


def read_soft_link(path: Path) -> str | None:
    """Return the target written in the soft-link file ``path``, or None if ``path`` is not one.

    Never follows a symbolic link, never blocks on a FIFO, reads at most ``SOFT_LINK_MAX_READ``
    bytes; like BOINC, only the first line is considered.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None  # missing, a symlink (ELOOP), unreadable: not a soft-link file
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        data = os.read(fd, SOFT_LINK_MAX_READ)
    except OSError:
        return None
    finally:
        os.close(fd)
    first_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    m = _SOFT_LINK_RE.search(first_line)
    if m is None:
        return None
    target = _unescape(m.group(1).strip())
    if not target or "\0" in target:
        return None
    return target


def resolve_logical(slot_dir: Path, name: str) -> Path:
    """The physical path of the logical file ``name`` of the slot ``slot_dir``.

    A soft-link file gives its target (relative targets are joined to ``slot_dir``, so
    ``../../projects/x/y`` stays relative to the slot, as BOINC's open() would see it); otherwise
    ``slot_dir / name``. A name with a '/' inside (after an optional leading './') is a path into
    the slot, not a logical name: it is returned as ``slot_dir / name`` without reading anything.
    Raises SlotNameError for names that cannot be in the slot (absolute, '..', NUL, empty).
    """
    clean = check_logical_name(name)
    slot_dir = Path(slot_dir)
    candidate = slot_dir / clean
    if "/" in clean:
        return candidate
    target = read_soft_link(candidate)
    if target is None:
        return candidate
    resolved = Path(target) if os.path.isabs(target) else slot_dir / target
    logger.debug("soft link %s -> %s", candidate, resolved)
    return resolved


def expand_macros(
    text: str,
    *,
    project_dir: str | os.PathLike[str] | None,
    nthreads: int,
    pwd: str | os.PathLike[str],
    gpu_device_num: int | None = None,
) -> str:
    """Substitute BOINC wrapper macros in ``text`` the way samples/wrapper/wrapper.cpp does.

    In order: ``$PROJECT_DIR`` (the project directory, or "." when unknown/empty),
    ``$NTHREADS`` (``nthreads``), ``$GPU_DEVICE_NUM`` (only when ``gpu_device_num`` is >= 0) and
    ``$PWD`` (``pwd``, the task's working directory). Every occurrence is replaced; the
    replacements are sequential, like BOINC's (a value containing a later macro name is
    substituted again).
    """
    pd = os.fspath(project_dir) if project_dir else ""
    text = text.replace("$PROJECT_DIR", pd or ".")
    text = text.replace("$NTHREADS", str(int(nthreads)))
    if gpu_device_num is not None and gpu_device_num >= 0:
        text = text.replace("$GPU_DEVICE_NUM", str(int(gpu_device_num)))
    return text.replace("$PWD", os.fspath(pwd))
