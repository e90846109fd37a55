"""The bridge's configuration: one frozen object built by the CLI from BOINC's arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

WatchMode = Literal["auto", "events", "poll"]


@dataclass(frozen=True)
class Config:
    """The bridge's settings for one run, fixed at start (from the command line and defaults)."""

    slot_dir: Path
    job_file: str = "job.xml"  # logical name (resolved through BOINC's soft links) or a path
    nthreads: int | None = None  # --nthreads from BOINC; None: from init data / 1
    trickle_period: float = 0.0  # --trickle X: send a "cpu_time" trickle-up every X seconds (BOINC wrapper)
    extra_args: tuple[str, ...] = ()  # unknown arguments, appended where a task says append_cmdline_args
    watch_mode: WatchMode = "auto"
    standalone: bool = False  # force standalone (no BOINC client)
    # The main loop's longest sleep (s): the latency of suspend / resume / exit checks while the guest is
    # silent (BOINC's wrapper polls every 1 s). Every guest update wakes the loop at once and the checks
    # run then too; an SDK guest writes at least once a second (its heartbeat), so with a tick a little
    # longer than that the loop wakes once a second, not twice (each wake-up costs CPU: docs/benchmarks.md).
    tick: float = 1.25
    # The watcher's lstat check for lost inotify events (s): events that stop arriving switch it to
    # polling after two checks. Nothing waits on it meanwhile: each tick re-reads the status file
    # (report_interval), so a guest whose writes give no events is still read every 1.25 s.
    watch_check_interval: float = 5.0
    report_interval: float = 1.0  # status refresh to the client without guest news (s)
    backend_poll_interval: float = 0.5  # how often the backend is polled (s)
    heartbeat_timeout: float = 0.0  # guest silent this long while running -> hung (0: off)
    finish_grace: float = 10.0
    stop_grace: float = 5.0  # SIGTERM -> SIGKILL grace when stopping a task (s)
    progress: bool = False  # draw a live progress line on stdout (demo)
