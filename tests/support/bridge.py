"""Helpers for running the host bridge as a subprocess in a slot that a test plays the client for.

The bridge process uses the real libboinc_api (it finds init_data.xml and boinc_mmap_file in the slot,
prepared by ``SlotClient``); the app it runs is a small Python guest using the guest SDK.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.support.client_shm import SlotClient
from tests.support.paths import ROOT
from tests.support.wait import wait_for

GUEST = textwrap.dedent(
    """\
    # A small guest app: burns CPU in steps, reports progress, checkpoints every 5 steps.
    import os, sys, time
    from boinc_guest import *

    boinc_init()
    n = int(sys.argv[1]); dt = float(sys.argv[2])
    fail = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    start = int(open("ckpt").read()) if os.path.exists("ckpt") else 0
    with open("pids", "a") as f:
        f.write(f"{os.getpid()}\\n")
    with open("starts", "a") as f:
        f.write(f"{start}\\n")
    for i in range(start, n):
        t0 = time.process_time()
        while time.process_time() - t0 < dt:
            pass
        boinc_fraction_done((i + 1) / n)
        if (i + 1) % 5 == 0:
            with open("ckpt.tmp", "w") as f:
                f.write(str(i + 1))
            os.replace("ckpt.tmp", "ckpt")
            boinc_checkpoint_completed()
    if fail:
        boinc_finish_message(fail, "the guest failed on purpose", False)
    with open("out", "w") as f:
        f.write(f"done {n}\\n")
    boinc_ops_cumulative(8e9, 0)
    boinc_finish(0)
    """
)

JOB = """\
<job_desc>
    <task>
        <application>./guest.py</application>
        <copy_app_to_VM>1</copy_app_to_VM>
        <copy_file_from_VM>out</copy_file_from_VM>
        <stdout_filename>stdout_guest</stdout_filename>
        <stderr_filename>stderr_guest</stderr_filename>
        <command_line>{args}</command_line>
    </task>
</job_desc>
"""


def make_slot(tmp: Path, *, args: str = "40 0.02", client_pid: int | None = None, **kw) -> SlotClient:
    slot = tmp / "slot"
    slot.mkdir()
    (slot / "guest.py").write_text(GUEST)
    (slot / "job.xml").write_text(JOB.format(args=args))
    proj = tmp / "project"
    proj.mkdir()
    # the output's logical name is a BOINC soft link into the project directory
    (slot / "out").write_text("<soft_link>../project/result_0_out</soft_link>\n")
    return SlotClient(slot, client_pid=client_pid if client_pid is not None else os.getpid(), **kw)


class Bridge:
    """The bridge as a subprocess in ``slot`` (bounded; killed at close)."""

    def __init__(self, slot: Path, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "guest_sdk" / "python")])
        self.slot = slot
        # a file, not a pipe nobody reads: the task's unnamed stdout is the bridge's
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host_bridge", *args],
            cwd=slot,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"bridge did not exit within {timeout} s\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        p = self.slot / "stderr.txt"
        return p.read_text(errors="replace") if p.exists() else "(no stderr.txt)"

    def close(self) -> None:
        self.kill()
        self._out.close()


def run_bridge(slot: Path, *args: str, timeout: float = 60.0) -> tuple[int, str]:
    """Run the bridge in ``slot`` to its end: (its exit status, its stderr.txt)."""
    b = Bridge(slot, *args)
    try:
        return b.wait(timeout), b.log()
    finally:
        b.close()


def run_bridge_until_quit(
    client: SlotClient, until: Callable[[], bool], what: str, *, timeout: float = 60.0
) -> tuple[int, str]:
    """Run the bridge in the client's slot until ``until()`` holds, then have the client ask it to quit
    (BOINC's quit request): (its exit status, its stderr.txt)."""
    b = Bridge(client.slot_dir)
    try:
        wait_for(until, timeout, what)
        client.quit()
        return b.wait(timeout), b.log()
    finally:
        b.close()


def guest_pids(share: Path) -> list[int]:
    p = share / "pids"
    if not p.exists():
        return []
    return [int(x) for x in p.read_text().split()]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
