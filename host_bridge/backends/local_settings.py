"""The local backend's settings (``make_backend`` picks ``LocalBackend`` for them).

A module of its own so that choosing a backend never imports a backend it does not need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalSettings:
    """Settings of a task run as a local process tree. None today: the task's program, environment and
    standard streams are in its ``TaskSpec``; the class names the backend for ``make_backend``."""
