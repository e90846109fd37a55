"""vboxwrapper's guest files, seen as a guest status: a guest that only writes vboxwrapper's files
works unchanged under every backend.

vboxwrapper (BOINC samples/vboxwrapper/vboxwrapper.cpp) talks to its guest through plain files in the
shared directory, named in ``vbox_job.xml``:

=============================  ==========================================================================
``fraction_done_filename``     progress: the last number in the file (each line's leading number, as
                               ``sscanf("%lf")``), clamped to [0, 1]
``completion_trigger_file``    the job is done: line 1 exit code (``atoi``), line 2 is_notice
                               (``atoi != 0``), the rest the message
``temporary_exit_trigger_file``  restart later: line 1 delay in seconds, line 2 is_notice, the rest the
                               message; the file is deleted when taken
``heartbeat_filename``         liveness: the guest touches it at least every
                               ``minimum_heartbeat_interval`` seconds
``trickle_trigger_file``       a trickle-up: variety = the file name, text = the content; deleted when
                               taken
``intermediate_upload_file``   an upload request, once, when the file appears
``job_duration``               fraction done = running time / job_duration (it wins over the fraction
                               file, as in vboxwrapper); past it the job finishes with status 0
=============================  ==========================================================================

``VboxCompat`` reads those files (only through ``Share.read`` / ``Share.lstat``, small bounds; the names
come from the job file, never from the guest) and turns them into a *synthetic* protocol ``Status``
that the decision core consumes like an SDK guest's: events (``Finish``, ``TemporaryExit``,
``TrickleUp``, ``UploadRequest``) get strictly increasing ids from ``first_id``; ``hb`` increments each
time the heartbeat file changes, so the core's silence clock (which only runs while the task runs)
replaces vboxwrapper's mtime comparison and its false alarms after a suspend or a clock jump
(BOINC PR #5864). It only sees the share, so it works the same for the local, QEMU and VirtualBox
backends. See docs/vboxwrapper_compat.md.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from boinc_guest import protocol as P

from .jobfile.vbox import VboxJob
from .osutil import atomic_write
from .share import GuestFileRefused, RefusalLog, Share, safe_name

log = logging.getLogger(__name__)

TRIGGER_MAX = 64 * 1024  # completion / temporary-exit trigger files
FRACTION_MAX = 256 * 1024  # the fraction file (vboxwrapper reads its tail; a larger file is refused)
HEARTBEAT_CONTENT_MAX = 4096  # the heartbeat's content is compared when it is at most this big
TRICKLE_MAX = P.MAX_TEXT  # a trickle trigger's text
MAX_PENDING = P.MAX_EVENTS
NO_FRACTION_YET = 0.001  # vboxwrapper reports this while the fraction file is missing
STATE_FILE = "host_bridge_vboxcompat.json"  # in the slot (never in the share): running time per task

_NUMBER = re.compile(
    rb"[ \t\n\v\f\r]*([+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan))", re.I
)
_INT = re.compile(rb"[ \t\n\v\f\r]*([+-]?\d+)")
_INT32 = (-(2**31), 2**31 - 1)


# ---------------------------------------------------------------- file formats


def c_atoi(line: bytes) -> int:
    """C's ``atoi``: leading blanks, a sign, digits; anything else gives 0. Clamped to int32."""
    m = _INT.match(line)
    if not m:
        return 0
    return min(max(int(m.group(1)), _INT32[0]), _INT32[1])


def leading_number(line: bytes) -> float | None:
    """The number at the start of ``line`` as ``sscanf("%lf")`` reads it, or None (NaN is None)."""
    m = _NUMBER.match(line)
    if not m:
        return None
    try:
        v = float(m.group(1))
    except ValueError:
        return None
    return None if math.isnan(v) else v


def parse_fraction(data: bytes) -> float | None:
    """The last line of ``data`` that starts with a number, clamped to [0, 1]; None if none does."""
    for line in reversed(data.splitlines()):
        v = leading_number(line)
        if v is not None:
            return min(max(v, 0.0), 1.0)
    return None


def _message(lines: list[bytes]) -> str:
    text = b"\n".join(lines).replace(b"\0", b"").decode("utf-8", "replace").strip()
    return P.truncate_utf8(P.clean_text(text), P.MAX_MESSAGE)


def parse_trigger(data: bytes) -> tuple[int, bool, str]:
    """A completion or temporary-exit trigger file: (first line as atoi, second line atoi != 0,
    the rest as the message), as vboxwrapper's read_completion_file_info reads it."""
    lines = data.split(b"\n")
    number = c_atoi(lines[0]) if lines else 0
    notice = len(lines) > 1 and c_atoi(lines[1]) != 0
    return number, notice, _message(lines[2:])


# ---------------------------------------------------------------- running time across runs


def load_running_time(slot: Path, task_index: int) -> float:
    """The task's running time saved by an earlier run of the bridge (0 if none / another task)."""
    try:
        fd = os.open(slot / STATE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0.0
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        d = json.loads(data)
        if int(d["task"]) != task_index:
            return 0.0
        t = float(d["running_time"])
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring %s: not a saved running time", slot / STATE_FILE)
        return 0.0
    return t if math.isfinite(t) and t >= 0 else 0.0


def save_running_time(slot: Path, task_index: int, running_time: float) -> None:
    """Save the task's running time (atomically; errors are logged, not raised)."""
    try:
        atomic_write(
            slot / STATE_FILE, json.dumps({"task": task_index, "running_time": running_time}).encode()
        )
    except OSError as e:
        log.warning("cannot save the running time for job_duration in %s: %s", slot / STATE_FILE, e)


# ---------------------------------------------------------------- the adapter


@dataclass(frozen=True)
class _Sig:
    """What identifies one version of a guest file: inode, size, modification time."""

    ino: int
    size: int
    mtime_ns: int


def _sig(st: os.stat_result) -> _Sig:
    return _Sig(st.st_ino, st.st_size, st.st_mtime_ns)


class VboxCompat:
    """vboxwrapper's files in one task's share, as a synthetic guest ``Status``.

    ``poll(now, running)`` is called by the runtime on every tick (``now``: a monotonic clock;
    ``running``: the task runs and is not suspended). The trigger files are looked at on every call;
    the heartbeat, fraction, trickle and upload files every ``scan_interval`` seconds (or at once with
    ``force=True``, which the runtime uses when the task has just ended). ``ack(n)`` drops the events
    the bridge has processed (id <= n).
    """

    def __init__(
        self,
        job: VboxJob,
        share: Share,
        *,
        first_id: int = 1,
        running_time: float = 0.0,
        refusals: RefusalLog | None = None,
        scan_interval: float = 0.5,
        max_gap: float = 5.0,
    ) -> None:
        self.job = job
        self.share = share
        self.refusals = refusals or RefusalLog(log)
        self.scan_interval = scan_interval
        self.max_gap = max_gap
        self._next_id = max(1, int(first_id))
        self._pending: list[P.Event] = []
        self._seq = 0
        self._hb = 0
        self._running = max(0.0, float(running_time)) if math.isfinite(running_time) else 0.0
        self._last_now: float | None = None
        self._last_scan = -math.inf
        self._hb_sig: tuple[object, ...] | None = None
        self._fraction: float | None = None
        self._finished = False
        self._temp_exit_taken = False
        self._completion_empty_seen = False
        self._uploads_done: set[str] = set()
        self._seen: dict[str, _Sig] = {}  # trickle / upload files: signature at the previous scan
        self.fraction_file = self._name(job.fraction_done_filename, "fraction_done_filename")
        self.heartbeat_file = self._name(job.heartbeat_filename, "heartbeat_filename")
        self.completion_file = self._name(job.completion_trigger_file, "completion_trigger_file")
        self.temp_exit_file = self._name(job.temporary_exit_trigger_file, "temporary_exit_trigger_file")
        self.trickle_files = [
            n for n in (self._name(x, "trickle_trigger_file") for x in job.trickle_trigger_files) if n
        ]
        self.upload_files = [
            n for n in (self._name(x, "intermediate_upload_file") for x in job.intermediate_upload_files) if n
        ]
        self._status = self._make_status()

    def _name(self, name: str | None, tag: str) -> str | None:
        if not name:
            return None
        try:
            return safe_name(name)
        except GuestFileRefused as e:
            log.warning(
                "%s: <%s>%s</%s> is ignored: only a plain file name in the shared folder is supported "
                "(%s); use a name without '/'",
                self.job.path,
                tag,
                name,
                tag,
                e.reason,
            )
            return None

    # -- facts for the runtime

    @property
    def heartbeat_timeout(self) -> float:
        """Running seconds without a heartbeat-file change after which the guest is hung (0: never)."""
        if self.heartbeat_file and self.job.minimum_heartbeat_interval > 0:
            return float(self.job.minimum_heartbeat_interval)
        return 0.0

    @property
    def running_time(self) -> float:
        """Seconds the task has run (not suspended), earlier runs included: job_duration's clock."""
        return self._running

    @property
    def pending(self) -> tuple[P.Event, ...]:
        return tuple(self._pending)

    def console(
        self, *, host_port: int | None = None, rd_port: int | None = None, direct: bool = False
    ) -> tuple[str | None, str | None]:
        """(web_graphics_url, remote_desktop_addr) to report to the client, as vboxwrapper does.

        ``host_port``: the host port the backend really forwards to ``pf_guest_port`` (a VirtualBox
        backend picks one when the job gives none); ``rd_port``: the backend's remote-desktop port;
        ``direct``: the guest shares the host's network (the local backend), so ``pf_guest_port`` is
        itself a host port. The runtime skips the URL when the slot has a ``graphics_app``, as
        vboxwrapper does.
        """
        job = self.job
        port = host_port or job.pf_host_port or (job.pf_guest_port if direct else 0)
        url = f"http://localhost:{port}" if port and (job.pf_guest_port or job.pf_host_port) else None
        addr = f"localhost:{rd_port}" if job.enable_remotedesktop and rd_port else None
        return url, addr

    def clear_triggers(self) -> None:
        """Before a fresh start of the task: remove trigger files a previous attempt left in the share."""
        names = [n for n in (self.completion_file, self.temp_exit_file, *self.trickle_files) if n]
        try:
            self.share.clear(names)
        except (OSError, GuestFileRefused) as e:
            log.warning("cannot remove old trigger files from the shared folder: %s", e)

    # -- the status

    def ack(self, n: int) -> None:
        """The bridge processed every event with id <= n: drop them from later statuses."""
        if any(e.id <= n for e in self._pending):
            self._pending = [e for e in self._pending if e.id > n]
            self._status = self._make_status()

    def poll(self, now: float, running: bool, *, force: bool = False) -> P.Status:
        """Look at the files and return the synthetic status (a new ``seq`` when events changed)."""
        if self._last_now is not None and running:
            gap = now - self._last_now
            if gap > 0:
                self._running += min(gap, self.max_gap)  # a host sleep or clock jump is not run time
        self._last_now = now
        changed = False
        final = force or not running
        changed |= self._check_temporary_exit()
        changed |= self._check_completion(final)
        if force or now - self._last_scan >= self.scan_interval:
            self._last_scan = now
            self._check_heartbeat()
            changed |= self._check_trickles(final)
            changed |= self._check_uploads(final)
            if self.fraction_file and self.job.job_duration <= 0:
                self._read_fraction()
        if (
            self.job.job_duration > 0
            and self._running >= self.job.job_duration
            and not self._finished
            and self._add(P.Finish(id=0, status=0, message="", is_notice=False))
        ):
            log.info("job_duration (%g s) reached: the task is done", self.job.job_duration)
            self._finished = True
            changed = True
        if changed:
            self._seq += 1
        self._status = self._make_status()
        return self._status

    @property
    def status(self) -> P.Status:
        return self._status

    def _fraction_done(self) -> float:
        if self.job.job_duration > 0:
            return min(max(self._running / self.job.job_duration, 0.0), 1.0)
        if self.fraction_file:
            return self._fraction if self._fraction is not None else NO_FRACTION_YET
        return 0.0

    def _make_status(self) -> P.Status:
        return P.Status(
            seq=self._seq,
            hb=self._hb,
            fraction_done=self._fraction_done(),
            elapsed_time=self._running,
            events=tuple(self._pending),
        )

    def _add(self, ev: P.Event) -> bool:
        """Queue ``ev`` with the next id; False (nothing queued) when MAX_PENDING are unacknowledged."""
        if len(self._pending) >= MAX_PENDING:
            return False
        ev = P.replace(ev, id=self._next_id)
        self._next_id += 1
        self._pending.append(ev)
        return True

    # -- reading files

    def _read(self, name: str, bound: int) -> bytes | None:
        try:
            return self.share.read(name, bound)
        except GuestFileRefused as e:
            self.refusals.report(e)
            return None
        except OSError as e:
            log.debug("cannot read %s from the share: %s", name, e)
            return None

    def _lstat(self, name: str) -> os.stat_result | None:
        try:
            return self.share.lstat(name)
        except OSError:
            return None

    def _regular(self, name: str, st: os.stat_result) -> bool:
        """A plain file with one name; anything else is refused (logged once per name and reason)."""
        if stat.S_ISLNK(st.st_mode):
            self.refusals.report(GuestFileRefused(name, "symlink"))
            return False
        if not stat.S_ISREG(st.st_mode):
            self.refusals.report(GuestFileRefused(name, "not a regular file"))
            return False
        if st.st_nlink != 1:
            self.refusals.report(GuestFileRefused(name, "hard link", f"{st.st_nlink} links"))
            return False
        return True

    def _check_completion(self, final: bool) -> bool:
        if not self.completion_file or self._finished:
            return False
        data = self._read(self.completion_file, TRIGGER_MAX)
        if data is None:
            return False
        if not data.strip() and not final and not self._completion_empty_seen:
            self._completion_empty_seen = True  # maybe being written: look again at the next poll
            return False
        status, notice, message = parse_trigger(data)
        if not self._add(P.Finish(id=0, status=status, message=message, is_notice=notice)):
            return False
        self._finished = True
        log.info(
            "completion trigger file %r: exit status %d%s",
            self.completion_file,
            status,
            f", message: {message}" if message else "",
        )
        return True

    def _check_temporary_exit(self) -> bool:
        if not self.temp_exit_file or self._temp_exit_taken:
            return False
        data = self._read(self.temp_exit_file, TRIGGER_MAX)
        if data is None:
            return False
        delay, notice, message = parse_trigger(data)
        if not self._add(P.TemporaryExit(id=0, delay=float(max(delay, 0)), reason=message, is_notice=notice)):
            return False
        self._temp_exit_taken = True
        self._delete(self.temp_exit_file)
        log.info(
            "temporary-exit trigger file %r: restart in %d s%s",
            self.temp_exit_file,
            max(delay, 0),
            f", message: {message}" if message else "",
        )
        return True

    def _delete(self, name: str) -> None:
        try:
            self.share.clear([name])
        except (OSError, GuestFileRefused) as e:
            log.warning("cannot delete %r from the shared folder: %s", name, e)

    def _check_heartbeat(self) -> None:
        if not self.heartbeat_file:
            self._hb += 1  # no liveness signal is configured: alive as long as it runs
            return
        st = self._lstat(self.heartbeat_file)
        sig: tuple[object, ...] | None = None
        if st is not None and self._regular(self.heartbeat_file, st):
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            if st.st_size <= HEARTBEAT_CONTENT_MAX:
                sig += (self._read(self.heartbeat_file, HEARTBEAT_CONTENT_MAX),)
        if sig is not None and sig != self._hb_sig:
            self._hb += 1
        self._hb_sig = sig

    def _stable(self, name: str, st: os.stat_result, final: bool) -> bool:
        """True when the file did not change since the previous scan (or the task has stopped), so
        that a file the guest is still writing is not taken half-written."""
        sig = _sig(st)
        prev = self._seen.get(name)
        self._seen[name] = sig
        return final or prev == sig

    def _check_trickles(self, final: bool) -> bool:
        changed = False
        for name in self.trickle_files:
            if len(self._pending) >= MAX_PENDING:
                break
            st = self._lstat(name)
            if st is None:
                self._seen.pop(name, None)
                continue
            ok = self._regular(name, st)
            if ok and st.st_size > TRICKLE_MAX:
                self.refusals.report(
                    GuestFileRefused(name, "too large", f"{st.st_size} bytes, at most {TRICKLE_MAX}")
                )
                ok = False
            if not ok:
                self._delete(name)  # vboxwrapper deletes a trigger it cannot read, too
                self._seen.pop(name, None)
                continue
            if not self._stable(name, st, final):
                continue
            data = self._read(name, TRICKLE_MAX)
            if data is None:
                continue
            text = P.truncate_utf8(data.decode("utf-8", "replace"), P.MAX_TEXT)
            self._add(P.TrickleUp(id=0, variety=name, text=text))
            self._delete(name)
            self._seen.pop(name, None)
            log.info("trickle trigger file %r: trickle-up (%d bytes)", name, len(data))
            changed = True
        return changed

    def _check_uploads(self, final: bool) -> bool:
        changed = False
        for name in self.upload_files:
            if name in self._uploads_done or len(self._pending) >= MAX_PENDING:
                continue
            st = self._lstat(name)
            if st is None or not self._regular(name, st) or not self._stable(name, st, final):
                continue
            self._add(P.UploadRequest(id=0, name=name))
            self._uploads_done.add(name)
            log.info("intermediate upload file %r: upload requested", name)
            changed = True
        return changed

    def _read_fraction(self) -> None:
        assert self.fraction_file is not None
        data = self._read(self.fraction_file, FRACTION_MAX)
        if data:
            v = parse_fraction(data)
            if v is not None:
                self._fraction = v


__all__ = [
    "STATE_FILE",
    "VboxCompat",
    "c_atoi",
    "leading_number",
    "load_running_time",
    "parse_fraction",
    "parse_trigger",
    "save_running_time",
]
