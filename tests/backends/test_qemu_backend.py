"""QemuBackend against real QEMU VMs (TCG here: /dev/kvm hangs guests on this kind of machine).

Each test boots the cached test image (host_bridge.images.testimage) with small static C programs in it
(tests/support/vm.py). Every VM carries an owner tag starting with ``pytest-<pid>-``; the autouse fixture
asserts that no QEMU process with that prefix is left after each test (and kills any, so that one failure
does not leak processes into the rest of the run).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from boinc_guest.protocol import Finish, decode_status

from host_bridge.backends.base import Backend, BackendError, ConsoleEndpoints, TaskSpec, VMState
from host_bridge.backends.qemu import (
    AGENT_FILES,
    EXIT_FILE,
    QemuBackend,
    kernel_memory_bytes,
    minimum_memory_mb,
    name_arg,
    safe_tag,
    share_is_virtfs_mapped,
    sweep_state_dirs,
)
from host_bridge.backends.qemu import accel as qemu_accel
from host_bridge.backends.qemu import backend as qemu_backend
from host_bridge.backends.qemu.settings import QemuSettings
from host_bridge.exitcodes import ExitCode
from host_bridge.images.parts import VMImage
from host_bridge.images.testimage import ensure_test_image
from host_bridge.share import GuestFileRefused, Share
from tests.support.backends import Made as BaseMade
from tests.support.images import BUSYBOX
from tests.support.paths import ROOT
from tests.support.vm import (
    GUEST_HOST_MOUNT,
    build_guest_programs,
    kill_all,
    own_qemu_processes,
    read_int,
    tag_prefix,
)
from tests.support.wait import wait_for

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


@dataclass(frozen=True)
class VMTask:
    """A task for the QEMU backend: its spec and its typed settings."""

    spec: TaskSpec
    settings: QemuSettings


class Made(BaseMade[QemuBackend]):
    def share(self, t: VMTask) -> Share:
        """The task's share, opened as the runtime does (9p-mapped unless the security model is none)."""
        return self.open_share(t.spec.share, virtfs_mapped=share_is_virtfs_mapped(t.settings.share_security))

    def create(self, b: QemuBackend, t: VMTask) -> QemuBackend:
        b.create(t.spec, self.share(t))
        return b


@pytest.fixture
def backends():
    made = Made()
    yield made
    made.close()


def make_task(
    image: VMImage,
    share: Path,
    argv: tuple[str, ...],
    tag: str,
    *,
    settings: dict[str, Any] | None = None,
    **kw,
) -> VMTask:
    """A task on the test image under TCG; ``settings`` adds or replaces QemuSettings fields."""
    fields: dict[str, Any] = {
        "kernel": image.kernel,
        "initrd": image.initrd,
        "accel": "tcg",
        **(settings or {}),
    }
    spec = TaskSpec(name=tag, argv=argv, share=share, owner_tag=tag_prefix() + tag, **kw)
    return VMTask(spec, QemuSettings(**fields))


def new_backend(backends: Made, task: VMTask) -> QemuBackend:
    b = QemuBackend(task.settings)
    backends.append(b)
    return backends.create(b, task)


def wait_state(b: QemuBackend, states: set[VMState], timeout: float = BOOT):
    def check():
        s = b.poll()
        return s if s.state in states else None

    return wait_for(check, timeout, f"state in {states}", interval=0.1)


ENDED = {VMState.EXITED, VMState.FAILED}


def run_to_end(b: QemuBackend, timeout: float = BOOT):
    """Start the VM and wait until it has ended (the app exited, or the VM failed): its last status."""
    b.start()
    return wait_state(b, ENDED, timeout)


def test_protocol_and_errors(tmp_path: Path, image: VMImage, backends: Made):
    b = QemuBackend()
    assert isinstance(b, Backend)
    assert b.poll().state is VMState.ABSENT

    def create(**settings: Any) -> None:
        task = VMTask(TaskSpec(name="t", argv=("x",), share=tmp_path), QemuSettings(**settings))
        backends.create(QemuBackend(task.settings), task)

    with pytest.raises(BackendError, match="vm_kernel: /nonexistent/vmlinux"):
        create(kernel=Path("/nonexistent/vmlinux"))
    with pytest.raises(BackendError, match="no VM image"):
        create()
    with pytest.raises(BackendError, match="inside the shared folder"):
        create(kernel=image.kernel, state_dir=tmp_path / "state")
    with pytest.raises(
        BackendError, match="vm_share_security must be one of mapped-xattr, mapped-file, none"
    ):
        create(kernel=image.kernel, share_security="passthrough")
    with pytest.raises(BackendError, match="virtfs_mapped=True for vm_share_security none: this is a bug"):
        task = VMTask(TaskSpec(name="t", argv=("x",), share=tmp_path), QemuSettings(share_security="none"))
        with Share(tmp_path, virtfs_mapped=True) as wrong:
            QemuBackend(task.settings).create(task.spec, wrong)
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
    assert b.share is backends.shares[-1]  # one share per task: the runtime's
    assert b.console() == ConsoleEndpoints()  # nothing forwarded to a QEMU guest
    backends.shares[-1].copy_in(src, "in.dat")  # the runtime copies the inputs
    s = run_to_end(b)
    assert s.state is VMState.EXITED, s
    assert s.exit_code == 7
    assert s.cpu_time > 0
    assert (share / "hello_out.txt").read_text() == 'hi w\u00e9rld "q" /boinc/shared\n'
    assert (share / "out.txt").read_text() == "stdout line\n"
    # The VM powered itself off after the app ended.
    wait_for(lambda: not own_qemu_processes(name_arg(b.cfg.tag)), 10, what="VM power-off")
    state_dir = b.cfg.state_dir
    assert (state_dir / "serial.log").exists()
    b.cleanup()
    b.cleanup()  # idempotent
    assert b.poll().state is VMState.ABSENT
    assert not state_dir.exists()
    assert sorted(p.name for p in share.iterdir()) == ["hello_out.txt", "hello_prog", "in.dat", "out.txt"]
    assert b.share.read("hello_out.txt", 100).startswith(b"hi ")  # cleanup leaves the share open


@pytest.mark.parametrize("network", [False, True])
def test_guest_devices_entropy_and_network_only_when_asked(
    tmp_path: Path, image: VMImage, backends: Made, network: bool
):
    """The guest's random pool is fed by the host (virtio-rng: no boot-time wait for entropy); the network
    driver is loaded and eth0 exists only for a task with network access, and then it works: the guest
    fetches a page from an HTTP server on the host's loopback (QEMU's user-mode network: the gateway
    address is the host), with a default route and a resolv.conf naming QEMU's DNS."""
    import http.server
    import threading

    from host_bridge.backends.qemu.backend import GUEST_DNS, GUEST_GATEWAY

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "page").write_text("from the host\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    share = tmp_path / "share"
    share.mkdir()
    url = f"http://{GUEST_GATEWAY}:{server.server_address[1]}/page"
    # (no wget -T: the timeout option crashes busybox-static's wget; the wait below bounds the test)
    script = (
        "cat /sys/class/misc/hw_random/rng_current > rng.txt; ls /sys/class/net > nets.txt; "
        f"cat /etc/resolv.conf > dns.txt; wget -q -O got.txt {url}; echo $? > wget.txt"
    )
    task = make_task(image, share, ("/bin/sh", "-c", script), f"dev{int(network)}", network=network)
    b = new_backend(backends, task)
    try:
        s = run_to_end(b)
    finally:
        server.shutdown()
        server.server_close()
    assert s.state is VMState.EXITED and s.exit_code == 0, s
    assert (share / "rng.txt").read_text().startswith("virtio_rng")
    nets = (share / "nets.txt").read_text().split()
    assert "lo" in nets
    assert ("eth0" in nets) is network
    if network:
        assert (share / "wget.txt").read_text().strip() == "0"
        assert (share / "got.txt").read_text() == "from the host\n"
        assert (share / "dns.txt").read_text() == f"nameserver {GUEST_DNS}\n"
    else:
        assert (share / "wget.txt").read_text().strip() != "0"


def test_a_host_tree_as_the_root_vm_pyroot(tmp_path: Path, image: VMImage, backends: Made):
    """``vm_pyroot``: a host folder exported read-only over 9p (tag pyroot) is the app's root. The agent
    (as /init) mounts it, binds the share, proc, sys, dev and a tmpfs /tmp into it, and runs the app
    chrooted there: the app sees the tree's files, writes its output to the share, cannot write the tree."""
    tree = tmp_path / "tree"
    for d in ("bin", "boinc/shared", "proc", "sys", "dev", "tmp"):
        (tree / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, tree / "bin" / "busybox")  # busybox-static: runs in any root
    (tree / "bin" / "sh").symlink_to("busybox")
    (tree / "marker").write_text("the tree's own file\n")
    share = tmp_path / "share"
    share.mkdir()
    script = (
        "cat /marker > seen.txt; /bin/busybox ls /proc/self > /dev/null && echo proc >> seen.txt; "
        "echo tmp > /tmp/x && echo tmp >> seen.txt; "
        "echo no > /marker 2> /dev/null || echo read-only >> seen.txt"
    )
    task = make_task(image, share, ("/bin/sh", "-c", script), "pyroot", settings={"pyroot": tree})
    b = new_backend(backends, task)
    s = run_to_end(b)
    assert s.state is VMState.EXITED and s.exit_code == 0, s
    assert (share / "seen.txt").read_text() == "the tree's own file\nproc\ntmp\nread-only\n"
    assert (tree / "marker").read_text() == "the tree's own file\n"


OWN_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/boot.list); do insmod /lib/modules/$m.ko; done
mkdir -p /boinc/shared
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 shared /boinc/shared; do
  i=$((i+1)); [ $i -gt 100 ] && poweroff -f; usleep 50000
done
echo "own init ran" > /boinc/shared/own_init.txt
exec /sbin/boinc-agent /boinc/shared
"""


def test_an_images_own_init_can_start_the_agent_with_the_share(
    tmp_path: Path, image: VMImage, backends: Made
):
    """An image whose own /init mounts the share starts the agent as ``boinc-agent SHARE`` (docs/qemu.md):
    the test image's initramfs with a second cpio archive on top whose /init is such a script (the
    kernel unpacks both, the later entry replacing the agent's link)."""
    import gzip

    from host_bridge.images import parts

    initrd = tmp_path / "own-init.cpio.gz"
    extra = gzip.compress(parts._cpio_newc([("init", 0o100755, OWN_INIT.encode())]), mtime=0)
    initrd.write_bytes(image.initrd.read_bytes() + extra)
    share = tmp_path / "share"
    share.mkdir()
    task = make_task(
        image, share, ("/bin/sh", "-c", "echo ran > out.txt; exit 5"), "owninit", settings={"initrd": initrd}
    )
    b = new_backend(backends, task)
    s = run_to_end(b)
    assert s.state is VMState.EXITED and s.exit_code == 5, s
    assert (share / "own_init.txt").read_text() == "own init ran\n"
    assert (share / "out.txt").read_text() == "ran\n"


def test_the_console_stays_within_bounds_on_the_hosts_disk(
    tmp_path: Path, image: VMImage, backends: Made, monkeypatch: pytest.MonkeyPatch, caplog
):
    """The guest writes the console (here an app printing without <stdout_filename>): QEMU appends to
    serial.log and the backend's poll empties it past its bound, keeping the end in serial.log.old, so a
    chatty or hostile guest cannot fill the volunteer's disk; the excerpts still show the last lines."""
    from host_bridge.backends.qemu import console

    monkeypatch.setattr(console, "CONSOLE_FILE_MAX", 256 << 10)
    monkeypatch.setattr(console, "CONSOLE_KEEP", 16 << 10)
    monkeypatch.setattr(qemu_backend, "CONSOLE_CHECK_EVERY", 0.05)
    share = tmp_path / "share"
    share.mkdir()
    # ~3 MiB of console lines in bursts, then a last line and a failing exit (the excerpt is logged)
    script = (
        "i=0; while [ $i -lt 48 ]; do i=$((i+1)); "
        "dd if=/dev/zero bs=64k count=1 2>/dev/null | tr '\\0' x; echo; sleep 0.05; done; "
        "echo the-last-line; exit 3"
    )
    b = new_backend(backends, make_task(image, share, ("/bin/sh", "-c", script), "console"))
    b.start()
    sizes = []

    def ended():
        s = b.poll()
        with contextlib.suppress(OSError):
            sizes.append(b.serial_log.stat().st_size)
        return s if s.state in ENDED else None

    s = wait_for(ended, BOOT + 60, "the app to end", interval=0.05)
    assert s.state is VMState.EXITED and s.exit_code == 3, s
    assert max(sizes) < 2 << 20, max(sizes)  # bounded: ~3 MiB written, never more than 2 MiB on disk
    old = b.serial_log.with_name("serial.log.old")
    assert old.stat().st_size == 16 << 10
    assert any("older console lines dropped" in r.getMessage() for r in caplog.records)
    _, tail = console.console_excerpt(b.serial_log, 5, 4096)
    assert "the-last-line" in tail, tail


def test_console_excerpts_read_the_kept_end_and_the_new_file(tmp_path: Path):
    """After bound_console emptied serial.log, the excerpts join serial.log.old's kept end and the new
    lines: a kernel panic written just before the file was emptied is still quoted."""
    from host_bridge.backends.qemu import console

    log = tmp_path / "serial.log"
    log.write_bytes(
        b"x" * (console.CONSOLE_FILE_MAX + 10) + b"\nKernel panic - not syncing: oops\nlast before\n"
    )
    assert console.bound_console(log) > console.CONSOLE_FILE_MAX - console.CONSOLE_KEEP
    assert log.stat().st_size == 0 and (tmp_path / "serial.log.old").stat().st_size == console.CONSOLE_KEEP
    assert console.bound_console(log) == 0  # within bounds now
    with open(log, "ab") as f:
        f.write(b"first after\n")
    telling, tail = console.console_excerpt(log, 3, 4096)
    assert telling == ["Kernel panic - not syncing: oops"]
    assert tail[-2:] == ["last before", "first after"]
    assert console.tail(log, 2) == "last before | first after"


def console_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "[VM console]" in r.getMessage()]


def test_missing_program_and_symlinked_task_file(
    tmp_path: Path, image: VMImage, backends, caplog: pytest.LogCaptureFixture
):
    share = tmp_path / "share"
    share.mkdir()
    secret = tmp_path / "host_secret"
    secret.write_text("keep")
    # A guest-planted link at the task file's name is replaced, never followed.
    (share / "boinc_task.json").symlink_to(secret)
    b = new_backend(backends, make_task(image, share, ("no_such_program",), "missing"))
    caplog.set_level(logging.WARNING, logger="host_bridge.backends.qemu")
    s = run_to_end(b)
    assert s.state is VMState.EXITED and s.exit_code == 127, s
    assert s.app_started
    assert secret.read_text() == "keep"
    # The reason was only on the VM's console: it is logged (stderr.txt), once, marked as the console's.
    for _ in range(3):
        b.poll()
    logged = console_records(caplog)
    assert len(logged) == 1, logged
    assert "the app exited with status 127" in logged[0]
    assert "[VM console] boinc-agent: cannot run no_such_program: No such file or directory" in logged[0]
    assert len(logged[0].splitlines()) <= 2 + 20 + 2  # header, at most 20 lines (+ telling ones), end
    b.cleanup()
    assert len(console_records(caplog)) == 1


def test_app_killed_by_signal_logs_its_console(
    tmp_path: Path, image: VMImage, backends, caplog: pytest.LogCaptureFixture
):
    """An app killed by a signal (here its own SIGKILL, as the OOM killer would) gets the console's last
    lines logged, its stderr among them (no stderr file named: it goes to the console)."""
    share = tmp_path / "share"
    share.mkdir()
    script = "echo 'worker: about to die' >&2; kill -KILL $$"
    b = new_backend(backends, make_task(image, share, ("sh", "-c", script), "signal"))
    caplog.set_level(logging.WARNING, logger="host_bridge.backends.qemu")
    s = run_to_end(b)
    assert s.state is VMState.EXITED and s.exit_code == -9, s
    logged = console_records(caplog)
    assert len(logged) == 1 and "killed by signal 9" in logged[0], logged
    assert "[VM console] worker: about to die" in logged[0]


def test_pause_quit_and_resume_from_app_checkpoint(tmp_path: Path, image: VMImage, backends):
    share = tmp_path / "share"
    share.mkdir()
    task = make_task(image, share, ("counter", "60", "100", "3"), "counter")
    b = new_backend(backends, task)
    assert b.poll().state is VMState.CREATED
    b.start()
    # The VM runs but boots (seconds under TCG): the app has not started yet.
    s = b.poll()
    assert s.state is VMState.RUNNING and s.app_started is False, s
    progress = share / "progress.txt"
    wait_for(lambda: read_int(progress) >= 8, BOOT, what="progress >= 8")
    s = b.poll()
    assert s.state is VMState.RUNNING and s.app_started is True, s

    # Pause really stops the guest: no progress for 2 s, then it continues.
    b.pause()
    b.pause()  # idempotent
    s = b.poll()
    assert s.state is VMState.PAUSED and s.app_started, s
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
    s = wait_state(b, ENDED, timeout=BOOT + 30)
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
    sdk = ROOT / "guest_sdk" / "c"
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
    shutil.copy(sdk_worker, share / "sdkworker")  # run from the share, not from the image
    b.start()
    seen: list[float] = []
    status_file = share / "boinc_status.msgpack"
    deadline = time.monotonic() + BOOT + 20
    while time.monotonic() < deadline:
        if status_file.exists():
            st = decode_status(status_file.read_bytes())
            if not seen or st.fraction_done != seen[-1]:
                seen.append(st.fraction_done)
        if b.poll().state in ENDED:
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
    root = ROOT
    tag = "pdeath"
    script = f"""
import sys, time
sys.path[:0] = [{str(root)!r}, {str(root / "guest_sdk" / "python")!r}]
from pathlib import Path
from host_bridge.backends.base import TaskSpec
from host_bridge.backends.qemu import QemuBackend, QemuSettings
from host_bridge.share import Share
b = QemuBackend(QemuSettings(kernel=Path({str(image.kernel)!r}), initrd=Path({str(image.initrd)!r}),
                             accel="tcg"))
b.create(TaskSpec(name="t", argv=("counter", "1000", "100"), share=Path({str(share)!r}),
                  owner_tag={tag_prefix() + tag!r}), Share(Path({str(share)!r}), virtfs_mapped=True))
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
        t = make_task(image, share, ("counter",), tag)
        t = replace(t, spec=replace(t.spec, name="t"))
        with Share(share, virtfs_mapped=True) as opened:
            b = QemuBackend(t.settings)
            b.create(t.spec, opened)
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
    real = shutil.which("qemu-system-x86_64")
    assert real
    wrapper = tmp_path / f"qemu-broken-kvm-{mode}"
    wrapper.write_text(
        BROKEN_KVM_QEMU.replace('REAL="$1"; MODE="$2"; shift 2', f'REAL="{real}"; MODE={mode}')
    )
    wrapper.chmod(0o755)
    # the probe's verdict on a host whose KVM passes the firmware probe (this machine's may not)
    monkeypatch.setattr(qemu_backend, "choose_accel", lambda qemu, requested="auto": "kvm")
    monkeypatch.delenv("BOINC_VM_ACCEL", raising=False)
    # a private accel-probe.json: the shared cache's is read-modify-written without a lock by every QEMU
    # test run on this machine (other worktrees' too), which could drop this test's entry before its check
    monkeypatch.setenv("BOINC_VM_CACHE", str(tmp_path / "cache"))
    share = tmp_path / "share"
    share.mkdir()
    prog = share / "hello_prog"
    shutil.copy(image_programs["/bin/hello"], prog)
    # boot_timeout: the hang is noticed after it, and the TCG retry must boot within it too, on a
    # loaded 2-core machine as well (6 s failed there while other VMs ran)
    settings = {"qemu": str(wrapper), "boot_timeout": 15.0, "accel": "auto"}
    task = make_task(image, share, (str(prog), "x", "3"), mode, settings=settings)
    b = new_backend(backends, task)
    b.start()
    s = wait_state(b, ENDED, timeout=BOOT + 10)
    assert s.state is VMState.EXITED, s
    assert s.exit_code == 3
    assert b.accel == "tcg"
    assert (share / "hello_out.txt").read_text().startswith("hi x ")
    assert qemu_accel._load_accel_file().get(qemu_accel._accel_key(str(wrapper))) == "tcg"


def test_vm_accel_kvm_does_not_fall_back(tmp_path: Path, image: VMImage, image_programs, backends):
    """A job that insists on KVM (vm_accel=kvm) gets its failure reported, not a silent TCG VM."""
    real = shutil.which("qemu-system-x86_64")
    assert real
    wrapper = tmp_path / "qemu-broken-kvm"
    wrapper.write_text(BROKEN_KVM_QEMU.replace('REAL="$1"; MODE="$2"; shift 2', f'REAL="{real}"; MODE=crash'))
    wrapper.chmod(0o755)
    share = tmp_path / "share"
    share.mkdir()
    task = make_task(image, share, ("/bin/hello",), "k", settings={"qemu": str(wrapper), "accel": "kvm"})
    b = new_backend(backends, task)
    with pytest.raises(BackendError, match="failed to set MSR"):
        b.start()
        s = wait_state(b, ENDED, timeout=20)
        raise BackendError(s.error or str(s))
    assert b.accel == "kvm"


# -- boot failures: the message says why ------------------------------------------------------------------


def test_kernel_panic_message_leads_with_the_reason(
    tmp_path: Path, image: VMImage, backends, caplog: pytest.LogCaptureFixture
):
    """A boot that panics: the console's last lines are the call trace's tail ("ret_from_fork+0x22/0x30 |
    </TASK> | Kernel Offset: disabled"); the FAILED message puts the panic's reason first (and an initrd
    that is not an archive says so), app_started is False (the image is broken, not the app), and the
    console is logged once."""
    garbage = tmp_path / "not-an-archive.img"
    garbage.write_bytes(bytes(range(256)) * 400)
    cases = [
        ("rdinit", image.initrd, "rdinit=/no/such/init", ["VFS: Unable to mount root fs"]),
        ("garbage", garbage, "", ["invalid magic at start of compressed archive", "VFS: Unable to mount"]),
    ]
    caplog.set_level(logging.WARNING, logger="host_bridge.backends.qemu")
    for name, initrd, cmdline, expected in cases:
        share = tmp_path / name
        share.mkdir()
        task = make_task(
            image, share, ("true",), "panic-" + name, settings={"initrd": initrd, "cmdline": cmdline}
        )
        b = new_backend(backends, task)
        caplog.clear()
        s = run_to_end(b)
        assert s.state is VMState.FAILED and s.app_started is False, s
        console = s.error.split("before the app finished: ", 1)[1]
        lines = console.split(" | ")
        assert "Kernel panic - not syncing" in console, s.error
        for i, text in enumerate(expected):  # the telling lines first, in their order
            assert text in lines[i], (text, lines)
        # the last console lines alone would not have said it
        tail = (b.serial_log.read_text(errors="replace").strip().splitlines())[-5:]
        assert not any("Kernel panic" in ln for ln in tail), tail
        logged = console_records(caplog)
        assert len(logged) == 1 and "Kernel panic - not syncing" in logged[0], logged
        b.cleanup()


def test_memory_too_small_for_the_kernel_is_refused_at_create(tmp_path: Path, image: VMImage, backends):
    """vm_memory_mb 16 or 64 with a ~65 MB vmlinux loaded up to 74 MiB: QEMU printed nothing and the
    backend waited the whole boot timeout. create() refuses it now (permanent: the job file's mistake),
    naming the setting, the sizes and the minimum."""
    need, _why = minimum_memory_mb(image.kernel, image.initrd)
    assert 64 < need <= 96  # 96 MiB boots this kernel (and 84 does not: it panics)
    share = tmp_path / "share"
    share.mkdir()
    for mb in (16, 64, need - 1):
        t = make_task(image, share, ("true",), "mem", memory_mb=mb)
        with pytest.raises(BackendError) as info:
            backends.create(QemuBackend(t.settings), t)
        msg = str(info.value)
        assert not info.value.temporary
        assert f"vm_memory_mb {mb} is too small" in msg and f"at least {need} MiB" in msg, msg
        assert str(image.kernel) in msg and str(image.initrd) in msg and "MiB" in msg
    new_backend(backends, make_task(image, share, ("true",), "mem", memory_mb=need))
    new_backend(backends, make_task(image, share, ("true",), "mem"))  # 0: the default, 256 MiB
    # The rule's parts: an ELF kernel's physical load end, a bzImage's init_size, else the file size.
    top, how = kernel_memory_bytes(image.kernel)
    assert top > image.kernel.stat().st_size and "ELF" in how
    bz = tmp_path / "bzImage"
    header = bytearray(0x1000)
    header[0x202:0x206] = b"HdrS"
    header[0x206:0x208] = (0x020F).to_bytes(2, "little")
    header[0x260:0x264] = (40 << 20).to_bytes(4, "little")
    bz.write_bytes(bytes(header))
    assert kernel_memory_bytes(bz)[0] == 40 << 20
    other = tmp_path / "other"
    other.write_bytes(b"x" * 5000)
    assert kernel_memory_bytes(other)[0] == 5000
    assert minimum_memory_mb(other, None)[0] == 1 + 8


def test_boot_timeout_with_a_silent_kernel_says_so(
    tmp_path: Path, image: VMImage, backends, monkeypatch, caplog: pytest.LogCaptureFixture
):
    """The trial's case: 64 MiB for a kernel loaded up to 74 MiB (the create() check switched off here):
    QEMU runs, the kernel prints nothing, and the boot timeout said "last console lines: " (empty). The
    message now says the kernel printed nothing and why that happens; app_started stays False."""
    monkeypatch.setattr(qemu_backend, "minimum_memory_mb", lambda kernel, initrd: (0, ""))
    share = tmp_path / "share"
    share.mkdir()
    task = make_task(image, share, ("true",), "silent", settings={"boot_timeout": 4.0}, memory_mb=64)
    b = new_backend(backends, task)
    caplog.set_level(logging.WARNING, logger="host_bridge.backends.qemu")
    b.start()
    s = b.poll()
    assert s.state is VMState.RUNNING and s.app_started is False, s
    s = wait_state(b, {VMState.FAILED, VMState.EXITED}, timeout=30)
    assert s.state is VMState.FAILED and s.app_started is False, s
    assert "did not start the app within 4 s" in s.error
    assert "the kernel printed nothing on the console" in s.error and "vm_memory_mb" in s.error, s.error
    assert "last console lines: " not in s.error
    assert b.serial_log.read_bytes() == b""
    assert [r for r in caplog.records if "console (serial.log) is empty" in r.getMessage()]


# -- a forged exit file is the guest's failure, not the environment's -------------------------------------


def test_invalid_exit_file_ends_the_task_as_failed(tmp_path: Path, image: VMImage, backends):
    """The guest can write anything at boinc_agent_exit. "garbage" gave FAILED (a temporary exit, retried
    forever); a file that does not parse is the guest's doing: EXITED with EXIT_CHILD_FAILED and the
    reason in ``error``. The real agent's "error ..." line stays FAILED."""
    share = tmp_path / "share"
    share.mkdir()
    # the guest itself writes the forged file into the 9p mount (the app's folder is the agent's relayed
    # tmpfs, which keeps the agent's file names out), atomically as the agent does (a plain ">" let a poll
    # see it empty, which is refused too, with b'' as the reason), then lingers (the agent would overwrite it)
    forge = f"printf 'garbage\\n' > forged.tmp && mv forged.tmp {EXIT_FILE}"
    script = f"cd {GUEST_HOST_MOUNT} && {forge}; sleep 600"
    b = new_backend(backends, make_task(image, share, ("sh", "-c", script), "forged"))
    s = run_to_end(b)
    assert s.state is VMState.EXITED and s.exit_code == int(ExitCode.EXIT_CHILD_FAILED), s
    assert s.error == f"the guest wrote an invalid {EXIT_FILE}: b'garbage\\n'; refused"
    exit_file = share / EXIT_FILE
    for content in (b"", b"exit 999\n", b"signal 0\n", b"exit 1 2\n", b"\xff" * 5000):
        exit_file.write_bytes(content)
        s = b.poll()
        assert s.state is VMState.EXITED and s.exit_code == 195 and "invalid" in s.error, (content, s)
    exit_file.unlink()
    exit_file.symlink_to(tmp_path / "elsewhere")
    s = b.poll()
    assert s.state is VMState.EXITED and s.exit_code == 195 and "(symlink)" in s.error, s
    exit_file.unlink()
    exit_file.write_bytes(b"exit 3\n")
    s = b.poll()
    assert s.state is VMState.EXITED and s.exit_code == 3 and s.error == "", s
    exit_file.write_bytes(b"error cannot open boinc_task.json: No such file or directory\n")
    s = b.poll()
    assert s.state is VMState.FAILED and "could not run the app: cannot open boinc_task.json" in s.error, s


# -- 9p mapped security models: guest links and special files are plain host files + metadata ------------

# The links and special files go straight into the 9p mount (the relay copies regular files only); the
# regular file is written in the app's folder and reaches the share through the relay.
SPECIAL_FILES = (
    f"ln -s /etc/passwd {GUEST_HOST_MOUNT}/out && ln -s /etc/passwd {GUEST_HOST_MOUNT}/boinc_status.msgpack "
    f"&& mkfifo {GUEST_HOST_MOUNT}/fifo && mknod {GUEST_HOST_MOUNT}/dev c 1 3 && echo regular > reg.txt"
)


@pytest.mark.parametrize("security", ["mapped-xattr", "mapped-file"])
def test_guest_symlinks_and_special_files_are_refused(
    tmp_path: Path, image: VMImage, backends, security: str
):
    """Under 9p mapped-xattr (the default) or mapped-file a guest's symlink out -> /etc/passwd is, on the
    host, a regular 11-byte file holding "/etc/passwd", its FIFO and device node empty regular files.
    They were copied back as data (the job finished 0); now they are refused as on a real host."""
    share = tmp_path / "share"
    share.mkdir()
    task = make_task(
        image,
        share,
        ("sh", "-c", SPECIAL_FILES),
        "special-" + security,
        settings={"share_security": security},
    )
    b = new_backend(backends, task)
    assert b.share.virtfs_mapped
    s = run_to_end(b)
    assert s.state is VMState.EXITED and s.exit_code == 0, s
    out = share / "out"
    assert not out.is_symlink() and out.read_bytes() == b"/etc/passwd"  # what the host sees
    assert os.path.isfile(share / "fifo") and os.path.isfile(share / "dev")
    dest = tmp_path / "copied"
    with pytest.raises(GuestFileRefused, match="it is a symbolic link"):
        b.share.copy_out("out", dest, 1 << 20)  # the runtime copies the outputs through this share
    assert not dest.exists()
    for name, reason in (("boinc_status.msgpack", "symlink"), ("fifo", "not a regular file"),
                         ("dev", "not a regular file")):  # fmt: skip
        with pytest.raises(GuestFileRefused) as info:
            b.share.read(name, 1 << 20)
        assert info.value.reason == reason, str(info.value)
    with pytest.raises(GuestFileRefused, match="a device"):
        b.share.copy_out("dev", dest, 1 << 20)
    b.share.copy_out("reg.txt", dest, 1 << 20)
    assert dest.read_text() == "regular\n"


def test_mapped_file_guest_symlink_at_the_task_file_does_not_break_the_next_start(
    tmp_path: Path, image: VMImage, backends
):
    """Under mapped-file a guest's symlink leaves .virtfs_metadata/NAME saying "symlink"; the host's
    rename of a new file over the name does not touch it, so the next VM saw the host's new
    boinc_task.json as a symlink ("cannot open boinc_task.json: Too many levels of symbolic links":
    FAILED, retried forever). The host's writes drop the stale metadata."""
    share = tmp_path / "share"
    share.mkdir()
    script = f"cd {GUEST_HOST_MOUNT} && rm boinc_task.json && ln -s /nowhere boinc_task.json"  # the 9p mount
    task = make_task(image, share, ("sh", "-c", script), "stale", settings={"share_security": "mapped-file"})
    b = new_backend(backends, task)
    s = run_to_end(b)
    assert s.state is VMState.EXITED and s.exit_code == 0, s
    meta = share / ".virtfs_metadata" / "boinc_task.json"
    assert "virtfs.mode=41471" in meta.read_text()  # S_IFLNK | 0777: the guest's symlink
    wait_for(lambda: not own_qemu_processes(name_arg(b.cfg.tag)), 10, what="VM power-off")
    b.start()  # a restart of the same task: the task file is written again
    s = wait_state(b, ENDED)
    assert s.state is VMState.EXITED and s.exit_code == 0, s


def test_share_is_virtfs_mapped():
    assert share_is_virtfs_mapped(None) and share_is_virtfs_mapped("")  # the default model, mapped-xattr
    assert share_is_virtfs_mapped("mapped-xattr")
    assert share_is_virtfs_mapped("mapped-file")
    assert not share_is_virtfs_mapped("none")
    assert share_is_virtfs_mapped(QemuSettings().share_security)


# -- leftover state folders -------------------------------------------------------------------------------


def test_create_sweeps_state_folders_of_dead_vms(
    tmp_path: Path, image: VMImage, backends, monkeypatch, caplog: pytest.LogCaptureFixture
):
    """A bridge killed with SIGKILL leaves its VM's state folder (/tmp/boinc-qemu-UID/TAG) behind, and the
    client then deletes the slot: nothing would ever remove it. create() removes the folders whose
    qemu.pid names no live QEMU and that were not modified for a day; live VMs' folders, fresh folders
    and anything that is not a plain folder of ours stay."""
    run = Path(tempfile.mkdtemp(prefix="bq-sweep-", dir="/tmp"))  # short: the QMP socket path goes there
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    base = run / f"boinc-qemu-{os.getuid()}"
    base.mkdir(mode=0o700)
    old = time.time() - 2 * 86400
    dead = subprocess.Popen(["true"])
    dead.wait()
    live_qemu = subprocess.Popen(
        [shutil.which("qemu-system-x86_64") or "qemu-system-x86_64", "-machine", "none", "-S", "-display",
         "none", "-nodefaults", "-no-user-config", "-name", name_arg("sweep-marker")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        layout = {
            "old-dead": str(dead.pid),
            "old-not-qemu": str(os.getpid()),  # a live process, but not QEMU (pid reused)
            "old-no-pidfile": None,
            "old-garbage-pid": "not a pid",
            "old-live-qemu": str(live_qemu.pid),
            "fresh-dead": str(dead.pid),
            "old-recent-file": str(dead.pid),
            "sweep-marker": str(dead.pid),  # wrong pidfile, but a live QEMU carries its -name marker
            # a disk overlay whose task's share still exists (a task quit by the client for days): kept
            "old-share-alive": str(dead.pid),
            "old-share-gone": str(dead.pid),  # an overlay whose share was deleted with the slot
            "old-share-alive-no-overlay": str(dead.pid),  # nothing worth keeping
        }
        alive_share = tmp_path / "slot-alive" / "shared"
        alive_share.mkdir(parents=True)
        gone_share = tmp_path / "slot-gone" / "shared"
        gone_share.mkdir(parents=True)
        for name, pid in layout.items():
            d = base / name
            d.mkdir()
            (d / "serial.log").write_text("console\n")
            if pid is not None:
                (d / "qemu.pid").write_text(pid + "\n")
            if name.startswith("old-share-"):
                sh = gone_share if name == "old-share-gone" else alive_share
                st = sh.stat()
                (d / "share.id").write_text(f"{st.st_dev} {st.st_ino} {sh}\n")
                if "no-overlay" not in name:
                    (d / "overlay.qcow2").write_bytes(b"QFI\xfb")
            if name != "fresh-dead":
                for f in d.iterdir():
                    if not (name == "old-recent-file" and f.name == "serial.log"):
                        os.utime(f, (old, old))
                os.utime(d, (old, old))
        (base / "old-file").write_text("not a folder")
        os.utime(base / "old-file", (old, old))
        target = tmp_path / "elsewhere"
        target.mkdir()
        os.utime(target, (old, old))
        (base / "old-link").symlink_to(target)
        shutil.rmtree(gone_share.parent)  # the client deleted the slot
        wait_for(lambda: psutil.Process(live_qemu.pid).cmdline()[-1:] == [name_arg("sweep-marker")], 10,
                 what="QEMU up")  # fmt: skip
        caplog.set_level(logging.INFO, logger="host_bridge.backends.qemu")
        share = tmp_path / "share"
        share.mkdir()
        b = new_backend(backends, make_task(image, share, ("true",), "sweeper"))
        assert b.cfg.state_dir.parent == base
        left = sorted(p.name for p in base.iterdir())
        assert left == sorted(
            [
                "fresh-dead",
                "old-file",
                "old-link",
                "old-live-qemu",
                "old-recent-file",
                "old-share-alive",
                "sweep-marker",
            ]
        ), left
        assert target.exists()
        logged = " ".join(r.getMessage() for r in caplog.records)
        gone = ("old-dead", "old-not-qemu", "old-no-pidfile", "old-garbage-pid", "old-share-gone")
        for name in (*gone, "old-share-alive-no-overlay"):
            assert str(base / name) in logged
        # the sweep never takes the caller's own folder, however old
        own = base / b.cfg.tag
        own.mkdir()
        os.utime(own, (old, old))
        assert sweep_state_dirs(base, keep=b.cfg.tag) == []
        assert own.exists()
    finally:
        live_qemu.kill()
        live_qemu.wait(10)
        shutil.rmtree(run, ignore_errors=True)


# -- the single-file app version -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "what"),
    [
        ({"kernel": None, "initrd": None}, "the image builtin:test"),
        ({"builtin_python": True}, "<vm_python/>"),
    ],
)
def test_host_built_images_are_refused_in_the_bundle(
    tmp_path: Path, image: VMImage, backends: Made, monkeypatch, settings, what
):
    """builtin:test and <vm_python/> build on the host from the project's sources: the single-file app
    version does not carry them, so they fail at once and for good (not a temporary exit retried
    every time), saying what to ship instead."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    share = tmp_path / "share"
    share.mkdir()
    task = make_task(image, share, ("true",), "bundled", settings=settings)
    if "kernel" in settings:
        task = replace(task, spec=replace(task.spec, image="builtin:test"))
    with pytest.raises(BackendError) as info:
        backends.create(QemuBackend(task.settings), task)
    assert what in str(info.value) and "vm_kernel + vm_initrd" in str(info.value)
    assert info.value.temporary is False
