"""The BOINC API as the bridge uses it: :class:`BoincApi` (the real ``libboinc_api.so.7``) and
:class:`StandaloneApi` (no client), one interface (:class:`BoincApiBase`), chosen by :func:`load_api`.

How each call is bound (details in docs/boinc_api_binding.md):

- ``init`` calls ``boinc_init_options`` with the options BOINC's own wrapper uses (main_program,
  check_heartbeat, handle_process_control; the rest 0: the library only *flags* suspend / quit /
  abort / lost client in ``boinc_status``, and sends no status messages of its own).
- ``send_status`` writes the client's ``app_status`` channel itself, at once, with force semantics
  (an unread status is replaced by the newer one), in the XML the library sends, plus
  ``<fpops_cumulative>`` etc. which the client parses but the library never sends.
- ``finish`` / ``temporary_exit`` / ``upload_*`` go to the library's C++-only functions through the
  compiled shim (``_shim_build.py``); without the shim, the mangled symbols with plain argument types
  are called directly and ``upload_*`` raise :class:`BoincApiError`.
- ``init_data`` parses ``init_data.xml`` (the file the library parses; ``APP_INIT_DATA`` is a C++
  class that cannot be filled through C).

The real library's ``init`` redirects fd 2 to ``stderr.txt``, installs a 10 Hz ``SIGALRM`` timer, C
signal handlers and a timer thread, and ``finish`` / ``temporary_exit`` end the process with C
``exit()`` (Python ``finally`` / ``atexit`` do not run; stdio and logging are flushed first here).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import sys
import xml.parsers.expat as expat
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

from ..exitcodes import ERR_FOPEN, ERR_NOT_FOUND
from . import _ffi

log = logging.getLogger(__name__)

#: Environment variable naming the BOINC API library to load instead of ``libboinc_api.so.7``
#: (a path or a soname; tests point it at a bogus name to check the "library missing" path).
LIBRARY_ENV = "HOST_BRIDGE_BOINC_LIBRARY"

INIT_DATA_FILE = "init_data.xml"
INIT_DATA_MAX_BYTES = 4 * 1024 * 1024

# BOINC's codes (lib/error_numbers.h, 7.20.5): the one table is host_bridge.exitcodes

_MAX_PATH = 4096
_STATUS_MAX = _ffi.MSG_CHANNEL_SIZE - 2  # byte 0 is the flag, the text needs its NUL


class BoincError(Exception):
    """Base of the errors raised by this module."""


class BoincInitError(BoincError):
    """``boinc_init_options`` failed, or the library cannot be used."""


class BoincApiError(BoincError):
    """A BOINC API call failed; ``code`` is BOINC's error number when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BoincStatus:
    """The library's ``BOINC_STATUS``: what the client asked for (flags only: the bridge acts)."""

    no_heartbeat: bool = False
    suspended: bool = False
    quit_request: bool = False
    reread_init_data_file: bool = False
    abort_request: bool = False
    network_suspended: bool = False
    working_set_size: float = 0
    max_working_set_size: float = 0


@dataclass(frozen=True)
class AppInitData:
    """The fields of ``init_data.xml`` (``APP_INIT_DATA``) the bridge uses."""

    app_name: str = ""
    wu_name: str = ""
    result_name: str = ""
    project_preferences: str = ""
    user_name: str = ""
    team_name: str = ""
    master_url: str = ""
    project_dir: str = ""
    boinc_dir: str = ""
    userid: int = 0
    teamid: int = 0
    hostid: int = 0
    app_version: int = 0
    checkpoint_period: float = 300.0  # DEFAULT_CHECKPOINT_PERIOD when the file has none
    ncpus: float = 0.0
    fraction_done_start: float = 0.0
    fraction_done_end: float = 1.0
    wu_cpu_time: float = 0.0
    starting_elapsed_time: float = 0.0
    rsc_fpops_est: float = 0.0
    rsc_fpops_bound: float = 0.0
    rsc_memory_bound: float = 0.0
    rsc_disk_bound: float = 0.0
    computation_deadline: float = 0.0


def _top_level_texts(text: str) -> list[tuple[str, str]]:
    """(tag, text) of each child of the root element, in order; text inside grandchildren is left out.
    Plain expat (already loaded for the job file) rather than ElementTree: one module less to import."""
    out: list[tuple[str, str]] = []
    depth = 0
    tag = ""
    buf: list[str] = []

    def start(name: str, attrs: object) -> None:
        nonlocal depth, tag, buf
        depth += 1
        if depth == 2:
            tag, buf = name, []

    def end(name: str) -> None:
        nonlocal depth
        if depth == 2:
            out.append((tag, "".join(buf)))
        depth -= 1

    def chars(data: str) -> None:
        if depth == 2:
            buf.append(data)

    p = expat.ParserCreate()
    p.StartElementHandler = start
    p.EndElementHandler = end
    p.CharacterDataHandler = chars
    p.Parse(text, True)
    return out


def parse_init_data(path: Path) -> AppInitData:
    """Parse an ``init_data.xml`` (written by the client) into :class:`AppInitData`.

    Unknown tags are ignored; a tag whose value does not parse keeps its default (logged with the
    file and tag). Raises :class:`BoincApiError` naming the file when it is unreadable or not XML.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(INIT_DATA_MAX_BYTES + 1)
    except OSError as exc:
        raise BoincApiError(f"{path}: cannot read ({exc.strerror})", ERR_FOPEN) from exc
    if len(raw) > INIT_DATA_MAX_BYTES:
        raise BoincApiError(f"{path}: larger than {INIT_DATA_MAX_BYTES} bytes; not parsed")
    text = raw.decode("utf-8", errors="replace")
    try:
        children = _top_level_texts(text)
    except expat.ExpatError as exc:
        raise BoincApiError(f"{path}: not well-formed XML ({exc}); is it BOINC's init_data.xml?") from exc
    values: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(AppInitData)}
    for tag, raw_value in children:
        if tag not in types or tag == "project_preferences":
            continue
        value = raw_value.strip()
        kind = types[tag]
        try:
            if kind == "int":
                values[tag] = int(float(value))
            elif kind == "float":
                x = float(value)
                if not math.isfinite(x):
                    raise ValueError(value)
                values[tag] = x
            else:
                values[tag] = value
        except ValueError:
            log.warning("%s: <%s> has a bad value %r; using the default", path, tag, value[:80])
    # project_preferences is an XML fragment: keep it verbatim, as the library does
    m = re.search(r"<project_preferences>(.*?)</project_preferences>", text, re.S)
    if m:
        values["project_preferences"] = m.group(1).strip()
    return AppInitData(**values)


def _finite(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) and x > 0 else 0.0


def format_status(
    cpu_time: float,
    checkpoint_cpu_time: float,
    fraction_done: float,
    fpops_per_cpu_sec: float = 0,
    fpops_cumulative: float = 0,
    intops_per_cpu_sec: float = 0,
    intops_cumulative: float = 0,
    want_network: bool = False,
) -> bytes:
    """The ``app_status`` message, as ``update_app_progress`` (boinc_api.cpp) formats it
    (``%e``, one tag per line, ``<want_network>`` before ``<fraction_done>``), followed by the
    fpops / intops tags that the client's ``ACTIVE_TASK::get_app_status_msg`` parses (sent only
    when non-zero, at full precision). Non-finite or negative values become 0; the fraction is
    clamped to [0, 1]."""
    fd = _finite(fraction_done)
    if fd > 1.0:
        fd = 1.0
    msg = (
        f"<current_cpu_time>{_finite(cpu_time):e}</current_cpu_time>\n"
        f"<checkpoint_cpu_time>{_finite(checkpoint_cpu_time):e}</checkpoint_cpu_time>\n"
    )
    if want_network:
        msg += "<want_network>1</want_network>\n"
    msg += f"<fraction_done>{fd:e}</fraction_done>\n"
    if fpops_per_cpu_sec:
        msg += f"<fpops_per_cpu_sec>{_finite(fpops_per_cpu_sec):.15e}</fpops_per_cpu_sec>\n"
    if fpops_cumulative:
        msg += f"<fpops_cumulative>{_finite(fpops_cumulative):.15e}</fpops_cumulative>\n"
    if intops_per_cpu_sec:
        msg += f"<intops_per_cpu_sec>{_finite(intops_per_cpu_sec):.15e}</intops_per_cpu_sec>\n"
    if intops_cumulative:
        msg += f"<intops_cumulative>{_finite(intops_cumulative):.15e}</intops_cumulative>\n"
    return msg.encode("ascii")


def _stop_worker_timer() -> None:
    """Stop the 10 Hz SIGALRM timer that ``boinc_init_options`` starts (setitimer ITIMER_REAL).

    Its handler (boinc_api.cpp ``worker_signal_handler``) does two things: getrusage() for the library's
    own CPU report, and an exit when the timer thread set ``worker_thread_exit_flag``. In wrapper mode
    neither is used: the bridge sends the status itself (``send_status_msgs = 0``), and the exit flag is
    set only with ``direct_process_action`` (quit / abort / dead client then only set the status flags
    the bridge polls). The signal itself costs: ten interrupted waits a second in the bridge's main
    thread, each a Python wake-up. The library's timer *thread* (messages, heartbeat) keeps running."""
    signal.setitimer(signal.ITIMER_REAL, 0.0)


def _flush_python_output() -> None:
    """C ``exit()`` does not flush Python's buffers: flush logging handlers and stdio first."""
    for logger in [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]:
        for handler in logger.handlers:
            with contextlib.suppress(Exception):  # a broken handler must not stop the exit
                handler.flush()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()


class BoincApiBase:
    """The BOINC API calls the bridge makes. Subclasses: :class:`BoincApi`, :class:`StandaloneApi`."""

    standalone: bool = True

    def __init__(self) -> None:
        #: the last status sent (keys as the ``send_status`` arguments), {} before the first
        self.last_status: dict[str, float | bool] = {}

    def init(self) -> None:
        raise NotImplementedError

    def get_status(self) -> BoincStatus:
        raise NotImplementedError

    def init_data(self) -> AppInitData:
        raise NotImplementedError

    def send_status(
        self,
        *,
        cpu_time: float,
        checkpoint_cpu_time: float,
        fraction_done: float,
        fpops_per_cpu_sec: float = 0,
        fpops_cumulative: float = 0,
        intops_per_cpu_sec: float = 0,
        intops_cumulative: float = 0,
        want_network: bool = False,
    ) -> None:
        raise NotImplementedError

    def send_trickle_up(self, variety: str, text: str) -> int:
        raise NotImplementedError

    def receive_trickle_down(self) -> str | None:
        raise NotImplementedError

    def upload_file(self, name: str) -> int:
        raise NotImplementedError

    def upload_status(self, name: str) -> int:
        raise NotImplementedError

    def resolve_filename(self, logical: str) -> str:
        raise NotImplementedError

    def web_graphics_url(self, url: str) -> None:
        raise NotImplementedError

    def remote_desktop_addr(self, addr: str) -> None:
        raise NotImplementedError

    def begin_critical_section(self) -> None:
        """While inside, the library defers its own exits (only matters with direct actions)."""

    def end_critical_section(self) -> None:
        """See :meth:`begin_critical_section`."""

    def finish(self, status: int, message: str | None = None, is_notice: bool = False) -> NoReturn:
        raise NotImplementedError

    def temporary_exit(self, delay: float, reason: str, is_notice: bool = False) -> NoReturn:
        raise NotImplementedError


def _cstr(s: str, limit: int | None = None) -> bytes:
    b = s.encode("utf-8", errors="replace").replace(b"\0", b"")
    return b[:limit] if limit else b


def default_library() -> str:
    """The BOINC API library to load: $HOST_BRIDGE_BOINC_LIBRARY, else the copy the single-file bundle
    carries (its libboinc.so.7 loaded first, so that libboinc_api's dependency is the bundle's too),
    else the system's ``libboinc_api.so.7`` (Debian's libboinc-app7)."""
    named = os.environ.get(LIBRARY_ENV)
    if named:
        return named
    from .. import _frozen

    bundled = _frozen.bundled_file(_ffi.LIBRARY_NAME)
    if bundled is None:
        return _ffi.LIBRARY_NAME
    dep = _frozen.bundled_file(_ffi.DEPENDENCY_NAME)
    if dep is not None and not _PRELOADED:
        # kept loaded (a dropped handle is closed): the loader then finds libboinc_api's DT_NEEDED by
        # its soname. When it fails, loading libboinc_api says why.
        with contextlib.suppress(OSError):
            _PRELOADED.append(_ffi.dlopen(str(dep)))
    return str(bundled)


_PRELOADED: list[Any] = []


class BoincApi(BoincApiBase):
    """The real BOINC API library (``libboinc_api.so.7``), loaded with cffi.

    The process's working directory must be the slot directory (the library uses relative paths).
    """

    standalone = False

    def __init__(self, library: str | None = None, *, slot_dir: Path | None = None) -> None:
        super().__init__()
        self.library = library or default_library()
        self.slot_dir = Path(slot_dir) if slot_dir is not None else Path.cwd()
        self.ffi = _ffi.ffi
        self.lib = _ffi.dlopen(self.library)  # OSError when missing: load_api handles it
        self._shim = self._load_shim()
        self._status = self.ffi.new("BOINC_STATUS*")
        self._status_chan: Any = None  # cdata char[1024] of shm->app_status once init() ran
        self._initialized = False

    def _load_shim(self) -> Any:
        try:
            from . import _shim  # type: ignore[attr-defined]
        except ImportError:
            log.warning(
                "BOINC C++ shim not built (host_bridge/boinc/_shim*.so missing): using the mangled "
                "symbols for finish/temporary_exit; upload_file/upload_status unavailable. Build it: "
                "python -m host_bridge.boinc._shim_build --inplace"
            )
            return None
        err = _shim.ffi.new("char[512]")
        rc = _shim.lib.shim_open(self.library.encode(), err, 512)
        if rc != 0:
            log.warning("BOINC C++ shim cannot bind %s: %s", self.library, _shim.ffi.string(err).decode())
            return None
        return _shim

    # -- life cycle -------------------------------------------------------------------------
    def init(self) -> None:
        if self._initialized:
            return
        opts = self.ffi.new("BOINC_OPTIONS*")
        # BOINC's wrapper / vboxwrapper: memset 0, then these three.
        opts.main_program = 1
        opts.check_heartbeat = 1
        opts.handle_process_control = 1
        opts.send_status_msgs = 0  # the bridge sends status itself (send_status)
        opts.direct_process_action = 0  # flags only; the bridge suspends / quits the VM
        rc = self.lib.boinc_init_options(opts)
        if rc != 0:
            raise BoincInitError(
                f"boinc_init_options failed with {rc} in {self.slot_dir} (see stderr.txt there; "
                "is another instance holding boinc_lockfile?)"
            )
        self._initialized = True
        _stop_worker_timer()
        if self.lib.boinc_is_standalone():
            # init_data.xml unparsable or the shared memory (boinc_mmap_file) cannot be attached
            self.standalone = True
            log.warning(
                "the BOINC library runs standalone although %s exists: it could not parse it or "
                "attach the shared memory (boinc_mmap_file); status will not reach the client",
                self.slot_dir / INIT_DATA_FILE,
            )
            return
        shm = self.lib.app_client_shm
        if shm == self.ffi.NULL or shm.shm == self.ffi.NULL:
            raise BoincInitError("the BOINC library attached no shared memory (app_client_shm is NULL)")
        self._status_chan = shm.shm.app_status.buf

    def get_status(self) -> BoincStatus:
        s = self._status
        self.lib.boinc_get_status(s)
        return BoincStatus(
            no_heartbeat=bool(s.no_heartbeat),
            suspended=bool(s.suspended),
            quit_request=bool(s.quit_request),
            reread_init_data_file=bool(s.reread_init_data_file),
            abort_request=bool(s.abort_request),
            network_suspended=bool(s.network_suspended),
            working_set_size=s.working_set_size,
            max_working_set_size=s.max_working_set_size,
        )

    def init_data(self) -> AppInitData:
        path = self.slot_dir / INIT_DATA_FILE
        if not path.exists():
            return AppInitData()
        return parse_init_data(path)

    # -- status -------------------------------------------------------------------------------
    def send_status(
        self,
        *,
        cpu_time: float,
        checkpoint_cpu_time: float,
        fraction_done: float,
        fpops_per_cpu_sec: float = 0,
        fpops_cumulative: float = 0,
        intops_per_cpu_sec: float = 0,
        intops_cumulative: float = 0,
        want_network: bool = False,
    ) -> None:
        msg = format_status(
            cpu_time,
            checkpoint_cpu_time,
            fraction_done,
            fpops_per_cpu_sec,
            fpops_cumulative,
            intops_per_cpu_sec,
            intops_cumulative,
            want_network,
        )
        self.last_status = {
            "cpu_time": cpu_time,
            "checkpoint_cpu_time": checkpoint_cpu_time,
            "fraction_done": fraction_done,
            "fpops_cumulative": fpops_cumulative,
        }
        chan = self._status_chan
        if chan is None:
            if not self._initialized:
                raise BoincApiError("send_status before init()")
            return  # the library fell back to standalone: nobody to tell
        # MSG_CHANNEL::send_msg_overwrite: text from byte 1 (NUL-terminated), then the flag.
        n = len(msg)
        if n > _STATUS_MAX:  # cannot happen with finite numbers; keep the channel well-formed
            msg, n = msg[:_STATUS_MAX], _STATUS_MAX
        self.ffi.memmove(chan + 1, msg + b"\0", n + 1)
        chan[0] = b"\x01"

    # -- trickles, uploads, files ---------------------------------------------------------------
    def send_trickle_up(self, variety: str, text: str) -> int:
        return int(self.lib.boinc_send_trickle_up(_cstr(variety), _cstr(text)))

    def receive_trickle_down(self) -> str | None:
        """The slot file name of a pending trickle-down message (BOINC semantics: the caller reads
        and then deletes the file, or it is returned again), or None."""
        buf = self.ffi.new("char[256]")
        if self.lib.boinc_receive_trickle_down(buf, 256):
            return self.ffi.string(buf).decode("utf-8", errors="replace")
        return None

    def upload_file(self, name: str) -> int:
        if self._shim is None:
            raise BoincApiError(
                "upload_file needs the compiled BOINC C++ shim: run "
                "python -m host_bridge.boinc._shim_build --inplace"
            )
        return int(self._shim.lib.shim_upload_file(_cstr(name)))

    def upload_status(self, name: str) -> int:
        if self._shim is None:
            raise BoincApiError(
                "upload_status needs the compiled BOINC C++ shim: run "
                "python -m host_bridge.boinc._shim_build --inplace"
            )
        return int(self._shim.lib.shim_upload_status(_cstr(name)))

    def resolve_filename(self, logical: str) -> str:
        buf = self.ffi.new("char[]", _MAX_PATH)
        rc = self.lib.boinc_resolve_filename(_cstr(logical), buf, _MAX_PATH)
        if rc != 0:
            raise BoincApiError(f"boinc_resolve_filename({logical!r}) failed with {rc}", rc)
        return self.ffi.string(buf).decode("utf-8", errors="replace")

    def web_graphics_url(self, url: str) -> None:
        self.lib.boinc_web_graphics_url(self.ffi.new("char[]", _cstr(url, 255)))

    def remote_desktop_addr(self, addr: str) -> None:
        self.lib.boinc_remote_desktop_addr(self.ffi.new("char[]", _cstr(addr, 255)))

    def begin_critical_section(self) -> None:
        self.lib.boinc_begin_critical_section()

    def end_critical_section(self) -> None:
        self.lib.boinc_end_critical_section()

    # -- the end --------------------------------------------------------------------------------
    def finish(self, status: int, message: str | None = None, is_notice: bool = False) -> NoReturn:
        """``boinc_finish`` / ``boinc_finish_message``: writes ``boinc_finish_called``, waits ~2 s
        (the library lets its timer thread finish), ends the process with C ``exit(status)``."""
        _flush_python_output()
        if message is None:
            self.lib.boinc_finish(int(status))
        elif self._shim is not None:
            self._shim.lib.shim_finish_message(int(status), _cstr(message), int(bool(is_notice)))
        else:
            self.lib._Z20boinc_finish_messageiPKcb(int(status), _cstr(message), bool(is_notice))
        raise SystemExit(status)  # not reached: the library exits

    def temporary_exit(self, delay: float, reason: str, is_notice: bool = False) -> NoReturn:
        """``boinc_temporary_exit``: writes ``boinc_temporary_exit`` (delay, reason, "notice"),
        exits 0; the client restarts the task after ``delay`` seconds."""
        _flush_python_output()
        d = max(0, round(delay))
        if self._shim is not None:
            rc = self._shim.lib.shim_temporary_exit(d, _cstr(reason), int(bool(is_notice)))
        else:
            rc = self.lib._Z20boinc_temporary_exitiPKcb(d, _cstr(reason), bool(is_notice))
        raise BoincApiError(
            f"boinc_temporary_exit returned {rc}: cannot write {self.slot_dir / 'boinc_temporary_exit'}",
            rc,
        )


class StandaloneApi(BoincApiBase):
    """No BOINC client: the bridge runs by itself (a demo, a developer's test).

    Mirrors the library in standalone mode where it matters: ``get_status`` never asks for anything,
    ``finish(n)`` exits with ``n`` and ``temporary_exit`` exits 0 (as ``boinc_temporary_exit`` does),
    both via ``SystemExit`` so Python clean-up runs; no ``boinc_finish_called`` /
    ``boinc_temporary_exit`` files and no 2 s wait (no client reads them). ``last_status`` keeps the
    last status for a progress line; ``trickle_ups`` and ``uploads`` record what would have been sent.
    """

    standalone = True

    def __init__(self, *, slot_dir: Path | None = None) -> None:
        super().__init__()
        self.slot_dir = Path(slot_dir) if slot_dir is not None else Path.cwd()
        self.trickle_ups: list[tuple[str, str]] = []
        self.uploads: list[str] = []
        self.graphics: dict[str, str] = {}
        self._lock_fd: int | None = None

    def init(self) -> None:
        """One bridge per folder, as the BOINC library's lock file ensures under a client: two standalone
        bridges in one folder killed each other's tasks (each took the other's for leftovers). The lock
        is on the folder itself (no file left behind) and ends with the process."""
        if self._lock_fd is not None:
            return
        import fcntl

        try:
            fd = os.open(self.slot_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise BoincApiError(f"cannot open the folder {self.slot_dir}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise BoincApiError(
                f"another host-bridge is running in {self.slot_dir}: one bridge per folder; wait for it "
                "to end, or stop it (it resumes where it was when started again)"
            ) from exc
        self._lock_fd = fd

    def get_status(self) -> BoincStatus:
        return BoincStatus()

    def init_data(self) -> AppInitData:
        path = self.slot_dir / INIT_DATA_FILE
        if path.exists():
            try:
                return parse_init_data(path)
            except BoincApiError as exc:
                log.warning("%s; using defaults", exc)
        return AppInitData()

    def send_status(
        self,
        *,
        cpu_time: float,
        checkpoint_cpu_time: float,
        fraction_done: float,
        fpops_per_cpu_sec: float = 0,
        fpops_cumulative: float = 0,
        intops_per_cpu_sec: float = 0,
        intops_cumulative: float = 0,
        want_network: bool = False,
    ) -> None:
        self.last_status = {
            "cpu_time": cpu_time,
            "checkpoint_cpu_time": checkpoint_cpu_time,
            "fraction_done": fraction_done,
            "fpops_per_cpu_sec": fpops_per_cpu_sec,
            "fpops_cumulative": fpops_cumulative,
            "intops_per_cpu_sec": intops_per_cpu_sec,
            "intops_cumulative": intops_cumulative,
            "want_network": want_network,
        }

    def send_trickle_up(self, variety: str, text: str) -> int:
        log.info("standalone: trickle-up %r not sent (no client)", variety)
        self.trickle_ups.append((variety, text))
        return 0

    def receive_trickle_down(self) -> str | None:
        return None

    def upload_file(self, name: str) -> int:
        log.info("standalone: upload of %r not sent (no client); reported as done", name)
        self.uploads.append(name)
        return 0

    def upload_status(self, name: str) -> int:
        return 0 if name in self.uploads else ERR_NOT_FOUND

    def resolve_filename(self, logical: str) -> str:
        """Like ``boinc_resolve_filename``: follow a ``<soft_link>`` file, else the name itself."""
        path = self.slot_dir / logical
        try:
            with open(path, "rb") as f:
                head = f.read(_MAX_PATH + 64)
        except OSError:
            return logical
        m = re.match(rb"\s*<soft_link>(.*?)</soft_link>", head, re.S)
        return m.group(1).strip().decode("utf-8", errors="replace") if m else logical

    def web_graphics_url(self, url: str) -> None:
        self.graphics["web_graphics_url"] = url

    def remote_desktop_addr(self, addr: str) -> None:
        self.graphics["remote_desktop_addr"] = addr

    def finish(self, status: int, message: str | None = None, is_notice: bool = False) -> NoReturn:
        if message:
            log.info("standalone: finish(%d): %s", status, message)
        raise SystemExit(status)

    def temporary_exit(self, delay: float, reason: str, is_notice: bool = False) -> NoReturn:
        log.info("standalone: temporary exit (the client would restart in %.0f s): %s", delay, reason)
        raise SystemExit(0)


def load_api(
    *, force_standalone: bool = False, library: str | None = None, slot_dir: Path | None = None
) -> BoincApiBase:
    """The real library when it loads and the working directory is a BOINC slot (has
    ``init_data.xml``); else :class:`StandaloneApi`, with one logged message saying why."""
    slot = Path(slot_dir) if slot_dir is not None else Path.cwd()
    if force_standalone:
        log.info("BOINC API: standalone (requested)")
        return StandaloneApi(slot_dir=slot)
    if not (slot / INIT_DATA_FILE).exists():
        log.info("BOINC API: standalone: no %s in %s (not started by a BOINC client)", INIT_DATA_FILE, slot)
        return StandaloneApi(slot_dir=slot)
    name = library or default_library()
    try:
        api = BoincApi(name, slot_dir=slot)
    except OSError as exc:
        log.error(
            "BOINC API: the library %s cannot be loaded (%s): install libboinc-app7 "
            "(apt-get install libboinc-app7); running standalone, the BOINC client in %s will "
            "not hear from this task",
            name,
            exc,
            slot,
        )
        return StandaloneApi(slot_dir=slot)
    log.info("BOINC API: %s (slot %s)", name, slot)
    return api
