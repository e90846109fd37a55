"""ShareWatcher: hints from inotify, polling, automatic fallback, coalescing, rename storms, clean stop."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from host_bridge import watch as watch_mod
from host_bridge.watch import ShareWatcher, WatchError

STATUS = "boinc_status.msgpack"
TMP = ".boinc_status.msgpack.tmp"


@pytest.fixture
def share(tmp_path: Path) -> Path:
    d = tmp_path / "share"
    d.mkdir()
    return d


def publish(share: Path, data: bytes = b"status") -> None:
    """What the guest SDK does: write the temp file, fsync, rename it over the status file."""
    with open(share / TMP, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(share / TMP, share / STATUS)


def drain(w: ShareWatcher, quiet: float = 0.3) -> int:
    n = 0
    while w.wait(quiet):
        n += 1
    return n


@pytest.fixture
def no_thread_left() -> Iterator[None]:
    before = set(threading.enumerate())
    fds_before = len(os.listdir("/proc/self/fd"))
    yield
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_events_hint_on_rename(share: Path, no_thread_left: None) -> None:
    with ShareWatcher(share, [STATUS], mode="auto", check_interval=0.2) as w:
        assert w.mode_in_use == "events"
        assert not w.wait(0.2)
        publish(share)
        assert w.wait(5)
        drain(w)
        # unrelated names, including the temp file alone, give no hint
        (share / "other.txt").write_bytes(b"x")
        (share / TMP).write_bytes(b"not yet renamed")
        assert not w.wait(0.3)
        # removal of the watched name is a hint too
        os.unlink(share / STATUS)
        assert w.wait(5)
        drain(w)
        publish(share)
        assert w.wait(5)
        drain(w)
        # an in-place write (not in the inotify mask) is hinted by the periodic check, and is not taken
        # for lost events: the watcher stays on events
        (share / STATUS).write_bytes(b"in place")
        assert w.wait(5)
        (share / STATUS).write_bytes(b"in place, longer")
        assert w.wait(5)
        time.sleep(0.5)
        assert w.mode_in_use == "events"


def test_events_latency_is_not_half_a_second(share: Path) -> None:
    """watchdog's stock emitter held unpaired moves for 0.5 s; ours must not (generous bound)."""
    with ShareWatcher(share, [STATUS], mode="events") as w:
        worst = 0.0
        for i in range(20):
            with open(share / TMP, "wb") as f:
                f.write(b"%d" % i)
            t0 = time.monotonic()
            os.rename(share / TMP, share / STATUS)
            assert w.wait(5)
            worst = max(worst, time.monotonic() - t0)
            drain(w, 0.02)
        assert worst < 0.4, worst


def test_poll_mode(share: Path, no_thread_left: None) -> None:
    with ShareWatcher(share, [STATUS], mode="poll", poll_interval=0.05) as w:
        assert w.mode_in_use == "poll"
        assert not w.wait(0.2)
        publish(share)
        assert w.wait(5)
        assert not w.wait(0.2)
        (share / "other.txt").write_bytes(b"x")
        assert not w.wait(0.2)
        publish(share, b"second")  # same size: a new inode still counts
        assert w.wait(5)


def test_auto_falls_back_when_inotify_cannot_start(
    share: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_thread_left: None
) -> None:
    def no_inotify(folder: str) -> int:
        raise OSError(errno.EMFILE, "inotify_init1: Too many open files")

    monkeypatch.setattr(watch_mod, "_inotify_open", no_inotify)
    with (
        caplog.at_level(logging.WARNING, logger="host_bridge.watch"),
        ShareWatcher(share, [STATUS], poll_interval=0.05) as w,
    ):
        assert w.mode_in_use == "poll"
        publish(share)
        assert w.wait(5)
    assert any("polling" in r.getMessage() for r in caplog.records)
    w2 = ShareWatcher(share, [STATUS], mode="events")
    with pytest.raises(WatchError, match="max_user_instances"):
        w2.start()
    w2.stop()


def test_auto_falls_back_when_events_stop(
    share: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_thread_left: None
) -> None:
    """Events that are read but never delivered (a file system that stops reporting): the periodic check
    notices changes nobody announced and switches to polling, logged once."""

    def lose_events(self: watch_mod._ShareEmitter) -> bool:
        assert self._ifd is not None
        try:
            while os.read(self._ifd, 65536):
                pass
        except BlockingIOError:
            pass
        return False

    monkeypatch.setattr(watch_mod._ShareEmitter, "_read_events", lose_events)
    with (
        caplog.at_level(logging.WARNING, logger="host_bridge.watch"),
        ShareWatcher(share, [STATUS], poll_interval=0.05, check_interval=0.1) as w,
    ):
        assert w.mode_in_use == "events"
        deadline = time.monotonic() + 10
        i = 0
        while w.mode_in_use == "events" and time.monotonic() < deadline:
            publish(share, b"%d" % i)
            i += 1
            w.wait(0.15)
        assert w.mode_in_use == "poll"
        drain(w, 0.2)
        publish(share, b"after fallback")
        assert w.wait(5)
        for j in range(5):
            publish(share, b"more %d" % j)
            w.wait(0.2)
    switches = [r for r in caplog.records if "did not announce" in r.getMessage()]
    assert len(switches) == 1


def test_explicit_events_mode_never_switches(share: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_mod._ShareEmitter, "_read_events", lambda self: False)
    with ShareWatcher(share, [STATUS], mode="events", check_interval=0.05) as w:
        for i in range(4):
            publish(share, b"%d" % i)
            assert w.wait(5)  # the periodic check still hints
        assert w.mode_in_use == "events"


def test_one_pending_hint_at_most(share: Path) -> None:
    with ShareWatcher(share, [STATUS], mode="events") as w:
        for i in range(200):
            with open(share / TMP, "wb") as f:
                f.write(b"%d" % i)
            os.rename(share / TMP, share / STATUS)
        time.sleep(0.2)
        assert w.wait(1)
        # the 200 rewrites collapse into the pending hint, plus at most one for records read after it
        assert drain(w, 0.3) <= 1


STORM = textwrap.dedent(
    """
    import os, sys, time
    d = sys.argv[1]
    tmp, dst = os.path.join(d, ".boinc_status.msgpack.tmp"), os.path.join(d, "boinc_status.msgpack")
    end = time.monotonic() + float(sys.argv[2])
    n = 0
    while time.monotonic() < end:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b"x" * 64)
        os.close(fd)
        os.rename(tmp, dst)
        n += 1
    print(n)
    """
)


def _thread_cpu(w: ShareWatcher) -> float:
    ids = {t.native_id for t in w.threads}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def test_rename_storm_does_not_spin(share: Path, no_thread_left: None) -> None:
    with ShareWatcher(share, [STATUS], mode="events") as w:
        cpu0 = _thread_cpu(w)
        storm = subprocess.Popen(
            [sys.executable, "-c", STORM, str(share), "2.0"], stdout=subprocess.PIPE, text=True
        )
        hints = 0
        try:
            t0 = time.monotonic()
            while storm.poll() is None and time.monotonic() - t0 < 10:
                if w.wait(0.2):
                    hints += 1
            out, _ = storm.communicate(timeout=10)
        finally:
            storm.kill()
            storm.wait(timeout=10)
        elapsed = time.monotonic() - t0
        cpu = _thread_cpu(w) - cpu0
        rewrites = int(out)
        print(
            f"storm: {rewrites} rewrites, {hints} hints, watcher threads {cpu:.3f} s CPU in {elapsed:.1f} s"
        )
        assert rewrites > 1000  # it really was a storm
        assert hints <= 50 * elapsed + 32 + 5  # token bucket: max_hint_rate per s + burst (defaults)
        assert cpu < 0.35 * elapsed, cpu  # generous: far below one busy core
        assert w.mode_in_use == "events"


def test_api_errors(share: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        ShareWatcher(share, [STATUS], mode="inotify")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="plain file name"):
        ShareWatcher(share, ["../x"])
    with pytest.raises(ValueError, match="at least one"):
        ShareWatcher(share, [])
    w = ShareWatcher(share, [STATUS])
    with pytest.raises(RuntimeError):
        w.wait(0)
    with pytest.raises(WatchError, match="cannot watch"):
        ShareWatcher(share / "missing", [STATUS]).start()
    w.stop()  # stop before start is harmless


def test_stop_is_idempotent_and_prompt(share: Path, no_thread_left: None) -> None:
    for mode in ("events", "poll"):
        w = ShareWatcher(share, [STATUS], mode=mode, poll_interval=5, check_interval=5)  # type: ignore[arg-type]
        w.start()
        threads = w.threads
        assert len(threads) == 2 and all(t.is_alive() for t in threads)
        t0 = time.monotonic()
        w.stop()
        w.stop()
        assert time.monotonic() - t0 < 2
        assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("mode", ["events", "poll"])
def test_wake_on_a_pidfd_wakes_wait_when_the_process_ends(share: Path, mode: str) -> None:
    """The task loop sleeps in wait(); a task without the SDK writes no status file, so its exit must
    wake the loop through its pidfd (host_bridge.backends.local.LocalBackend.exit_fd): once, at once."""
    proc = subprocess.Popen(["sleep", "0.3"])
    fd = os.pidfd_open(proc.pid)
    try:
        with ShareWatcher(share, ["boinc_status.msgpack"], mode=mode) as w:
            w.wake_on(fd)
            t0 = time.monotonic()
            assert w.wait(5.0) is True
            assert 0.25 <= time.monotonic() - t0 < 1.0
            assert w.wait(0.3) is False  # a pidfd stays readable: one wake-up, not a spin
    finally:
        proc.wait(5)
        os.close(fd)
