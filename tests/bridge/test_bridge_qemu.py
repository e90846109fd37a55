"""The whole chain with a real VM: the C worker (examples/c/worker.c, linked statically against the C
guest SDK) runs inside a QEMU VM; its status crosses the 9p share; the bridge (a subprocess on the
real libboinc_api) forwards it to the client, played by SlotClient through the real shared memory.

The job file is the seed's VMwrapper dialect, unchanged: <virtualmachine> with copy_app_to_VM,
copy_file_to_VM, copy_file_from_VM, stdin/stdout. The VM image (kernel + initramfs, built by the tests
from Debian packages, see host_bridge.images.testimage) is shipped as the app version's files vm_kernel and
vm_initrd.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from boinc_guest import protocol as P

from tests.support.bridge import Bridge, run_bridge
from tests.support.client_shm import SlotClient
from tests.support.jobs import C_WORKER_VM_JOB
from tests.support.vm import close_vm_slots, qemu_of, vm_slot
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(300)


# the vm_files fixture (static C worker + test VM image) is in tests/conftest.py


def make_slot(tmp_path: Path, files: dict[str, Path], seconds: float, **kw) -> SlotClient:
    proj = tmp_path / "project"
    proj.mkdir(exist_ok=True)
    texts = {
        "in": "input for the vm\n",
        "stdin_worker": "stdin for the vm\n",
        "job.xml": C_WORKER_VM_JOB.format(seconds=seconds),
        "out": f"<soft_link>{proj}/result_out</soft_link>\n",
    }
    return vm_slot("hbq", files, texts, **kw)


@pytest.fixture
def slots():
    made: list[SlotClient] = []
    yield made
    close_vm_slots(made)


def status_in_share(slot: Path) -> P.Status | None:
    try:
        return P.decode_status((slot / "shared" / P.STATUS_FILE).read_bytes())
    except (OSError, P.ProtocolError):
        return None


def test_worker_in_vm_progress_suspend_resume_and_outputs(tmp_path, vm_files, slots):
    c = make_slot(tmp_path, vm_files, seconds=4)
    slots.append(c)
    b = Bridge(c.slot_dir)
    try:
        st = c.wait_status(lambda s: 0.05 < float(s["fraction_done"]) < 0.6, timeout=120)
        assert qemu_of(c.slot_dir), "the task runs in a QEMU VM"
        # suspend: the VM is stopped, the guest's heartbeat and progress freeze
        c.suspend()
        time.sleep(1.6)  # the bridge checks the client's requests at least every 1.25 s (its tick)
        before = status_in_share(c.slot_dir)
        time.sleep(2.0)
        after = status_in_share(c.slot_dir)
        assert before is not None and after is not None
        assert (after.seq, after.hb, after.fraction_done) == (before.seq, before.hb, before.fraction_done)
        c.resume()
        wait_for(
            lambda: (s := status_in_share(c.slot_dir)) is not None and s.seq > after.seq,
            30,
            "guest running again",
        )
        fractions = [float(st["fraction_done"])]
        deadline = time.monotonic() + 120
        while b.proc.poll() is None and time.monotonic() < deadline:
            m = c.read_app_status()
            if m is not None:
                fractions.append(float(m["fraction_done"]))
            time.sleep(0.02)
        assert b.wait(30) == 0, b.log()
        assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    finally:
        b.close()
    # the output file came back from the VM to the physical file behind its logical name
    assert (tmp_path / "project" / "result_out").read_text() == "INPUT FOR THE VM\n"
    assert (c.slot_dir / "shared" / "stdout_worker").read_text() == "STDIN FOR THE VM\n"
    assert not qemu_of(c.slot_dir)


def test_vm_quit_then_restart_resumes_from_checkpoint(tmp_path, vm_files, slots):
    c = make_slot(tmp_path, vm_files, seconds=6, checkpoint_period=1)
    slots.append(c)
    b = Bridge(c.slot_dir)
    try:
        st = c.wait_status(
            lambda s: float(s["fraction_done"]) > 0.3 and float(s.get("checkpoint_cpu_time", 0)) > 0,
            timeout=150,
        )
        c.quit()
        assert b.wait(60) == 0, b.log()
    finally:
        b.close()
    assert not qemu_of(c.slot_dir), "no VM outlives a quit"
    assert not (c.slot_dir / "boinc_finish_called").exists()
    ckpt = (c.slot_dir / "shared" / "worker_checkpoint.txt").read_text()
    assert float(ckpt.split()[0]) > 0
    b = Bridge(c.slot_dir)
    try:
        first = c.wait_status(timeout=150)
        assert float(first["fraction_done"]) >= float(st["fraction_done"]) - 1e-9
        assert b.wait(150) == 0, b.log()
    finally:
        b.close()
    err = (c.slot_dir / "shared" / "stderr_worker").read_text()
    assert "resuming from checkpoint" in err
    assert (tmp_path / "project" / "result_out").read_text() == "INPUT FOR THE VM\n"


def test_vm_abort_leaves_nothing(tmp_path, vm_files, slots):
    c = make_slot(tmp_path, vm_files, seconds=60)
    slots.append(c)
    b = Bridge(c.slot_dir)
    try:
        c.wait_status(lambda s: float(s["fraction_done"]) > 0.0, timeout=120)
        vms = qemu_of(c.slot_dir)
        assert vms
        c.abort()
        assert b.wait(60) == 194, b.log()
    finally:
        b.close()
    for p in vms:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    assert not qemu_of(c.slot_dir)
    state = c.slot_dir / "vm_state"
    assert not state.exists() or not any(state.iterdir()), list(state.iterdir())


def test_vm_that_never_boots_fails_for_good_after_three_tries(tmp_path, vm_files, slots):
    """A VM that fails before its app starts (here the app version's vm_initrd is not an archive: the
    kernel panics) is the image's or the job's fault, not the host's moment: the first two runs end in
    a temporary exit that says so (the client retries), the third fails the task with EXIT_CHILD_FAILED
    instead of retrying forever (each retry boots a VM on the volunteer's machine)."""
    import json

    files = dict(vm_files)
    not_an_archive = tmp_path / "not_an_archive"
    not_an_archive.write_bytes(b"this is not an initramfs\n" * 100)
    files["vm_initrd"] = not_an_archive
    c = make_slot(tmp_path, files, seconds=2)
    slots.append(c)
    state = c.slot_dir / "host_bridge_state.json"
    for attempt in (1, 2, 3):
        (c.slot_dir / "boinc_temporary_exit").unlink(missing_ok=True)
        rc, log = run_bridge(c.slot_dir, timeout=120)
        if attempt < 3:
            assert rc == 0, log  # boinc_temporary_exit ends the process with 0
            assert (c.slot_dir / "boinc_temporary_exit").exists(), log
            assert f"failure {attempt} of 3 before the task's app started" in log, log
            assert json.loads(state.read_text())["env_failures"] == attempt
        else:
            assert rc == 195, log
            assert "failed 3 times in a row before the task's app started" in log, log
    assert not qemu_of(c.slot_dir)


SYMLINK_OUT_JOB = """<job_desc>
    <task>
        <application>/bin/sh</application>
        <vm_kernel>vm_kernel</vm_kernel>
        <vm_initrd>vm_initrd</vm_initrd>
        <copy_file_from_VM>out</copy_file_from_VM>
        <command_line>-c "ln -s /etc/passwd out"</command_line>
    </task>
</job_desc>
"""


def test_a_guest_symlink_as_output_is_refused(tmp_path, vm_files, slots):
    """Over 9p (mapped-xattr) a guest's symlink is a regular host file holding the link's text; only its
    metadata says it is a link. The output must be refused as a symlink (as on the local backend), not
    sent to the project as a file containing "/etc/passwd"."""
    proj = tmp_path / "project"
    proj.mkdir()
    texts = {"job.xml": SYMLINK_OUT_JOB, "out": f"<soft_link>{proj}/result_out</soft_link>\n"}
    files = {k: v for k, v in vm_files.items() if k in ("vm_kernel", "vm_initrd")}
    c = vm_slot("hbs", files, texts)
    slots.append(c)
    rc, log = run_bridge(c.slot_dir, timeout=180)
    assert rc == 195, log
    assert "output file 'out' was refused (symlink)" in log
    assert not (proj / "result_out").exists()
    assert not qemu_of(c.slot_dir)


def test_a_vm_kernel_that_is_not_a_kernel_is_refused_at_once(tmp_path, vm_files, slots):
    """A vm_kernel file that is neither an ELF vmlinux nor a bzImage is the job's mistake: the task
    fails at once (195, naming vm_kernel) instead of QEMU's "linux kernel too old to load a ram disk"
    and retries."""
    files = dict(vm_files)
    not_a_kernel = tmp_path / "not_a_kernel"
    not_a_kernel.write_text("this is not a Linux kernel\n" * 100)
    files["vm_kernel"] = not_a_kernel
    c = make_slot(tmp_path, files, seconds=2)
    slots.append(c)
    rc, log = run_bridge(c.slot_dir, timeout=60)
    assert rc == 195, log
    assert "is not a Linux kernel image" in log and "vm_kernel" in log
