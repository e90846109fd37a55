"""The VirtualBox backend: each task in its own VirtualBox VM, as BOINC's vboxwrapper runs it
(docs/virtualbox.md).

A facade: the names other modules use, loaded on first use (PEP 562), so that importing the settings
does not load the backend or psutil. The modules:

- ``backend``: ``VirtualBoxBackend`` (the verbs), the VMs' owner marks, the sweep of orphan VMs;
- ``settings``: ``VBoxSettings`` (vbox_job.xml's names and the task's slot);
- ``vboxmanage``: the drivers (VBoxManage's command line, or pyvbox) and the error classification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from host_bridge.backends import lazy_exports

if TYPE_CHECKING:
    from host_bridge.backends.virtualbox.backend import (
        VirtualBoxBackend,
        collect_orphans,
        find_vm_process,
        slot_is_stale,
        vm_name_for,
    )
    from host_bridge.backends.virtualbox.settings import VBoxSettings
    from host_bridge.backends.virtualbox.vboxmanage import VBoxError

_EXPORTS = {
    "VirtualBoxBackend": "backend",
    "collect_orphans": "backend",
    "find_vm_process": "backend",
    "slot_is_stale": "backend",
    "vm_name_for": "backend",
    "VBoxSettings": "settings",
    "VBoxError": "vboxmanage",
}

__all__ = [
    "VBoxError",
    "VBoxSettings",
    "VirtualBoxBackend",
    "collect_orphans",
    "find_vm_process",
    "slot_is_stale",
    "vm_name_for",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
