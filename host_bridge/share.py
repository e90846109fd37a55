"""Hostile-input-safe access to the folder shared with the guest.

This module is the only reader of guest-controlled files on the host. The guest (a VM, or the local
process tree) can put anything at any name in the share: a symbolic link to a host file, a hard link to a
host file, a FIFO that would block a reader forever, a device node, a sparse file of many GiB, a
directory. Every access here therefore:

- goes through one directory file descriptor of the share, opened once (``Share``), with names that are a
  single path component (``safe_name``), so that no path is ever re-resolved through the share's parents;
- opens files with ``O_NOFOLLOW | O_NONBLOCK`` and checks ``fstat`` before reading: only a regular file
  with one link and at most ``max_bytes`` bytes is read, and it is read with a bound (at most
  ``max_bytes + 1`` bytes, in case it grows after ``fstat``);
- writes by temporary file + ``fsync`` + ``rename`` inside the share, creating the temporary with
  ``O_EXCL | O_NOFOLLOW`` after unlinking whatever the guest left there, so a link planted at the target
  or the temporary name is replaced, never followed.

A share exported to a VM over 9p with ``security_model=mapped-xattr`` or ``mapped-file`` holds the guest's
symbolic links, FIFOs and device nodes as *regular* host files whose real type is in QEMU's metadata (the
xattr ``user.virtfs.mode``, or ``.virtfs_metadata/NAME``): ``Share(path, virtfs_mapped=True)`` reads that
metadata after opening a guest file and refuses what the guest made as a link or special file with the same
reasons as on a real host.

A refused file raises ``GuestFileRefused`` with a short stable ``reason`` ("symlink", "not a regular
file", "hard link", "too large", "bad name") and a message for the volunteer or admin. ``RefusalLog``
logs each distinct (name, reason) once, so a hostile guest cannot flood the log.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_NAME_BYTES",
    "GuestFileRefused",
    "RefusalLog",
    "Share",
    "read_guest_file",
    "safe_name",
]

MAX_NAME_BYTES = 255
_CHUNK = 1 << 20

_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY

_ADVICE = (
    "The task's app or VM image wrote it (a bug or a hostile app): report it to the project if it keeps "
    "happening."
)
# for links and special files, what the bridge does about them
_ADVICE_LINKS = "The bridge never follows links or reads special files from the shared folder. " + _ADVICE
_LINK_REASONS = frozenset({"symlink", "not a regular file", "hard link"})

# QEMU 9p metadata of a guest file (hw/9pfs/9p-local.c): with security_model=mapped-xattr the guest's mode
# (type bits included) is the xattr below, 4 bytes little-endian; with mapped-file it is a line
# "virtfs.mode=DECIMAL" in the file .virtfs_metadata/NAME next to the file. A guest symlink is then a
# regular host file holding the link's target, a FIFO or device node an empty regular file.
VIRTFS_MODE_XATTR = "user.virtfs.mode"
VIRTFS_META_DIR = ".virtfs_metadata"
_VIRTFS_META_MAX = 4096

_REASON_TEXT = {
    "symlink": "it is a symbolic link",
    "not a regular file": "it is not a regular file",
    "hard link": "it is a hard link (it has more than one name, possibly a host file's)",
    "too large": "it is larger than allowed",
    "bad name": "the name is not a plain file name (1..255 bytes of UTF-8, no '/', NUL, control "
    "characters, '.' or '..')",
    "share": "the shared folder itself is not a real directory",
}


def _show(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


class GuestFileRefused(Exception):
    """A file (or name) in the share was refused. ``reason`` is short and stable; ``name`` the name."""

    def __init__(self, name: object, reason: str, detail: str = "") -> None:
        self.name = name
        self.reason = reason
        why = _REASON_TEXT.get(reason, reason)
        extra = f" ({detail})" if detail else ""
        advice = _ADVICE_LINKS if reason in _LINK_REASONS else _ADVICE
        super().__init__(f"guest file {_show(name)} in the shared folder refused: {why}{extra}. {advice}")


def safe_name(name: str) -> str:
    """Return ``name`` if it is a plain file name the guest may use, else raise GuestFileRefused("bad name").

    A plain name is one path component: 1..255 bytes of UTF-8, no NUL, no '/', not '.' or '..', no
    control characters (C0, DEL, C1). Surrogate-escaped bytes (non-UTF-8 names) are refused.
    """
    if not isinstance(name, str):
        raise GuestFileRefused(name, "bad name", f"a {type(name).__name__}, not a string")
    return _checked_name(name)


@functools.lru_cache(maxsize=1024)
def _checked_name(name: str) -> str:
    """``safe_name`` for a string, remembered: the status and control files' names are checked at every
    read, a per-character loop in Python (a refused name raises, and is not remembered)."""
    try:
        encoded = name.encode("utf-8", "strict")
    except UnicodeEncodeError:
        raise GuestFileRefused(name, "bad name", "not valid UTF-8") from None
    if not 1 <= len(encoded) <= MAX_NAME_BYTES:
        raise GuestFileRefused(name, "bad name", f"{len(encoded)} bytes, must be 1..{MAX_NAME_BYTES}")
    if name in (".", "..") or "/" in name or "\0" in name:
        raise GuestFileRefused(name, "bad name", "not a single path component")
    for ch in name:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            raise GuestFileRefused(name, "bad name", f"control character U+{code:04X}")
    return name


class RefusalLog:
    """Log each distinct (name, reason) refusal once, then only count it.

    At most ``max_distinct`` distinct keys are remembered and logged; after that one line says further
    refusals are only counted (a guest inventing new names cannot flood the log either).
    """

    def __init__(self, log: logging.Logger | None = None, *, max_distinct: int = 32) -> None:
        self._log = log or logger
        self._max = max_distinct
        self._counts: dict[tuple[str, str], int] = {}
        self._overflow = 0
        self._lock = threading.Lock()

    def report(self, refused: GuestFileRefused) -> bool:
        """Record a refusal; return True if it was logged now (first time for its (name, reason))."""
        key = (_show(refused.name), refused.reason)
        with self._lock:
            if key in self._counts:
                self._counts[key] += 1
                return False
            if len(self._counts) >= self._max:
                self._overflow += 1
                if self._overflow == 1:
                    self._log.warning(
                        "more than %d distinct refused guest files: further refusals are only counted",
                        self._max,
                    )
                return False
            self._counts[key] = 1
        self._log.warning("%s", refused)
        return True

    @property
    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values()) + self._overflow

    def summary(self, most: int = 8) -> str | None:
        """One line with what was refused more often than logged (each (name, reason) is logged only
        the first time), the most frequent first; None when every refusal was logged."""
        with self._lock:
            counts, overflow = dict(self._counts), self._overflow
        if overflow == 0 and all(n == 1 for n in counts.values()):
            return None
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        parts = [f"{name} ({reason}) x{n}" for (name, reason), n in ranked[:most]]
        if len(ranked) > most:
            parts.append(f"{len(ranked) - most} more")
        if overflow:
            parts.append(f"{overflow} not told apart")
        total = sum(counts.values()) + overflow
        return f"the guest's files were refused {total} times in all: " + ", ".join(parts)


def _check_type(mode: int, name: str, how: str = "") -> None:
    """Refuse a mode whose type is not a regular file ("symlink" / "not a regular file"). ``how`` says
    where the type came from when it is not the host's own (9p metadata)."""
    if stat.S_ISLNK(mode):
        raise GuestFileRefused(name, "symlink", how)
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a directory"
            if stat.S_ISDIR(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a special file"
        )
        raise GuestFileRefused(name, "not a regular file", f"{kind}, {how}" if how else kind)


def _check_regular(st: os.stat_result, name: str, max_bytes: int | None, *, opened: bool = False) -> None:
    """Refuse anything but a regular file with one link of at most ``max_bytes`` bytes. ``opened``: the
    fstat of a file we hold open, which the guest may have renamed over (unlinked: 0 links) since: that
    is the protocol's normal replacement, and the content is still the whole old file."""
    _check_type(st.st_mode, name)
    if st.st_nlink > 1 or (st.st_nlink == 0 and not opened):
        raise GuestFileRefused(name, "hard link", f"{st.st_nlink} links")
    if max_bytes is not None and st.st_size > max_bytes:
        raise GuestFileRefused(name, "too large", f"{st.st_size} bytes, at most {max_bytes} allowed")


class Share:
    """The shared folder, held by one directory file descriptor for its whole life.

    Every name passed to a method must be a plain file name (``safe_name``). The share itself must be a
    real directory, not a symbolic link.

    ``virtfs_mapped``: the folder is exported to a VM over 9p with ``security_model=mapped-xattr`` or
    ``mapped-file``, so a guest's symlink, FIFO or device node is a regular host file whose real type is
    in QEMU's metadata. Each guest file opened for reading (or appending) then has that metadata checked
    too (``user.virtfs.mode``, else ``.virtfs_metadata/NAME``), and clearing or replacing a name also
    drops a ``.virtfs_metadata/NAME`` left by the guest's file (the guest would otherwise see the host's
    new file with the old file's type). Off by default: a local share pays no extra system call.
    """

    def __init__(self, path: Path | str, *, virtfs_mapped: bool = False) -> None:
        self.path = Path(path)
        self.virtfs_mapped = virtfs_mapped
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise GuestFileRefused(
                    str(self.path), "share", "a symbolic link or not a directory; the slot is damaged"
                ) from None
            raise
        self._fd: int | None = fd
        self._lock = threading.Lock()

    # -- housekeeping -------------------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"shared folder {self.path} is closed")
        return self._fd

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Share:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        flag = ", virtfs_mapped=True" if self.virtfs_mapped else ""
        return f"Share({str(self.path)!r}{flag})"

    # -- 9p mapped metadata ---------------------------------------------------------------------------------
    def _check_virtfs(self, fd: int, name: str) -> None:
        """Refuse the opened guest file ``fd`` if QEMU's 9p metadata says the guest made it as a symlink,
        FIFO, device node, socket or directory (``virtfs_mapped`` shares only)."""
        try:
            raw = os.getxattr(fd, VIRTFS_MODE_XATTR)
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            raw = None
        if raw is not None:
            if len(raw) != 4:
                raise GuestFileRefused(
                    name, "not a regular file", f"unreadable 9p mapped-xattr file type ({len(raw)} bytes)"
                )
            _check_type(int.from_bytes(raw, "little"), name, "as the guest made it (9p mapped-xattr)")
            return
        mode = self._virtfs_file_mode(name)
        if mode is not None:
            _check_type(mode, name, "as the guest made it (9p mapped-file)")

    def _virtfs_file_mode(self, name: str) -> int | None:
        """The guest's mode of ``name`` from ``.virtfs_metadata/NAME`` (9p mapped-file), None if there is
        none. The folder is QEMU's (the guest cannot reach it under mapped-file); under other models a
        guest could make one, which can only get its own files refused, so anything odd is ignored."""
        dfd = self._virtfs_meta_dir()
        if dfd is None:
            return None
        try:
            fd = os.open(name, _O_READ, dir_fd=dfd)
        except OSError:
            return None
        finally:
            os.close(dfd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            text = os.read(fd, _VIRTFS_META_MAX)
        finally:
            os.close(fd)
        for line in text.splitlines():
            key, _, value = line.partition(b"=")
            if key.strip() == b"virtfs.mode":
                try:
                    return int(value.strip())
                except ValueError:
                    return None
        return None

    def _virtfs_meta_dir(self) -> int | None:
        """An fd of the share's ``.virtfs_metadata`` folder (9p mapped-file), None if there is none; the
        caller closes it."""
        try:
            return os.open(VIRTFS_META_DIR, _O_DIR, dir_fd=self.fd)
        except OSError:
            return None

    def _drop_virtfs_file_meta(self, name: str) -> None:
        """Remove ``.virtfs_metadata/NAME`` (9p mapped-file) if present; never follows a link."""
        dfd = self._virtfs_meta_dir()
        if dfd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dfd)
        finally:
            os.close(dfd)

    # -- reading ------------------------------------------------------------------------------------------
    def lstat(self, name: str) -> os.stat_result | None:
        """The entry's own metadata (links not followed), or None if absent."""
        try:
            return os.stat(safe_name(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        """Whether anything (file, link, directory...) is at ``name`` in the share."""
        return self.lstat(name) is not None

    def _open_guest(self, name: str, max_bytes: int | None) -> tuple[int, os.stat_result] | None:
        """Open a guest file for reading after the checks; None if absent. Caller closes the fd."""
        safe_name(name)
        # Pre-check without opening: a device node is never opened (opening some has side effects).
        try:
            pre = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        # the entry may be renamed over between the name lookup and the stat (0 links): the open below
        # gets the new file, and the fstat of what was opened is what counts
        _check_regular(pre, name, max_bytes, opened=pre.st_nlink == 0)
        try:
            fd = os.open(name, _O_READ, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:  # replaced by a link since the pre-check
                raise GuestFileRefused(name, "symlink") from None
            raise
        try:
            st = os.fstat(fd)  # authoritative: this is the file we will read
            _check_regular(st, name, max_bytes, opened=True)
            if self.virtfs_mapped:
                self._check_virtfs(fd, name)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def read(self, name: str, max_bytes: int) -> bytes | None:
        """The content of the regular file ``name`` (at most ``max_bytes`` bytes), None if absent."""
        opened = self._open_guest(name, max_bytes)
        if opened is None:
            return None
        fd, st = opened
        try:
            chunks: list[bytes] = []
            total = 0
            # ask for one byte more than fstat said: a shorter read is the end of a regular file, so the
            # usual small file takes one read, not two
            want = st.st_size + 1
            while total <= max_bytes:
                ask = min(_CHUNK, max_bytes + 1 - total, want)
                try:
                    chunk = os.read(fd, ask)
                except BlockingIOError:  # cannot happen for a regular file; never wait
                    break
                chunks.append(chunk)
                total += len(chunk)
                if len(chunk) < ask:
                    break
                want = _CHUNK  # it grew since the fstat: read on to the end (or past max_bytes)
            if total > max_bytes:
                raise GuestFileRefused(name, "too large", f"grew past {max_bytes} bytes while read")
            return b"".join(chunks)
        finally:
            os.close(fd)

    def copy_out(self, name: str, dest: Path | str, max_bytes: int) -> int:
        """Copy the guest file ``name`` to the host path ``dest``, whole or not at all.

        The copy goes to a temporary file next to ``dest``, is fsynced and renamed over ``dest``.
        Returns the number of bytes copied. Raises FileNotFoundError if ``name`` is absent.
        """
        dest = Path(dest)
        opened = self._open_guest(name, max_bytes)
        if opened is None:
            raise FileNotFoundError(
                errno.ENOENT, f"output {name!r} not found in the shared folder {self.path}", str(dest)
            )
        src, _st = opened
        # One name per destination (not per process): a bridge killed in the middle of a copy leaves a
        # part file, and the restarted bridge's copy of the same output replaces it (with the pid in the
        # name, a 4 MiB part stayed in the project folder for good)
        tmp = dest.parent / f".{dest.name}.part"
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            out = os.open(tmp, _O_CREATE, 0o644)
            try:
                total = 0
                while True:
                    chunk = os.read(src, min(_CHUNK, max_bytes + 1 - total))
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > max_bytes:
                        raise GuestFileRefused(name, "too large", f"grew past {max_bytes} bytes while copied")
                    _write_all(out, chunk)
                os.fsync(out)
            finally:
                os.close(out)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
            return total
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            os.close(src)

    # -- writing ------------------------------------------------------------------------------------------
    def _create_temp(self, name: str) -> tuple[int, str]:
        """Create a fresh temporary file in the share for ``name``: ``.NAME.tmp`` (the protocol's temp
        name) after removing whatever is there, or a unique name if the guest keeps one in the way."""
        candidates = [f".{name}.tmp"] if len(name) + 5 <= MAX_NAME_BYTES else []
        candidates += [f".bridge.{os.getpid()}.{threading.get_ident()}.{i}.tmp" for i in range(3)]
        last: OSError | None = None
        for tmp in candidates:
            try:
                os.unlink(tmp, dir_fd=self.fd)
            except FileNotFoundError:
                pass
            except OSError as e:  # a directory planted at the temp name: try the next name
                last = e
                continue
            try:
                return os.open(tmp, _O_CREATE, 0o644, dir_fd=self.fd), tmp
            except FileExistsError as e:  # re-created by the guest in between
                last = e
                continue
        raise OSError(
            errno.EEXIST,
            f"cannot create a temporary file for {name!r} in the shared folder {self.path}: {last}",
        )

    def _replace_with(self, name: str, chunks: Iterable[bytes]) -> int:
        safe_name(name)
        fd, tmp = self._create_temp(name)
        total = 0
        try:
            try:
                for chunk in chunks:
                    _write_all(fd, chunk)
                    total += len(chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            if self.virtfs_mapped:
                self._drop_virtfs_file_meta(name)
            try:
                os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            except IsADirectoryError:
                raise GuestFileRefused(name, "not a regular file", "a directory is in the way") from None
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR):
                    raise GuestFileRefused(name, "not a regular file", "a directory is in the way") from None
                raise
            os.fsync(self.fd)
            return total
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise

    def write_atomic(self, name: str, data: bytes) -> None:
        """Replace ``name`` in the share by ``data``: temp file + fsync + rename, no link followed."""
        self._replace_with(name, (data,))

    def copy_in(self, src: Path | str, name: str) -> int:
        """Copy the host file ``src`` into the share as ``name`` (replacing whatever the guest left there,
        without following it). Returns the number of bytes copied."""
        with open(src, "rb") as f:
            return self._replace_with(name, iter(lambda: f.read(_CHUNK), b""))

    def clear(self, names: Iterable[str]) -> None:
        """Remove ``names`` from the share if present (a link is removed, never followed; a directory
        planted at one of the names is removed with its content, without following links)."""
        for name in names:
            safe_name(name)
            if self.virtfs_mapped:
                self._drop_virtfs_file_meta(name)
            try:
                os.unlink(name, dir_fd=self.fd)
            except FileNotFoundError:
                continue
            except (IsADirectoryError, PermissionError):
                st = self.lstat(name)
                if st is None or not stat.S_ISDIR(st.st_mode):
                    raise
                self._discard_dir(name)

    def _discard_dir(self, name: str) -> None:
        """Get a directory the guest planted at ``name`` out of the way: rename it to a hidden name at
        once (O(1), whatever its size or depth), then remove it within bounds. ``shutil.rmtree`` is not
        used: it recurses on the Python stack (RecursionError on a 1000-level tree) and holds one fd
        per level. What the bounds leave behind stays in the share (the client removes the slot)."""
        trash = f".bridge-removed.{os.getpid()}.{time.monotonic_ns()}"
        os.rename(name, trash, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        if not _remove_tree(self.fd, trash):
            logger.warning(
                "a directory the guest left at %s in the shared folder %s is too large to remove here "
                "(more than 200,000 entries); it was moved aside to %s",
                _show(name),
                self.path,
                trash,
            )

    # -- the local backend's standard streams ------------------------------------------------------------
    def open_input(self, name: str) -> int:
        """Open ``name`` for reading as a child's stdin (regular file, no link). Caller closes it."""
        opened = self._open_guest(name, None)
        if opened is None:
            raise FileNotFoundError(
                errno.ENOENT, f"input {name!r} not found in the shared folder {self.path}"
            )
        fd, _st = opened
        os.set_blocking(fd, True)
        return fd

    def open_append(self, name: str) -> int:
        """Open (create) ``name`` for appending, as a child's stdout / stderr. Caller closes it."""
        pre = self.lstat(name)
        if pre is not None:
            _check_regular(pre, name, None)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags | os.O_NOCTTY, 0o644, dir_fd=self.fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise GuestFileRefused(name, "symlink") from None
            if e.errno == errno.EISDIR:
                raise GuestFileRefused(name, "not a regular file", "a directory") from None
            raise
        try:
            _check_regular(os.fstat(fd), name, None, opened=True)
            if self.virtfs_mapped:
                self._check_virtfs(fd, name)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def names(self) -> Iterator[str]:
        """The names in the share (no metadata read)."""
        with os.scandir(self.fd) as it:
            for entry in it:
                yield entry.name


def read_guest_file(
    share: Path | str, name: str, max_bytes: int, *, virtfs_mapped: bool = False
) -> bytes | None:
    """Read the guest file ``name`` from the share (see ``Share.read``); None if absent."""
    with Share(share, virtfs_mapped=virtfs_mapped) as s:
        return s.read(name, max_bytes)


_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _remove_tree(root_fd: int, name: str, *, max_depth: int = 64, max_entries: int = 200_000) -> bool:
    """Remove the directory ``name`` of ``root_fd`` and its content without recursion and without
    following links: every level is opened with O_NOFOLLOW relative to its parent's fd, at most
    ``max_depth`` levels are open at once (a deeper subtree is renamed up to ``root_fd`` and removed
    from there later, so any depth goes in O(entries)). Gives up (returns False, leaving the rest)
    after ``max_entries`` entries."""
    pending = [name]
    budget = max_entries
    moved = 0
    while pending:
        top_name = pending.pop()
        try:
            top = os.open(top_name, _O_DIR, dir_fd=root_fd)
        except OSError:
            return False
        stack: list[tuple[int, str, int]] = [(root_fd, top_name, top)]
        try:
            while stack:
                pfd, pname, fd = stack[-1]
                descend: str | None = None
                with os.scandir(fd) as it:
                    for entry in it:
                        budget -= 1
                        if budget < 0:
                            return False
                        if entry.is_dir(follow_symlinks=False):
                            descend = entry.name
                            break
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.name, dir_fd=fd)
                if descend is None:
                    stack.pop()
                    os.close(fd)
                    os.rmdir(pname, dir_fd=pfd)
                elif len(stack) < max_depth:
                    stack.append((fd, descend, os.open(descend, _O_DIR, dir_fd=fd)))
                else:  # too deep to hold open: move the subtree up, take it from there later
                    moved += 1
                    up = f"{name}.{moved}"
                    os.rename(descend, up, src_dir_fd=fd, dst_dir_fd=root_fd)
                    pending.append(up)
        except OSError as e:
            logger.debug("removing %r from the shared folder stopped: %s", name, e)
            return False
        finally:
            for _pfd, _pname, fd in stack:
                os.close(fd)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
