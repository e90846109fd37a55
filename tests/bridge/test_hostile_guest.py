"""A hostile guest against the real bridge (subprocess, real libboinc_api, local backend, the test playing
the BOINC client through the real shared memory), each case WHILE A TASK IS LIVE.

The guest app (``GUEST`` below) reports progress through the Python SDK, then waits (its SDK keeps
writing heartbeats) while the test — standing in for the rest of the guest, which owns the share —
plants hostile things in the share; then it finishes with an output. Every case asserts:

- the hostile thing is refused with ONE logged reason in stderr.txt (not one line per event);
- nothing outside the slot was written (host files: same content and mtime; no new file anywhere
  under the test's tmp dir outside the slot, except the declared output);
- the task still finishes (exit 0 with its output) or ends with a defined code and a clear message.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import psutil
import pytest
from boinc_guest import protocol as P

from host_bridge.exitcodes import ExitCode
from host_bridge.state import STATE_FILE
from tests.support.bridge import JOB, ROOT, Bridge, alive, make_slot
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(180)

GUEST = textwrap.dedent(
    """\
    import os, sys, time
    from boinc_guest import *

    mode = sys.argv[1] if len(sys.argv) > 1 else "normal"
    boinc_init()
    with open("pids", "a") as f:
        f.write(f"{os.getpid()}\\n")
    n = 10
    for i in range(n):
        boinc_fraction_done((i + 1) / (2 * n))
        time.sleep(0.01)
    boinc_checkpoint_completed()
    if mode == "upload":
        # plain names the SDK lets through, that name the bridge's / the client's files in the slot
        for name in ("job.xml", "host_bridge_state.json", "init_data.xml", "undeclared.dat"):
            with open(name, "w") as f:
                f.write("<job_desc><task><application>/bin/sh</application></task></job_desc>\\n")
        for _ in range(10):
            for name in ("job.xml", "host_bridge_state.json", "init_data.xml", "undeclared.dat"):
                rc = boinc_upload_file(name)
                assert rc == 0, (name, rc)
        # names the SDK itself refuses (nothing is sent)
        for name in ("../job.xml", "/etc/passwd", "a/b", "..", "a\\0b"):
            assert boinc_upload_file(name) == ERR_INVALID_PARAM, name
        assert boinc_upload_file("x" * 10000) == ERR_BUFFER_OVERFLOW
        # a variety that looks like a path is only text: forwarded as is
        assert boinc_send_trickle_up("../../etc/passwd", "<x>1</x>") == 0
        assert boinc_send_trickle_up("v" * 10000, "t") == ERR_BUFFER_OVERFLOW
    open("phase1", "w").close()
    deadline = time.time() + 90
    while not os.path.exists("go_on") and time.time() < deadline:
        time.sleep(0.02)
    for i in range(n, 2 * n):
        boinc_fraction_done((i + 1) / (2 * n))
        time.sleep(0.01)
    if mode == "symout":
        os.symlink(sys.argv[2], "out")  # the copy-back output turned into a link to a host file
    elif mode == "hardout":
        os.link(sys.argv[2], "out")
    elif mode == "leave_deep":
        # task 1 of 2 leaves a 1000-level directory at the status file's name and exits without
        # boinc_finish (exit 0 ends the task): the bridge must clear it for task 2
        import shutil
        os.rename("boinc_status.msgpack", "old_status")
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        os.mkdir("boinc_status.msgpack", dir_fd=fd)
        cur = os.open("boinc_status.msgpack", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        for _ in range(1000):
            os.mkdir("d", dir_fd=cur)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=cur)
            os.close(cur)
            cur = nxt
        os.close(cur)
        os._exit(0)
    else:
        with open("out", "w") as f:
            f.write("done\\n")
    boinc_finish(0)
    """
)

SECRET = "the volunteer's private file\n"


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path):
    """pytest's own tmp clean-up recurses (RecursionError on a 1000-level tree, in EVERY later pytest
    session of this user): remove each test's tmp dir with rm, which does not recurse on the stack."""
    yield
    subprocess.run(["rm", "-rf", "--", str(tmp_path)], timeout=120, check=False)


class Run:
    """One bridge run with the hostile guest; host files to watch; helpers for the assertions."""

    def __init__(self, tmp_path: Path, args: str = "normal", job: str | None = None) -> None:
        self.tmp = tmp_path
        self.client = make_slot(tmp_path)
        self.slot = self.client.slot_dir
        self.share = self.slot / "shared"
        (self.slot / "guest.py").write_text(GUEST)
        home = tmp_path / "home"
        home.mkdir()
        self.secret = home / "secret.txt"
        self.secret.write_text(SECRET)
        (self.slot / "job.xml").write_text(job or JOB.format(args=args.replace("SECRET", str(self.secret))))
        self.host_files = {
            p: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in (self.secret, self.slot / "job.xml", self.slot / "init_data.xml")
        }
        self.outside_before = self._outside()
        self.client.start_heartbeats()
        self.bridge = Bridge(self.slot)

    def _outside(self) -> dict[str, tuple[int, int]]:
        """Every file under tmp outside the slot: (size, mtime)."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.tmp):
            if Path(dirpath) == self.tmp and "slot" in dirnames:
                dirnames.remove("slot")
            for fn in filenames:
                p = os.path.join(dirpath, fn)
                st = os.lstat(p)
                out[p] = (st.st_size, st.st_mtime_ns)
        return out

    def wait(self, pred: Callable[[], object], timeout: float, what: str) -> None:
        try:
            wait_for(pred, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- bridge stderr.txt ---\n{self.log()}") from None

    def wait_phase1(self) -> None:
        self.wait(lambda: (self.share / "phase1").exists(), 60, "the guest's first phase")

    def go_on(self) -> None:
        (self.share / "go_on").touch()

    def finish(self, timeout: float = 90) -> int:
        try:
            return self.bridge.wait(timeout)
        finally:
            self.bridge.close()
            self.client.close()
            pids = (self.share / "pids").read_text().split() if (self.share / "pids").exists() else []
            for p in pids:
                wait_for(lambda p=p: not alive(int(p)), 10, f"guest {p} gone")

    def log(self) -> str:
        return self.bridge.log()

    def refusal_lines(self) -> list[str]:
        """The log lines of single refusals (the end's summary of repeated ones is refusal_summary)."""
        return [ln for ln in self.log().splitlines() if "refused" in ln and "times in all" not in ln]

    def refusal_summary(self) -> list[str]:
        return [ln for ln in self.log().splitlines() if "the guest's files were refused" in ln]

    def assert_host_untouched(self, *, new_outputs: tuple[str, ...] = ("project/result_0_out",)) -> None:
        for p, (data, mtime) in self.host_files.items():
            assert p.read_bytes() == data, f"{p} was changed"
            assert p.stat().st_mtime_ns == mtime, f"{p} was touched"
        after = self._outside()
        expected = {str(self.tmp / n) for n in new_outputs}
        new = set(after) - set(self.outside_before) - expected
        assert not new, f"files appeared outside the slot: {sorted(new)}"
        for p, sig in self.outside_before.items():
            assert after.get(p) == sig, f"{p} changed"
        # the bridge's own state is still its own (valid JSON written by the bridge)
        state = self.slot / STATE_FILE
        assert state.read_text().startswith("{") and '"job_digest"' in state.read_text()

    def assert_ok(self, rc: int) -> None:
        assert rc == 0, self.log()
        assert (self.tmp / "project" / "result_0_out").read_text() == "done\n"


def _replant(share: Path, make: Callable[[Path], None], name: str = P.STATUS_FILE) -> None:
    """Put a hostile entry at ``name`` atomically (made at a temporary name, renamed over)."""
    tmp = share / ".plant"
    if tmp.is_dir() and not tmp.is_symlink():
        os.rmdir(tmp)
    elif os.path.lexists(tmp):
        os.unlink(tmp)
    make(tmp)
    try:
        os.rename(tmp, share / name)
    except NotADirectoryError:  # a directory cannot be renamed over a file: remove the file first
        os.unlink(share / name)
        os.rename(tmp, share / name)


def _hold(share: Path, make: Callable[[Path], None], seconds: float, name: str = P.STATUS_FILE) -> int:
    """Keep the hostile entry at ``name`` for ``seconds`` (the SDK's heartbeat write replaces it once a
    second: plant it again every 20 ms). Returns the number of plants (each one a hint to the bridge)."""
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _replant(share, make, name)
        n += 1
        time.sleep(0.02)
    return n


def _write_raw(share: Path, data: bytes) -> None:
    """Write a status file the way a guest would, but not through the SDK (own temporary name, so the
    SDK's heartbeat writes in the same folder do not race with it)."""
    tmp = share / ".raw.tmp"
    tmp.write_bytes(data)
    os.rename(tmp, share / P.STATUS_FILE)


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------------------------------------


def test_hostile_entries_at_the_status_name(tmp_path):
    """Symlinks to the bridge's state file and to a home file, a hard link to a host file, a FIFO, a
    device node, a 1 GiB sparse file and a directory, each held at the status file's name for a while
    (dozens of hints each): each refused with one line, never read or followed; the task finishes."""
    r = Run(tmp_path)
    r.wait_phase1()
    secret = r.secret
    cases: list[tuple[str, Callable[[Path], None]]] = [
        ("symbolic link", lambda p: os.symlink(f"../{STATE_FILE}", p)),
        ("symbolic link", lambda p: os.symlink(str(secret), p)),
        ("hard link", lambda p: os.link(secret, p)),
        ("a FIFO", lambda p: os.mkfifo(p)),
        ("a device", lambda p: os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3))),  # like /dev/null
        ("larger than allowed", lambda p: os.truncate(_touch(p), 1 << 30)),
        ("a directory", lambda p: os.mkdir(p)),
    ]
    plants = 0
    for _what, make in cases:
        plants += _hold(r.share, make, 0.8)
    assert plants > 100
    # leave the share clean for the guest's last writes (a directory would block its rename)
    os.rmdir(r.share / P.STATUS_FILE)
    # the bridge never held a GiB: its peak RSS stays that of a small Python program
    hwm = _vm_hwm_kb(r.bridge.proc.pid)
    r.go_on()
    rc = r.finish()
    r.assert_ok(rc)
    r.assert_host_untouched()
    assert secret.stat().st_nlink == 1
    lines = r.refusal_lines()
    # one line per distinct reason, however many plants: the FIFO, the device and the directory share
    # "not a regular file" (the first one seen is named), the two symlinks share "symbolic link"
    for what in ("symbolic link", "hard link", "not a regular file", "larger than allowed"):
        hits = [ln for ln in lines if what in ln]
        assert len(hits) == 1, (what, "\n".join(lines))
    assert len(lines) == 4, "\n".join(lines)
    assert hwm < 200_000, f"bridge peak RSS {hwm} kB"


def _touch(p: Path) -> Path:
    p.touch()
    return p


def test_control_file_links_are_replaced_not_followed(tmp_path):
    """The guest puts symlinks to a host file at the control file's name and at its temporary name:
    the bridge's next control write (a suspend) replaces them and the host file is untouched."""
    r = Run(tmp_path)
    r.wait_phase1()
    for name in (P.CONTROL_FILE, "." + P.CONTROL_FILE + ".tmp"):
        os.unlink(r.share / name) if os.path.lexists(r.share / name) else None
        os.symlink(str(r.secret), r.share / name)
    r.client.suspend()
    wait_for(
        lambda: (
            not (r.share / P.CONTROL_FILE).is_symlink()
            and P.decode_control((r.share / P.CONTROL_FILE).read_bytes()).suspended
        ),
        10,
        "a control file (not a link) saying suspended",
    )
    r.client.resume()
    r.go_on()
    rc = r.finish()
    r.assert_ok(rc)
    r.assert_host_untouched()


def test_many_files_and_deep_directories_in_the_share(tmp_path):
    """100,000 files and a 1000-level directory chain in the share while the task runs: the bridge
    does not walk them and its CPU stays low; the task finishes."""
    r = Run(tmp_path)
    r.wait_phase1()
    junk = r.share / "junk"
    junk.mkdir()
    dfd = os.open(junk, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(100_000):
            os.close(os.open(f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dfd))
    finally:
        os.close(dfd)
    _deep(r.share, "deep", 1000)
    for i in range(2000):  # and a few thousand at the top level of the share itself
        (r.share / f"top{i}").touch()
    proc = psutil.Process(r.bridge.proc.pid)
    c0 = sum(proc.cpu_times()[:2])
    time.sleep(2.0)
    cpu = sum(proc.cpu_times()[:2]) - c0
    r.go_on()
    rc = r.finish()
    r.assert_ok(rc)
    r.assert_host_untouched()
    assert cpu < 0.5 * 2.0, f"bridge used {cpu:.2f} s CPU in 2 s"
    assert not r.refusal_lines(), r.refusal_lines()


def _deep(parent: Path, name: str, levels: int) -> None:
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir(name, dir_fd=fd)
    cur = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    for _ in range(levels):
        os.mkdir("d", dir_fd=cur)
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=cur)
        os.close(cur)
        cur = nxt
    os.close(cur)


def test_deep_directory_left_at_the_status_name_for_the_next_task(tmp_path):
    """Task 1's guest leaves a 1000-level directory at boinc_status.msgpack; the bridge clears the name
    for task 2 (without recursion blowing up, without following anything) and the job finishes."""
    job = (
        "<job_desc>\n"
        "  <task><application>./guest.py</application><copy_app_to_VM>1</copy_app_to_VM>"
        "<command_line>leave_deep</command_line></task>\n"
        "  <task><application>./guest.py</application><copy_app_to_VM>1</copy_app_to_VM>"
        "<copy_file_from_VM>out</copy_file_from_VM><command_line>normal</command_line></task>\n"
        "</job_desc>\n"
    )
    r = Run(tmp_path, job=job)
    r.wait_phase1()
    r.go_on()
    # task 2 runs the same guest: wait for its phase 1 (phase1 is re-created), then let it go
    r.wait(lambda: (r.share / "old_status").exists() and not (r.share / P.STATUS_FILE).is_dir(), 60, "task 2")
    os.unlink(r.share / "phase1")
    os.unlink(r.share / "go_on")
    r.wait_phase1()
    r.go_on()
    rc = r.finish()
    r.assert_ok(rc)
    r.assert_host_untouched()
    assert "internal error" not in r.log()


def test_upload_names_naming_host_files_are_refused(tmp_path):
    """Upload requests (valid plain names, through the SDK) for job.xml, the bridge's state file,
    init_data.xml and an undeclared name: none is copied out of the share into the slot (only the
    result's declared files may be); one line per name however many requests; the SDK itself refuses
    '..', absolute, '/' and 10,000-character names; a path-like trickle variety is only text."""
    r = Run(tmp_path, args="upload")
    r.wait_phase1()
    r.go_on()
    rc = r.finish()
    r.assert_ok(rc)
    r.assert_host_untouched()
    assert not (r.slot / "undeclared.dat").exists()
    assert "<application>/bin/sh" not in (r.slot / STATE_FILE).read_text()
    lines = r.refusal_lines()
    for name in ("job.xml", "host_bridge_state.json", "init_data.xml", "undeclared.dat"):
        assert len([ln for ln in lines if repr(name) in ln]) == 1, (name, lines)
    assert len(lines) == 4, lines


def test_raw_status_files_with_hostile_names_are_refused_whole(tmp_path):
    """Status files written raw (not through the SDK) with protocol-invalid names: upload names with
    '..', an absolute path, NUL, non-UTF-8 bytes, 10,000 characters; a 10,000-character trickle
    variety. Each file is refused whole (one line per error category), no event from it is acted on,
    and the task finishes."""
    r = Run(tmp_path)
    r.wait_phase1()
    good = P.decode_status((r.share / P.STATUS_FILE).read_bytes())
    base = P.to_meaning(good)
    bad_files = []
    for i, name in enumerate(["../job.xml", "/etc/passwd", "a\0b", "x" * 10000, "NONUTF8X"]):
        m = dict(base, seq=base["seq"] + 1000 + i, events=[{"id": 900 + i, "type": "upload", "name": name}])
        data = msgpack.packb(m)
        if name == "NONUTF8X":
            data = data.replace(b"NONUTF8X", b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8")
        bad_files.append(data)
    ev = {"id": 999, "type": "trickle_up", "variety": "v" * 10000, "text": ""}
    m = dict(base, seq=base["seq"] + 2000, events=[ev])
    bad_files.append(msgpack.packb(m))
    for data in bad_files:
        with pytest.raises(P.ProtocolError):
            P.decode_status(data)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        for data in bad_files:
            _write_raw(r.share, data)
            time.sleep(0.01)
    r.go_on()
    rc = r.finish()
    r.assert_ok(rc)
    r.assert_host_untouched()
    lines = r.refusal_lines()
    assert 1 <= len(lines) <= 3 and all("bad status file" in ln for ln in lines), lines
    assert len({ln.split("bad status file", 1)[1][:12] for ln in lines}) == len(lines), lines
    assert not (r.slot / "passwd").exists()
    # the files rewritten ~200 times were logged once per category: the end says how often in all
    (summary,) = r.refusal_summary()
    pattern = r"refused (\d+) times in all: 'boinc_status.msgpack' \(bad status file \((\w+)\)\) x(\d+)"
    m = re.search(pattern, summary)
    assert m and int(m.group(1)) >= 100 and int(m.group(3)) > 1, summary


@pytest.mark.parametrize("mode", ["symout", "hardout"])
def test_output_turned_into_a_link_to_a_host_file_is_refused(tmp_path, mode):
    """The copy-back output is a symlink (or a hard link) to a host file: not copied, host file
    untouched, the task ends with EXIT_CHILD_FAILED and a message naming the file and the reason."""
    r = Run(tmp_path, args=f"{mode} SECRET")
    r.wait_phase1()
    r.go_on()
    rc = r.finish()
    assert rc == int(ExitCode.EXIT_CHILD_FAILED), r.log()
    r.assert_host_untouched(new_outputs=())
    assert not (tmp_path / "project" / "result_0_out").exists()
    log = r.log()
    assert "output file 'out' was refused" in log
    assert ("symlink" if mode == "symout" else "hard link") in log
    assert r.secret.read_text() == SECRET


def _bomb_files() -> list[bytes]:
    return [
        b"\xdd\xff\xff\xff\xff" + b"\x90" * 16,  # array32 declaring 4 G items
        b"\xdf\xff\xff\xff\xff" + b"\xa1a\x01" * 8,  # map32 declaring 4 G pairs
        b"\xdb\xff\xff\xff\xff" + b"a" * 64,  # str32 declaring 4 GiB
        b"\xc6\xff\xff\xff\xff" + b"a" * 64,  # bin32 declaring 4 GiB
        b"\x91" * 200_000 + b"\x90",  # 200,000 nested arrays
        b"\x81\xa1k" * 100_000 + b"\xc0",  # 100,000 nested maps
        b"\xc7\x10\x05" + b"\0" * 16,  # an ext type
        b"\xd6\xff" + b"\0" * 4,  # the timestamp ext (-1)
    ]


def _expensive_status(seq: int, fraction: float) -> bytes:
    """A VALID 1 MiB status file that is slow to decode: an unknown key holding ~a million empty
    arrays (decoding takes ~0.6 s here); unknown keys are ignored by the protocol."""
    st = P.Status(seq=seq, hb=seq, fraction_done=fraction)
    head = P.encode_status(st)
    # the top-level map: one more key ("pad") after the 16 known ones
    assert head[0] == 0xDE and head[1:3] == b"\x00\x10"
    n = P.MAX_FILE - len(head) - 16
    pad = b"\xa3pad" + b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n
    data = b"\xde\x00\x11" + head[3:] + pad
    assert len(data) <= P.MAX_FILE
    return data


def test_msgpack_bombs_and_an_expensive_status_file_rewritten_continuously(tmp_path):
    """Bombs (huge declared lengths, deep nesting, ext types) are refused with one line; then a valid but
    expensive 1 MiB status file (about a million empty containers) rewritten as fast as possible: the
    bridge rate-limits decoding (identical bytes are not decoded again; a new decode waits 20 x the last
    decode's duration), so its CPU stays bounded; the task finishes."""
    r = Run(tmp_path)
    r.wait_phase1()
    bombs = _bomb_files()
    for b in bombs:
        with pytest.raises(P.ProtocolError):
            P.decode_status(b)
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        for b in bombs:
            _write_raw(r.share, b)
            time.sleep(0.005)
    t0 = time.perf_counter()
    P.decode_status(_expensive_status(1, 0.5))
    decode_s = time.perf_counter() - t0
    files = [_expensive_status(10_000 + i, 0.5) for i in range(4)]
    proc = psutil.Process(r.bridge.proc.pid)
    seconds = 6.0
    c0 = sum(proc.cpu_times()[:2])
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        _write_raw(r.share, files[n % len(files)] if n % 2 else files[0])
        n += 1
        time.sleep(0.01)
    cpu = sum(proc.cpu_times()[:2]) - c0
    print(
        f"\nexpensive status: decode {decode_s:.2f} s each; {n} rewrites in {seconds:.0f} s; "
        f"bridge CPU {cpu / seconds * 100:.1f} % of a core"
    )
    r.go_on()
    rc = r.finish()
    r.assert_ok(rc)
    r.assert_host_untouched()
    lines = r.refusal_lines()
    assert len(lines) <= 2 and all("bad status file" in ln for ln in lines), lines
    assert cpu / seconds < 0.5, f"bridge CPU {cpu / seconds * 100:.0f} % of a core while the guest rewrote"


STORM = textwrap.dedent(
    """\
    import os, sys, time
    sys.path[:0] = [sys.argv[3]]
    from boinc_guest import protocol as P
    share, seconds = sys.argv[1], float(sys.argv[2])
    blobs = [P.encode_status(P.Status(seq=100000 + i, hb=i, fraction_done=0.5)) for i in range(1000)]
    tmp = os.path.join(share, ".storm.tmp")
    dst = os.path.join(share, P.STATUS_FILE)
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for b in blobs[:100]:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, blobs[n % 1000])
            os.close(fd)
            os.rename(tmp, dst)
            n += 1
    print(n)
    """
)


def test_rename_storm_keeps_the_bridge_cpu_bounded(tmp_path):
    """A guest rewriting the status file as fast as it can (aiming at 100,000 rewrites/s): the watcher
    coalesces hints, so the bridge's CPU stays far from a busy spin; the task finishes."""
    r = Run(tmp_path)
    r.wait_phase1()
    seconds = 4.0
    proc = psutil.Process(r.bridge.proc.pid)
    storm = subprocess.Popen(
        [sys.executable, "-c", STORM, str(r.share), str(seconds), str(ROOT / "guest_sdk" / "python")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        c0 = sum(proc.cpu_times()[:2])
        w0 = time.monotonic()
        out, _ = storm.communicate(timeout=seconds + 30)
        cpu = sum(proc.cpu_times()[:2]) - c0
        wall = time.monotonic() - w0
    finally:
        if storm.poll() is None:
            storm.send_signal(signal.SIGKILL)
            storm.wait(10)
    rewrites = int(out.strip())
    print(
        f"\nrename storm: {rewrites / seconds:.0f} rewrites/s for {seconds:.0f} s; "
        f"bridge CPU {cpu / wall * 100:.1f} % of a core"
    )
    r.go_on()
    rc = r.finish()
    r.assert_ok(rc)
    r.assert_host_untouched()
    assert rewrites > 1000
    assert cpu / wall < 0.5, f"bridge CPU {cpu / wall * 100:.0f} % of a core during the storm"
    assert not r.refusal_lines(), "\n".join(r.refusal_lines())


def test_no_process_left_behind():
    me = psutil.Process(os.getpid())
    left = [p for p in me.children(recursive=True) if alive(p.pid) and "guest.py" in " ".join(p.cmdline())]
    assert not left
    assert threading.active_count() < 20
