"""The QEMU backend: each task in its own VM (docs/qemu.md).

A facade: the names other modules use, loaded on first use (PEP 562), so that importing the settings
(``host_bridge.backends.qemu.settings``, what the runtime builds) does not load the backend, psutil or
the QMP thread. The modules:

- ``backend``: ``QemuBackend`` (the verbs) and the agent's files in the share;
- ``settings``: ``QemuSettings`` and ``share_is_virtfs_mapped``;
- ``accel``: KVM probing, choosing and remembering the accelerator; the QEMU executable;
- ``kernel``: what kind of kernel a file is, the least memory that boots it;
- ``sweep``: the owner-tag marker, our VMs still running, stale state folders;
- ``console``: excerpts of a VM's console for the volunteer;
- ``qmp``: the QMP thread;
- ``image``: the test image and the guest Python root built from Debian packages (tests, demos).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from host_bridge.backends import lazy_exports

if TYPE_CHECKING:
    from host_bridge.backends.qemu.accel import choose_accel, qemu_binary
    from host_bridge.backends.qemu.backend import AGENT_FILES, EXIT_FILE, STARTED_FILE, TASK_FILE, QemuBackend
    from host_bridge.backends.qemu.kernel import kernel_memory_bytes, minimum_memory_mb
    from host_bridge.backends.qemu.settings import QemuSettings, share_is_virtfs_mapped
    from host_bridge.backends.qemu.sweep import name_arg, safe_tag, sweep_state_dirs

_EXPORTS = {
    "QemuBackend": "backend",
    "AGENT_FILES": "backend",
    "EXIT_FILE": "backend",
    "STARTED_FILE": "backend",
    "TASK_FILE": "backend",
    "QemuSettings": "settings",
    "share_is_virtfs_mapped": "settings",
    "choose_accel": "accel",
    "qemu_binary": "accel",
    "kernel_memory_bytes": "kernel",
    "minimum_memory_mb": "kernel",
    "name_arg": "sweep",
    "safe_tag": "sweep",
    "sweep_state_dirs": "sweep",
}

__all__ = [
    "AGENT_FILES",
    "EXIT_FILE",
    "STARTED_FILE",
    "TASK_FILE",
    "QemuBackend",
    "QemuSettings",
    "choose_accel",
    "kernel_memory_bytes",
    "minimum_memory_mb",
    "name_arg",
    "qemu_binary",
    "safe_tag",
    "share_is_virtfs_mapped",
    "sweep_state_dirs",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
