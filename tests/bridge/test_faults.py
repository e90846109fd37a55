"""Faults against the real bridge (subprocess, real libboinc_api, local backend, the test playing the
client through the real shared memory): kill -9 of the bridge at many points, a full disk under the
bridge's state and under the outputs, a guest killed, a guest hung, a long suspend, 200 suspend/resume
cycles."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from host_bridge.exitcodes import ExitCode
from host_bridge.state import STATE_FILE
from tests.support.bridge import Bridge, alive, guest_pids, run_bridge
from tests.support.client_shm import SlotClient
from tests.support.paths import ROOT
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(300)

GUEST = textwrap.dedent(
    """\
    # progress in steps, a checkpoint (file + SDK call) every 5 steps, a large output at the end
    import os, sys, time
    from boinc_guest import *

    boinc_init()
    n, dt, out, size = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    ck = "ckpt_" + out
    start = int(open(ck).read()) if os.path.exists(ck) else 0
    with open("pids", "a") as f:
        f.write(f"{os.getpid()}\\n")
    with open("starts_" + out, "a") as f:
        f.write(f"{start}\\n")
    for i in range(start, n):
        time.sleep(dt)
        boinc_fraction_done((i + 1) / n)
        if (i + 1) % 5 == 0:
            with open(ck + ".tmp", "w") as f:
                f.write(str(i + 1))
            os.replace(ck + ".tmp", ck)
            boinc_checkpoint_completed()
        if os.path.exists("hold"):  # the test wants the guest to wait here (bounded)
            open("holding", "w").close()
            deadline = time.time() + 60
            while os.path.exists("hold") and time.time() < deadline:
                time.sleep(0.02)
            if os.path.exists("big_trickle"):
                boinc_send_trickle_up("big", "x" * 60000)
    line = (out + " ").encode() * 64
    with open(out + ".tmp", "wb") as f:
        for k in range(size // len(line) + 1):
            f.write(line)
    os.replace(out + ".tmp", out)
    boinc_finish(0)
    """
)

TASK = (
    "<task><application>./guest.py</application><copy_app_to_VM>1</copy_app_to_VM>"
    "<copy_file_from_VM>{out}</copy_file_from_VM><command_line>{n} {dt} {out} {size}</command_line>"
    "<weight>1</weight></task>"
)


def _expected(out: str, size: int) -> bytes:
    line = (out + " ").encode() * 64
    return line * (size // len(line) + 1)


def _slot(tmp_path: Path, tasks: list[tuple[str, int, float, int]]) -> SlotClient:
    """A slot (tmp/slot) with the guest, a job of ``tasks`` (output name, steps, step seconds, output
    bytes) and each output's BOINC soft link into tmp/project. Either directory may already exist (a
    mount point)."""
    slot = tmp_path / "slot"
    slot.mkdir(exist_ok=True)
    (tmp_path / "project").mkdir(exist_ok=True)
    (slot / "guest.py").write_text(GUEST)
    body = "".join(TASK.format(out=o, n=n, dt=dt, size=s) for o, n, dt, s in tasks)
    (slot / "job.xml").write_text(f"<job_desc>{body}</job_desc>\n")
    for o, *_ in tasks:
        (slot / o).write_text(f"<soft_link>../project/result_0_{o}</soft_link>\n")
    return SlotClient(slot, client_pid=os.getpid())


class StatusWatch:
    """Reads the app_status channel like the client, all along (across bridge restarts)."""

    def __init__(self, client) -> None:
        self.client = client
        self.fractions: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            st = self.client.read_app_status()
            if st is not None and "fraction_done" in st:
                self.fractions.append(float(st["fraction_done"]))
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)


def _no_guest_left(share: Path) -> None:
    pids = guest_pids(share)
    wait_for(lambda: not any(alive(p) for p in pids), 10, "guest processes gone")


# --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_at_random_points_then_restart_until_done(tmp_path):
    """kill -9 of the bridge at >= 20 seeded random moments of a 3-task job (during tasks, checkpoints,
    output copies), restarted each time: every task resumes from its checkpoint, fraction done never
    goes backwards, each output arrives whole, exactly once; no process left behind."""
    size = 4 << 20  # 4 MiB outputs: the copy back takes a while, so some kills land in it
    # enough work (3 x 4.5 CPU s) that the job outlasts 20 kills however fast this machine is
    tasks = [("out_a", 150, 0.03, size), ("out_b", 150, 0.03, size), ("out_c", 150, 0.03, size)]
    c = _slot(tmp_path, tasks)
    c.start_heartbeats()
    watch = StatusWatch(c)
    rng = random.Random(20240611)
    kills = 0
    runs = 0
    rc = None
    try:
        while runs < 60:
            runs += 1
            b = Bridge(c.slot_dir)
            try:
                if kills < 20:
                    time.sleep(rng.uniform(0.4, 2.5))
                    if b.proc.poll() is None:
                        b.proc.send_signal(signal.SIGKILL)
                        b.proc.wait(10)
                        kills += 1
                        continue
                rc = b.wait(120)
            finally:
                b.close()
            if rc == 0 and (c.slot_dir / "boinc_finish_called").exists():
                break
    finally:
        watch.stop()
        c.close()
    share = c.slot_dir / "shared"
    _no_guest_left(share)
    assert rc == 0, Bridge.log(b)
    assert kills >= 20, kills
    for o, *_ in tasks:
        assert (tmp_path / "project" / f"result_0_{o}").read_bytes() == _expected(o, size), o
        starts = [int(x) for x in (share / f"starts_{o}").read_text().split()]
        # a restarted task resumes from its checkpoint: never from 0 once a checkpoint existed
        assert starts == sorted(starts), (o, starts)
    assert not [p for p in (tmp_path / "project").iterdir() if p.name.startswith(".")], "partial copies left"
    restarted = sum(len((share / f"starts_{o}").read_text().split()) - 1 for o, *_ in tasks)
    assert restarted >= 3
    assert any(int(x) > 0 for o, *_ in tasks for x in (share / f"starts_{o}").read_text().split())
    f = watch.fractions
    assert f and f[-1] == pytest.approx(1.0)
    back = [(i, f[i - 1], f[i]) for i in range(1, len(f)) if f[i] < f[i - 1] - 1e-9]
    assert not back, f"fraction done went backwards: {back[:5]}"
    print(f"\nkill -9: {kills} kills, {runs} runs, {restarted} task restarts, {len(f)} status messages")


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True, timeout=10)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, timeout=10)


def test_disk_full_while_saving_the_state_gives_a_temporary_exit(tmp_path):
    """The slot's filesystem fills up; the guest then sends a 60 kB trickle-up, which the bridge must
    checkpoint (its state grows past the space left): the save fails, the previous state file stays
    intact, and the task ends with a temporary exit (boinc_temporary_exit in the slot)."""
    slot = tmp_path / "slot"
    _mount_tmpfs(slot, "2m")
    try:
        _mount_tmpfs(slot / "shared", "32m")  # the guest's share has room: only the bridge's disk is full
        try:
            c = _slot(tmp_path, [("out", 40, 0.02, 1000)])
            (slot / "shared" / "hold").touch()
            (slot / "shared" / "big_trickle").touch()
            c.start_heartbeats()
            b = Bridge(slot)
            try:
                wait_for(lambda: (slot / "shared" / "holding").exists(), 30, "the guest holding")
                time.sleep(0.5)
                before = (slot / STATE_FILE).read_bytes()
                vfs = os.statvfs(slot)
                free = vfs.f_bavail * vfs.f_frsize
                with open(slot / "filler", "wb") as f:
                    f.write(b"\0" * max(0, free - 24 * 1024))  # leave 24 kB: less than the new state
                (slot / "shared" / "hold").unlink()
                rc = b.wait(60)
                log = b.log()
            finally:
                b.close()
                c.close()
            assert rc == 0, log
            assert "cannot save" in log and "No space left" in log, log
            tmp_exit = (slot / "boinc_temporary_exit").read_text()
            assert "disk" in tmp_exit, tmp_exit
            after = (slot / STATE_FILE).read_bytes()
            assert after == before
            json.loads(after)
            assert not (slot / f".{STATE_FILE}.tmp").exists()
            assert not (slot / "boinc_finish_called").exists()
            _no_guest_left(slot / "shared")
        finally:
            _umount(slot / "shared")
    finally:
        _umount(slot)


def test_disk_full_while_copying_outputs_then_resume(tmp_path):
    """The project directory (where outputs go) is full: the copy fails, nothing partial is left, the
    task ends with a temporary exit; with space again, the next run finishes with the output whole."""
    project = tmp_path / "project"
    _mount_tmpfs(project, "256k")
    size = 1 << 20
    try:
        c = _slot(tmp_path, [("out", 10, 0.01, size)])
        c.start_heartbeats()
        try:
            b = Bridge(c.slot_dir)
            try:
                rc = b.wait(60)
                log = b.log()
            finally:
                b.close()
            assert rc == 0, log
            assert "cannot copy the output file 'out' back" in log, log
            assert (c.slot_dir / "boinc_temporary_exit").exists()
            assert not list(project.iterdir()), list(project.iterdir())
            assert not (c.slot_dir / "boinc_finish_called").exists()
            # the volunteer frees space; the client starts the app again
            subprocess.run(["mount", "-o", "remount,size=16m", str(project)], check=True, timeout=10)
            (c.slot_dir / "boinc_temporary_exit").unlink()
            rc, log = run_bridge(c.slot_dir, timeout=60)
            assert rc == 0, log
            assert (project / "result_0_out").read_bytes() == _expected("out", size)
            assert sorted(p.name for p in project.iterdir()) == ["result_0_out"]
        finally:
            c.close()
        _no_guest_left(c.slot_dir / "shared")
    finally:
        _umount(project)


def test_guest_killed_by_a_signal(tmp_path):
    """SIGKILL to the guest process: the task fails with EXIT_SIGNAL and a message naming the signal."""
    c = _slot(tmp_path, [("out", 400, 0.02, 100)])
    c.start_heartbeats()
    b = Bridge(c.slot_dir)
    try:
        c.wait_status(lambda s: float(s["fraction_done"]) > 0.01, timeout=30)
        pid = guest_pids(c.slot_dir / "shared")[0]
        os.kill(pid, signal.SIGKILL)
        rc = b.wait(30)
    finally:
        b.close()
        c.close()
    assert rc == int(ExitCode.EXIT_SIGNAL), b.log()
    assert "killed by signal 9" in b.log()
    assert not (tmp_path / "project" / "result_0_out").exists()


def test_guest_hung_gives_a_temporary_exit(tmp_path):
    """The guest stops writing (frozen with SIGSTOP, as a hung VM): with --heartbeat-timeout 3 the bridge
    stops it and exits temporarily with a message; the guest is gone."""
    c = _slot(tmp_path, [("out", 400, 0.02, 100)])
    c.start_heartbeats()
    b = Bridge(c.slot_dir, "--heartbeat-timeout", "3")
    try:
        c.wait_status(lambda s: float(s["fraction_done"]) > 0.01, timeout=30)
        pid = guest_pids(c.slot_dir / "shared")[0]
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        rc = b.wait(30)
        took = time.monotonic() - t0
    finally:
        b.close()
        c.close()
    assert rc == 0, b.log()
    msg = (c.slot_dir / "boinc_temporary_exit").read_text()
    assert "no heartbeat" in msg, msg
    assert 2.5 < took < 20, took
    _no_guest_left(c.slot_dir / "shared")


def test_long_suspend_is_no_false_alarm(tmp_path):
    """Suspended for 8 s with --heartbeat-timeout 3 (the guest is stopped, so silent): no hung alarm;
    resumed, the task finishes."""
    c = _slot(tmp_path, [("out", 30, 0.02, 100)])
    c.start_heartbeats()
    b = Bridge(c.slot_dir, "--heartbeat-timeout", "3")
    try:
        c.wait_status(lambda s: float(s["fraction_done"]) > 0.05, timeout=30)
        c.suspend()
        pid = guest_pids(c.slot_dir / "shared")[0]
        wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, 5, "guest stopped")
        time.sleep(8)
        assert b.proc.poll() is None, b.log()
        c.resume()
        rc = b.wait(60)
    finally:
        b.close()
        c.close()
    assert rc == 0, b.log()
    assert not (c.slot_dir / "boinc_temporary_exit").exists()
    assert (tmp_path / "project" / "result_0_out").read_bytes() == _expected("out", 100)


@pytest.mark.slow
def test_200_suspend_resume_cycles(tmp_path):
    """200 suspend/resume cycles from the client: the guest is really stopped (checked every 10th
    cycle), the task keeps going and ends OK."""
    c = _slot(tmp_path, [("out", 300, 0.05, 100)])
    c.start_heartbeats()
    b = Bridge(c.slot_dir)
    stopped_seen = 0
    try:
        c.wait_status(lambda s: float(s["fraction_done"]) > 0.01, timeout=30)
        pid = guest_pids(c.slot_dir / "shared")[0]
        proc = psutil.Process(pid)
        for i in range(200):
            c.suspend()
            if i % 10 == 0:
                wait_for(lambda: proc.status() == psutil.STATUS_STOPPED, 5, f"guest stopped (cycle {i})")
                stopped_seen += 1
            else:
                time.sleep(0.02)
            c.resume()
            if i % 10 == 0:
                wait_for(lambda: proc.status() != psutil.STATUS_STOPPED, 5, f"guest running (cycle {i})")
            else:
                time.sleep(0.02)
            assert b.proc.poll() is None, b.log()
        rc = b.wait(120)
    finally:
        b.close()
        c.close()
    assert rc == 0, b.log()
    assert stopped_seen == 20
    assert (tmp_path / "project" / "result_0_out").read_bytes() == _expected("out", 100)
    _no_guest_left(c.slot_dir / "shared")


@pytest.mark.slow
def test_load_short_mode_is_correct():
    """bench/bench_load.py's short mode (4 bridges x 10 s, guests writing 100 status/s): every bridge
    ends right (exit 0, fraction 1, output, every trickle-up once and in order, the last one included).
    Correctness only: the figures are the benchmark's business."""
    bench = ROOT / "bench" / "bench_load.py"
    r = subprocess.run(
        [sys.executable, str(bench), "--bridges", "4", "--seconds", "10"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "correct: 4/4" in r.stdout, r.stdout
