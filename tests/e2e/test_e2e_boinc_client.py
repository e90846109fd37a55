"""End to end with the REAL BOINC client: the bridge is the app version's main program, and
examples/worker.py runs through the Python guest SDK on the local backend.

The client runs from a hand-written client_state.xml (no project server, Unix socket only); the test
watches it through ``boinccmd --unix_domain --get_tasks`` and reads its final client_state.xml.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.boinc_client import BoincClientRun, ExtraFile, bridge_main_program, fraction_done
from tests.support.jobs import C_WORKER_VM_JOB_NO_STDIO, WORKER_JOB
from tests.support.paths import ROOT

pytestmark = pytest.mark.timeout(240)


def _files(tmp_path: Path, seconds: float) -> tuple[list[ExtraFile], ExtraFile]:
    (tmp_path / "job.xml").write_text(WORKER_JOB.format(seconds=seconds))
    (tmp_path / "in").write_text("input file contents\n")
    (tmp_path / "stdin_worker").write_text("stdin contents\n")
    out = ExtraFile(Path("test_wu_0_r0_out"), "out", is_input=False)
    files = [
        ExtraFile(tmp_path / "job.xml", "job.xml"),
        ExtraFile(ROOT / "examples" / "worker.py", "worker.py"),
        ExtraFile(tmp_path / "in", "in"),
        ExtraFile(tmp_path / "stdin_worker", "stdin_worker"),
        out,
    ]
    return files, out


def _task(tasks: list[dict[str, str]]) -> dict[str, str]:
    return tasks[0] if tasks else {}


def test_worker_through_bridge_under_real_client(tmp_path):
    files, out = _files(tmp_path, seconds=8)
    with BoincClientRun(tmp_path, bridge_main_program(tmp_path), extra_files=files) as run:
        run.wait(lambda t: _task(t).get("active_task_state") == "EXECUTING", timeout=60)
        seen = [fraction_done(run.boinccmd_tasks())]
        run.wait(lambda t: fraction_done(t) > 0.1, timeout=60)
        seen.append(fraction_done(run.boinccmd_tasks()))
        # suspend / resume through boinccmd: the worker really stops, then goes on
        run.task_op("suspend")
        run.wait(lambda t: _task(t).get("active_task_state") == "SUSPENDED", timeout=20)
        frozen = fraction_done(run.boinccmd_tasks())
        run.task_op("resume")
        run.wait(lambda t: _task(t).get("active_task_state") == "EXECUTING", timeout=20)
        run.wait(lambda t: fraction_done(t) > frozen, timeout=60)
        seen.append(fraction_done(run.boinccmd_tasks()))
        assert seen == sorted(seen) and seen[-1] > seen[0], seen
        assert run.wait_exit(120) == 0, run.log_tail()
    res = run.final_result()
    assert res["exit_status"] == 0, res
    # boinc_ops_cumulative in the guest reached the client's state (the bridge sends it itself)
    assert float(res.get("fpops_cumulative", 0)) > 0, res
    assert run.output_text(out) == "INPUT FILE CONTENTS\n"
    # stdin / stdout redirection inside the share, as in a VM
    assert (run.slot_dir() / "shared" / "stdout_worker").read_text() == "STDIN CONTENTS\n"
    assert not run.app_pids()


def test_abort_through_boinccmd_leaves_nothing(tmp_path):
    files, _ = _files(tmp_path, seconds=120)
    with BoincClientRun(tmp_path, bridge_main_program(tmp_path), extra_files=files) as run:
        run.wait(lambda t: fraction_done(t) > 0.0, timeout=60)
        pids = run.app_pids()
        assert len(pids) >= 2  # the bridge and the worker
        run.task_op("abort")
        run.wait_exit(60)
    assert not run.app_pids()
    res = run.final_result()
    assert res["exit_status"] in (194, 203), res  # EXIT_ABORTED_BY_CLIENT / ERR_ABORTED_VIA_GUI


def test_c_worker_in_a_real_vm_under_the_real_client(tmp_path, vm_files):
    """The whole chain: C SDK in a QEMU guest -> 9p share -> bridge -> libboinc_api -> BOINC client."""
    (tmp_path / "job.xml").write_text(C_WORKER_VM_JOB_NO_STDIO.format(seconds=4))
    (tmp_path / "in").write_text("vm input\n")
    out = ExtraFile(Path("test_wu_0_r0_out"), "out", is_input=False)
    files = [
        ExtraFile(tmp_path / "job.xml", "job.xml"),
        ExtraFile(vm_files["worker"], "worker"),
        ExtraFile(vm_files["vm_kernel"], "vm_kernel"),
        ExtraFile(vm_files["vm_initrd"], "vm_initrd"),
        ExtraFile(tmp_path / "in", "in"),
        out,
    ]
    with BoincClientRun(tmp_path, bridge_main_program(tmp_path), extra_files=files) as run:
        run.wait(lambda t: fraction_done(t) > 0.05, timeout=180)
        seen = [fraction_done(run.boinccmd_tasks())]
        assert any("qemu-system" in " ".join(p.cmdline()) for p in _app_procs(run)), "no VM was started"
        run.wait(lambda t: fraction_done(t) > seen[0], timeout=120)
        assert run.wait_exit(180) == 0, run.log_tail()
    res = run.final_result()
    assert res["exit_status"] == 0, res
    assert float(res.get("fpops_cumulative", 0)) > 0, res
    assert run.output_text(out) == "VM INPUT\n"
    assert not run.app_pids()


def _app_procs(run: BoincClientRun) -> list:
    import psutil

    procs = []
    for pid in run.app_pids():
        try:
            p = psutil.Process(pid)
            procs.append(p)
            procs.extend(p.children(recursive=True))
        except psutil.Error:
            continue
    return procs
