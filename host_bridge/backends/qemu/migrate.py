"""Driving QEMU's migration for VM saves (to a compressed file) and restores (``-S -incoming exec:...``).

The functions take the backend's QMP call (``qmp(cmd, args=None, timeout=...)``) so that they stay free
of the backend's state; ``backend.py`` decides when to save and what to do with the result.
"""

from __future__ import annotations

import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host_bridge.backends.base import BackendError

Qmp = Callable[..., Any]

# The migration's bandwidth cap (QEMU's default, 128 MiB/s, would make a 256 MiB guest's save take
# seconds): a file on the local disk takes what it gets.
MAX_BANDWIDTH = 8 << 30
DOWNTIME_LIMIT_MS = 100  # the live save's target for the final stop-and-copy
MAX_MISSES = 5  # failed query-migrate polls in a row that end the wait


@dataclass(frozen=True)
class Codec:
    """A stream compressor (a command reading stdin, writing stdout) and the file suffix it is known by."""

    program: str
    suffix: str
    compress: str
    decompress: str
    package: str


# Preferred first. lz4 compresses a guest's RAM in about half the CPU time of zstd -1 (a 256 MiB guest
# under TCG: 150 vs 290 ms for its 67 MiB in use, 23 vs 17 MiB out: docs/qemu.md, "Figures"); 64 KiB
# blocks (-B4, as large as a pipe's buffer) let QEMU read while lz4 works on the next block. zstd writes
# the saves of hosts without lz4 and reads the older saves.
CODECS = (
    Codec("lz4", ".lz4", "-q -1 -B4 -c", "-q -d -c", "lz4"),
    Codec("zstd", ".zst", "-q -1 -T1 -c", "-q -d -c", "zstd"),
)


@dataclass
class MigrationResult:
    seconds: float  # from the migrate command to "completed"
    downtime_ms: float  # QEMU's measure of the guest's stop during the final copy
    total_bytes: int  # the guest's RAM size as QEMU counts it
    normal_bytes: int = 0  # bytes of non-zero pages sent (the guest's RAM in use, as the stream sees it)


def save_codec() -> Codec:
    """The first installed compressor of CODECS."""
    for c in CODECS:
        if shutil.which(c.program):
            return c
    raise BackendError(
        "neither lz4 nor zstd is installed: install the lz4 (or zstd) package (VM saves)",
        temporary=True,
        notice=True,
    )


def codec_of(stream: Path) -> Codec | None:
    """The compressor a stream was written with, by its suffix (None: not one of ours)."""
    return next((c for c in CODECS if stream.name.endswith(c.suffix)), None)


def _program(c: Codec) -> str:
    path = shutil.which(c.program)
    if path is None:
        raise BackendError(
            f"{c.program} is not installed: install the {c.package} package (VM saves)",
            temporary=True,
            notice=True,
        )
    return path


def save_uri(out: Path, codec: Codec) -> str:
    return f"exec:{shlex.quote(_program(codec))} {codec.compress} > {shlex.quote(str(out))}"


def load_uri(stream: Path) -> str:
    c = codec_of(stream)
    if c is None:
        raise BackendError(f"the VM save {stream} has no known compression suffix", temporary=True)
    return f"exec:{shlex.quote(_program(c))} {c.decompress} {shlex.quote(str(stream))}"


def blocked(qmp: Qmp) -> list[str]:
    """QEMU's reasons to refuse a migration now (``query-migrate``'s ``blocked-reasons``, QEMU >= 6.0;
    here: the guest still has the 9p share mounted). Empty when it would start."""
    return [str(r) for r in (qmp("query-migrate") or {}).get("blocked-reasons") or []]


def start_save(qmp: Qmp, out: Path, accept_within: float, *, stop: bool = False) -> float:
    """Set the migration's parameters and start it into ``out``. A 9p share the guest has not yet
    unmounted makes QEMU refuse it (a migration blocker): the VM runs on until the blocker is gone (the
    guest unmounts the share just after its answer), then, with ``stop`` (a quit), it is stopped and the
    migration starts; given up after ``accept_within`` s (the VM left running). Returns the monotonic
    time it started."""
    qmp("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH, "downtime-limit": DOWNTIME_LIMIT_MS})
    deadline = time.monotonic() + accept_within
    codec = codec_of(out)
    if codec is None:
        raise BackendError(f"the VM save {out} has no known compression suffix", temporary=True)
    uri = save_uri(out, codec)
    while True:
        reasons = blocked(qmp)
        if not reasons:
            if stop:
                qmp("stop")
            try:
                t0 = time.monotonic()
                qmp("migrate", {"uri": uri})
                return t0
            except BackendError as e:
                reasons = [str(e)]
                if stop:
                    qmp("cont")  # a stopped guest cannot finish its unmount
        if time.monotonic() > deadline:
            raise BackendError(f"QEMU refused to save the VM: {'; '.join(reasons)}", temporary=True)
        time.sleep(0.003)


def wait_done(
    qmp: Qmp, t0: float, timeout: float, *, out: Path | None = None, limit: int | None = None
) -> MigrationResult:
    """Poll ``query-migrate`` until the migration completed (or failed: BackendError). With ``out`` and
    ``limit``: a stream that grows past ``limit`` bytes is cancelled (a guest cannot make a save larger
    than the VM's configured size)."""
    deadline = time.monotonic() + timeout
    misses = 0
    while True:
        try:
            info = qmp("query-migrate") or {}
            misses = 0
        except BackendError:
            # One connection's hiccup is no failed save (seen under load: a garbled greeting); a QEMU
            # that died fails every poll.
            misses += 1
            if misses >= MAX_MISSES or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        status = info.get("status")
        if status == "completed":
            ram = info.get("ram") or {}
            return MigrationResult(
                time.monotonic() - t0,
                float(info.get("downtime", 0.0)),
                int(ram.get("total", 0)),
                int(ram.get("normal-bytes", 0)),
            )
        if status in ("failed", "cancelled"):
            raise BackendError(
                f"the VM's migration {status}: {info.get('error-desc', 'no reason given')}", temporary=True
            )
        if out is not None and limit is not None:
            try:
                size = out.stat().st_size
            except OSError:
                size = 0
            if size > limit:
                qmp("migrate_cancel")
                raise BackendError(
                    f"the VM save grew past {limit} bytes (the VM's memory plus the slot's disk bound allows "
                    "no more): cancelled",
                    temporary=True,
                )
        if time.monotonic() > deadline:
            qmp("migrate_cancel")
            raise BackendError(f"the VM's migration did not finish within {timeout:g} s", temporary=True)
        time.sleep(0.005)


def default_machine(qmp: Qmp) -> str:
    """The machine type QEMU resolves its default (``pc``) to, e.g. ``pc-i440fx-7.2``."""
    for m in qmp("query-machines") or []:
        if m.get("is-default"):
            return str(m.get("name"))
    return "unknown"
