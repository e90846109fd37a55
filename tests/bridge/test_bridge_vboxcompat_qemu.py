"""An LHC@home-like guest in a real VM: only vboxwrapper's files, no SDK, under the QEMU backend.

The guest is a busybox sh script run by the agent inside a QEMU VM (the test image from
host_bridge.images.testimage, shipped as the app version's vm_kernel / vm_initrd). It writes a heartbeat
and a progress file into the shared folder and ends with ``shutdown`` (vboxwrapper's completion trigger), the
way LHC@home's CMS VMs do; vbox_job.xml is LHC CMS's, with short intervals. The bridge is a subprocess on
the real libboinc_api and SlotClient plays the client (tests/bridge/test_bridge_vboxcompat.py: the guest
under the local backend).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from host_bridge.images.testimage import ensure_test_image
from tests.support.bridge import Bridge
from tests.support.client_shm import SlotClient
from tests.support.vm import close_vm_slots, qemu_of, vm_slot

pytestmark = pytest.mark.timeout(300)

# LHC@home CMS's vbox_job.xml (VM-only tags kept: the bridge ignores what it does not need), short intervals
VBOX_JOB = """\
<vbox_job>
    <os_name>Linux26_64</os_name>
    <memory_size_mb>2048</memory_size_mb>
    <enable_remotedesktop/>
    <copy_to_shared>init_data.xml</copy_to_shared>
    <completion_trigger_file>shutdown</completion_trigger_file>
    <temporary_exit_trigger_file>restart_later</temporary_exit_trigger_file>
    <trickle_trigger_file>credits</trickle_trigger_file>
    <enable_shared_directory/>
    <fraction_done_filename>progress</fraction_done_filename>
    <heartbeat_filename>heartbeat</heartbeat_filename>
    <minimum_heartbeat_interval>{hb}</minimum_heartbeat_interval>
</vbox_job>
"""

# The task runs the script in the VM (the seed's <virtualmachine> dialect; the image is the app version's)
JOB = """\
<job_desc>
    <task>
        <virtualmachine>CernVM</virtualmachine>
        <application>./guest.sh</application>
        <copy_app_to_VM/>
        <stdout_filename>guest_stdout</stdout_filename>
        <command_line>{mode}</command_line>
    </task>
</job_desc>
"""

# busybox sh in the guest; no BOINC API, no SDK: only vboxwrapper's files in the working directory (the
# share). "stay": like a real VM that keeps running after it wrote the trigger (the bridge stops it).
GUEST = """\
#!/bin/sh
mode=$1
test -f init_data.xml || { echo "copy_to_shared did not bring init_data.xml" >&2; exit 9; }
echo "guest kernel $(uname -r)"
for f in 0.2 0.4 0.6 0.8 1.0; do
    echo "beat $f" > heartbeat
    echo "$f" >> progress
    sleep 0.3
done
case $mode in
    ok) echo 0 > shutdown ;;
    fail) printf '3\\n0\\nthe event generator crashed\\n' > shutdown ;;
    stay) printf '0\\n' > shutdown; exec sleep 120 ;;
esac
exit 0
"""


@pytest.fixture(scope="module")
def image() -> dict[str, Path]:
    img = ensure_test_image()
    return {"vm_kernel": img.kernel, "vm_initrd": img.initrd}


@pytest.fixture
def slot(image):
    made: list[SlotClient] = []

    def make(mode: str, *, hb: float = 30) -> SlotClient:
        texts = {"guest.sh": GUEST, "job.xml": JOB.format(mode=mode), "vbox_job.xml": VBOX_JOB.format(hb=hb)}
        c = vm_slot("hbvq", image, texts)
        (c.slot_dir / "guest.sh").chmod(0o755)
        made.append(c)
        return c

    yield make
    close_vm_slots(made)


def _run(c: SlotClient, timeout: float = 150) -> tuple[int, list[float], Bridge, bool]:
    b = Bridge(c.slot_dir)
    fractions: list[float] = []
    in_vm = False
    try:
        deadline = time.monotonic() + timeout
        while b.proc.poll() is None and time.monotonic() < deadline:
            st = c.read_app_status()
            if st is not None:
                fractions.append(float(st["fraction_done"]))
            in_vm = in_vm or bool(qemu_of(c.slot_dir))
            time.sleep(0.02)
        rc = b.wait(20)
    finally:
        b.close()
    return rc, fractions, b, in_vm


def test_lhc_like_guest_in_vm_completes_with_exit_0_and_progress(slot):
    c = slot("ok")
    rc, fractions, b, in_vm = _run(c)
    assert rc == 0, b.log()
    assert in_vm, "the guest ran in a QEMU VM"
    assert (c.slot_dir / "boinc_finish_called").exists()
    assert fractions == sorted(fractions), fractions
    assert any(0.0 < f < 1.0 for f in fractions), fractions  # the guest's progress file came through 9p
    assert fractions[-1] == pytest.approx(1.0)
    out = (c.slot_dir / "shared" / "guest_stdout").read_text()
    assert "guest kernel 6.1" in out, out  # it really ran under the VM's kernel
    assert not qemu_of(c.slot_dir)


def test_lhc_like_guest_in_vm_failure_code_and_message(slot):
    c = slot("fail")
    rc, _f, b, in_vm = _run(c)
    assert in_vm
    assert rc == 3, b.log()
    log = b.log()
    assert "the event generator crashed" in log
    assert not qemu_of(c.slot_dir)


def test_lhc_like_vm_that_keeps_running_after_the_trigger_is_stopped(slot):
    c = slot("stay")
    t0 = time.monotonic()
    rc, _f, b, in_vm = _run(c)
    assert in_vm
    assert rc == 0, b.log()
    assert time.monotonic() - t0 < 100  # the guest sleeps 120 s: the bridge powered the VM off
    assert (c.slot_dir / "boinc_finish_called").exists()
    assert not qemu_of(c.slot_dir)
