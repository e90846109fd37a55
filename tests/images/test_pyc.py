"""The root disk's Python bytecode survives the packer's mtimes of 0 (host_bridge.images.pyc)."""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
from pathlib import Path

from host_bridge.images.pyc import freeze_bytecode

MINOR = sys.version_info.minor
TAG = sys.implementation.cache_tag


def _stdlib(tree: Path) -> Path:
    lib = tree / "usr" / "lib" / f"python3.{MINOR}"
    lib.mkdir(parents=True)
    (lib / "os.py").write_text("# marks an interpreter\n")
    return lib


def _import_value(lib: Path, module: str) -> str:
    r = subprocess.run(
        [sys.executable, "-B", "-c", f"import sys; sys.path.insert(0, {str(lib)!r}); import {module}; "
         f"print({module}.X, {module}.__cached__)"],
        capture_output=True, text=True, timeout=60, check=True, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    return r.stdout.strip()


def test_a_valid_timestamp_pyc_keeps_working_after_the_mtimes_are_reset(tmp_path: Path) -> None:
    lib = _stdlib(tmp_path)
    src = lib / "frozenmod.py"
    src.write_text("X = 1\n")
    py_compile.compile(str(src), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    report = freeze_bytecode(tmp_path)
    assert report.converted >= 1 and report.stale == 0 and TAG in report.tags
    pyc = lib / "__pycache__" / f"frozenmod.{TAG}.pyc"
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01  # unchecked hash-based
    # what mksquashfs -all-time 0 does, plus a changed source: the bytecode is still what runs
    src.write_text("X = 2\n")
    os.utime(src, (0, 0))
    assert _import_value(lib, "frozenmod").split()[0] == "1"


def test_a_stale_pyc_is_left_alone_and_counted(tmp_path: Path) -> None:
    lib = _stdlib(tmp_path)
    src = lib / "stalemod.py"
    src.write_text("X = 1\n")
    py_compile.compile(str(src), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    before = (lib / "__pycache__" / f"stalemod.{TAG}.pyc").read_bytes()
    os.utime(src, (12345, 12345))
    report = freeze_bytecode(tmp_path)
    assert report.stale == 1 and report.converted == 0
    assert (lib / "__pycache__" / f"stalemod.{TAG}.pyc").read_bytes() == before


def test_sources_without_bytecode_are_compiled_for_our_own_python(tmp_path: Path) -> None:
    lib = _stdlib(tmp_path)
    (lib / "pkg").mkdir()
    (lib / "pkg" / "__init__.py").write_text("X = 3\n")
    (lib / "bad_syntax.py").write_text("def (:\n")  # like the stdlib's test data: skipped quietly
    report = freeze_bytecode(tmp_path)
    assert report.compiled >= 2  # os.py and pkg/__init__.py
    pyc = lib / "pkg" / "__pycache__" / f"__init__.{TAG}.pyc"
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01
    assert not (lib / "__pycache__" / f"bad_syntax.{TAG}.pyc").exists()
    # the code object names the guest's path, not the build machine's
    assert f"/usr/lib/python3.{MINOR}/pkg/__init__.py".encode() in pyc.read_bytes()


def test_a_hard_linked_pyc_is_replaced_not_written_through(tmp_path: Path) -> None:
    lib = _stdlib(tmp_path)
    src = lib / "linked.py"
    src.write_text("X = 1\n")
    py_compile.compile(str(src), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    pyc = lib / "__pycache__" / f"linked.{TAG}.pyc"
    cached = tmp_path / "cached-copy.pyc"
    os.link(pyc, cached)  # the build tree is a cp -al copy of the cached Debian tree
    before = cached.read_bytes()
    freeze_bytecode(tmp_path)
    assert cached.read_bytes() == before
    assert pyc.read_bytes() != before
