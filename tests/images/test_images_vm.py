"""Images made by host_bridge.images, booted for real (QEMU, TCG here) through the whole chain: the
bridge as a subprocess on the real libboinc_api, SlotClient playing the client on the real shared
memory, the image's files linked into the slot as the app version's (job_tags.xml pasted into the job).

- a Python app importing numpy (a matrix product the test checks) and a C++ app dynamically linked to
  Debian's libgmpxx (30! computed with GMP's C++ class) and to the C guest SDK's shared library, in one
  image built from Debian packages (``--debian python3-numpy --debian libgmpxx4ldbl``);
- an image from a ``podman export`` tarball (a private podman; a busybox root + a static C app);
- ``image check`` on the Debian image.

The images are built once per session (the Debian tree and the root disk are cached in BOINC_VM_CACHE
or ~/.cache/boinc-vm-bridge, outside the repo: a warm build copies them)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from host_bridge.images.build import BuildSpec, build_image
from tests.support.bridge import Bridge
from tests.support.images import STATIC_C, matrix_expected
from tests.support.podman import private_podman
from tests.support.vm import close_vm_slots, qemu_of, vm_slot

ROOT = Path(__file__).resolve().parents[2]
CSDK = ROOT / "guest_sdk" / "c"

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

JOB = """<job_desc>
    <task>
        <application>{app}</application>
        <command_line>{args}</command_line>
        <copy_file_from_VM>out</copy_file_from_VM>
{tags}
    </task>
</job_desc>
"""


@pytest.fixture
def run_in_image(tmp_path):
    made = []

    def run(image: Path, app: str, args: str = "", timeout: float = 240) -> tuple[Path, list[float]]:
        files = json.loads((image / "image.json").read_text())["files"]
        tags = "\n".join(
            ln for ln in (image / "job_tags.xml").read_text().splitlines() if ln.startswith("<vm_")
        )
        proj = tmp_path / f"project{len(made)}"
        proj.mkdir()
        texts = {n: f"<soft_link>{image / n}</soft_link>\n" for n in files.values()}
        texts["job.xml"] = JOB.format(app=app, args=args, tags=tags)
        texts["out"] = f"<soft_link>{proj}/result_out</soft_link>\n"
        c = vm_slot("hbimg", {}, texts)
        made.append(c)
        b = Bridge(c.slot_dir)
        fractions: list[float] = []
        try:
            deadline = time.monotonic() + timeout
            while b.proc.poll() is None and time.monotonic() < deadline:
                m = c.read_app_status()
                if m is not None:
                    fractions.append(float(m["fraction_done"]))
                time.sleep(0.02)
            assert b.wait(30) == 0, b.log()
        finally:
            b.close()
        assert not qemu_of(c.slot_dir)
        assert (c.slot_dir / "boinc_finish_called").exists(), b.log()
        return proj / "result_out", fractions

    yield run
    close_vm_slots(made)


def test_python_numpy_app_from_debian_packages(numpy_image: Path, run_in_image) -> None:
    out, fractions = run_in_image(numpy_image, "python3", "/app/matrix.py")
    got = json.loads(out.read_text())
    assert [x for row in got["c"] for x in row] == pytest.approx(matrix_expected())
    assert got["numpy"].startswith("1.")
    assert fractions == sorted(fractions) and any(0.0 < f < 1.0 for f in fractions), fractions


def test_cxx_app_linked_to_a_debian_library(numpy_image: Path, run_in_image) -> None:
    out, fractions = run_in_image(numpy_image, "/app/fact")
    assert out.read_text() == "265252859812191058636308480000000\n"  # 30!
    assert fractions and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0), fractions


def test_image_check_reports_boot_sdks_python_size_memory(numpy_image: Path) -> None:
    exe = ROOT / ".venv" / "bin" / "host-bridge"
    r = subprocess.run(
        [str(exe), "image", "check", str(numpy_image)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    m = re.search(r"boot -> agent ready: ([\d.]+) s \((kvm|tcg)\)", r.stdout)
    assert m and 0 < float(m.group(1)) < 60, r.stdout
    assert "guest SDKs found: Python (boinc_guest), C (libboinc_guest)" in r.stdout
    assert re.search(r"Python: 3\.\d+\.\d+", r.stdout)
    d = re.search(r"download: ([\d.]+) MB \(files ([\d.]+) MB", r.stdout)
    assert d and 0 < float(d.group(1)) < float(d.group(2))  # the kernel ships gzipped
    assert re.search(r"memory: at least \d+ MiB to boot; job tags: \d+ MiB", r.stdout)


def test_image_from_a_podman_export(tmp_path: Path, run_in_image) -> None:
    subprocess.run(["make", "-s", "-C", str(CSDK)], check=True, timeout=300)
    (tmp_path / "app.c").write_text(STATIC_C)
    subprocess.run(
        ["gcc", "-static", "-O2", "-I", str(CSDK / "include"), "-o", str(tmp_path / "app"),
         str(tmp_path / "app.c"), str(CSDK / "build" / "libboinc_guest.a"), "-lpthread"],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    with private_podman() as pm:
        pm.import_image(
            pm.rootfs_tar(tmp_path / "base.tar", {"/app/run": tmp_path / "app"}), "localhost/hbimg"
        )
        cid = pm.run("create", "--pull", "never", "localhost/hbimg", "/app/run").stdout.strip()
        exported = tmp_path / "exported.tar"
        pm.run("export", "-o", str(exported), cid)
        pm.run("rm", "-f", cid)
    img = build_image(BuildSpec(out=tmp_path / "image", rootfs=exported))
    assert img.manifest["root"]["kind"] == "tar"  # type: ignore[index]
    out, fractions = run_in_image(img.out, "/app/run")
    assert out.read_text() == "static app ran\n"
    assert fractions and fractions[-1] == pytest.approx(1.0)


def test_image_from_a_dockerfile(tmp_path: Path, run_in_image) -> None:
    """--dockerfile: podman builds it (FROM an image already on the build machine, no registry),
    the builder exports it, removes what podman made, and the app runs in the VM."""
    subprocess.run(["make", "-s", "-C", str(CSDK)], check=True, timeout=300)
    (tmp_path / "app.c").write_text(STATIC_C)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    subprocess.run(
        ["gcc", "-static", "-O2", "-I", str(CSDK / "include"), "-o", str(ctx / "app"),
         str(tmp_path / "app.c"), str(CSDK / "build" / "libboinc_guest.a"), "-lpthread"],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    (ctx / "Dockerfile").write_text("FROM localhost/hbdf-base\nCOPY app /app/run\n")
    with private_podman() as pm:
        pm.import_image(pm.rootfs_tar(tmp_path / "base.tar", {}), "localhost/hbdf-base")
        images_before = {i.get("Id") for i in pm.images()}
        with pm.activate():
            img = build_image(BuildSpec(out=tmp_path / "image", dockerfile=ctx / "Dockerfile"))
        assert {i.get("Id") for i in pm.images()} == images_before, "the build's image was left"
        assert not pm.containers(), "the export's container was left"
    assert img.manifest["root"]["kind"] == "dockerfile"  # type: ignore[index]
    out, fractions = run_in_image(img.out, "/app/run")
    assert out.read_text() == "static app ran\n"
    assert fractions and fractions[-1] == pytest.approx(1.0)
