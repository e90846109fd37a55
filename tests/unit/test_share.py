"""Hostile-input safety of host_bridge.share: links, hard links, FIFOs, devices, huge files, bad names."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from host_bridge.share import GuestFileRefused, RefusalLog, Share, read_guest_file, safe_name

STATUS = "boinc_status.msgpack"


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    p = tmp_path / "host_secret.txt"
    p.write_bytes(b"host secret\n")
    return p


def refused(reason: str, fn, *args):
    with pytest.raises(GuestFileRefused) as info:
        fn(*args)
    assert info.value.reason == reason, str(info.value)
    return info.value


# -- reading ---------------------------------------------------------------------------------------------
def test_read_regular_and_absent(share: Path) -> None:
    (share / STATUS).write_bytes(b"abc")
    assert read_guest_file(share, STATUS, 10) == b"abc"
    assert read_guest_file(share, "missing", 10) is None
    with Share(share) as s:
        assert s.read(STATUS, 3) == b"abc"
        assert s.exists(STATUS)
        assert not s.exists("missing")


def test_symlink_at_status_name_refused(share: Path, host_secret: Path) -> None:
    (share / STATUS).symlink_to(host_secret)
    err = refused("symlink", read_guest_file, share, STATUS, 1 << 20)
    assert STATUS in str(err) and "report it" in str(err)
    assert host_secret.read_bytes() == b"host secret\n"


def test_dangling_and_dir_symlink_refused(share: Path, tmp_path: Path) -> None:
    (share / "a").symlink_to(tmp_path / "nowhere")
    (share / "b").symlink_to(tmp_path)
    with Share(share) as s:
        refused("symlink", s.read, "a", 100)
        refused("symlink", s.read, "b", 100)


def test_hard_link_refused(share: Path, host_secret: Path) -> None:
    os.link(host_secret, share / STATUS)
    refused("hard link", read_guest_file, share, STATUS, 1 << 20)
    assert host_secret.read_bytes() == b"host secret\n"


def test_file_replaced_while_open_is_still_read(share: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guest renames a new status over the file the bridge has just opened: the open file has 0
    links then; that is the protocol's normal replacement, not a hard link, and it reads whole."""
    (share / STATUS).write_bytes(b"old")
    real_open = os.open

    def open_then_replace(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if path == STATUS:
            (share / "new").write_bytes(b"new")
            os.rename(share / "new", share / STATUS)
        return fd

    with Share(share) as s:
        monkeypatch.setattr(os, "open", open_then_replace)
        assert s.read(STATUS, 10) == b"old"
        monkeypatch.undo()
        assert s.read(STATUS, 10) == b"new"


def test_fifo_refused_without_blocking(share: Path) -> None:
    os.mkfifo(share / STATUS)
    result: list[object] = []

    def reader() -> None:
        try:
            read_guest_file(share, STATUS, 100)
            result.append("read")
        except GuestFileRefused as e:
            result.append(e.reason)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout=5)
    if t.is_alive():  # unblock the reader so the test process does not hang, then fail
        fd = os.open(share / STATUS, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("reading a FIFO blocked")
    assert result == ["not a regular file"]


def test_device_refused(share: Path) -> None:
    if os.geteuid() == 0:
        os.mknod(share / STATUS, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null
        refused("not a regular file", read_guest_file, share, STATUS, 100)
        os.unlink(share / STATUS)
    (share / STATUS).symlink_to("/dev/zero")
    refused("symlink", read_guest_file, share, STATUS, 100)


def test_directory_and_socket_refused(share: Path) -> None:
    import socket

    (share / STATUS).mkdir()
    refused("not a regular file", read_guest_file, share, STATUS, 100)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(share / "sock"))
        refused("not a regular file", read_guest_file, share, "sock", 100)
    finally:
        sock.close()


def test_huge_sparse_file_refused_fast(share: Path) -> None:
    with open(share / STATUS, "wb") as f:
        f.truncate(1 << 30)
    t0 = time.monotonic()
    err = refused("too large", read_guest_file, share, STATUS, 1 << 20)
    assert time.monotonic() - t0 < 1.0
    assert "1073741824" in str(err)
    (share / "exact").write_bytes(b"x" * 100)
    assert read_guest_file(share, "exact", 100) == b"x" * 100
    refused("too large", read_guest_file, share, "exact", 99)


def test_share_itself_must_be_a_directory(tmp_path: Path, share: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(share)
    refused("share", Share, link)
    f = tmp_path / "file"
    f.write_bytes(b"")
    refused("share", Share, f)


def test_share_held_by_fd_survives_swap(tmp_path: Path, share: Path, host_secret: Path) -> None:
    """Renaming the share and planting a link in its place does not redirect an open Share."""
    (share / STATUS).write_bytes(b"mine")
    with Share(share) as s:
        share.rename(tmp_path / "moved")
        share.symlink_to(host_secret.parent)
        assert s.read(STATUS, 10) == b"mine"
        assert s.read("host_secret.txt", 100) is None


# -- names -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../etc/passwd",
        "a/b",
        "/abs",
        "nul\0byte",
        "ctl\x01",
        "del\x7f",
        "c1\x85",
        "x" * 10_000,
        "é" * 128,  # 256 bytes of UTF-8
        b"caf\xe9".decode("utf-8", "surrogateescape"),
    ],
)
def test_bad_names_refused(name: str, share: Path) -> None:
    refused("bad name", safe_name, name)
    with Share(share) as s:
        refused("bad name", s.read, name, 10)
        refused("bad name", s.write_atomic, name, b"x")


def test_good_names() -> None:
    for name in ["a", "boinc_status.msgpack", "résultat.txt", "x" * 255, "日本"]:
        assert safe_name(name) == name
    refused("bad name", safe_name, b"bytes")


# -- writing ---------------------------------------------------------------------------------------------
def test_write_atomic_over_planted_symlink(share: Path, host_secret: Path) -> None:
    name = "boinc_control.msgpack"
    (share / name).symlink_to(host_secret)
    (share / f".{name}.tmp").symlink_to(host_secret)  # at the temp name too
    with Share(share) as s:
        s.write_atomic(name, b"control bytes")
    assert host_secret.read_bytes() == b"host secret\n"
    assert not (share / name).is_symlink()
    assert (share / name).read_bytes() == b"control bytes"
    assert not (share / f".{name}.tmp").exists()


def test_write_atomic_directory_at_temp_name_uses_another(share: Path) -> None:
    name = "boinc_control.msgpack"
    (share / f".{name}.tmp").mkdir()
    with Share(share) as s:
        s.write_atomic(name, b"v2")
        assert s.read(name, 10) == b"v2"
        (share / "dir").mkdir()
        refused("not a regular file", s.write_atomic, "dir", b"x")
    assert sorted(p.name for p in share.iterdir()) == [f".{name}.tmp", name, "dir"]


def test_copy_in_replaces_link_without_following(share: Path, host_secret: Path, tmp_path: Path) -> None:
    src = tmp_path / "input.dat"
    src.write_bytes(b"input" * 1000)
    (share / "in.dat").symlink_to(host_secret)
    with Share(share) as s:
        assert s.copy_in(src, "in.dat") == 5000
        # a name that is not a plain file name never leaves the share (moved here from the backends'
        # copy_in tests: the runtime's Share is the one owner of the task's file copies)
        for bad in ("../escape", "sub/x", ""):
            refused("bad name", s.copy_in, src, bad)
    assert (share / "in.dat").read_bytes() == b"input" * 1000
    assert host_secret.read_bytes() == b"host secret\n"
    assert not (share.parent / "escape").exists()


def test_copy_out(share: Path, tmp_path: Path, host_secret: Path) -> None:
    out = tmp_path / "slot"
    out.mkdir()
    (share / "result.txt").write_bytes(b"r" * 3000)
    with Share(share) as s:
        assert s.copy_out("result.txt", out / "result.txt", 1 << 20) == 3000
        assert (out / "result.txt").read_bytes() == b"r" * 3000
        # a link at the copy-back name: refused, host file untouched, destination untouched
        (share / "up.txt").symlink_to(host_secret)
        refused("symlink", s.copy_out, "up.txt", out / "up.txt", 1 << 20)
        assert not (out / "up.txt").exists()
        os.link(host_secret, share / "hl.txt")
        refused("hard link", s.copy_out, "hl.txt", out / "hl.txt", 1 << 20)
        with pytest.raises(FileNotFoundError, match=r"absent\.txt"):
            s.copy_out("absent.txt", out / "x", 10)
    assert host_secret.read_bytes() == b"host secret\n"
    assert sorted(p.name for p in out.iterdir()) == ["result.txt"]


def test_copy_out_partial_never_visible(share: Path, tmp_path: Path) -> None:
    """A too-large output leaves the previous destination whole and no temporary behind."""
    out = tmp_path / "slot"
    out.mkdir()
    (out / "result.txt").write_bytes(b"old complete output")
    with open(share / "result.txt", "wb") as f:
        f.truncate(5000)
    with Share(share) as s:
        refused("too large", s.copy_out, "result.txt", out / "result.txt", 4096)
    assert (out / "result.txt").read_bytes() == b"old complete output"
    assert sorted(p.name for p in out.iterdir()) == ["result.txt"]


def test_clear(share: Path, host_secret: Path) -> None:
    (share / "a").write_bytes(b"1")
    (share / "b").symlink_to(host_secret.parent)
    (share / "c").mkdir()
    (share / "c" / "inner").symlink_to(host_secret)
    with Share(share) as s:
        s.clear(["a", "b", "c", "absent"])
    assert list(share.iterdir()) == []
    assert host_secret.read_bytes() == b"host secret\n"


def test_open_append_refuses_link(share: Path, host_secret: Path) -> None:
    (share / "stdout.txt").symlink_to(host_secret)
    with Share(share) as s:
        refused("symlink", s.open_append, "stdout.txt")
        fd = s.open_append("stderr.txt")
        os.write(fd, b"x")
        os.close(fd)
    assert (share / "stderr.txt").read_bytes() == b"x"
    assert host_secret.read_bytes() == b"host secret\n"


# -- logging ---------------------------------------------------------------------------------------------
def test_refusal_log_once_per_name_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    log = RefusalLog(logging.getLogger("test.refusals"), max_distinct=3)
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        for _ in range(1000):
            log.report(GuestFileRefused(STATUS, "symlink"))
        log.report(GuestFileRefused(STATUS, "too large"))
        for i in range(100):
            log.report(GuestFileRefused(f"n{i}", "bad name"))
    assert log.counts[(repr(STATUS), "symlink")] == 1000
    assert log.total == 1101
    # symlink once, too large once, one bad name, then one "only counted" line
    assert len(caplog.records) == 4
    assert "only counted" in caplog.records[-1].getMessage()
    assert log.summary(most=2) == (
        f"the guest's files were refused 1101 times in all: {STATUS!r} (symlink) x1000, "
        f"{STATUS!r} (too large) x1, 1 more, 99 not told apart"
    )


def test_refusal_summary_only_when_something_went_untold() -> None:
    log = RefusalLog(logging.getLogger("test.refusals"))
    assert log.summary() is None
    log.report(GuestFileRefused("a", "symlink"))
    log.report(GuestFileRefused("b", "symlink"))
    assert log.summary() is None  # each refusal had its own line
    log.report(GuestFileRefused("b", "symlink"))
    told = log.summary()
    assert told == "the guest's files were refused 3 times in all: 'b' (symlink) x2, 'a' (symlink) x1"


def test_refusal_advice_fits_the_reason() -> None:
    """Links and special files get the "never follows links" explanation; a bad status file or a bad
    name does not (it would not apply)."""
    link = str(GuestFileRefused("boinc_status.msgpack", "symlink"))
    assert "never follows links" in link and "report it to the project" in link
    bad = str(GuestFileRefused("boinc_status.msgpack", "bad status file (format)", "not msgpack"))
    assert "never follows links" not in bad and "report it to the project" in bad
    assert "never follows links" not in str(GuestFileRefused("x" * 300, "bad name"))


# -- 9p mapped metadata (QEMU security_model=mapped-xattr / mapped-file) ---------------------------------
def _virtfs_xattr(path: Path, mode: int) -> None:
    """What QEMU does for a guest's file under mapped-xattr: a regular host file, the guest's mode (type
    bits included) in user.virtfs.mode, 4 bytes little-endian."""
    os.setxattr(path, "user.virtfs.mode", mode.to_bytes(4, "little"))


def _virtfs_meta_file(share: Path, name: str, mode: int) -> None:
    """The same under mapped-file: .virtfs_metadata/NAME, "virtfs.mode=DECIMAL"."""
    meta = share / ".virtfs_metadata"
    meta.mkdir(exist_ok=True)
    (meta / name).write_text(f"virtfs.uid=0\nvirtfs.gid=0\nvirtfs.mode={mode}\n")


def test_virtfs_mapped_xattr_links_and_special_files_refused(share: Path, tmp_path: Path) -> None:
    """A guest symlink out -> /etc/passwd is, on the host, an 11-byte regular file holding "/etc/passwd"
    with user.virtfs.mode 0o120777: a share that may carry the metadata refuses it as a symlink (a FIFO
    or device node as not a regular file); a plain Share reads it as data, as before."""
    (share / "out").write_bytes(b"/etc/passwd")
    _virtfs_xattr(share / "out", 0o120777)
    (share / STATUS).write_bytes(b"/etc/passwd")
    _virtfs_xattr(share / STATUS, 0o120777)
    (share / "fifo").write_bytes(b"")
    _virtfs_xattr(share / "fifo", stat.S_IFIFO | 0o644)
    (share / "dev").write_bytes(b"")
    _virtfs_xattr(share / "dev", stat.S_IFCHR | 0o600)
    (share / "reg.txt").write_bytes(b"regular\n")
    _virtfs_xattr(share / "reg.txt", stat.S_IFREG | 0o644)
    (share / "host_made.txt").write_bytes(b"no metadata\n")  # a file the host wrote: no xattr
    dest = tmp_path / "copied"
    with Share(share) as plain:
        assert plain.read("out", 100) == b"/etc/passwd"  # what happened before: the link's target as data
    with Share(share, virtfs_mapped=True) as s:
        err = refused("symlink", s.read, "out", 100)
        assert "9p mapped-xattr" in str(err)
        refused("symlink", s.read, STATUS, 1 << 20)
        refused("symlink", s.copy_out, "out", dest, 1 << 20)
        assert not dest.exists()
        err = refused("not a regular file", s.read, "fifo", 100)
        assert "a FIFO" in str(err)
        err = refused("not a regular file", s.copy_out, "dev", dest, 100)
        assert "a device" in str(err)
        refused("not a regular file", s.open_input, "fifo")
        refused("symlink", s.open_append, "out")
        assert s.read("reg.txt", 100) == b"regular\n"
        assert s.copy_out("reg.txt", dest, 100) == 8
        assert s.read("host_made.txt", 100) == b"no metadata\n"
    assert read_guest_file(share, "out", 100) == b"/etc/passwd"
    with pytest.raises(GuestFileRefused, match="symbolic link"):
        read_guest_file(share, "out", 100, virtfs_mapped=True)
    assert repr(Share(share, virtfs_mapped=True)).endswith("virtfs_mapped=True)")


def test_virtfs_mapped_file_metadata(share: Path) -> None:
    """Under mapped-file the guest's mode is in .virtfs_metadata/NAME: the same refusals. Clearing or
    replacing a name drops its stale metadata (the guest would see the host's new file as a link)."""
    (share / "out").write_bytes(b"/etc/passwd")
    _virtfs_meta_file(share, "out", 0o120777)
    (share / "fifo").write_bytes(b"")
    _virtfs_meta_file(share, "fifo", stat.S_IFIFO | 0o644)
    (share / "reg.txt").write_bytes(b"regular\n")
    _virtfs_meta_file(share, "reg.txt", stat.S_IFREG | 0o644)
    (share / "odd").write_bytes(b"odd")
    (share / ".virtfs_metadata" / "odd").write_text("garbage")  # unparsable: ignored
    with Share(share, virtfs_mapped=True) as s:
        err = refused("symlink", s.read, "out", 100)
        assert "9p mapped-file" in str(err)
        refused("not a regular file", s.read, "fifo", 100)
        assert s.read("reg.txt", 100) == b"regular\n"
        assert s.read("odd", 100) == b"odd"
        s.write_atomic("out", b"host data")
        assert not (share / ".virtfs_metadata" / "out").exists()
        assert s.read("out", 100) == b"host data"
        s.clear(["fifo"])
        assert not (share / "fifo").exists() and not (share / ".virtfs_metadata" / "fifo").exists()
    with Share(share) as plain:  # the metadata is only read when asked for
        (share / "fifo").write_bytes(b"")
        _virtfs_meta_file(share, "fifo", stat.S_IFIFO | 0o644)
        assert plain.read("fifo", 10) == b""
        plain.clear(["fifo"])
        assert (share / ".virtfs_metadata" / "fifo").exists()


def test_virtfs_mapped_costs_nothing_when_off(share: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local backend's reads do not look for 9p metadata (no getxattr, no extra open)."""
    (share / STATUS).write_bytes(b"abc")
    calls: list[object] = []
    monkeypatch.setattr(os, "getxattr", lambda *a, **k: calls.append(a))
    with Share(share) as s:
        assert s.read(STATUS, 10) == b"abc"
    assert calls == []


def test_copy_out_replaces_the_part_file_a_killed_copy_left(tmp_path: Path) -> None:
    """A bridge killed in the middle of copying an output leaves its part file next to the destination
    (in the project folder); the restarted bridge's copy of the same output must replace it, not leave
    it there for good."""
    share_dir = tmp_path / "share"
    share_dir.mkdir()
    (share_dir / "out").write_bytes(b"the whole output\n")
    project = tmp_path / "project"
    project.mkdir()
    dest = project / "result_0_out"
    (project / ".result_0_out.part").write_bytes(b"half an outp")  # what the killed copy left
    share = Share(share_dir)
    try:
        assert share.copy_out("out", dest, 1 << 20) == len(b"the whole output\n")
    finally:
        share.close()
    assert dest.read_bytes() == b"the whole output\n"
    assert sorted(p.name for p in project.iterdir()) == ["result_0_out"]
