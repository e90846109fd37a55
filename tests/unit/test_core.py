"""Table tests for the pure decision core: (state, BOINC status, backend state, guest status, time)
-> (state', actions)."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
from boinc_guest.protocol import Finish, Status, TemporaryExit, TrickleUp, UploadRequest

from host_bridge import core
from host_bridge.backends.base import BackendStatus, VMState
from host_bridge.core import (
    BoincView,
    CoreState,
    EndTask,
    ExitBridge,
    Failure,
    ForwardTrickleUp,
    Inputs,
    PauseTask,
    ReportStatus,
    RequestUpload,
    ResumeTask,
    SaveState,
    StartTask,
    StopTask,
    TaskContext,
    WriteControl,
    decide,
)
from host_bridge.policy import DEFAULT_POLICY

RUNNING = BackendStatus(VMState.RUNNING, cpu_time=10.0)
PAUSED = BackendStatus(VMState.PAUSED, cpu_time=10.0)
CREATED = BackendStatus(VMState.CREATED)
STARTED = CoreState(started=True, control_sent=(False, False, 0), last_tick=0.0, last_report_at=0.0)


def inp(now=1.0, boinc=None, backend=RUNNING, guest=None, task=None, **kw) -> Inputs:
    return Inputs(
        now=now, boinc=boinc or BoincView(), backend=backend, guest=guest, task=task or TaskContext(), **kw
    )


def types(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


# (name, state, inputs, expected action types in order)
TABLE = [
    (
        "first tick writes the control file (init data for boinc_init), then starts the task",
        CoreState(),
        inp(backend=CREATED),
        ["WriteControl", "StartTask", "ReportStatus"],
    ),
    (
        "abort stops and exits 194",
        STARTED,
        inp(boinc=BoincView(abort_request=True)),
        ["StopTask", "ExitBridge"],
    ),
    (
        "abort wins over everything",
        STARTED,
        inp(boinc=BoincView(abort_request=True, quit_request=True, suspended=True)),
        ["StopTask", "ExitBridge"],
    ),
    (
        "quit saves and exits 0",
        STARTED,
        inp(boinc=BoincView(quit_request=True)),
        ["StopTask", "SaveState", "ExitBridge"],
    ),
    (
        "lost client saves and exits",
        STARTED,
        inp(boinc=BoincView(no_heartbeat=True)),
        ["StopTask", "SaveState", "ExitBridge"],
    ),
    (
        "suspend pauses and tells the guest",
        STARTED,
        inp(boinc=BoincView(suspended=True)),
        ["PauseTask", "WriteControl", "ReportStatus"],
    ),
    (
        "already paused: nothing new",
        replace(STARTED, paused=True, control_sent=(True, False, 0)),
        inp(now=0.5, boinc=BoincView(suspended=True), backend=PAUSED),
        [],
    ),
    (
        "resume after suspend",
        replace(STARTED, paused=True, control_sent=(True, False, 0)),
        inp(now=0.5, backend=PAUSED),
        ["ResumeTask", "WriteControl"],
    ),
    (
        "suspend deferred in a critical section",
        STARTED,
        inp(boinc=BoincView(suspended=True), guest=Status(seq=1, critical_section=True)),
        ["ReportStatus"],
    ),
    (
        "network suspension reaches the guest",
        STARTED,
        inp(now=0.5, boinc=BoincView(network_suspended=True)),
        ["WriteControl"],
    ),
    (
        "program exit 0 ends the task",
        STARTED,
        inp(backend=BackendStatus(VMState.EXITED, exit_code=0)),
        ["ReportStatus", "EndTask"],
    ),
    (
        "program exit 3 ends the task with 3",
        STARTED,
        inp(backend=BackendStatus(VMState.EXITED, exit_code=3)),
        ["ReportStatus", "EndTask"],
    ),
    (
        "environment failure before the app started: counted, temporary exit",
        STARTED,
        inp(backend=BackendStatus(VMState.FAILED, error="VM crashed")),
        ["StopTask", "SaveState", "ExitBridge"],
    ),
    (
        "environment failure after the app started: temporary exit, not counted",
        replace(STARTED, app_seen=True),
        inp(backend=BackendStatus(VMState.FAILED, error="VM crashed")),
        ["StopTask", "ExitBridge"],
    ),
    (
        "a permanent backend failure: the task fails",
        STARTED,
        inp(failure=Failure("no such image", temporary=False)),
        ["StopTask", "ExitBridge"],
    ),
    (
        "guest progress is reported at once",
        STARTED,
        inp(now=0.2, guest=Status(seq=1, fraction_done=0.5)),
        ["ReportStatus"],
    ),
    ("no news, within the interval: silence", replace(STARTED, last_report_at=0.9), inp(now=1.0), []),
    (
        "no news, interval elapsed: refresh",
        replace(STARTED, last_report_at=0.0),
        inp(now=1.0),
        ["ReportStatus"],
    ),
]


@pytest.mark.parametrize(("name", "state", "inputs", "expected"), TABLE, ids=[r[0] for r in TABLE])
def test_decision_table(name, state, inputs, expected):
    _, actions = decide(state, inputs)
    assert types(actions) == expected


def test_abort_status_and_message():
    _, actions = decide(STARTED, inp(boinc=BoincView(abort_request=True)))
    assert actions[0] == StopTask(save=False)
    assert actions[1].kind == "abort" and actions[1].status == 194


def test_quit_keeps_state_for_restart():
    _, actions = decide(STARTED, inp(boinc=BoincView(quit_request=True)))
    assert actions[0] == StopTask(save=True)
    assert isinstance(actions[2], ExitBridge) and actions[2].kind == "quit" and actions[2].status == 0


def test_after_ending_nothing_more():
    state, _ = decide(STARTED, inp(boinc=BoincView(abort_request=True)))
    assert decide(state, inp(now=2.0))[1] == []


def test_exit_code_and_signal_mapping():
    _, a = decide(STARTED, inp(backend=BackendStatus(VMState.EXITED, exit_code=3)))
    assert a[-1] == EndTask(3, "the task exited with status 3")
    _, a = decide(STARTED, inp(backend=BackendStatus(VMState.EXITED, exit_code=-9)))
    assert a[-1].status == 193 and "signal 9" in a[-1].message


def test_finish_event_gives_status_and_message():
    g = Status(seq=2, events=(Finish(id=1, status=7, message="bad input", is_notice=True),))
    s, a = decide(STARTED, inp(now=1.0, guest=g))
    assert s.finish is not None and not any(isinstance(x, EndTask) for x in a)
    # the process then exits 0 (the SDK's exit) but the finish event's status wins
    _, a = decide(s, inp(now=1.5, guest=g, backend=BackendStatus(VMState.EXITED, exit_code=0)))
    assert a[-1] == EndTask(7, "bad input", True)


def test_finish_event_but_guest_never_exits():
    g = Status(seq=2, events=(Finish(id=1, status=0),))
    ctx = TaskContext(policy=replace(DEFAULT_POLICY, finish_grace=10.0))
    s, _ = decide(STARTED, inp(now=1.0, guest=g, task=ctx))
    s, a = decide(s, inp(now=5.0, guest=g, task=ctx))
    assert not any(isinstance(x, EndTask) for x in a)
    _, a = decide(s, inp(now=11.5, guest=g, task=ctx))
    assert types(a)[-2:] == ["StopTask", "EndTask"] and a[-1].status == 0


def test_events_forwarded_once_in_order_and_acked():
    evs = (
        TrickleUp(id=1, variety="a", text="x"),
        UploadRequest(id=2, name="out1"),
        TrickleUp(id=3, variety="b", text="y"),
    )
    g = Status(seq=5, events=evs)
    s, a = decide(STARTED, inp(now=1.0, guest=g))
    fwd = [x for x in a if isinstance(x, (ForwardTrickleUp, RequestUpload))]
    assert [x.event.id for x in fwd] == [1, 2, 3]
    save = next(x for x in a if isinstance(x, SaveState))
    assert save.last_event_id == 3
    ctl = next(x for x in a if isinstance(x, WriteControl))
    assert ctl.ack == 3
    # the same file again (heartbeat changed) and a new event: only the new one
    g2 = Status(seq=6, hb=1, events=(*evs, TrickleUp(id=4, variety="c", text="z")))
    s, a = decide(s, inp(now=2.0, guest=g2))
    fwd = [x for x in a if isinstance(x, ForwardTrickleUp)]
    assert [x.event.id for x in fwd] == [4]
    # an unchanged file: nothing forwarded
    _, a = decide(s, inp(now=2.5, guest=g2))
    assert not [x for x in a if isinstance(x, (ForwardTrickleUp, RequestUpload))]


def test_events_already_processed_before_restart_are_skipped():
    g = Status(seq=9, events=(TrickleUp(id=1, variety="a", text="x"), TrickleUp(id=2, variety="a", text="y")))
    _, a = decide(replace(STARTED, last_event_id=1), inp(guest=g))
    assert [x.event.id for x in a if isinstance(x, ForwardTrickleUp)] == [2]


def test_temporary_exit_event():
    g = Status(
        seq=3, events=(TrickleUp(id=1, variety="a", text="x"), TemporaryExit(id=2, delay=60, reason="no GPU"))
    )
    _, a = decide(STARTED, inp(guest=g))
    assert types(a) == ["ForwardTrickleUp", "SaveState", "StopTask", "ExitBridge"]
    assert a[-1].kind == "temporary_exit" and a[-1].delay == 60 and a[-1].message == "no GPU"
    assert a[1].last_event_id == 2


def test_checkpoint_saves_state_with_checkpoint_cpu():
    ctx = TaskContext(cpu_base=100.0)
    g = Status(seq=1, cpu_time=5.0, checkpoint_cpu_time=4.0, checkpoint_count=1)
    _, a = decide(STARTED, inp(guest=g, task=ctx))
    save = next(x for x in a if isinstance(x, SaveState))
    assert save.checkpoint_cpu == 104.0
    rep = next(x for x in a if isinstance(x, ReportStatus))
    assert rep.cpu_time == 105.0 and rep.checkpoint_cpu_time == 104.0


@pytest.mark.parametrize(
    ("guest_cpu", "backend_cpu", "expected"),
    [
        (5.0, 10.0, 5.0),  # the guest's own figure
        (50.0, 10.0, 10.0),  # bounded by what the environment used
        (0.0, 10.0, 10.0),  # no guest figure: the process tree's
        (5.0, 0.0, 5.0),  # backend cannot tell: the guest's
    ],
)
def test_cpu_time_source_and_bound(guest_cpu, backend_cpu, expected):
    g = Status(seq=1, cpu_time=guest_cpu)
    i = inp(guest=g, backend=BackendStatus(VMState.RUNNING, cpu_time=backend_cpu))
    assert core.cpu_times(i)[0] == expected


def test_fraction_weighted_over_tasks_and_never_backwards():
    ctx = TaskContext(weight_before=1.0, weight=2.0, total_weight=4.0)
    s, a = decide(STARTED, inp(guest=Status(seq=1, fraction_done=0.5), task=ctx))
    rep = next(x for x in a if isinstance(x, ReportStatus))
    assert rep.fraction_done == pytest.approx((1.0 + 2.0 * 0.5) / 4.0)
    # the guest restarted from an older checkpoint: fraction stays
    s, a = decide(s, inp(now=2.0, guest=Status(seq=2, fraction_done=0.1), task=ctx))
    rep = next(x for x in a if isinstance(x, ReportStatus))
    assert rep.fraction_done == pytest.approx(0.5)


def test_fraction_file_used_without_guest():
    _, a = decide(STARTED, inp(now=1.0, fraction_file=0.25))
    rep = next(x for x in a if isinstance(x, ReportStatus))
    assert rep.fraction_done == 0.25


def test_ops_and_network_forwarded():
    g = Status(seq=1, fpops_cumulative=8e9, fpops_per_cpu_sec=1e9, intops_cumulative=3.0, want_network=True)
    _, a = decide(STARTED, inp(guest=g))
    rep = next(x for x in a if isinstance(x, ReportStatus))
    assert (rep.fpops_cumulative, rep.fpops_per_cpu_sec, rep.intops_cumulative, rep.want_network) == (
        8e9,
        1e9,
        3.0,
        True,
    )


@pytest.mark.parametrize(
    ("guest", "expected"),
    [
        (Status(seq=1, fpops_cumulative=8e9, intops_cumulative=3.0), (13e9, 5.0)),  # this task's on top
        (None, (5e9, 2.0)),  # a task without the SDK (or not started yet) keeps the earlier tasks' count
    ],
)
def test_ops_of_earlier_tasks_are_kept(guest, expected):
    """A job of several tasks: the client's fpops_cumulative is the job's, not the current task's (a
    second task without the SDK reported 0, and the client recorded 0 for the whole result)."""
    ctx = TaskContext(fpops_base=5e9, intops_base=2.0)
    _, a = decide(STARTED, inp(guest=guest, task=ctx))
    rep = next(x for x in a if isinstance(x, ReportStatus))
    assert (rep.fpops_cumulative, rep.intops_cumulative) == expected


def test_hung_guest_only_counts_running_time():
    ctx = TaskContext(heartbeat_timeout=30.0, policy=replace(DEFAULT_POLICY, max_tick_gap=5.0))
    g = Status(seq=1, hb=1)
    s, _ = decide(STARTED, inp(now=1.0, guest=g, task=ctx))
    t = 1.0
    # 20 s of running silence
    for _ in range(20):
        t += 1.0
        s, a = decide(s, inp(now=t, guest=g, task=ctx))
        assert not any(isinstance(x, ExitBridge) for x in a)
    # a suspend of 1000 s (paused): no alarm
    s, _ = decide(s, inp(now=t + 0.1, guest=g, task=ctx, boinc=BoincView(suspended=True)))
    for k in range(1, 100):
        s, a = decide(
            s, inp(now=t + 10 * k, guest=g, task=ctx, boinc=BoincView(suspended=True), backend=PAUSED)
        )
        assert not any(isinstance(x, ExitBridge) for x in a)
    t += 1000
    s, _ = decide(s, inp(now=t, guest=g, task=ctx))  # resumed
    # a clock jump / host sleep of an hour between two ticks: counts as at most max_tick_gap
    t += 3600
    s, a = decide(s, inp(now=t, guest=g, task=ctx))
    assert not any(isinstance(x, ExitBridge) for x in a)
    # a heartbeat resets the count
    g2 = Status(seq=1, hb=2)
    s, _ = decide(s, inp(now=t + 1, guest=g2, task=ctx))
    assert s.silent_running == 0.0
    for k in range(2, 40):
        s, a = decide(s, inp(now=t + k, guest=g2, task=ctx))
        if any(isinstance(x, ExitBridge) for x in a):
            assert a[-1].kind == "temporary_exit" and "heartbeat" in a[-1].message
            assert k >= 31
            break
    else:
        pytest.fail("a silent running guest was never declared hung")


def test_pause_not_issued_when_backend_not_running():
    _, a = decide(STARTED, inp(boinc=BoincView(suspended=True), backend=CREATED))
    assert not any(isinstance(x, PauseTask) for x in a)


def test_start_only_once():
    s, a = decide(CoreState(), inp(backend=CREATED))
    assert any(isinstance(x, StartTask) for x in a)
    _, a = decide(s, inp(now=2.0, backend=RUNNING))
    assert not any(isinstance(x, StartTask) for x in a)


def test_resume_only_if_we_paused():
    _, a = decide(STARTED, inp())
    assert not any(isinstance(x, ResumeTask) for x in a)


def test_time_limit_counts_running_time_only():
    ctx = TaskContext(time_limit=10.0)
    s = STARTED
    t = 0.0
    for _ in range(8):
        t += 1.0
        s, a = decide(s, inp(now=t, task=ctx))
        assert not any(isinstance(x, EndTask) for x in a)
    # paused for a long time: does not count
    s, _ = decide(s, inp(now=t + 0.5, task=ctx, boinc=BoincView(suspended=True)))
    for k in range(1, 30):
        s, a = decide(s, inp(now=t + k, task=ctx, boinc=BoincView(suspended=True), backend=PAUSED))
        assert not any(isinstance(x, EndTask) for x in a)
    t += 30
    s, _ = decide(s, inp(now=t, task=ctx))
    for _ in range(5):
        t += 1.0
        s, a = decide(s, inp(now=t, task=ctx))
        if any(isinstance(x, EndTask) for x in a):
            # as BOINC's wrapper: ended and counted as done (status 0), the task's part complete
            assert a[-1].status == 0 and "time limit" in a[-1].message
            assert types(a)[-3:] == ["ReportStatus", "StopTask", "EndTask"]
            assert a[-3].fraction_done == 1.0
            break
    else:
        pytest.fail("time limit never hit")


def test_evolve_is_dataclasses_replace() -> None:
    """The core's cheap state copy gives exactly what dataclasses.replace gives, and refuses unknown
    fields as replace does."""
    from host_bridge.core import _evolve

    s = core.CoreState(started=True, last_event_id=3, last_report=(0.5, 1.0), control_sent=(False, True, 3))
    changes = {"paused": True, "max_fraction": 0.25, "last_tick": 12.5, "finish": Finish(id=4, status=0)}
    got = _evolve(s, **changes)
    assert got == replace(s, **changes)
    assert type(got) is core.CoreState and hash(got) == hash(replace(s, **changes))
    assert s.paused is False and s.max_fraction == 0.0  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.paused = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        _evolve(s, no_such_field=1)


# ---------------------------------------------------------------- whole-VM saves (periodic, long suspend)

VMCK = TaskContext(vm_checkpoint_period=10.0, release_after=60.0)
APP = replace(STARTED, app_seen=True, last_report_at=-10.0)

VM_SAVE_TABLE = [
    # (name, state, inputs, expected action types)
    ("not due yet", replace(APP, running_time=5.0, last_tick=1.0), inp(now=2.0, task=VMCK), ["ReportStatus"]),
    (
        "due: a VM checkpoint",
        replace(APP, running_time=9.5, last_tick=1.0),
        inp(now=2.0, task=VMCK),
        ["CheckpointVM", "ReportStatus"],
    ),
    ("no period: none", replace(APP, running_time=99.0, last_tick=1.0), inp(now=2.0), ["ReportStatus"]),
    (
        "not before the app runs",
        replace(APP, app_seen=False, running_time=99.0, last_tick=1.0),
        inp(now=2.0, task=VMCK, backend=BackendStatus(VMState.RUNNING, app_started=False)),
        ["ReportStatus"],
    ),
    (
        "not while paused",
        replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.5, running_time=99.0),
        inp(now=2.0, boinc=BoincView(suspended=True), backend=PAUSED, task=VMCK),
        ["ReportStatus"],
    ),
    (
        "not in a critical section",
        replace(APP, running_time=99.0, last_tick=1.0),
        inp(now=2.0, task=VMCK, guest=Status(seq=1, critical_section=True)),
        ["ReportStatus"],
    ),
    (
        "a checkpoint that succeeded is the task's checkpoint",
        replace(APP, last_tick=1.0),
        inp(now=2.0, task=VMCK, vm_checkpoint_cpu=7.0),
        ["SaveState", "ReportStatus"],
    ),
    (
        "a long suspend releases the VM once",
        replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0),
        inp(now=61.0, boinc=BoincView(suspended=True), backend=PAUSED, task=VMCK),
        ["ReleaseTask", "ReportStatus"],
    ),
    (
        "released: not again",
        replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0, released=True),
        inp(now=200.0, boinc=BoincView(suspended=True), backend=CREATED, task=VMCK),
        ["ReportStatus"],
    ),
    (
        "a short suspend keeps the VM",
        replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0),
        inp(now=60.0, boinc=BoincView(suspended=True), backend=PAUSED, task=VMCK),
        ["ReportStatus"],
    ),
    (
        "release_after 0: never",
        replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0),
        inp(now=1e6, boinc=BoincView(suspended=True), backend=PAUSED, task=TaskContext(release_after=0.0)),
        ["ReportStatus"],
    ),
    (
        "resume after a release restores",
        replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0, released=True),
        inp(now=200.0, backend=CREATED, task=VMCK),
        ["RestoreTask", "WriteControl", "ReportStatus"],
    ),
    (
        "a release that did not take (the VM still paused) is tried again after another release_after",
        replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0, released=True),
        inp(now=100.0, boinc=BoincView(suspended=True), backend=PAUSED, task=VMCK),
        ["ReportStatus"],
    ),
    (
        "... and a resume then resumes the paused VM (nothing to restore)",
        replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0, released=True),
        inp(now=100.0, backend=PAUSED, task=VMCK),
        ["ResumeTask", "WriteControl", "ReportStatus"],
    ),
    (
        "resume without a release resumes",
        replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0),
        inp(now=20.0, backend=PAUSED, task=VMCK),
        ["ResumeTask", "WriteControl", "ReportStatus"],
    ),
]


@pytest.mark.parametrize(
    ("name", "state", "inputs", "expected"), VM_SAVE_TABLE, ids=[r[0] for r in VM_SAVE_TABLE]
)
def test_vm_save_decisions(name, state, inputs, expected):
    _, actions = decide(state, inputs)
    assert types(actions) == expected, name


def test_vm_checkpoints_follow_running_time_and_count_once():
    task = TaskContext(vm_checkpoint_period=10.0, cpu_base=100.0)
    st = replace(APP, last_tick=0.0)
    asked = []
    for t in range(1, 36):
        st, actions = decide(st, inp(now=float(t), task=task))
        asked += [t for a in actions if isinstance(a, core.CheckpointVM)]
    assert asked == [10, 20, 30]
    # the loop reports the successful one back: counted once, with the task's CPU
    st, actions = decide(st, inp(now=36.0, task=task, vm_checkpoint_cpu=8.0))
    saves = [a for a in actions if isinstance(a, SaveState)]
    assert len(saves) == 1 and saves[0].checkpoint_cpu == pytest.approx(108.0)
    report = [a for a in actions if isinstance(a, ReportStatus)]
    assert report and report[0].checkpoint_cpu_time == pytest.approx(108.0)
    st, actions = decide(st, inp(now=37.0, task=task, vm_checkpoint_cpu=8.0))
    assert not [a for a in actions if isinstance(a, SaveState)]


def test_wake_in_covers_the_next_vm_checkpoint_and_the_release():
    st, _ = decide(
        replace(APP, running_time=9.5, vm_checkpoint_at=0.0, last_tick=1.0), inp(now=1.2, task=VMCK)
    )
    assert st.wake_in == pytest.approx(0.3, abs=0.01)
    paused = replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0)
    st, _ = decide(paused, inp(now=60.5, boinc=BoincView(suspended=True), backend=PAUSED, task=VMCK))
    assert st.wake_in == pytest.approx(0.5, abs=0.01)


def test_a_release_that_did_not_take_is_retried_after_another_release_after():
    st = replace(APP, paused=True, control_sent=(True, False, 0), paused_since=1.0)
    released_at = []
    backend = PAUSED  # the VM could not be saved: it stays paused in memory
    for t in range(2, 200):
        st, actions = decide(
            st, inp(now=float(t), boinc=BoincView(suspended=True), backend=backend, task=VMCK)
        )
        released_at += [t for a in actions if isinstance(a, core.ReleaseTask)]
    assert released_at == [61, 122, 183]  # every release_after (60 s), counted from the failed try
