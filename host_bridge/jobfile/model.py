"""The job file's model: ``JobSpec`` and its ``TaskDesc`` tasks, as written (macros not expanded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TaskKind = Literal["task", "unzip", "vmmanage", "daemon"]


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CmdArg:
    """One command-line word as written in the job file (macros not yet expanded).

    ``logical`` is set for a word that names a slot file to resolve: ``./NAME`` (VMwrapper's rule:
    every word starting with "./") or the whole word ``boinc_resolve(NAME)`` (BOINC wrapper)."""

    text: str
    logical: str | None = None


@dataclass(frozen=True)
class TaskDesc:
    """One ``<task>`` (or unzip / VMmanage / daemon task) of a job file, as written (macros not
    expanded)."""

    kind: TaskKind
    line: int  # line of the task's start tag, for messages
    application: str  # program: logical name, ./path in the slot, or $PROJECT_DIR/...
    command_line: str = ""  # raw, macros not expanded
    args: tuple[CmdArg, ...] = ()  # command_line split the way BOINC's wrapper splits it
    stdin_filename: str | None = None
    stdout_filename: str | None = None
    stderr_filename: str | None = None
    checkpoint_filename: str | None = None
    fraction_done_filename: str | None = None
    weight: float = 1.0
    setenv: tuple[tuple[str, str], ...] = ()  # NAME=VALUE pairs, values not macro-expanded
    exec_dir: str | None = None
    daemon: bool = False
    multi_process: bool = False
    append_cmdline_args: bool = False
    forward_slashes: bool = False
    time_limit: float = 0.0  # seconds of elapsed time; 0 = none
    priority: int | None = None  # BOINC 1 (lowest) .. 5 (highest); None = BOINC's default (lowest)
    # VMwrapper dialect
    virtualmachine: str | None = None
    image: str | None = None
    app_path_vm: str | None = None  # <app_pathVM>
    copy_app_to_vm: bool = False
    copy_stdin_to_vm: bool = False
    copy_files_to_vm: tuple[str, ...] = ()
    copy_files_from_vm: tuple[str, ...] = ()
    # QEMU backend
    vm_kernel: str | None = None
    vm_initrd: str | None = None
    vm_disk_image: str | None = None  # qcow2
    vm_memory_mb: int | None = None
    vm_network: bool = False
    vm_cmdline: str | None = None  # kernel command line (append)
    vm_python: bool = False  # run the app with the guest Python root (Debian python3 + the guest SDK)
    # QEMU backend settings (QemuSettings fields, built by runtime.plan); None = the backend's default
    vm_accel: str | None = None  # "auto" | "kvm" | "tcg"
    vm_boot_timeout: float | None = None  # s (> 0) until the guest agent reports the app started
    vm_poweroff_grace: float | None = None  # s (>= 0) between SIGTERM and SIGKILL of the app on poweroff
    vm_share_security: str | None = None  # "mapped-xattr" | "mapped-file" | "none"
    vm_release_after: float | None = None  # s (>= 0) suspended before the VM is saved and ended; 0 = never
    # container backend (docs/containers.md): an image name, or a logical file name of an image archive,
    # a root file system tarball (name with "rootfs") or a Dockerfile
    container_image: str | None = None
    container_workdir: str | None = None  # where the share is mounted (default /app)
    container_args: str | None = None  # extra `podman create` arguments
    # field -> line of its tag, for messages about a value (describe's missing-file warnings)
    tag_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)

    def line_of(self, fname: str) -> int:
        """The line of the tag that set field ``fname`` (the task's line if unknown)."""
        return next((ln for f, ln in self.tag_lines if f == fname), self.line)


@dataclass(frozen=True)
class ZipOutput:
    """One ``<zip_output>``: the archive and the patterns of the files it takes."""

    zipfilename: str
    patterns: tuple[str, ...]  # regular expressions on file names created by the tasks
    line: int = 0


@dataclass(frozen=True)
class JobSpec:
    """A parsed job file: its tasks in run order and its job-wide settings."""

    path: str
    tasks: tuple[TaskDesc, ...]  # the main tasks, in order
    unzip_tasks: tuple[TaskDesc, ...] = ()
    vmmanage_tasks: tuple[TaskDesc, ...] = ()
    daemons: tuple[TaskDesc, ...] = ()
    unzip_input: tuple[str, ...] = ()
    zip_output: tuple[ZipOutput, ...] = ()
    warnings: tuple[str, ...] = ()
    enable_graphics_support: bool = False
    dialect: Literal["wrapper", "vmwrapper", "docker"] = "wrapper"
    # the folder of the file parse_job_file read (None for parse_job_text): describe looks there for
    # the files named by vm_kernel / vm_initrd / vm_disk_image
    job_dir: str | None = None
    # docker_wrapper's job.toml (host_bridge.jobfile.docker.DockerJob) when the job came from one
    docker_job: object | None = None

    @property
    def total_weight(self) -> float:
        return sum(t.weight for t in self.tasks)

    @property
    def run_order(self) -> tuple[TaskDesc, ...]:
        """The tasks run one after the other: unzip tasks, then the main tasks."""
        return self.unzip_tasks + self.tasks
