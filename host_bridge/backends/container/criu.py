"""Container checkpoints with CRIU: whether CRIU works on this host (checked once, cached), and the
CRIU configuration file a restore needs.

CRIU >= 4.1 is needed on kernels >= 6.13 (Debian 12's 3.17 fails: ``vdso: Unexpected rt vDSO area
bounds``); ``scripts/setup.sh`` builds it. With ``--init`` podman bind-mounts its init (catatonit) as a
single file into the container, and CRIU 4.1's default mount engine cannot restore such a file mount
here (``mnt-v2: Can't remount ... with MS_PRIVATE: Invalid argument``); the older engine can
(``mntns-compat-mode``), but CRIU refuses that option at a dump. So every container is created with
runc's ``org.criu.config`` annotation naming a per-task file (``restore_config_path``) that exists only
while a restore runs (``restore_config``): runc passes the file to CRIU when it exists, and runs CRIU
without it otherwise. The file lives in a folder only the bridge's user can write (never in the slot,
which the guest may write: a CRIU configuration can name programs CRIU runs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from host_bridge.osutil import atomic_write

from .podman import explain

log = logging.getLogger(__name__)

__all__ = ["CRIU_CONFIG_ANNOTATION", "criu_works", "restore_config", "restore_config_path"]

CRIU_MIN = (4, 1)
CRIU_CONFIG_ANNOTATION = "org.criu.config"  # runc: the CRIU configuration file of this container
RESTORE_OPTIONS = "mntns-compat-mode\n"  # a file mount (podman's --init) restored by CRIU's v1 engine

_cache: bool | None = None


def criu_works() -> bool:
    """Whether a container checkpoint can work here: CRIU >= 4.1 on PATH and ``criu check`` passes.
    Checked once (~50 ms), cached for the bridge's life."""
    global _cache
    if _cache is not None:
        return _cache
    ok = False
    criu = shutil.which("criu")
    if criu is None:
        log.info("no criu on PATH: no container checkpoints (scripts/setup.sh builds CRIU >= 4.1)")
    else:
        try:
            v = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=10)
            m = re.search(r"Version:\s*(\d+)\.(\d+)", v.stdout)
            if m is not None and (int(m.group(1)), int(m.group(2))) >= CRIU_MIN:
                c = subprocess.run([criu, "check"], capture_output=True, text=True, timeout=30)
                ok = c.returncode == 0
                if not ok:
                    log.info("%s check failed (%s): no container checkpoints", criu, explain(c.stderr))
            else:
                log.info(
                    "%s is CRIU %s, older than 4.1 (which kernels >= 6.13 need): no container checkpoints",
                    criu,
                    m.group(0) if m else "of an unknown version",
                )
        except (OSError, subprocess.TimeoutExpired) as e:
            log.info("cannot run %s (%s): no container checkpoints", criu, e)
    _cache = ok
    return ok


def _config_dir() -> Path | None:
    """A folder only this user can write: /run/boinc-host-bridge for root, else under
    XDG_RUNTIME_DIR; None when there is none (the annotation is then left out)."""
    if os.geteuid() == 0:
        base = Path("/run")
    else:
        xdg = os.environ.get("XDG_RUNTIME_DIR", "")
        if not xdg:
            return None
        base = Path(xdg)
    return base / "boinc-host-bridge"


def restore_config_path(owner_tag: str) -> Path | None:
    """The CRIU configuration file of ``owner_tag``'s container (the annotation's value), or None."""
    d = _config_dir()
    if d is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", owner_tag)
    return d / f"{safe}.criu.conf"


@contextlib.contextmanager
def restore_config(owner_tag: str) -> Iterator[None]:
    """Make the file of ``restore_config_path`` exist for the restore run in the block, then remove
    it (a later dump must not see it). Refuses a folder that is a link or not the user's own."""
    path = restore_config_path(owner_tag)
    if path is None:
        yield
        return
    made = False
    try:
        with contextlib.suppress(FileExistsError):
            path.parent.mkdir(mode=0o700)
        st = os.lstat(path.parent)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            log.warning("%s is not a private folder of this user: restoring without it", path.parent)
        else:
            atomic_write(path, RESTORE_OPTIONS.encode(), mode=0o600, sync=False)
            made = True
    except OSError as e:
        log.warning("cannot write the CRIU restore options %s (%s): restoring without them", path, e)
    try:
        yield
    finally:
        if made:
            with contextlib.suppress(OSError):
                path.unlink()
