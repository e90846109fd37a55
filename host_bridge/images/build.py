"""``host-bridge image build``: an app and its environment -> the files of an app version for the QEMU
backend (docs/images.md).

The output folder receives

- ``vmlinux-RELEASE-HASH``: Debian's kernel, uncompressed (PVH boot, fastest under TCG; ``<gzip/>``);
- ``initramfs-KEY.cpio.gz``: busybox, the virtio / 9p / squashfs / overlay modules and the guest agent,
  which is the ``/init``: it loads them and mounts the share and the root disk (guest_agent/boot.c);
- ``root-HASH.squashfs``: the app's root file system, read-only and shared by all tasks of a host
  (the VM boots it through the backend's per-task qcow2 overlay, and the guest puts a tmpfs overlay on
  top: a task's writes stay in its VM); compressed (lz4 by default: the fastest boot; zstd: the smallest
  download), reproducible (sorted, mtimes 0, no xattrs, the tree's own owners), its content hash in its
  name;
- ``job_tags.xml`` (the tags a ``<task>`` needs), ``version.xml`` (the app version's ``<file>``
  entries) and ``image.json`` (what went in, sizes, memory).

The root is one of: a Debian tree (debootstrap minbase + ``--debian`` packages; python3-msgpack is added
when a python3 package is asked for), a ``--rootfs`` tarball (host_bridge.images.rootfs), or a
``--dockerfile`` built and exported with podman; then both guest SDKs (host_bridge.images.sdk) and the
``--add`` files. The output appears whole or not at all (built in a temporary folder beside it, renamed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from host_bridge.backends.qemu.kernel import minimum_memory_mb
from host_bridge.images import sdk
from host_bridge.images.boot import boot_files
from host_bridge.images.debian import MOUNT_POINTS, base_key, debian_base
from host_bridge.images.parts import ImageError, cache_dir, debian_mirror
from host_bridge.images.pyc import freeze_bytecode
from host_bridge.images.rootfs import import_rootfs

logger = logging.getLogger(__name__)

FORMAT = 1  # image.json's format
ROOT_LAYOUT = 2  # what the builder does to a root before packing (2: bytecode made mtime-independent)
MKSQUASHFS_TIMEOUT = 1800.0
PODMAN_TIMEOUT = 1800.0
DEFAULT_MEMORY_MB = 256  # the backend's default vm_memory_mb
APP_MEMORY_MB = 160  # room for the app, the page cache of the root and the tmpfs overlay above the floor
_SQUASHFS_OPTS = ("-all-time", "0", "-mkfs-time", "0", "-no-xattrs", "-noappend", "-quiet", "-no-progress")
# The root disk's compression (--root-compression). Measured under TCG, a Python app's boot -> first status
# write (docs/images.md): lz4 (high compression, 128 KiB blocks) boots ~0.3 s faster than zstd (the guest
# kernel decompresses what the interpreter reads, several times faster), for a root ~37 % larger on
# disk, ~17 % larger to download (with <gzip/>, which version.xml then sets on the root too).
COMPRESSIONS: dict[str, tuple[str, ...]] = {
    "lz4": ("-comp", "lz4", "-Xhc", "-b", "128K"),
    "zstd": ("-comp", "zstd", "-Xcompression-level", "15", "-b", "256K"),
}
DEFAULT_COMPRESSION = "lz4"


@dataclass(frozen=True)
class BuildSpec:
    out: Path
    debian: tuple[str, ...] = ()
    add: tuple[tuple[Path, str], ...] = ()  # (host file, guest path)
    rootfs: Path | None = None
    dockerfile: Path | None = None
    compression: str = DEFAULT_COMPRESSION  # the root disk's: a key of COMPRESSIONS


@dataclass
class BuiltImage:
    out: Path
    kernel: str  # file names in ``out`` (= logical names in the app version)
    initrd: str
    disk: str
    manifest: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0
    disk_cached: bool = False


def parse_add(text: str) -> tuple[Path, str]:
    """``HOSTPATH:GUESTPATH`` (the guest path absolute, without ``..``) -> (host file, guest path)."""
    host, sep, guest = text.rpartition(":")
    if not sep or not host or not guest:
        raise ImageError(f"--add {text!r}: give HOSTPATH:GUESTPATH, e.g. --add worker.py:/app/worker.py")
    if not guest.startswith("/") or ".." in guest.split("/") or guest.rstrip("/") == "":
        raise ImageError(f"--add {text!r}: the guest path must be absolute and without '..' (e.g. /app/x)")
    p = Path(host)
    if not p.is_file():
        raise ImageError(f"--add {text!r}: {host} is not a file: check the path")
    return p, guest


def _check_spec(spec: BuildSpec) -> None:
    if spec.compression not in COMPRESSIONS:
        raise ImageError(
            f"--root-compression {spec.compression}: choose one of {', '.join(sorted(COMPRESSIONS))}"
        )
    if spec.rootfs is not None and spec.dockerfile is not None:
        raise ImageError("give either --rootfs or --dockerfile, not both")
    if spec.debian and (spec.rootfs is not None or spec.dockerfile is not None):
        raise ImageError("--debian builds a Debian root; with --rootfs / --dockerfile install packages there")
    if spec.rootfs is not None and not spec.rootfs.is_file():
        raise ImageError(f"--rootfs {spec.rootfs}: no such file: give a 'podman export' tarball")
    if spec.dockerfile is not None and not spec.dockerfile.is_file():
        raise ImageError(f"--dockerfile {spec.dockerfile}: no such file")
    for host, guest in spec.add:
        if not host.is_file():
            raise ImageError(f"--add {host}:{guest}: {host} is not a file: check the path")
    out = spec.out
    if out.exists() and not out.is_dir():
        raise ImageError(f"--out {out}: exists and is not a folder: choose another")
    if out.is_dir() and any(out.iterdir()) and not (out / "image.json").is_file():
        raise ImageError(f"--out {out}: a non-empty folder that is not an image: empty it or choose another")


def _packages(spec: BuildSpec) -> tuple[str, ...]:
    pk = set(spec.debian)
    if any(p == "python3" or p.startswith("python3-") for p in pk):
        pk.add("python3-msgpack")  # the Python guest SDK's only dependency
    return tuple(sorted(pk))


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tree_size(tree: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(tree):
        for n in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, n))
                total += st.st_size
    return total


def _need_space(folder: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ImageError(
            f"not enough disk space in {folder} for {what}: {need / 1e6:.0f} MB needed, "
            f"{free / 1e6:.0f} MB free: free some space or choose another --out / BOINC_VM_CACHE"
        )


def _podman(args: list[str], timeout: float = PODMAN_TIMEOUT) -> str:
    try:
        r = subprocess.run(
            ["podman", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise ImageError("--dockerfile needs podman on the build machine: apt-get install podman") from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"podman {args[0]} did not finish within {timeout:.0f} s") from None
    if r.returncode != 0:
        raise ImageError(
            f"podman {' '.join(args[:2])} failed (exit {r.returncode}): {r.stderr.strip()[-600:]}"
        )
    return r.stdout


def _dockerfile_tar(dockerfile: Path, work: Path) -> Path:
    """``podman build`` the Dockerfile (its folder as the context), export a container of it; the image
    and the container are removed again."""
    tag = f"localhost/boinc-image-build-{uuid.uuid4().hex[:12]}"
    out = work / "export.tar"
    _podman(["build", "-q", "-f", str(dockerfile), "-t", tag, str(dockerfile.parent)])
    cid = ""
    try:
        cid = _podman(["create", "--pull", "never", tag, "/bin/true"], timeout=120).strip()
        _podman(["export", "-o", str(out), cid])
    finally:
        if cid:
            with contextlib.suppress(ImageError):
                _podman(["rm", "-f", cid], timeout=120)
        with contextlib.suppress(ImageError):
            _podman(["rmi", "-f", tag], timeout=120)
    return out


def _copy_tree(base: Path, dest: Path) -> None:
    """A hard-link copy of the cached Debian tree (a real copy where links are refused): the build only
    adds files or replaces them (unlink first), never writes through a link."""
    for cmd in (["cp", "-al"], ["cp", "-a"]):
        shutil.rmtree(dest, ignore_errors=True)
        r = subprocess.run([*cmd, str(base), str(dest)], capture_output=True, text=True, timeout=600)
        if r.returncode == 0:
            return
    raise ImageError(f"cannot copy {base} to {dest}: {r.stderr.strip()[-300:]}")


def _add_files(tree: Path, add: tuple[tuple[Path, str], ...]) -> None:
    for host, guest in add:
        dest = tree / guest.strip("/")
        rel_parent = dest.parent
        if rel_parent.is_symlink() or any(
            p.is_symlink() for p in rel_parent.relative_to(tree).parents if str(p) != "."
        ):
            raise ImageError(
                f"--add {host}:{guest}: a folder on the guest path is a symbolic link in the root"
            )
        rel_parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            if dest.is_dir() and not dest.is_symlink():
                raise ImageError(f"--add {host}:{guest}: {guest} is a folder in the root: give a file path")
            dest.unlink()
        shutil.copyfile(host, dest)
        dest.chmod(0o755 if os.access(host, os.X_OK) else 0o644)


def _disk_key(spec: BuildSpec, base_id: str) -> str:
    opts = " ".join(_squashfs_opts(spec.compression))
    h = hashlib.sha256(f"format{FORMAT}.{ROOT_LAYOUT}|{base_id}|sdk{sdk.sdk_digest()}|{opts}".encode())
    for host, guest in sorted(spec.add, key=lambda a: a[1]):
        h.update(f"|{guest}|{os.access(host, os.X_OK)}|{_hash_file(host)}".encode())
    return h.hexdigest()[:24]


def _make_root(spec: BuildSpec, tree: Path, work: Path, note: Callable[[str], None]) -> dict[str, object]:
    """Fill ``tree`` with the image's root; returns what it is made of (for image.json)."""
    if spec.rootfs is not None or spec.dockerfile is not None:
        archive = spec.rootfs if spec.rootfs is not None else None
        if archive is None:
            assert spec.dockerfile is not None
            note(f"podman build {spec.dockerfile}")
            archive = _dockerfile_tar(spec.dockerfile, work)
        tree.mkdir()
        _need_space(tree.parent, 3 * archive.stat().st_size + (50 << 20), f"unpacking {archive}")
        note(f"unpacking {archive}")
        kind = import_rootfs(archive, tree)
        return {"rootfs": str(spec.rootfs or spec.dockerfile), "kind": kind if spec.rootfs else "dockerfile"}
    packages = _packages(spec)
    note(f"Debian root: minbase + {', '.join(packages) or 'nothing else'}")
    base = debian_base(packages)
    _copy_tree(base, tree)
    return {"debian": list(packages), "debian_base": base.name}


def build_image(spec: BuildSpec, *, note: Callable[[str], None] | None = None) -> BuiltImage:
    """Build the image described by ``spec`` into ``spec.out`` (see the module docstring)."""
    say = note or (lambda text: logger.info("%s", text))
    t0 = time.monotonic()
    _check_spec(spec)
    out = spec.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = cache_dir()
    (cache / "build").mkdir(exist_ok=True)
    (cache / "disks").mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    work = Path(tempfile.mkdtemp(dir=cache / "build", prefix="work-"))
    try:
        squash, made, from_cache = _root_disk(spec, work, say)
        boot = boot_files(rootdisk=True)
        disk_hash = _hash_file(squash)
        names = {
            "kernel": f"vmlinux-{boot.release}-{_hash_file(boot.kernel)[:8]}",
            "initrd": f"initramfs-{boot.key[:16]}.cpio.gz",
            "disk": f"root-{disk_hash[:16]}.squashfs",
        }
        need = (boot.kernel.stat().st_size + boot.initrd.stat().st_size + squash.stat().st_size) + (8 << 20)
        _need_space(staging, need, f"the image in {out}")
        shutil.copyfile(boot.kernel, staging / names["kernel"])
        shutil.copyfile(boot.initrd, staging / names["initrd"])
        shutil.copyfile(squash, staging / names["disk"])
        floor, _why = minimum_memory_mb(staging / names["kernel"], staging / names["initrd"])
        memory = max(DEFAULT_MEMORY_MB, -(-(floor + APP_MEMORY_MB) // 32) * 32)
        manifest: dict[str, object] = {
            "format": FORMAT,
            "files": names,
            "sha256": {"disk": disk_hash},
            "kernel_release": boot.release,
            "bytes": {k: (staging / v).stat().st_size for k, v in names.items()},
            "memory_floor_mb": floor,
            "vm_memory_mb": memory,
            "root": made,
        }
        (staging / "job_tags.xml").write_text(job_tags(names, memory))
        (staging / "version.xml").write_text(version_xml(names, spec.compression))
        (staging / "image.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        _publish(staging, out)
        say(f"image ready in {out}")
        return BuiltImage(out, names["kernel"], names["initrd"], names["disk"], manifest,
                          time.monotonic() - t0, from_cache)  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _root_disk(
    spec: BuildSpec, work: Path, say: Callable[[str], None]
) -> tuple[Path, dict[str, object], bool]:
    """The squashfs root disk of ``spec``: (its file, what it is made of, taken from the cache). A Debian
    root is cached by its inputs (``CACHE/disks``); a tarball's or a Dockerfile's never (they change
    freely), it is made in ``work``."""
    cache = cache_dir()
    (cache / "disks").mkdir(exist_ok=True)
    base_id = ""
    if spec.rootfs is None and spec.dockerfile is None:
        _mirror, suite = debian_mirror()
        base_id = base_key(suite, _packages(spec))
    cached = cache / "disks" / f"{_disk_key(spec, base_id)}.squashfs" if base_id else None
    if cached is not None and cached.is_file() and cached.with_suffix(".json").is_file():
        say("root disk: cached")
        return cached, json.loads(cached.with_suffix(".json").read_text()), True
    tree = work / "root"
    made = _make_root(spec, tree, work, say)
    for d in MOUNT_POINTS:
        (tree / d).mkdir(parents=True, exist_ok=True)
    made["python_sdk"] = sdk.install_python_sdk(tree)
    sdk.install_c_sdk(tree)
    made["c_sdk"] = f"/usr/local/lib/{sdk.C_LIB}"
    _add_files(tree, spec.add)
    made["added"] = sorted(guest for _h, guest in spec.add)
    made["bytecode"] = dataclasses.asdict(freeze_bytecode(tree))
    size = _tree_size(tree)
    made["root_bytes"] = size
    made["compression"] = spec.compression
    squash = work / "root.squashfs"
    _need_space(work, size // 2 + (50 << 20), "the root disk image")
    say(f"packing the root ({size / 1e6:.0f} MB) with mksquashfs")
    _mksquashfs(tree, squash, spec.compression)
    shutil.rmtree(tree, ignore_errors=True)
    if cached is None:
        return squash, made, False
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    shutil.copyfile(squash, tmp)
    cached.with_suffix(".json").write_text(json.dumps(made, sort_keys=True))
    os.replace(tmp, cached)  # last: the disk is found only with its description
    return cached, made, False


def debian_root_disk(packages: tuple[str, ...], *, note: Callable[[str], None] | None = None) -> Path:
    """The cached root disk of a Debian root with ``packages`` (+ the guest SDKs), made on first use
    (debootstrap: root): ``<vm_python/>``'s image (host_bridge.images.testimage)."""
    say = note or (lambda text: logger.info("%s", text))
    (cache_dir() / "build").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=cache_dir() / "build", prefix="work-"))
    try:
        disk, _made, _cached = _root_disk(BuildSpec(out=work / "unused", debian=packages), work, say)
        return disk
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _squashfs_opts(compression: str) -> tuple[str, ...]:
    return (*COMPRESSIONS[compression], *_SQUASHFS_OPTS)


def _mksquashfs(tree: Path, dest: Path, compression: str) -> None:
    cmd = ["mksquashfs", str(tree), str(dest), *_squashfs_opts(compression)]
    try:
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=MKSQUASHFS_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise ImageError(
            "mksquashfs is not installed: apt-get install squashfs-tools (see scripts/setup.sh)"
        ) from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"mksquashfs did not finish within {MKSQUASHFS_TIMEOUT:.0f} s") from None
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip()[-600:]
        if "No space left" in msg:
            raise ImageError(f"not enough disk space for the root disk image in {dest.parent}: {msg}")
        raise ImageError(f"mksquashfs failed (exit {r.returncode}): {msg}")


def _publish(staging: Path, out: Path) -> None:
    """Put the finished folder in place in one rename (an earlier image there is replaced)."""
    for f in staging.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    staging.chmod(0o755)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
    try:
        os.rename(staging, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def job_tags(names: dict[str, str], memory_mb: int) -> str:
    return (
        "<!-- host-bridge image build: put these tags into each <task> of the job file that runs in this\n"
        "     image; the files are the app version's (version.xml), named by their logical names -->\n"
        f"<vm_kernel>{names['kernel']}</vm_kernel>\n"
        f"<vm_initrd>{names['initrd']}</vm_initrd>\n"
        f"<vm_disk_image>{names['disk']}</vm_disk_image>\n"
        f"<vm_memory_mb>{memory_mb}</vm_memory_mb>\n"
    )


def version_xml(names: dict[str, str], compression: str = DEFAULT_COMPRESSION) -> str:
    """The ``<file>`` entries of the image for the app version's version.xml (with the bridge's own
    ``<main_program/>`` and the job file beside them). ``<gzip/>`` on the kernel (an uncompressed vmlinux
    gzips ~83 %) and on an lz4 root (~15 %); not on the initramfs (gzip) or a zstd root."""
    parts = [
        "<!-- host-bridge image build: the image's files, for the app version's version.xml -->\n<version>\n"
    ]
    for role in ("kernel", "initrd", "disk"):
        n = names[role]
        gz = "        <gzip/>\n" if role == "kernel" or (role == "disk" and compression == "lz4") else ""
        parts.append(f"    <file>\n        <physical_name>{n}</physical_name>\n"
                     f"        <logical_name>{n}</logical_name>\n{gz}    </file>\n")  # fmt: skip
    parts.append("</version>\n")
    return "".join(parts)
