"""One VM's resolved configuration (``QemuBackend`` makes it from the task's spec and settings; the save
code reads it too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class VMConfig:
    """Everything needed to start one VM of a task (from the task's spec and its settings, resolved)."""

    qemu: str
    tag: str
    state_dir: Path
    kernel: Path | None
    initrd: Path | None
    disk: Path | None
    cmdline: str
    accel_req: str
    memory_mb: int
    cpus: int
    network: bool
    security: str
    boot_timeout: float
    grace: float
    pyroot: Path | None = None  # read-only root the app runs in (tag "pyroot"), e.g. the Python root
