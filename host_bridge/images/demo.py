"""``host-bridge demo`` (the VM demo): examples/worker.py in a real VM made with the image builder.

On first use the image (Debian minbase + python3 + the guest SDKs + the worker at ``/app/worker.py``) is
built into the cache (a minute or two: debootstrap; root needed), later runs reuse the cached root disk.
The worker runs with the live progress line; at half-way the demo asks the bridge to quit (as a BOINC
client does when it preempts a task: the VM is powered off, the task's state kept), then runs the bridge
again in the same slot: the task restarts from the worker's own checkpoint (VM save / restore is another
engineer's work). The demo ends by printing where the output is."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host_bridge.images.parts import ImageError, cache_dir

logger = logging.getLogger(__name__)

WORKER_GUEST = "/app/worker.py"

VM_DEMO_JOB = """\
<job_desc>
    <task>
        <application>python3</application>
        <command_line>{worker} {seconds}</command_line>
        <copy_file_to_VM>in</copy_file_to_VM>
        <copy_file_to_VM>stdin_worker</copy_file_to_VM>
        <stdin_filename>stdin_worker</stdin_filename>
        <stdout_filename>stdout_worker</stdout_filename>
        <stderr_filename>stderr_worker</stderr_filename>
        <copy_file_from_VM>out</copy_file_from_VM>
        <weight>1</weight>
{tags}
    </task>
</job_desc>
"""

# the worker checkpoints when the bridge says it is time: every 2 s here, so the restart shows it
INIT_DATA = "<app_init_data>\n<checkpoint_period>2</checkpoint_period>\n</app_init_data>\n"


def demo_image(worker: Path, say: Callable[[str], None]) -> Path:
    """The demo's image folder in the cache, built (or refreshed from the cached root disk) now."""
    from host_bridge.images.build import BuildSpec, build_image

    out = cache_dir() / "demo-image"
    t0 = time.monotonic()
    img = build_image(BuildSpec(out=out, debian=("python3",), add=((worker, WORKER_GUEST),)), note=say)
    how = "root disk from the cache" if img.disk_cached else "built"
    say(f"image ready in {time.monotonic() - t0:.1f} s ({how})")
    return out


def _job_tags(image: Path) -> str:
    lines = [ln for ln in (image / "job_tags.xml").read_text().splitlines() if ln.startswith("<vm_")]
    return "\n".join(" " * 8 + ln for ln in lines)


def make_slot(image: Path, worker_seconds: float) -> Path:
    slot = Path(tempfile.mkdtemp(prefix="host-bridge-vmdemo-"))
    import json

    files = json.loads((image / "image.json").read_text())["files"]
    for name in files.values():  # the app version's files, as the BOINC client links them into a slot
        (slot / name).write_text(f"<soft_link>{image / name}</soft_link>\n")
    (slot / "in").write_text("hello from the input file\n")
    (slot / "stdin_worker").write_text("hello from stdin\n")
    (slot / "init_data.xml").write_text(INIT_DATA)
    job = VM_DEMO_JOB.format(worker=WORKER_GUEST, seconds=f"{worker_seconds:g}", tags=_job_tags(image))
    (slot / "job.xml").write_text(job)
    return slot


@dataclass(frozen=True)
class DemoRunner:
    """What the demo needs of the CLI (given by ``host_bridge.cli``, which imports this module: passed in,
    not imported back): a run of the bridge, its signal capture, the progress line, the demo's API."""

    run: Callable[..., int]
    signals: Callable[[], Any]
    progress_line: Callable[[], Any]
    demo_api: Callable[[Any], Any]


def vm_demo(seconds: float, keep: bool, worker: Path, cli: DemoRunner) -> int:
    """Build / find the image, run the worker in a VM, quit half-way, restart, print the output."""
    from host_bridge.boinc.api import StandaloneApi

    def say(text: str) -> None:
        print(f"  {text}", flush=True)

    print("host-bridge demo: examples/worker.py in a QEMU VM (host-bridge demo --local: without a VM)")
    try:
        image = demo_image(worker, say)
    except ImageError as e:
        print(f"host-bridge demo: cannot build the demo's VM image: {e}", file=sys.stderr)
        return 1
    slot = make_slot(image, seconds)
    print(
        textwrap.dedent(f"""\
        host-bridge demo: slot {slot}
          image {image}
          the worker burns {seconds:g} CPU seconds in the VM; at half-way the bridge is asked to quit (as
          a BOINC client does when it preempts a task), then started again: the worker resumes from its
          checkpoint.""")
    )
    cwd = os.getcwd()
    rc = 0
    try:
        for run in (1, 2):
            print(f"-- run {run}: {'until half-way' if run == 1 else 'restarted, to the end'}", flush=True)
            signals = cli.signals()
            line = cli.progress_line()

            def on_report(report, idx: int, ntasks: int, run: int = run, signals=signals, line=line) -> None:
                line(report, idx, ntasks)
                if run == 1 and report.fraction_done >= 0.5:
                    signals.event.set()  # a quit request, as from the client

            api = StandaloneApi(slot_dir=slot)
            try:
                rc = cli.run(
                    ["--slot", str(slot), "--standalone"],
                    api=cli.demo_api(api),
                    signals=signals,
                    on_report=on_report,
                    stop_hint="the demo was interrupted",
                )
            finally:
                line.done()
                if api._lock_fd is not None:  # the folder's lock: the next run in this process takes it
                    os.close(api._lock_fd)
                    api._lock_fd = None
            if signals.signum is not None:  # a person's Ctrl-C
                return 128 + signals.signum
            if rc != 0:
                break
    finally:
        os.chdir(cwd)
    share = slot / "shared"
    out = slot / "out"
    print(f"exit status {rc}")
    if out.exists():
        print(f"output file: {out}\n{textwrap.indent(out.read_text(errors='replace'), '  ')}", end="")
    stdout = share / "stdout_worker"
    if stdout.exists():
        print(f"the worker's stdout: {stdout}")
    if keep:
        print(f"slot kept: {slot}")
    else:
        shutil.rmtree(slot, ignore_errors=True)
        print(f"the slot {slot} is deleted now (--keep keeps it)")
    return rc
