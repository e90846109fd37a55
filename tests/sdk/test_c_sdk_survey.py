"""Behaviours of the C SDK that the compatibility survey (bench/csdk_survey.py, docs/guest_sdk_c.md)
found different from BOINC 7.20.5's library while comparing public apps' outputs, linked both ways."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import C_PROGRAMS

sys.path.insert(0, str(C_PROGRAMS))
import csdk
from boinc_guest import protocol as P


@pytest.fixture(scope="module")
def survey_app(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    csdk.build()
    out = tmp_path_factory.mktemp("survey_bin")
    src = [csdk.PROGRAMS / "survey_app.c"]
    return {
        "dyn": csdk.compile_program(src, out / "survey_dyn"),
        "static": csdk.compile_program(src, out / "survey_static", static=True),
    }


@pytest.mark.parametrize("link", ["dyn", "static"])
def test_fraction_done_is_minus_one_until_reported_and_msg_prefix(
    survey_app: dict[str, Path], tmp_path: Path, link: str
) -> None:
    """Standalone: BOINC's boinc_get_fraction_done() is -1 before the first boinc_fraction_done (SixTrack
    logged "Progress: 0.000 %" with the SDK, "-100.000 %" with BOINC); boinc_msg_prefix is BOINC's
    "HH:MM:SS (pid):" (the SDK printed the date too, so BOINC's multi_thread sample's lines differed)."""
    env = {k: v for k, v in os.environ.items() if k != "BOINC_GUEST_DIR"}
    r = subprocess.run([str(survey_app[link])], cwd=tmp_path, env=env, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "before=-1 init=-1 now=0.25"
    m = re.fullmatch(r"prefix=(\d\d):(\d\d):(\d\d) \((\d+)\):", lines[1])
    assert m and int(m.group(1)) < 24 and int(m.group(2)) < 60 and int(m.group(4)) > 0, lines[1]


@pytest.mark.parametrize("link", ["dyn", "static"])
def test_unset_fraction_done_reaches_the_host_as_zero(
    survey_app: dict[str, Path], tmp_path: Path, link: str
) -> None:
    """The -1 stays inside the app: the status file carries 0 until progress is reported, then it."""
    res = csdk.run([str(survey_app[link]), "noprogress"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().splitlines()[0] == "before=-1 init=-1 now=-1"
    assert P.decode_status((tmp_path / P.STATUS_FILE).read_bytes()).fraction_done == 0.0
    share = tmp_path / "progress"
    share.mkdir()
    res = csdk.run([str(survey_app[link])], share)
    assert res.returncode == 0 and res.stdout.decode().startswith("before=-1 init=-1 now=0.25")
    assert P.decode_status((share / P.STATUS_FILE).read_bytes()).fraction_done == 0.25
