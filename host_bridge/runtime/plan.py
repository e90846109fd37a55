"""The planner: where and how each task of a job runs, decided once, for the run and ``check`` alike.

``plan_job(job, ctx)`` turns the parsed job file, the slot, the client's init data and the bridge's
arguments into one ``TaskPlan`` per task: the backend (named by its typed settings; the factory in
``host_bridge.backends`` makes it), the share, the command line and environment as the task sees them,
the files copied in and out, and the task's wrapper-style files. ``host-bridge check`` prints these same
plans (``host_bridge.jobfile.describe``), so the check and the run cannot disagree. Nothing here starts
anything; the only I/O is reading the slot's soft-link files and looking programs up.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from boinc_guest import protocol as P

from .. import _frozen
from ..backends import BackendSettings, LocalSettings
from ..backends.base import TaskSpec
from ..jobfile import JobSpec, TaskDesc
from ..slot import SlotNameError, expand_macros, resolve_logical

if TYPE_CHECKING:
    from ..boinc.api import AppInitData
    from ..jobfile.docker import DockerJob
    from ..jobfile.vbox import VboxJob

log = logging.getLogger(__name__)

SHARE_DIR = "shared"  # the share inside the slot, for VM tasks and VMwrapper-style local tasks
VM_KERNEL_FILE = "vm_kernel"  # logical names of a VM image shipped with the app version, used by the
VM_INITRD_FILE = "vm_initrd"  # seed's <virtualmachine> tasks that name no image of their own
VM_STATE_DIR = "vm_state"  # a VM's private files (QMP socket, overlay) in the slot, outside the share
_MAX_SOCKET_DIR = 80  # a Unix socket path has room for ~107 bytes
_VM_FILES = ("vm_kernel", "vm_initrd", "vm_disk_image")  # the job's image files (host paths)
# QemuSettings field <- the job file's tag
_QEMU_TAGS = {
    "cmdline": "vm_cmdline",
    "accel": "vm_accel",
    "boot_timeout": "vm_boot_timeout",
    "poweroff_grace": "vm_poweroff_grace",
    "share_security": "vm_share_security",
    "release_after": "vm_release_after",
}


@dataclass(frozen=True)
class PlanContext:
    """What a plan depends on besides the job file."""

    slot: Path
    project_dir: str = ""  # init data's project_dir (empty: the slot)
    ncpus: float = 0.0  # init data's ncpus (0: unknown)
    nthreads: int | None = None  # --nthreads (wins over ncpus)
    result_name: str = ""  # init data's result name (the owner tag that finds a task's VM again)
    extra_args: tuple[str, ...] = ()  # the bridge's unknown arguments (<append_cmdline_args/>)
    vbox_job: VboxJob | None = None  # vboxwrapper's vbox_job.xml beside the job file
    docker_job: DockerJob | None = None  # docker_wrapper's job.toml (the job came from one)

    @classmethod
    def of(
        cls,
        slot: Path,
        init_data: AppInitData | None = None,
        *,
        nthreads: int | None = None,
        extra_args: tuple[str, ...] = (),
        vbox_job: VboxJob | None = None,
        docker_job: DockerJob | None = None,
    ) -> PlanContext:
        aid = init_data
        return cls(
            slot=slot,
            project_dir=aid.project_dir if aid else "",
            ncpus=aid.ncpus if aid else 0.0,
            nthreads=nthreads,
            result_name=aid.result_name if aid else "",
            extra_args=tuple(extra_args),
            vbox_job=vbox_job,
            docker_job=docker_job,
        )

    @property
    def threads(self) -> int:
        if self.nthreads:
            return max(1, int(self.nthreads))
        n = self.ncpus
        return max(1, int(n)) if n and math.isfinite(n) else 1

    def expand(self, text: str) -> str:
        return expand_macros(
            text, project_dir=self.project_dir or str(self.slot), nthreads=self.threads, pwd=str(self.slot)
        )


@dataclass(frozen=True)
class InputFile:
    """A slot file copied into the share before the task's first start."""

    tag: str  # the job-file tag that names it, for messages
    logical: str  # as written (without "./")
    src: Path  # the host file (through BOINC's soft link)
    name: str  # its name in the share
    executable: bool  # made executable in the share (the program, or an executable input)


@dataclass(frozen=True)
class OutputFile:
    """A file of the share copied back to the slot when the task has ended well."""

    logical: str
    name: str  # its name in the share
    dest: Path  # the host file it becomes (the result's file, through BOINC's soft link)


@dataclass(frozen=True)
class TaskPlan:
    """How one task runs. ``kind`` names the backend for people ("local", "qemu", "vbox"); the factory
    ``host_bridge.backends.make_backend`` chooses it from ``settings`` (their type)."""

    index: int
    desc: TaskDesc
    kind: str
    share_dir: Path
    in_slot: bool  # the share is the slot itself (BOINC-wrapper-style tasks): nothing to copy
    virtfs_mapped: bool  # the share is a QEMU 9p export with mapped metadata (host_bridge.share)
    spec: TaskSpec
    settings: BackendSettings  # the backend's typed settings: make_backend picks the backend by their type
    inputs: tuple[InputFile, ...] = ()
    outputs: tuple[OutputFile, ...] = ()
    weight: float = 1.0
    fraction_file: str | None = None  # wrapper's fraction_done_filename (in the share)
    checkpoint_file: str | None = None  # wrapper's checkpoint_filename (in the share)
    why: str = ""  # why this backend, for check and the log

    @property
    def number(self) -> int:
        return self.index + 1


@dataclass(frozen=True)
class JobPlan:
    tasks: tuple[TaskPlan, ...]
    total_weight: float
    warnings: tuple[str, ...] = ()


def plan_job(job: JobSpec, ctx: PlanContext) -> JobPlan:
    """The plans of the job's tasks, in run order (unzip tasks first), and the warnings of the plan."""
    tasks = tuple(plan_task(i, desc, ctx, job_path=job.path) for i, desc in enumerate(job.run_order))
    total = sum(t.weight for t in tasks) or 1.0
    warnings: list[str] = []
    if ctx.extra_args:
        handed = any(t.desc.append_cmdline_args for t in tasks) or (
            ctx.vbox_job is not None and ctx.vbox_job.copy_cmdline_to_shared
        )
        if not handed:
            warnings.append(
                f"the bridge received the argument(s) {' '.join(ctx.extra_args)!r} (e.g. the workunit's "
                f"command line), but no task of {job.path} has <append_cmdline_args/>: they are not handed "
                "on to any task; add <append_cmdline_args/> to the <task> that needs them"
            )
    for t in tasks:
        if t.why.startswith("local, although"):
            warnings.append(f"{job.path}:{t.desc.line}: task {t.number}: {t.why}")
    return JobPlan(tasks, total, tuple(warnings))


def backend_kind(desc: TaskDesc, slot: Path) -> tuple[str, str]:
    """Where a task runs, and why: "qemu" for the QEMU tags (<vm_kernel>, <vm_disk_image>,
    <virtualmachine>qemu) or a <virtualmachine> with an image (its <image>, or the app version's
    vm_kernel file); "vbox" for <virtualmachine>VirtualBox / vbox; otherwise "local" (the seed's
    VMwrapper without an image: its files still go through the shared folder, as in a VM)."""
    vm = (desc.virtualmachine or "").strip()
    if desc.container_image:
        return "container", f"<container_image>{desc.container_image} (docs/containers.md)"
    if desc.vm_kernel or desc.vm_disk_image:
        return "qemu", "the task names a QEMU kernel or disk image (vm_kernel / vm_disk_image)"
    if vm.lower() == "qemu":
        return "qemu", "<virtualmachine>qemu"
    if vm.lower() in ("virtualbox", "vbox"):
        return "vbox", f"<virtualmachine>{vm}"
    if vm:
        if desc.image:
            return "qemu", f"<virtualmachine>{vm} with <image>{desc.image}"
        if _is_file(slot, VM_KERNEL_FILE):
            return "qemu", f"<virtualmachine>{vm} and the app version's {VM_KERNEL_FILE} file"
        return "local", (
            f"local, although it names virtualmachine {vm!r}: no VM image (<image>, <vm_kernel>, or a "
            f"{VM_KERNEL_FILE} file in the app version); it runs as a local process, its files going "
            "through the shared folder as they would in a VM"
        )
    return "local", "no VM named"


def plan_task(index: int, desc: TaskDesc, ctx: PlanContext, *, job_path: str = "job.xml") -> TaskPlan:
    kind, why = backend_kind(desc, ctx.slot)
    share_dir, in_slot = _share_dir(desc, ctx)
    inputs = () if in_slot else _inputs(desc, ctx, share_dir)
    outputs = () if in_slot else _outputs(desc, ctx)
    in_share = {f.logical for f in inputs}
    argv = (
        _local_argv(desc, ctx, share_dir, in_slot, in_share)
        if kind == "local"
        else _guest_argv(desc, ctx, kind)
    )
    mapped = kind == "qemu" and _share_is_virtfs_mapped(desc.vm_share_security)
    spec = _spec(index, desc, ctx, kind, share_dir, in_slot, argv)
    weight = 0.0 if desc.kind != "task" else float(desc.weight if desc.weight is not None else 1.0)
    return TaskPlan(
        index=index,
        desc=desc,
        kind=kind,
        share_dir=share_dir,
        in_slot=in_slot,
        virtfs_mapped=mapped,
        spec=spec,
        settings=_settings(desc, ctx, kind),
        inputs=inputs,
        outputs=outputs,
        weight=weight,
        fraction_file=desc.fraction_done_filename or None,
        checkpoint_file=desc.checkpoint_filename or None,
        why=why,
    )


def plan_daemon(index: int, desc: TaskDesc, ctx: PlanContext) -> TaskPlan:
    """A wrapper daemon: a local process in the slot, started before the tasks."""
    plan = plan_task(1000 + index, desc, replace(ctx, vbox_job=None))
    return replace(plan, spec=replace(plan.spec, name=f"daemon{index}"))


# ------------------------------------------------------------------------------------------- pieces


def _is_file(slot: Path, logical: str) -> bool:
    try:
        return resolve_logical(slot, logical).is_file()
    except SlotNameError:
        return False


def _share_is_virtfs_mapped(security: str | None) -> bool:
    from ..backends.qemu.settings import share_is_virtfs_mapped

    return share_is_virtfs_mapped(security)


def _strip(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _share_dir(desc: TaskDesc, ctx: PlanContext) -> tuple[Path, bool]:
    slot = ctx.slot
    vj = ctx.vbox_job
    if vj is not None:  # vboxwrapper: shared/ with <enable_shared_directory/>, or the slot
        if vj.enable_shared_directory:
            return slot / SHARE_DIR, False
        if vj.share_slot_dir:
            return slot, True
    vmish = bool(
        (desc.virtualmachine or "").strip()
        or desc.copy_files_to_vm
        or desc.copy_files_from_vm
        or desc.copy_app_to_vm
        or desc.vm_kernel
        or desc.vm_disk_image
    )
    if vmish:
        return slot / SHARE_DIR, False
    if desc.exec_dir:
        path = (slot / ctx.expand(desc.exec_dir)).resolve()
        return path, path == slot
    return slot, True


def _inputs(desc: TaskDesc, ctx: PlanContext, share_dir: Path) -> tuple[InputFile, ...]:
    names = [("copy_file_to_VM", n, False) for n in desc.copy_files_to_vm]
    if desc.copy_app_to_vm and desc.application:
        names.insert(0, ("application (copy_app_to_VM)", ctx.expand(desc.application), True))
    out = []
    for tag, raw, is_app in names:
        name = _strip(raw)
        try:
            src = resolve_logical(ctx.slot, name)
        except SlotNameError:
            src = ctx.slot / name
        out.append(InputFile(tag, name, src, os.path.basename(name), is_app))
    return tuple(out)


def _outputs(desc: TaskDesc, ctx: PlanContext) -> tuple[OutputFile, ...]:
    out = []
    for raw in desc.copy_files_from_vm:
        name = _strip(raw)
        try:
            dest = resolve_logical(ctx.slot, name)
        except SlotNameError:
            dest = ctx.slot / name
        out.append(OutputFile(name, os.path.basename(name), dest))
    return tuple(out)


def _extra_args(desc: TaskDesc, ctx: PlanContext) -> list[str]:
    return list(ctx.extra_args) if desc.append_cmdline_args else []


def _local_argv(
    desc: TaskDesc, ctx: PlanContext, share_dir: Path, in_slot: bool, in_share: set[str]
) -> tuple[str, ...]:
    app = ctx.expand(desc.application.strip())
    if not in_slot and desc.copy_app_to_vm:
        in_share = in_share | {_strip(app)}
    args = [_resolve_arg(ctx, a.text, a.logical, in_share) for a in desc.args]
    args.extend(_extra_args(desc, ctx))
    # A local task's Python program runs with the bridge's own interpreter, which has the guest SDK
    # (boinc_guest) and msgpack: a bare "python3" / "python", or a *.py program. An absolute path
    # (e.g. /usr/bin/python3, for the host's own packages) is run as named.
    # (In the single-file bundle that interpreter is the bundle itself, in python mode: _frozen.)
    python = _frozen.python_command()[0]
    if app in ("python", "python3"):
        return (*python, *args)
    prog = _resolve_program(ctx, app, in_share, share_dir, in_slot)
    if prog.endswith(".py"):
        return (*python, prog, *args)
    return (prog, *args)


def _guest_argv(desc: TaskDesc, ctx: PlanContext, kind: str) -> tuple[str, ...]:
    """The command line as the guest sees it: programs and ./names copied into the share are run
    from there (the share is the task's working directory in the VM); anything else must be in the
    VM image. No host path is ever handed to a guest."""
    app = ctx.expand(desc.application.strip())
    if not app and kind == "container":
        return ()  # the image's own command (docker_wrapper's apps)
    name = _strip(app)
    in_share = {_strip(n) for n in desc.copy_files_to_vm}
    if desc.copy_app_to_vm:
        in_share.add(name)
    prog = f"./{os.path.basename(name)}" if name in in_share else app
    args = [
        f"./{a.logical}" if a.logical and a.logical in in_share else ctx.expand(a.text) for a in desc.args
    ]
    args.extend(_extra_args(desc, ctx))
    argv = (prog, *args)
    if kind == "qemu" and desc.vm_python and argv[0].endswith(".py"):
        # <vm_python/>: a .py program is started by the guest's python3, whatever its file mode
        argv = ("python3", *argv)
    return argv


def _resolve_arg(ctx: PlanContext, text: str, logical: str | None, in_share: set[str]) -> str:
    if not logical:
        return ctx.expand(text)
    if logical in in_share:
        return f"./{logical}"
    try:
        phys = resolve_logical(ctx.slot, logical)
    except SlotNameError:
        return ctx.expand(text)
    return str(phys) if phys.exists() else ctx.expand(text)


def _resolve_program(ctx: PlanContext, app: str, in_share: set[str], share_dir: Path, in_slot: bool) -> str:
    name = _strip(app)
    if os.path.isabs(name):
        return name  # a program on the host, e.g. /usr/bin/python3 (the backend checks it exists)
    if name in in_share or (not in_slot and (share_dir / name).is_file()):
        return str(share_dir / os.path.basename(name))
    try:
        phys = resolve_logical(ctx.slot, name)
    except SlotNameError:
        return name  # not a logical name (e.g. "../x"): the backend says it is not found
    if phys.is_file():
        return str(phys)
    found = shutil.which(name)
    if found:
        return found
    return str(phys)


def _host_file(ctx: PlanContext, name: str) -> Path:
    """A VM image file named by the job file: an absolute host path as it is (images installed on
    the host), else a logical name of the slot (the app version's or the workunit's file)."""
    return Path(name) if os.path.isabs(name) else resolve_logical(ctx.slot, name)


def _stdio(ctx: PlanContext, name: str | None, kind: str, shared: bool) -> str | None:
    """A task's stdin / stdout / stderr file as the backend gets it. A local task of the BOINC wrapper
    kind (it runs in the slot, or its exec_dir) names logical files of the slot: resolved through BOINC's
    soft links to the host path, as BOINC's wrapper does (before it changes to exec_dir), so the output
    lands in the result's file, not in the slot's link file. A task with a shared folder (a VM, or the
    VMwrapper style) names a file in that folder, as the guest sees it."""
    if not name:
        return None
    if kind != "local" or shared:
        return name
    return str(resolve_logical(ctx.slot, name).absolute())


def owner_tag(ctx: PlanContext, index: int) -> str:
    """What marks a task's VM / processes as this slot's and this result's (a restarted bridge finds
    them by it; a sweep never touches another's)."""
    slot = ctx.slot.resolve()
    ident = ctx.result_name or str(slot)
    return f"hb-{digest(f'{slot}|{ident}'.encode())[:12]}-t{index}"


def digest(data: bytes) -> str:
    """A short non-cryptographic fingerprint (zlib's CRC-32 and Adler-32 plus the length): enough to
    tell one job file or slot from another, without loading OpenSSL (hashlib) into the bridge."""
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}{len(data):x}"


def _nice(priority: int | None) -> int | None:
    """BOINC's <priority> 1 (lowest) .. 5 (highest) as a nice value; None: inherit the client's."""
    if priority is None:
        return None
    return {1: 19, 2: 15, 3: 10, 4: 5, 5: 0}.get(int(priority), 19)


def _spec(
    index: int,
    desc: TaskDesc,
    ctx: PlanContext,
    kind: str,
    share_dir: Path,
    in_slot: bool,
    argv: tuple[str, ...],
) -> TaskSpec:
    env: list[tuple[str, str]] = [(k, ctx.expand(v)) for k, v in desc.setenv]
    # the guest SDK for a task's Python (a host python3 named in <application> too); the single-file
    # bundle carries the SDK's sources for it
    bundled_sdk = _frozen.bundled_file("guest_python/boinc_guest/__init__.py")
    guest_sdk = bundled_sdk.parent if bundled_sdk else Path(P.__file__).resolve().parent
    pythonpath = os.pathsep.join(p for p in (str(guest_sdk.parent), os.environ.get("PYTHONPATH", "")) if p)
    if kind != "container":  # host paths: meaningless in a container image
        env.append(("PYTHONPATH", pythonpath))
    env.append(("BOINC_NTHREADS", str(ctx.threads)))
    python, python_env = _frozen.python_command()
    if kind == "local" and argv[: len(python)] == python:
        env.extend(python_env)
    shared = share_dir == ctx.slot / SHARE_DIR
    image = desc.vm_disk_image or desc.image or None
    return TaskSpec(
        name=f"task{index}",
        argv=argv,
        share=share_dir,
        stdin=_stdio(ctx, desc.stdin_filename, kind, shared),
        stdout=_stdio(ctx, desc.stdout_filename, kind, shared),
        stderr=_stdio(ctx, desc.stderr_filename, kind, shared),
        env=tuple(env),
        nthreads=ctx.threads,
        memory_mb=int(desc.vm_memory_mb or 0),
        network=bool(desc.vm_network),
        image=str(_host_file(ctx, image)) if image else None,
        priority=_nice(desc.priority),
        owner_tag=owner_tag(ctx, index),
    )


def _settings(desc: TaskDesc, ctx: PlanContext, kind: str) -> BackendSettings:
    """The typed settings of the task's backend: a QEMU task's ``vm_*`` tags with its image files
    resolved to host paths, a VirtualBox task's vbox_job.xml and slot (init data's project folder and
    result name), else ``LocalSettings``."""
    if kind == "vbox":
        from ..backends.virtualbox.settings import VBoxSettings

        project = Path(ctx.project_dir) if ctx.project_dir else None
        result = ctx.result_name or None
        if ctx.vbox_job is not None:
            return VBoxSettings.from_vboxjob(
                ctx.vbox_job, slot_dir=ctx.slot, project_dir=project, result_name=result
            )
        return VBoxSettings(slot_dir=ctx.slot, project_dir=project, result_name=result)
    if kind == "container":
        from ..backends.container.settings import container_settings

        return container_settings(desc, ctx)
    if kind != "qemu":
        return LocalSettings()
    from ..backends.qemu.settings import QemuSettings

    files = {t: _host_file(ctx, v) if (v := getattr(desc, t)) else None for t in _VM_FILES}
    if not (desc.vm_disk_image or desc.image) and not desc.vm_kernel:
        # the seed's <virtualmachine> task: the VM image the app version ships
        files["vm_kernel"] = resolve_logical(ctx.slot, VM_KERNEL_FILE)
        if _is_file(ctx.slot, VM_INITRD_FILE):
            files["vm_initrd"] = resolve_logical(ctx.slot, VM_INITRD_FILE)
    # the job file's QEMU settings (unset: the backend's defaults); the parser checked their values
    given = {k: getattr(desc, v) for k, v in _QEMU_TAGS.items() if getattr(desc, v) not in (None, "")}
    state_dir = ctx.slot.resolve() / VM_STATE_DIR
    return QemuSettings(
        kernel=files["vm_kernel"],
        initrd=files["vm_initrd"],
        disk_image=files["vm_disk_image"],
        state_dir=state_dir if len(str(state_dir)) < _MAX_SOCKET_DIR else None,
        # <vm_python/>: the guest Python root (built / found by the QEMU backend)
        builtin_python=bool(desc.vm_python),
        **given,
    )
