"""Backends: where a task runs (a local process tree, a QEMU VM, a VirtualBox VM).

``make_backend`` is the only place that names the backend classes: it picks one from the type of the
task's typed settings (``LocalSettings``, ``QemuSettings``, ``VBoxSettings``). The QEMU and VirtualBox
packages are imported only for their own tasks: a local task never loads them (the bridge's start-up
time and memory are measured, docs/benchmarks.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from host_bridge.backends.base import Backend
from host_bridge.backends.local_settings import LocalSettings

if TYPE_CHECKING:
    from host_bridge.backends.qemu.settings import QemuSettings
    from host_bridge.backends.virtualbox.settings import VBoxSettings

    BackendSettings: TypeAlias = LocalSettings | QemuSettings | VBoxSettings
else:
    BackendSettings = Any

__all__ = ["BackendSettings", "LocalSettings", "make_backend"]


def make_backend(settings: BackendSettings, **context: Any) -> Backend:
    """The backend for one task, chosen by the type of ``settings`` and built with them; ``context``:
    the chosen backend's other constructor arguments (tests and tools: a VirtualBox driver, a local
    task's grace period...). Raises TypeError for settings of no known backend (a bug)."""
    if isinstance(settings, LocalSettings):
        from host_bridge.backends.local import LocalBackend

        return LocalBackend(settings, **context)
    from host_bridge.backends.qemu.settings import QemuSettings

    if isinstance(settings, QemuSettings):
        from host_bridge.backends.qemu.backend import QemuBackend

        return QemuBackend(settings, **context)
    from host_bridge.backends.virtualbox.settings import VBoxSettings

    if isinstance(settings, VBoxSettings):
        from host_bridge.backends.virtualbox.backend import VirtualBoxBackend

        return VirtualBoxBackend(settings, **context)
    raise TypeError(f"no backend takes settings of type {type(settings).__name__}: this is a bug")
