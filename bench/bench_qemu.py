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
- a Python app in the VM (``vm_pyroot=builtin:python``, the guest Python root): ``start()`` until a
  ``python3`` that imported the guest SDK writes its first file (``--no-python`` skips it).
- the same figures for the LOCAL backend (the same static programs as host processes, the share a local
  folder), printed beside the QEMU ones: process start -> app running, round trip, quit-and-resume.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "guest_sdk" / "python")]

from host_bridge.backends.base import TaskSpec, VMState  # noqa: E402
from host_bridge.backends.local import LocalBackend  # noqa: E402
from host_bridge.backends.qemu import QemuBackend, QemuSettings, choose_accel, qemu_binary  # noqa: E402
from host_bridge.images.parts import VMImage  # noqa: E402
from host_bridge.images.testimage import ensure_test_image  # noqa: E402
from host_bridge.share import Share  # noqa: E402
from tests.support.vm import build_guest_programs, kill_all, read_int  # noqa: E402

TAG = f"bench-{os.getpid()}-"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def vm(
    img: VMImage, share: Path, argv: tuple[str, ...], name: str, **settings: Any
) -> tuple[QemuBackend, Share]:
    """A QEMU backend created for one task on the test image, and the task's share (the caller closes it
    after ``cleanup``, as the runtime does)."""
    b = QemuBackend(QemuSettings(kernel=img.kernel, initrd=img.initrd, **settings))
    opened = Share(share, virtfs_mapped=True)  # the default 9p security model, mapped-xattr
    b.create(TaskSpec(name=name, argv=argv, share=share, owner_tag=TAG + name), opened)
    return b, opened


def local(share: Path, name: str, argv: tuple[str, ...], **kw: Any) -> tuple[LocalBackend, Share]:
    """A local backend created for one task, and its share (closed by the caller after ``cleanup``)."""
    b = LocalBackend()
    opened = Share(share)
    b.create(TaskSpec(name=name, argv=argv, share=share, owner_tag=TAG + name, **kw), opened)
    return b, opened


PY_FIRST_WRITE = "import boinc_guest; open('py_out.txt', 'w').write(boinc_guest.__name__)"


def round_trip(share: Path, pings: int) -> list[float]:
    """ms per ping.txt -> pong.txt round trip with the pinger running on ``share`` (first one excluded)."""
    rtts = []
    for n in range(1, pings + 1):
        tmp = share / ".ping.tmp"
        t0 = time.monotonic()
        tmp.write_text(f"{n}\n")
        os.replace(tmp, share / "ping.txt")
        t1 = wait(lambda n=n: read_int(share / "pong.txt") == n, 60 if n == 1 else 10, 0.0002)
        if n > 1:  # the first includes the boot
            rtts.append((t1 - t0) * 1000)
    return rtts


def quit_resume(b, share: Path, runs: int) -> tuple[float, float]:
    """Median poweroff time and median fresh start -> progress past the checkpoint (counter app)."""
    offs, ons = [], []
    wait(lambda: read_int(share / "ckpt.txt") >= 5, 120)
    for _ in range(runs):
        t0 = time.monotonic()
        b.poweroff()
        offs.append(time.monotonic() - t0)
        assert b.poll().state in (VMState.ABSENT, VMState.EXITED), b.poll()
        ck = read_int(share / "ckpt.txt")
        (share / "progress.txt").unlink()
        t0 = time.monotonic()
        b.start()
        ons.append(wait(lambda ck=ck: read_int(share / "progress.txt") > ck, 120) - t0)
    return statistics.median(offs), statistics.median(ons)


def local_figures(progs: dict[str, Path], work: Path, runs: int, pings: int) -> dict[str, float]:
    """The local backend with the same programs: start -> first write, round trip, quit-and-resume."""
    out: dict[str, float] = {}
    firsts = []
    for i in range(runs):
        share = work / f"local-start{i}"
        share.mkdir()
        b, opened = local(share, f"ls{i}", (str(progs["/bin/counter"]), "1000", "20"))
        t0 = time.monotonic()
        b.start()
        firsts.append(wait(lambda share=share: (share / "progress.txt").exists(), 60) - t0)
        b.cleanup()
        opened.close()
    out["start"] = statistics.median(firsts)
    pys = []
    for i in range(runs):
        share = work / f"local-py{i}"
        share.mkdir()
        env = (("PYTHONPATH", str(ROOT / "guest_sdk" / "python")),)
        b, opened = local(share, f"lpy{i}", (sys.executable, "-c", PY_FIRST_WRITE), env=env)
        t0 = time.monotonic()
        b.start()
        pys.append(wait(lambda share=share: (share / "py_out.txt").exists(), 60) - t0)
        b.cleanup()
        opened.close()
    out["py"] = statistics.median(pys)
    share = work / "local-ping"
    share.mkdir()
    b, opened = local(share, "lp", (str(progs["/bin/pinger"]),))
    b.start()
    rtts = round_trip(share, pings)
    (share / "ping.txt").write_text("stop\n")
    b.cleanup()
    opened.close()
    out["rtt50"], out["rtt99"] = pct(rtts, 50), pct(rtts, 99)
    share = work / "local-cycle"
    share.mkdir()
    b, opened = local(share, "lc", (str(progs["/bin/counter"]), "100000", "20"))
    b.start()
    out["off"], out["on"] = quit_resume(b, share, runs)
    b.cleanup()
    opened.close()
    return out


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
    ap.add_argument("--no-python", action="store_true", help="skip the Python-in-the-VM figure")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-qemu-"))
    t0 = time.monotonic()
    progs = build_guest_programs(work / "progs")
    img = ensure_test_image(progs)
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
            b, opened = vm(img, share, ("counter", "1000", "20"), f"start{i}")
            t0 = time.monotonic()
            b.start()
            agent.append(wait(lambda share=share: (share / "boinc_agent_started").exists(), 120) - t0)
            first.append(wait(lambda share=share: (share / "progress.txt").exists(), 120) - t0)
            b.cleanup()
            opened.close()
        fl, ag, fi = statistics.median(floors), statistics.median(agent), statistics.median(first)

        def show(xs: list[float]) -> str:
            return ", ".join(f"{x:.2f}" for x in xs)

        print(f"bare QEMU boot -> app's first write:       median {fl:.2f} s  ({show(floors)})")
        print(f"backend start() -> agent started the app:  median {ag:.2f} s  ({show(agent)})")
        print(f"backend start() -> app's first write:      median {fi:.2f} s  (ratio to bare {fi / fl:.2f})")

        # 2. round trip over the share, 3. pause / resume
        share = work / "ping"
        share.mkdir()
        b, opened = vm(img, share, ("pinger",), "ping")
        b.start()
        rtts = round_trip(share, args.pings)
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
        opened.close()

        # 4. quit-and-resume cycle
        share = work / "cycle"
        share.mkdir()
        b, opened = vm(img, share, ("counter", "100000", "20"), "cycle")
        b.start()
        off, on = quit_resume(b, share, args.runs)
        b.cleanup()
        opened.close()
        print(f"quit (poweroff via agent, app SIGTERM): median {off:.2f} s; "
              f"fresh VM -> app progressing again: median {on:.2f} s; cycle {off + on:.2f} s")  # fmt: skip

        # 5. a Python app (guest SDK imported) in the VM, from the guest Python image (<vm_python/>)
        py = None
        if not args.no_python:
            from host_bridge.images.testimage import ensure_python_image

            t0 = time.monotonic()
            ensure_python_image()
            print(f"guest Python image ready in {time.monotonic() - t0:.2f} s (cached after the first build)")
            pys = []
            for i in range(args.runs):
                share = work / f"py{i}"
                share.mkdir()
                b, opened = vm(img, share, ("python3", "-c", PY_FIRST_WRITE), f"py{i}", builtin_python=True)
                t0 = time.monotonic()
                b.start()
                pys.append(wait(lambda share=share: (share / "py_out.txt").exists(), 120) - t0)
                b.cleanup()
                opened.close()
            py = statistics.median(pys)
            print(f"backend start() -> Python app's first write (SDK imported): median {py:.2f} s "
                  f"({show(pys)}; {py - fi:+.2f} s over the static C app)")  # fmt: skip

        # 6. the local backend, same programs
        loc = local_figures(progs, work, args.runs, args.pings)
        print()
        print(f"{'figure':44} {'QEMU (' + accel + ')':>16} {'local':>12}")
        print(f"{'start -> app first write (s)':44} {fi:16.3f} {loc['start']:12.3f}")
        print(f"{'share round trip p50 (ms)':44} {pct(rtts, 50):16.2f} {loc['rtt50']:12.2f}")
        print(f"{'share round trip p99 (ms)':44} {pct(rtts, 99):16.2f} {loc['rtt99']:12.2f}")
        print(f"{'quit: poweroff (s)':44} {off:16.3f} {loc['off']:12.3f}")
        print(f"{'resume: fresh start -> progressing (s)':44} {on:16.3f} {loc['on']:12.3f}")
        if py is not None:
            print(f"{'Python app (SDK imported) start -> first write (s)':44} {py:16.3f} {loc['py']:12.3f}")
        print(f"ratios QEMU/local: start {fi / loc['start']:.0f}x, round trip p50 "
              f"{pct(rtts, 50) / loc['rtt50']:.0f}x, resume {on / loc['on']:.0f}x")  # fmt: skip
    finally:
        n = kill_all(f"process=bridge-{TAG}")
        if n:
            print(f"killed {n} leftover VMs")


if __name__ == "__main__":
    main()
