"""The accelerator probe's cache (host_bridge.backends.qemu.accel): bridges of several slots record their
choices at the same time, and none is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

WRITER = """
import sys
from host_bridge.backends.qemu import accel
for i in range(50):
    accel.remember_accel(sys.argv[1], "tcg")
"""


def test_concurrent_writers_lose_no_entry(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BOINC_VM_CACHE", str(tmp_path / "cache"))
    binaries = []
    for i in range(6):  # six "QEMU binaries": six keys
        b = tmp_path / f"qemu{i}"
        b.write_bytes(b"x" * (i + 1))
        binaries.append(b)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(b)], cwd=ROOT, env=None) for b in binaries]
    for p in procs:
        assert p.wait(60) == 0
    from host_bridge.backends.qemu import accel

    entries = accel._load_accel_file()
    assert sorted(k.split(":")[0] for k in entries) == sorted(str(b) for b in binaries)
