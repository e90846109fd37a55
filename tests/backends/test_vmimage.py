"""host_bridge.images.testimage: the test VM image built from Debian's kernel and busybox packages (real
apt, real dpkg-deb, real gcc; the first run downloads ~70 MB into the cache, later runs reuse it)."""

from __future__ import annotations

import gzip
import lzma
import subprocess
import time
from pathlib import Path

import pytest

from host_bridge.images import parts as vmimage
from host_bridge.images.parts import ImageError, extract_vmlinux, module_order
from host_bridge.images.testimage import ensure_test_image

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def base_image() -> vmimage.VMImage:
    return ensure_test_image()


def cpio_list(initrd: Path) -> list[str]:
    out = subprocess.run(
        ["cpio", "-it", "--quiet"],
        input=gzip.decompress(initrd.read_bytes()),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().split()


def test_image_contents(base_image: vmimage.VMImage):
    assert base_image.kernel.read_bytes()[:4] == b"\x7fELF"  # uncompressed vmlinux for PVH boot
    names = cpio_list(base_image.initrd)
    for n in ("init", "bin/busybox", "bin/sh", "sbin/boinc-agent", "lib/modules/9p.ko"):
        assert n in names, n
    mods = [n.removeprefix("lib/modules/").removesuffix(".ko") for n in names if n.startswith("lib/modules/")]
    mods = [m for m in mods if not m.endswith(".list")]

    def member(name: str) -> str:
        return subprocess.run(
            ["cpio", "-i", "--to-stdout", "--quiet", name],
            input=gzip.decompress(base_image.initrd.read_bytes()),
            capture_output=True,
            timeout=60,
        ).stdout.decode()

    # /init is the agent (guest_agent/boot.c): it loads the listed modules in dependency order, each after
    # everything it depends on; the network's only with boinc.network=1
    data = gzip.decompress(base_image.initrd.read_bytes())
    listing = subprocess.run(
        ["cpio", "-itv", "--quiet"], input=data, capture_output=True, timeout=60
    ).stdout.decode()
    assert any(ln.startswith("l") and ln.endswith(" init -> sbin/boinc-agent") for ln in listing.splitlines())
    load, net = member("lib/modules/boot.list").split(), member("lib/modules/net.list").split()
    assert sorted(load + net) == sorted(mods)
    assert "virtio_rng" in load and "virtio_net" in net and "virtio_net" not in load
    assert "boinc/root-disk" not in names  # the test image's app runs in the initramfs
    for before, after in [
        ("virtio_ring", "virtio_pci"),
        ("9pnet", "9pnet_virtio"),
        ("netfs", "9p"),
        ("9pnet", "9p"),
    ]:
        assert load.index(before) < load.index(after), (before, after, load)


def test_cache_and_extra_files(base_image: vmimage.VMImage, tmp_path: Path):
    t0 = time.monotonic()
    again = ensure_test_image()
    assert time.monotonic() - t0 < 5.0  # cached: no download, no unpacking, no gzip
    assert again == base_image
    tool = tmp_path / "tool"
    tool.write_bytes(b"#!/bin/sh\necho tool\n")
    with_extra = ensure_test_image({"/opt/bin/tool": tool})
    assert with_extra.key != base_image.key and with_extra.kernel == base_image.kernel
    assert "opt/bin/tool" in cpio_list(with_extra.initrd)
    tool.write_bytes(b"#!/bin/sh\necho changed\n")  # content-hash key: a changed file is a new image
    assert ensure_test_image({"/opt/bin/tool": tool}).key != with_extra.key
    with pytest.raises(ImageError, match=r"\.\."):
        ensure_test_image({"/../escape": tool})
    with pytest.raises(ImageError, match="missing-file"):
        ensure_test_image({"/bin/x": tmp_path / "missing-file"})


def test_extract_vmlinux_and_module_order_units():
    payload = b"\x7fELF" + bytes(range(256)) * 64
    fake = (
        b"MZ" + b"\0" * 0x200 + b"HdrS" + b"\0" * 100 + b"\xfd7zXZ\x00junk" + lzma.compress(payload) + b"tail"
    )
    assert extract_vmlinux(fake) == payload
    with pytest.raises(ImageError, match="no xz-compressed ELF"):
        extract_vmlinux(b"MZ" + b"\0" * 1000)
    mods = {
        "a": b"\0depends=b,c\0name=a\0",
        "b": b"\0depends=c\0name=b\0",
        "c": b"\0depends=\0name=c\0",
        "x": b"\0depends=y\0",
    }
    assert module_order(mods, ("a",)) == ["c", "b", "a"]
    with pytest.raises(ImageError, match=r"y\.ko is missing"):
        module_order(mods, ("x",))
    with pytest.raises(ImageError, match="cycle"):
        module_order({"p": b"\0depends=q\0", "q": b"\0depends=p\0"}, ("p",))


def test_cpio_is_deterministic():
    entries = [("d", 0o040755, b""), ("d/f", 0o100644, b"abc")]
    assert vmimage._cpio_newc(entries) == vmimage._cpio_newc(entries)
    listing = subprocess.run(
        ["cpio", "-it", "--quiet"], input=vmimage._cpio_newc(entries), capture_output=True
    )
    assert listing.stdout.decode().split() == ["d", "d/f"]


@pytest.mark.slow
def test_unknown_package_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ImageError, match="boinc-no-such-package-xyz"):
        vmimage._download(tmp_path, "boinc-no-such-package-xyz")
