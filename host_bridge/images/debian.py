"""A Debian root file system tree from packages: ``debootstrap --variant=minbase --include=...`` of the
build machine's release from the Debian mirror in its apt sources, ``.deb`` files cached, the tree cached
by a key of what went into it (suite, packages, variant, layout; not the time, not the mirror). The
image builder (host_bridge.images.build) and the ``<vm_python/>`` root (host_bridge.images.testimage)
both take their Debian trees from here."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from host_bridge.images.parts import ImageError, cache_dir, debian_mirror

logger = logging.getLogger(__name__)

VARIANT = "minbase"
DEBOOTSTRAP_TIMEOUT = 1200.0  # s for one debootstrap run (the whole process group is killed after)
_LAYOUT = 2  # bump when the tree's trimming / normalisation changes
# not needed in a VM image, and some of it differs from one build to the next
_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt", "var/log")
_UNSTABLE = (
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
)
MOUNT_POINTS = ("boinc/shared", "proc", "sys", "dev", "tmp")
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def base_key(suite: str, packages: tuple[str, ...], variant: str = VARIANT) -> str:
    """Deterministic key of a debootstrap tree: what goes into it, not when or from where."""
    doc = f"{suite}|{variant}|{','.join(sorted(set(packages)))}|amd64|layout{_LAYOUT}"
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def check_package_names(packages: tuple[str, ...]) -> None:
    """Refuse names that are not Debian package names, and names the build machine's apt does not know
    (when apt knows any package at all: without apt lists the check is left to debootstrap)."""
    for p in packages:
        if not _PACKAGE_NAME.match(p):
            raise ImageError(f"--debian {p!r}: not a Debian package name (lower case, digits, + - .)")
    if not shutil.which("apt-cache") or not packages:
        return

    def known(name: str) -> bool:
        try:
            r = subprocess.run(
                ["apt-cache", "show", "--no-all-versions", name],
                capture_output=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return True
        return r.returncode == 0 and bool(r.stdout.strip())

    if not known("base-files"):
        logger.info("apt knows no packages (no apt lists?): package names are checked by debootstrap")
        return
    unknown = [p for p in packages if not known(p)]
    if unknown:
        raise ImageError(
            f"--debian {', '.join(unknown)}: no such Debian package for this release (apt-cache show "
            "finds none): check the name with 'apt-cache search NAME' (or run 'apt-get update')"
        )


def _run_group(cmd: list[str], timeout: float, log: Path) -> None:
    """Run ``cmd`` in its own process group with output to ``log``; kill the whole group on timeout."""
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        except FileNotFoundError as e:
            raise ImageError(
                f"{cmd[0]} is not installed ({e}): apt-get install {cmd[0]} (see scripts/setup.sh)"
            ) from e
        try:
            rc = proc.wait(timeout)
        except BaseException:  # timeout, or the builder interrupted: no debootstrap left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if rc != 0:
        text = log.read_text(errors="replace")
        missing = re.search(r"Couldn't find these debs: (.*)", text)
        if missing:
            raise ImageError(
                f"--debian: debootstrap found no package {missing.group(1).strip()} in the mirror: "
                "check the name with 'apt-cache search NAME'"
            )
        tail = text.strip().splitlines()[-5:]
        raise ImageError(f"{' '.join(cmd[:3])} ... failed (exit {rc}, log {log}): {' | '.join(tail)}")


def _normalise(tree: Path) -> None:
    """Drop what a VM image does not need and what differs between two builds of the same inputs."""
    for rel in _TRIM:
        shutil.rmtree(tree / rel, ignore_errors=True)
    (tree / "var" / "log").mkdir(parents=True, exist_ok=True)
    for rel in _UNSTABLE:
        with contextlib.suppress(OSError):
            (tree / rel).unlink()
    for lists in (tree / "var" / "lib" / "apt" / "lists").glob("*_*"):
        with contextlib.suppress(OSError):
            lists.unlink()
    mid = tree / "etc" / "machine-id"
    if mid.exists():
        mid.write_text("")
    shadow = tree / "etc" / "shadow"
    if shadow.is_file():  # field 3 is the day the password last changed: the build's date
        lines = []
        for line in shadow.read_text().splitlines():
            f = line.split(":")
            if len(f) > 2:
                f[2] = ""
            lines.append(":".join(f))
        mode = shadow.stat().st_mode
        shadow.write_text("\n".join(lines) + "\n")
        shadow.chmod(mode & 0o7777)
    for d in MOUNT_POINTS:
        (tree / d).mkdir(parents=True, exist_ok=True)
    tree.chmod(0o755)


def debian_base(packages: tuple[str, ...], *, what: str = "the image") -> Path:
    """The cached Debian tree with ``packages`` (minbase + them), built on first use (a minute or two,
    needs root); later calls return at once. One builder at a time (``flock``); a half-built tree is
    never used (temporary folder + rename, ``.complete`` marker)."""
    packages = tuple(sorted(set(packages)))
    cache = cache_dir()
    folder = cache / "debian"
    folder.mkdir(exist_ok=True)
    mirror, suite = debian_mirror()
    key = base_key(suite, packages)
    base = folder / f"base-{key}"
    done = folder / f"base-{key}.complete"
    if done.exists() and base.is_dir():
        return base
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and base.is_dir():
            return base
        if os.geteuid() != 0:
            raise ImageError(
                f"building {what} needs root (debootstrap): run the build as root (sudo), with the same "
                f"BOINC_VM_CACHE ({cache})"
            )
        if not shutil.which("debootstrap"):
            raise ImageError(
                "debootstrap is not installed: apt-get install debootstrap (see scripts/setup.sh)"
            )
        check_package_names(packages)
        debs = cache / "debootstrap-debs"
        debs.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".base-{key}-"))
        log = folder / f"debootstrap-{key}.log"
        log.write_text("")
        t0 = time.monotonic()
        logger.info("debootstrap %s + %s from %s (a minute or two)", suite, ",".join(packages) or "-", mirror)
        cmd = [
            "debootstrap",
            f"--variant={VARIANT}",
            "--components=main",
            "--arch=amd64",
            f"--cache-dir={debs}",
        ]
        if packages:
            cmd.append(f"--include={','.join(packages)}")
        try:
            _run_group([*cmd, suite, str(tmp), mirror], DEBOOTSTRAP_TIMEOUT, log)
            _normalise(tmp)
            if base.exists():  # an interrupted earlier build
                shutil.rmtree(base, ignore_errors=True)
            os.replace(tmp, base)
        except subprocess.TimeoutExpired:
            raise ImageError(
                f"debootstrap did not finish within {DEBOOTSTRAP_TIMEOUT:.0f} s (log: {log}); check the "
                "network / mirror and retry"
            ) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        done.write_text(f"built in {time.monotonic() - t0:.0f} s from {mirror} {suite}\n")
    logger.info("Debian tree %s built in %.0f s", key, time.monotonic() - t0)
    return base
