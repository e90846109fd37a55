"""The project's own images, made with the image builder: the QEMU backend's ``builtin:test`` image
(kernel + initramfs with the agent, and the test programs a caller adds) and the guest Python root of
``<vm_python/>``. Cached outside the repository (``host_bridge.images.parts.cache_dir``)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from host_bridge.images.parts import (
    PYROOT_PACKAGES,
    TOOL_TIMEOUT,
    ImageError,
    PyRoot,
    VMImage,
    _run,
    cache_dir,
    debian_mirror,
)

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
    """Deterministic key of the Python root's Debian tree: what goes into it, not when or from where."""
    from host_bridge.images.debian import base_key

    return base_key(suite, PYROOT_PACKAGES)


def ensure_python_root() -> PyRoot:
    """The guest's Python root: the image builder's Debian tree (host_bridge.images.debian: minbase +
    python3 + python3-msgpack, debootstrap from the host's Debian mirror, cached by a deterministic key)
    with the Python guest SDK (``boinc_guest``) installed as in a built image. The first build takes a
    minute or two (needs root); later calls return at once.

    Layout in the cache: ``debian/base-KEY`` (the debootstrap tree) and ``pyroot/root-KEY-SDK`` (a
    hard-link copy of it plus the SDK, so an SDK change never re-runs debootstrap).
    """
    from host_bridge.images.debian import debian_base
    from host_bridge.images.sdk import install_python_sdk, sdk_digest

    cache = cache_dir()
    (cache / "pyroot").mkdir(exist_ok=True)
    _mirror, suite = debian_mirror()
    key = f"{pyroot_base_key(suite)}-{sdk_digest()}"
    root = cache / "pyroot" / f"root-{key}"
    if (root / ".boinc-pyroot").is_file():
        return PyRoot(root, key, "/usr/bin/python3")
    import fcntl

    with open(cache / "pyroot" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others then find the result
        if (root / ".boinc-pyroot").is_file():
            return PyRoot(root, key, "/usr/bin/python3")
        base = debian_base(PYROOT_PACKAGES, what="the guest Python root (<vm_python/>)")
        tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            try:
                _run(["cp", "-al", str(base), str(tmp)], timeout=TOOL_TIMEOUT)
            except ImageError:  # hard links refused (another owner, protected_hardlinks): real copy
                shutil.rmtree(tmp, ignore_errors=True)
                _run(["cp", "-a", str(base), str(tmp)], timeout=TOOL_TIMEOUT)
            if not install_python_sdk(tmp):
                raise ImageError(f"{base} has no usr/lib/python3.*: delete it so that it is rebuilt")
            (tmp / ".boinc-pyroot").write_text(f"{key}\n")
            os.replace(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    logger.info("guest Python root ready: %s", root)
    return PyRoot(root, key, "/usr/bin/python3")


def main(argv: list[str] | None = None) -> int:
    """``python -m host_bridge.backends.qemu.image [pyroot|image]``: build (or find) the cached parts,
    print their paths."""
    import sys

    what = (argv if argv is not None else sys.argv[1:]) or ["image"]
    try:
        if "pyroot" in what:
            print(ensure_python_root().path)
        if "image" in what:
            img = ensure_test_image()
            print(img.kernel)
            print(img.initrd)
    except ImageError as e:
        print(f"host_bridge.backends.qemu.image: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
