"""Backends made by a test, with the shares opened for them (the runtime's part: a backend is given its
task's ``Share`` and never closes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Generic, Protocol, TypeVar

from host_bridge.share import Share


class _Cleanable(Protocol):
    def cleanup(self) -> None: ...


B = TypeVar("B", bound=_Cleanable)


class Made(list[B], Generic[B]):
    """A test's backends (cleaned up by ``close``) and the shares it opened (closed after them)."""

    def __init__(self) -> None:
        super().__init__()
        self.shares: list[Share] = []

    def open_share(self, path: Path, *, virtfs_mapped: bool = False) -> Share:
        s = Share(path, virtfs_mapped=virtfs_mapped)
        self.shares.append(s)
        return s

    def close(self) -> None:
        try:
            for b in self:
                b.cleanup()
        finally:
            for s in self.shares:
                s.close()
