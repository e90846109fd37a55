"""VboxCompat: vboxwrapper's guest files (triggers, heartbeat, fraction, trickles, uploads, job_duration)
turned into a synthetic guest Status, hostile files refused, and the heartbeat's silence measured by the
decision core in running time only."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import pytest
from boinc_guest import protocol as P

from host_bridge import core
from host_bridge.backends.base import BackendStatus, VMState
from host_bridge.jobfile.vbox import VboxJob, parse_vbox_job_text
from host_bridge.share import Share
from host_bridge.vboxcompat import (
    FRACTION_MAX,
    MAX_PENDING,
    NO_FRACTION_YET,
    TRICKLE_MAX,
    VboxCompat,
    c_atoi,
    leading_number,
    load_running_time,
    parse_fraction,
    parse_trigger,
    save_running_time,
)

LHC_LIKE = VboxJob(
    path="vbox_job.xml",
    enable_shared_directory=True,
    completion_trigger_file="shutdown",
    temporary_exit_trigger_file="restart_later",
    heartbeat_filename="heartbeat",
    minimum_heartbeat_interval=5.0,
    fraction_done_filename="progress",
    trickle_trigger_files=("trickle_a", "trickle_b"),
    intermediate_upload_files=("partial.dat",),
)


@pytest.fixture
def share(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    s = Share(d)
    yield s
    s.close()


def make(share, job=LHC_LIKE, **kw) -> VboxCompat:
    return VboxCompat(job, share, **kw)


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"0", 0),
        (b"  42\n", 42),
        (b"-3", -3),
        (b"+7abc", 7),
        (b"abc", 0),
        (b"", 0),
        (b"\t 12 34", 12),
        (b"99999999999999999999", 2**31 - 1),
        (b"-99999999999999999999", -(2**31)),
        (b"1.9", 1),
    ],
)
def test_atoi_like_c(line, value):
    assert c_atoi(line) == value


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"0.5", 0.5),
        (b"  .25 done", 0.25),
        (b"1e-1", 0.1),
        (b"-2", -2.0),
        (b"inf", float("inf")),
        (b"nan", None),
        (b"progress 0.5", None),
        (b"", None),
    ],
)
def test_leading_number_like_sscanf(line, value):
    assert leading_number(line) == value


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"0.1\n0.2\n0.3\n", 0.3),
        (b"0.1\n0.7", 0.7),
        (b"0.4\ngarbage\n", 0.4),  # the last line that holds a number
        (b"1.5\n", 1.0),
        (b"-0.5\n", 0.0),
        (b"inf\n", 1.0),
        (b"nan\n", None),
        (b"\xff\xfe\x00", None),
        (b"", None),
    ],
)
def test_fraction_file_format(data, value):
    assert parse_fraction(data) == value


def test_trigger_format():
    assert parse_trigger(b"3\n1\nthe input was bad\nsee the log\n") == (
        3,
        True,
        "the input was bad\nsee the log",
    )
    assert parse_trigger(b"0\n") == (0, False, "")
    assert parse_trigger(b"") == (0, False, "")
    assert parse_trigger(b"junk\n0\nmsg") == (0, False, "msg")
    code, notice, msg = parse_trigger(b"1\n1\n" + b"x" * 10000 + b"\0\xff")
    assert (code, notice) == (1, True)
    assert len(msg.encode()) <= P.MAX_MESSAGE and "\0" not in msg


# ---------------------------------------------------------------- triggers


def test_completion_trigger_gives_one_finish_event(share):
    c = make(share, first_id=5)
    s0 = c.poll(0.0, True)
    assert s0.events == ()
    (share.path / "shutdown").write_bytes(b"3\n1\nbad input\n")
    s1 = c.poll(0.1, True)
    assert s1.seq == s0.seq + 1
    assert s1.events == (P.Finish(id=5, status=3, message="bad input", is_notice=True),)
    # stays until acknowledged, is not produced twice
    s2 = c.poll(0.2, True)
    assert s2.events == s1.events and s2.seq == s1.seq
    c.ack(5)
    assert c.poll(0.3, True).events == ()
    assert c.poll(1.3, True).events == ()


def test_empty_completion_file_waits_one_poll_while_running(share):
    c = make(share)
    (share.path / "shutdown").write_bytes(b"")
    assert c.poll(0.0, True).events == ()  # maybe being written
    assert c.poll(0.1, True).events == (P.Finish(id=1, status=0),)
    c2 = make(share)
    assert c2.poll(0.0, False).events == (P.Finish(id=1, status=0),)  # the task has stopped: final


def test_temporary_exit_trigger_is_taken_and_deleted(share):
    c = make(share)
    (share.path / "restart_later").write_bytes(b"1800\n0\nno work in the VM yet\n")
    st = c.poll(0.0, True)
    assert st.events == (P.TemporaryExit(id=1, delay=1800.0, reason="no work in the VM yet"),)
    assert not (share.path / "restart_later").exists()
    (share.path / "restart_later").write_bytes(b"-5\n1\n")
    c2 = make(share, first_id=9)
    assert c2.poll(0.0, True).events == (P.TemporaryExit(id=9, delay=0.0, reason="", is_notice=True),)


def test_trickle_triggers_variety_is_the_name_taken_once_stable(share):
    c = make(share)
    c.poll(0.0, True)
    (share.path / "trickle_a").write_text("<result>42</result>")
    assert c.poll(1.0, True).events == ()  # first seen: wait one scan in case it is being written
    st = c.poll(2.0, True)
    assert st.events == (P.TrickleUp(id=1, variety="trickle_a", text="<result>42</result>"),)
    assert not (share.path / "trickle_a").exists()
    # a second trickle under the same name is a new event; force (task ended) takes it at once
    (share.path / "trickle_a").write_bytes(b"second \xff")
    st = c.poll(2.1, True, force=True)
    assert [e.id for e in st.events] == [1, 2]
    assert st.events[1] == P.TrickleUp(id=2, variety="trickle_a", text="second \ufffd")


def test_intermediate_upload_requested_once(share):
    c = make(share)
    (share.path / "partial.dat").write_text("part 1")
    c.poll(0.0, True)
    st = c.poll(1.0, True)
    assert st.events == (P.UploadRequest(id=1, name="partial.dat"),)
    (share.path / "partial.dat").write_text("part 1 and more")
    c.ack(1)
    for t in range(2, 6):
        assert c.poll(float(t), True).events == ()


def test_event_ids_increase_and_pending_is_bounded(share):
    names = tuple(f"t{i:03d}" for i in range(MAX_PENDING + 6))
    job = replace(LHC_LIKE, trickle_trigger_files=names)
    c = make(share, job=job, first_id=100)
    for n in names:
        (share.path / n).write_text(n)
    st = c.poll(0.0, True, force=True)
    assert len(st.events) == MAX_PENDING
    ids = [e.id for e in st.events]
    assert ids == list(range(100, 100 + MAX_PENDING))
    left = [n for n in names if (share.path / n).exists()]
    assert len(left) == 6  # not taken, not lost: picked up after the acknowledgement
    c.ack(100 + MAX_PENDING - 1)
    st = c.poll(1.0, True, force=True)
    assert [e.variety for e in st.events] == left
    assert st.events[0].id == 100 + MAX_PENDING


# ---------------------------------------------------------------- hostile files


def _refusal_lines(caplog, name):
    return [r for r in caplog.records if r.levelno >= logging.WARNING and repr(name) in r.getMessage()]


def test_symlinked_completion_trigger_is_refused_and_logged_once(share, tmp_path, caplog):
    secret = tmp_path / "host_secret"
    secret.write_text("7\n1\nfrom a host file\n")
    os.symlink(secret, share.path / "shutdown")
    c = make(share)
    with caplog.at_level(logging.WARNING):
        for t in range(20):
            st = c.poll(t * 0.5, True)
    assert st.events == ()
    assert len(_refusal_lines(caplog, "shutdown")) == 1
    assert "symbolic link" in _refusal_lines(caplog, "shutdown")[0].getMessage()
    assert secret.read_text() == "7\n1\nfrom a host file\n"


def test_symlinked_trickle_is_refused_deleted_and_target_kept(share, tmp_path, caplog):
    secret = tmp_path / "host_secret"
    secret.write_text("secret")
    os.symlink(secret, share.path / "trickle_b")
    c = make(share)
    with caplog.at_level(logging.WARNING):
        for t in range(5):
            st = c.poll(float(t), True)
    assert st.events == ()
    assert not os.path.lexists(share.path / "trickle_b")
    assert secret.read_text() == "secret"
    assert len(_refusal_lines(caplog, "trickle_b")) == 1


def test_huge_files_are_refused_without_reading_them(share, caplog):
    with open(share.path / "trickle_a", "wb") as f:
        f.truncate(TRICKLE_MAX + 1)
    with open(share.path / "shutdown", "wb") as f:
        f.truncate(1 << 30)  # sparse 1 GiB
    with open(share.path / "progress", "wb") as f:
        f.truncate(FRACTION_MAX + 1)
    c = make(share)
    with caplog.at_level(logging.WARNING):
        for t in range(4):
            st = c.poll(float(t), True)
    assert st.events == ()
    assert st.fraction_done == NO_FRACTION_YET
    assert not (share.path / "trickle_a").exists()
    for name in ("trickle_a", "shutdown", "progress"):
        lines = _refusal_lines(caplog, name)
        assert len(lines) == 1 and "larger than allowed" in lines[0].getMessage(), name


def test_fifo_and_directory_and_hard_link_are_refused(share, tmp_path, caplog):
    os.mkfifo(share.path / "heartbeat")  # a reader that opened it would block forever
    (share.path / "restart_later").mkdir()
    host = tmp_path / "host_file"
    host.write_text("0.9\n")
    os.link(host, share.path / "progress")
    c = make(share)
    with caplog.at_level(logging.WARNING):
        for t in range(4):
            st = c.poll(float(t), True)
    assert st.hb == 0 and st.events == ()
    assert st.fraction_done == NO_FRACTION_YET
    assert len(_refusal_lines(caplog, "heartbeat")) == 1
    assert len(_refusal_lines(caplog, "progress")) == 1


def test_names_with_a_slash_in_the_job_are_ignored_with_a_warning(share, caplog):
    job = replace(LHC_LIKE, completion_trigger_file="sub/shutdown", trickle_trigger_files=("../x", "ok"))
    with caplog.at_level(logging.WARNING):
        c = make(share, job=job)
    assert c.completion_file is None and c.trickle_files == ["ok"]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("completion_trigger_file" in m and "vbox_job.xml" in m for m in msgs)


# ---------------------------------------------------------------- heartbeat


def test_heartbeat_counts_every_change(share):
    c = make(share)
    hb = share.path / "heartbeat"
    assert c.poll(0.0, True).hb == 0  # missing: no beat
    hb.write_text("1")
    os.utime(hb, ns=(10**18, 10**18))
    assert c.poll(1.0, True).hb == 1  # appeared
    assert c.poll(2.0, True).hb == 1  # unchanged
    hb.write_text("2")  # same size, same mtime afterwards: the content tells
    os.utime(hb, ns=(10**18, 10**18))
    assert c.poll(3.0, True).hb == 2
    os.utime(hb, ns=(5, 5))  # mtime back in time (guest clock jump): still a change
    assert c.poll(4.0, True).hb == 3
    tmp = share.path / "hb.tmp"
    tmp.write_text("2")
    os.utime(tmp, ns=(5, 5))
    os.replace(tmp, hb)  # replaced by rename: a new inode
    assert c.poll(5.0, True).hb == 4
    assert c.poll(5.1, True).hb == 4  # scans are at most every scan_interval


def test_no_heartbeat_file_configured_means_always_alive(share):
    job = replace(LHC_LIKE, heartbeat_filename=None)
    c = make(share, job=job)
    assert c.heartbeat_timeout == 0.0
    hbs = [c.poll(float(t), True).hb for t in range(4)]
    assert hbs == sorted(set(hbs)) and len(hbs) == 4
    assert make(share).heartbeat_timeout == 5.0


RUN = BackendStatus(VMState.RUNNING, cpu_time=1.0)
PAUSE = BackendStatus(VMState.PAUSED, cpu_time=1.0)


def _drive(share, script, *, dt=0.5, timeout=5.0):
    """Run the core over compat statuses. ``script``: list of (seconds, mode) with mode one of
    "beat" (running, heartbeat touched every second), "silent" (running, no heartbeat),
    "suspended" (BOINC suspended, no heartbeat), "jump" (the monotonic clock jumps by that much).
    Returns the ExitBridge actions and the time at which the first came."""
    c = make(share)
    ctx = core.TaskContext(heartbeat_timeout=timeout)
    state = core.CoreState()
    now = 0.0
    exits = []
    hb = share.path / "heartbeat"
    n = 0
    for seconds, mode in script:
        if mode == "jump":
            now += seconds
            continue
        end = now + seconds
        while now < end:
            suspended = mode == "suspended"
            backend = PAUSE if suspended and state.paused else RUN
            if mode == "beat" and int(now) != int(now - dt):
                n += 1
                hb.write_text(str(n))
            g = c.poll(now, backend.state is VMState.RUNNING and not state.paused)
            inp = core.Inputs(
                now=now, boinc=core.BoincView(suspended=suspended), backend=backend, guest=g, task=ctx
            )
            state, actions = core.decide(state, inp)
            exits += [(now, a) for a in actions if isinstance(a, core.ExitBridge)]
            if state.ending:
                return exits
            now += dt
    return exits


@pytest.mark.parametrize(
    ("name", "script", "hung"),
    [
        ("beating all along", [(30, "beat")], False),
        ("long suspend without beats, then beats", [(3, "beat"), (300, "suspended"), (10, "beat")], False),
        ("clock jump forward", [(3, "beat"), (1e6, "jump"), (10, "beat")], False),
        ("silent for less than the interval", [(3, "beat"), (4, "silent"), (10, "beat")], False),
        ("silent while running", [(3, "beat"), (20, "silent")], True),
        ("never created", [(20, "silent")], True),
        ("suspend does not reset the silence", [(3, "beat"), (3, "silent"), (50, "suspended"), (3, "silent")],
         True),
    ],
)  # fmt: skip
def test_heartbeat_silence_is_running_time_only(share, name, script, hung):
    exits = _drive(share, script)
    if not hung:
        assert exits == [], name
        return
    assert len(exits) == 1, name
    _t, ex = exits[0]
    assert ex.kind == "temporary_exit" and "no heartbeat" in ex.message


def test_hung_after_the_interval_not_before(share):
    exits = _drive(share, [(2, "beat"), (30, "silent")], timeout=5.0)
    t, _ex = exits[0]
    # last beat at t=1 (seen at the scan at t=1.0); the interval is 5 s of running time
    assert 5.5 <= t <= 7.5, t


# ---------------------------------------------------------------- progress


def test_fraction_file(share):
    c = make(share)
    assert c.poll(0.0, True).fraction_done == NO_FRACTION_YET  # missing: as vboxwrapper
    (share.path / "progress").write_text("0.1\n0.25\n")
    assert c.poll(1.0, True).fraction_done == 0.25
    (share.path / "progress").write_text("garbage\n")
    assert c.poll(2.0, True).fraction_done == 0.25  # no number: keep the last value
    (share.path / "progress").write_text("7\n")
    assert c.poll(3.0, True).fraction_done == 1.0
    (share.path / "progress").unlink()
    assert c.poll(4.0, True).fraction_done == 1.0


def test_job_duration_drives_fraction_in_running_time_and_finishes(share):
    job = replace(LHC_LIKE, job_duration=100.0)
    (share.path / "progress").write_text("0.9\n")  # job_duration wins, as in vboxwrapper
    c = make(share, job=job, running_time=20.0)
    assert c.poll(0.0, True).fraction_done == pytest.approx(0.2)
    assert c.poll(10.0, True).fraction_done == pytest.approx(0.25)  # gaps count at most max_gap (5 s)
    for t in range(11, 21):
        c.poll(float(t), True)
    assert c.running_time == pytest.approx(35.0)
    c.poll(500.0, False)  # suspended: no running time
    c.poll(600.0, False)
    assert c.running_time == pytest.approx(35.0)
    c.poll(599.0, True)  # the clock went backwards: nothing counted
    assert c.running_time == pytest.approx(35.0)
    t = 600.0
    st = c.status
    while not st.events:
        t += 1.0
        st = c.poll(t, True)
    assert c.running_time == pytest.approx(100.0, abs=1.0)
    assert st.fraction_done == 1.0
    assert st.events == (P.Finish(id=1, status=0),)


def test_running_time_saved_per_task(tmp_path):
    assert load_running_time(tmp_path, 0) == 0.0
    save_running_time(tmp_path, 1, 123.5)
    assert load_running_time(tmp_path, 1) == 123.5
    assert load_running_time(tmp_path, 0) == 0.0  # another task's
    (tmp_path / "host_bridge_vboxcompat.json").write_text("{nonsense")
    assert load_running_time(tmp_path, 1) == 0.0


# ---------------------------------------------------------------- console


def test_console_address_from_the_job_and_the_backend(share):
    cms = parse_vbox_job_text(
        "<vbox_job><enable_shared_directory/><enable_remotedesktop/>"
        "<pf_host_port>7859</pf_host_port><pf_guest_port>80</pf_guest_port></vbox_job>"
    )
    c = make(share, job=cms)
    assert c.console() == ("http://localhost:7859", None)
    assert c.console(host_port=40001, rd_port=5901) == ("http://localhost:40001", "localhost:5901")
    guest_only = replace(cms, pf_host_port=0, enable_remotedesktop=False)
    c = make(share, job=guest_only)
    assert c.console() == (None, None)  # a VM backend must say which host port it chose
    assert c.console(direct=True) == ("http://localhost:80", None)  # local backend: the port is the host's
    assert make(share, job=replace(guest_only, pf_guest_port=0)).console(rd_port=5901) == (None, None)


def test_clear_triggers_before_a_fresh_start(share):
    for n in ("shutdown", "restart_later", "trickle_a", "heartbeat"):
        (share.path / n).write_text("x")
    make(share).clear_triggers()
    assert sorted(os.listdir(share.path)) == ["heartbeat"]
