"""The parts VM images are made of, from Debian packages (host_bridge.images builds images from them).

The image is made of:

- the uncompressed ``vmlinux`` of Debian's generic ``linux-image-6.1.*-amd64`` (extracted from the
  package's ``vmlinuz``: the xz stream inside it is decompressed), booted directly by QEMU through PVH,
  which saves seconds under TCG;
- an initramfs (cpio newc, gzip) with busybox (``busybox-static``), the virtio / 9p kernel modules (their
  order from the ``depends=`` strings of the ``.ko`` files), the guest agent (``guest_agent/``, a static C
  program built here with ``gcc -static``; it is the ``/init``: it loads the modules named in
  ``lib/modules/boot.list``, mounts the share and the app's root: guest_agent/boot.c), and any extra
  files the caller adds (e.g. a static C worker).

Everything is cached outside the repository, in ``$BOINC_VM_CACHE`` or ``~/.cache/boinc-vm-bridge``:
downloaded ``.deb`` files, the extracted kernel and modules, and finished images under a content-hash key
(kernel + modules + busybox + agent binary + module lists + extra files). After the first build an image
is ready in well under a second. Every external command runs with a timeout; a package that cannot be
fetched is reported with the package name and what to do.
"""

from __future__ import annotations

import hashlib
import io
import logging
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENT_DIR = REPO_ROOT / "guest_agent"

APT_TIMEOUT = 300.0  # s, one apt-get call (a ~70 MB kernel package)
TOOL_TIMEOUT = 120.0  # s, dpkg-deb / gcc

# Modules the initramfs loads (roots; their dependencies come first, from `depends=`).
# virtio_rng: the host's entropy (QEMU's virtio-rng-pci), so that the guest's random pool is ready at
# once; without it Python's start blocked on /dev/urandom for ~1 s under TCG (the kernel's jitter dance).
MODULE_ROOTS = ("virtio_pci", "9pnet_virtio", "9p", "virtio_rng")
# ... loaded only for a task with network access (boinc.network=1): each insmod costs tens of ms under TCG
NET_MODULE_ROOTS = ("virtio_net",)
# ... and, for an image with a root disk (host_bridge.images): the disk, its file system, the overlay
DISK_MODULE_ROOTS = ("virtio_blk", "squashfs", "overlay")
_KERNEL_LAYOUT = "m3"  # bump when the set of cached modules changes
# Files of the initramfs the agent reads at boot (guest_agent/boot.c): the modules to load, one name per
# line in load order (every boot; with boinc.network=1), and the mark of an image with a root disk.
BOOT_MODULE_LIST = "boot.list"
NET_MODULE_LIST = "net.list"
ROOT_DISK_MARK = "boinc/root-disk"


class ImageError(Exception):
    """The test image could not be built; the message says which package / file and what to do."""


@dataclass(frozen=True)
class VMImage:
    """A bootable test image: kernel and initramfs, cached by the hash of what went into them."""

    kernel: Path  # uncompressed vmlinux (PVH boot)
    initrd: Path  # initramfs.cpio.gz
    key: str  # content hash of everything that went into the image


def cache_dir() -> Path:
    env = os.environ.get("BOINC_VM_CACHE", "").strip()
    base = Path(env) if env else Path.home() / ".cache" / "boinc-vm-bridge"
    base.mkdir(parents=True, exist_ok=True)
    return base


def _run(cmd: list[str], *, cwd: Path | None = None, timeout: float = TOOL_TIMEOUT) -> str:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as e:
        raise ImageError(f"{cmd[0]} is not installed ({e}); install it (see scripts/setup.sh)") from e
    except subprocess.TimeoutExpired as e:
        raise ImageError(f"{' '.join(cmd)} did not finish within {timeout:.0f} s") from e
    if proc.returncode != 0:
        raise ImageError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------- packages


def _kernel_package_name() -> str:
    """The generic (not -cloud-, not -rt-) 6.1 kernel the archive currently offers."""
    pat = re.compile(r"^linux-image-(6\.1\.\d+-\d+)-amd64$")
    try:
        out = _run(["apt-cache", "depends", "linux-image-amd64"], timeout=60)
        for line in out.splitlines():
            name = line.split(":", 1)[-1].strip()
            if pat.match(name):
                return name
    except ImageError as e:
        logger.debug("apt-cache depends linux-image-amd64: %s", e)
    out = _run(["apt-cache", "search", "--names-only", r"^linux-image-6\.1\..*-amd64$"], timeout=60)
    names = [ln.split(" ", 1)[0] for ln in out.splitlines()]
    names = [n for n in names if pat.match(n)]
    if not names:
        raise ImageError(
            "no generic linux-image-6.1.*-amd64 package is known to apt; run 'apt-get update' "
            "(Debian 12 archive needed)"
        )
    return max(names, key=lambda n: [int(x) for x in re.findall(r"\d+", n)])


def _cached_deb(debs: Path, prefix: str) -> Path | None:
    found = sorted(debs.glob(f"{prefix}_*.deb"))
    return found[-1] if found else None


def _download(debs: Path, package: str) -> Path:
    """``apt-get download`` ``package`` into ``debs`` (once; `apt-get update` only if it fails)."""
    have = _cached_deb(debs, package)
    if have is not None:
        return have
    for attempt in (1, 2):
        try:
            # Into a private folder first: an interrupted download never looks like a cached .deb.
            with tempfile.TemporaryDirectory(dir=debs, prefix=".download-") as tmp:
                _run(["apt-get", "download", "-q", package], cwd=Path(tmp), timeout=APT_TIMEOUT)
                for deb in Path(tmp).glob("*.deb"):
                    os.replace(deb, debs / deb.name)
            break
        except ImageError as e:
            if attempt == 2:
                raise ImageError(
                    f"could not download the Debian package {package!r}: {e}. Check the apt sources "
                    f"and network, or put {package}_*.deb into {debs} by hand"
                ) from e
            logger.info("apt-get download %s failed, running apt-get update once", package)
            try:
                _run(["apt-get", "update", "-q"], timeout=APT_TIMEOUT)
            except ImageError as e2:
                logger.warning("apt-get update failed: %s", e2)
    got = _cached_deb(debs, package)
    if got is None:
        raise ImageError(f"apt-get download {package} reported success but no .deb is in {debs}")
    return got


def _deb_members(deb: Path, want: re.Pattern[str]) -> dict[str, bytes]:
    """Regular files of ``deb`` whose path matches ``want`` (like ``dpkg -x``, but only those)."""
    proc = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out: dict[str, bytes] = {}
    try:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for m in tar:
                name = m.name.removeprefix("./")
                if m.isfile() and want.search(name):
                    f = tar.extractfile(m)
                    if f is not None:
                        out[name] = f.read()
        proc.wait(timeout=TOOL_TIMEOUT)
    except (tarfile.TarError, subprocess.TimeoutExpired) as e:
        proc.kill()
        proc.wait()
        raise ImageError(f"could not unpack {deb}: {e}; delete it so that it is downloaded again") from e
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise ImageError(f"dpkg-deb could not read {deb}; delete it so that it is downloaded again")
    return out


def extract_vmlinux(vmlinuz: bytes) -> bytes:
    """The uncompressed ELF kernel inside a bzImage (its payload is an xz stream)."""
    magic = b"\xfd7zXZ\x00"
    pos = vmlinuz.find(magic)
    while pos >= 0:
        try:
            data = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(vmlinuz[pos:])
        except lzma.LZMAError:
            data = b""
        if data[:4] == b"\x7fELF":
            return data
        pos = vmlinuz.find(magic, pos + 1)
    raise ImageError("no xz-compressed ELF kernel found inside vmlinuz (not a Debian amd64 kernel?)")


def _modinfo(ko: bytes) -> dict[str, str]:
    info: dict[str, str] = {}
    for key in (b"depends", b"name", b"vermagic"):
        m = re.search(rb"(?:^|\x00)" + key + rb"=([^\x00]*)\x00", ko)
        if m:
            info[key.decode()] = m.group(1).decode("ascii", "replace")
    return info


def module_order(modules: dict[str, bytes], roots: tuple[str, ...] = MODULE_ROOTS) -> list[str]:
    """Module names (``modules`` maps name -> .ko bytes) in a load order: dependencies first."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ImageError(f"kernel module dependency cycle at {name}")
        if name not in modules:
            raise ImageError(f"kernel module {name}.ko is missing from the kernel package")
        visiting.add(name)
        deps = _modinfo(modules[name]).get("depends", "")
        for dep in sorted(d for d in deps.split(",") if d):
            visit(dep.replace("-", "_"))
        visiting.discard(name)
        order.append(name)

    for r in roots:
        visit(r)
    return order


@dataclass(frozen=True)
class _KernelParts:
    """The unpacked Debian kernel: its release, the vmlinux and the modules the image needs."""

    release: str
    vmlinux: Path
    modules: dict[str, Path]  # name -> .ko in the cache


def _kernel_parts(cache: Path) -> _KernelParts:
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    existing = sorted(debs.glob("linux-image-6.1.*-amd64_*.deb"))
    existing = [d for d in existing if "-cloud-" not in d.name and "-rt-" not in d.name]
    deb = existing[-1] if existing else _download(debs, _kernel_package_name())
    kdir = cache / "kernel" / f"{deb.stem}.{_KERNEL_LAYOUT}"
    done = kdir / ".complete"
    if not done.exists():
        logger.info("unpacking %s", deb.name)
        want = re.compile(r"^boot/vmlinuz-|\.ko$")
        files = _deb_members(deb, want)
        vmlinuz = [v for k, v in files.items() if k.startswith("boot/vmlinuz-")]
        if not vmlinuz:
            raise ImageError(f"{deb} has no boot/vmlinuz-*")
        mods = {
            Path(k).name.removesuffix(".ko").replace("-", "_"): v
            for k, v in files.items()
            if k.endswith(".ko")
        }
        order = module_order(mods, MODULE_ROOTS + DISK_MODULE_ROOTS + NET_MODULE_ROOTS)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".kernel-"))
        tmp.chmod(0o755)
        (tmp / "vmlinux").write_bytes(extract_vmlinux(vmlinuz[0]))
        (tmp / "modules").mkdir()
        for name in order:
            (tmp / "modules" / f"{name}.ko").write_bytes(mods[name])
        (tmp / "release").write_text(_modinfo(mods["9p"]).get("vermagic", "").split(" ")[0])
        (tmp / ".complete").write_text("ok\n")
        kdir.parent.mkdir(parents=True, exist_ok=True)
        if kdir.exists() and not done.exists():
            shutil.rmtree(kdir, ignore_errors=True)  # an interrupted earlier unpack
        try:
            os.replace(tmp, kdir)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not done.exists():  # not another process's finished unpack: a real error
                raise
    mods = {p.stem: p for p in sorted((kdir / "modules").glob("*.ko"))}
    return _KernelParts((kdir / "release").read_text().strip(), kdir / "vmlinux", mods)


def _busybox(cache: Path) -> Path:
    out = cache / "busybox"
    if out.exists():
        return out
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    deb = _download(debs, "busybox-static")
    files = _deb_members(deb, re.compile(r"^bin/busybox$"))
    if "bin/busybox" not in files:
        raise ImageError(f"{deb} has no bin/busybox")
    tmp = out.with_name(f".busybox.{os.getpid()}.tmp")
    tmp.write_bytes(files["bin/busybox"])
    tmp.chmod(0o755)
    os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------------------------- agent


def build_static(sources: list[Path], out: Path, *, extra_args: tuple[str, ...] = ()) -> Path:
    """Compile C sources into a static binary ``out`` (rebuilt only when a source is newer)."""
    if out.exists() and all(out.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = ["gcc", "-static", "-O2", "-Wall", "-Wextra", "-o", str(tmp), *map(str, sources), *extra_args]
    _run(cmd)
    os.replace(tmp, out)
    return out


def agent_binary(cache: Path | None = None) -> Path:
    cache = cache or cache_dir()
    src = sorted(AGENT_DIR.glob("*.c"))
    if not src:
        raise ImageError(f"no guest agent sources in {AGENT_DIR}")
    h = hashlib.sha256()
    for s in [*src, *sorted(AGENT_DIR.glob("*.h"))]:
        h.update(s.name.encode() + b"\0" + s.read_bytes())
    return build_static(src, cache / "agent" / h.hexdigest()[:16] / "boinc-agent")


# ------------------------------------------------------------------------------------------------ initramfs


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio "newc" archive of (path, mode, data) entries (directories: data ``b""``), deterministic."""
    buf = io.BytesIO()

    def pad(n: int) -> None:
        buf.write(b"\0" * ((4 - n % 4) % 4))

    ino = 1
    for path, mode, data in [*entries, ("TRAILER!!!", 0, b"")]:
        name = path.encode() + b"\0"
        nlink = 2 if (mode & 0o170000) == 0o040000 else 1
        fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name), 0]
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        buf.write(hdr + name)
        pad(len(hdr) + len(name))
        buf.write(data)
        pad(len(data))
        ino += 1
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- Python root

# <vm_python/>'s image (host_bridge.images.testimage.ensure_python_image): Debian minbase + these.
PYROOT_PACKAGES = ("python3", "python3-msgpack")  # python3-msgpack: the guest SDK's only dependency


def _host_codename() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


def debian_mirror(apt_dir: Path = Path("/etc/apt"), codename: str | None = None) -> tuple[str, str]:
    """(mirror URI, suite) of the host's Debian archive as apt is configured (sources.list and
    sources.list.d/*.list / *.sources): the first ``deb`` entry with component ``main`` whose suite is the
    host's release (no -updates / -security). Raises ImageError naming the files when there is none."""
    codename = _host_codename() if codename is None else codename
    entries: list[tuple[str, str, list[str]]] = []  # (uri, suite, components)
    files = [apt_dir / "sources.list"]
    d = apt_dir / "sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":  # deb822 stanzas
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                    continue
                comps = fields.get("components", "").split()
                for uri in fields.get("uris", "").split():
                    for suite in fields.get("suites", "").split():
                        entries.append((uri, suite, comps))
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
                if len(words) >= 4 and words[0] == "deb":
                    entries.append((words[1], words[2], words[3:]))
    for uri, suite, comps in entries:
        if "main" not in comps or "-" in suite or not uri.startswith(("http://", "https://", "file:")):
            continue
        if codename and suite != codename:
            continue
        return uri.rstrip("/"), suite
    raise ImageError(
        f"no Debian archive for {codename or 'this release'} (a 'deb' entry with component main) in "
        f"{', '.join(str(f) for f in files)}: add the Debian mirror to the apt sources"
    )
