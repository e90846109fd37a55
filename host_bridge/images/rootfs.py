"""A root file system from a tarball: a ``podman export`` / ``docker export`` of a container (a plain
tar, optionally compressed), or an image archive from ``podman save`` / ``docker save`` (docker-archive:
``manifest.json``; OCI: ``index.json`` + ``blobs/``), whose layers are applied in order with their
whiteouts.

Every member is checked before anything is written, and the whole import is refused (naming the member
and what to do) on: an absolute path, a ``..`` component, a device node or FIFO, a hard link to a name
not in the archive, a symbolic link whose relative target climbs out of the root, or a member under a
path that is a symbolic link (which would write outside the target folder). Absolute symbolic link
targets are allowed: in the guest they resolve inside the image's root.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import shutil
import tarfile
from pathlib import Path
from typing import IO

from host_bridge.images.parts import ImageError

logger = logging.getLogger(__name__)

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


def _norm(name: str) -> str:
    n = name
    while n.startswith("./"):
        n = n[2:]
    return n.rstrip("/")


def check_members(
    members: list[tarfile.TarInfo], source: str, *, existing_links: set[str] | None = None
) -> None:
    """Refuse a tarball whose members could escape the target folder or create devices (see the module
    docstring). ``existing_links``: symbolic links already in the target (earlier layers)."""
    links = set(existing_links or ())
    names = set()
    for m in members:
        name = m.name
        if name.startswith("/") or (len(name) > 1 and name[1:2] == ":"):
            raise ImageError(
                f"{source}: member {name!r} has an absolute path: make the tarball relative (tar -C DIR .)"
            )
        n = _norm(name)
        if ".." in n.split("/"):
            raise ImageError(f"{source}: member {name!r} has a '..' component: refused (rebuild the tarball)")
        if m.ischr() or m.isblk() or m.isfifo():
            raise ImageError(
                f"{source}: member {name!r} is a device node or FIFO: refused (the VM makes its own /dev; "
                "export without them, e.g. tar --exclude=./dev/*)"
            )
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise ImageError(f"{source}: member {name!r} has an unsupported type {m.type!r}: refused")
        if m.issym():
            target = m.linkname
            if not target.startswith("/"):
                joined = posixpath.normpath(posixpath.join(posixpath.dirname(n), target))
                if joined == ".." or joined.startswith("../"):
                    raise ImageError(
                        f"{source}: symbolic link {name!r} -> {target!r} points outside the root: refused"
                    )
            links.add(n)
        if m.islnk():
            t = _norm(m.linkname)
            if m.linkname.startswith("/") or ".." in t.split("/") or t not in names:
                raise ImageError(
                    f"{source}: hard link {name!r} -> {m.linkname!r} does not name an earlier member: refused"
                )
        names.add(n)
    for m in members:
        parts = _norm(m.name).split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise ImageError(
                    f"{source}: member {m.name!r} lies under the symbolic link {'/'.join(parts[:i])!r}: "
                    "refused (it would be written outside the root)"
                )


def _links_in(dest: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(dest):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p.is_symlink():
                out.add(str(p.relative_to(dest)))
    return out


def _extract(fileobj: IO[bytes] | None, path: Path | None, dest: Path, source: str, *, layer: bool) -> None:
    try:
        tar = tarfile.open(name=str(path) if path else None, fileobj=fileobj, mode="r:*")  # noqa: SIM115
    except (tarfile.TarError, OSError) as e:
        raise ImageError(
            f"{source}: not a tar archive ({e}): give a 'podman export' tarball or a 'podman save' archive"
        ) from e
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ImageError(f"{source}: the tar archive is damaged ({e})") from e
        keep = []
        for m in members:
            base = posixpath.basename(_norm(m.name))
            if layer and base == _OPAQUE:  # an opaque directory: the lower layers' content is hidden
                d = dest / posixpath.dirname(_norm(m.name))
                if d.is_dir() and not d.is_symlink():
                    for child in d.iterdir():
                        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
                continue
            if layer and base.startswith(_WHITEOUT):  # a file deleted by this layer
                victim = dest / posixpath.dirname(_norm(m.name)) / base[len(_WHITEOUT) :]
                check_members([m], source)
                if victim.is_dir() and not victim.is_symlink():
                    shutil.rmtree(victim)
                elif victim.exists() or victim.is_symlink():
                    victim.unlink()
                continue
            keep.append(m)
        check_members(keep, source, existing_links=_links_in(dest) if layer else None)
        for m in keep:
            if m.isdir():
                m.mode |= 0o700  # owner-writable while it is filled
            target = dest / _norm(m.name)
            if (target.is_symlink() or target.exists()) and not (m.isdir() and target.is_dir()):
                shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        try:
            # checked above; Python >= 3.11.4 would warn without an explicit filter
            kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
            tar.extractall(dest, members=keep, numeric_owner=True, **kw)  # type: ignore[arg-type]
        except (tarfile.TarError, OSError) as e:
            raise ImageError(f"{source}: could not unpack ({e})") from e


def import_rootfs(archive: Path, dest: Path) -> str:
    """Unpack ``archive`` into the empty folder ``dest``; returns what it was ("tar", "docker-archive",
    "oci-archive")."""
    source = f"--rootfs {archive}"
    if not archive.is_file():
        raise ImageError(f"{source}: no such file: give the path of a 'podman export' tarball")
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            names = set(tar.getnames())
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ImageError(f"{source}: not a tar archive ({e}): give a 'podman export' tarball") from e
    if "manifest.json" in names and not any(
        n.startswith(("etc/", "./etc/", "usr/", "./usr/")) for n in names
    ):
        kind, layers = "docker-archive", _docker_layers(archive, source)
    elif "index.json" in names and "oci-layout" in names:
        kind, layers = "oci-archive", _oci_layers(archive, source)
    else:
        _extract(None, archive, dest, source, layer=False)
        return "tar"
    with tarfile.open(archive, mode="r:*") as tar:
        for name in layers:
            f = tar.extractfile(name)
            if f is None:
                raise ImageError(f"{source}: layer {name} is missing from the archive")
            _extract(f, None, dest, f"{source} (layer {name})", layer=True)
    return kind


def _json_member(archive: Path, name: str, source: str) -> object:
    with tarfile.open(archive, mode="r:*") as tar:
        f = tar.extractfile(name)
        if f is None:
            raise ImageError(f"{source}: {name} is missing")
        try:
            return json.loads(f.read())
        except ValueError as e:
            raise ImageError(f"{source}: {name} is not JSON ({e})") from e


def _docker_layers(archive: Path, source: str) -> list[str]:
    man = _json_member(archive, "manifest.json", source)
    if not isinstance(man, list) or len(man) != 1 or not isinstance(man[0], dict):
        raise ImageError(f"{source}: manifest.json must describe exactly one image (save one image)")
    layers = man[0].get("Layers")
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise ImageError(f"{source}: manifest.json has no Layers list")
    return layers


def _oci_layers(archive: Path, source: str) -> list[str]:
    def blob(digest: object) -> str:
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise ImageError(f"{source}: unsupported digest {digest!r}")
        return f"blobs/sha256/{digest.split(':', 1)[1]}"

    index = _json_member(archive, "index.json", source)
    mans = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(mans, list) or len(mans) != 1:
        raise ImageError(f"{source}: index.json must name exactly one image manifest (save one image)")
    man = _json_member(archive, blob(mans[0].get("digest")), source)
    layers = man.get("layers") if isinstance(man, dict) else None
    if not isinstance(layers, list):
        raise ImageError(f"{source}: the image manifest has no layers")
    out = []
    for layer in layers:
        mt = str(layer.get("mediaType", ""))
        if "zstd" in mt:
            raise ImageError(f"{source}: zstd-compressed layers are not supported: save with gzip layers")
        out.append(blob(layer.get("digest")))
    return out
