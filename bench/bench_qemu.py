"""Benchmark of the QEMU backend with real VMs (TCG here). Prints figures; asserts nothing.

    .venv/bin/python bench/bench_qemu.py [--runs 3] [--pings 200]

Figures:
- VM start -> app running: ``start()`` until the guest agent reports the app started
  (``boinc_agent_started``) and until the app's first file write is visible on the host;
  compared with the bare floor: plain ``qemu-system-x86_64`` with the same kernel/initrd, no backend.
- share round trip host -> guest -> host over 9p: the host writes ``ping.txt`` (atomic rename), the guest
  program (polling every 1 ms) answers in ``pong.txt``; the host polls every 0.2 ms. One-way guest->host
  is about half of it (no common clock between guest and host).
- pause / resume (QMP stop / cont) latency.
- quit-and-resume cycle (app-level): ``poweroff()`` of a running app, then ``start()`` of a fresh VM until
  the app writes progress again from its checkpoint.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "guest_sdk" / "python")]

from host_bridge.backends.base import TaskSpec, VMState  # noqa: E402
from host_bridge.backends.qemu import QemuBackend, choose_accel, qemu_binary  # noqa: E402
from host_bridge.vmimage import VMImage, ensure_test_image  # noqa: E402
from tests.support.vm import build_guest_programs, kill_all, read_int  # noqa: E402

TAG = f"bench-{os.getpid()}-"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def task(img: VMImage, share: Path, argv: tuple[str, ...], name: str) -> TaskSpec:
    extra = (("vm_kernel", str(img.kernel)), ("vm_initrd", str(img.initrd)))
    return TaskSpec(name=name, argv=argv, share=share, owner_tag=TAG + name, extra=extra)


def wait(cond, timeout: float, interval: float = 0.001) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError
        time.sleep(interval)
    return time.monotonic()


def bare_floor(img: VMImage, share: Path, accel: str) -> float:
    """Plain QEMU, same image, until the app's first write (no backend, no QMP)."""
    (share / "boinc_task.json").write_text('{"v": 1, "argv": ["hello", "x", "0"], "env": {}}')
    cmd = [qemu_binary(), "-accel", accel, "-m", "256", "-display", "none", "-nodefaults", "-no-user-config",
           "-no-reboot", "-serial", "null", "-kernel", str(img.kernel), "-initrd", str(img.initrd),
           "-append", "console=ttyS0 quiet panic=-1",
           "-virtfs", f"local,path={share},mount_tag=shared,security_model=mapped-xattr,id=fs0"]  # fmt: skip
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t1 = wait(lambda: (share / "hello_out.txt").exists(), 120)
    finally:
        p.kill()
        p.wait()
    return t1 - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pings", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-qemu-"))
    t0 = time.monotonic()
    img = ensure_test_image(build_guest_programs(work / "progs"))
    print(f"image ready in {time.monotonic() - t0:.2f} s (cached after the first build)")
    accel = choose_accel(qemu_binary())
    print(f"accelerator: {accel}")
    try:
        # 1. start -> app running
        floors, agent, first = [], [], []
        for i in range(args.runs):
            s = work / f"floor{i}"
            s.mkdir()
            floors.append(bare_floor(img, s, accel))
            share = work / f"start{i}"
            share.mkdir()
            b = QemuBackend()
            b.create(task(img, share, ("counter", "1000", "20"), f"start{i}"))
            t0 = time.monotonic()
            b.start()
            agent.append(wait(lambda share=share: (share / "boinc_agent_started").exists(), 120) - t0)
            first.append(wait(lambda share=share: (share / "progress.txt").exists(), 120) - t0)
            b.cleanup()
            b.close()
        fl, ag, fi = statistics.median(floors), statistics.median(agent), statistics.median(first)

        def show(xs: list[float]) -> str:
            return ", ".join(f"{x:.2f}" for x in xs)

        print(f"bare QEMU boot -> app's first write:       median {fl:.2f} s  ({show(floors)})")
        print(f"backend start() -> agent started the app:  median {ag:.2f} s  ({show(agent)})")
        print(f"backend start() -> app's first write:      median {fi:.2f} s  (ratio to bare {fi / fl:.2f})")

        # 2. round trip over the share, 3. pause / resume
        share = work / "ping"
        share.mkdir()
        b = QemuBackend()
        b.create(task(img, share, ("pinger",), "ping"))
        b.start()
        rtts = []
        for n in range(1, args.pings + 1):
            tmp = share / ".ping.tmp"
            t0 = time.monotonic()
            tmp.write_text(f"{n}\n")
            os.replace(tmp, share / "ping.txt")
            t1 = wait(lambda n=n: read_int(share / "pong.txt") == n, 60 if n == 1 else 10, 0.0002)
            if n > 1:  # the first includes the boot
                rtts.append((t1 - t0) * 1000)
        print(f"share round trip host->guest->host: p50 {pct(rtts, 50):.1f} ms  p99 {pct(rtts, 99):.1f} ms  "
              f"(n={len(rtts)}; one-way guest->host ~ half)")  # fmt: skip
        stops, conts = [], []
        for _ in range(10):
            t0 = time.monotonic()
            b.pause()
            stops.append((time.monotonic() - t0) * 1000)
            t0 = time.monotonic()
            b.resume()
            conts.append((time.monotonic() - t0) * 1000)
        print(f"pause (QMP stop): median {statistics.median(stops):.1f} ms; "
              f"resume (QMP cont): median {statistics.median(conts):.1f} ms")  # fmt: skip
        t0 = time.monotonic()
        st = b.poll()
        print(f"poll(): {(time.monotonic() - t0) * 1000:.1f} ms ({st.state.value}, cpu {st.cpu_time:.2f} s)")
        (share / "ping.txt").write_text("stop\n")
        b.cleanup()
        b.close()

        # 4. quit-and-resume cycle
        cycles_off, cycles_on = [], []
        share = work / "cycle"
        share.mkdir()
        b = QemuBackend()
        b.create(task(img, share, ("counter", "100000", "20"), "cycle"))
        b.start()
        wait(lambda: read_int(share / "ckpt.txt") >= 5, 120)
        for _ in range(args.runs):
            t0 = time.monotonic()
            b.poweroff()
            cycles_off.append(time.monotonic() - t0)
            assert b.poll().state is VMState.ABSENT
            ck = read_int(share / "ckpt.txt")
            (share / "progress.txt").unlink()
            t0 = time.monotonic()
            b.start()
            cycles_on.append(wait(lambda ck=ck: read_int(share / "progress.txt") > ck, 120) - t0)
        b.cleanup()
        b.close()
        off, on = statistics.median(cycles_off), statistics.median(cycles_on)
        print(f"quit (poweroff via agent, app SIGTERM): median {off:.2f} s; "
              f"fresh VM -> app progressing again: median {on:.2f} s; cycle {off + on:.2f} s")  # fmt: skip
    finally:
        n = kill_all(f"process=bridge-{TAG}")
        if n:
            print(f"killed {n} leftover VMs")


if __name__ == "__main__":
    main()
