"""``host-bridge image build`` / ``host-bridge image check`` (the admin's commands, docs/images.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from host_bridge.images.build import COMPRESSIONS, DEFAULT_COMPRESSION
from host_bridge.images.parts import ImageError
from host_bridge.logsetup import setup_logging

logger = logging.getLogger(__name__)

USAGE = """\
host-bridge image build --out DIR [--debian PKG]... [--add HOST:GUEST]... [--rootfs TAR] [--dockerfile FILE]
       host-bridge image check DIR"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="host-bridge image", usage=USAGE, description="VM images for the QEMU backend"
    )
    sub = p.add_subparsers(dest="what", required=True)
    b = sub.add_parser(
        "build", help="build an image (kernel, initramfs, root disk, job_tags.xml, version.xml)"
    )
    b.add_argument(
        "--out", required=True, type=Path, help="the folder to create (replaced if an earlier image)"
    )
    b.add_argument(
        "--debian", action="append", default=[], metavar="PKG", help="a Debian package for the root"
    )
    b.add_argument("--add", action="append", default=[], metavar="HOST:GUEST", help="a file into the root")
    b.add_argument(
        "--rootfs", type=Path, help="a root file system tarball (podman export) or podman save archive"
    )
    b.add_argument("--dockerfile", type=Path, help="a Dockerfile: built and exported with podman")
    b.add_argument(
        "--root-compression",
        choices=sorted(COMPRESSIONS),
        default=DEFAULT_COMPRESSION,
        help="the root disk's: lz4 (default, the fastest boot) or zstd (the smallest download)",
    )
    c = sub.add_parser("check", help="boot an image once and report boot time, SDKs, Python, sizes, memory")
    c.add_argument("dir", type=Path)
    c.add_argument("--timeout", type=float, default=180.0, help="seconds the probe may take (default 180)")
    return p


def main(args: list[str]) -> int:
    ns = _parser().parse_args(args)
    setup_logging(0, "host-bridge image: %(message)s")
    try:
        if ns.what == "build":
            return _build(ns)
        return _check(ns)
    except ImageError as e:
        print(f"host-bridge image {ns.what}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"host-bridge image {ns.what}: interrupted; nothing was left in place", file=sys.stderr)
        return 130


def _build(ns: argparse.Namespace) -> int:
    from host_bridge.images.build import BuildSpec, build_image, parse_add

    spec = BuildSpec(
        out=ns.out,
        debian=tuple(ns.debian),
        add=tuple(parse_add(a) for a in ns.add),
        rootfs=ns.rootfs,
        dockerfile=ns.dockerfile,
        compression=ns.root_compression,
    )
    img = build_image(spec, note=lambda text: print(f"  {text}", file=sys.stderr))
    b = img.manifest["bytes"]
    assert isinstance(b, dict)
    print(f"built {img.out} in {img.seconds:.1f} s")
    for role, name in (("kernel", img.kernel), ("initrd", img.initrd), ("disk", img.disk)):
        print(f"  {role:6} {name}  ({b[role] / 1e6:.1f} MB)")
    print(f"  job tags: {img.out / 'job_tags.xml'}\n  version.xml fragment: {img.out / 'version.xml'}")
    return 0


def _check(ns: argparse.Namespace) -> int:
    from host_bridge.images.check import check_image

    rep = check_image(ns.dir, timeout=ns.timeout)
    print("\n".join(rep.lines()))
    if rep.error:
        print(f"host-bridge image check: the image did not pass: {rep.error}", file=sys.stderr)
        return 1
    return 0
