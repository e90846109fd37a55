"""The guest SDKs in an image's root: the Python SDK (``boinc_guest``, with hash-checked bytecode, so
mtimes do not matter and the read-only root needs no writes) in every Python's dist-/site-packages the
tree has, and the C SDK (``libboinc_guest.so.0`` + the static library, headers, pkg-config file) under
``/usr/local``, with the tree's loader cache refreshed (``ldconfig -r``)."""

from __future__ import annotations

import compileall
import hashlib
import logging
import py_compile
import re
import shutil
import subprocess
from pathlib import Path

from host_bridge.images.parts import REPO_ROOT, ImageError

logger = logging.getLogger(__name__)

PY_SDK = REPO_ROOT / "guest_sdk" / "python" / "boinc_guest"
C_SDK = REPO_ROOT / "guest_sdk" / "c"
C_LIB = "libboinc_guest.so.0"


def sdk_digest() -> str:
    """Content hash of both SDKs' files (part of an image's cache keys)."""
    h = hashlib.sha256()
    files = (
        sorted(PY_SDK.glob("*.py"))
        + sorted((C_SDK / "include").rglob("*.h"))
        + sorted((C_SDK / "src").glob("*.[ch]"))
    )
    if not files:
        raise ImageError(f"no guest SDK sources in {PY_SDK} / {C_SDK}")
    for f in files:
        h.update(str(f.relative_to(REPO_ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def python_sdk_dirs(tree: Path) -> list[Path]:
    """Where the tree's Pythons look for packages: Debian's ``usr/lib/python3/dist-packages`` (when a
    ``usr/lib/python3.X`` exists), else each ``usr/lib/python3.X/site-packages`` and
    ``usr/local/lib/python3.X/site-packages`` of an interpreter the tree has."""
    out: list[Path] = []
    libs = sorted(
        p for p in (tree / "usr" / "lib").glob("python3.*") if re.fullmatch(r"python3\.\d+", p.name)
    )
    if (libs and (tree / "usr" / "lib" / "python3").is_dir()) or (
        libs and (tree / "etc" / "debian_version").exists()
    ):
        out.append(tree / "usr" / "lib" / "python3" / "dist-packages")
    else:
        out += [lib / "site-packages" for lib in libs]
    for lib in sorted((tree / "usr" / "local" / "lib").glob("python3.*")):
        if re.fullmatch(r"python3\.\d+", lib.name) and (lib / "os.py").exists():
            out.append(lib / "site-packages")
    return out


def install_python_sdk(tree: Path) -> list[str]:
    """Copy ``boinc_guest`` into each of the tree's package folders; returns the guest paths."""
    placed = []
    for d in python_sdk_dirs(tree):
        dest = d / "boinc_guest"
        if dest.exists():
            shutil.rmtree(dest)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(PY_SDK, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        compileall.compile_dir(
            str(dest), quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
        )
        placed.append("/" + str(dest.relative_to(tree)))
    return placed


def c_sdk_build() -> Path:
    """The C SDK's build folder (``make`` when the libraries are missing)."""
    build = C_SDK / "build"
    if not (build / C_LIB).exists() or not (build / "libboinc_guest.a").exists():
        try:
            subprocess.run(["make", "-s", "-C", str(C_SDK)], check=True, timeout=300, capture_output=True)
        except (OSError, subprocess.SubprocessError) as e:
            raise ImageError(f"cannot build the C guest SDK in {C_SDK} ({e}): run 'make -C {C_SDK}'") from e
    return build


def install_c_sdk(tree: Path) -> None:
    build = c_sdk_build()
    lib = tree / "usr" / "local" / "lib"
    inc = tree / "usr" / "local" / "include" / "boinc-guest"
    (lib / "pkgconfig").mkdir(parents=True, exist_ok=True)
    real = (build / C_LIB).resolve()
    for name in (real.name, "libboinc_guest.a"):
        shutil.copyfile(build / name, lib / name)
        (lib / name).chmod(0o644)
    for link, target in ((C_LIB, real.name), ("libboinc_guest.so", C_LIB)):
        if (lib / link).is_symlink() or (lib / link).exists():
            (lib / link).unlink()
        (lib / link).symlink_to(target)
    shutil.copyfile(build / "boinc-guest.pc", lib / "pkgconfig" / "boinc-guest.pc")
    if inc.exists():
        shutil.rmtree(inc)
    shutil.copytree(C_SDK / "include", inc)
    if (tree / "etc").is_dir() and shutil.which("ldconfig"):
        conf = tree / "etc" / "ld.so.conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "boinc-guest.conf").write_text("/usr/local/lib\n")
        if not (tree / "etc" / "ld.so.conf").exists():
            (tree / "etc" / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
        r = subprocess.run(["ldconfig", "-X", "-r", str(tree)], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            logger.warning("ldconfig -r %s: %s", tree, r.stderr.strip()[-300:])
