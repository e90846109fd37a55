"""The boot part of every VM image (host_bridge.images): the Debian kernel (an uncompressed ``vmlinux``)
and an initramfs with busybox, the virtio / 9p (and, for a root disk, virtio-blk / squashfs / overlay)
modules, and the guest agent, which is the ``/init`` (guest_agent/boot.c reads the module lists). The
pieces (kernel package, busybox, agent binary) come from host_bridge.images.parts; this module assembles
them, deterministically (sorted entries, no mtimes, uid 0, gzip without a timestamp), and caches the
result by content hash."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from host_bridge.images import parts

logger = logging.getLogger(__name__)

_DIRS = ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "boinc", "lib", "lib/modules", "usr", "usr/bin")


@dataclass(frozen=True)
class BootFiles:
    kernel: Path  # uncompressed vmlinux (PVH boot), in the cache
    initrd: Path  # initramfs.cpio.gz, in the cache
    key: str  # content hash of the initramfs's entries + the kernel
    release: str  # the kernel's release, e.g. 6.1.0-57-amd64


def boot_files(extra_files: dict[str, Path] | None = None, *, rootdisk: bool) -> BootFiles:
    """Kernel + initramfs, built once and cached under ``CACHE/images/KEY``. ``extra_files``: guest path
    -> host file, added to the initramfs (executable); ``rootdisk``: the init mounts the image's
    squashfs root disk (``vm_disk_image``) and the agent runs the app chrooted into it."""
    extra_files = dict(extra_files or {})
    cache = parts.cache_dir()
    kernel = parts._kernel_parts(cache)
    busybox = parts._busybox(cache)
    agent = parts.agent_binary(cache)
    roots = parts.MODULE_ROOTS + (parts.DISK_MODULE_ROOTS if rootdisk else ())
    ko = {n: p.read_bytes() for n, p in kernel.modules.items()}
    order = parts.module_order(ko, roots)
    net = tuple(m for m in parts.module_order(ko, parts.NET_MODULE_ROOTS) if m not in order)

    entries: list[tuple[str, int, bytes]] = [(d, 0o040755, b"") for d in _DIRS]
    # the agent is /init (guest_agent/boot.c): it loads the listed modules, mounts the share and the root
    entries.append(("init", 0o120777, b"sbin/boinc-agent"))
    entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    entries.append(("bin/sh", 0o120777, b"busybox"))
    entries.append(("sbin/boinc-agent", 0o100755, agent.read_bytes()))
    for list_name, names in ((parts.BOOT_MODULE_LIST, order), (parts.NET_MODULE_LIST, net)):
        entries.append((f"lib/modules/{list_name}", 0o100644, "".join(f"{m}\n" for m in names).encode()))
    if rootdisk:  # the app's root is the image's disk (vm_disk_image), not the initramfs
        entries.append((parts.ROOT_DISK_MARK, 0o100644, b""))
    for name in (*order, *net):
        entries.append((f"lib/modules/{name}.ko", 0o100644, kernel.modules[name].read_bytes()))
    have_dirs = {e[0] for e in entries}
    for gpath, host in sorted(extra_files.items()):
        rel = gpath.strip("/")
        if not rel or ".." in rel.split("/"):
            raise parts.ImageError(f"extra file path {gpath!r} must be an absolute guest path without '..'")
        segs = rel.split("/")
        for i in range(1, len(segs)):
            d = "/".join(segs[:i])
            if d not in have_dirs:
                entries.append((d, 0o040755, b""))
                have_dirs.add(d)
        try:
            entries.append((rel, 0o100755, Path(host).read_bytes()))
        except OSError as e:
            raise parts.ImageError(f"extra file {host} for {gpath}: {e}") from e

    h = hashlib.sha256(kernel.vmlinux.name.encode() + kernel.release.encode())
    for path, mode, data in entries:
        h.update(b"%s\0%o\0%d\0" % (path.encode(), mode, len(data)))
        h.update(hashlib.sha256(data).digest())
    key = h.hexdigest()[:20]
    idir = cache / "images" / key
    initrd = idir / "initramfs.cpio.gz"
    if not initrd.exists():
        idir.mkdir(parents=True, exist_ok=True)
        tmp = idir / f".initramfs.{os.getpid()}.tmp"
        tmp.write_bytes(gzip.compress(parts._cpio_newc(entries), compresslevel=6, mtime=0))
        os.replace(tmp, initrd)
        logger.info("built the boot files %s (kernel %s, root disk: %s)", key, kernel.release, rootdisk)
    return BootFiles(kernel=kernel.vmlinux, initrd=initrd, key=key, release=kernel.release)
