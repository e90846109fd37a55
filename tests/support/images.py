"""Images made by ``host-bridge image build`` for the tests, and what an admin takes from one.

- The numpy / libgmpxx Debian image (tests/images/test_images_vm.py, tests/e2e/test_e2e_image_client.py):
  one definition of its inputs, so every test that builds it asks for the same root disk and the builder
  copies it from its cache (keyed by the inputs' hashes) after the first build of the machine.
- A small image from a busybox root tarball with a static C app (the single-file bundle's VM test).
- The app version as an admin ships it: the image's ``version.xml`` ``<file>`` entries (physical and
  logical names) and a job file with ``job_tags.xml``'s tags pasted into its ``<task>``.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.support.paths import ROOT

CSDK = ROOT / "guest_sdk" / "c"
BUSYBOX = "/bin/busybox"

MATRIX_PY = """\
import json, time
import numpy as np
from boinc_guest import boinc_init, boinc_fraction_done, boinc_finish, boinc_resolve_filename
boinc_init()
a = np.arange(1.0, 10.0).reshape(3, 3)
for i in range(5):
    boinc_fraction_done(i / 5)
    time.sleep(0.3)
c = a @ a.T + np.linalg.inv(np.diag([2.0, 4.0, 8.0])).sum()
with open(boinc_resolve_filename("out"), "w") as f:
    json.dump({"c": c.tolist(), "numpy": np.__version__}, f)
boinc_finish(0)
"""

FACT_CPP = r"""
#include <gmpxx.h>
#include <fstream>
#include <unistd.h>
#include "boinc_api.h"
int main() {
    boinc_init();
    mpz_class f = 1;
    for (int i = 1; i <= 30; i++) {
        f *= i;
        boinc_fraction_done(i / 30.0);
        usleep(50000);
    }
    char path[512];
    boinc_resolve_filename("out", path, sizeof path);
    std::ofstream(path) << f.get_str() << "\n";
    boinc_finish(0);
}
"""

STATIC_C = r"""
#include <stdio.h>
#include <unistd.h>
#include "boinc_api.h"
int main(void) {
    boinc_init();
    for (int i = 1; i <= 10; i++) { boinc_fraction_done(i / 10.0); usleep(50000); }
    FILE *f = fopen("out", "w");
    fprintf(f, "static app ran\n");
    fclose(f);
    boinc_finish(0);
    return 0;
}
"""


def matrix_expected() -> list[float]:
    """What MATRIX_PY writes as ``c``, flattened: a @ a.T + (1/2 + 1/4 + 1/8)."""
    a = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
    return [sum(a[i][k] * a[j][k] for k in range(3)) + 0.875 for i in range(3) for j in range(3)]


def build_numpy_image(work: Path) -> tuple[Path, bool]:
    """The Debian image with python3-numpy (``/app/matrix.py``) and libgmpxx (``/app/fact``, linked to the
    C guest SDK's shared library) in ``work / "image"``: (its folder, whether the root disk came from the
    builder's cache). The C++ program is built reproducibly (same bytes in any folder), so the cache key
    is the same for every caller."""
    from host_bridge.images.build import BuildSpec, build_image

    (work / "matrix.py").write_text(MATRIX_PY)
    (work / "fact.cpp").write_text(FACT_CPP)
    subprocess.run(["make", "-s", "-C", str(CSDK)], check=True, timeout=300)
    subprocess.run(
        ["g++", "-O2", "-I", str(CSDK / "include"), "-o", str(work / "fact"), str(work / "fact.cpp"),
         "-L", str(CSDK / "build"), "-lboinc_guest", "-lgmpxx", "-lgmp"],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    img = build_image(
        BuildSpec(
            out=work / "image",
            debian=("python3-numpy", "libgmpxx4ldbl"),
            add=((work / "matrix.py", "/app/matrix.py"), (work / "fact", "/app/fact")),
        )
    )
    return img.out, img.disk_cached


def static_c_app(dest: Path) -> Path:
    """STATIC_C linked statically with the C guest SDK (it runs in any root, even busybox's)."""
    subprocess.run(["make", "-s", "-C", str(CSDK)], check=True, timeout=300)
    src = dest.with_suffix(".c")
    src.write_text(STATIC_C)
    subprocess.run(
        ["gcc", "-static", "-O2", "-I", str(CSDK / "include"), "-o", str(dest), str(src),
         str(CSDK / "build" / "libboinc_guest.a"), "-lpthread"],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    return dest


def busybox_rootfs_tar(dest: Path, files: dict[str, Path]) -> Path:
    """A root file system tarball as ``podman export`` writes one: busybox-static (``/bin/sh``) and
    ``files`` (path in the root -> host file, kept executable)."""
    with tarfile.open(dest, "w") as tar:
        made: set[str] = set()

        def add_dir(name: str) -> None:
            if name in made:
                return
            made.add(name)
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tar.addfile(ti)

        for d in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            add_dir(d)
        tar.add(BUSYBOX, "bin/busybox")
        ti = tarfile.TarInfo("bin/sh")
        ti.type = tarfile.SYMTYPE
        ti.linkname = "busybox"
        tar.addfile(ti)
        for guest, host in files.items():
            parts = guest.strip("/").split("/")
            for i in range(1, len(parts)):
                add_dir("/".join(parts[:i]))
            data = host.read_bytes()
            ti = tarfile.TarInfo("/".join(parts))
            ti.size = len(data)
            ti.mode = 0o755
            tar.addfile(ti, io.BytesIO(data))
    return dest


def image_version_files(image: Path) -> list[tuple[Path, str]]:
    """The image's files as ``version.xml`` (written by the builder) lists them for the app version:
    (the file in the image folder, its logical name)."""
    root = ET.parse(image / "version.xml").getroot()
    files = []
    for f in root.iter("file"):
        physical = (f.findtext("physical_name") or "").strip()
        logical = (f.findtext("logical_name") or physical).strip()
        assert physical and (image / physical).is_file(), f"{image / 'version.xml'}: {physical!r}"
        files.append((image / physical, logical))
    return files


def image_job(image: Path, application: str, args: str = "", extra: str = "") -> str:
    """A job file with one task that runs ``application`` in the image: ``job_tags.xml``'s tags pasted
    into the ``<task>``, as docs/images.md tells the admin; ``out`` copied back from the share."""
    text = (image / "job_tags.xml").read_text()
    tags = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("<vm_")]
    lines = [
        f"<application>{application}</application>",
        *([f"<command_line>{args}</command_line>"] if args else []),
        "<copy_file_from_VM>out</copy_file_from_VM>",
        *tags,
        *([extra] if extra else []),
    ]
    body = "\n".join(f"        {line}" for line in lines)
    return f"<job_desc>\n    <task>\n{body}\n    </task>\n</job_desc>\n"
