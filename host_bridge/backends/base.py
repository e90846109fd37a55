"""The verb set every backend (local process, QEMU, VirtualBox) implements.

The runtime drives a backend only through these verbs (files move in and out of the share through the
runtime's ``host_bridge.share.Share``, never through a backend); the decision core (host_bridge.core) never
touches one. A backend owns one task's execution environment: a process tree (local) or a VM.
Errors are raised as BackendError with a message a volunteer or admin can act on; ``temporary``
says whether BOINC should retry later (temporary exit) or fail the task.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from host_bridge.share import Share


class VMState(enum.Enum):
    """Where the task's environment is. Backends report it from ``poll()``."""

    ABSENT = "absent"  # nothing created yet, or cleaned up
    CREATED = "created"  # created, not started
    RUNNING = "running"
    PAUSED = "paused"  # stopped in memory (SIGSTOP / QMP stop / VBox pause)
    SAVED = "saved"  # state saved to disk, nothing running (VM-level checkpoint)
    EXITED = "exited"  # the task's main program ended (exit_code set)
    FAILED = "failed"  # the environment died unexpectedly (error set)


@dataclass(frozen=True)
class BackendStatus:
    """What a backend's ``poll()`` says about the task's environment."""

    state: VMState
    exit_code: int | None = None  # when EXITED: the program's exit status (negative: killed by signal)
    cpu_time: float = 0.0  # CPU seconds used by the task's environment in this run (process tree / VM)
    error: str = ""  # when FAILED: what happened, for the volunteer
    # False while the environment runs but the task's app has not started yet (a VM still booting):
    # a failure then is the environment's (image, settings), not the app's. Backends that cannot tell
    # leave it True.
    app_started: bool = True


@dataclass(frozen=True)
class ConsoleEndpoints:
    """Where a task's console can be reached (vboxwrapper's web console / remote desktop)."""

    host_port: int | None = None  # the host port forwarded to the guest's web console port
    remote_desktop_port: int | None = None
    direct: bool = False  # the task shares the host's network: its guest port is a host port


class BackendError(Exception):
    """A backend operation failed. ``temporary``: retrying later may work (BOINC temporary exit).
    ``notice``: the volunteer must act on this host (install or set something up); the message is then
    shown as a notice in the BOINC Manager, not only in the slot's stderr.txt."""

    def __init__(self, message: str, *, temporary: bool = False, notice: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.notice = notice


@dataclass(frozen=True)
class TaskSpec:
    """What a backend needs to run one task (built from the job file by the runtime).

    ``argv`` is the program and its arguments as seen inside the environment; ``share`` is the host
    directory shared with the guest (for the local backend, also the working directory).
    """

    name: str
    argv: tuple[str, ...]
    share: Path
    stdin: str | None = None  # file names in the share; the local backend also takes host paths
    stdout: str | None = None
    stderr: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    nthreads: int = 1
    memory_mb: int = 0  # VM backends: RAM; 0 = backend default
    network: bool = False
    image: str | None = None  # VM backends: disk image / kernel, host path
    priority: int | None = None  # nice value for local processes (None: inherit)
    owner_tag: str = ""  # slot + result: lets a restarted bridge find its own VM


@runtime_checkable
class Backend(Protocol):
    """One task's execution environment. Every verb is idempotent where that makes sense
    (pause when paused, poweroff when absent, cleanup twice)."""

    name: str

    def create(self, task: TaskSpec, share: Share) -> None:
        """Prepare the task's environment. ``share`` is the task's shared folder (``task.share``),
        opened by the runtime, which also closes it after ``cleanup``: backends use it, never close it."""
        ...

    def start(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def checkpoint(self) -> bool:
        """Save the environment's state so that ``restore`` can resume it after the bridge exits.
        Returns False where the backend has no VM-level checkpoint (the app's own checkpoint is then
        what survives)."""
        ...

    def restore(self) -> bool:
        """Resume from a state saved by ``checkpoint`` (or reattach to our own still-running VM);
        False if there is nothing to restore."""
        ...

    def poweroff(self) -> None: ...
    def poll(self) -> BackendStatus: ...
    def console(self) -> ConsoleEndpoints:
        """Where the running task can be watched (ports forwarded to it, or a direct host process)."""
        ...

    def exit_fd(self) -> int | None:
        """A descriptor that becomes readable when the task's program (or its VM process) ends, e.g. a
        pidfd; the task loop wakes on it, so an exit is noticed at once, not at the next tick. None:
        the backend has none (its end is seen through the share or at the next poll). The backend
        owns and closes it (in ``cleanup``)."""
        ...

    def cleanup(self) -> None:
        """Remove everything this task created (processes, VM, overlays), leaving the share's outputs."""
        ...

    def discard(self) -> None:
        """The task is given up (the client aborted it): what ``cleanup`` removes, and also what was kept
        for a later run or task (a saved VM or container checkpoint, an image made on this host for
        the app version when no other task uses it)."""
        ...
