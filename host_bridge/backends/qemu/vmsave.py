"""VM saves of the QEMU backend: the files, their identity, their validation (docs/qemu.md, "Saving VMs").

A save lives in the VM's private state folder (never the share): ``vmsave/save.json`` (the manifest)
names ``vmsave/ram-NONCE.lz4`` (QEMU's migration stream, zero pages skipped by QEMU, compressed with
lz4; ``.zst``: with zstd, on hosts without lz4 and from earlier versions) and, for a disk image,
``vmsave/overlay-NONCE.qcow2`` (the overlay as it was when the stream ended). A new save is written
beside the old one and becomes current with one rename of the manifest; then the old files go. A bridge
killed mid-save leaves the previous manifest and its files intact.

``load`` accepts a save only when the manifest parses, its identity (QEMU's version, the machine type,
the VM's configuration and the image files' sizes and times) is this VM's, and the stream has the
recorded size and SHA-256. Anything else is refused with a message; the caller boots afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from host_bridge.backends.qemu.migrate import codec_of
from host_bridge.osutil import atomic_write

logger = logging.getLogger(__name__)

SAVE_DIR = "vmsave"
MANIFEST = "save.json"
FORMAT = 1
_VERSIONS: dict[tuple[str, int], str] = {}


def qemu_version(qemu: str) -> str:
    """``qemu --version``'s first line (cached per binary and its modification time)."""
    path = shutil.which(qemu) or qemu
    try:
        key = (path, os.stat(path).st_mtime_ns)
    except OSError:
        return "unknown"
    if key not in _VERSIONS:
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
            _VERSIONS[key] = (out.stdout.splitlines() or ["unknown"])[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
    return _VERSIONS[key]


def file_identity(path: Path | None) -> str:
    """A file's path, size and modification time: an image replaced or changed no longer matches."""
    if path is None:
        return "-"
    try:
        st = os.stat(path)
    except OSError:
        return f"{path} missing"
    return f"{path} {st.st_size} {st.st_mtime_ns}"


@dataclass(frozen=True)
class Save:
    """A valid save: its stream, its overlay copy (or None) and its manifest."""

    stream: Path
    overlay: Path | None
    size: int
    sha256: str
    identity: dict[str, str]


class SaveRefused(Exception):
    """No usable save (the message says why and what happens)."""


def save_dir(state_dir: Path) -> Path:
    return state_dir / SAVE_DIR


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def commit(state_dir: Path, stream: Path, identity: dict[str, str], overlay: Path | None) -> int:
    """Make ``stream`` (``ram-NONCE.SUFFIX`` in the save folder, already written and complete) the current
    save: fsync it (beside its SHA-256, in a thread: the two take about as long), write the manifest
    atomically, remove older saves. Returns the save's size in bytes."""
    d = save_dir(state_dir)
    with ThreadPoolExecutor(1) as pool:
        synced = pool.submit(_fsync, stream)
        digest = sha256_of(stream)
        synced.result()
    size = stream.stat().st_size
    doc = {
        "format": FORMAT,
        "stream": stream.name,
        "size": size,
        "sha256": digest,
        "overlay": overlay.name if overlay is not None else None,
        "identity": identity,
    }
    atomic_write(d / MANIFEST, json.dumps(doc, indent=1).encode() + b"\n")
    keep = {MANIFEST, stream.name, *([overlay.name] if overlay is not None else [])}
    for p in d.iterdir():
        if p.name not in keep:
            with contextlib.suppress(OSError):
                p.unlink()
    return size


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def load(state_dir: Path, identity: dict[str, str], *, checksum: bool = True) -> Save | None:
    """The current save if there is one and it is valid for ``identity``; None if there is none at all.
    Raises SaveRefused (with the reason) for a save that is there but unusable. ``checksum=False``: the
    stream's checksum is left to ``verify`` (the restore starts QEMU meanwhile)."""
    d = save_dir(state_dir)
    man = d / MANIFEST
    if not man.exists():
        return None
    try:
        doc = json.loads(man.read_bytes()[: 1 << 20])
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format') if isinstance(doc, dict) else '?'} is not {FORMAT}")
        stream = d / str(doc["stream"])
        size, digest = int(doc["size"]), str(doc["sha256"])
        overlay = d / str(doc["overlay"]) if doc.get("overlay") else None
        saved_id = doc["identity"]
        if stream.parent != d or (overlay is not None and overlay.parent != d):
            raise ValueError("a file outside the save folder")
        if codec_of(stream) is None:
            raise ValueError(f"a stream of unknown compression ({stream.name})")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SaveRefused(f"{man} is not a valid save manifest ({e})") from None
    if not isinstance(saved_id, dict):
        raise SaveRefused(f"{man} has no identity")
    for key in sorted(identity):  # the caller checks the other keys (the machine type) itself
        if saved_id.get(key) != identity.get(key):
            raise SaveRefused(
                f"the save was written for another {key} ({saved_id.get(key)!r}; "
                f"this VM: {identity.get(key)!r})"
            )
    try:
        real = stream.stat().st_size
    except OSError:
        raise SaveRefused(f"the save's stream {stream} is missing") from None
    if real != size:
        raise SaveRefused(f"the save's stream {stream} is truncated or grown ({real} bytes, {size} recorded)")
    if overlay is not None and not overlay.is_file():
        raise SaveRefused(f"the save's disk overlay {overlay} is missing")
    save = Save(stream, overlay, size, digest, dict(saved_id))
    if checksum:
        verify(save)
    return save


def verify(save: Save) -> None:
    """Raise SaveRefused unless the stream has the SHA-256 its manifest recorded."""
    if sha256_of(save.stream) != save.sha256:
        raise SaveRefused(f"the save's stream {save.stream} does not match its checksum (corrupt)")


def discard(state_dir: Path) -> None:
    shutil.rmtree(save_dir(state_dir), ignore_errors=True)
