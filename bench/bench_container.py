"""Container backend figures on real podman (a private configuration, tests/support/podman.py), each
against the local backend and bare `podman` in the same run:

- start -> first file write in the share; pause / resume (N cycles, failures counted); poweroff;
- quit (the container backend: a CRIU checkpoint exported into the slot; the local backend: stop) and
  restore (a CRIU import, the in-memory count going on; the local backend: a fresh start), with the
  bare `podman container checkpoint --export` / `restore --import` of the same container;
- the bridge's CPU and RSS while a container task runs (a real bridge, the real shared memory, a
  client playing heartbeats), the same bridge with a local task, and a bare attached `podman run`.

Usage: .venv/bin/python bench/bench_container.py [--cycles 50] [--rounds 5] [--window 15]"""

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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from host_bridge.backends.base import TaskSpec
from host_bridge.backends.container import criu
from host_bridge.backends.container.backend import ContainerBackend
from host_bridge.backends.container.settings import ContainerSettings
from host_bridge.backends.local import LocalBackend
from host_bridge.share import Share
from tests.support.bridge import Bridge
from tests.support.client_shm import SlotClient
from tests.support.podman import PrivatePodman, private_podman

LOOP = "i=0; while true; do i=$((i+1)); echo $i > c.tmp; mv c.tmp count; sleep 0.05; done"
SLOW_LOOP = "i=0; while true; do i=$((i+1)); echo $i > c.tmp; mv c.tmp count; sleep 0.1; done"


def _wait_file(p: Path, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    while not p.exists():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(p)
        time.sleep(0.001)
    return time.monotonic()


def _count(p: Path) -> int:
    try:
        return int(p.read_text())
    except (OSError, ValueError):
        return 0


def _wait_count_above(p: Path, n: int, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    while _count(p) <= n:
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{p} stayed at {n}")
        time.sleep(0.001)
    return time.monotonic()


def ms(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    return f"median {1e3 * statistics.median(xs):.0f} ms (min {1e3 * min(xs):.0f}, max {1e3 * max(xs):.0f})"


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process, from its threads' schedstat (ns resolution)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with (
            contextlib.suppress(OSError, ValueError, IndexError),
            open(f"/proc/{pid}/task/{tid}/schedstat") as f,
        ):
            total += int(f.read().split()[0])
    return total / 1e9


def proc_mem(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


def conmon_of(ident: str) -> int | None:
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info.get("name") == "conmon" and any(ident in a for a in p.info.get("cmdline") or []):
            return p.pid
    return None


# ------------------------------------------------------------------------- start, pause / resume, off


def lifecycle(pm: PrivatePodman, image: str, cycles: int) -> None:
    share = Path(tempfile.mkdtemp(prefix="hb-bench-"))
    try:
        b = ContainerBackend(ContainerSettings(image=image))
        b.create(TaskSpec(name="task0", argv=("/bin/sh", "-c", LOOP), share=share, owner_tag="hb-bench-t0"))
        t0 = time.monotonic()
        b.start()
        first = _wait_file(share / "count") - t0
        pauses, resumes, failures = [], [], 0
        for _ in range(cycles):
            t = time.monotonic()
            b.pause()
            pauses.append(time.monotonic() - t)
            n = (share / "count").read_text()
            time.sleep(0.15)
            if (share / "count").read_text() != n:
                failures += 1
            t = time.monotonic()
            b.resume()
            resumes.append(time.monotonic() - t)
            time.sleep(0.12)
            if (share / "count").read_text() == n:
                failures += 1
        t = time.monotonic()
        b.poweroff()
        off = time.monotonic() - t
        b.cleanup()
    finally:
        shutil.rmtree(share, ignore_errors=True)
    bare = []
    for _ in range(3):
        t = time.monotonic()
        subprocess.run(
            [pm.program, "run", "--rm", "--pull", "never", "--network", "none", image, "true"],
            env=pm.environ(),
            check=True,
            timeout=60,
        )
        bare.append(time.monotonic() - t)
    print(f"start -> first write in the share: {1e3 * first:.0f} ms")
    print(f"pause: {ms(pauses)}; resume: {ms(resumes)}; {cycles} cycles, {failures} failures")
    print(f"poweroff (stop + rm): {1e3 * off:.0f} ms")
    print(f"bare podman run --rm true: {ms(bare)}")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------- quit / restore


def quit_restore(pm: PrivatePodman, image: str, rounds: int) -> None:
    works = criu.criu_works()
    res: dict[str, list[float]] = {
        k: [] for k in ("c_quit", "c_restore", "c_first", "l_quit", "l_restore", "b_quit", "b_restore")
    }
    sizes: list[int] = []
    lost = 0  # restores whose count went back (a fresh start instead of the saved memory)
    for r in range(rounds):
        # the container backend
        slot = Path(tempfile.mkdtemp(prefix="hb-bench-slot-"))
        try:
            tag = f"hb-bench-q{r}-t0"
            spec = TaskSpec(name="task0", argv=("/bin/sh", "-c", LOOP), share=slot, owner_tag=tag)
            settings = ContainerSettings(image=image, slot_dir=slot)
            b = ContainerBackend(settings)
            b.create(spec)
            b.start()
            _wait_count_above(slot / "count", 10)
            if works:
                t = time.monotonic()
                saved = b.checkpoint()
                res["c_quit"].append(time.monotonic() - t)
                at = _count(slot / "count")
                ckpt = slot / "task0_container_checkpoint.tar.zst"
                if saved:
                    sizes.append(ckpt.stat().st_size)
                b.cleanup()
                b2 = ContainerBackend(settings)
                b2.create(spec)
                t = time.monotonic()
                restored = b2.restore()
                res["c_restore"].append(time.monotonic() - t)
                b2.start()
                res["c_first"].append(_wait_count_above(slot / "count", at) - t)
                if not restored or _count(slot / "count") < at:
                    lost += 1
                b2.poweroff()
                b2.cleanup()
            else:
                b.poweroff()
                b.cleanup()
        finally:
            shutil.rmtree(slot, ignore_errors=True)
        # the local backend: quit = stop (no process checkpoint), restart = a fresh start
        share = Path(tempfile.mkdtemp(prefix="hb-bench-local-"))
        try:
            spec = TaskSpec(
                name="task0", argv=("/bin/sh", "-c", LOOP), share=share, owner_tag=f"hb-bench-l{r}-t0"
            )
            sh = Share(share)
            lb = LocalBackend()
            lb.create(spec, sh)
            lb.start()
            _wait_count_above(share / "count", 10)
            t = time.monotonic()
            if not lb.checkpoint():
                lb.poweroff()
            res["l_quit"].append(time.monotonic() - t)
            lb.cleanup()
            (share / "count").unlink()
            lb2 = LocalBackend()
            lb2.create(spec, sh)
            t = time.monotonic()
            lb2.restore()
            lb2.start()
            res["l_restore"].append(_wait_file(share / "count") - t)
            lb2.poweroff()
            lb2.cleanup()
            sh.close()
        finally:
            shutil.rmtree(share, ignore_errors=True)
        # bare podman: the same container, checkpoint --export / restore --import
        if works:
            share = Path(tempfile.mkdtemp(prefix="hb-bench-bare-"))
            try:
                name = f"hb-bench-bare{r}"
                # without --init: a bare restore of podman's catatonit file mount needs CRIU's
                # mntns-compat-mode, which the bridge gives it (criu.py) and bare podman does not
                pm.run("run", "-d", "--pull", "never", "--network", "none", "--name", name,
                       "-v", f"{share}:/app", "-w", "/app", image, "/bin/sh", "-c", LOOP)  # fmt: skip
                _wait_count_above(share / "count", 10)
                archive = share.parent / f"{share.name}.tar.zst"
                t = time.monotonic()
                pm.run("container", "checkpoint", "--export", str(archive), "--file-locks", name)
                res["b_quit"].append(time.monotonic() - t)
                pm.run("rm", "--force", "--time", "0", name)
                t = time.monotonic()
                p = pm.run("container", "restore", "--import", str(archive), check=False)
                if p.returncode == 0:
                    res["b_restore"].append(time.monotonic() - t)
                else:
                    print(f"bare podman restore failed: {p.stderr.strip()[:200]}")
                pm.run("rm", "--force", "--time", "0", name, check=False)
                archive.unlink(missing_ok=True)
            finally:
                shutil.rmtree(share, ignore_errors=True)
    if not works:
        print("quit / restore: CRIU >= 4.1 does not work here (scripts/setup.sh builds it): quit = stop")
    print(f"quit, container backend (CRIU export into the slot): {ms(res['c_quit'])}; "
          f"archive {statistics.median(sizes) / 1e6 if sizes else 0:.2f} MB")  # fmt: skip
    print(f"restore, container backend (import): {ms(res['c_restore'])}; to the next write "
          f"{ms(res['c_first'])}; {lost} of {len(res['c_restore'])} lost their in-memory count")  # fmt: skip
    print(f"quit, local backend (stop: SIGTERM): {ms(res['l_quit'])}")
    print(f"restart, local backend (a fresh start -> first write): {ms(res['l_restore'])}")
    print(f"bare podman container checkpoint --export (no --init): {ms(res['b_quit'])}")
    print(f"bare podman container restore --import (no --init): {ms(res['b_restore'])}")
    sys.stdout.flush()


# ------------------------------------------------------------------------------- bridge CPU and RSS


def _window(pids: Callable[[], dict[str, int]], seconds: float) -> dict[str, tuple[float, int, int]]:
    """CPU % of a core and (VmRSS, VmHWM) of each named process over ``seconds``."""
    procs = pids()
    c0 = {k: proc_cpu(p) for k, p in procs.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    out = {}
    for k, p in procs.items():
        cpu = 100 * (proc_cpu(p) - c0[k]) / dt
        out[k] = (cpu, *proc_mem(p))
    return out


def _bridge_run(pm: PrivatePodman, job: str, files: dict[str, str], tar: Path | None, seconds: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="hb-bench-bridge-"))
    slot = tmp / "slot"
    c = SlotClient(slot)
    try:
        for name, text in files.items():
            (slot / name).write_text(text)
        if tar is not None:
            shutil.copyfile(tar, slot / "app_rootfs.tar")
        (slot / "job.xml").write_text(job)
        c.start_heartbeats()
        env_old = {k: os.environ.get(k) for k in pm.env}
        os.environ.update(pm.env)
        b = Bridge(slot)
        try:
            _wait_count_above(slot / "count", 20, 60)
            time.sleep(2.0)  # past the start-up

            def pids() -> dict[str, int]:
                d = {"bridge": b.proc.pid}
                for ct in pm.containers("boinc-host-bridge.owner"):
                    cm = conmon_of(str(ct["Id"]))
                    if cm:
                        d["conmon"] = cm
                return d

            fig = _window(pids, seconds)
            c.abort()
            b.wait(60)
        finally:
            b.close()
            for k, v in env_old.items():
                if v is not None:
                    os.environ[k] = v
        return fig
    finally:
        c.close()
        shutil.rmtree(tmp, ignore_errors=True)


def bridge_figures(pm: PrivatePodman, tar: Path, image: str, seconds: float) -> None:
    count_sh = SLOW_LOOP.replace("; ", "\n") + "\n"
    container_job = (
        "<job_desc><task><application>/bin/sh</application><command_line>count.sh</command_line>"
        "<container_image>app_rootfs.tar</container_image></task></job_desc>"
    )
    local_job = (
        "<job_desc><task><application>/bin/sh</application><command_line>count.sh</command_line>"
        "</task></job_desc>"
    )
    fig_c = _bridge_run(pm, container_job, {"count.sh": count_sh}, tar, seconds)
    fig_l = _bridge_run(pm, local_job, {"count.sh": count_sh}, None, seconds)
    # bare: an attached `podman run` (its CLI stays as the container's client, as the bridge does)
    share = Path(tempfile.mkdtemp(prefix="hb-bench-bare-"))
    p = subprocess.Popen(
        [pm.program, "run", "--rm", "--init", "--pull", "never", "--network", "none", "--name",
         "hb-bench-attached", "-v", f"{share}:/app", "-w", "/app", image, "/bin/sh", "-c", SLOW_LOOP],
        env=pm.environ(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_count_above(share / "count", 20, 60)
        time.sleep(2.0)
        ident = pm.run("inspect", "--format", "{{.Id}}", "hb-bench-attached").stdout.strip()

        def pids() -> dict[str, int]:
            d = {"podman run": p.pid}
            cm = conmon_of(ident)
            if cm:
                d["conmon"] = cm
            return d

        fig_b = _window(pids, seconds)
    finally:
        pm.run("rm", "--force", "--time", "0", "hb-bench-attached", check=False)
        p.wait(30)
        shutil.rmtree(share, ignore_errors=True)
    mib = 1 << 20
    for what, fig in (
        ("bridge, container task", fig_c),
        ("bridge, local task", fig_l),
        ("bare podman run", fig_b),
    ):
        parts = "; ".join(
            f"{k}: CPU {cpu:.3f} % of a core, RSS {rss / mib:.1f} MiB (peak {hwm / mib:.1f})"
            for k, (cpu, rss, hwm) in fig.items()
        )
        print(f"{what} ({seconds:.0f} s window): {parts}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5, help="quit / restore rounds")
    ap.add_argument("--window", type=float, default=15.0, help="s of CPU / RSS measurement")
    ns = ap.parse_args()
    with private_podman() as pm, pm.activate():
        tar = pm.rootfs_tar(pm.root / "rootfs.tar")
        image = pm.import_image(tar, "localhost/hb-bench:1")
        lifecycle(pm, image, ns.cycles)
        quit_restore(pm, image, ns.rounds)
        bridge_figures(pm, tar, image, ns.window)


if __name__ == "__main__":
    main()
