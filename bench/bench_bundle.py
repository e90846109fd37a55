"""Benchmark the single-file app version (scripts/build_app_version.sh) against the bridge run from the
Python install, on the real libboinc_api, local backend, this script playing the client (heartbeats,
the app_status channel) as bench_bridge.py does.

Figures, each with its ratio to the Python install's:

- size of the file a volunteer downloads
- bridge start -> task started (the bootloader unpacks the bundle at every start)
- peak RSS: the bridge (the bootloader's child) and the bootloader itself
- bridge CPU while examples/worker.py runs (in the bundle it runs in python mode)
- what `<gzip/>` in version.xml saves on the download (update_versions gzips the file; the client
  fetches the .gz): `gzip -9 -c FILE | wc -c` and gzip's default level (what update_versions runs) for
  the bundle and for an uncompressed vmlinux kernel (the test image's, host_bridge/images/parts.py),
  and the time the volunteer's client spends unpacking each

Usage: .venv/bin/python bench/bench_bundle.py [--bundle PATH] [--kernel VMLINUX] [--starts N]
[--cpu-seconds S] [--gzip-only]
(without --bundle it builds one into build/bench-dist; without --kernel it builds the test image).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "guest_sdk" / "python"), str(ROOT / "bench")]

from bench_bridge import JOB, WORKER_JOB, proc_cpu, vmhwm  # noqa: E402

from tests.support.client_shm import SlotClient  # noqa: E402


def build() -> Path:
    out = ROOT / "build" / "bench-dist"
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_app_version.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return Path(r.stdout.strip().splitlines()[-1])


def gzip_bytes(path: Path, level: int) -> int:
    """`gzip -LEVEL -c PATH | wc -c`."""
    with subprocess.Popen(["gzip", f"-{level}", "-c", str(path)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        n = sum(len(chunk) for chunk in iter(lambda: proc.stdout.read(1 << 20), b""))
    if proc.returncode != 0:
        raise RuntimeError(f"gzip -{level} {path} failed ({proc.returncode})")
    return n


def gunzip_seconds(path: Path) -> float:
    """What the client spends unpacking the downloaded .gz (median of 3; gzip -6 as update_versions)."""
    with tempfile.TemporaryDirectory() as d:
        gz = Path(d) / (path.name + ".gz")
        with gz.open("wb") as f:
            subprocess.run(["gzip", "-6", "-c", str(path)], stdout=f, check=True, timeout=600)
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            subprocess.run(["gzip", "-d", "-c", str(gz)], stdout=subprocess.DEVNULL, check=True, timeout=600)
            times.append(time.monotonic() - t0)
    return statistics.median(times)


def gzip_report(files: dict[str, Path]) -> None:
    for label, path in files.items():
        size = path.stat().st_size
        g9, g6 = gzip_bytes(path, 9), gzip_bytes(path, 6)
        saved9, saved6 = 100 * (1 - g9 / size), 100 * (1 - g6 / size)
        print(
            f"<gzip/> {label:8} {size / 1e6:6.1f} MB -> gzip -9 {g9 / 1e6:.1f} MB ({saved9:.1f} % saved),"
            f" gzip -6 {g6 / 1e6:.1f} MB ({saved6:.1f} % saved); unpacking"
            f" {gunzip_seconds(path) * 1e3:.0f} ms ({path.name})"
        )


def command(bundle: Path | None) -> list[str]:
    return [str(bundle)] if bundle else [sys.executable, "-m", "host_bridge"]


@contextlib.contextmanager
def bridge(bundle: Path | None, job: str, secs: float) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    with tempfile.TemporaryDirectory() as d:
        slot = Path(d)
        client = SlotClient(slot)
        client.start_heartbeats()
        (slot / "job.xml").write_text(job.format(secs=secs, worker=ROOT / "examples" / "worker.py"))
        env = dict(os.environ)
        if bundle:  # a volunteer's host: no project on the Python path
            env.pop("PYTHONPATH", None)
        else:
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "guest_sdk" / "python")])
        t0 = time.monotonic()
        proc = subprocess.Popen(
            command(bundle), cwd=slot, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            yield proc, t0
        finally:
            for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            proc.wait(10)
            client.close()


def bridge_pid(proc: subprocess.Popen[bytes], bundle: Path | None, timeout: float = 10) -> int:
    """The bridge's own process: the bootloader's child in the bundle."""
    if not bundle:
        return proc.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = psutil.Process(proc.pid).children()
        if kids:
            return kids[0].pid
        time.sleep(0.0005)
    raise RuntimeError("the bootloader did not start the bridge")


def task_seen(pid: int, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                if f.read().split():
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.0005)
    raise RuntimeError("the bridge did not start its task")


def starts(bundle: Path | None, n: int) -> list[float]:
    out = []
    for _ in range(n):
        with bridge(bundle, JOB, 600) as (proc, t0):
            out.append((task_seen(bridge_pid(proc, bundle)) - t0) * 1e3)
    return out


def worker_run(bundle: Path | None, cpu_seconds: float) -> tuple[float, float, float]:
    """(bridge CPU % of a core while the worker runs, bridge peak RSS MiB, bootloader peak RSS MiB)."""
    with bridge(bundle, WORKER_JOB, cpu_seconds + 60) as (proc, _t0):
        pid = bridge_pid(proc, bundle)
        task_seen(pid)
        time.sleep(3.0)
        c0, t0 = proc_cpu(pid), time.monotonic()
        time.sleep(cpu_seconds)
        cpu = 100.0 * (proc_cpu(pid) - c0) / (time.monotonic() - t0)
        boot = vmhwm(proc.pid) / 2**20 if bundle else 0.0
        return cpu, vmhwm(pid) / 2**20, boot


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=None, help="the executable (default: build one)")
    ap.add_argument("--starts", type=int, default=9)
    ap.add_argument("--cpu-seconds", type=float, default=20.0)
    ap.add_argument(
        "--kernel", type=Path, default=None, help="an uncompressed vmlinux (default: the test image's)"
    )
    ap.add_argument("--gzip-only", action="store_true", help="only the <gzip/> figures")
    ns = ap.parse_args()
    bundle = ns.bundle.resolve() if ns.bundle else build()
    files = {"bundle": bundle}
    if ns.kernel is None:  # the test image's kernel, and its initramfs (gzipped already: for contrast)
        from host_bridge.images.testimage import ensure_test_image

        image = ensure_test_image()
        files.update(vmlinux=image.kernel, initrd=image.initrd)
    else:
        files["vmlinux"] = ns.kernel
    gzip_report(files)
    if ns.gzip_only:
        return
    tmp = Path(tempfile.mkdtemp())
    try:  # run from a copy outside the repository, as a volunteer's host has it
        shipped = tmp / bundle.name
        shutil.copy2(bundle, shipped)
        s_py, s_b = starts(None, ns.starts), starts(shipped, ns.starts)
        cpu_py, rss_py, _ = worker_run(None, ns.cpu_seconds)
        cpu_b, rss_b, rss_boot = worker_run(shipped, ns.cpu_seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = bundle.stat().st_size / 2**20
    m_py, m_b = statistics.median(s_py), statistics.median(s_b)
    print(f"bundle {bundle.name}: {size:.1f} MiB to download")
    print(
        f"bridge start -> task started   bundle median {m_b:.0f} ms (min {min(s_b):.0f}, max {max(s_b):.0f});"
        f" Python install {m_py:.0f} ms; ratio {m_b / m_py:.1f}x (n={ns.starts})"
    )
    print(f"bridge peak RSS                bundle {rss_b:.1f} MiB; Python install {rss_py:.1f} MiB; ratio "
          f"{rss_b / rss_py:.2f}x; the bootloader {rss_boot:.1f} MiB more")  # fmt: skip
    print(
        f"bridge CPU, worker.py task     bundle {cpu_b:.3f} % of a core; Python install {cpu_py:.3f} %;"
        f" ratio {cpu_b / max(cpu_py, 1e-9):.2f}x"
    )


if __name__ == "__main__":
    main()
