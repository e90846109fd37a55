"""The container backend's typed settings (``ContainerSettings``), from docker_wrapper's ``job.toml``
or from a job.xml task's container tags (docs/containers.md)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from host_bridge.jobfile.docker import DockerJob
    from host_bridge.jobfile.model import TaskDesc

__all__ = ["DOCKERFILE", "FRACTION_DONE_FILE", "ContainerSettings"]

DOCKERFILE = "Dockerfile"  # docker_wrapper's: the app version's Dockerfile (a <copy_file/>), in the slot
FRACTION_DONE_FILE = "fraction_done"  # docker_wrapper's progress file in the slot
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".oci", ".docker")


@dataclass(frozen=True)
class ContainerSettings:
    """How one task's container is made and run.

    The image comes from exactly one source, in this order: ``image_archive`` (an image archive made
    by ``podman save`` / ``docker save``, loaded; or, with ``archive_is_rootfs``, a root file system
    tarball, imported), ``dockerfile`` (built once per host with its folder as the context and reused
    while the folder's files are unchanged), else ``image`` (an image already on the host; pulled only
    with ``allow_pull``)."""

    image: str = ""  # an image name (already on the host), or the name given to a loaded / built one
    image_archive: Path | None = None
    archive_is_rootfs: bool = False
    dockerfile: Path | None = None
    build_args: tuple[str, ...] = ()
    workdir: str = "/app"  # where the task's share (the slot, or its shared/) is mounted
    project_dir_mount: str | None = None  # where the project folder is mounted (read-only), if asked
    project_dir: Path | None = None
    network: bool = False  # --network none unless the job asks for network
    memory_mb: int = 0  # --memory (0: no limit)
    create_args: tuple[str, ...] = ()  # extra `create` arguments from the job (e.g. -v /cvmfs:/cvmfs)
    mounts: tuple[str, ...] = ()  # -v arguments (job.toml's "mount")
    portmaps: tuple[str, ...] = ()  # -p arguments (job.toml's "portmap")
    web_graphics_guest_port: int = 0
    use_gpu: bool = False  # every NVIDIA GPU of the host (command.py: gpu_args)
    gpu_tag: str = ""  # where use_gpu was asked, for messages ("job.toml: use_gpu = true")
    engine: str = ""  # "podman" / "docker" / a path; "" = podman, else docker
    allow_pull: bool = False
    stop_grace: float = 10.0  # s between SIGTERM and SIGKILL when the task is stopped (quit)
    slot_dir: Path | None = None  # the task's slot (labels: orphan containers of finished slots)
    result_name: str = ""  # the result the slot runs (labels)

    @classmethod
    def from_docker_job(cls, job: DockerJob, slot: Path, *, project_dir: str = "") -> ContainerSettings:
        """docker_wrapper's job.toml: the app version's Dockerfile in the slot, or its image_name."""
        dockerfile = slot / DOCKERFILE
        return cls(
            image=job.image_name or "",
            dockerfile=dockerfile if not job.image_name or dockerfile.exists() else None,
            build_args=tuple(shlex.split(job.build_args)),
            workdir=job.workdir or "/app",
            project_dir_mount=job.project_dir_mount,
            project_dir=Path(project_dir) if project_dir else None,
            create_args=tuple(shlex.split(job.create_args)),
            mounts=job.mounts,
            portmaps=job.portmaps,
            web_graphics_guest_port=job.web_graphics_guest_port,
            use_gpu=job.use_gpu,
            gpu_tag=f"{Path(job.path).name}: use_gpu = true" if job.use_gpu else "",
            network=bool(job.portmaps) or job.web_graphics_guest_port > 0,
        )

    @classmethod
    def from_task(
        cls, desc: TaskDesc, image_source: Path | None, *, memory_mb: int = 0, network: bool = False
    ) -> ContainerSettings:
        """A job.xml task with <container_image>: ``image_source`` is the host file it names (an image
        archive, a root file system tarball, or a Dockerfile), None when it names an image."""
        image = (desc.container_image or "").strip()
        kw: dict[str, object] = {}
        if image_source is not None:
            name = image_source.name
            if name == DOCKERFILE or name.endswith(".Dockerfile") or image.endswith(DOCKERFILE):
                kw["dockerfile"] = image_source
            else:
                kw["image_archive"] = image_source
                kw["archive_is_rootfs"] = "rootfs" in image.lower()
            image = ""
        return cls(
            image=image,
            workdir=desc.container_workdir or "/app",
            create_args=tuple(shlex.split(desc.container_args or "")),
            memory_mb=memory_mb,
            network=network,
            **kw,  # type: ignore[arg-type]
        )


def container_settings(desc: TaskDesc, ctx: object) -> ContainerSettings:
    """The settings of a container task (``host_bridge.runtime.plan``'s PlanContext ``ctx``): from
    docker_wrapper's job.toml when the job came from one, else from the task's <container_image> (a
    logical file of the slot: an image archive, a root file system tarball or a Dockerfile; anything
    else: an image name), <vm_memory_mb> and <vm_network/>."""
    from host_bridge.slot import SlotNameError, resolve_logical

    slot: Path = ctx.slot  # type: ignore[attr-defined]
    where = {"slot_dir": slot.resolve(), "result_name": str(getattr(ctx, "result_name", "") or "")}
    docker_job = getattr(ctx, "docker_job", None)
    if docker_job is not None:
        project_dir: str = ctx.project_dir  # type: ignore[attr-defined]
        return replace(ContainerSettings.from_docker_job(docker_job, slot, project_dir=project_dir), **where)
    name = (desc.container_image or "").strip()
    source: Path | None = None
    if name and ":" not in name and "/" not in name.removeprefix("./"):
        try:
            found = resolve_logical(slot, name.removeprefix("./"))
        except SlotNameError:
            found = None
        if found is not None and found.is_file():
            source = found
    made = ContainerSettings.from_task(
        desc, source, memory_mb=int(desc.vm_memory_mb or 0), network=bool(desc.vm_network)
    )
    return replace(made, **where)
