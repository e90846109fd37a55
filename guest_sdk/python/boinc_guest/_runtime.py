"""The guest SDK's state and its BOINC-named functions (see docs/protocol.md and docs/guest_sdk_python.md).

One process-wide :class:`_Runtime` holds what the app reported. Cheap calls (``boinc_fraction_done``,
ops, critical sections, network, trickle-down consumption) only update memory and mark the state
dirty; a daemon thread writes a dirty state within 0.1 s (progress-only changes -- fraction done,
ops -- at most once a second), bumps the heartbeat and writes once a second, and re-reads the control
file every 0.1 s. Checkpoints, events and ``boinc_init`` write at
once. Test mode (``boinc_guest.testing``) removes the thread, the atexit hook, the real clocks and the
process exits, so that sessions of calls give exact, repeatable files.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import resource
import sys
import threading
import time

from . import protocol as P
from .protocol import (
    CONTROL_FILE,
    ERR_BUFFER_OVERFLOW,
    ERR_NOT_FOUND,
    ERR_NULL,
    ERR_WRITE,
    EXIT_ABORTED_BY_CLIENT,
    MAX_EVENTS,
    MAX_MESSAGE,
    MAX_NAME,
    MAX_TEXT,
    STATUS_FILE,
    Control,
    Finish,
    InitData,
    ProtocolError,
    Status,
    TemporaryExit,
    TrickleUp,
    UploadRequest,
    _record,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # for type checkers only: an app's start imports neither typing nor logging
    from collections.abc import Callable, Iterator
    from logging import Logger
    from typing import IO, Any

    from .protocol import Event


def _logger() -> Logger:
    """The SDK's logger, imported when there is something to log (not at every app's start)."""
    import logging

    return logging.getLogger(__name__)


ENV_SHARE = "BOINC_GUEST_DIR"
MOUNT_POINTS = ("/boinc/shared", "/shared")
WRITE_INTERVAL = 0.1  # s: the background thread's tick (dirty writes, control re-reads)
# s: progress-only changes (fraction done, ops) are written at most this often (BOINC's API sends its
# status to the client once a second, and the client reads it once a second): an app reporting progress
# all the time causes one write a second (together with the heartbeat), a change after a second without
# one goes out within WRITE_INTERVAL. Each write costs the guest an fsync and the host bridge a wake-up.
PROGRESS_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 1.0  # s
FINISH_WAIT = 30.0  # s: how long boinc_finish waits for room in a full event queue

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@_record
class BoincOptions:
    """BOINC's ``BOINC_OPTIONS`` (7.20). Only ``direct_process_action`` changes what this SDK does:
    with 0, a quit / abort request only shows in :func:`boinc_get_status` and the app decides."""

    normal_thread_priority: int = 0
    main_program: int = 1
    check_heartbeat: int = 1
    handle_process_control: int = 1
    send_status_msgs: int = 1
    direct_process_action: int = 1
    multi_thread: int = 0
    multi_process: int = 0


@_record(frozen=True)
class BoincStatus:
    """BOINC's ``BOINC_STATUS``: what the host asked for (from the control file)."""

    no_heartbeat: int = 0
    suspended: int = 0
    quit_request: int = 0
    reread_init_data_file: int = 0
    abort_request: int = 0
    working_set_size: float = 0.0
    max_working_set_size: float = 0.0
    network_suspended: int = 0


class _Runtime:
    """All SDK state. Plain attributes: the hot path assigns them without a lock (atomic under the
    GIL); anything that builds or changes the event queue or writes the file takes ``lock``."""

    def __init__(self, test_mode: bool = False) -> None:
        self.lock = threading.RLock()
        self.test_mode = test_mode
        self.initialized = False
        self.standalone = True
        self.share: str | None = None
        self.options = BoincOptions()
        self.pid = os.getpid()
        # reported state
        self.seq = 0
        self.hb = 0
        self.fraction_done = 0.0
        self.checkpoint_cpu_time = 0.0
        self.checkpoint_count = 0
        self.fpops_per_cpu_sec = 0.0
        self.fpops_cumulative = 0.0
        self.intops_per_cpu_sec = 0.0
        self.intops_cumulative = 0.0
        self.critical = 0  # nesting count, like BOINC's in_critical_section
        self.checkpoint_cs = False  # the critical section entered by boinc_time_to_checkpoint
        self.want_network = False
        self.td_ack = 0
        self.events: list[Event] = []
        self.next_id = 1
        self.dirty = False  # a change the host should see within WRITE_INTERVAL
        self.progress = False  # a progress-only change (fraction, ops): written within PROGRESS_INTERVAL
        self.last_progress_write = -math.inf  # monotonic time of the last write carrying a progress change
        # host side
        self.control = Control()
        self.control_bytes: bytes | None = None
        # clocks
        self.t0 = time.monotonic()
        self.test_cpu = 0.0
        self.test_elapsed = 0.0
        self.last_checkpoint_elapsed = 0.0
        self.min_checkpoint_period = 0.0
        # background thread
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.exiting = False

    # -- clocks ------------------------------------------------------------------------------------

    def cpu_time(self) -> float:
        if self.test_mode:
            return self.test_cpu
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return max(0.0, me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime)

    def elapsed(self) -> float:
        if self.test_mode:
            return self.test_elapsed
        return max(0.0, time.monotonic() - self.t0)

    # -- writing -----------------------------------------------------------------------------------

    def snapshot(self) -> Status:
        return Status(
            seq=self.seq,
            hb=self.hb,
            fraction_done=self.fraction_done,
            cpu_time=self.cpu_time(),
            elapsed_time=self.elapsed(),
            checkpoint_cpu_time=self.checkpoint_cpu_time,
            checkpoint_count=self.checkpoint_count,
            fpops_per_cpu_sec=self.fpops_per_cpu_sec,
            fpops_cumulative=self.fpops_cumulative,
            intops_per_cpu_sec=self.intops_per_cpu_sec,
            intops_cumulative=self.intops_cumulative,
            critical_section=self.critical > 0,
            want_network=self.want_network,
            td_ack=self.td_ack,
            events=tuple(self.events),
        )

    def active(self) -> bool:
        """True if this process writes the status file (initialised, a share found, not a fork)."""
        return self.initialized and not self.standalone and os.getpid() == self.pid

    def write(self) -> int:
        """Encode the state with seq + 1 and write it atomically. 0, or ERR_WRITE (state kept dirty)."""
        with self.lock:
            if not self.active():
                return 0
            assert self.share is not None
            progress = self.progress
            self.dirty = self.progress = False
            self.seq += 1
            try:
                data = P.encode_status(self.snapshot())
                P.write_atomic(self.share, STATUS_FILE, data)
            except (OSError, ProtocolError) as exc:
                self.seq -= 1
                self.dirty, self.progress = True, progress
                _logger().warning("cannot write %s in %s: %s", STATUS_FILE, self.share, exc)
                return ERR_WRITE
            if progress:
                self.last_progress_write = time.monotonic()
            return 0

    def write_pending(self) -> None:
        """Write what is not written yet (progress included): at exit and before ending the process."""
        if self.dirty or self.progress:
            self.write()

    def add_event(self, make: Callable[[int], Event]) -> int:
        """Queue an event and write at once. ERR_BUFFER_OVERFLOW if the queue (64) or the file (1 MiB)
        would overflow, ERR_WRITE if the file cannot be written; in both cases nothing is queued."""
        with self.lock:
            if not self.active():
                return 0
            if len(self.events) >= MAX_EVENTS:
                return ERR_BUFFER_OVERFLOW
            event = make(self.next_id)
            self.events.append(event)
            try:
                P.encode_status(self.snapshot())
            except ProtocolError:
                self.events.pop()
                return ERR_BUFFER_OVERFLOW
            self.next_id += 1
            rc = self.write()
            if rc:
                self.events.remove(event)
                self.next_id -= 1
            return rc

    # -- reading the control file ------------------------------------------------------------------

    def reload_control(self) -> bool:
        """Re-read the control file; on a new valid one, drop acknowledged events. True if it changed."""
        if not self.active():
            return False
        assert self.share is not None
        path = os.path.join(self.share, CONTROL_FILE)
        try:
            data = P.read_file_bounded(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            _logger().warning("cannot read %s: %s", path, exc)
            return False
        if data == self.control_bytes:
            return False
        self.control_bytes = data
        try:
            control = P.decode_control(data)
        except ProtocolError as exc:
            _logger().warning(
                "ignoring %s: %s (the host bridge wrote a bad file; keeping the last good one)", path, exc
            )
            return False
        with self.lock:
            self.control = control
            kept = [ev for ev in self.events if ev.id > control.ack]
            if len(kept) != len(self.events):
                self.events = kept
                self.dirty = True
        return True

    def process_action(self) -> None:
        """Quit / abort: flush and end the process (unless in a critical section, test mode, or the
        app asked for ``direct_process_action = 0``)."""
        c = self.control
        if not (c.quit or c.abort) or self.test_mode or self.critical > 0:
            return
        if not self.options.direct_process_action or self.exiting:
            return
        self.exiting = True
        self.write()
        _flush_stdio()
        os._exit(EXIT_ABORTED_BY_CLIENT if c.abort else 0)

    # -- background thread -------------------------------------------------------------------------

    def run(self) -> None:
        next_hb = time.monotonic() + HEARTBEAT_INTERVAL
        while not self.stop.wait(WRITE_INTERVAL):
            try:
                self.reload_control()
                self.process_action()
                now = time.monotonic()
                if now >= next_hb:
                    self.hb += 1
                    next_hb = max(next_hb + HEARTBEAT_INTERVAL, now)
                    self.write()
                elif self.dirty or (self.progress and now - self.last_progress_write >= PROGRESS_INTERVAL):
                    self.write()
            except Exception:  # never let the reporter die; the app keeps running
                _logger().exception("boinc_guest background thread")

    def start_thread(self) -> None:
        self.thread = threading.Thread(target=self.run, name="boinc_guest", daemon=True)
        self.thread.start()

    def stop_thread(self) -> None:
        self.stop.set()
        thread, self.thread = self.thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)


_rt = _Runtime()


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _at_exit() -> None:
    rt = _rt
    rt.stop_thread()
    rt.write_pending()


# --------------------------------------------------------------------------------------------------
# Finding the share


def find_share() -> str | None:
    """The share folder per docs/protocol.md "Finding the share", or None for standalone mode."""
    env = os.environ.get(ENV_SHARE, "")
    if env:
        if os.path.isdir(env):
            return os.path.abspath(env)
        print(
            f"boinc_guest: warning: {ENV_SHARE}={env!r} is not a directory; running standalone "
            f"(set {ENV_SHARE} to the folder shared with the host, or unset it)",
            file=sys.stderr,
        )
        return None
    if os.path.isfile(CONTROL_FILE):
        return os.getcwd()
    for mount in MOUNT_POINTS:
        if os.path.isfile(os.path.join(mount, CONTROL_FILE)):
            return mount
    return None


# --------------------------------------------------------------------------------------------------
# BOINC API


def boinc_init_options(options: BoincOptions | None = None) -> int:
    """Start the SDK: find the share, read the control file, continue seq / event ids from the files
    already there, write the status file once, start the background thread. 0 or ERR_WRITE."""
    rt = _rt
    with rt.lock:
        if rt.initialized:
            return 0
        rt.options = options if options is not None else BoincOptions()
        rt.pid = os.getpid()
        rt.t0 = time.monotonic()
        rt.last_checkpoint_elapsed = 0.0
        share = find_share()
        rt.initialized = True
        if share is None:
            rt.standalone = True
            return 0
        rt.standalone = False
        rt.share = share
        rt.reload_control()
        last_seq, last_id = 0, 0
        path = os.path.join(share, STATUS_FILE)
        try:
            old = P.decode_status(P.read_file_bounded(path))
            last_seq = old.seq if old.seq < 2**63 else 0
            last_id = old.events[-1].id if old.events else 0
        except FileNotFoundError:
            pass
        except (OSError, ProtocolError) as exc:
            _logger().warning("ignoring the old %s: %s", path, exc)
        rt.seq = last_seq
        rt.next_id = max(rt.control.ack, last_id) + 1
        rc = rt.write()
    if not rt.test_mode:
        atexit.register(_at_exit)
        rt.stop.clear()
        rt.start_thread()
    return rc


def boinc_init() -> int:
    """BOINC's ``boinc_init()``: :func:`boinc_init_options` with the default options."""
    return boinc_init_options(None)


def boinc_fraction_done(fraction_done: float) -> int:
    """Report progress in [0, 1] (clamped; NaN is ignored). Memory only: no I/O, no lock."""
    x = float(fraction_done)
    if x != x:
        return 0
    rt = _rt
    rt.fraction_done = 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
    rt.progress = True
    return 0


def boinc_get_fraction_done() -> float:
    return _rt.fraction_done


def _nonneg(value: float, old: float) -> float:
    x = float(value)
    if not math.isfinite(x):
        return old
    return x if x > 0.0 else 0.0


def boinc_ops_per_cpu_sec(fp: float, integer: float) -> None:
    """Floating-point and integer ops per CPU second (non-finite values ignored, negatives -> 0)."""
    rt = _rt
    rt.fpops_per_cpu_sec = _nonneg(fp, rt.fpops_per_cpu_sec)
    rt.intops_per_cpu_sec = _nonneg(integer, rt.intops_per_cpu_sec)
    rt.progress = True


def boinc_ops_cumulative(fp: float, integer: float) -> None:
    """Total floating-point and integer ops so far (non-finite values ignored, negatives -> 0)."""
    rt = _rt
    rt.fpops_cumulative = _nonneg(fp, rt.fpops_cumulative)
    rt.intops_cumulative = _nonneg(integer, rt.intops_cumulative)
    rt.progress = True


def _checkpoint_period(rt: _Runtime) -> float:
    return max(rt.control.init_data.checkpoint_period, rt.min_checkpoint_period)


def boinc_time_to_checkpoint() -> int:
    """1 if a checkpoint is due (``checkpoint_period`` seconds since the last one or since init).
    Like BOINC, returning 1 enters a critical section that ``boinc_checkpoint_completed`` leaves."""
    rt = _rt
    if rt.elapsed() - rt.last_checkpoint_elapsed < _checkpoint_period(rt):
        return 0
    if not rt.checkpoint_cs:
        rt.checkpoint_cs = True
        rt.critical += 1
        rt.dirty = True
    return 1


def boinc_checkpoint_completed() -> int:
    """The app saved its state: record the CPU time, leave the critical section, write at once."""
    rt = _rt
    with rt.lock:
        rt.checkpoint_cpu_time = rt.cpu_time()
        rt.checkpoint_count += 1
        rt.last_checkpoint_elapsed = rt.elapsed()
        rt.checkpoint_cs = False
        if rt.critical > 0:
            rt.critical -= 1
        return rt.write()


def boinc_set_min_checkpoint_period(seconds: float) -> int:
    x = float(seconds)
    _rt.min_checkpoint_period = x if math.isfinite(x) and x > 0.0 else 0.0
    return 0


def boinc_begin_critical_section() -> None:
    rt = _rt
    rt.critical += 1
    rt.dirty = True


def boinc_end_critical_section() -> None:
    rt = _rt
    if rt.critical > 0:
        rt.critical -= 1
    rt.dirty = True


def boinc_need_network() -> None:
    rt = _rt
    rt.want_network = True
    rt.dirty = True


def boinc_network_done() -> None:
    rt = _rt
    rt.want_network = False
    rt.dirty = True


def boinc_network_poll() -> int:
    """0 if the network may be used (the volunteer has not suspended network activity), else 1."""
    return 1 if _rt.control.network_suspended else 0


def boinc_send_trickle_up(variety: str, text: str) -> int:
    """Send a trickle-up message. 0, ERR_NULL (missing variety / text), ERR_BUFFER_OVERFLOW (variety
    over 255 bytes, text over 65536 bytes, queue or file full) or ERR_WRITE."""
    if variety is None or text is None or variety == "":
        return ERR_NULL
    variety, text = P.clean_text(str(variety)), P.clean_text(str(text))
    if len(variety.encode("utf-8")) > MAX_NAME or len(text.encode("utf-8")) > MAX_TEXT:
        return ERR_BUFFER_OVERFLOW
    return _rt.add_event(lambda i: TrickleUp(id=i, variety=variety, text=text))


def boinc_receive_trickle_down() -> str | None:
    """The next trickle-down message from the host, or None. Consuming it acks it (``td_ack``)."""
    rt = _rt
    for td in rt.control.trickle_down:
        if td.id > rt.td_ack:
            rt.td_ack = td.id
            rt.dirty = True
            return td.text
    return None


def boinc_upload_file(name: str) -> int:
    """Ask the host to upload the file ``name`` (a plain name in the share) now. 0, ERR_NULL,
    ERR_BUFFER_OVERFLOW (name over 255 bytes or queue full), ERR_INVALID_PARAM (not a plain file
    name) or ERR_WRITE."""
    if name is None:
        return ERR_NULL
    name = P.clean_text(str(name))
    rc = P.check_upload_name(name)
    if rc:
        return rc
    return _rt.add_event(lambda i: UploadRequest(id=i, name=name))


def boinc_upload_status(name: str) -> int:
    """The result of an upload: 0 done, < 0 a BOINC error, ERR_NOT_FOUND if not known (yet)."""
    if not name:
        return ERR_NULL
    for up in reversed(_rt.control.uploads):
        if up.name == name:
            return up.status
    return ERR_NOT_FOUND


def _int32(value: int) -> int:
    v = int(value)
    return _INT32_MIN if v < _INT32_MIN else _INT32_MAX if v > _INT32_MAX else v


def _send_final(make: Callable[[int], Event]) -> int:
    """Queue a finish / temporary-exit event; outside test mode, wait up to FINISH_WAIT seconds for
    the host to ack events if the queue is full (the last word must get through)."""
    rt = _rt
    rc = rt.add_event(make)
    deadline = time.monotonic() + FINISH_WAIT
    while rc == ERR_BUFFER_OVERFLOW and not rt.test_mode and time.monotonic() < deadline:
        time.sleep(WRITE_INTERVAL)
        rt.reload_control()
        rc = rt.add_event(make)
    if rc:
        print(f"boinc_guest: could not report the end of the task to the host (error {rc})", file=sys.stderr)
    return rc


def _end_process(status: int) -> None:
    """End the process with ``status``. From the main thread this is ``sys.exit(status)`` (finally
    blocks and atexit handlers run, open files get flushed); from any other thread, stdio is flushed
    and the process ends at once with ``os._exit(status)``."""
    rt = _rt
    rt.stop_thread()
    rt.write_pending()
    _flush_stdio()
    if threading.current_thread() is threading.main_thread():
        raise SystemExit(status)
    os._exit(status & 0xFF)


def boinc_finish_message(status: int, msg: str | None = None, is_notice: bool = False) -> int:
    """Report the end of the task (exit ``status``, an optional message shown to the volunteer) and
    end the process with ``status``. Does not return (except in test mode, where it returns 0 or an
    error code)."""
    status = _int32(status)
    message = P.truncate_utf8(str(msg) if msg is not None else "", MAX_MESSAGE)
    rc = _send_final(lambda i: Finish(id=i, status=status, message=message, is_notice=bool(is_notice)))
    if _rt.test_mode:
        return rc
    _end_process(status)
    return rc  # pragma: no cover


def boinc_finish(status: int) -> int:
    """BOINC's ``boinc_finish(status)``: report the end of the task and end the process."""
    return boinc_finish_message(status, None, False)


def boinc_temporary_exit(delay: float, reason: str | None = None, is_notice: bool = False) -> int:
    """Ask to be restarted after ``delay`` seconds (``reason`` shown to the volunteer if
    ``is_notice``), then end the process with status 0. Does not return (except in test mode)."""
    d = float(delay)
    d = d if math.isfinite(d) and d > 0.0 else 0.0
    reason_text = P.truncate_utf8(str(reason) if reason is not None else "", MAX_MESSAGE)
    rc = _send_final(lambda i: TemporaryExit(id=i, delay=d, reason=reason_text, is_notice=bool(is_notice)))
    if _rt.test_mode:
        return rc
    _end_process(0)
    return rc  # pragma: no cover


def boinc_get_status() -> BoincStatus:
    c = _rt.control
    return BoincStatus(
        suspended=int(c.suspended),
        quit_request=int(c.quit),
        abort_request=int(c.abort),
        network_suspended=int(c.network_suspended),
    )


def boinc_get_init_data() -> InitData:
    """BOINC's ``APP_INIT_DATA`` as the host sent it (defaults in standalone mode)."""
    return _rt.control.init_data


def boinc_is_standalone() -> int:
    """1 if no share was found (or before ``boinc_init``), else 0."""
    return 1 if _rt.standalone else 0


def boinc_wu_cpu_time() -> float:
    """CPU seconds of the whole job: earlier runs (from the host) plus this run."""
    rt = _rt
    return rt.control.init_data.wu_cpu_time + rt.cpu_time()


def boinc_elapsed_time() -> float:
    """Wall seconds of the whole job: earlier runs (from the host) plus this run."""
    rt = _rt
    return rt.control.init_data.starting_elapsed_time + rt.elapsed()


def boinc_resolve_filename(name: str) -> str:
    """The physical name of ``name``, as BOINC resolves it: a symbolic link or a regular file resolves
    to itself, except a file whose first line holds ``<soft_link>path</soft_link>`` (what the BOINC
    client puts in slot directories), which resolves to ``path``."""
    path = os.fspath(name)
    if os.path.islink(path):
        return path
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return path
    text = first.decode("utf-8", "replace")
    start = text.find("<soft_link>")
    if start < 0:
        return path
    start += len("<soft_link>")
    end = text.find("</soft_link>", start)
    if end < 0:
        return path
    target = text[start:end].strip()
    return target or path


def boinc_resolve_filename_s(name: str) -> str:
    return boinc_resolve_filename(name)


def boinc_fopen(path: str, mode: str = "r", **kwargs: Any) -> IO[Any]:
    """BOINC's ``boinc_fopen``: ``open(path, mode)``."""
    return open(path, mode, **kwargs)


# --------------------------------------------------------------------------------------------------
# Pythonic names


class BoincError(RuntimeError):
    """A BOINC API call failed; ``code`` is BOINC's error number."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what} failed with BOINC error {code}")
        self.code = code


def _check(code: int, what: str) -> None:
    if code:
        raise BoincError(code, what)


def init(options: BoincOptions | None = None, **option_values: int) -> None:
    """Start the SDK (``boinc_init_options``); keyword arguments set BoincOptions fields."""
    if option_values:
        base = options if options is not None else BoincOptions()
        options = BoincOptions(**{**base.__dict__, **option_values})
    _check(boinc_init_options(options), "boinc_init")


fraction_done = boinc_fraction_done
get_fraction_done = boinc_get_fraction_done
ops_per_cpu_sec = boinc_ops_per_cpu_sec
ops_cumulative = boinc_ops_cumulative
begin_critical_section = boinc_begin_critical_section
end_critical_section = boinc_end_critical_section
need_network = boinc_need_network
network_done = boinc_network_done
receive_trickle_down = boinc_receive_trickle_down
upload_status = boinc_upload_status
get_status = boinc_get_status
get_init_data = boinc_get_init_data
resolve_filename = boinc_resolve_filename
wu_cpu_time = boinc_wu_cpu_time
elapsed_time = boinc_elapsed_time
set_min_checkpoint_period = boinc_set_min_checkpoint_period


def time_to_checkpoint() -> bool:
    return bool(boinc_time_to_checkpoint())


def checkpoint_completed() -> None:
    _check(boinc_checkpoint_completed(), "boinc_checkpoint_completed")


@contextlib.contextmanager
def critical_section() -> Iterator[None]:
    """``with critical_section(): ...`` — quit / abort requests wait until the block ends."""
    boinc_begin_critical_section()
    try:
        yield
    finally:
        boinc_end_critical_section()


def send_trickle_up(variety: str, text: str) -> None:
    _check(boinc_send_trickle_up(variety, text), "boinc_send_trickle_up")


def upload_file(name: str) -> None:
    _check(boinc_upload_file(name), "boinc_upload_file")


def is_standalone() -> bool:
    return bool(boinc_is_standalone())


def finish(status: int = 0, message: str | None = None, is_notice: bool = False) -> None:
    """Report the end of the task and end the process with ``status`` (does not return)."""
    boinc_finish_message(status, message, is_notice)


def temporary_exit(delay: float, reason: str | None = None, is_notice: bool = False) -> None:
    """Ask to be restarted after ``delay`` seconds and end the process (does not return)."""
    boinc_temporary_exit(delay, reason, is_notice)
