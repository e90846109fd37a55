"""The bridge's decisions: a pure function of (BOINC status, backend state, guest status, time).

``decide(state, inputs) -> (state', actions)`` does no I/O and reads no clock: the runtime gathers the
inputs (the client's requests, the backend's poll, the newest decoded guest status, a monotonic
``now``), calls it once per tick, and applies the returned actions in order. Everything the core must
remember between ticks lives in the frozen ``CoreState`` it returns. The table tests in
``tests/test_core.py`` drive it directly.

One call covers one task of the job; the runtime moves on to the next task when it receives
``EndTask`` with status 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from boinc_guest.protocol import Finish, Status, TemporaryExit, TrickleUp, UploadRequest

from .backends.base import BackendStatus, VMState
from .exitcodes import ExitCode

# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class BoincView:
    """What the BOINC client asks for (from ``boinc_get_status``)."""

    suspended: bool = False
    quit_request: bool = False
    abort_request: bool = False
    no_heartbeat: bool = False
    network_suspended: bool = False


@dataclass(frozen=True)
class TaskContext:
    """Fixed facts about the running task and the bridge's policy."""

    weight_before: float = 0.0  # sum of the weights of the tasks already finished
    weight: float = 1.0  # this task's weight
    total_weight: float = 1.0  # all tasks' weights
    cpu_base: float = 0.0  # CPU seconds of finished tasks and earlier runs (at their checkpoints)
    fpops_base: float = 0.0  # operations the guests of finished tasks reported (added to this task's)
    intops_base: float = 0.0
    report_interval: float = 1.0  # refresh the client's status at least this often (s)
    finish_grace: float = 10.0  # after the guest's finish event, how long to wait for it to exit (s)
    heartbeat_timeout: float = 0.0  # guest silent this long while running -> hung (0: never)
    max_tick_gap: float = 5.0  # a longer gap between ticks (sleep, SIGSTOP) does not count as running
    hung_delay: float = 600.0  # temporary-exit delay after a hung guest (s)
    failed_delay: float = 300.0  # temporary-exit delay after the environment failed (s)
    time_limit: float = 0.0  # the wrapper's <time_limit>: running seconds before the task is ended (0: none)


@dataclass(frozen=True)
class Inputs:
    """Everything one decision looks at: the client's requests, the backend's poll, the guest's newest
    status, the wrapper-style files, the task's fixed facts and a monotonic ``now``."""

    now: float  # monotonic seconds
    boinc: BoincView
    backend: BackendStatus
    guest: Status | None = None  # newest accepted guest status (None: none yet)
    fraction_file: float | None = None  # value of the wrapper's fraction_done_filename, if any
    file_checkpoint_cpu: float = 0.0  # this run's CPU when the wrapper's checkpoint_filename last changed
    task: TaskContext = field(default_factory=TaskContext)


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class CoreState:
    """What the core remembers between decisions (returned by ``decide``, never changed in place)."""

    started: bool = False  # StartTask was issued
    paused: bool = False  # we paused the task for a BOINC suspend
    ending: bool = False  # an ExitBridge / EndTask was issued: nothing more to decide
    last_event_id: int = 0  # largest guest event id processed (checkpointed by the runtime)
    finish: Finish | None = None  # the guest's finish event, once seen
    finish_seen_at: float | None = None
    max_fraction: float = 0.0  # overall fraction done reported so far (never goes backwards)
    last_report: tuple[float, ...] | None = None
    last_report_at: float = -math.inf
    guest_seq: int | None = None
    guest_hb: int | None = None
    guest_checkpoints: int = 0
    silent_running: float = 0.0  # running seconds since the guest last changed seq or hb
    running_time: float = 0.0  # running (not paused) seconds of the task in this run
    last_tick: float | None = None
    control_sent: tuple[bool, bool, int] | None = None  # (suspended, network_suspended, ack) last written


_STATE_FIELDS = frozenset(f.name for f in fields(CoreState))


def _evolve(state: CoreState, **changes: Any) -> CoreState:
    """``dataclasses.replace(state, **changes)``, about five times cheaper: a copy of the instance's
    dict instead of a call of the generated ``__init__`` (CoreState has no ``__post_init__``, no
    ``InitVar``). ``decide`` derives a few states per update and the bridge's CPU budget is small."""
    if not changes.keys() <= _STATE_FIELDS:
        raise TypeError(f"CoreState has no field(s) {sorted(changes.keys() - _STATE_FIELDS)}")
    new = object.__new__(CoreState)
    new.__dict__.update(state.__dict__, **changes)
    return new


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class StartTask:
    """Start (or, after a restart, resume) the task's environment."""


@dataclass(frozen=True)
class PauseTask:
    """Suspend the task's environment (BOINC suspend)."""


@dataclass(frozen=True)
class ResumeTask:
    """Continue the task's environment (BOINC resume)."""


@dataclass(frozen=True)
class StopTask:
    """Stop the task's environment. ``save``: keep its state for a later restart (quit) where the
    backend can; otherwise power it off."""

    save: bool


@dataclass(frozen=True)
class ReportStatus:
    """Send the client a status message (fraction done, CPU, checkpoint CPU, ops)."""

    fraction_done: float
    cpu_time: float
    checkpoint_cpu_time: float
    fpops_per_cpu_sec: float = 0.0
    fpops_cumulative: float = 0.0
    intops_per_cpu_sec: float = 0.0
    intops_cumulative: float = 0.0
    want_network: bool = False


@dataclass(frozen=True)
class ForwardTrickleUp:
    """Queue a guest trickle-up for the client."""

    event: TrickleUp


@dataclass(frozen=True)
class RequestUpload:
    """Ask the client for an intermediate upload of a guest file."""

    event: UploadRequest


@dataclass(frozen=True)
class WriteControl:
    """Rewrite the control file for the guest."""

    suspended: bool
    network_suspended: bool
    ack: int
    quit: bool = False
    abort: bool = False


@dataclass(frozen=True)
class SaveState:
    """Checkpoint the bridge's own state (the runtime adds what it owns)."""

    reason: str
    last_event_id: int
    checkpoint_cpu: float | None = None  # the task's CPU at the guest's last checkpoint, if it changed
    max_fraction: float = 0.0
    # the guest's finish event once processed: recorded with the event id, so that a bridge killed
    # before the task was done completes it after a restart instead of running it again
    finish: Finish | None = None


@dataclass(frozen=True)
class EndTask:
    """The task's program ended. Status 0: copy outputs back, go on with the next task."""

    status: int
    message: str = ""
    is_notice: bool = False


@dataclass(frozen=True)
class ExitBridge:
    """End the bridge. kind: finish | temporary_exit | quit | abort | lost_client."""

    kind: str
    status: int = 0
    message: str = ""
    delay: float = 0.0
    is_notice: bool = False


Action = (
    StartTask
    | PauseTask
    | ResumeTask
    | StopTask
    | ReportStatus
    | ForwardTrickleUp
    | RequestUpload
    | WriteControl
    | SaveState
    | EndTask
    | ExitBridge
)


# ---------------------------------------------------------------- the decision


def overall_fraction(task: TaskContext, task_fraction: float) -> float:
    """Fraction done of the whole job, with this task at ``task_fraction``."""
    total = task.total_weight if task.total_weight > 0 else 1.0
    f = (task.weight_before + task.weight * min(max(task_fraction, 0.0), 1.0)) / total
    return min(max(f, 0.0), 1.0)


def cpu_times(inp: Inputs) -> tuple[float, float]:
    """(cpu_time, checkpoint_cpu_time) of the job so far.

    The guest's own figure is used when it reports one, bounded by what the environment (process
    tree / VM process) really used when that is known: a guest cannot claim more CPU than it had.
    """
    backend_cpu = max(inp.backend.cpu_time, 0.0)
    g = inp.guest
    if g is not None and g.cpu_time > 0:
        run_cpu = min(g.cpu_time, backend_cpu) if backend_cpu > 0 else g.cpu_time
        ckpt = min(g.checkpoint_cpu_time, run_cpu)
    else:
        run_cpu = backend_cpu
        ckpt = 0.0
    ckpt = max(ckpt, min(inp.file_checkpoint_cpu, run_cpu))
    base = inp.task.cpu_base
    return base + run_cpu, base + ckpt


def decide(state: CoreState, inp: Inputs) -> tuple[CoreState, list[Action]]:
    if state.ending:
        return state, []
    actions: list[Action] = []
    now = inp.now
    b = inp.boinc
    backend = inp.backend

    # Time the task has been running (not paused) since the last tick; a long gap (host sleep,
    # the bridge itself stopped) does not count, so no false "hung" alarm after a suspend.
    gap = 0.0 if state.last_tick is None else max(0.0, now - state.last_tick)
    running = backend.state is VMState.RUNNING and not state.paused
    ran = min(gap, inp.task.max_tick_gap) if running else 0.0
    state = _evolve(state, last_tick=now, running_time=state.running_time + ran)

    # 1. The client's orders come first.
    if b.abort_request:
        return _evolve(state, ending=True), [
            StopTask(save=False),
            ExitBridge("abort", int(ExitCode.EXIT_ABORTED_BY_CLIENT), "aborted by the BOINC client"),
        ]
    if b.no_heartbeat:
        return _evolve(state, ending=True), [
            StopTask(save=True),
            SaveState("lost client", state.last_event_id, None, state.max_fraction, state.finish),
            ExitBridge("lost_client", 0, "lost contact with the BOINC client; the task will resume later"),
        ]
    if b.quit_request:
        return _evolve(state, ending=True), [
            StopTask(save=True),
            SaveState("quit", state.last_event_id, None, state.max_fraction, state.finish),
            ExitBridge("quit", 0, "quit requested by the BOINC client; the task will resume later"),
        ]

    if not state.started:
        state = _evolve(state, started=True)
        actions.append(StartTask())
        actions.append(
            WriteControl(suspended=False, network_suspended=b.network_suspended, ack=state.last_event_id)
        )
        state = _evolve(state, control_sent=(False, b.network_suspended, state.last_event_id))

    # 2. The guest's news.
    g = inp.guest
    guest_changed = False
    checkpoint_cpu: float | None = None
    if g is not None and (g.seq != state.guest_seq or g.hb != state.guest_hb):
        guest_changed = True
        state = _evolve(state, guest_seq=g.seq, guest_hb=g.hb, silent_running=0.0)
        last_id = state.last_event_id
        for ev in g.events:
            if ev.id <= last_id:
                continue
            last_id = ev.id
            if isinstance(ev, TrickleUp):
                actions.append(ForwardTrickleUp(ev))
            elif isinstance(ev, UploadRequest):
                actions.append(RequestUpload(ev))
            elif isinstance(ev, Finish):
                if state.finish is None:
                    state = _evolve(state, finish=ev, finish_seen_at=now)
            elif isinstance(ev, TemporaryExit):
                state = _evolve(state, last_event_id=last_id, ending=True)
                actions.append(SaveState("guest temporary exit", last_id, None, state.max_fraction))
                actions.append(StopTask(save=False))
                actions.append(
                    ExitBridge("temporary_exit", 0, ev.reason, delay=ev.delay, is_notice=ev.is_notice)
                )
                return state, actions
        if g.checkpoint_count != state.guest_checkpoints:
            state = _evolve(state, guest_checkpoints=g.checkpoint_count)
            checkpoint_cpu = cpu_times(inp)[1]
        if last_id != state.last_event_id or checkpoint_cpu is not None:
            state = _evolve(state, last_event_id=last_id)
            actions.append(
                SaveState(
                    "guest checkpoint" if checkpoint_cpu is not None else "guest events",
                    last_id,
                    checkpoint_cpu,
                    state.max_fraction,
                    state.finish,
                )
            )
    elif g is not None:
        state = _evolve(state, silent_running=state.silent_running + ran)

    # 3. Suspend / resume (deferred while the guest is in a critical section, as BOINC's API does).
    in_critical = g is not None and g.critical_section
    if b.suspended and not state.paused and not in_critical and backend.state is VMState.RUNNING:
        state = _evolve(state, paused=True)
        actions.append(PauseTask())
    elif not b.suspended and state.paused:
        state = _evolve(state, paused=False)
        actions.append(ResumeTask())

    # 4. Control file: tell the guest what changed (suspend flag, network, acks).
    ctl = (state.paused, b.network_suspended, state.last_event_id)
    if ctl != state.control_sent:
        state = _evolve(state, control_sent=ctl)
        actions.append(WriteControl(suspended=ctl[0], network_suspended=ctl[1], ack=ctl[2]))

    # 5. The environment's state.
    if backend.state is VMState.EXITED:
        fin = state.finish
        code = backend.exit_code if backend.exit_code is not None else 0
        if fin is not None:
            status, message, notice = fin.status, fin.message, fin.is_notice
        elif code < 0:
            status, message, notice = (
                int(ExitCode.EXIT_SIGNAL),
                f"the task was killed by signal {-code}",
                False,
            )
        else:
            status, message, notice = code, "" if code == 0 else f"the task exited with status {code}", False
        if backend.error and fin is None and status != 0:
            message = backend.error  # the backend knows more (e.g. the guest wrote an invalid exit file)
        actions.extend(_final_report(state, inp, done=status == 0))
        return _evolve(state, ending=True), [*actions, EndTask(status, message, notice)]
    if backend.state is VMState.FAILED:
        return _evolve(state, ending=True), [
            *actions,
            StopTask(save=False),
            ExitBridge(
                "temporary_exit",
                0,
                backend.error or "the task's environment stopped unexpectedly",
                delay=inp.task.failed_delay,
            ),
        ]
    fin = state.finish
    if (
        fin is not None
        and state.finish_seen_at is not None
        and now - state.finish_seen_at >= inp.task.finish_grace
    ):
        actions.extend(_final_report(state, inp, done=fin.status == 0))
        return _evolve(state, ending=True), [
            *actions,
            StopTask(save=False),
            EndTask(fin.status, fin.message, fin.is_notice),
        ]

    # 6. The wrapper's <time_limit>: the task is ended and counts as done, as with BOINC's wrapper
    # (TASK::poll: kill, status 0), e.g. an app that runs until it is stopped; the job goes on.
    limit = inp.task.time_limit
    if limit > 0 and state.running_time >= limit:
        actions.extend(_final_report(state, inp, done=True))
        return _evolve(state, ending=True), [
            *actions,
            StopTask(save=False),
            EndTask(0, f"reached its time limit of {limit:g} s (<time_limit>): ended, counted as done"),
        ]

    # 7. A guest that stopped talking while running is hung.
    hb_timeout = inp.task.heartbeat_timeout
    if hb_timeout > 0 and g is not None and state.silent_running >= hb_timeout:
        return _evolve(state, ending=True), [
            *actions,
            StopTask(save=False),
            ExitBridge(
                "temporary_exit",
                0,
                f"no heartbeat from the task for {state.silent_running:.0f} s of running time; "
                "it will be restarted from its last checkpoint",
                delay=inp.task.hung_delay,
            ),
        ]

    # 8. Report progress: at once when the guest changed, otherwise at least every report_interval.
    if guest_changed or now - state.last_report_at >= inp.task.report_interval:
        report = _report(state, inp)
        key = (
            report.fraction_done,
            report.cpu_time,
            report.checkpoint_cpu_time,
            report.fpops_cumulative,
            report.intops_cumulative,
            float(report.want_network),
        )
        if key != state.last_report or now - state.last_report_at >= inp.task.report_interval:
            state = _evolve(state, last_report=key, last_report_at=now, max_fraction=report.fraction_done)
            actions.append(report)
    return state, actions


def _task_fraction(inp: Inputs) -> float:
    if inp.guest is not None:
        return inp.guest.fraction_done
    if inp.fraction_file is not None and math.isfinite(inp.fraction_file):
        return inp.fraction_file
    return 0.0


def _report(state: CoreState, inp: Inputs, *, task_fraction: float | None = None) -> ReportStatus:
    tf = _task_fraction(inp) if task_fraction is None else task_fraction
    fraction = max(state.max_fraction, overall_fraction(inp.task, tf))
    cpu, ckpt = cpu_times(inp)
    g = inp.guest
    return ReportStatus(
        fraction_done=fraction,
        cpu_time=cpu,
        checkpoint_cpu_time=ckpt,
        fpops_per_cpu_sec=g.fpops_per_cpu_sec if g else 0.0,
        fpops_cumulative=inp.task.fpops_base + (g.fpops_cumulative if g else 0.0),
        intops_per_cpu_sec=g.intops_per_cpu_sec if g else 0.0,
        intops_cumulative=inp.task.intops_base + (g.intops_cumulative if g else 0.0),
        want_network=g.want_network if g else False,
    )


def _final_report(state: CoreState, inp: Inputs, *, done: bool) -> list[Action]:
    """The last status of a task: a task that ended well is complete (fraction 1 for its part)."""
    report = _report(state, inp, task_fraction=1.0 if done else None)
    # the task's CPU counts as checkpointed once it has ended
    return [replace(report, checkpoint_cpu_time=report.cpu_time)] if done else [report]
