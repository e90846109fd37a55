"""A Python worker on the Python guest SDK, inside a real VM, through the whole chain.

examples/worker.py (the seed's worker ported to ``boinc_guest``) runs in a QEMU VM with Debian's python3
from the guest Python image (``host_bridge.images.testimage.ensure_python_image``: the image builder's
root disk of debootstrap minbase + python3 + python3-msgpack + the guest SDKs, read-only squashfs with a
per-task overlay; the agent runs the app chrooted into it, the share relayed at /boinc/shared). The
bridge is a subprocess on the real libboinc_api; SlotClient plays the client through the real shared
memory. The job is the seed's <virtualmachine> dialect plus ``<vm_python/>`` (whose image replaces the app
version's vm_kernel / vm_initrd).

Slow: the first run builds the Python image (debootstrap, about 1-1.5 minutes, needs root and the Debian
mirror from the apt sources), then it is cached; a warm run boots a TCG VM and Python in ~5 s.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from host_bridge.images import parts as vmimage
from host_bridge.images.testimage import ensure_python_image, ensure_test_image, pyroot_base_key
from host_bridge.jobfile import parse_job_text
from tests.support.bridge import Bridge
from tests.support.client_shm import SlotClient
from tests.support.jobs import PY_WORKER_VM_JOB
from tests.support.paths import ROOT
from tests.support.vm import close_vm_slots, qemu_of, vm_slot

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def vm_parts() -> dict[str, Path]:
    t0 = time.monotonic()
    py = ensure_python_image()
    print(f"python image ready in {time.monotonic() - t0:.1f} s: {py.disk}")
    img = ensure_test_image()
    return {"vm_kernel": img.kernel, "vm_initrd": img.initrd, "disk": py.disk}


@pytest.fixture
def slot(tmp_path, vm_parts):
    made: list[SlotClient] = []

    def make(seconds: float) -> SlotClient:
        proj = tmp_path / "project"
        proj.mkdir()
        files = {
            "vm_kernel": vm_parts["vm_kernel"],
            "vm_initrd": vm_parts["vm_initrd"],
            "worker.py": ROOT / "examples" / "worker.py",  # mode 0644: run as python3 worker.py
        }
        texts = {
            "in": "input for the python worker\n",
            "stdin_worker": "stdin for the python worker\n",
            "job.xml": PY_WORKER_VM_JOB.format(seconds=seconds),
            "out": f"<soft_link>{proj}/result_out</soft_link>\n",
        }
        c = vm_slot("hbpy", files, texts)
        made.append(c)
        return c

    yield make
    close_vm_slots(made)


def test_vm_python_tag_parses():
    job = parse_job_text(PY_WORKER_VM_JOB.format(seconds=1), "job.xml")
    assert job.tasks[0].vm_python is True
    assert parse_job_text(PY_WORKER_VM_JOB.replace("<vm_python/>", ""), "job.xml").tasks[0].vm_python is False


def test_debian_mirror_from_apt_sources(tmp_path):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text("# nothing here\n")
    (apt / "sources.list.d" / "other.list").write_text("deb https://example.org/apt cloud-sdk main\n")
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb deb-src\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main contrib\n"
    )
    got = vmimage.debian_mirror(apt, codename="bookworm")
    assert got == ("http://mirror.example/debian", "bookworm")  # not -security, not the other repo
    (apt / "sources.list").write_text("deb [arch=amd64] http://old.example/debian/ trixie main\n")
    assert vmimage.debian_mirror(apt, codename="trixie") == ("http://old.example/debian", "trixie")
    (apt / "sources.list.d" / "debian.sources").unlink()
    with pytest.raises(vmimage.ImageError, match=r"sources\.list"):
        vmimage.debian_mirror(apt, codename="bookworm")
    # the key depends on what goes into the tree, never on the mirror or the time
    assert pyroot_base_key("bookworm") == pyroot_base_key("bookworm")
    assert pyroot_base_key("bookworm") != pyroot_base_key("trixie")


@pytest.mark.slow
def test_python_worker_in_vm_progress_finish_and_outputs(slot, vm_parts):
    disk = vm_parts["disk"]
    disk_before = hashlib.sha256(disk.read_bytes()).hexdigest()
    c = slot(seconds=3)
    t0 = time.monotonic()
    b = Bridge(c.slot_dir)
    try:
        first = c.wait_status(lambda s: 0.0 < float(s["fraction_done"]) < 1.0, timeout=180)
        t_progress = time.monotonic() - t0
        vms = qemu_of(c.slot_dir)
        assert vms, "the task runs in a QEMU VM"
        cl = vms[0].cmdline()
        assert not any("mount_tag=pyroot" in a for a in cl), cl  # one 9p export: the share
        assert any(a.startswith("file=") and "if=virtio" in a for a in cl), cl  # the root disk's overlay
        fractions = [float(first["fraction_done"])]
        deadline = time.monotonic() + 180
        while b.proc.poll() is None and time.monotonic() < deadline:
            m = c.read_app_status()
            if m is not None:
                fractions.append(float(m["fraction_done"]))
            time.sleep(0.02)
        assert b.wait(30) == 0, b.log()
    finally:
        b.close()
    print(
        f"bridge start -> first progress from the VM: {t_progress:.1f} s; total {time.monotonic() - t0:.1f} s"
    )
    assert fractions == sorted(fractions), fractions
    assert fractions[-1] == pytest.approx(1.0)
    assert (c.slot_dir / "boinc_finish_called").exists()
    share = c.slot_dir / "shared"
    err = (share / "stderr_worker").read_text()
    assert "worker: starting (with the host)" in err, err  # the SDK found the share through BOINC_GUEST_DIR
    assert "worker: done" in err, err
    # the output file came back from the VM to the physical file behind its logical name
    out = Path(c.slot_dir / "out").read_text()
    proj_out = Path(out.split("<soft_link>")[1].split("</soft_link>")[0])
    assert proj_out.read_text() == "INPUT FOR THE PYTHON WORKER\n"
    assert (share / "stdout_worker").read_text() == "STDIN FOR THE PYTHON WORKER\n"
    assert not qemu_of(c.slot_dir)
    # the task's writes went to its overlay: the shared root disk is unchanged
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == disk_before


def test_vm_pyroot_validation(tmp_path):
    from host_bridge.backends.base import BackendError, TaskSpec
    from host_bridge.backends.qemu import QemuBackend, QemuSettings
    from host_bridge.share import Share

    share = tmp_path / "share"
    share.mkdir()
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF" + b"\0" * 600)

    def create(pyroot: str) -> QemuBackend:
        b = QemuBackend(QemuSettings(kernel=kernel, pyroot=Path(pyroot), state_dir=tmp_path / "st"))
        with Share(share, virtfs_mapped=True) as opened:
            b.create(TaskSpec(name="t", argv=("python3", "x.py"), share=share), opened)
        return b

    with pytest.raises(BackendError, match=r"vm_pyroot: .* is not a folder"):
        create(str(tmp_path / "missing"))
    tree = tmp_path / "tree"
    tree.mkdir()
    with pytest.raises(BackendError, match="no boinc/shared folder"):
        create(str(tree))
    (tree / "boinc" / "shared").mkdir(parents=True)
    with pytest.raises(BackendError, match="overlap"):
        create(str(share.parent))  # a tree holding the share would let the guest see it twice
    b = create(str(tree))
    cmd = b._command()
    assert f"local,path={tree},mount_tag=pyroot,security_model=none,readonly=on,id=fs1" in cmd
    assert "boinc.pyroot=1" in cmd[cmd.index("-append") + 1]


@pytest.mark.slow
def test_python_worker_vm_is_saved_on_quit_and_restored(slot):
    """A <vm_python/> VM runs from a root disk, so the agent can relay the share and the VM is saved on
    a quit and restored by the next start (the 9p Python root it replaced could not be saved)."""
    c = slot(seconds=20)
    b = Bridge(c.slot_dir)
    try:
        before_quit = c.wait_status(lambda s: float(s["fraction_done"]) > 0.15, timeout=180)
        c.quit()
        assert b.wait(60) == 0, b.log()
    finally:
        b.close()
    assert not qemu_of(c.slot_dir), "no VM outlives a quit"
    assert "saved for the quit" in b.log(), b.log()
    at_quit = float(before_quit["fraction_done"])
    b = Bridge(c.slot_dir)
    try:
        first = c.wait_status(lambda s: float(s["fraction_done"]) > 0, timeout=120)
        assert "restored from its save" in b.log(), b.log()
        assert float(first["fraction_done"]) >= at_quit - 0.05, (first, at_quit)  # the VM went on
        assert b.wait(180) == 0, b.log()
    finally:
        b.close()
    out = Path(c.slot_dir / "out").read_text()
    proj_out = Path(out.split("<soft_link>")[1].split("</soft_link>")[0])
    assert proj_out.read_text() == "INPUT FOR THE PYTHON WORKER\n"
    assert not qemu_of(c.slot_dir)
