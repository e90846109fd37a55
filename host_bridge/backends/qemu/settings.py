"""The QEMU backend's typed settings (the job file's ``vm_*`` tags, resolved by the runtime).

Small and free of heavy imports: the runtime builds these (and asks ``share_is_virtfs_mapped``) before
the backend itself is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Accel = Literal["auto", "kvm", "tcg"]
SecurityModel = Literal["mapped-xattr", "mapped-file", "none"]

ACCELS: tuple[str, ...] = ("auto", "kvm", "tcg")
SECURITY_MODELS: tuple[str, ...] = ("mapped-xattr", "mapped-file", "none")
DEFAULT_SECURITY_MODEL: SecurityModel = "mapped-xattr"
DEFAULT_BOOT_TIMEOUT = 120.0  # s from start until the agent reports the app started (TCG: ~3-5 s)
DEFAULT_POWEROFF_GRACE = 3.0  # s the agent gives the app between SIGTERM and SIGKILL


@dataclass(frozen=True)
class QemuSettings:
    """How to boot one task's VM (docs/qemu.md, docs/job_files.md). File paths are host paths; None
    leaves the choice to the backend. The image: ``kernel`` (+ ``initrd``), or ``disk_image``, or else
    the task's ``TaskSpec.image`` (a kernel or a disk image by its contents; ``builtin:test``: the test
    image built on the host)."""

    kernel: Path | None = None  # vm_kernel: an ELF vmlinux (PVH) or a bzImage
    initrd: Path | None = None  # vm_initrd
    disk_image: Path | None = None  # vm_disk_image: booted through a per-task qcow2 overlay
    cmdline: str = ""  # vm_cmdline: appended to the kernel's command line
    accel: Accel = "auto"  # vm_accel (the environment's BOINC_VM_ACCEL overrides it)
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT  # vm_boot_timeout
    poweroff_grace: float = DEFAULT_POWEROFF_GRACE  # vm_poweroff_grace
    share_security: SecurityModel = DEFAULT_SECURITY_MODEL  # vm_share_security (9p security model)
    state_dir: Path | None = None  # the VM's private folder (QMP socket, overlay); None: under /run/user
    pyroot: Path | None = None  # a host root file system tree the app runs in (read-only 9p)
    builtin_python: bool = False  # <vm_python/>: the cached Debian + python3 + guest SDK tree as pyroot
    # vm_release_after: s suspended before the paused VM is saved and QEMU ended; 0: never; None: the
    # bridge policy's suspend_release_after
    release_after: float | None = None
    qemu: str | None = None  # vm_qemu: the QEMU executable (None: $BOINC_QEMU, else qemu-system-x86_64)


def share_is_virtfs_mapped(security: str | None) -> bool:
    """Whether a QEMU task's share holds 9p mapped metadata: its 9p security model (``vm_share_security``;
    None or "" is the default, mapped-xattr) is mapped-xattr or mapped-file. The guest's symlinks, FIFOs
    and device nodes are then regular host files, so a ``Share`` of that folder must be made with
    ``virtfs_mapped=True``."""
    return (security or DEFAULT_SECURITY_MODEL) in ("mapped-xattr", "mapped-file")
