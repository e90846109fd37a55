"""End to end with the REAL BOINC client and an image made by ``host-bridge image build``: the numpy
app (tests/images/test_images_vm.py's Debian image, the same inputs, so its root disk comes from the
builder's cache) runs in a QEMU VM started by the bridge, the app version's main program.

The app version is what an admin ships (docs/images.md, docs/shipping.md): the bridge as the main
program, the job file (logical name ``job.xml``, ``job_tags.xml``'s tags pasted into its ``<task>``) and
the image's kernel, initramfs and root disk with the physical and logical names of the image's
``version.xml``. The client links them into the slot; the bridge finds them by their logical names.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.support.boinc_client import BoincClientRun, ExtraFile, bridge_main_program, fraction_done
from tests.support.images import image_job, image_version_files, matrix_expected
from tests.support.vm import qemu_of

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

RUN_BOUND = 120.0  # s, client start -> exit (17-59 s measured here under TCG, busy machine)


def _qemu_cmdline(run: BoincClientRun) -> list[str]:
    for p in qemu_of(run.slot_dir()):
        try:
            return p.cmdline()
        except psutil.Error:
            continue
    return []


def test_numpy_image_under_the_real_client(tmp_path: Path, numpy_image: Path) -> None:
    """The task boots the image, progress reaches the client (boinccmd's fraction done), the output is the
    matrix numpy computed in the VM, the client records exit status 0, and nothing is left running."""
    (tmp_path / "job.xml").write_text(image_job(numpy_image, "python3", "/app/matrix.py"))
    version_files = image_version_files(numpy_image)
    names = json.loads((numpy_image / "image.json").read_text())["files"]
    assert {logical for _p, logical in version_files} == {names["kernel"], names["initrd"], names["disk"]}
    out = ExtraFile(Path("test_wu_0_r0_out"), "out", is_input=False)
    fractions: list[float] = []
    cmdline: list[str] = []
    working_set = 0.0  # MB: what the client counts against rsc_memory_bound (the bridge + QEMU)
    t0 = time.monotonic()
    with BoincClientRun(
        tmp_path,
        bridge_main_program(tmp_path),
        extra_files=[out],
        app_files=[(tmp_path / "job.xml", "job.xml"), *version_files],
        # the VM counts in the task's working set and the bridge's process tree (docs/shipping.md)
        rsc_memory_bound=2e9,
        rsc_disk_bound=2e9,
    ) as run:
        deadline = t0 + RUN_BOUND
        while run.proc is not None and run.proc.poll() is None and time.monotonic() < deadline:
            # (the GUI RPC socket is not up yet, or the client is exiting)
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                tasks = run.boinccmd_tasks()
                fractions.append(fraction_done(tasks))
                ws = (tasks[0] if tasks else {}).get("working set size", "0 MB").split()[0]
                working_set = max(working_set, float(ws))
            cmdline = cmdline or _qemu_cmdline(run)
            time.sleep(0.2)
        rc = run.wait_exit(max(1.0, deadline - time.monotonic()))
        elapsed = time.monotonic() - t0
        assert rc == 0, run.log_tail()
        assert not run.app_pids()
        assert not qemu_of(run.slot_dir()), "the VM outlived its task"
        res = run.final_result()
        got = json.loads(run.output_text(out))
    print(
        f"client start -> exit: {elapsed:.1f} s; fractions seen by boinccmd: {sorted(set(fractions))}; "
        f"largest working set the client saw: {working_set:.0f} MB"
    )
    assert res["exit_status"] == 0, res
    assert [x for row in got["c"] for x in row] == pytest.approx(matrix_expected())
    assert got["numpy"].startswith("1.")
    assert max(fractions, default=0.0) > 0.0, fractions
    # the VM booted the app version's files, found through the slot's links by their logical names
    files = {logical: run.project_dir / p.name for p, logical in version_files}
    assert cmdline[cmdline.index("-kernel") + 1] == str(files[names["kernel"]]), cmdline
    assert cmdline[cmdline.index("-initrd") + 1] == str(files[names["initrd"]]), cmdline
    assert any(a.startswith("file=") and "qcow2" in a for a in cmdline), cmdline
