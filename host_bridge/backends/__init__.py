"""Backends: where a task runs (a local process tree, a QEMU VM, a VirtualBox VM).

``make_backend`` is the only place that names the backend classes: it picks one from the type of the
task's typed settings (``LocalSettings``, ``QemuSettings``, ``VBoxSettings``). The QEMU and VirtualBox
packages are imported only for their own tasks: a local task never loads them (the bridge's start-up
time and memory are measured, docs/benchmarks.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from host_bridge.backends.base import Backend
from host_bridge.backends.local_settings import LocalSettings

if TYPE_CHECKING:
    from host_bridge.backends.container.settings import ContainerSettings
    from host_bridge.backends.qemu.settings import QemuSettings
    from host_bridge.backends.virtualbox.settings import VBoxSettings

    BackendSettings: TypeAlias = LocalSettings | QemuSettings | VBoxSettings | ContainerSettings
else:
    BackendSettings = Any

__all__ = ["BackendSettings", "LocalSettings", "lazy_exports", "make_backend"]


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
    from host_bridge.backends.container.settings import ContainerSettings

    if isinstance(settings, ContainerSettings):
        from host_bridge.backends.container.backend import ContainerBackend

        return ContainerBackend(settings, **context)
    raise TypeError(f"no backend takes settings of type {type(settings).__name__}: this is a bug")


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` (PEP 562) for a backend package's facade: the name ``n`` is loaded from the
    module ``package.exports[n]`` on first use, so importing one small module of the package (its
    settings) does not load the rest."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
