"""The container backend: BOINC tasks (docker_wrapper's apps, job.xml container tasks) in podman or
docker containers. ``settings`` is light (the planner imports it); ``backend`` and ``podman`` are loaded
only for a container task."""

from __future__ import annotations

from .settings import ContainerSettings

__all__ = ["ContainerSettings"]
