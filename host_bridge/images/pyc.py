"""Python bytecode that stays valid in a root disk whose mtimes are all 0.

The root disk is packed reproducibly (``mksquashfs -all-time 0``), which makes every timestamp-checked
``.pyc`` (what Debian's ``py3compile`` writes, and what ``pip`` writes) stale in the guest: its recorded
source mtime no longer matches, so each task's Python recompiled every module it imported from source,
under TCG, at every start (measured: the bulk of a Python image's 10.7 s boot -> first status write).

Before packing, :func:`freeze_bytecode` turns each ``__pycache__/*.pyc`` that is valid for its source
*now* (mtime and size match, PEP 552 header) into an unchecked hash-based pyc: the same code object, a
header that mtimes do not affect. The root disk is read-only and named by its content hash, so its
sources cannot change under the bytecode (a task that edits a stdlib file in its overlay keeps the old
bytecode for it: documented in docs/images.md). Sources with no bytecode at all (container images often
delete it) are compiled when the builder's own Python has the tree's cache tag (``cpython-311``);
otherwise they are left to the guest.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import py_compile
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<4sIII")  # magic, flags, mtime, size (timestamp pycs; PEP 552)
_FIRST_FLAGGED_MAGIC = 3390  # Python 3.7's first magic number with the flags word
_UNCHECKED_HASH = 0b01  # hash-based, check_source off
_PYC_NAME = re.compile(r"(?P<stem>[^.]+)\.(?P<tag>[a-z]+-\d+)(?:\.opt-[12])?\.pyc")


@dataclass(frozen=True)
class BytecodeReport:
    converted: int  # timestamp pycs turned into unchecked hash-based ones
    stale: int  # timestamp pycs that did not match their source (left as they were)
    compiled: int  # sources that had no bytecode, compiled here
    tags: tuple[str, ...]  # the interpreters' cache tags found in the tree


def _python_dirs(tree: Path) -> list[Path]:
    dirs = []
    for base in (tree / "usr" / "lib", tree / "usr" / "local" / "lib"):
        if base.is_dir() and not base.is_symlink():
            dirs += [p for p in sorted(base.glob("python3*")) if p.is_dir() and not p.is_symlink()]
    return dirs


def _tree_tags(tree: Path) -> tuple[str, ...]:
    """``cpython-3X`` for each ``python3.X`` stdlib the tree has (its ``os.py`` marks an interpreter)."""
    tags = set()
    for d in _python_dirs(tree):
        m = re.fullmatch(r"python3\.(\d+)", d.name)
        if m and (d / "os.py").is_file():
            tags.add(f"cpython-3{m.group(1)}")
    return tuple(sorted(tags))


def _convert(pyc: Path) -> str:
    """``converted``, ``stale`` or ``skip`` (not a timestamp pyc of Python >= 3.7, or no source)."""
    m = _PYC_NAME.fullmatch(pyc.name)
    if m is None:
        return "skip"
    source = pyc.parent.parent / f"{m.group('stem')}.py"
    try:
        st = os.lstat(source)
        with open(pyc, "rb") as f:
            data = f.read()
    except OSError:
        return "skip"
    if len(data) < _HEADER.size or not os.path.isfile(source) or os.path.islink(source):
        return "skip"
    magic, flags, mtime, size = _HEADER.unpack_from(data)
    if magic[2:] != b"\r\n" or int.from_bytes(magic[:2], "little") < _FIRST_FLAGGED_MAGIC or flags != 0:
        return "skip"
    if mtime != int(st.st_mtime) & 0xFFFFFFFF or size != st.st_size & 0xFFFFFFFF:
        return "stale"
    src = source.read_bytes()
    # the hash matters only to a guest run with --check-hash-based-pycs always; exact when the magic is ours
    digest = importlib.util.source_hash(src) if magic == importlib.util.MAGIC_NUMBER else bytes(8)
    new = magic + struct.pack("<I", _UNCHECKED_HASH) + digest + data[_HEADER.size :]
    tmp = pyc.with_name(f".{pyc.name}.tmp")
    tmp.write_bytes(new)  # a new file: the tree may be a hard-link copy of the cached Debian tree
    os.chmod(tmp, os.lstat(pyc).st_mode & 0o7777)
    os.replace(tmp, pyc)
    return "converted"


def _compile_missing(tree: Path, tag: str) -> int:
    """Compile the sources of the tree's Python ``tag`` that have no bytecode (our Python has ``tag``)."""
    n = 0
    minor = tag.removeprefix("cpython-3")
    roots = [d for d in _python_dirs(tree) if d.name in (f"python3.{minor}", "python3")]
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                source = Path(dirpath) / name
                cfile = Path(dirpath) / "__pycache__" / f"{name[:-3]}.{tag}.pyc"
                if cfile.exists() or source.is_symlink():
                    continue
                try:
                    py_compile.compile(
                        str(source), cfile=str(cfile), dfile="/" + str(source.relative_to(tree)),
                        doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                    )  # fmt: skip
                    n += 1
                except (py_compile.PyCompileError, OSError, ValueError):
                    continue  # test data with deliberate syntax errors, sources for other Pythons
    return n


def freeze_bytecode(tree: Path) -> BytecodeReport:
    """Make the tree's Python bytecode independent of mtimes (see the module docstring)."""
    counts = {"converted": 0, "stale": 0, "skip": 0}
    for d in _python_dirs(tree):
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames.sort()
            if os.path.basename(dirpath) != "__pycache__":
                continue
            for name in sorted(filenames):
                counts[_convert(Path(dirpath) / name)] += 1
    tags = _tree_tags(tree)
    compiled = 0
    if sys.implementation.cache_tag in tags:
        compiled = _compile_missing(tree, sys.implementation.cache_tag)
    report = BytecodeReport(counts["converted"], counts["stale"], compiled, tags)
    logger.info(
        "bytecode: %d pycs made mtime-independent, %d stale left, %d sources compiled (Pythons: %s)",
        report.converted, report.stale, report.compiled, ", ".join(tags) or "none",
    )  # fmt: skip
    return report
