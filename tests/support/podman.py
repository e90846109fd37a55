"""A private podman for tests: its own containers.conf and storage under a temporary folder (the host's
default podman storage is never touched), offline images (a busybox-static root -> tar -> ``podman
import``, never a registry), and a sweep at the end that removes every container and image made.

``CONTAINERS_CONF`` / ``CONTAINERS_STORAGE_CONF`` are exported (``PrivatePodman.env``) for the bridge
subprocesses; ``PrivatePodman.activate()`` sets them in this process too (for in-process backends).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}/graph"
runroot = "{root}/run"
"""

BUSYBOX = "/bin/busybox"
_APPLETS = (
    "sh",
    "sleep",
    "echo",
    "cat",
    "mv",
    "rm",
    "ls",
    "mkdir",
    "true",
    "false",
    "printf",
    "test",
    "expr",
)


class PrivatePodman:
    """podman with a private configuration and storage in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "containers.conf").write_text(CONTAINERS_CONF)
        (root / "storage.conf").write_text(STORAGE_CONF.format(root=root))
        self.env = {
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        }
        self.program = shutil.which("podman") or "podman"

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        return env

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        old = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [self.program, *args], capture_output=True, text=True, timeout=timeout, env=self.environ()
        )
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def json(self, *args: str) -> object:
        out = self.run(*args).stdout.strip()
        return json.loads(out) if out else None

    def containers(self, label: str | None = None) -> list[dict]:
        args = ["ps", "--all", "--no-trunc", "--format", "json"]
        if label:
            args += ["--filter", f"label={label}"]
        data = self.json(*args)
        return data if isinstance(data, list) else []

    def images(self) -> list[dict]:
        data = self.json("images", "--format", "json")
        return data if isinstance(data, list) else []

    def rootfs_tar(
        self, dest: Path, files: dict[str, bytes | Path] | None = None, *, host_python: bool = False
    ) -> Path:
        """A root file system tarball: busybox-static with a few applets, ``files`` (path in the image ->
        content or host file), and, with ``host_python``, the links the host's Python needs when /usr is
        bind-mounted read-only (/lib, /lib64 -> usr/...)."""
        with tarfile.open(dest, "w") as tar:

            def add_dir(name: str) -> None:
                ti = tarfile.TarInfo(name)
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tar.addfile(ti)

            for d in ("bin", "tmp", "app", "usr", "etc", "proc", "sys", "dev"):
                add_dir(d)
            tar.add(BUSYBOX, "bin/busybox")
            for a in _APPLETS:
                ti = tarfile.TarInfo(f"bin/{a}")
                ti.type = tarfile.SYMTYPE
                ti.linkname = "busybox"
                tar.addfile(ti)
            if host_python:
                for name in ("lib", "lib64"):
                    ti = tarfile.TarInfo(name)
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = f"usr/{name}"
                    tar.addfile(ti)
            for name, content in (files or {}).items():
                name = name.lstrip("/")
                parts = name.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    with contextlib.suppress(KeyError):
                        tar.getmember("/".join(parts[:i]))
                        continue
                    add_dir("/".join(parts[:i]))
                if isinstance(content, Path):
                    tar.add(content, name)
                else:
                    ti = tarfile.TarInfo(name)
                    ti.size = len(content)
                    ti.mode = 0o755
                    import io

                    tar.addfile(ti, io.BytesIO(content))
        return dest

    def python_rootfs(self, dest: Path) -> Path:
        """A root tarball for the Python guest SDK: busybox, the SDK and msgpack in /opt/py (the job sets
        PYTHONPATH=/opt/py), and the links the host's python3 needs when the job bind-mounts the host's
        /usr read-only (``-v /usr:/usr:ro``)."""
        import boinc_guest
        import msgpack

        files: dict[str, bytes | Path] = {}
        for pkg in (Path(boinc_guest.__file__).parent, Path(msgpack.__file__).parent):
            for f in pkg.rglob("*"):
                if f.is_file() and "__pycache__" not in f.parts:
                    files[f"opt/py/{pkg.name}/{f.relative_to(pkg)}"] = f
        return self.rootfs_tar(dest, files, host_python=True)

    def import_image(self, tarball: Path, name: str) -> str:
        self.run("import", "--quiet", str(tarball), name)
        return name

    def sweep(self) -> None:
        """Remove every container and image of this private storage, then its folders."""
        for c in self.containers():
            self.run("rm", "--force", "--time", "0", str(c.get("Id")), check=False)
        self.run("rmi", "--all", "--force", check=False)


@contextlib.contextmanager
def private_podman() -> Iterator[PrivatePodman]:
    root = Path(tempfile.mkdtemp(prefix="hb-podman-"))
    pm = PrivatePodman(root)
    try:
        yield pm
    finally:
        try:
            pm.sweep()
        finally:
            _unmount_under(root)
            shutil.rmtree(root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """Unmount whatever podman left mounted under ``root`` (overlay, shm), deepest first."""
    try:
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f]
    except OSError:
        return
    for p in sorted((p for p in points if p.startswith(str(root))), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True, timeout=30)


def counted(slot: Path) -> int:
    """The counter the container tests' guest script writes into ``slot/count`` (0: none yet)."""
    try:
        return int((slot / "count").read_text())
    except (OSError, ValueError):
        return 0
