"""The job files the tests run, written once: the demo worker (examples/worker.py, or the static C
worker in a VM) with its program and inputs copied into the share and its output copied back."""

from __future__ import annotations


def worker_job(
    application: str = "./worker.py",
    *,
    vm: str = "",
    stdio: tuple[str, ...] = ("stdin", "stdout", "stderr"),
    extra: str = "",
) -> str:
    """A job file with one worker task; ``{seconds}`` is left for ``.format(seconds=...)``.

    ``vm``: tags that put it in a VM (e.g. ``<virtualmachine>CernVM</virtualmachine>``); ``stdio``:
    which of the worker's stdin / stdout / stderr files the job names; ``extra``: more task tags."""
    lines = [vm] if vm else []
    lines += [
        f"<application>{application}</application>",
        "<copy_app_to_VM>1</copy_app_to_VM>",
        "<copy_file_to_VM>in</copy_file_to_VM>",
    ]
    if "stdin" in stdio:
        lines += [
            "<copy_file_to_VM>stdin_worker</copy_file_to_VM>",
            "<stdin_filename>stdin_worker</stdin_filename>",
        ]
    lines += [f"<{s}_filename>{s}_worker</{s}_filename>" for s in ("stdout", "stderr") if s in stdio]
    lines += ["<copy_file_from_VM>out</copy_file_from_VM>", "<command_line>{seconds}</command_line>"]
    if extra:
        lines.append(extra)
    body = "\n".join(f"        {line}" for line in lines)
    return f"<job_desc>\n    <task>\n{body}\n    </task>\n</job_desc>\n"


# examples/worker.py in the share, as a local task (the VMwrapper style) or under the real client
WORKER_JOB = worker_job(stdio=("stdin", "stdout"))
# the static C worker in the test VM image (the app version's vm_kernel / vm_initrd)
C_WORKER_VM_JOB = worker_job(
    "./worker",
    vm="<virtualmachine>CernVM</virtualmachine>\n        <image></image>",
    extra="<weight>1</weight>",
)
C_WORKER_VM_JOB_NO_STDIO = worker_job("./worker", vm="<virtualmachine>CernVM</virtualmachine>", stdio=())
# examples/worker.py with the guest Python root (<vm_python/>)
PY_WORKER_VM_JOB = worker_job(vm="<virtualmachine>CernVM</virtualmachine>\n        <vm_python/>")
