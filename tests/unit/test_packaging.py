"""Packaging: the guest SDK installs alone, with msgpack as its only dependency (guests are minimal),
and does not bring the host bridge or its dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.timeout(600)


def test_guest_sdk_installs_with_msgpack_only(tmp_path):
    venv = tmp_path / "guest-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(ROOT / "guest_sdk" / "python")],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert r.returncode == 0, r.stderr
    listed = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert names - {"pip", "setuptools", "wheel"} == {"boinc-guest-sdk", "msgpack"}, names
    probe = (
        "import boinc_guest, importlib.util as u; "
        "print(boinc_guest.boinc_is_standalone() in (0, 1, True, False), u.find_spec('host_bridge') is None)"
    )
    out = subprocess.run(
        [str(py), "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True
    )
    assert out.stdout.split() == ["True", "True"], out.stdout + out.stderr
