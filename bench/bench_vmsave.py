"""Benchmark of whole-VM saves (QEMU backend, TCG here, a 256 MiB guest). Prints figures; asserts nothing.

    .venv/bin/python bench/bench_vmsave.py [--cycles 20] [--checkpoints 5] [--phases]

Each figure beside the bare-QEMU floor measured in the same run (plain qemu-system-x86_64, the same kernel
and initrd, no share, init = ``busybox sleep``, driven over QMP with no backend, an uncompressed stream):
- quit: ``checkpoint()`` (agent handshake, wait for the guest's unmount, stop, migration into an lz4
  stream, fsync + SHA-256 + manifest, QEMU ended) vs the bare stop + migrate to a file + quit;
- restore -> running: ``restore()`` (QEMU started with ``-S -incoming exec:lz4 -d ...``, checksum and
  machine type checked meanwhile, ``cont``) until the in-memory counter app's next count reaches the host
  (the agent mounts the share again and relays the count) vs the bare ``-incoming`` + ``cont`` until QMP
  says running;
- guest pause per periodic checkpoint: ``vm_checkpoint()`` (live migration: QEMU's downtime plus our
  ``cont``) vs a bare QMP stop + cont;
- save size vs the guest's RAM (its size and the non-zero pages QEMU sent), and vs the bare stream;
- N quit-restore cycles on one task (the issue's 20): failures and whether the count ever went back.

``--phases`` also prints where the quit and the restore spend their time (medians per cycle), timed by
wrapping the backend's steps (saving.py, migrate.py, vmsave.py).
"""

from __future__ import annotations

import argparse
import collections
import functools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "guest_sdk" / "python")]

from host_bridge.backends.base import TaskSpec  # noqa: E402
from host_bridge.backends.qemu import (  # noqa: E402
    QemuBackend,
    QemuSettings,
    migrate,
    qemu_binary,
    saving,
    vmsave,
)
from host_bridge.backends.qemu.qmp import qmp_call  # noqa: E402
from host_bridge.images.parts import VMImage  # noqa: E402
from host_bridge.images.testimage import ensure_test_image  # noqa: E402
from host_bridge.share import Share  # noqa: E402
from tests.support.memcounter import build_memcounter, count  # noqa: E402

MEM = 256


class Phases:
    """Time spent in the backend's steps, per quit and per restore (the steps' functions wrapped)."""

    QUIT = (
        ("agent handshake (request -> answer)", saving.SavingMixin, "_handshake"),
        ("unmount seen, stop, migrate command", migrate, "start_save"),
        ("stream written (migration)", migrate, "wait_done"),
        ("fsync + SHA-256, manifest", vmsave, "commit"),
    )
    RESTORE = (
        ("QEMU started (socket there)", QemuBackend, "_launch"),
        ("stream checksum", vmsave, "verify"),
        ("machine type (first QMP answer)", migrate, "default_machine"),
        ("stream loaded (migration)", migrate, "wait_done"),
    )

    def __init__(self) -> None:
        self.now: dict[str, float] = collections.defaultdict(float)
        self.per: dict[str, list[float]] = collections.defaultdict(list)
        for label, owner, name in {(lb, o, n) for lb, o, n in self.QUIT + self.RESTORE if n != "wait_done"}:
            self._wrap(owner, name, label)
        self._wrap(migrate, "wait_done", "")

    def _wrap(self, owner: object, name: str, label: str) -> None:
        f = getattr(owner, name)

        @functools.wraps(f)
        def timed(*a, **k):
            t0 = time.monotonic()
            try:
                return f(*a, **k)
            finally:
                written = "out" in k  # the quit's wait_done is given the stream being written
                key = label or ("stream written (migration)" if written else "stream loaded (migration)")
                self.now[key] += time.monotonic() - t0

        setattr(owner, name, timed)

    def record(self, what: str, total: float) -> None:
        steps = self.QUIT if what == "quit" else self.RESTORE
        for label, _, _ in steps:
            self.per[f"{what}: {label}"].append(self.now.get(label, 0.0))
        self.per[f"{what}: the rest"].append(total - sum(self.now.get(lb, 0.0) for lb, _, _ in steps))
        self.now.clear()

    def report(self) -> None:
        for key, v in self.per.items():
            print(f"  {key:50s} median {statistics.median(v) * 1000:6.1f} ms   max {max(v) * 1000:6.1f} ms")


def wait(cond, timeout: float, interval: float = 0.002) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("timed out")
        time.sleep(interval)
    return time.monotonic() - t0


def bare(img: VMImage, work: Path) -> dict[str, float]:
    """The floor: a bare QEMU booted to a sleeping init, saved and restored over QMP."""
    work.mkdir(parents=True, exist_ok=True)
    sock, stream = work / "q.sock", work / "bare.stream"
    base = [
        qemu_binary(None), "-accel", "tcg", "-m", str(MEM), "-display", "none", "-nodefaults",
        "-no-user-config", "-no-reboot", "-serial", f"file:{work / 'serial.log'}",
        "-qmp", f"unix:{sock},server=on,wait=off", "-kernel", str(img.kernel), "-initrd", str(img.initrd),
        "-append", 'console=ttyS0 quiet panic=-1 rdinit=/bin/sh -- -c "/bin/busybox sleep 100000"',
    ]  # fmt: skip

    def q(cmd: str, args: dict | None = None):
        return qmp_call(sock, cmd, args, 30)

    def migrated() -> bool:
        return (q("query-migrate") or {}).get("status") == "completed"

    def answers() -> bool:  # the socket file exists a moment before QEMU listens on it
        try:
            q("query-status")
            return True
        except Exception:  # qemu.qmp's ConnectError, OSError
            return False

    p = subprocess.Popen(base, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(answers, 15)
        time.sleep(6.0)  # booted, init sleeping
        t0 = time.monotonic()
        q("stop")
        q("cont")
        pause = time.monotonic() - t0
        q("migrate-set-parameters", {"max-bandwidth": 8 << 30})
        t0 = time.monotonic()
        q("stop")
        q("migrate", {"uri": f"exec:cat > {stream}"})
        wait(migrated, 60)
        info = q("query-migrate")
        q("quit")
        p.wait(10)
        quit_s = time.monotonic() - t0
    finally:
        p.kill()
        p.wait(10)
    sock.unlink(missing_ok=True)
    p = subprocess.Popen([*base, "-incoming", "defer"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        t0 = time.monotonic()
        wait(answers, 15)
        q("migrate-incoming", {"uri": f"exec:cat {stream}"})
        wait(migrated, 60)
        q("cont")
        wait(lambda: (q("query-status") or {}).get("running"), 10)
        restore_s = time.monotonic() - t0
        q("quit")
        p.wait(10)
    finally:
        p.kill()
        p.wait(10)
    ram = info.get("ram") or {}
    return {
        "quit": quit_s,
        "restore": restore_s,
        "pause": pause,
        "size": float(stream.stat().st_size),
        "in_use": float(ram.get("normal-bytes", 0)),
    }


def ours(
    img: VMImage, work: Path, cycles: int, checkpoints: int, phases: Phases | None = None
) -> dict[str, object]:
    share_dir, state = work / "share", work / "state"
    share_dir.mkdir(parents=True)
    spec = TaskSpec(name="bench", argv=("/bin/memcounter", "50"), share=share_dir, owner_tag="bench-vmsave")
    settings = QemuSettings(kernel=img.kernel, initrd=img.initrd, accel="tcg", state_dir=state)
    share = Share(share_dir, virtfs_mapped=True)
    made: list[QemuBackend] = []

    def backend() -> QemuBackend:
        b = QemuBackend(settings)
        b.create(spec, share)
        made.append(b)
        return b

    try:
        b = backend()
        b.start()
        wait(lambda: count(share_dir) >= 40, 120, 0.01)
        pauses, sizes, in_use = [], [], []
        for _ in range(checkpoints):
            assert b.vm_checkpoint()
            pauses.append(b.last_save["pause"])
            sizes.append(b.last_save["bytes"])
            in_use.append(b.last_save["in_use"])
            time.sleep(0.5)
        quits, restores, failures, went_back = [], [], 0, 0
        if phases is not None:
            phases.now.clear()
        for _ in range(cycles):
            t0 = time.monotonic()
            ok = b.checkpoint()
            quits.append(time.monotonic() - t0)
            if phases is not None:
                phases.record("quit", quits[-1])
            at_quit = count(share_dir)
            b = backend()
            t0 = time.monotonic()
            restored = ok and b.restore()
            in_restore = time.monotonic() - t0
            if phases is not None:
                phases.record("restore", in_restore)
            if not restored:
                failures += 1
                b.start()
                continue
            try:
                wait(lambda q=at_quit: count(share_dir) > q, 30, 0.002)
            except TimeoutError:
                failures += 1
                continue
            restores.append(time.monotonic() - t0)
            if phases is not None:
                phases.per["after restore(): agent's remount, count relayed"].append(
                    restores[-1] - in_restore
                )
            went_back += count(share_dir) < at_quit
        return {
            "quit": quits, "restore": restores, "pause": pauses, "size": sizes, "in_use": in_use,
            "failures": failures, "went_back": went_back, "cycles": cycles,
        }  # fmt: skip
    finally:
        for b in reversed(made):  # the live VM first: an older backend's cleanup would kill it as a leftover
            b.cleanup()
        share.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--checkpoints", type=int, default=5)
    ap.add_argument("--phases", action="store_true", help="where the quit and the restore spend their time")
    a = ap.parse_args()
    phases = Phases() if a.phases else None
    work = Path(tempfile.mkdtemp(prefix="bvs-", dir="/tmp"))
    try:
        img = ensure_test_image({"/bin/memcounter": build_memcounter(work)})
        floor = bare(img, work / "bare")
        r = ours(img, work / "ours", a.cycles, a.checkpoints, phases)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    quit_s, restore_s, pause_s = med(r["quit"]), med(r["restore"]), med(r["pause"])  # type: ignore[arg-type]
    size = med(r["size"])  # type: ignore[arg-type]
    print(f"guest: {MEM} MiB, TCG; {r['cycles']} quit-restore cycles, {a.checkpoints} periodic checkpoints")
    print(f"quit (save + exit):        median {quit_s:.3f} s   bare {floor['quit']:.3f} s   "
          f"ratio {quit_s / floor['quit']:.2f}")  # fmt: skip
    print(f"restore -> running:        median {restore_s:.3f} s   bare {floor['restore']:.3f} s   "
          f"ratio {restore_s / floor['restore']:.2f}")  # fmt: skip
    print(f"quit-and-resume cycle:     median {quit_s + restore_s:.3f} s")
    worst = max(r["pause"]) * 1000  # type: ignore[call-overload]
    print(
        f"pause per checkpoint:  median {pause_s * 1000:.0f} ms   max {worst:.0f} ms   "
        f"bare stop+cont {floor['pause'] * 1000:.1f} ms   ratio {pause_s / floor['pause']:.1f}"
    )
    print(f"save size:                 median {size / 2**20:.1f} MiB = {size / (MEM * 2**20):.3f} of RAM, "
          f"{size / med(r['in_use']):.2f} of its RAM in use ({med(r['in_use']) / 2**20:.1f} MiB); "
          f"bare stream {floor['size'] / 2**20:.1f} MiB (ratio {size / floor['size']:.2f})")  # fmt: skip
    print(f"cycles: {r['failures']} failures, count went back {r['went_back']} times")
    if phases is not None:
        print("where the time goes (the quit's rest: machine type, QEMU's exit; the restore's: scans for")
        print("leftover VMs, cont):")
        phases.report()


if __name__ == "__main__":
    main()
