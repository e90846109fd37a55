"""Whole-VM saves under the REAL BOINC client: a QEMU task (the test image, 256 MiB guest, TCG here) runs
an unmodified app whose state is only in memory (``memcounter``, tests/support/memcounter.py: it counts,
writes the count to ``memcount.txt`` and never checkpoints), and the client takes it away the ways a
volunteer's client does:

1. the client quits (``boinccmd --quit``) and is started again on the same data directory: the bridge
   saves the VM on the ``<quit/>``, the new bridge restores it;
2. a long suspend with "leave applications in memory" on (set in the prefs override; BOINC's default is
   off): after the job's ``<vm_release_after>`` the bridge saves the paused VM and ends QEMU, the resume
   restores it;
3. a suspend with "leave applications in memory" off (``leave_apps_in_memory`` 0 in the global prefs
   override, read with ``boinccmd --read_global_prefs_override``): the client asks the task to quit (it
   does so only for a task that has checkpointed: the bridge's periodic VM checkpoint counts), the
   resume starts the bridge again and it restores the VM;
4. the client gets SIGTERM (as at a system shutdown) and is started again: the same as 1.

Each time the count goes on from where it was (a fresh boot would start it at 1 again), the bridge says so
in the slot's stderr.txt, and no QEMU is left behind; in the end the app reaches its target, the task
exits 0 and its output comes back. ~45-60 s under TCG.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.boinc_client import (
    RESULT_FILES_UPLOADING,
    BoincClientRun,
    ExtraFile,
    bridge_main_program,
)
from tests.support.memcounter import build_memcounter, count, wait_count
from tests.support.vm import qemu_of

pytestmark = pytest.mark.timeout(240)

STEP_MS = 50
TARGET = 400  # 20-30 s of counting under TCG: enough for the four take-aways and their restores
RELEASE_AFTER = 2  # s of suspend before the bridge saves the paused VM and ends QEMU
# what the bridge says in the slot's stderr.txt
SAVED_QUIT = "saved for the quit"  # a save that ends QEMU (a quit or a release)
QUIT_ASKED = "quit requested by the BOINC client"
RELEASED = "suspended for long: its VM was saved and ended"
RESTORED = "restored from its save"
MAX_AHEAD = 40  # counts (2 s) the app may have gone on between our read after a save and the restore's

JOB = f"""<job_desc>
    <task>
        <virtualmachine>CernVM</virtualmachine>
        <application>./worker</application>
        <copy_app_to_VM>1</copy_app_to_VM>
        <command_line>{STEP_MS} {TARGET}</command_line>
        <copy_file_from_VM>out</copy_file_from_VM>
        <vm_release_after>{RELEASE_AFTER}</vm_release_after>
    </task>
</job_desc>
"""


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder (the VM's state folder with its QMP socket lives in the slot: a Unix socket path
    has room for ~107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="vmc-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _task(tasks: list[dict[str, str]]) -> dict[str, str]:
    return tasks[0] if tasks else {}


def _ckpt_cpu(tasks: list[dict[str, str]]) -> float:
    try:
        return float(_task(tasks).get("CPU time at last checkpoint", "0"))
    except ValueError:
        return 0.0


def _wait(pred, timeout: float, what: str, run: BoincClientRun) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            bridge = Slot(run).log()[-3000:]
            client = run.log_tail(10)
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{client}\n{bridge}")
        time.sleep(0.05)


class Slot:
    """What the test reads in the task's slot: the share's count and the bridge's stderr.txt."""

    def __init__(self, run: BoincClientRun) -> None:
        self.run = run
        self.dir = run.slot_dir()
        self.share = self.dir / "shared"

    def log(self) -> str:
        try:
            return (self.dir / "stderr.txt").read_text(errors="replace")
        except OSError:
            return ""

    def said(self, text: str) -> int:
        return self.log().count(text)

    def no_vm(self) -> bool:
        return not qemu_of(self.run.dir)

    def going_on_from(self, saved: int, what: str) -> int:
        """After a restore: the count moves on from ``saved``, not from 1."""
        assert saved < TARGET - 3 * MAX_AHEAD, f"the app is nearly done before {what}: raise TARGET"
        after = wait_count(self.share, lambda n: n != saved, 90, f"the app counting after {what}")
        assert saved < after <= saved + MAX_AHEAD, (
            f"after {what} the count went from {saved} to {after}: not continued from the saved VM\n"
            + self.log()[-3000:]
        )
        return after


def test_vm_task_keeps_its_memory_over_client_quit_release_and_preemption(tmp_path, short_tmp, vm_files):
    memcounter = build_memcounter(tmp_path)
    (short_tmp / "job.xml").write_text(JOB)
    result = f"vmc{os.getpid()}_0"  # its own VM owner tag: not another test's VM on this machine
    out = ExtraFile(Path(f"{result}_out"), "out", is_input=False)
    files = [
        ExtraFile(short_tmp / "job.xml", "job.xml"),
        ExtraFile(memcounter, "worker"),
        out,
    ]
    # the VM image ships with the app version (hard links to the cached test image, no copies)
    app_files = [(vm_files["vm_kernel"], "vm_kernel"), (vm_files["vm_initrd"], "vm_initrd")]
    t0 = time.monotonic()
    run = BoincClientRun(
        short_tmp,
        bridge_main_program(tmp_path),
        extra_files=files,
        app_files=app_files,
        wu_name=f"vmc{os.getpid()}",
        result_name=result,
        # BOINC's checkpoint period (a periodic VM checkpoint every 3 s); BOINC's default is not to leave
        # a suspended task in memory once it has checkpointed: step 2 wants it left, step 3 not
        prefs={"disk_interval": 3, "leave_apps_in_memory": 1},
        exit_after_finish=False,  # the client would exit when the preempted task's app exits (step 3)
    )
    marks: list[tuple[str, int, float]] = []  # (step, count at its save, s since the start)
    with run:
        slot = Slot(run)
        wait_count(slot.share, lambda n: n >= 20, 120, "the app counting in the VM")
        assert qemu_of(run.dir), "the task runs in QEMU"
        marks.append(("counting", count(slot.share), time.monotonic() - t0))

        def client_quit_and_restart(step: str, saves: int, quits: int, *, signal_term: bool) -> None:
            """The client ends (boinccmd --quit, or SIGTERM as at a shutdown) and is started again."""
            assert run.quit_client(60, signal_term=signal_term) == 0, run.log_tail()
            assert slot.no_vm(), f"no QEMU outlives the {step}"
            assert slot.said(SAVED_QUIT) == saves and slot.said(QUIT_ASKED) == quits, slot.log()
            saved = count(slot.share)
            marks.append((step, saved, time.monotonic() - t0))
            run.start()
            slot.going_on_from(saved, f"the client's restart after the {step}")
            assert slot.said(RESTORED) == saves, slot.log()

        # 1. the volunteer quits BOINC (boinccmd --quit) and starts it again
        client_quit_and_restart("client quit", 1, 1, signal_term=False)

        # 2. a long suspend, leaving the task in memory: after vm_release_after the paused VM is saved and
        # QEMU ends, the bridge stays
        run.task_op("suspend")
        run.wait(lambda t: _task(t).get("active_task_state") == "SUSPENDED", timeout=20)
        _wait(lambda: RELEASED in slot.log(), 30, "the release", run)
        _wait(slot.no_vm, 10, "QEMU ending after the release", run)
        assert slot.said(SAVED_QUIT) == 2 and slot.said(QUIT_ASKED) == 1, slot.log()
        assert run.app_pids(), "the bridge itself stays (the task is still in memory for the client)"
        saved = count(slot.share)
        marks.append(("released", saved, time.monotonic() - t0))
        run.task_op("resume")
        slot.going_on_from(saved, "the resume of the released VM")
        assert slot.said(RESTORED) == 2, slot.log()

        # 3. "leave applications in memory" off: a suspend makes the client quit the task, which it does
        # only for a task that has checkpointed (the bridge reports its periodic VM checkpoints)
        run.wait(lambda t: _ckpt_cpu(t) > 0, timeout=60)
        run.set_prefs(leave_apps_in_memory=0)
        run.task_op("suspend")
        _wait(lambda: slot.said(QUIT_ASKED) == 2, 30, "the bridge's quit on the preemption", run)
        _wait(lambda: slot.no_vm() and not run.app_pids(), 30, "the bridge and QEMU ending", run)
        assert slot.said(SAVED_QUIT) == 3, slot.log()
        saved = count(slot.share)
        marks.append(("preempted", saved, time.monotonic() - t0))
        run.task_op("resume")
        slot.going_on_from(saved, "the restart of the preempted task")
        assert slot.said(RESTORED) == 3, slot.log()

        # 4. the client gets SIGTERM (a system shutdown) and is started again
        client_quit_and_restart("client SIGTERM", 4, 3, signal_term=True)

        # the app reaches its target in the restored VM: exit 0, its output back
        done = run.wait(lambda t: _task(t).get("state") not in (None, "downloaded"), timeout=120)
        assert _task(done).get("state") in ("uploading", "uploaded"), done
        _wait(slot.no_vm, 10, "QEMU ending with the task", run)
        assert run.quit_client(60) == 0, run.log_tail()
    elapsed = time.monotonic() - t0
    res = run.final_result()
    assert res["exit_status"] == 0 and res["state"] >= RESULT_FILES_UPLOADING, res
    assert run.output_text(out) == f"done {TARGET}\n"
    assert not qemu_of(run.dir), "no QEMU left behind"
    assert not run.app_pids()
    log = slot.log()
    assert "booting afresh" not in log and "could not save" not in log, log
    print(f"count at each save / s since the start: {marks}; whole test {elapsed:.1f} s")
