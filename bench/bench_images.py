"""Image builder figures: build time (cold: the given cache is empty; warm: root disk cached), download
size, and boot -> the app's first status write (boinc_status.msgpack in the share) for a Python app
(Debian python3 image) and a static C app (a --rootfs image), each with its ratio to the bare QEMU floor
measured in the same run (the same kernel + the builder's initramfs, the agent running a static program
that writes one file, no root disk). ``py-nosdk``: the Python image's interpreter writing the file itself
(no SDK, no msgpack), i.e. Python's own start in the image, the floor of any Python app; ``py-zstd``: the
Python app in the same image with a zstd root (``--root-compression zstd``) instead of the default lz4.

    .venv/bin/python bench/bench_images.py [--cold]    (--cold: a fresh BOINC_VM_CACHE, downloads)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PY_APP = "from boinc_guest import boinc_init, boinc_fraction_done\nboinc_init()\nboinc_fraction_done(0.5)\n"
PY_BARE = "open('boinc_status.msgpack', 'w').write('x')"
C_APP = '#include "boinc_api.h"\nint main(void){boinc_init();boinc_fraction_done(0.5);boinc_finish(0);}\n'
BARE_C = (
    '#include <stdio.h>\nint main(void){FILE*f=fopen("boinc_status.msgpack","w");fputs("x",f);return 0;}\n'
)


def first_write(kernel: Path, initrd: Path, disk: Path | None, argv: tuple[str, ...]) -> float:
    from host_bridge.backends.base import TaskSpec
    from host_bridge.backends.qemu.backend import QemuBackend
    from host_bridge.backends.qemu.settings import QemuSettings
    from host_bridge.share import Share

    work = Path(tempfile.mkdtemp(prefix="bench-img-"))
    (work / "s").mkdir()
    be = QemuBackend(QemuSettings(kernel=kernel, initrd=initrd, disk_image=disk, state_dir=work / "st"))
    share = Share(work / "s", virtfs_mapped=True)
    try:
        be.create(TaskSpec(name="b", argv=argv, share=work / "s", owner_tag=f"bench-{work.name}"), share)
        t0 = time.monotonic()
        be.start()
        while not (work / "s" / "boinc_status.msgpack").exists():
            if time.monotonic() - t0 > 120:
                raise RuntimeError("no status write within 120 s")
            time.sleep(0.005)
        return time.monotonic() - t0
    finally:
        be.cleanup()
        share.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ns = ap.parse_args()
    if ns.cold:
        os.environ["BOINC_VM_CACHE"] = tempfile.mkdtemp(prefix="bench-img-cache-")
    from host_bridge.images.build import BuildSpec, build_image
    from host_bridge.images.testimage import ensure_test_image

    tmp = Path(tempfile.mkdtemp(prefix="bench-images-"))
    try:
        csdk = ROOT / "guest_sdk" / "c"
        (tmp / "app.py").write_text(PY_APP)
        for name, src, extra in (("capp", C_APP, [str(csdk / "build" / "libboinc_guest.a"), "-lpthread"]),
                                 ("bare", BARE_C, [])):  # fmt: skip
            (tmp / f"{name}.c").write_text(src)
            subprocess.run(["gcc", "-static", "-O2", "-I", str(csdk / "include"), "-o", str(tmp / name),
                            str(tmp / f"{name}.c"), *extra], check=True, timeout=120)  # fmt: skip
        times = {}
        for label in ("first", "again"):
            t0 = time.monotonic()
            py = build_image(
                BuildSpec(out=tmp / "py", debian=("python3",), add=((tmp / "app.py", "/app/a.py"),))
            )
            times[label] = time.monotonic() - t0
        print(f"python image build: {'cold' if ns.cold else 'first call'} {times['first']:.1f} s, "
              f"warm {times['again']:.1f} s")  # fmt: skip
        b = py.manifest["bytes"]
        print(f"python image files: kernel {b['kernel'] / 1e6:.1f} MB, initrd {b['initrd'] / 1e6:.1f} MB, "
              f"root {b['disk'] / 1e6:.1f} MB")  # fmt: skip
        (tmp / "r").mkdir()
        (tmp / "r" / "app").mkdir()
        shutil.copy(tmp / "capp", tmp / "r" / "app" / "c")
        subprocess.run(["tar", "-C", str(tmp / "r"), "-cf", str(tmp / "c.tar"), "."], check=True, timeout=60)
        c = build_image(BuildSpec(out=tmp / "c", rootfs=tmp / "c.tar"))
        # the same Python image with a zstd root (--root-compression zstd: the smallest download)
        pyz_spec = BuildSpec(out=tmp / "pyz", debian=("python3",), add=((tmp / "app.py", "/app/a.py"),),
                             compression="zstd")  # fmt: skip
        pyz = build_image(pyz_spec)
        print(f"python image root: lz4 {py.manifest['bytes']['disk'] / 1e6:.1f} MB, "
              f"zstd {pyz.manifest['bytes']['disk'] / 1e6:.1f} MB")  # fmt: skip
        bare = ensure_test_image({"/bin/bare": tmp / "bare"})
        rows: dict[str, list[float]] = {"bare": [], "py-nosdk": [], "python": [], "py-zstd": [], "c": []}
        for _ in range(ns.runs):
            rows["bare"].append(first_write(bare.kernel, bare.initrd, None, ("/bin/bare",)))
            # the interpreter alone (no SDK, no msgpack): Python's own start, the floor of any Python app
            rows["py-nosdk"].append(first_write(py.out / py.kernel, py.out / py.initrd, py.out / py.disk,
                                                ("python3", "-c", PY_BARE)))  # fmt: skip
            rows["python"].append(first_write(py.out / py.kernel, py.out / py.initrd, py.out / py.disk,
                                              ("python3", "/app/a.py")))  # fmt: skip
            rows["py-zstd"].append(first_write(pyz.out / pyz.kernel, pyz.out / pyz.initrd, pyz.out / pyz.disk,
                                               ("python3", "/app/a.py")))  # fmt: skip
            rows["c"].append(first_write(c.out / c.kernel, c.out / c.initrd, c.out / c.disk, ("/app/c",)))
        floor = sorted(rows["bare"])[len(rows["bare"]) // 2]
        for k, v in rows.items():
            med = sorted(v)[len(v) // 2]
            print(f"boot -> first status write, {k:8}: median {med:.2f} s of {v} (x{med / floor:.2f} bare)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
