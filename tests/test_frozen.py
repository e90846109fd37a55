"""host_bridge._frozen: what differs in the single-file bundle, with the bundle's markers set by the
test (sys.frozen, sys._MEIPASS). The bundle itself is built and run in test_app_version_bundle.py."""

from __future__ import annotations

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
