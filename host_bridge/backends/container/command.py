"""What a container task's main process is: its command (with redirects of its standard input and
output), and the engine's GPU arguments with the error a volunteer gets when the host cannot give the GPU.

**stdin, stdout, stderr.** BOINC's wrapper opens the task's ``<stdin_filename>`` as the app's standard
input (the file's bytes, then end of file) and appends its stdout / stderr to ``<stdout_filename>`` /
``<stderr_filename>``. A container is started detached and outlives the bridge (a restart reattaches to
it, a quit may CRIU-checkpoint it), so the bytes cannot pass through the bridge with an attached pipe: a
restarted bridge could not go on with it, and a checkpoint would hold a pipe to a process that is gone.
The engine's log of the container (``podman logs``) is no place for a named output either: it is capped
(LOG_MAX), and read at the end it gave a task whose result is its stdout only the last 1 MiB (fixed in
session 8). Instead the app is run under the container's init (``--init``) by a POSIX shell of the image
that redirects them inside the container, where the share is mounted at the settings' ``workdir``:
``/bin/sh -c 'exec "$@" <WORKDIR/IN >>WORKDIR/OUT 2>>WORKDIR/ERR' sh APP ARGS...`` (each redirect only
when the job file names that file). The shell replaces itself with the app (``exec``), so the app is the
init's child as without a redirect, and its files are open regular files in the bind mount: nothing of
the bridge's, so a bridge restart changes nothing, and CRIU dumps and restores them with their offsets
like any open file (tests/bridge/test_container_lifecycle.py). The image needs ``/bin/sh`` for it (an
image without one gets an error saying so). The app's command is the image's ENTRYPOINT followed by the
task's ``<application>`` + ``<command_line>`` (or the image's CMD), as the engine would run it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from host_bridge.backends.base import BackendError

__all__ = [
    "SHELL",
    "gpu_args",
    "gpu_unavailable",
    "image_command",
    "redirect_command",
]

SHELL = "/bin/sh"  # the image's POSIX shell that applies the redirects
# The engine's log of a container (its output that has no file) is capped at this size (podman's
# --log-opt max-size): a chatty app cannot fill the host's container storage, nor the bridge's memory
# when it reads the log at the end
LOG_MAX = "8m"

# What the engines say when the host cannot give the GPU a task asks for
_GPU_NEEDLES = (
    "unresolvable cdi devices",  # podman >= 4.1: no CDI spec names nvidia.com/gpu
    "cdi device injection failed",  # podman 5 / docker with CDI
    "could not select device driver",  # docker: no nvidia runtime / container toolkit
    "nvidia-container-cli",  # the nvidia hook itself failed (no driver, no device)
    "unknown flag: --gpus",  # an engine without --gpus
)


def gpu_args(engine_kind: str) -> list[str]:
    """The ``create`` arguments that give the container every NVIDIA GPU of the host: podman's CDI
    device name (podman 4.1+, no --gpus before podman 5), docker's ``--gpus all`` (what BOINC's
    docker_wrapper passes to either engine)."""
    return ["--device", "nvidia.com/gpu=all"] if engine_kind == "podman" else ["--gpus", "all"]


def gpu_unavailable(engine_text: str, *, engine_kind: str, tag: str, task_name: str) -> BackendError | None:
    """A temporary BackendError that says what the host's administrator must do when ``engine_text``
    (an engine error) is the host lacking the GPU set-up; None for any other error. Temporary: the
    host, not the job, is at fault, so BOINC starts the task again later (and the volunteer can fix
    the host in between)."""
    low = engine_text.lower()
    if not any(n in low for n in _GPU_NEEDLES):
        return None
    if engine_kind == "podman":
        fix = (
            "install the NVIDIA driver and nvidia-container-toolkit, then generate the CDI spec "
            "podman reads (as root: nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml; check with "
            "nvidia-ctk cdi list, which must name nvidia.com/gpu=all)"
        )
    else:
        fix = (
            "install the NVIDIA driver and nvidia-container-toolkit, then configure docker's nvidia "
            "runtime (as root: nvidia-ctk runtime configure --runtime=docker, then restart docker)"
        )
    return BackendError(
        f"task {task_name}: the job asks for the GPU ({tag or 'use_gpu'}), but the container engine "
        f"cannot give it to the container on this host: {' '.join(engine_text.split())[-600:]} -- "
        f"the host's administrator must {fix}; BOINC starts the task again later",
        temporary=True,
        notice=True,  # the volunteer's to fix: shown in the BOINC Manager's notices
    )


def image_command(config: dict[str, Any] | None, argv: Sequence[str]) -> list[str]:
    """The command the engine would run in the image: its ENTRYPOINT, then ``argv`` (the task's
    program and arguments) or, without one, the image's CMD. ``config``: the image's ``Config``."""
    config = config or {}
    entry = [str(a) for a in config.get("Entrypoint") or []]
    cmd = [str(a) for a in config.get("Cmd") or []]
    return [*entry, *(list(argv) if argv else cmd)]


def redirect_command(
    workdir: str,
    command: Sequence[str],
    *,
    stdin: str | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
) -> list[str]:
    """The arguments after the image (with ``--entrypoint SHELL``) that run ``command`` with its stdin
    read from the share's file ``stdin`` and its stdout / stderr appended to ``stdout`` / ``stderr``
    (BOINC's wrapper appends them too), as the container sees the share under ``workdir``."""
    base = workdir.rstrip("/")
    redirects = [
        f"{op}{shlex.quote(f'{base}/{name}')}"
        for op, name in (("<", stdin), (">>", stdout), ("2>>", stderr))
        if name
    ]
    return ["-c", " ".join(['exec "$@"', *redirects]), "sh", *command]
