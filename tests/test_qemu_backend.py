"""QemuBackend against real QEMU VMs (TCG here: /dev/kvm hangs guests on this kind of machine).

Each test boots the cached test image (host_bridge.vmimage) with small static C programs in it
(tests/support/vm.py). Every VM carries an owner tag starting with ``pytest-<pid>-``; the autouse fixture
asserts that no QEMU process with that prefix is left after each test (and kills any, so that one failure
does not leak processes into the rest of the run).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from boinc_guest.protocol import Finish, decode_status

from host_bridge.backends.base import Backend, BackendError, TaskSpec, VMState
from host_bridge.backends.qemu import AGENT_FILES, QemuBackend, name_arg, safe_tag
from host_bridge.vmimage import VMImage, ensure_test_image
from tests.support.vm import (
    build_guest_programs,
    kill_all,
    own_qemu_processes,
    read_int,
    tag_prefix,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

BOOT = 60.0  # generous bound for a TCG boot on a loaded 2-core machine (typically 3-5 s)


@pytest.fixture(scope="module")
def image_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_guest_programs(tmp_path_factory.mktemp("guest-progs"))


@pytest.fixture(scope="module")
def image(image_programs: dict[str, Path]) -> VMImage:
    return ensure_test_image(image_programs)


@pytest.fixture(autouse=True)
def no_leftover_vms():
    marker = f"process=bridge-{tag_prefix()}"
    yield
    left = own_qemu_processes(marker)
    kill_all(marker)
    assert not left, f"QEMU processes left behind: {[p.pid for p in left]}"


@pytest.fixture
def backends():
    made: list[QemuBackend] = []
    yield made
    for b in made:
        try:
            b.cleanup()
        finally:
            b.close()


def make_task(image: VMImage, share: Path, argv: tuple[str, ...], tag: str, **kw) -> TaskSpec:
    extra = (("vm_kernel", str(image.kernel)), ("vm_initrd", str(image.initrd)), ("vm_accel", "tcg"))
    return TaskSpec(name=tag, argv=argv, share=share, owner_tag=tag_prefix() + tag, extra=extra, **kw)


def new_backend(backends: list[QemuBackend], task: TaskSpec) -> QemuBackend:
    b = QemuBackend()
    backends.append(b)
    b.create(task)
    return b


def wait_state(b: QemuBackend, states: set[VMState], timeout: float = BOOT):
    def check():
        s = b.poll()
        return s if s.state in states else None

    return wait_for(check, timeout, 0.1, f"state in {states}")


def test_protocol_and_errors(tmp_path: Path, image: VMImage):
    b = QemuBackend()
    assert isinstance(b, Backend)
    assert b.poll().state is VMState.ABSENT
    with pytest.raises(BackendError, match="vm_kernel: /nonexistent/vmlinux"):
        b.create(
            TaskSpec(name="t", argv=("x",), share=tmp_path, extra=(("vm_kernel", "/nonexistent/vmlinux"),))
        )
    with pytest.raises(BackendError, match="no VM image"):
        b.create(TaskSpec(name="t", argv=("x",), share=tmp_path))
    with pytest.raises(BackendError, match="inside the shared folder"):
        extra = (("vm_kernel", str(image.kernel)), ("vm_state_dir", str(tmp_path / "state")))
        b.create(TaskSpec(name="t", argv=("x",), share=tmp_path, extra=extra))
    # Owner tags become a fixed, comma-free command-line marker, distinct per tag.
    t1, t2 = safe_tag("slot 1,res=a", "x"), safe_tag("slot 1,res=b", "x")
    assert t1 != t2 and "," not in t1 and " " not in t1
    assert name_arg(t1) == f"guest=boinc-{t1},process=bridge-{t1}"


def test_run_exit_code_outputs_copy_and_cleanup(tmp_path: Path, image: VMImage, image_programs, backends):
    share = tmp_path / "share"
    share.mkdir()
    src = tmp_path / "input.dat"
    src.write_bytes(b"input bytes")
    # argv[0] is the host path of a program copied into the share: the guest runs the same file.
    b_hello = share / "hello_prog"
    shutil.copy(image_programs["/bin/hello"], b_hello)
    task = make_task(image, share, (str(b_hello), 'w\u00e9rld "q"', "7"), "hello", stdout="out.txt")
    b = new_backend(backends, task)
    assert b.poll().state is VMState.CREATED
    b.copy_in(src, "in.dat")
    assert (share / "in.dat").read_bytes() == b"input bytes"
    b.start()
    s = wait_state(b, {VMState.EXITED, VMState.FAILED})
    assert s.state is VMState.EXITED, s
    assert s.exit_code == 7
    assert s.cpu_time > 0
    assert (share / "hello_out.txt").read_text() == 'hi w\u00e9rld "q" /boinc/shared\n'
    assert (share / "out.txt").read_text() == "stdout line\n"
    b.copy_out("hello_out.txt", tmp_path / "copied.txt")
    assert (tmp_path / "copied.txt").read_text().startswith("hi ")
    with pytest.raises(BackendError, match="nope"):
        b.copy_out("nope", tmp_path / "x")
    # The VM powered itself off after the app ended.
    wait_for(lambda: not own_qemu_processes(name_arg(b.cfg.tag)), 10, what="VM power-off")
    state_dir = b.cfg.state_dir
    assert (state_dir / "serial.log").exists()
    b.cleanup()
    b.cleanup()  # idempotent
    assert b.poll().state is VMState.ABSENT
    assert not state_dir.exists()
    assert sorted(p.name for p in share.iterdir()) == ["hello_out.txt", "hello_prog", "in.dat", "out.txt"]


def test_missing_program_and_symlinked_task_file(tmp_path: Path, image: VMImage, backends):
    share = tmp_path / "share"
    share.mkdir()
    secret = tmp_path / "host_secret"
    secret.write_text("keep")
    # A guest-planted link at the task file's name is replaced, never followed.
    (share / "boinc_task.json").symlink_to(secret)
    b = new_backend(backends, make_task(image, share, ("no_such_program",), "missing"))
    b.start()
    s = wait_state(b, {VMState.EXITED, VMState.FAILED})
    assert s.state is VMState.EXITED and s.exit_code == 127, s
    assert secret.read_text() == "keep"


def test_pause_quit_and_resume_from_app_checkpoint(tmp_path: Path, image: VMImage, backends):
    share = tmp_path / "share"
    share.mkdir()
    task = make_task(image, share, ("counter", "60", "100", "3"), "counter")
    b = new_backend(backends, task)
    b.start()
    progress = share / "progress.txt"
    wait_for(lambda: read_int(progress) >= 8, BOOT, what="progress >= 8")
    assert b.poll().state is VMState.RUNNING

    # Pause really stops the guest: no progress for 2 s, then it continues.
    b.pause()
    b.pause()  # idempotent
    assert b.poll().state is VMState.PAUSED
    time.sleep(0.3)  # a write in flight lands
    frozen = read_int(progress)
    time.sleep(2.0)
    assert read_int(progress) == frozen
    assert b.poll().state is VMState.PAUSED
    b.resume()
    assert b.poll().state is VMState.RUNNING
    wait_for(lambda: read_int(progress) > frozen + 2, 30, what="progress after resume")

    # Quit (app-level): power the VM off; the app's checkpoint stays in the share.
    b.poweroff()
    assert b.poll().state is VMState.ABSENT
    assert not own_qemu_processes(name_arg(b.cfg.tag))
    ckpt = read_int(share / "ckpt.txt")
    assert ckpt >= 5
    assert not (share / "boinc_agent_exit").exists()

    # A fresh VM resumes from the checkpoint.
    b.start()
    s = wait_state(b, {VMState.EXITED, VMState.FAILED}, timeout=BOOT + 30)
    assert s.state is VMState.EXITED and s.exit_code == 3, s
    assert (share / "result.txt").read_text() == f"done 60 started_at {ckpt}\n"


def test_abort_leaves_nothing_behind(tmp_path: Path, image: VMImage, backends):
    share = tmp_path / "share"
    share.mkdir()
    (share / "input.txt").write_text("in")
    b = new_backend(backends, make_task(image, share, ("counter", "1000", "100"), "abort"))
    b.start()
    wait_for(lambda: read_int(share / "progress.txt") >= 1, BOOT, what="app running")
    state_dir = b.cfg.state_dir
    pid = b._ps.pid if b._ps else None
    b.pause()
    b.cleanup()  # abort: poweroff + cleanup
    assert b.poll().state is VMState.ABSENT
    assert pid is not None and not own_qemu_processes(name_arg(b.cfg.tag))
    assert not state_dir.exists()
    left = {p.name for p in share.iterdir()}
    assert not left & set(AGENT_FILES)
    assert {"input.txt", "progress.txt"} <= left


def test_restore_reattaches_own_vm_and_leaves_others_alone(tmp_path: Path, image: VMImage, backends):
    shares = []
    for n in ("a", "b"):
        d = tmp_path / n
        d.mkdir()
        shares.append(d)
    ta = make_task(image, shares[0], ("counter", "1000", "100"), "restore-a")
    tb = make_task(image, shares[1], ("counter", "1000", "100"), "restore-b")
    a = new_backend(backends, ta)
    other = new_backend(backends, tb)
    a.start()
    other.start()
    wait_for(lambda: read_int(shares[0] / "progress.txt") >= 1, BOOT, what="VM a running")
    a_pid = a._ps.pid if a._ps else 0
    other_pid = other._ps.pid if other._ps else 0

    # The bridge "crashes": its backend object is lost, the VM keeps running. A new one reattaches.
    a2 = new_backend(backends, ta)
    assert a2.poll().state is VMState.CREATED
    assert a2.restore() is True
    assert a2._ps is not None and a2._ps.pid == a_pid
    assert a2.poll().state is VMState.RUNNING
    a2.pause()
    assert a2.poll().state is VMState.PAUSED
    a2.resume()

    # Reattach impossible (control socket gone): restore kills our VM, and only ours.
    a2.qmp_socket.unlink()
    a3 = new_backend(backends, ta)
    assert a3.restore() is False
    wait_for(lambda: not own_qemu_processes(name_arg(a3.cfg.tag)), 10, what="own VM killed")
    assert [p.pid for p in own_qemu_processes(name_arg(other.cfg.tag))] == [other_pid]
    assert other.poll().state is VMState.RUNNING
    # A fresh start after a failed restore works (the app resumes from its checkpoint).
    a3.start()
    wait_for(lambda: read_int(shares[0] / "progress.txt") >= 1, BOOT, what="VM a restarted")
    a3.cleanup()
    other.cleanup()
    assert not own_qemu_processes(f"process=bridge-{tag_prefix()}")


def test_unexpected_vm_death_is_failed(tmp_path: Path, image: VMImage, backends):
    share = tmp_path / "share"
    share.mkdir()
    b = new_backend(backends, make_task(image, share, ("counter", "1000", "100"), "death"))
    b.start()
    assert b._ps is not None
    b._ps.kill()
    s = wait_state(b, {VMState.FAILED, VMState.EXITED}, timeout=10)
    assert s.state is VMState.FAILED and "stopped unexpectedly" in s.error


SDK_WORKER_C = r"""
#include <unistd.h>
#include "boinc_api.h"
int main(void) {
    if (boinc_init() != 0) return 90;
    for (int i = 1; i <= 40; i++) {
        usleep(100000);
        boinc_fraction_done(i / 40.0);
        if (i % 10 == 0) boinc_checkpoint_completed();
    }
    boinc_finish(0);
    return 91; /* not reached */
}
"""


@pytest.fixture(scope="module")
def sdk_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A worker linked statically against the C guest SDK (guest_sdk/c/build/libboinc_guest.a)."""
    sdk = Path(__file__).resolve().parent.parent / "guest_sdk" / "c"
    made = subprocess.run(["make", "-s", "-C", str(sdk)], timeout=300, capture_output=True, text=True)
    assert made.returncode == 0, f"the C guest SDK does not build: {made.stderr[-2000:]}"
    d = tmp_path_factory.mktemp("sdk-worker")
    (d / "worker.c").write_text(SDK_WORKER_C)
    exe = d / "sdkworker"
    subprocess.run(
        ["gcc", "-static", "-O2", "-I", str(sdk / "include"), "-o", str(exe), str(d / "worker.c"),
         str(sdk / "build" / "libboinc_guest.a"), "-lpthread", "-lm"],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    return exe


def test_sdk_worker_reports_progress_over_the_share(
    tmp_path: Path, image: VMImage, sdk_worker: Path, backends
):
    share = tmp_path / "share"
    share.mkdir()
    b = new_backend(backends, make_task(image, share, ("sdkworker",), "sdk"))
    b.copy_in(sdk_worker, "sdkworker")  # run from the share, not from the image
    b.start()
    seen: list[float] = []
    status_file = share / "boinc_status.msgpack"
    deadline = time.monotonic() + BOOT + 20
    while time.monotonic() < deadline:
        if status_file.exists():
            st = decode_status(status_file.read_bytes())
            if not seen or st.fraction_done != seen[-1]:
                seen.append(st.fraction_done)
        if b.poll().state in (VMState.EXITED, VMState.FAILED):
            break
        time.sleep(0.05)
    s = b.poll()
    assert s.state is VMState.EXITED and s.exit_code == 0, s
    final = decode_status(status_file.read_bytes())
    assert final.fraction_done == 1.0
    assert final.checkpoint_count == 4
    assert isinstance(final.events[-1], Finish) and final.events[-1].status == 0
    assert seen == sorted(seen) and len(seen) >= 4, seen  # progress rose in steps, seen live from the host


def test_vm_dies_with_the_bridge(tmp_path: Path, image: VMImage):
    """A bridge killed with SIGKILL takes its VM along (PR_SET_PDEATHSIG), leaving nothing running."""
    share = tmp_path / "share"
    share.mkdir()
    root = Path(__file__).resolve().parent.parent
    tag = "pdeath"
    script = f"""
import sys, time
sys.path[:0] = [{str(root)!r}, {str(root / "guest_sdk" / "python")!r}]
from pathlib import Path
from host_bridge.backends.base import TaskSpec
from host_bridge.backends.qemu import QemuBackend
b = QemuBackend()
b.create(TaskSpec(name="t", argv=("counter", "1000", "100"), share=Path({str(share)!r}),
                  owner_tag={tag_prefix() + tag!r},
                  extra=(("vm_kernel", {str(image.kernel)!r}), ("vm_initrd", {str(image.initrd)!r}),
                         ("vm_accel", "tcg"))))
b.start()
print(b._ps.pid, flush=True)
time.sleep(120)
"""
    bridge = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert bridge.stdout is not None
        qemu_pid = int(bridge.stdout.readline())
        assert psutil.pid_exists(qemu_pid)
        bridge.kill()
        bridge.wait(10)
        wait_for(lambda: not psutil.pid_exists(qemu_pid) or psutil.Process(qemu_pid).status() == "zombie",
                 10, what="QEMU gone after the bridge died")  # fmt: skip
        # The next bridge's restore() finds nothing to reattach; cleanup() removes the dead VM's files.
        b = QemuBackend()
        extra = (("vm_kernel", str(image.kernel)), ("vm_initrd", str(image.initrd)), ("vm_accel", "tcg"))
        b.create(
            TaskSpec(name="t", argv=("counter",), share=share, owner_tag=tag_prefix() + tag, extra=extra)
        )
        assert (b.cfg.state_dir / "qemu.pid").read_text().strip() == str(qemu_pid)
        assert b.restore() is False
        b.cleanup()
        assert not b.cfg.state_dir.exists()
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()


# -- KVM that fails: the backend falls back to TCG -------------------------------------------------------

# A wrapper around the real QEMU that plays a host whose KVM fails: under "-accel kvm" it either dies
# at once as QEMU does when the host's KVM refuses an MSR of "-cpu host" (seen on this machine kind), or
# starts the VM stopped (-S: the guest never runs, as on hosts where KVM hangs guests). Everything else
# is the real QEMU, under TCG.
BROKEN_KVM_QEMU = r"""#!/bin/sh
REAL="$1"; MODE="$2"; shift 2
case " $* " in
  *" -accel kvm "*) ;;
  *) exec "$REAL" "$@" ;;
esac
if [ "$MODE" = crash ]; then
  echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2
  kill -ABRT $$
fi
args=""
skip=0
for a in "$@"; do
  if [ $skip = 1 ]; then skip=0; continue; fi
  case "$a" in -cpu) skip=1; continue ;; esac
  [ "$a" = kvm ] && a=tcg
  args="$args '$a'"
done
eval exec "\"$REAL\"" -S $args
"""


@pytest.mark.parametrize("mode", ["crash", "hang"])
def test_kvm_failure_falls_back_to_tcg(
    tmp_path: Path, image: VMImage, image_programs, backends, monkeypatch, mode: str
):
    """The accelerator probe chose KVM, but the VM fails under it (QEMU aborts at once, or the guest
    never comes up): the backend starts the VM again under TCG, the app runs, and TCG is remembered for
    that QEMU binary so later tasks do not try KVM again."""
    from host_bridge.backends import qemu as Q

    real = shutil.which("qemu-system-x86_64")
    assert real
    wrapper = tmp_path / f"qemu-broken-kvm-{mode}"
    wrapper.write_text(
        BROKEN_KVM_QEMU.replace('REAL="$1"; MODE="$2"; shift 2', f'REAL="{real}"; MODE={mode}')
    )
    wrapper.chmod(0o755)
    # the probe's verdict on a host whose KVM passes the firmware probe (this machine's may not)
    monkeypatch.setattr(Q, "choose_accel", lambda qemu, requested="auto": "kvm")
    monkeypatch.delenv("BOINC_VM_ACCEL", raising=False)
    share = tmp_path / "share"
    share.mkdir()
    prog = share / "hello_prog"
    shutil.copy(image_programs["/bin/hello"], prog)
    extra = (
        ("vm_kernel", str(image.kernel)),
        ("vm_initrd", str(image.initrd)),
        ("vm_qemu", str(wrapper)),
        ("vm_boot_timeout", "6"),
    )
    task = TaskSpec(
        name=mode, argv=(str(prog), "x", "3"), share=share, owner_tag=tag_prefix() + mode, extra=extra
    )
    b = new_backend(backends, task)
    b.start()
    s = wait_state(b, {VMState.EXITED, VMState.FAILED}, timeout=BOOT + 10)
    assert s.state is VMState.EXITED, s
    assert s.exit_code == 3
    assert b.accel == "tcg"
    assert (share / "hello_out.txt").read_text().startswith("hi x ")
    assert Q._load_accel_file().get(Q._accel_key(str(wrapper))) == "tcg"


def test_vm_accel_kvm_does_not_fall_back(tmp_path: Path, image: VMImage, image_programs, backends):
    """A job that insists on KVM (vm_accel=kvm) gets its failure reported, not a silent TCG VM."""
    real = shutil.which("qemu-system-x86_64")
    assert real
    wrapper = tmp_path / "qemu-broken-kvm"
    wrapper.write_text(BROKEN_KVM_QEMU.replace('REAL="$1"; MODE="$2"; shift 2', f'REAL="{real}"; MODE=crash'))
    wrapper.chmod(0o755)
    share = tmp_path / "share"
    share.mkdir()
    extra = (
        ("vm_kernel", str(image.kernel)),
        ("vm_initrd", str(image.initrd)),
        ("vm_qemu", str(wrapper)),
        ("vm_accel", "kvm"),
    )
    task = TaskSpec(name="k", argv=("/bin/hello",), share=share, owner_tag=tag_prefix() + "k", extra=extra)
    b = new_backend(backends, task)
    with pytest.raises(BackendError, match="failed to set MSR"):
        b.start()
        s = wait_state(b, {VMState.EXITED, VMState.FAILED}, timeout=20)
        raise BackendError(s.error or str(s))
    assert b.accel == "kvm"
