"""Whole-VM saves of the QEMU backend with real VMs (TCG here): an app whose state is only in memory
(``memcounter``, tests/support/memcounter.py: counts, writes the count to ``memcount.txt``, never
checkpoints) keeps its count over a quit + restart through the real shared memory (SlotClient), over a
kill -9 of the bridge and QEMU (from the last periodic VM checkpoint), and over quit-restore cycles; a
corrupt, truncated or foreign save falls back to a fresh boot with a message. docs/qemu.md, "Saving VMs".

Time: ~2-3 minutes in all under TCG (the 20-cycle run of the issue is bench/bench_vmsave.py's).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from host_bridge.backends.base import TaskSpec, VMState
from host_bridge.backends.qemu import QemuBackend
from host_bridge.backends.qemu.settings import QemuSettings
from host_bridge.images.parts import VMImage
from host_bridge.images.testimage import ensure_test_image
from host_bridge.share import Share
from tests.support.bridge import Bridge
from tests.support.memcounter import build_memcounter, count, wait_count
from tests.support.vm import close_vm_slots, kill_all, own_qemu_processes, qemu_of, tag_prefix, vm_slot

pytestmark = pytest.mark.timeout(300)

JOB = """<job_desc>
    <task>
        <virtualmachine>CernVM</virtualmachine>
        <image></image>
        <application>./memcounter</application>
        <copy_app_to_VM>1</copy_app_to_VM>
        <command_line>50</command_line>
    </task>
</job_desc>
"""


@pytest.fixture(scope="module")
def memcounter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_memcounter(tmp_path_factory.mktemp("memcounter"))


@pytest.fixture(scope="module")
def image(memcounter: Path) -> VMImage:
    return ensure_test_image({"/bin/memcounter": memcounter})


@pytest.fixture(scope="module", autouse=True)
def qmp_thread():
    """The process's one QMP thread (host_bridge.backends.qemu.qmp), started before the per-test check
    of leftover threads (tests/conftest.py): it lives as long as the process, by design."""
    import asyncio

    from host_bridge.backends.qemu.qmp import _LoopThread

    _LoopThread.run(asyncio.sleep(0), 5.0)


@pytest.fixture(autouse=True)
def no_leftover_vms():
    marker = f"process=bridge-{tag_prefix()}"
    yield
    left = own_qemu_processes(marker)
    kill_all(marker)
    assert not left, f"QEMU processes left behind: {[p.pid for p in left]}"


# ------------------------------------------------------------------ the backend alone


class VM:
    """One task's QemuBackend made and cleaned up by a test (a fresh backend per "bridge run")."""

    def __init__(self, image: VMImage, root: Path, tag: str) -> None:
        self.share_dir = root / "share"
        self.share_dir.mkdir(exist_ok=True)
        self.state = root / "state"
        self.spec = TaskSpec(
            name=tag, argv=("/bin/memcounter", "50"), share=self.share_dir, owner_tag=tag_prefix() + tag
        )
        self.settings = QemuSettings(
            kernel=image.kernel, initrd=image.initrd, accel="tcg", state_dir=self.state
        )
        self.share = Share(self.share_dir, virtfs_mapped=True)
        self.made: list[QemuBackend] = []

    def backend(self) -> QemuBackend:
        b = QemuBackend(self.settings)
        b.create(self.spec, self.share)
        self.made.append(b)
        return b

    def close(self) -> None:
        for b in self.made:
            b.cleanup()
        self.share.close()


@pytest.fixture
def vm(image: VMImage, tmp_path: Path):
    v = VM(image, Path(tempfile_short()), "vms")
    yield v
    v.close()
    shutil.rmtree(v.share_dir.parent, ignore_errors=True)


def tempfile_short() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="vms-", dir="/tmp")


def test_quit_restore_cycles_keep_the_memory_state(vm: VM):
    """Quit (save + end QEMU) and restore, 4 times in a row: the in-memory count never goes back."""
    b = vm.backend()
    b.start()
    last = wait_count(vm.share_dir, lambda n: n >= 5, 90, "the app running")
    for _ in range(4):
        assert b.checkpoint() is True
        assert not own_qemu_processes(b.cfg.tag), "QEMU ended after the save"
        at_quit = count(vm.share_dir)
        assert at_quit >= last
        b = vm.backend()
        assert b.restore() is True
        b.start()  # what the runtime does next: a no-op for the restored VM
        last = wait_count(vm.share_dir, lambda n, q=at_quit: n > q, 30, "the restored app counting on")
        assert last <= at_quit + 40, "continued from the save, not from somewhere else"
        assert b.poll().state is VMState.RUNNING
        # the restore told the agent on its wake-up line that the share can come back (not its delay)
        assert "share mounted again (wake-up line)" in b.serial_log.read_text(errors="replace")
    manifest = json.loads((vm.state / "vmsave" / "save.json").read_text())
    assert manifest["size"] < 64 * 2**20, "zero pages skipped and compressed: far below the guest's 256 MiB"
    assert manifest["stream"].endswith(".lz4")
    assert len(list((vm.state / "vmsave").iterdir())) == 2, "only the newest save is kept"


@pytest.fixture(scope="module")
def saved_state(image: VMImage) -> Path:
    """One VM saved on quit (a state folder with a valid save), copied by the tests that spoil it."""
    root = Path(tempfile_short())
    v = VM(image, root, "vmsaved")
    try:
        b = v.backend()
        b.start()
        wait_count(v.share_dir, lambda n: n >= 5, 90, "the app running")
        assert b.checkpoint() is True
        v.made.clear()  # keep the state folder (cleanup would delete it)
    finally:
        v.close()
    yield root
    kill_all(f"process=bridge-{tag_prefix()}vmsaved")
    shutil.rmtree(root, ignore_errors=True)


def spoil_truncate(state: Path) -> None:
    stream = next((state / "vmsave").glob("ram-*"))
    data = stream.read_bytes()
    stream.write_bytes(data[: len(data) // 2])


def spoil_flip(state: Path) -> None:
    stream = next((state / "vmsave").glob("ram-*"))
    data = bytearray(stream.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stream.write_bytes(bytes(data))


def spoil_missing(state: Path) -> None:
    next((state / "vmsave").glob("ram-*")).unlink()


def spoil_manifest(state: Path) -> None:
    (state / "vmsave" / "save.json").write_text("{not json")


def spoil_foreign_qemu(state: Path) -> None:
    p = state / "vmsave" / "save.json"
    doc = json.loads(p.read_text())
    doc["identity"]["qemu"] = "QEMU emulator version 6.0.0"
    p.write_text(json.dumps(doc))


def spoil_foreign_machine(state: Path) -> None:
    p = state / "vmsave" / "save.json"
    doc = json.loads(p.read_text())
    doc["identity"]["machine"] = "pc-q35-5.2"
    p.write_text(json.dumps(doc))


def spoil_image_changed(state: Path) -> None:
    p = state / "vmsave" / "save.json"
    doc = json.loads(p.read_text())
    doc["identity"]["initrd"] += "0"  # as if the initrd file had another size or time
    p.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        (spoil_truncate, "truncated"),
        (spoil_flip, "checksum"),
        (spoil_missing, "missing"),
        (spoil_manifest, "not a valid save manifest"),
        (spoil_foreign_qemu, "another qemu"),
        (spoil_foreign_machine, "machine type"),
        (spoil_image_changed, "another initrd"),
    ],
    ids=["truncated", "corrupt", "missing", "bad-manifest", "other-qemu", "other-machine", "image-changed"],
)
def test_unusable_save_falls_back_to_a_fresh_boot(saved_state: Path, image: VMImage, caplog, spoil, said):
    root = Path(tempfile_short())
    shutil.copytree(saved_state / "state", root / "state")
    v = VM(image, root, "vmsaved")
    try:
        spoil(v.state)
        b = v.backend()
        with caplog.at_level(logging.WARNING):
            assert b.restore() is False
        text = caplog.text
        assert said in text and "booting afresh" in text, text
        assert not (v.state / "vmsave").exists(), "the unusable save is gone: no second try, no crash loop"
        assert not own_qemu_processes(f"process=bridge-{tag_prefix()}vmsaved")
        assert b.restore() is False  # a second start finds nothing and boots afresh
    finally:
        v.close()
        shutil.rmtree(root, ignore_errors=True)


def test_a_zstd_save_restores(saved_state: Path, image: VMImage):
    """Saves are lz4 streams; a zstd one (an earlier version's, or a host's without lz4) still restores:
    the decompressor follows the stream's suffix."""
    root = Path(tempfile_short())
    shutil.copytree(saved_state / "state", root / "state")
    v = VM(image, root, "vmsaved")
    try:
        d = v.state / "vmsave"
        (lz4,) = d.glob("ram-*.lz4")
        raw, zst = lz4.with_suffix(".raw"), lz4.with_suffix(".zst")
        subprocess.run(["lz4", "-q", "-d", str(lz4), str(raw)], check=True, timeout=60)
        subprocess.run(["zstd", "-q", "-1", str(raw), "-o", str(zst)], check=True, timeout=60)
        lz4.unlink()
        raw.unlink()
        man = d / "save.json"
        doc = json.loads(man.read_text())
        digest = hashlib.sha256(zst.read_bytes()).hexdigest()
        doc.update(stream=zst.name, size=zst.stat().st_size, sha256=digest)
        man.write_text(json.dumps(doc))
        b = v.backend()
        assert b.restore() is True
        wait_count(v.share_dir, lambda n: n > 0, 30, "the restored app counting on")
        assert b.poll().state is VMState.RUNNING
    finally:
        v.close()
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ the whole bridge (real shared memory)


def make_slot(image: VMImage, memcounter: Path, **kw):
    files = {"worker": memcounter, "vm_kernel": Path(image.kernel), "vm_initrd": Path(image.initrd)}
    texts = {"job.xml": JOB.replace("./memcounter", "./worker")}
    return vm_slot("vms", files, texts, **kw)


@pytest.fixture
def slots():
    made: list = []
    yield made
    close_vm_slots(made)


def test_bridge_quit_restart_and_kill9_keep_the_memory_state(image, memcounter, slots):
    c = make_slot(image, memcounter, checkpoint_period=3)
    slots.append(c)
    share = c.slot_dir / "shared"
    # 1. quit through the client's shared memory at some point: the count goes on after a restart
    b = Bridge(c.slot_dir)
    try:
        wait_count(share, lambda n: n >= 15, 120, "the app running in the VM")
        time.sleep(0.37)
        c.quit()
        assert b.wait(60) == 0, b.log()
    finally:
        b.close()
    assert not qemu_of(c.slot_dir), "no VM outlives a quit"
    at_quit = count(share)
    log = b.log()
    assert "saved for the quit" in log and "MiB" in log, log
    b = Bridge(c.slot_dir)
    try:
        after = wait_count(share, lambda n: n != at_quit, 60, "the restored app counting")
        assert at_quit < after <= at_quit + 40, (at_quit, after, b.log())
        assert "restored from its save" in b.log()
        # 2. periodic VM checkpoints (every 3 s of running time), counted as checkpoints for the client
        c.wait_status(lambda s: float(s.get("checkpoint_cpu_time", 0)) > 0, timeout=60)
        deadline = time.monotonic() + 60
        while b.log().count("VM checkpoint") < 1 and "saved: " not in b.log():
            assert time.monotonic() < deadline, b.log()
            time.sleep(0.1)
        time.sleep(1.0)
        before_kill = count(share)
        # 3. kill -9 the bridge and its VM: the restart continues from the last periodic checkpoint
        vms = qemu_of(c.slot_dir)
        b.kill()
        for p in vms:
            p.kill()
    finally:
        b.close()
    b = Bridge(c.slot_dir)
    try:
        resumed = wait_count(share, lambda n: n != before_kill, 60, "the app counting after kill -9")
        assert resumed > at_quit, "continued from a VM checkpoint, not from zero"
        assert "restored from its save" in b.log(), b.log()
        c.abort()
        assert b.wait(60) == 194, b.log()
    finally:
        b.close()
    assert not qemu_of(c.slot_dir)
