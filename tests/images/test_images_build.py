"""The image builder's inputs and outputs without booting anything (host_bridge.images): malformed
inputs each give a clear error naming the input and leave nothing behind (no output folder, no
half-written folder beside it, no work folder in the cache); the same inputs give the same bytes; the
output folder's job_tags.xml / version.xml / image.json."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from host_bridge.images.build import BuildSpec, build_image, parse_add
from host_bridge.images.parts import ImageError, cache_dir
from host_bridge.images.rootfs import import_rootfs

pytestmark = pytest.mark.timeout(600)

BUSYBOX = Path("/bin/busybox")


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for m in members:
            if isinstance(m, tuple):
                ti, data = m
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                tar.addfile(m)
    return path


def _ti(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return ti


def _nothing_left(out: Path) -> None:
    assert not out.exists(), f"{out} was left"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "half-written folder"
    work = cache_dir() / "build"
    assert not work.exists() or not list(work.iterdir()), list(work.iterdir())


def _small_rootfs(path: Path, extra: bytes = b"") -> Path:
    """A busybox root (what a 'podman export' of a small container holds)."""
    members: list = [_ti(d, tarfile.DIRTYPE) for d in ("bin", "etc", "app")]
    members.append((_ti("bin/busybox"), BUSYBOX.read_bytes()))
    members.append(_ti("bin/sh", tarfile.SYMTYPE, "busybox"))
    members.append((_ti("etc/os-release"), b'PRETTY_NAME="test rootfs"\n'))
    members.append((_ti("app/data.txt"), b"data\n" + extra))
    return _tar(path, members)


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([(_ti("/etc/passwd"), b"x")], "absolute path"),
        ([(_ti("etc/../../evil"), b"x")], r"'\.\.' component"),
        ([_ti("dev/sda", tarfile.BLKTYPE)], "device node"),
        ([_ti("dev/null", tarfile.CHRTYPE)], "device node"),
        ([_ti("fifo", tarfile.FIFOTYPE)], "device node or FIFO"),
        ([_ti("up", tarfile.SYMTYPE, "../../../etc")], "points outside the root"),
        ([_ti("etc", tarfile.SYMTYPE, "/etc"), (_ti("etc/passwd"), b"x")], "under the symbolic link"),
        ([_ti("hard", tarfile.LNKTYPE, "/etc/shadow")], "hard link"),
    ],
)
def test_malformed_tarballs_are_refused_and_leave_nothing(tmp_path: Path, members, match: str) -> None:
    bad = _tar(tmp_path / "bad.tar", [_ti("bin", tarfile.DIRTYPE), *members])
    out = tmp_path / "img"
    with pytest.raises(ImageError, match=match) as e:
        build_image(BuildSpec(out=out, rootfs=bad))
    assert str(bad) in str(e.value)  # names the input
    _nothing_left(out)


def test_malformed_inputs_give_clear_errors(tmp_path: Path) -> None:
    out = tmp_path / "img"
    with pytest.raises(ImageError, match=r"--add .*HOSTPATH:GUESTPATH"):
        parse_add("worker.py")
    with pytest.raises(ImageError, match=r"--add .*is not a file"):
        parse_add(f"{tmp_path}/missing.py:/app/x.py")
    with pytest.raises(ImageError, match="must be absolute"):
        parse_add(f"{BUSYBOX}:app/x")
    with pytest.raises(ImageError, match=r"--rootfs .*no such file"):
        build_image(BuildSpec(out=out, rootfs=tmp_path / "none.tar"))
    (tmp_path / "notar.tar").write_bytes(b"this is no tar archive" * 50)
    with pytest.raises(ImageError, match="not a tar archive"):
        build_image(BuildSpec(out=out, rootfs=tmp_path / "notar.tar"))
    with pytest.raises(ImageError, match="not a Debian package name"):
        build_image(BuildSpec(out=out, debian=("Python3 Numpy",)))
    with pytest.raises(ImageError, match="boinc-no-such-package-xyz: no such Debian package"):
        build_image(BuildSpec(out=out, debian=("boinc-no-such-package-xyz",)))
    with pytest.raises(ImageError, match="either --rootfs or --dockerfile"):
        build_image(BuildSpec(out=out, rootfs=BUSYBOX, dockerfile=BUSYBOX))
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(ImageError, match="non-empty folder that is not an image"):
        build_image(BuildSpec(out=other, rootfs=BUSYBOX))
    assert (other / "precious.txt").read_text() == "x"
    _nothing_left(out)


def test_the_cli_reports_the_input_and_exits_1(tmp_path: Path) -> None:
    exe = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "host-bridge"
    r = subprocess.run(
        [str(exe), "image", "build", "--out", str(tmp_path / "img"), "--add", f"{tmp_path}/nope.py:/app/x"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1
    assert "nope.py" in r.stderr and "is not a file" in r.stderr, r.stderr
    _nothing_left(tmp_path / "img")


def test_not_enough_disk_space_leaves_nothing(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)], check=True, timeout=30)
    try:
        out = small / "img"
        with pytest.raises(ImageError, match=r"not enough disk space in .*MB needed"):
            build_image(BuildSpec(out=out, rootfs=_small_rootfs(tmp_path / "root.tar")))
        _nothing_left(out)
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True, timeout=30)


def test_same_inputs_same_bytes_and_the_output_files(tmp_path: Path) -> None:
    tar = _small_rootfs(tmp_path / "root.tar")
    app = tmp_path / "app.sh"
    app.write_text("#!/bin/sh\necho hi\n")
    app.chmod(0o755)
    spec = BuildSpec(out=tmp_path / "a", rootfs=tar, add=((app, "/app/run.sh"),))
    a = build_image(spec)
    os.utime(tar, (1, 1))  # another mtime of the input: no difference
    b = build_image(BuildSpec(out=tmp_path / "b", rootfs=tar, add=((app, "/app/run.sh"),)))
    assert (a.kernel, a.initrd, a.disk) == (b.kernel, b.initrd, b.disk)
    for name in (a.kernel, a.initrd, a.disk, "job_tags.xml", "version.xml"):
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name
    # the content hash is in the disk's name; another input gives another disk
    c = build_image(BuildSpec(out=tmp_path / "c", rootfs=_small_rootfs(tmp_path / "r2.tar", b"more")))
    assert c.disk != a.disk and c.disk.startswith("root-") and c.disk.endswith(".squashfs")
    tags = (a.out / "job_tags.xml").read_text()
    for tag, name in (("vm_kernel", a.kernel), ("vm_initrd", a.initrd), ("vm_disk_image", a.disk)):
        assert f"<{tag}>{name}</{tag}>" in tags
    ver = (a.out / "version.xml").read_text()
    assert ver.count("<file>") == 3 and ver.count("<gzip/>") == 2  # the uncompressed kernel, the lz4 root
    for name in (a.kernel, a.disk):
        assert f"<physical_name>{name}</physical_name>\n        <logical_name>{name}</logical_name>\n" \
            "        <gzip/>" in ver  # fmt: skip
    man = json.loads((a.out / "image.json").read_text())
    assert man["root"]["kind"] == "tar" and man["root"]["added"] == ["/app/run.sh"]
    assert man["memory_floor_mb"] > 64
    # the root holds the SDKs and the added file (unsquashfs lists it)
    ls = subprocess.run(
        ["unsquashfs", "-lls", str(a.out / a.disk)], capture_output=True, text=True, timeout=60
    )
    assert "squashfs-root/app/run.sh" in ls.stdout and "-rwxr-xr-x root/root" in ls.stdout
    assert "squashfs-root/usr/local/lib/libboinc_guest.so.0" in ls.stdout
    assert "squashfs-root/boinc/shared" in ls.stdout
    # an earlier image in --out is replaced whole
    d = build_image(BuildSpec(out=tmp_path / "a", rootfs=_small_rootfs(tmp_path / "r2.tar", b"more")))
    assert sorted(p.name for p in d.out.iterdir()) == sorted(
        [d.kernel, d.initrd, d.disk, "job_tags.xml", "version.xml", "image.json"]
    )


def test_image_archives_apply_layers_and_whiteouts(tmp_path: Path) -> None:
    """A docker-archive (podman save) with two layers: the second deletes a file of the first."""
    l1 = _tar(tmp_path / "l1.tar", [_ti("app", tarfile.DIRTYPE), (_ti("app/a"), b"a"), (_ti("app/b"), b"b")])
    l2 = _tar(
        tmp_path / "l2.tar", [_ti("app", tarfile.DIRTYPE), (_ti("app/.wh.a"), b""), (_ti("app/c"), b"c")]
    )
    man = json.dumps([{"Config": "cfg.json", "RepoTags": ["x"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}])
    arch = _tar(
        tmp_path / "saved.tar",
        [(_ti("manifest.json"), man.encode()), (_ti("l1/layer.tar"), l1.read_bytes()),
         (_ti("l2/layer.tar"), l2.read_bytes())],
    )  # fmt: skip
    dest = tmp_path / "root"
    dest.mkdir()
    assert import_rootfs(arch, dest) == "docker-archive"
    assert sorted(p.name for p in (dest / "app").iterdir()) == ["b", "c"]


def test_the_root_compression_lz4_by_default_or_zstd(tmp_path: Path) -> None:
    tar = _small_rootfs(tmp_path / "root.tar")
    lz4 = build_image(BuildSpec(out=tmp_path / "l", rootfs=tar))
    zstd = build_image(BuildSpec(out=tmp_path / "z", rootfs=tar, compression="zstd"))
    for img, comp in ((lz4, "lz4"), (zstd, "zstd")):
        info = subprocess.run(
            ["unsquashfs", "-s", str(img.out / img.disk)], capture_output=True, text=True, timeout=60
        )
        assert f"Compression {comp}" in info.stdout, info.stdout
        assert json.loads((img.out / "image.json").read_text())["root"]["compression"] == comp
    assert lz4.disk != zstd.disk
    # a zstd root is not gzipped again for the download; the kernel always is
    assert (zstd.out / "version.xml").read_text().count("<gzip/>") == 1
    with pytest.raises(ImageError, match="--root-compression xz: choose one of lz4, zstd"):
        build_image(BuildSpec(out=tmp_path / "x", rootfs=tar, compression="xz"))
    assert not (tmp_path / "x").exists()
