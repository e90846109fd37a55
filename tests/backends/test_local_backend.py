"""The local backend against real process trees (shell scripts spawning children that burn CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from host_bridge.backends.base import Backend, BackendError, TaskSpec, VMState
from host_bridge.backends.local import OWNER_ENV, LocalBackend
from tests.support.backends import Made
from tests.support.paths import ROOT
from tests.support.wait import wait_for

TREE_SH = """\
#!/bin/sh
# main program -> child -> grandchild, all three burn CPU
sh -c 'sh -c "while :; do :; done" & while :; do :; done' &
while :; do :; done
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tag() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def backends() -> Iterator[Made[LocalBackend]]:
    made: Made[LocalBackend] = Made()
    yield made
    made.close()


def make(backends: Made[LocalBackend], share: Path, argv: tuple[str, ...], **kw: object) -> LocalBackend:
    # cpu_interval 0: every poll re-measures the tree (the default caches it for 0.5 s)
    b = LocalBackend(grace=kw.pop("grace", 1.0), cpu_interval=kw.pop("cpu_interval", 0.0))  # type: ignore[arg-type]
    kw.setdefault("owner_tag", tag())
    b.create(TaskSpec(name="t", argv=argv, share=share, **kw), backends.open_share(share))  # type: ignore[arg-type]
    backends.append(b)
    return b


def test_is_a_backend() -> None:
    assert isinstance(LocalBackend(), Backend)


def test_tree_pause_resume_poweroff(share: Path, backends: Made[LocalBackend]) -> None:
    script = share / "tree.sh"
    script.write_text(TREE_SH)
    script.chmod(0o755)
    b = make(backends, share, ("tree.sh",))
    assert b.poll().state is VMState.CREATED
    b.start()
    procs = wait_for(lambda: len(b.processes()) >= 3 and b.processes(), what="3 processes")
    pids = [p.pid for p in procs]  # type: ignore[union-attr]
    s1 = b.poll()
    assert s1.state is VMState.RUNNING
    time.sleep(0.4)
    s2 = b.poll()
    assert s2.cpu_time > s1.cpu_time + 0.05, (s1, s2)

    b.pause()
    b.pause()  # idempotent
    for pid in pids:
        assert psutil.Process(pid).status() == psutil.STATUS_STOPPED, pid
    p1 = b.poll()
    assert p1.state is VMState.PAUSED
    time.sleep(0.4)
    p2 = b.poll()
    assert p2.cpu_time - p1.cpu_time < 0.02, (p1, p2)

    b.resume()
    b.resume()
    for pid in pids:
        assert psutil.Process(pid).status() != psutil.STATUS_STOPPED
    time.sleep(0.3)
    r = b.poll()
    assert r.state is VMState.RUNNING and r.cpu_time > p2.cpu_time + 0.05

    b.pause()  # poweroff from the paused state
    b.poweroff()
    for pid in pids:
        assert gone(pid), pid
    end = b.poll()
    assert end.state is VMState.EXITED and end.exit_code == -signal.SIGTERM
    assert end.cpu_time >= r.cpu_time
    b.poweroff()  # idempotent
    assert b.poll() == end


def test_sigterm_ignored_then_killed(share: Path, backends: Made[LocalBackend]) -> None:
    b = make(backends, share, ("/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"), grace=0.3)
    b.start()
    pid = b.pid
    assert pid is not None
    time.sleep(0.1)
    t0 = time.monotonic()
    b.poweroff()
    assert time.monotonic() - t0 < 3
    assert gone(pid)
    assert b.poll().exit_code == -signal.SIGKILL


@pytest.mark.parametrize(
    ("cmd", "code"), [("exit 0", 0), ("exit 3", 3), ("kill -9 $$", -9), ("kill -USR1 $$", -signal.SIGUSR1)]
)
def test_exit_codes(share: Path, backends: Made[LocalBackend], cmd: str, code: int) -> None:
    b = make(backends, share, ("/bin/sh", "-c", cmd))
    b.start()
    st = wait_for(lambda: (s := b.poll()).state is VMState.EXITED and s, what="exit")
    assert st.exit_code == code  # type: ignore[union-attr]


def test_stdio_env_and_append_on_restart(share: Path, backends: Made[LocalBackend]) -> None:
    (share / "in.txt").write_text("from stdin\n")
    owner = tag()
    b = make(
        backends,
        share,
        ("/bin/sh", "-c", 'cat; echo "dir=$BOINC_GUEST_DIR owner=$BOINC_BRIDGE_OWNER my=$MYVAR"; echo e >&2'),
        stdin="in.txt",
        stdout="out.txt",
        stderr="err.txt",
        env=(("MYVAR", "hello"),),
        owner_tag=owner,
    )
    for _ in range(2):
        b.start()
        wait_for(lambda: b.poll().state is VMState.EXITED, what="exit")
    line = f"from stdin\ndir={share} owner={owner} my=hello\n"
    assert (share / "out.txt").read_text() == line * 2
    assert (share / "err.txt").read_text() == "e\n" * 2


def test_cwd_is_share_and_priority(share: Path, backends: Made[LocalBackend]) -> None:
    b = make(backends, share, ("/bin/sh", "-c", "pwd > cwd.txt; sleep 5"), priority=7)
    b.start()
    wait_for(lambda: (share / "cwd.txt").exists(), what="cwd.txt")
    assert (share / "cwd.txt").read_text().strip() == str(share)
    assert psutil.Process(b.pid).nice() == 7  # type: ignore[arg-type]
    b.poweroff()


def test_missing_and_non_executable_program(share: Path, backends: Made[LocalBackend]) -> None:
    b = make(backends, share, ("no_such_program_xyz",))
    with pytest.raises(BackendError, match=r"no_such_program_xyz.*not found"):
        b.start()
    # a .py program for the bridge's own Python: the same kind of error (the interpreter said
    # "can't open file" and the task failed with the interpreter's status)
    bpy = make(backends, share, (sys.executable, "missing.py", "arg"))
    with pytest.raises(BackendError, match=r"Python program 'missing.py' not found"):
        bpy.start()
    (share / "app").write_text("#!/bin/sh\n")
    b2 = make(backends, share, ("app",))
    with pytest.raises(BackendError, match=r"not an executable.*chmod \+x"):
        b2.start()
    b3 = make(backends, share, ("/bin/true",), stdin="absent.txt")
    with pytest.raises(BackendError, match=r"absent\.txt"):
        b3.start()


def test_stdout_symlink_refused(share: Path, tmp_path: Path, backends: Made[LocalBackend]) -> None:
    host = tmp_path / "host.txt"
    host.write_text("keep\n")
    (share / "out.txt").symlink_to(host)
    b = make(backends, share, ("/bin/echo", "x"), stdout="out.txt")
    with pytest.raises(BackendError, match="symbolic link"):
        b.start()
    assert host.read_text() == "keep\n"


def test_uses_the_share_it_is_given_and_leaves_it_open(share: Path, backends: Made[LocalBackend]) -> None:
    """One share per task: the backend writes the task's stdout through the runtime's share and never
    closes it (the runtime does, after cleanup)."""
    b = make(backends, share, ("/bin/echo", "through the share"), stdout="out.txt")
    given = backends.shares[-1]
    b.start()
    wait_for(lambda: b.poll().state is VMState.EXITED, what="exit")
    b.cleanup()
    assert given.read("out.txt", 100) == b"through the share\n"  # still open after cleanup


def test_console_is_direct() -> None:
    ends = LocalBackend().console()
    assert ends.direct and ends.host_port is None and ends.remote_desktop_port is None


BRIDGE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from host_bridge.backends.base import TaskSpec
    from host_bridge.backends.local import LocalBackend
    from host_bridge.share import Share
    share = Path({share!r})
    b = LocalBackend()
    argv = ("/bin/sh", "-c", "sleep 60 & echo $! > gc.pid; echo $$ > main.pid; wait")
    b.create(TaskSpec(name="t", argv=argv, share=share, owner_tag={tag!r}), Share(share))
    b.start()
    print("started", flush=True)
    time.sleep(60)
    """
)


def test_pdeathsig_and_restore(share: Path, backends: Made[LocalBackend]) -> None:
    """A bridge killed with SIGKILL: its direct child dies (PDEATHSIG); the orphaned grandchild is
    found and killed by restore() of the next bridge with the same owner tag; another tag's process and
    an untagged one are left alone."""
    owner, other = tag(), tag()
    bystander = subprocess.Popen(["sleep", "30"], env={**os.environ, OWNER_ENV: other})
    untagged = subprocess.Popen(["sleep", "30"])
    bridge = subprocess.Popen(
        [sys.executable, "-c", BRIDGE.format(root=str(ROOT), share=str(share), tag=owner)],
        stdout=subprocess.PIPE,
    )
    try:
        assert bridge.stdout is not None
        assert bridge.stdout.readline().strip() == b"started"
        wait_for(lambda: (share / "gc.pid").exists() and (share / "main.pid").exists(), what="pid files")
        main_pid = int(wait_for(lambda: (share / "main.pid").read_text().strip(), what="main pid"))  # type: ignore[arg-type]
        gc_pid = int(wait_for(lambda: (share / "gc.pid").read_text().strip(), what="gc pid"))  # type: ignore[arg-type]
        assert not gone(main_pid) and not gone(gc_pid)
        bridge.kill()
        bridge.wait(timeout=10)
        wait_for(lambda: gone(main_pid), timeout=5, what="direct child killed by PDEATHSIG")
        assert not gone(gc_pid)  # the grandchild is a leftover now

        b = make(backends, share, ("/bin/true",), owner_tag=owner)
        assert b.restore() is False
        wait_for(lambda: gone(gc_pid), timeout=5, what="leftover killed by restore")
        assert bystander.poll() is None and untagged.poll() is None
    finally:
        for p in (bridge, bystander, untagged):
            p.kill()
            p.wait(timeout=10)


def test_poweroff_kills_escaped_daemon(share: Path, backends: Made[LocalBackend]) -> None:
    """A double fork with setsid leaves both the tree and the group: found by its owner tag."""
    b = make(backends, share, ("/bin/sh", "-c", "setsid -f sh -c 'echo $$ > d.pid; exec sleep 30'"))
    b.start()
    wait_for(lambda: (share / "d.pid").exists() and (share / "d.pid").read_text().strip(), what="d.pid")
    daemon = int((share / "d.pid").read_text())
    wait_for(lambda: b.poll().state is VMState.EXITED, what="main exit")
    b.poweroff()
    wait_for(lambda: gone(daemon), timeout=5, what="daemon killed")


def test_poll_caches_the_tree_cpu(share: Path, backends: Made[LocalBackend]) -> None:
    """poll() is called every tick: the exit check is cheap, the tree's CPU is re-measured at most
    every cpu_interval seconds, and an exit is seen at once."""
    b = make(backends, share, ("sh", "-c", "while :; do :; done"), cpu_interval=0.5)
    b.start()
    s1 = b.poll()
    time.sleep(0.2)
    assert b.poll().cpu_time == s1.cpu_time  # cached
    time.sleep(0.4)
    assert b.poll().cpu_time > s1.cpu_time  # re-measured
    os.kill(b.pid, signal.SIGKILL)
    wait_for(lambda: b.poll().state is VMState.EXITED, what="exit seen")


def test_new_descendants_are_found_every_discover_interval(share: Path, backends: Made[LocalBackend]) -> None:
    """Known processes are measured at every poll; the children lists (the costly /proc walk) are read
    only every discover_interval seconds, so a grandchild started later counts from the next walk."""
    script = "sleep 0.3; sh -c 'while :; do :; done' & wait"
    b = LocalBackend(grace=1.0, cpu_interval=0.0, discover_interval=1.5)
    b.create(
        TaskSpec(name="t", argv=("sh", "-c", script), share=share, owner_tag=tag()),
        backends.open_share(share),
    )
    backends.append(b)
    b.start()
    first = b.poll()  # walks: only the shell so far
    time.sleep(0.8)
    before_walk = b.poll().cpu_time  # the busy grandchild exists but is not known yet
    assert before_walk - first.cpu_time < 0.1, (first, before_walk)
    time.sleep(1.0)
    after_walk = b.poll().cpu_time  # 1.8 s after the first walk: found, its CPU counted
    assert after_walk > before_walk + 0.3, (before_walk, after_walk)
    assert len(b.processes()) >= 2


def _stat_fds() -> list[str]:
    """This process's open /proc/PID/stat files."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/proc/") and target.endswith("/stat"):
            out.append(target)
    return out


def test_stat_files_kept_open_per_live_process_and_closed(share: Path, backends: Made[LocalBackend]) -> None:
    """The tree's CPU is read through one kept-open /proc/PID/stat per process (one pread a poll): a
    process that ends has its file closed at the next poll, and cleanup closes the rest."""
    before = set(_stat_fds())
    script = "sh -c 'sleep 2' & while :; do :; done"
    # discover_interval 0: every poll walks the children lists (the default looks every 5 s, so the
    # child could be found only after it ended)
    b = LocalBackend(grace=1.0, cpu_interval=0.0, discover_interval=0.0)
    b.create(
        TaskSpec(name="t", argv=("sh", "-c", script), share=share, owner_tag=tag()),
        backends.open_share(share),
    )
    backends.append(b)
    b.start()
    wait_for(lambda: b.poll() is not None and len(set(_stat_fds()) - before) >= 2, what="two files open")
    busy = b.poll().cpu_time
    time.sleep(0.3)
    assert b.poll().cpu_time > busy  # re-read through the kept file: the figure moves
    wait_for(
        lambda: b.poll() is not None and len(set(_stat_fds()) - before) == 1, what="ended child's file closed"
    )
    b.cleanup()
    assert set(_stat_fds()) - before == set()


def test_cleanup_after_poweroff_does_not_scan_again(
    share: Path, backends: Made[LocalBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner-tag sweep (a scan of every process, ~10 ms) runs once per stop: cleanup() after
    poweroff() has nothing left to find; a new start() sweeps again at its own stop."""
    import host_bridge.backends.local as local

    calls: list[str] = []
    real = local.find_owned
    monkeypatch.setattr(local, "find_owned", lambda tag, **kw: calls.append(tag) or real(tag, **kw))
    b = make(backends, share, ("sleep", "30"))
    b.start()
    b.poweroff()
    assert len(calls) == 1 and b.poll().state is VMState.EXITED
    b.cleanup()
    b.poweroff()
    assert len(calls) == 1
    b2 = make(backends, share, ("sleep", "30"))
    b2.start()
    b2.cleanup()
    assert len(calls) == 2
