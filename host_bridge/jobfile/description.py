"""``host-bridge check JOBFILE``'s text: what the job would run, and its warnings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .model import JobSpec, TaskDesc
from .safexml import _where
from .wrapper import _QEMU_FILES, _QEMU_SETTINGS


class TaskPlan(Protocol):
    """What check shows of the planner's decision for a task (``host_bridge.runtime.plan.TaskPlan``)."""

    desc: TaskDesc
    kind: str
    why: str


class JobPlan(Protocol):
    """The planner's plan of a job (``host_bridge.runtime.plan.JobPlan``)."""

    tasks: Sequence[TaskPlan]
    warnings: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------------


def _setting(name: str, value: object) -> str:
    """One QEMU setting as ``check`` shows it: seconds with their unit; a vm_release_after of 0 says that
    the VM is never released."""
    if name == "vm_release_after" and value == 0:
        return f"{name}=0 (never: a suspended VM stays paused in memory)"
    return f"{name}={value:g} s" if isinstance(value, float) else f"{name}={value}"


def _task_lines(t: TaskDesc, n: int, total_weight: float, plan: TaskPlan | None) -> list[str]:
    title = {
        "task": f"task {n}",
        "unzip": f"unzip task {n}",
        "daemon": f"daemon {n}",
        "vmmanage": f"VMmanage task {n}",
    }[t.kind]
    kind = plan.kind if plan is not None else "local"  # daemons are local processes
    if t.kind == "vmmanage":
        backend = "not run (obsolete)"
    elif kind == "vbox":
        backend = f"vbox (virtual machine {t.virtualmachine!r})"
    else:
        backend = kind
    lines = [f"{title} (line {t.line}): backend {backend}"]
    if (plan is not None and kind != "local") or (plan is not None and t.virtualmachine):
        lines.append(f"    why: {plan.why}")
    lines.append(f"    program: {t.application or '(none)'}")
    if t.args:
        shown = " ".join(a.text if " " not in a.text else repr(a.text) for a in t.args)
        lines.append(f"    args: {shown}")
        logical = [a.logical for a in t.args if a.logical]
        if logical:
            lines.append(f"    args naming slot files: {', '.join(logical)}")
    if t.append_cmdline_args:
        lines.append("    + the bridge's own command-line arguments")
    files_in = [f for f in (t.stdin_filename,) if f]
    if t.stdin_filename:
        lines.append(f"    stdin  <- {t.stdin_filename}")
    if t.stdout_filename:
        lines.append(f"    stdout -> {t.stdout_filename}")
    if t.stderr_filename:
        lines.append(f"    stderr -> {t.stderr_filename}")
    files_in += list(t.copy_files_to_vm)
    if t.copy_app_to_vm:
        files_in.append(f"{t.application} (the program)")
    if t.copy_files_to_vm:
        lines.append(f"    files into the VM: {', '.join(t.copy_files_to_vm)}")
    if t.copy_files_from_vm:
        lines.append(f"    files out of the VM: {', '.join(t.copy_files_from_vm)}")
    settings = [_setting(k, v) for k in _QEMU_SETTINGS if (v := getattr(t, k)) is not None]
    if kind == "qemu":
        parts = [
            f"{k}={getattr(t, k)}"
            for k in ("vm_kernel", "vm_initrd", "vm_disk_image", "vm_memory_mb", "vm_cmdline")
            if getattr(t, k) is not None
        ]
        parts.append(f"network={'on' if t.vm_network else 'off'}")
        if t.vm_python:
            parts.append("python=guest Python root")
        lines.append(f"    qemu: {', '.join(parts + settings)}")
    elif settings:
        lines.append(f"    QEMU settings (used if the task runs in QEMU): {', '.join(settings)}")
    for name, value in t.setenv:
        lines.append(f"    env {name}={value}")
    for label, value in (
        ("working dir", t.exec_dir),
        ("checkpoint file", t.checkpoint_filename),
        ("fraction-done file", t.fraction_done_filename),
    ):
        if value:
            lines.append(f"    {label}: {value}")
    if t.time_limit:
        lines.append(f"    time limit: {t.time_limit:g} s")
    if t.priority is not None:
        lines.append(f"    priority: {t.priority}")
    if t.multi_process:
        lines.append("    multi-process (suspend/resume the whole process tree)")
    if t.kind == "task":
        share = f" ({100 * t.weight / total_weight:.0f}% of the progress)" if total_weight > 0 else ""
        lines.append(f"    weight: {t.weight:g}{share}")
    return lines


def describe(job: JobSpec, plan: JobPlan | None = None) -> str:
    """The human-readable plan printed by ``host-bridge check JOBFILE``: ``plan`` is the planner's
    (``host_bridge.runtime.plan.plan_job``), the same the run uses; without it every task is shown as
    a local process."""
    plans = {id(p.desc): p for p in plan.tasks} if plan is not None else {}
    total_weight = job.total_weight  # a sum over the tasks: once, not once per task
    names = {"vmwrapper": "VMwrapper", "docker": "docker_wrapper job.toml"}
    dialect = names.get(job.dialect, "BOINC wrapper")
    out = [f"job file {job.path} ({dialect} dialect)"]
    if job.unzip_input:
        out.append(f"unzip before running: {', '.join(job.unzip_input)}")
    groups: list[tuple[Sequence[TaskDesc], str]] = [
        (job.unzip_tasks, "unzip tasks (run first, in order)"),
        (job.daemons, "daemons (started before the tasks, killed at the end)"),
        (job.tasks, f"tasks (run in order; total weight {total_weight:g})"),
        (job.vmmanage_tasks, "VMmanage tasks (obsolete, not run)"),
    ]
    for group, heading in groups:
        if not group:
            continue
        out.append(f"{heading}:")
        for n, t in enumerate(group, 1):
            out.extend("  " + line for line in _task_lines(t, n, total_weight, plans.get(id(t))))
    for z in job.zip_output:
        out.append(
            f"zip at the end: {z.zipfilename} <- new files matching {', '.join(z.patterns) or '(nothing)'}"
        )
    if job.enable_graphics_support:
        out.append("graphics support: enabled")
    plan_warnings = plan.warnings if plan is not None else ()
    out.extend(warning_lines(job.warnings + plan_warnings + tuple(_missing_file_warnings(job))))
    return "\n".join(out) + "\n"


def _missing_file_warnings(job: JobSpec) -> list[str]:
    """For a job file read from disk (``job.job_dir`` set): a warning for each vm_kernel / vm_initrd /
    vm_disk_image that is neither next to the job file nor an existing absolute path. Only a warning:
    the name may be a logical name the BOINC client puts in the slot when the job runs."""
    if job.job_dir is None:
        return []
    folder = Path(job.job_dir)
    found: dict[str, bool] = {}  # name -> exists (thousands of tasks usually name one kernel)
    out: list[str] = []
    for t in (*job.unzip_tasks, *job.daemons, *job.tasks):
        for fname in _QEMU_FILES:
            name = getattr(t, fname)
            if name is None:
                continue
            absolute = os.path.isabs(name)
            candidate = name if absolute else os.path.join(folder, name)
            if name not in found:
                found[name] = os.path.exists(candidate)  # False for a broken link, too
            if found[name]:
                continue
            if absolute:
                msg = f"{name} does not exist on this host; the task cannot start without it"
            else:
                msg = (
                    f'"{name}" is not next to the job file ({candidate} does not exist); the task '
                    "cannot start unless the BOINC client puts a file of that logical name in the slot"
                )
            out.append(_where(job.path, t.line_of(fname), fname, msg))
    return out


def warning_lines(warnings: Sequence[str]) -> list[str]:
    """The warnings part of a ``describe`` text (job.xml and vbox_job.xml)."""
    if not warnings:
        return ["no warnings"]
    return [f"warnings ({len(warnings)}):", *(f"  {w}" for w in warnings)]
