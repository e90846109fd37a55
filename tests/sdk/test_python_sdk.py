"""The Python guest SDK: host-simulation property test, standalone mode, finding the share, and real
child processes for the background thread, quit / abort and boinc_finish."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import boinc_guest as bg
import pytest
from boinc_guest import _runtime, testing
from boinc_guest import protocol as P
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.paths import ROOT
from tests.support.wait import wait_for

SDK_PATH = ROOT / "guest_sdk" / "python"


@pytest.fixture
def sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Test-mode SDK with a fresh share at tmp_path/share."""
    share = tmp_path / "share"
    share.mkdir()
    monkeypatch.setenv("BOINC_GUEST_DIR", str(share))
    testing.reset()
    testing.enable()
    yield share
    testing.reset()
    testing.disable()


def read_status(share: Path) -> P.Status:
    return P.decode_status((share / P.STATUS_FILE).read_bytes())


def write_control(share: Path, control: P.Control) -> None:
    P.write_atomic(share, P.CONTROL_FILE, P.encode_control(control))


# --------------------------------------------------------------------------------------------------
# Host simulation: any sequence of calls gives the last state and every event exactly once, in order


class Host:
    """What the bridge does: read the file, process events with id > last seen, sometimes ack."""

    def __init__(self, share: Path) -> None:
        self.share = share
        self.last_id = 0
        self.delivered: list[P.Event] = []
        self.ack = 0
        self.seq = 0
        self.control_seq = 0

    def read(self) -> P.Status:
        status = read_status(self.share)
        assert status.seq >= self.seq, "seq never goes back"
        self.seq = status.seq
        ids = [e.id for e in status.events]
        assert ids == sorted(set(ids))
        for ev in status.events:
            if ev.id > self.last_id:
                self.delivered.append(ev)
                self.last_id = ev.id
        return status

    def send_ack(self, upto_all: bool) -> None:
        self.ack = self.last_id if upto_all else max(self.ack, self.last_id - 1)
        self.control_seq += 1
        write_control(self.share, P.Control(seq=self.control_seq, ack=self.ack))
        testing.reload_control()


_call = st.one_of(
    st.tuples(st.just("fraction"), st.floats(allow_nan=True, allow_infinity=True)),
    st.tuples(st.just("trickle"), st.text(min_size=0, max_size=5), st.text(max_size=20)),
    st.tuples(st.just("upload"), st.sampled_from(["out", "a/b", "", "..", "r.dat", "ü"])),
    st.tuples(st.just("finish"), st.integers(-300, 300), st.text(max_size=10)),
    st.tuples(st.just("tempexit"), st.floats(-10, 1e6), st.text(max_size=10)),
    st.tuples(st.just("checkpoint")),
    st.tuples(st.just("begin_cs")),
    st.tuples(st.just("end_cs")),
    st.tuples(st.just("need_net")),
    st.tuples(st.just("net_done")),
    st.tuples(st.just("flush")),
    st.tuples(st.just("heartbeat")),
    st.tuples(st.just("host_read")),
    st.tuples(st.just("host_ack"), st.booleans()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(_call, max_size=40), burst=st.integers(0, 70))
def test_any_call_sequence_delivers_state_and_events_once_in_order(
    sdk: Path, calls: list, burst: int
) -> None:
    testing.reset()
    testing.enable()
    for f in sdk.iterdir():
        f.unlink()
    assert bg.boinc_init() == 0
    host = Host(sdk)
    sent: list[tuple] = []
    fraction, checkpoints, critical, network = 0.0, 0, 0, False
    # a burst of trickle-ups first, to hit the 64-event bound sometimes
    for i in range(burst):
        rc = bg.boinc_send_trickle_up("burst", str(i))
        assert rc in (0, P.ERR_BUFFER_OVERFLOW)
        if rc == 0:
            sent.append(("trickle_up", "burst", str(i)))
    for call in calls:
        op = call[0]
        if op == "fraction":
            bg.boinc_fraction_done(call[1])
            if call[1] == call[1]:
                fraction = min(1.0, max(0.0, call[1]))
        elif op == "trickle":
            rc = bg.boinc_send_trickle_up(call[1], call[2])
            if rc == 0:
                sent.append(("trickle_up", P.clean_text(call[1]), P.clean_text(call[2])))
            else:
                assert rc in (P.ERR_NULL, P.ERR_BUFFER_OVERFLOW)
                assert rc != P.ERR_NULL or call[1] == ""
        elif op == "upload":
            rc = bg.boinc_upload_file(call[1])
            if rc == 0:
                sent.append(("upload", call[1]))
            else:
                assert rc in (P.ERR_NULL, P.ERR_INVALID_PARAM, P.ERR_BUFFER_OVERFLOW)
        elif op == "finish":
            rc = bg.boinc_finish_message(call[1], call[2], False)
            if rc == 0:
                sent.append(("finish", call[1], P.truncate_utf8(call[2], 4096)))
        elif op == "tempexit":
            rc = bg.boinc_temporary_exit(call[1], call[2])
            if rc == 0:
                sent.append(("temporary_exit", max(0.0, call[1])))
        elif op == "checkpoint":
            assert bg.boinc_checkpoint_completed() == 0
            checkpoints += 1
            critical = max(0, critical - 1)
        elif op == "begin_cs":
            bg.boinc_begin_critical_section()
            critical += 1
        elif op == "end_cs":
            bg.boinc_end_critical_section()
            critical = max(0, critical - 1)
        elif op == "need_net":
            bg.boinc_need_network()
            network = True
        elif op == "net_done":
            bg.boinc_network_done()
            network = False
        elif op == "flush":
            testing.flush()
        elif op == "heartbeat":
            testing.heartbeat()
        elif op == "host_read":
            host.read()
        elif op == "host_ack":
            host.read()
            host.send_ack(call[1])
    testing.flush()
    final = host.read()
    assert final.fraction_done == fraction
    assert final.checkpoint_count == checkpoints
    assert final.critical_section == (critical > 0)
    assert final.want_network == network

    def key(ev: P.Event) -> tuple:
        if isinstance(ev, P.TrickleUp):
            return ("trickle_up", ev.variety, ev.text)
        if isinstance(ev, P.UploadRequest):
            return ("upload", ev.name)
        if isinstance(ev, P.Finish):
            return ("finish", ev.status, ev.message)
        return ("temporary_exit", ev.delay)

    assert [key(e) for e in host.delivered] == sent
    ids = [e.id for e in host.delivered]
    assert ids == list(range(1, len(ids) + 1)), "ids are consecutive from 1, never reused"


def test_status_file_only_changes_on_writes(sdk: Path) -> None:
    bg.boinc_init()
    before = (sdk / P.STATUS_FILE).read_bytes()
    for i in range(1000):
        bg.boinc_fraction_done(i / 1000)
    bg.boinc_begin_critical_section()
    bg.boinc_ops_cumulative(1.0, 2.0)
    assert (sdk / P.STATUS_FILE).read_bytes() == before, "cheap calls do no I/O"
    assert _runtime._rt.dirty
    testing.flush()
    s = read_status(sdk)
    assert s.fraction_done == 0.999 and s.critical_section and s.seq == 2


def test_checkpoint_timing_and_critical_section(sdk: Path) -> None:
    write_control(sdk, P.Control(init_data=P.InitData(checkpoint_period=60.0)))
    bg.boinc_init()
    testing.set_times(5.0, 59.0)
    assert bg.boinc_time_to_checkpoint() == 0
    testing.set_times(6.0, 60.0)
    assert bg.boinc_time_to_checkpoint() == 1
    assert bg.boinc_time_to_checkpoint() == 1
    assert _runtime._rt.critical == 1, "entered once, like BOINC, not once per call"
    assert bg.boinc_checkpoint_completed() == 0
    s = read_status(sdk)
    assert (s.checkpoint_count, s.checkpoint_cpu_time, s.critical_section) == (1, 6.0, False)
    assert bg.boinc_time_to_checkpoint() == 0
    bg.boinc_set_min_checkpoint_period(100.0)
    testing.set_times(7.0, 150.0)
    assert bg.boinc_time_to_checkpoint() == 0
    testing.set_times(7.0, 160.0)
    assert bg.time_to_checkpoint() is True


def test_init_data_status_and_job_totals(sdk: Path) -> None:
    init = P.InitData(app_name="worker", wu_cpu_time=100.0, starting_elapsed_time=200.0, nthreads=2)
    write_control(sdk, P.Control(seq=1, suspended=True, network_suspended=True, init_data=init))
    bg.boinc_init()
    testing.set_times(1.5, 2.5)
    assert bg.boinc_get_init_data() == init
    assert bg.boinc_wu_cpu_time() == 101.5 and bg.boinc_elapsed_time() == 202.5
    st_ = bg.boinc_get_status()
    assert (st_.suspended, st_.quit_request, st_.abort_request, st_.network_suspended) == (1, 0, 0, 1)
    assert bg.boinc_network_poll() == 1
    write_control(sdk, P.Control(seq=2, quit=True, abort=True, init_data=init))
    assert testing.reload_control()
    assert bg.get_status().quit_request == 1 and bg.get_status().abort_request == 1


def test_bad_control_file_keeps_the_last_good_one(sdk: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_control(sdk, P.Control(seq=1, init_data=P.InitData(app_name="good")))
    bg.boinc_init()
    (sdk / P.CONTROL_FILE).write_bytes(b"\x81\xa1v\x02")
    assert testing.reload_control() is False
    assert bg.boinc_get_init_data().app_name == "good"
    assert any("unknown schema version" in r.getMessage() for r in caplog.records)


def test_pythonic_names(sdk: Path) -> None:
    bg.init()
    bg.fraction_done(0.5)
    assert bg.get_fraction_done() == 0.5
    with bg.critical_section():
        assert _runtime._rt.critical == 1
    assert _runtime._rt.critical == 0
    bg.send_trickle_up("v", "t")
    with pytest.raises(bg.BoincError) as info:
        bg.upload_file("../etc/passwd")
    assert info.value.code == P.ERR_INVALID_PARAM
    bg.checkpoint_completed()
    assert read_status(sdk).checkpoint_count == 1
    assert bg.is_standalone() is False


def test_write_failure_returns_err_write(sdk: Path) -> None:
    bg.boinc_init()
    # a directory where the temp file goes makes every write fail
    (sdk / f".{P.STATUS_FILE}.tmp").mkdir()
    assert bg.boinc_checkpoint_completed() == P.ERR_WRITE
    assert bg.boinc_send_trickle_up("v", "t") == P.ERR_WRITE
    assert _runtime._rt.events == [], "a failed event call queues nothing"
    (sdk / f".{P.STATUS_FILE}.tmp").rmdir()
    assert bg.boinc_send_trickle_up("v", "t") == 0
    assert [e.id for e in read_status(sdk).events] == [1]


# --------------------------------------------------------------------------------------------------
# Standalone mode, finding the share, resolve_filename


def test_standalone_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOINC_GUEST_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    testing.reset()
    testing.enable()
    try:
        assert bg.boinc_is_standalone() == 1
        assert bg.boinc_init() == 0
        assert bg.boinc_is_standalone() == 1
        bg.boinc_fraction_done(0.5)
        assert bg.boinc_send_trickle_up("v", "t") == 0
        assert bg.boinc_send_trickle_up("", "t") == P.ERR_NULL, "arguments are still checked"
        assert bg.boinc_upload_file("x") == 0
        assert bg.boinc_upload_status("x") == P.ERR_NOT_FOUND
        assert bg.boinc_checkpoint_completed() == 0
        assert bg.boinc_finish(0) == 0  # test mode: returns
        assert bg.boinc_get_init_data() == P.InitData()
        assert bg.boinc_time_to_checkpoint() == 0
        testing.set_times(1.0, 300.0)
        assert bg.boinc_time_to_checkpoint() == 1, "default checkpoint period 300 s"
        assert bg.boinc_resolve_filename("in") == "in"
        assert os.listdir(tmp_path) == [], "standalone writes nothing"
    finally:
        testing.reset()
        testing.disable()


def test_find_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    share = tmp_path / "s"
    share.mkdir()
    monkeypatch.setenv("BOINC_GUEST_DIR", str(share))
    assert _runtime.find_share() == str(share)
    monkeypatch.setenv("BOINC_GUEST_DIR", str(tmp_path / "missing"))
    assert _runtime.find_share() is None
    err = capsys.readouterr().err
    assert "BOINC_GUEST_DIR" in err and "missing" in err and "standalone" in err
    # empty variable: falls through to the current directory
    monkeypatch.setenv("BOINC_GUEST_DIR", "")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    mounts = [m for m in _runtime.MOUNT_POINTS if os.path.isfile(os.path.join(m, P.CONTROL_FILE))]
    assert _runtime.find_share() == (mounts[0] if mounts else None)
    write_control(cwd, P.Control())
    assert _runtime.find_share() == str(cwd)
    monkeypatch.setattr(_runtime, "MOUNT_POINTS", (str(share),))
    (cwd / P.CONTROL_FILE).unlink()
    write_control(share, P.Control())
    assert _runtime.find_share() == str(share), "a mount point holding the control file"


def test_resolve_filename_soft_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").write_text("<soft_link>../../projects/p/in_1</soft_link>\n")
    (tmp_path / "plain").write_text("data\n")
    os.symlink("plain", tmp_path / "sym")
    assert bg.boinc_resolve_filename("in") == "../../projects/p/in_1"
    assert bg.boinc_resolve_filename("plain") == "plain"
    assert bg.boinc_resolve_filename("sym") == "sym"
    assert bg.boinc_resolve_filename("absent") == "absent"
    with bg.boinc_fopen("plain") as f:
        assert f.read() == "data\n"


# --------------------------------------------------------------------------------------------------
# Real processes: background thread, atexit flush, quit / abort, boinc_finish


def run_child(code: str, share: Path, timeout: float = 30.0, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, BOINC_GUEST_DIR=str(share), PYTHONPATH=str(SDK_PATH))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def start_child(code: str, share: Path) -> subprocess.Popen:
    env = dict(os.environ, BOINC_GUEST_DIR=str(share), PYTHONPATH=str(SDK_PATH))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_background_thread_coalesces_and_flushes_at_exit(tmp_path: Path) -> None:
    code = """
        import time
        from boinc_guest import *
        boinc_init()
        end = time.monotonic() + 1.5
        n = 0
        while time.monotonic() < end:
            for _ in range(1000):
                boinc_fraction_done(0.5)
                n += 1
        boinc_fraction_done(0.875)   # the last value: only the atexit flush can write it
        print(n)
    """
    r = run_child(code, tmp_path)
    assert r.returncode == 0, r.stderr
    calls = int(r.stdout)
    s = read_status(tmp_path)
    assert s.fraction_done == 0.875
    assert calls >= 100_000
    # 1 write at init, progress-only changes at most once a second (the first at once, the next with
    # the heartbeat at ~1 s), and the atexit flush: ~4 writes in ~1.5 s, not one per 0.1 s tick (16)
    assert 3 <= s.seq <= 6, s.seq
    assert s.hb >= 1, "the heartbeat advanced"
    assert s.cpu_time > 0.5 and s.elapsed_time > 1.0


def _quit_child(share: Path, control: P.Control, body: str = "") -> subprocess.Popen:
    code = f"""
        import sys, time
        from boinc_guest import *
        boinc_init()
        boinc_fraction_done(0.3)
        print("ready", flush=True)
        {body}
        time.sleep(20)
        print("not stopped")
    """
    proc = start_child(code, share)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    write_control(share, control)
    return proc


@pytest.mark.parametrize(("flag", "code"), [("quit", 0), ("abort", 194)])
def test_quit_and_abort_end_the_process(tmp_path: Path, flag: str, code: int) -> None:
    proc = _quit_child(tmp_path, P.Control(seq=1, **{flag: True}))
    try:
        out, _err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code
    assert "not stopped" not in out
    assert read_status(tmp_path).fraction_done == 0.3, "state flushed before exiting"


def test_quit_waits_for_the_critical_section(tmp_path: Path) -> None:
    body = """
        boinc_begin_critical_section()
        time.sleep(1.0)
        print("left the critical section", flush=True)
        boinc_end_critical_section()
    """
    proc = _quit_child(tmp_path, P.Control(seq=1, quit=True), textwrap.indent(textwrap.dedent(body), " " * 8))
    try:
        out, _err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert "left the critical section" in out and "not stopped" not in out


def test_direct_process_action_0_leaves_it_to_the_app(tmp_path: Path) -> None:
    code = """
        import time
        from boinc_guest import *
        boinc_init_options(BoincOptions(direct_process_action=0))
        print("ready", flush=True)
        end = time.monotonic() + 10
        while time.monotonic() < end and not boinc_get_status().abort_request:
            time.sleep(0.05)
        print("saw abort", flush=True)
        boinc_finish(7)
    """
    proc = start_child(code, tmp_path)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        write_control(tmp_path, P.Control(seq=1, abort=True))
        out, _err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert "saw abort" in out and proc.returncode == 7
    events = read_status(tmp_path).events
    assert events == (P.Finish(1, 7, "", False),)


def test_finish_from_main_thread_runs_finally_and_exits_with_status(tmp_path: Path) -> None:
    code = """
        from boinc_guest import *
        boinc_init()
        try:
            with open("out.txt", "w") as f:
                f.write("result")
                boinc_finish_message(3, "bad input", True)
            print("returned")
        finally:
            print("finally ran")
    """
    r = run_child(code, tmp_path, cwd=tmp_path)
    assert r.returncode == 3
    assert "returned" not in r.stdout and "finally ran" in r.stdout
    assert (tmp_path / "out.txt").read_text() == "result", "open files are flushed"
    assert read_status(tmp_path).events == (P.Finish(1, 3, "bad input", True),)


def test_finish_and_temporary_exit_from_a_thread(tmp_path: Path) -> None:
    code = """
        import threading, time
        from boinc_guest import *
        boinc_init()
        threading.Thread(target=lambda: boinc_finish(5)).start()
        time.sleep(10)
    """
    r = run_child(code, tmp_path)
    assert r.returncode == 5
    assert read_status(tmp_path).events == (P.Finish(1, 5, "", False),)
    code2 = """
        from boinc_guest import *
        boinc_init()
        boinc_temporary_exit(120, "waiting", True)
    """
    r2 = run_child(code2, tmp_path)
    assert r2.returncode == 0
    s = read_status(tmp_path)
    assert s.events[-1] == P.TemporaryExit(2, 120.0, "waiting", True), "ids continue from the old file"


# --------------------------------------------------------------------------------------------------
# examples/worker.py

WORKER = ROOT / "examples" / "worker.py"


def _worker_env(share: Path | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SDK_PATH))
    env.pop("BOINC_GUEST_DIR", None)
    if share is not None:
        env["BOINC_GUEST_DIR"] = str(share)
    return env


def test_worker_standalone(tmp_path: Path) -> None:
    (tmp_path / "in").write_text("hello, world\n")
    r = subprocess.run(
        [sys.executable, str(WORKER), "--nsecs", "0.3"],
        cwd=tmp_path,
        env=_worker_env(None),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out").read_text() == "HELLO, WORLD\n"
    assert "standalone" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["in", "out"], "no status file, no checkpoint left behind"
    r2 = subprocess.run(
        [sys.executable, str(WORKER), "--in", "stdin", "--out", "stdout"],
        input="piped\n",
        cwd=tmp_path,
        env=_worker_env(None),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r2.returncode == 0 and r2.stdout == "PIPED\n"
    r3 = subprocess.run(
        [sys.executable, str(WORKER), "--in", "missing_file"],
        cwd=tmp_path,
        env=_worker_env(None),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r3.returncode == 1 and "missing_file" in r3.stderr
    # the seed's interface: CPU seconds as the argument, `in` -> `out`, stdin -> stdout
    r4 = subprocess.run(
        [sys.executable, str(WORKER), "0.2"],
        input="from stdin\n",
        cwd=tmp_path,
        env=_worker_env(None),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r4.returncode == 0, r4.stderr
    assert r4.stdout == "FROM STDIN\n"
    assert (tmp_path / "out").read_text() == "HELLO, WORLD\n"


def test_worker_with_share_reports_progress_and_finish(tmp_path: Path) -> None:
    (tmp_path / "in").write_text("abc\n")
    write_control(tmp_path, P.Control(init_data=P.InitData(checkpoint_period=0.2)))
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "--nsecs", "1.0"],
        cwd=tmp_path,
        env=_worker_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fractions: list[float] = []
    try:
        while proc.poll() is None:
            with contextlib.suppress(FileNotFoundError, P.ProtocolError):
                fractions.append(read_status(tmp_path).fraction_done)
            time.sleep(0.05)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert any(0.0 < f < 1.0 for f in fractions), "progress was visible while it ran"
    assert fractions == sorted(fractions)
    s = read_status(tmp_path)
    assert s.fraction_done == 1.0 and s.checkpoint_count >= 2 and s.cpu_time >= 1.0
    assert s.events == (P.Finish(1, 0, "", False),)
    assert (tmp_path / "out").read_text() == "ABC\n"
    assert not (tmp_path / "worker_checkpoint.json").exists()


def test_worker_killed_resumes_from_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "in").write_text("resume\n")
    write_control(tmp_path, P.Control(init_data=P.InitData(checkpoint_period=0.2)))
    cmd = [sys.executable, str(WORKER), "--nsecs", "2.0"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=_worker_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def checkpointed() -> bool:
            try:
                return read_status(tmp_path).checkpoint_count >= 3
            except (FileNotFoundError, P.ProtocolError):
                return False

        assert wait_for(checkpointed, 20), "the worker checkpointed"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9
    saved = json.loads((tmp_path / "worker_checkpoint.json").read_text())["cpu_done"]
    assert 0.0 < saved < 2.0
    seq_before = read_status(tmp_path).seq
    r = subprocess.run(
        cmd, cwd=tmp_path, env=_worker_env(tmp_path), capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    assert "resuming from checkpoint" in r.stderr
    s = read_status(tmp_path)
    assert s.seq > seq_before, "seq continues from the killed run's file"
    assert s.cpu_time < 2.0 - saved + 0.8, "the second run did only the remaining work"
    assert s.events[-1] == P.Finish(1, 0, "", False)
    assert (tmp_path / "out").read_text() == "RESUME\n"


def test_missing_msgpack_says_what_to_install(tmp_path: Path) -> None:
    """A host or guest Python without msgpack (a task run with /usr/bin/python3): the import error names
    the package and how to install it, not just "No module named 'msgpack'"."""
    code = "import sys; sys.modules['msgpack'] = None; from boinc_guest import *"
    sdk_path = str(ROOT / "guest_sdk" / "python")
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": sdk_path},
    )
    assert r.returncode == 1
    assert "boinc_guest needs the msgpack package: pip install msgpack" in r.stderr, r.stderr
