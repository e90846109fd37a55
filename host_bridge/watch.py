"""Watch the shared folder for the guest's status file: an event is only a hint.

``ShareWatcher`` tells its caller *that* one of the watched names may have changed; the caller re-reads
and decodes the file itself (through ``host_bridge.share``). The watcher never opens or parses a guest
file: it only receives inotify records and ``lstat``s the watched names.

Built on watchdog's observer model (an ``EventEmitter`` thread started and stopped by a ``BaseObserver``,
events handed to a ``FileSystemEventHandler``), with an emitter of our own, ``_ShareEmitter``, because
watchdog's stock inotify emitter holds an unpaired ``IN_MOVED_FROM`` for up to 0.5 s while it pairs it
with its ``IN_MOVED_TO``: the guest's ``rename(".boinc_status.msgpack.tmp", "boinc_status.msgpack")`` was
then sometimes reported ~0.5 s late. Our emitter reads the raw inotify records of the folder (one
non-recursive watch, no pairing) and turns a record that names a watched file into one watchdog event,
which it hands straight to the handler (not through the observer's queue: one thread wake-up less per
hint, which matters for the bridge's CPU budget of 0.12 % of a core).

Modes:

- ``"events"``: inotify only (start() raises ``WatchError`` if inotify cannot be set up).
- ``"poll"``: ``lstat`` the watched names every ``poll_interval`` seconds (any change of inode, size,
  mtime or ctime is a hint).
- In events mode the same ``lstat`` runs every ``check_interval`` seconds: an in-place write (not in the
  inotify mask) is hinted from there.
- ``"auto"`` (default): events; polling when inotify cannot start (e.g. ``fs.inotify.max_user_instances``
  or ``max_user_watches`` exhausted), or when events stop arriving: every ``check_interval`` seconds the
  emitter ``lstat``s the watched names, and a replacement (new inode, appeared, vanished) that no inotify
  record announced (confirmed at the next check, so a record still in flight is not mistaken for a lost
  one) switches it to polling, logged once.

Hostile guests: a rename storm (100,000 rewrites/s) must not make the watcher busy. At most one hint is
pending: while the caller has not taken it, the emitter does not read inotify at all (the kernel queue
coalesces or overflows, which is itself a hint); and hints are delivered at most ``max_hint_rate`` per
second on average (a token bucket with a burst of ``hint_burst``; defaults 50/s and 32), far above a
legitimate guest's 10 Hz.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from watchdog.events import FileModifiedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver, EventEmitter, EventQueue, ObservedWatch
from watchdog.observers.inotify_c import InotifyConstants as _IC

logger = logging.getLogger(__name__)

__all__ = ["Mode", "ShareWatcher", "WatchError"]

Mode = Literal["auto", "events", "poll"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
_READ_SIZE = 64 * 1024
# The mask: what replaces or removes the *directory entry* of a watched name (renamed over, deleted,
# attributes / link count), plus the watch's own end. Creations (IN_CREATE) and writes into a file
# (IN_MODIFY, IN_CLOSE_WRITE) are left out on purpose: the protocol replaces the file by rename, and each
# of those records would wake the emitter for the temporary file (a Python wake-up costs ~50-150 us of CPU
# on a loaded 2-core machine) for nothing: one wake-up per status update is what fits the budget. The
# temporary's IN_MOVED_FROM arrives in the same read as the target's IN_MOVED_TO. A guest that writes the
# status file in place or creates it by other means than rename is still noticed by the periodic check
# (a hint within ``check_interval``; in auto mode a new inode nobody announced switches to polling).
_MASK = (
    _IC.IN_MOVED_TO
    | _IC.IN_MOVED_FROM
    | _IC.IN_DELETE
    | _IC.IN_ATTRIB
    | _IC.IN_DELETE_SELF
    | _IC.IN_MOVE_SELF
    | _IC.IN_ONLYDIR
    | _IC.IN_DONT_FOLLOW
    | _IC.IN_EXCL_UNLINK
)
_GONE = _IC.IN_DELETE_SELF | _IC.IN_MOVE_SELF | _IC.IN_IGNORED | _IC.IN_UNMOUNT
_OVERFLOW = _IC.IN_Q_OVERFLOW
_NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC  # same values as IN_NONBLOCK / IN_CLOEXEC


class WatchError(OSError):
    """The folder cannot be watched in the requested mode (the message says what to do)."""


def _inotify_open(folder: str) -> int:
    """An inotify fd (non-blocking, close-on-exec) with one watch on ``folder``."""
    fd = _libc.inotify_init1(_NONBLOCK_CLOEXEC)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"inotify_init1: {os.strerror(e)}")
    if _libc.inotify_add_watch(fd, os.fsencode(folder), _MASK) < 0:
        e = ctypes.get_errno()
        os.close(fd)
        raise OSError(e, f"inotify_add_watch {folder}: {os.strerror(e)}")
    return fd


_Sig = tuple[int, int, int, int] | None


class _Hub:
    """State shared by the watcher (caller side), its emitter and its handler."""

    def __init__(
        self,
        folder: str,
        names: frozenset[str],
        mode: Mode,
        poll_interval: float,
        check_interval: float,
        max_hint_rate: float,
        hint_burst: int,
    ) -> None:
        self.folder = folder
        self.names = names
        self.name_bytes = frozenset(os.fsencode(n) for n in names)
        self.requested = mode
        self.in_use: Literal["events", "poll"] | None = None
        self.poll_interval = poll_interval
        self.check_interval = check_interval
        self.max_hint_rate = max_hint_rate
        self.hint_burst = hint_burst
        self.hint = threading.Event()  # set by the handler; taken by wait()
        self.queued = False  # a hint is queued or set and not yet taken: the emitter sends no other
        self.napping = False  # the emitter waits for the hint to be taken: wait() must poke it
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.handler: FileSystemEventHandler = _HintHandler(self)
        self.hints_delivered = 0
        self.hints_taken = 0
        self.wake_fds: list[int] = []  # wake_on()'s descriptors, not yet taken by the emitter

    def poke(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wake_w, b"\0")

    def close(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class _HintHandler(FileSystemEventHandler):
    def __init__(self, hub: _Hub) -> None:
        super().__init__()
        self._hub = hub

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._hub.hint.set()


class _ShareEmitter(EventEmitter):
    """Emits one ``FileModifiedEvent`` per hint: from raw inotify records (events) or ``lstat`` (poll)."""

    def __init__(
        self,
        event_queue: EventQueue,
        watch: ObservedWatch,
        *,
        timeout: float = 1.0,
        event_filter: Any = None,
        hub: _Hub,
    ) -> None:
        super().__init__(event_queue, watch, timeout=timeout, event_filter=event_filter)
        self._hub = hub
        self._ifd: int | None = None
        self._dfd: int | None = None
        self._poller = select.poll()
        self._wake_fds: set[int] = set()
        self._wake_poller = select.poll()
        self._wake_poller.register(hub.wake_r, select.POLLIN)
        self._sigs: dict[str, _Sig] = {}
        self._event = FileModifiedEvent(os.path.join(hub.folder, sorted(hub.names)[0]))
        self._tokens = float(hub.hint_burst)
        self._token_time = time.monotonic()
        self._owed = False  # a hint is due but waits for a token
        self._next_check = 0.0
        self._relevant_seen = 0  # inotify records about watched names (for the lost-events check)
        self._seen_at_check = 0
        self._suspect_at: int | None = None  # _relevant_seen when an unannounced change was seen
        self._lost_logged = False

    # -- set-up / tear-down ---------------------------------------------------------------------------
    def on_thread_start(self) -> None:
        hub = self._hub
        try:
            self._dfd = os.open(hub.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise WatchError(e.errno, f"cannot watch the shared folder {hub.folder}: {e.strerror}") from None
        self._poller.register(hub.wake_r, select.POLLIN)
        if hub.requested != "poll":
            try:
                self._ifd = _inotify_open(hub.folder)
            except OSError as e:
                if hub.requested == "events":
                    os.close(self._dfd)
                    self._dfd = None
                    raise WatchError(
                        e.errno,
                        f"cannot watch the shared folder {hub.folder} with inotify ({e.strerror}); raise "
                        "fs.inotify.max_user_instances / max_user_watches, or use the polling mode",
                    ) from None
                logger.warning(
                    "inotify unavailable for %s (%s): polling every %.2f s instead",
                    hub.folder,
                    e.strerror,
                    hub.poll_interval,
                )
        if self._ifd is not None:
            self._poller.register(self._ifd, select.POLLIN)
            hub.in_use = "events"
        else:
            hub.in_use = "poll"
        self._sigs = {n: self._sig(n) for n in hub.names}
        self._next_check = time.monotonic() + self._interval()

    def on_thread_stop(self) -> None:
        self._hub.poke()

    def run(self) -> None:
        try:
            super().run()
        finally:
            for fd in (self._ifd, self._dfd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._ifd = self._dfd = None

    # -- helpers ---------------------------------------------------------------------------------------
    def _interval(self) -> float:
        return self._hub.check_interval if self._ifd is not None else self._hub.poll_interval

    def _sig(self, name: str) -> _Sig:
        try:
            st = os.stat(name, dir_fd=self._dfd, follow_symlinks=False)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _changed(self) -> tuple[bool, bool]:
        """(any watched name changed, one was replaced: appeared, vanished or got another inode).

        Only a replacement is something inotify must have announced (IN_CREATE / IN_MOVED_* /
        IN_DELETE); an in-place write is not in the mask on purpose (see ``_MASK``)."""
        changed = replaced = False
        for name in self._hub.names:
            sig = self._sig(name)
            old = self._sigs.get(name)
            if sig != old:
                self._sigs[name] = sig
                changed = True
                if sig is None or old is None or sig[0] != old[0]:
                    replaced = True
        return changed, replaced

    def _drain_wake(self) -> None:
        hub = self._hub
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(hub.wake_r, 4096)
        while hub.wake_fds:  # wake_on(): watched from now on
            fd = hub.wake_fds.pop()
            self._wake_fds.add(fd)
            self._poller.register(fd, select.POLLIN)

    def _read_events(self) -> bool:
        """Read what inotify has (up to 64 KiB); True if a record concerns a watched name (or the kernel
        dropped records, or the watch ended)."""
        assert self._ifd is not None
        try:
            data = os.read(self._ifd, _READ_SIZE)  # one read per wake-up; more records: poll says so
        except BlockingIOError:
            return False
        names = self._hub.name_bytes
        pos, end = 0, len(data)
        while pos + 16 <= end:
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            name = data[pos + 16 : pos + 16 + length].rstrip(b"\0")
            pos += 16 + length
            if mask & _OVERFLOW or name in names:
                return True
            if mask & _GONE:
                self._to_poll("the watch on the folder ended (folder moved, deleted or unmounted)")
                return True
        return False

    def _to_poll(self, why: str) -> None:
        if self._ifd is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._poller.unregister(self._ifd)
        with contextlib.suppress(OSError):
            os.close(self._ifd)
        self._ifd = None
        self._hub.in_use = "poll"
        logger.warning(
            "watching %s: %s; polling every %.2f s from now on",
            self._hub.folder,
            why,
            self._hub.poll_interval,
        )

    def _deliver(self) -> None:
        """Send one hint (or owe it until a token is available)."""
        hub = self._hub
        if hub.queued:
            return  # one pending hint at most
        now = time.monotonic()
        self._tokens = min(float(hub.hint_burst), self._tokens + (now - self._token_time) * hub.max_hint_rate)
        self._token_time = now
        if self._tokens < 1.0:
            self._owed = True
            return
        self._tokens -= 1.0
        self._owed = False
        hub.queued = True
        hub.hints_delivered += 1
        # Straight to the handler rather than through the observer's queue: the queue hop costs one more
        # thread wake-up per hint (~50 us here), about half the bridge's CPU budget at 10 Hz.
        hub.handler.dispatch(self._event)

    def _check(self) -> None:
        """Periodic lstat of the watched names: the poll itself, or the lost-events check."""
        changed, replaced = self._changed()
        self._next_check = time.monotonic() + self._interval()
        if self._ifd is None:
            if changed:
                self._deliver()
            return
        # events mode: read what inotify already has, so a change it announced is counted
        if self._read_events():
            self._relevant_seen += 1
            self._deliver()
        if self._suspect_at is not None:
            if self._relevant_seen == self._suspect_at:
                why = (
                    "a watched file was replaced and inotify did not announce it (events lost, or the guest "
                    "does not replace it by rename as the protocol requires)"
                )
                if self._hub.requested == "auto":
                    self._to_poll(why)
                elif not self._lost_logged:
                    self._lost_logged = True
                    logger.warning(
                        "watching %s: %s; the periodic check still gives hints", self._hub.folder, why
                    )
            self._suspect_at = None
        if changed and self._relevant_seen == self._seen_at_check:
            if replaced:
                self._suspect_at = self._relevant_seen
            self._deliver()
        self._seen_at_check = self._relevant_seen

    # -- the loop --------------------------------------------------------------------------------------
    def queue_events(self, timeout: float) -> None:
        hub = self._hub
        now = time.monotonic()
        if now >= self._next_check:
            self._check()
            return
        wait = self._next_check - now
        if self._owed:
            if hub.queued:
                self._owed = False
            else:
                wait = min(wait, max(0.001, (1.0 - self._tokens) / hub.max_hint_rate))
                self._sleep(wait)
                self._deliver()
                return
        ready = self._poller.poll(max(0, int(wait * 1000) + 1))
        for fd, _ev in ready:
            if fd == hub.wake_r:
                self._drain_wake()
            elif fd in self._wake_fds:
                # one wake-up per descriptor (a pidfd stays readable once its process has ended)
                self._poller.unregister(fd)
                self._wake_fds.discard(fd)
                hub.hint.set()
            elif fd == self._ifd:
                if hub.queued:
                    # Records arrive while a hint is still pending (a storm, or a slow caller): there is
                    # nothing new to say until the hint is taken, so leave them in the kernel queue (it
                    # coalesces or overflows) and sleep until wait() takes the hint and pokes us.
                    hub.napping = True
                    if hub.queued:
                        self._sleep(self._next_check - time.monotonic())
                    hub.napping = False
                elif self._read_events():
                    self._relevant_seen += 1
                    self._deliver()

    def _sleep(self, seconds: float) -> None:
        """Sleep until poked (hint taken / stop) or ``seconds`` passed."""
        if self._wake_poller.poll(max(0, int(seconds * 1000) + 1)):
            self._drain_wake()


class ShareWatcher:
    """Hints that one of ``names`` in ``folder`` may have changed. See the module doc.

    ``wait(timeout)`` blocks until a hint arrives (True) or the timeout passes (False); taking a hint
    clears it, so call ``wait`` *before* re-reading the file: a change after the re-read gives a new hint.
    """

    def __init__(
        self,
        folder: Path | str,
        names: Iterable[str],
        *,
        mode: Mode = "auto",
        poll_interval: float = 0.25,
        check_interval: float = 1.0,
        max_hint_rate: float = 50.0,
        hint_burst: int = 32,
    ) -> None:
        if mode not in ("auto", "events", "poll"):
            raise ValueError(f"watch mode {mode!r}: use 'auto', 'events' or 'poll'")
        name_set = frozenset(names)
        if not name_set:
            raise ValueError("ShareWatcher needs at least one file name to watch")
        for n in name_set:
            if not n or "/" in n or n in (".", ".."):
                raise ValueError(f"watched name {n!r} must be a plain file name")
        if poll_interval <= 0 or check_interval <= 0 or max_hint_rate <= 0 or hint_burst < 1:
            raise ValueError("poll_interval, check_interval, max_hint_rate must be > 0, hint_burst >= 1")
        self.folder = Path(folder)
        self.names = name_set
        self.mode = mode
        self._params = (poll_interval, check_interval, max_hint_rate, hint_burst)
        self._hub: _Hub | None = None
        self._observer: BaseObserver | None = None

    @property
    def mode_in_use(self) -> Literal["events", "poll"] | None:
        """'events' or 'poll' while started (may change from 'events' to 'poll' in auto mode)."""
        return self._hub.in_use if self._hub is not None else None

    @property
    def threads(self) -> list[threading.Thread]:
        """The watcher's threads (emitter, observer), e.g. to measure their CPU use."""
        obs = self._observer
        if obs is None:
            return []
        return [obs, *obs.emitters]

    def start(self) -> None:
        if self._observer is not None:
            return
        hub = _Hub(str(self.folder), self.names, self.mode, *self._params)
        observer = BaseObserver(_ShareEmitter, timeout=1.0, hub=hub)
        observer.schedule(hub.handler, str(self.folder))
        try:
            observer.start()
        except BaseException:
            hub.close()
            raise
        self._hub, self._observer = hub, observer

    def stop(self) -> None:
        observer, hub = self._observer, self._hub
        self._observer = None
        if observer is None or hub is None:
            return
        observer.stop()
        observer.join(timeout=5)
        if observer.is_alive():
            logger.error("the share watcher's observer thread did not stop within 5 s")
        hub.close()
        # keep self._hub for mode_in_use / counters after stop; hint.wait() still works (returns False)

    def wake_on(self, fd: int) -> None:
        """Also wake ``wait`` once when ``fd`` becomes readable (e.g. a pidfd: the task's process ended).
        The caller keeps ``fd`` open while the watcher runs and closes it after ``stop``."""
        hub = self._hub
        if hub is None:
            raise RuntimeError("ShareWatcher.wake_on() before start()")
        hub.wake_fds.append(fd)
        hub.poke()

    def wait(self, timeout: float) -> bool:
        """Block until a hint for a watched name arrives (True) or ``timeout`` seconds pass (False)."""
        hub = self._hub
        if hub is None:
            raise RuntimeError("ShareWatcher.wait() before start()")
        if not hub.hint.wait(timeout):
            return False
        hub.hint.clear()
        hub.queued = False
        hub.hints_taken += 1
        if hub.napping:
            hub.poke()
        return True

    def __enter__(self) -> ShareWatcher:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
