"""host_bridge._frozen: what differs in the single-file bundle, with the bundle's markers set by the
test (sys.frozen, sys._MEIPASS). The bundle itself is built and run in test_app_version_bundle.py."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from host_bridge import _frozen


@pytest.fixture
def frozen(tmp_path, monkeypatch) -> Path:
    unpacked = tmp_path / "tmp" / "_MEI00000100abcdef"
    unpacked.mkdir(parents=True)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(unpacked), raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return unpacked


def test_not_frozen_changes_nothing(tmp_path, monkeypatch):
    assert not _frozen.is_frozen() and _frozen.bundle_dir() is None
    assert _frozen.bundled_file("libboinc_api.so.7") is None
    env = {"LD_LIBRARY_PATH": "/x", "LD_LIBRARY_PATH_ORIG": "/y", "_PYI_APPLICATION_HOME_DIR": "/z"}
    _frozen.restore_child_environment(env)
    assert env == {"LD_LIBRARY_PATH": "/x", "LD_LIBRARY_PATH_ORIG": "/y", "_PYI_APPLICATION_HOME_DIR": "/z"}
    assert _frozen.python_command() == ((sys.executable,), ())


def test_child_environment_is_the_one_the_bridge_was_started_with(frozen):
    env = {
        "LD_LIBRARY_PATH": f"{frozen}:/opt/host/lib",
        "LD_LIBRARY_PATH_ORIG": "/opt/host/lib",
        "_PYI_APPLICATION_HOME_DIR": str(frozen),
        "_PYI_ARCHIVE_FILE": "/x/host_bridge",
        "_PYI_PARENT_PROCESS_LEVEL": "1",
        "PATH": "/usr/bin",
    }
    _frozen.restore_child_environment(env)
    assert env == {"LD_LIBRARY_PATH": "/opt/host/lib", "PATH": "/usr/bin"}
    env = {"LD_LIBRARY_PATH": str(frozen), "PATH": "/usr/bin"}  # started without one
    _frozen.restore_child_environment(env)
    assert env == {"PATH": "/usr/bin"}
    # python mode: the loader path is the host's, the bootloader's variables stay (spawn workers reuse
    # the unpacked folder)
    env = {"LD_LIBRARY_PATH": str(frozen), "_PYI_APPLICATION_HOME_DIR": str(frozen)}
    _frozen.restore_child_environment(env, keep_bootloader_vars=True)
    assert env == {"_PYI_APPLICATION_HOME_DIR": str(frozen)}


def test_bundled_files_and_python_command(frozen):
    assert _frozen.bundle_dir() == frozen
    assert _frozen.bundled_file("libboinc_api.so.7") is None
    (frozen / "libboinc_api.so.7").write_bytes(b"\x7fELF")
    assert _frozen.bundled_file("libboinc_api.so.7") == frozen / "libboinc_api.so.7"
    assert _frozen.python_command() == ((sys.executable,), ((_frozen.PYTHON_MODE_ENV, "1"),))


def test_remove_unpacked_of_a_dead_task(frozen, tmp_path):
    base = tmp_path / "tmp"
    dead = base / "_MEI00003039XyZabc"  # pid 12345
    (dead / "lib").mkdir(parents=True)
    other = base / "_MEI00003040XyZabc"  # another pid
    other.mkdir()
    link = base / "_MEI00003039link"
    link.symlink_to(other)
    _frozen.remove_unpacked_of(12345)
    assert not dead.exists() and other.is_dir() and link.is_symlink() and frozen.is_dir()
    # never the bridge's own folder, even if its name matched
    _frozen.remove_unpacked_of(0x100)
    assert frozen.is_dir()


def test_remove_unpacked_of_is_a_no_op_outside_the_bundle(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    d = tmp_path / "_MEI00003039XyZabc"
    d.mkdir()
    _frozen.remove_unpacked_of(12345)
    assert d.is_dir()


def _as_python(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from host_bridge._frozen import run_as_python; sys.exit(run_as_python(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_python_mode_runs_scripts_code_and_modules(tmp_path):
    """What python mode (the bundle as a task's interpreter) accepts, run here from the sources."""
    script = tmp_path / "app.py"
    script.write_text("import sys, helper\nprint(sys.argv, helper.X, __name__)\nsys.exit(3)\n")
    (tmp_path / "helper.py").write_text("X = 42\n")  # next to the script: importable, as with python
    r = _as_python(tmp_path, str(script), "a", "b")
    assert r.returncode == 3 and r.stdout.strip() == f"[{str(script)!r}, 'a', 'b'] 42 __main__", r
    r = _as_python(tmp_path, "-u", "-c", "import sys; print(sys.stdout.write_through, sys.argv)", "x")
    assert r.returncode == 0 and r.stdout.strip() == "True ['-c', 'x']", r
    r = _as_python(tmp_path, "-m", "helper")  # -m finds modules in the working directory
    assert r.returncode == 0, r
    r = _as_python(tmp_path, "-c", "raise ValueError('boom')")
    assert r.returncode == 1 and "ValueError: boom" in r.stderr
    (tmp_path / "bad.py").write_text("def f():\n    raise KeyError('k')\nf()\n")
    r = _as_python(tmp_path, "bad.py")
    # the program's frames only, as Python prints them (not python mode's and runpy's)
    assert r.returncode == 1 and "KeyError: 'k'" in r.stderr, r.stderr
    assert "bad.py" in r.stderr and "_frozen" not in r.stderr and "runpy" not in r.stderr, r.stderr
    for args in (["-i"], ["-X", "importtime", "app.py"], [], ["-c"]):
        r = _as_python(tmp_path, *args)
        assert r.returncode == 2 and "python mode" in r.stderr, (args, r)


def test_sweep_removes_only_folders_of_dead_bootloaders(frozen, tmp_path):
    base = tmp_path / "tmp"
    p = subprocess.Popen(["true"])
    p.wait()
    dead = base / f"_MEI{p.pid:08X}AbCdEf"  # its bootloader is gone: a leftover
    (dead / "lib").mkdir(parents=True)
    (dead / "libboinc_api.so.7").write_bytes(b"")
    foreign = base / f"_MEI{p.pid:08X}XyZxYz"  # another PyInstaller program's: not ours to remove
    foreign.mkdir()
    alive = base / f"_MEI{os.getpid():08X}AbCdEf"  # a running process's
    alive.mkdir()
    (alive / "libboinc_api.so.7").write_bytes(b"")
    odd = base / "_MEIzzzzzzzzAbCdEf"  # not a pid
    odd.mkdir()
    _frozen.sweep_stale_unpacked()
    assert not dead.exists() and foreign.is_dir() and alive.is_dir() and odd.is_dir() and frozen.is_dir()
