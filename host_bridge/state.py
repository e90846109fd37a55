"""The bridge's own checkpoint: which task it is on, the CPU and elapsed time so far, the guest events
already processed. Written atomically (temp file, fsync, rename, directory fsync) so that a kill -9 or
a full disk at any moment leaves either the previous or the new state, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .osutil import atomic_write

log = logging.getLogger(__name__)

STATE_FILE = "host_bridge_state.json"
FRACTION_FILE = "host_bridge_fraction"  # the highest fraction done reported (see save_fraction_floor)
STATE_VERSION = 1
MAX_STATE_BYTES = 4 * 1024 * 1024


class StateError(Exception):
    pass


@dataclass
class BridgeState:
    """The bridge's checkpoint for one job (saved with ``save_state``)."""

    job_digest: str = ""  # the job file it was made for; a different job starts over
    task_index: int = 0  # index into the job's runnable tasks (unzip tasks first)
    cpu_done: float = 0.0  # CPU seconds of the tasks already finished
    task_cpu_checkpoint: float = 0.0  # CPU of the current task up to its last checkpoint, over all runs
    # operations the guests of the finished tasks reported (boinc_ops_cumulative): the job's count is
    # these plus the current task's, so a later task (or one without the SDK) does not reset it
    fpops_done: float = 0.0
    intops_done: float = 0.0
    elapsed_done: float = 0.0  # wall seconds of the job, up to the last save
    last_event_id: int = 0  # largest guest event id processed
    max_fraction: float = 0.0  # overall fraction done reported so far
    task_started: bool = False  # the current task was started at least once (so: resume, don't reset)
    outputs_copied: bool = False  # the current task's outputs were copied back
    trickle_down: list[list] = field(default_factory=list)  # [[id, text], ...] not yet acked
    trickle_down_next: int = 1
    uploads: dict[str, int] = field(default_factory=dict)  # name -> status (1: pending)
    trickle_up: list[list] = field(default_factory=list)  # [[variety, text], ...] not yet handed to BOINC
    runs: int = 0  # how many times a bridge started on this job
    # the current task's finish event once processed ([status, message, is_notice]): a restart then
    # completes the task instead of running it again
    task_finish: list | None = None
    # consecutive failures of the current task's environment before its app started (a VM that does
    # not boot): after MAX_ENV_FAILURES the task fails for good instead of being retried forever
    env_failures: int = 0

    def to_json(self) -> bytes:
        d = asdict(self)
        d["version"] = STATE_VERSION
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BridgeState:
        try:
            d = json.loads(data)
        except ValueError as e:
            raise StateError(f"not JSON: {e}") from e
        if not isinstance(d, dict) or d.get("version") != STATE_VERSION:
            raise StateError("unknown state version")
        d.pop("version")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError as e:
            raise StateError(str(e)) from e


def save_state(folder: Path, state: BridgeState) -> None:
    """Atomically replace ``folder/STATE_FILE``. Raises OSError (e.g. ENOSPC); the old file then
    stays as it was."""
    atomic_write(folder / STATE_FILE, state.to_json())


FLOOR_RECORD = 64  # bytes: "<job digest> <fraction>" padded with spaces, newline-terminated


class FractionFloor:
    """The highest fraction done reported to the client, recorded BEFORE it is reported, so that a
    bridge killed at any moment (kill -9) never reports less after its restart.

    One fixed-size record rewritten in place (``pwrite`` at offset 0 of a file kept open): a write of
    64 bytes into the page cache is never seen half done by a process killed around it, and costs one
    system call (a temp file + rename, as before, cost five and ~0.6 ms of the bridge's CPU per report
    here). No fsync: it survives the process being killed; a power cut may tear or lose it, and then the
    record fails its check at the next start (see ``load_fraction_floor``) and only this floor is lost,
    never the job's state (whose ``max_fraction`` is then the floor)."""

    def __init__(self, folder: Path, job_digest: str) -> None:
        self._prefix = f"{job_digest} "
        self._fd: int | None = None
        self._folder = folder

    def save(self, fraction: float) -> None:
        """Raises OSError (the caller logs it; the next save retries)."""
        record = f"{self._prefix}{fraction!r}".ljust(FLOOR_RECORD - 1).encode() + b"\n"
        if len(record) != FLOOR_RECORD:
            raise OSError(f"fraction floor record too long ({len(record)} bytes)")
        first = self._fd is None
        if self._fd is None:
            self._fd = os.open(
                self._folder / FRACTION_FILE,
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
            )
        if os.pwrite(self._fd, record, 0) != FLOOR_RECORD:
            raise OSError("short write of the fraction floor record")
        # written first, cut after: the previous record stays whole until the new one replaces it; only
        # a longer file (an older bridge's format) needs the cut
        if first and os.fstat(self._fd).st_size != FLOOR_RECORD:
            os.ftruncate(self._fd, FLOOR_RECORD)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def load_fraction_floor(folder: Path, job_digest: str) -> float:
    """The floor saved by ``FractionFloor`` for this job, 0.0 if none (or unreadable)."""
    try:
        fd = os.open(folder / FRACTION_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0.0
    try:
        data = os.read(fd, 256)
        # a record torn by a power cut: not newline-terminated where it should be, or not parseable
        if len(data) != FLOOR_RECORD or not data.endswith(b"\n"):
            return 0.0
        digest, _, value = data.decode("ascii", "replace").strip().partition(" ")
        f = float(value)
    except (OSError, ValueError):
        return 0.0
    finally:
        os.close(fd)
    if digest != job_digest or not 0.0 <= f <= 1.0:
        return 0.0
    return f


def load_state(folder: Path, job_digest: str) -> BridgeState:
    """The saved state for this job, or a fresh one (no file, another job, or an unreadable file:
    logged)."""
    path = folder / STATE_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return BridgeState(job_digest=job_digest)
    except OSError as e:
        log.warning("cannot open %s (%s): starting the job from the beginning", path, e)
        return BridgeState(job_digest=job_digest)
    try:
        data = os.read(fd, MAX_STATE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        if len(data) > MAX_STATE_BYTES:
            raise StateError("too large")
        st = BridgeState.from_json(data)
    except StateError as e:
        log.warning("ignoring %s (%s): starting the job from the beginning", path, e)
        return BridgeState(job_digest=job_digest)
    if st.job_digest != job_digest:
        log.warning("%s belongs to another job file: starting the job from the beginning", path)
        return BridgeState(job_digest=job_digest)
    st.max_fraction = max(st.max_fraction, load_fraction_floor(folder, job_digest))
    return st
