"""The host-bridge command line: check, demo, and the exit codes of a run without a client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "data" / "jobs-real"

pytestmark = pytest.mark.timeout(120)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "guest_sdk" / "python")]))
    return subprocess.run(
        [sys.executable, "-m", "host_bridge", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=cwd,
    )


def test_check_prints_the_plan():
    r = run("check", str(REAL / "extra" / "boinc_samples_vm_wrapper_job.xml"))
    assert r.returncode == 0, r.stderr
    assert "worker.py" in r.stdout and "out" in r.stdout
    assert "VMmanage" in r.stdout + r.stderr  # obsolete tasks are named, with a warning


def test_check_names_file_line_and_tag(tmp_path):
    bad = tmp_path / "job.xml"
    bad.write_text(
        "<job_desc>\n  <task>\n    <application>a</application>\n"
        "    <weight>x</weight>\n  </task>\n</job_desc>\n"
    )
    r = run("check", str(bad))
    assert r.returncode != 0
    assert f"{bad}:4" in r.stderr and "<weight>" in r.stderr


def test_check_malformed_real_file():
    r = run("check", str(REAL / "icrar_sourcefinder_MALFORMED_vbox_job.xml"))
    assert r.returncode != 0
    assert ":7" in r.stderr


def test_demo_runs_the_worker_standalone():
    r = run("demo", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100.0%" in r.stdout
    assert "HELLO FROM THE INPUT FILE" in r.stdout


def run_job(slot: Path, application: str, command_line: str) -> subprocess.CompletedProcess[str]:
    """Write a one-task job file into ``slot`` and run the bridge there, standalone."""
    slot.mkdir(exist_ok=True)
    (slot / "job.xml").write_text(
        f"<job_desc><task><application>{application}</application><command_line>{command_line}"
        "</command_line></task></job_desc>"
    )
    return run("--standalone", cwd=slot)


def test_standalone_run_in_a_plain_directory(tmp_path):
    r = run_job(tmp_path, "sh", "-c 'echo hi > out; exit 3'")
    assert r.returncode == 3, r.stdout + r.stderr
    assert (tmp_path / "out").read_text() == "hi\n"


def test_standalone_run_with_an_absolute_program_path(tmp_path):
    """<application> may name a program on the host by its absolute path (not a logical name)."""
    r = run_job(tmp_path, "/bin/sh", "-c 'echo abs > out'")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "out").read_text() == "abs\n"
    assert "internal error" not in r.stderr


def test_python_interpreter_choice(tmp_path):
    """A bare python3 runs with the bridge's interpreter (it has the guest SDK); an absolute interpreter
    path is run as named (the host's own Python and its packages)."""
    code = "-c \"import sys; open('out','w').write(sys.executable)\""
    for app, expected in (("python3", sys.executable), ("/usr/bin/python3", "/usr/bin/python3")):
        slot = tmp_path / app.replace("/", "_")
        r = run_job(slot, app, code)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (slot / "out").read_text() == expected
