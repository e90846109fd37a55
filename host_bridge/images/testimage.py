"""The project's own images, made with the image builder: the QEMU backend's ``builtin:test`` image
(kernel + initramfs with the agent, and the test programs a caller adds) and the guest Python image of
``<vm_python/>``. Cached outside the repository (``host_bridge.images.parts.cache_dir``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from host_bridge.images.parts import PYROOT_PACKAGES, ImageError, VMImage

logger = logging.getLogger(__name__)


def ensure_test_image(extra_files: dict[str, Path] | None = None) -> VMImage:
    """Kernel + initramfs for the QEMU backend (``builtin:test``), built once and cached by content hash:
    the image builder's boot part (host_bridge.images.boot) without a root disk.

    ``extra_files`` maps a path in the guest (e.g. ``"/bin/worker"``) to a host file (e.g. a static C
    program); they are added to the initramfs, executable.
    """
    from host_bridge.images.boot import boot_files

    boot = boot_files(extra_files, rootdisk=False)
    return VMImage(kernel=boot.kernel, initrd=boot.initrd, key=boot.key)


def pyroot_base_key(suite: str) -> str:
    """Deterministic key of the Python image's Debian tree: what goes into it, not when or from where."""
    from host_bridge.images.debian import base_key

    return base_key(suite, PYROOT_PACKAGES)


@dataclass(frozen=True)
class PythonImage:
    """``<vm_python/>``'s image: the builder's kernel and initramfs and a root disk with Debian's python3
    (+ python3-msgpack) and both guest SDKs."""

    kernel: Path
    initrd: Path
    disk: Path  # the squashfs root disk, shared read-only by all tasks (a per-task overlay on top)


def ensure_python_image() -> PythonImage:
    """The image of ``<vm_python/>``, made with the image builder on first use (debootstrap: needs root;
    a minute or two) and cached by its inputs (the Debian suite and packages, the guest SDKs, the
    builder's layout); later calls return at once. A VM of this image can be saved and restored like any
    built image (the agent relays the share)."""
    from host_bridge.images.boot import boot_files
    from host_bridge.images.build import debian_root_disk

    disk = debian_root_disk(PYROOT_PACKAGES)
    boot = boot_files(rootdisk=True)
    return PythonImage(boot.kernel, boot.initrd, disk)


def main(argv: list[str] | None = None) -> int:
    """``python -m host_bridge.images.testimage [python|image]``: build (or find) the cached parts, print
    their paths."""
    import sys

    what = (argv if argv is not None else sys.argv[1:]) or ["image"]
    try:
        if "python" in what or "pyroot" in what:
            py = ensure_python_image()
            print(py.kernel)
            print(py.initrd)
            print(py.disk)
        if "image" in what:
            img = ensure_test_image()
            print(img.kernel)
            print(img.initrd)
    except ImageError as e:
        print(f"host_bridge.images.testimage: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
