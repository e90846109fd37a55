"""Container backend figures on real podman (a private configuration, tests/support/podman.py): start ->
first file write in the share, pause / resume (N cycles, failures counted), poweroff; against bare
`podman run`. Usage: .venv/bin/python bench/bench_container.py [--cycles 50]"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host_bridge.backends.base import TaskSpec
from host_bridge.backends.container.backend import ContainerBackend
from host_bridge.backends.container.settings import ContainerSettings
from tests.support.podman import private_podman

LOOP = "i=0; while true; do i=$((i+1)); echo $i > c.tmp; mv c.tmp count; sleep 0.05; done"


def _wait_file(p: Path, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    while not p.exists():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(p)
        time.sleep(0.001)
    return time.monotonic()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=50)
    ns = ap.parse_args()
    with private_podman() as pm, pm.activate():
        tar = pm.rootfs_tar(pm.root / "rootfs.tar")
        image = pm.import_image(tar, "localhost/hb-bench:1")
        share = Path(tempfile.mkdtemp(prefix="hb-bench-"))
        b = ContainerBackend(ContainerSettings(image=image))
        b.create(TaskSpec(name="task0", argv=("/bin/sh", "-c", LOOP), share=share, owner_tag="hb-bench-t0"))
        t0 = time.monotonic()
        b.start()
        first = _wait_file(share / "count") - t0
        pauses, resumes, failures = [], [], 0
        for _ in range(ns.cycles):
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
    ms = lambda xs: f"median {1e3 * statistics.median(xs):.0f} ms, max {1e3 * max(xs):.0f} ms"  # noqa: E731
    print(f"start -> first write in the share: {1e3 * first:.0f} ms")
    print(f"pause: {ms(pauses)}; resume: {ms(resumes)}; {ns.cycles} cycles, {failures} failures")
    print(f"poweroff (stop + rm): {1e3 * off:.0f} ms")
    print(f"bare podman run --rm true: {ms(bare)}")


if __name__ == "__main__":
    main()
