"""The bridge's configuration: one frozen object built by the CLI from BOINC's arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .policy import DEFAULT_POLICY, Policy

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
    policy: Policy = field(default=DEFAULT_POLICY)  # every delay and limit (host_bridge.policy)
