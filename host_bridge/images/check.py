"""``host-bridge image check DIR``: boot a built image once under QEMU (KVM where it works, else TCG)
and report what an admin needs to know: boot -> agent ready (the app started) time, the guest SDKs
found, the Python version if any, the size to download (the kernel gzipped, as ``<gzip/>`` ships it)
and the memory needed."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from host_bridge.backends.base import TaskSpec, VMState
from host_bridge.backends.qemu.settings import QemuSettings, share_is_virtfs_mapped
from host_bridge.images.parts import ImageError
from host_bridge.share import Share

logger = logging.getLogger(__name__)

PROBE_FILE = "image_probe.txt"
# run by the guest's /bin/sh in the image's root, the share as its working directory
PROBE = (
    "{ "
    "v=$(python3 -c 'import sys; print(sys.version.split()[0])' 2>/dev/null); echo python=$v; "
    "python3 -c 'import boinc_guest, msgpack' 2>/dev/null && echo python_sdk=yes || echo python_sdk=no; "
    "[ -e /usr/local/lib/libboinc_guest.so.0 ] && echo c_sdk=yes || echo c_sdk=no; "
    "echo os=$(. /etc/os-release 2>/dev/null; echo $PRETTY_NAME | tr ' ' _); "
    f"}} > {PROBE_FILE}.tmp && mv {PROBE_FILE}.tmp {PROBE_FILE}"
)


@dataclass
class CheckReport:
    folder: Path
    accel: str = ""
    boot_to_agent_s: float = 0.0  # start -> the agent reports the app started
    total_s: float = 0.0  # start -> the VM's end
    exit_code: int | None = None
    facts: dict[str, str] = field(default_factory=dict)
    download_bytes: int = 0
    files_bytes: int = 0
    memory_floor_mb: int = 0
    vm_memory_mb: int = 0
    error: str = ""

    def lines(self) -> list[str]:
        f = self.facts
        sdks = [
            n
            for n, k in (("Python (boinc_guest)", "python_sdk"), ("C (libboinc_guest)", "c_sdk"))
            if f.get(k) == "yes"
        ]
        return [
            f"image {self.folder}",
            f"  boot -> agent ready: {self.boot_to_agent_s:.2f} s ({self.accel}); "
            f"whole probe run {self.total_s:.2f} s",
            f"  guest SDKs found: {', '.join(sdks) or 'none'}",
            f"  Python: {f.get('python') or 'none'}",
            f"  root: {f.get('os', '').replace('_', ' ') or 'unknown'}",
            f"  download: {self.download_bytes / 1e6:.1f} MB "
            f"(files {self.files_bytes / 1e6:.1f} MB; the kernel with <gzip/>)",
            f"  memory: at least {self.memory_floor_mb} MiB to boot; job tags: {self.vm_memory_mb} MiB",
        ]


def _gzipped_size(path: Path) -> int:
    """What ``update_versions`` ships for a ``<gzip/>`` file (gzip's default level)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += len(comp.compress(block))
    return n + len(comp.flush())


def read_manifest(folder: Path) -> dict:
    man = folder / "image.json"
    try:
        data = json.loads(man.read_text())
    except (OSError, ValueError) as e:
        raise ImageError(
            f"{man}: cannot read it ({e}): give a folder made by 'host-bridge image build'"
        ) from e
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(files.get(k), str) for k in ("kernel", "initrd", "disk")
    ):
        raise ImageError(f"{man}: no files kernel / initrd / disk: rebuild the image")
    for k in ("kernel", "initrd", "disk"):
        p = folder / files[k]
        if not p.is_file():
            raise ImageError(f"{folder}: the image's {k} file {files[k]} is missing: rebuild the image")
    return data


def check_image(folder: Path, *, timeout: float = 180.0) -> CheckReport:
    """Boot the image in ``folder`` once with a probe task; raises ImageError for a folder that is not
    an image, reports a failed boot in ``error``."""
    from host_bridge.backends.qemu.backend import QemuBackend

    folder = folder.resolve()
    man = read_manifest(folder)
    files = man["files"]
    rep = CheckReport(folder)
    rep.memory_floor_mb = int(man.get("memory_floor_mb", 0))
    rep.vm_memory_mb = int(man.get("vm_memory_mb", 256))
    for k in ("kernel", "initrd", "disk"):
        p = folder / files[k]
        rep.files_bytes += p.stat().st_size
        rep.download_bytes += _gzipped_size(p) if k == "kernel" else p.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="host-bridge-image-check-"))
    share_dir = work / "shared"
    share_dir.mkdir()
    settings = QemuSettings(
        kernel=folder / files["kernel"],
        initrd=folder / files["initrd"],
        disk_image=folder / files["disk"],
        state_dir=work / "vm_state",
        boot_timeout=timeout,
    )
    share = Share(share_dir, virtfs_mapped=share_is_virtfs_mapped(settings.share_security))
    be = QemuBackend(settings)
    try:
        task = TaskSpec(name="image-check", argv=("/bin/sh", "-c", PROBE), share=share_dir,
                        memory_mb=rep.vm_memory_mb, owner_tag=f"image-check-{work.name}")  # fmt: skip
        be.create(task, share)
        t0 = time.monotonic()
        be.start()
        started = False
        while time.monotonic() - t0 < timeout:
            st = be.poll()
            if not started and st.app_started and st.state in (VMState.RUNNING, VMState.EXITED):
                started = True
                rep.boot_to_agent_s = time.monotonic() - t0
            if st.state == VMState.EXITED:
                rep.exit_code = st.exit_code
                break
            if st.state == VMState.FAILED:
                rep.error = st.error
                break
            time.sleep(0.02)
        else:
            rep.error = f"the probe did not end within {timeout:.0f} s"
        rep.total_s = time.monotonic() - t0
        rep.accel = be.accel
        probe = share_dir / PROBE_FILE
        if probe.is_file():
            for line in probe.read_text(errors="replace").splitlines():
                k, _, v = line.partition("=")
                rep.facts[k.strip()] = v.strip()
        elif not rep.error:
            rep.error = (
                f"the probe wrote no {PROBE_FILE} (exit {rep.exit_code}): the root has no /bin/sh, or it "
                "could not run; see the VM console above"
            )
    finally:
        try:
            be.cleanup()
        finally:
            share.close()
            shutil.rmtree(work, ignore_errors=True)
    return rep


__all__ = ["CheckReport", "check_image"]
