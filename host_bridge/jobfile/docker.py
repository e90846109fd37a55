"""BOINC docker_wrapper's ``job.toml``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .model import JobSpec, TaskDesc
from .safexml import MAX_JOB_FILE_BYTES, JobFileError, read_bounded

DOCKER_FRACTION_FILE = "fraction_done"  # docker_wrapper's progress file, in the slot

# --------------------------------------------------------------------------------------------
# docker_wrapper job.toml: run as one container task (host_bridge.backends.container)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerJob:
    """BOINC docker_wrapper's job.toml (samples/docker_wrapper/docker_wrapper.cpp)."""

    path: str
    workdir: str = "/app"
    project_dir_mount: str | None = None
    image_name: str | None = None
    build_args: str = ""
    create_args: str = ""
    verbose: int = 0
    use_gpu: bool = False
    web_graphics_guest_port: int = 0
    mounts: tuple[str, ...] = ()  # "mount" array: -v arguments
    portmaps: tuple[str, ...] = ()  # "portmap" array: -p arguments
    warnings: tuple[str, ...] = ()


_DOCKER_KEYS: dict[str, tuple[str, type]] = {
    "workdir": ("workdir", str),
    "project_dir_mount": ("project_dir_mount", str),
    "image_name": ("image_name", str),
    "build_args": ("build_args", str),
    "create_args": ("create_args", str),
    "verbose": ("verbose", int),
    "use_gpu": ("use_gpu", bool),
    "web_graphics_guest_port": ("web_graphics_guest_port", int),
    "mount": ("mounts", list),
    "portmap": ("portmaps", list),
}


def parse_docker_text(text: str, path_for_messages: str = "job.toml") -> DockerJob:
    path = path_for_messages
    if len(text) > MAX_JOB_FILE_BYTES:
        raise JobFileError(path, None, None, "the file is over the size limit")
    import difflib
    import tomllib  # only for the docker dialect

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise JobFileError(path, int(m.group(1)) if m else None, None, f"bad TOML: {e}") from None
    values: dict[str, object] = {}
    warnings: list[str] = []
    for key, value in data.items():
        if key not in _DOCKER_KEYS:
            close = difflib.get_close_matches(key, list(_DOCKER_KEYS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"{path}: {key}: unknown key, ignored{hint}")
            continue
        fname, typ = _DOCKER_KEYS[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if typ is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            value = tuple(value) if ok else value
        if not ok:
            want = {
                str: "a string",
                int: "a whole number",
                bool: "true or false",
                list: "an array of strings",
            }[typ]
            raise JobFileError(path, None, None, f"{key} = {value!r}: write {want}")
        values[fname] = value
    return DockerJob(path=path, warnings=tuple(warnings), **values)  # type: ignore[arg-type]


def parse_docker_job(path: Path) -> DockerJob:
    name = str(path)
    data = read_bounded(Path(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JobFileError(name, None, None, "not UTF-8 text (TOML must be UTF-8)") from None
    return parse_docker_text(text, name)


def docker_job_spec(job: DockerJob, *, job_dir: str | None = None) -> JobSpec:
    """docker_wrapper's job as the bridge runs it: one container task, in the slot (mounted at
    ``workdir``), running the image's own command; progress from the ``fraction_done`` file.
    ``path`` "(none)" marks a Dockerfile app version without a job.toml (docker_wrapper's defaults)."""
    task = TaskDesc(
        kind="task",
        line=0,
        application="",
        fraction_done_filename=DOCKER_FRACTION_FILE,
        container_image=job.image_name or "Dockerfile",
        container_workdir=job.workdir,
        container_args=job.create_args or None,
    )
    return JobSpec(
        path=job.path,
        tasks=(task,),
        warnings=job.warnings,
        dialect="docker",
        job_dir=job_dir,
        docker_job=job,
    )
