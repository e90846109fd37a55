"""The bridge's decisions: a pure function of (BOINC status, backend state, guest status, time).

``decide(state, inputs) -> (state', actions)`` does no I/O and reads no clock: the runtime gathers the
inputs (the client's requests, the backend's poll, the newest decoded guest status, a monotonic
``now``), calls it once per tick, and applies the returned actions in order. Everything the core must
remember between ticks lives in the frozen ``CoreState`` it returns. The table tests in
``tests/unit/test_core.py`` drive it directly.

One call covers one task of the job; the runtime moves on to the next task when it receives
``EndTask`` with status 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from boinc_guest.protocol import Finish, Status, TemporaryExit, TrickleUp, UploadRequest

from .backends.base import BackendError, BackendStatus, VMState
from .exitcodes import ExitCode
from .policy import DEFAULT_POLICY, Policy

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
    """Fixed facts about the running task, and the bridge's policy."""

    number: int = 1  # the task's place in the job (1-based), for messages
    weight_before: float = 0.0  # sum of the weights of the tasks already finished
    weight: float = 1.0  # this task's weight
    total_weight: float = 1.0  # all tasks' weights
    cpu_base: float = 0.0  # CPU seconds of finished tasks and earlier runs (at their checkpoints)
    fpops_base: float = 0.0  # operations the guests of finished tasks reported (added to this task's)
    intops_base: float = 0.0
    heartbeat_timeout: float = 0.0  # guest silent this long while running -> hung (0: never)
    time_limit: float = 0.0  # the wrapper's <time_limit>: running seconds before the task is ended (0: none)
    env_failures: int = 0  # environment failures in a row before this run (kept in the bridge's state)
    trickle_period: float = 0.0  # --trickle X: a "cpu_time" trickle-up every X seconds (0: none)
    polls_files: bool = False  # the task has wrapper-style files (no hints): wake to read them
    # VM checkpoints (a backend that saves whole VMs): every this many running seconds (0: none), and
    # a suspend this long gives the VM's memory back (saved, ended; the resume restores it; 0: never)
    vm_checkpoint_period: float = 0.0
    release_after: float = 0.0
    policy: Policy = field(default_factory=lambda: DEFAULT_POLICY)


@dataclass(frozen=True)
class Failure:
    """A backend verb failed (``BackendError``): what it said, whether a later retry may work, and whether
    the volunteer must act on the host (a BOINC notice)."""

    message: str
    temporary: bool = False
    notice: bool = False

    @classmethod
    def of(cls, e: BackendError) -> Failure:
        """What the backend's error says, as the core sees it."""
        return cls(str(e), e.temporary, e.notice)


@dataclass(frozen=True)
class Inputs:
    """Everything one decision looks at: the client's requests, the backend's poll, the guest's newest
    status, the wrapper-style files, the task's fixed facts and a monotonic ``now``."""

    now: float  # monotonic seconds
    boinc: BoincView
    backend: BackendStatus
    guest: Status | None = None  # newest accepted guest status (None: none yet)
    fraction_file: float | None = None  # value of the wrapper's fraction_done_filename, if any
    # (mtime_ns, size) of the wrapper's checkpoint_filename (None: none, or not there)
    checkpoint_file: tuple[int, int] | None = None
    files_read_at: float = -math.inf  # when the wrapper-style files were last read (monotonic)
    failure: Failure | None = None  # a backend verb failed since the last decision
    trickle_queue: int = 0  # trickle-ups queued for the client (in the bridge's state)
    trickle_busy: bool = False  # the client has not taken the last one yet (trickle_up.xml in the slot)
    vm_checkpoint_cpu: float = 0.0  # this run's CPU at the newest VM checkpoint that succeeded (0: none)
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
    app_seen: bool = False  # the backend reported the task's app running in this run
    checkpoint_sig: tuple[int, int] | None = None  # the wrapper's checkpoint file, as last seen
    file_checkpoint_cpu: float = 0.0  # this run's CPU when that file last changed
    last_trickle: float | None = None  # when the last periodic trickle-up was sent (or the first tick)
    vm_checkpoint_at: float = 0.0  # running_time when the last VM checkpoint was asked for
    vm_checkpoint_cpu: float = 0.0  # the newest VM checkpoint's CPU already counted
    paused_since: float | None = None  # when we paused the task for a BOINC suspend
    released: bool = False  # the paused VM was saved and ended (long suspend): a resume restores it
    wake_in: float = 0.0  # how long the loop may sleep before the next decision, at most (s)


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
class CheckpointVM:
    """Save the whole VM while it runs (a periodic VM checkpoint); the loop reports the result back
    through ``Inputs.vm_checkpoint_cpu``."""


@dataclass(frozen=True)
class ReleaseTask:
    """A long suspend: save the paused VM and end it, giving its memory back."""


@dataclass(frozen=True)
class RestoreTask:
    """Resume a released task: restore its saved VM (or, without a usable save, start it afresh)."""


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
    env_failures: int | None = None  # the count of environment failures in a row (None: unchanged)


@dataclass(frozen=True)
class SendTrickleUp:
    """Hand the oldest queued trickle-up to the client (one at a time: the API keeps one file)."""


@dataclass(frozen=True)
class PeriodicTrickleUp:
    """--trickle: a "cpu_time" trickle-up with the job's CPU seconds, as BOINC's wrapper sends."""

    cpu_time: float


@dataclass(frozen=True)
class EndTask:
    """The task's program ended. Status 0: copy outputs back, go on with the next task."""

    status: int
    message: str = ""
    is_notice: bool = False


@dataclass(frozen=True)
class ExitBridge:
    """End the bridge: the run's outcome, which only the CLI acts on.
    kind: finish | temporary_exit | quit | abort | lost_client."""

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
    | CheckpointVM
    | ReleaseTask
    | RestoreTask
    | ReportStatus
    | ForwardTrickleUp
    | RequestUpload
    | WriteControl
    | SaveState
    | SendTrickleUp
    | PeriodicTrickleUp
    | EndTask
    | ExitBridge
)


# ---------------------------------------------------------------- the decision


def overall_fraction(task: TaskContext, task_fraction: float) -> float:
    """Fraction done of the whole job, with this task at ``task_fraction``."""
    total = task.total_weight if task.total_weight > 0 else 1.0
    f = (task.weight_before + task.weight * min(max(task_fraction, 0.0), 1.0)) / total
    return min(max(f, 0.0), 1.0)


def cpu_times(inp: Inputs, file_checkpoint_cpu: float = 0.0) -> tuple[float, float]:
    """(cpu_time, checkpoint_cpu_time) of the job so far.

    The guest's own figure is used when it reports one, bounded by what the environment (process
    tree / VM process) really used when that is known: a guest cannot claim more CPU than it had.
    ``file_checkpoint_cpu``: this run's CPU when the wrapper's checkpoint file last changed.
    """
    backend_cpu = max(inp.backend.cpu_time, 0.0)
    g = inp.guest
    if g is not None and g.cpu_time > 0:
        run_cpu = min(g.cpu_time, backend_cpu) if backend_cpu > 0 else g.cpu_time
        ckpt = min(g.checkpoint_cpu_time, run_cpu)
    else:
        run_cpu = backend_cpu
        ckpt = 0.0
    ckpt = max(ckpt, min(file_checkpoint_cpu, run_cpu))
    base = inp.task.cpu_base
    return base + run_cpu, base + ckpt


# -- outcomes built in one place (the task loop uses these for what goes wrong while it applies actions)


def fail(status: int, message: str, *, is_notice: bool = False) -> ExitBridge:
    """The job ends with ``status`` (BOINC's boinc_finish)."""
    return ExitBridge("finish", int(status), message, is_notice=is_notice)


def retry_later(message: str, delay: float, *, is_notice: bool = False) -> ExitBridge:
    """BOINC's temporary exit: the client starts the task again after ``delay`` seconds."""
    return ExitBridge("temporary_exit", 0, message, delay=delay, is_notice=is_notice)


def cannot_save(policy: Policy) -> ExitBridge:
    """The bridge's own state could not be written: never run on without a checkpoint."""
    return retry_later("cannot save the bridge's state (is the disk full?)", policy.disk_delay)


def _end_with_failure(
    state: CoreState, actions: list[Action], failure: Failure, task: TaskContext
) -> tuple[CoreState, list[Action]]:
    """How a backend failure ends the run: a permanent one fails the task (EXIT_CHILD_FAILED); a
    temporary one is a temporary exit, except that failures before the task's app started are counted
    over restarts and the ``max_env_failures``-th in a row fails the task (the VM image or the job's
    settings are then most likely wrong, not the host's moment)."""
    policy = task.policy
    msg = f"task {task.number}: {failure.message}"
    end: list[Action] = [*actions, StopTask(save=False)]
    notice = failure.notice
    if not failure.temporary:
        exit_ = fail(ExitCode.EXIT_CHILD_FAILED, msg, is_notice=notice)
    elif state.app_seen:
        exit_ = retry_later(msg, policy.failed_delay, is_notice=notice)
    else:
        n = task.env_failures + 1
        limit = policy.max_env_failures
        end.append(SaveState("environment failure", state.last_event_id, env_failures=n))
        if n < limit:
            exit_ = retry_later(
                f"{msg} (failure {n} of {limit} before the task's app started; the task is retried later)",
                policy.failed_delay,
                is_notice=notice,
            )
        else:
            exit_ = fail(
                ExitCode.EXIT_CHILD_FAILED,
                f"{msg} -- the task's environment failed {n} times in a row before the task's app "
                "started, so the task is given up: the failure above says what to fix (for a VM, most "
                "likely the image or the job file's vm_* settings, with the VM's console lines above in "
                "stderr.txt; for a container, the image or this host's engine set-up)",
                is_notice=notice,
            )
    return _evolve(state, ending=True), [*end, exit_]


def decide(state: CoreState, inp: Inputs) -> tuple[CoreState, list[Action]]:
    if state.ending:
        # nothing more to decide, unless a backend verb failed while the run was ending (a quit's
        # power-off): that failure is then the outcome
        return _end_with_failure(state, [], inp.failure, inp.task) if inp.failure else (state, [])
    actions: list[Action] = []
    now = inp.now
    b = inp.boinc
    backend = inp.backend
    task = inp.task
    policy = task.policy

    # Time the task has been running (not paused) since the last tick; a long gap (host sleep,
    # the bridge itself stopped) does not count, so no false "hung" alarm after a suspend.
    gap = 0.0 if state.last_tick is None else max(0.0, now - state.last_tick)
    running = backend.state is VMState.RUNNING and not state.paused
    ran = min(gap, policy.max_tick_gap) if running else 0.0
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

    # 2. A backend verb that failed ends the run (how: _end_with_failure).
    if inp.failure is not None:
        return _end_with_failure(state, actions, inp.failure, task)

    if not state.started:
        state = _evolve(state, started=True, last_trickle=now)
        # the control file first: the app reads its init data (preferences, ...) at boinc_init
        actions.append(
            WriteControl(suspended=False, network_suspended=b.network_suspended, ack=state.last_event_id)
        )
        actions.append(StartTask())
        state = _evolve(state, control_sent=(False, b.network_suspended, state.last_event_id))

    # The task's app runs: earlier environment failures were the moment's, not the image's.
    if not state.app_seen and backend.app_started and backend.state in _APP_STATES:
        state = _evolve(state, app_seen=True)
        if task.env_failures:
            actions.append(SaveState("the task's app started", state.last_event_id, env_failures=0))

    # 3. The guest's news.
    g = inp.guest
    guest_changed = False
    checkpoint_cpu: float | None = None
    queued = inp.trickle_queue
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
                queued += 1
            elif isinstance(ev, UploadRequest):
                actions.append(RequestUpload(ev))
            elif isinstance(ev, Finish):
                if state.finish is None:
                    state = _evolve(state, finish=ev, finish_seen_at=now)
            elif isinstance(ev, TemporaryExit):
                state = _evolve(state, last_event_id=last_id, ending=True)
                actions.append(SaveState("guest temporary exit", last_id, None, state.max_fraction))
                actions.append(StopTask(save=False))
                actions.append(retry_later(ev.reason, ev.delay, is_notice=ev.is_notice))
                return state, actions
        if g.checkpoint_count != state.guest_checkpoints:
            state = _evolve(state, guest_checkpoints=g.checkpoint_count)
            checkpoint_cpu = cpu_times(inp, state.file_checkpoint_cpu)[1]
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

    # The wrapper's checkpoint_filename changed: the app checkpointed (BOINC's wrapper counts it so).
    sig = inp.checkpoint_file
    if sig is not None and sig != state.checkpoint_sig:
        if state.checkpoint_sig is not None:
            cpu = cpu_times(inp, state.file_checkpoint_cpu)[0]
            state = _evolve(state, file_checkpoint_cpu=max(0.0, cpu - task.cpu_base))
            actions.append(
                SaveState(
                    "checkpoint file changed", state.last_event_id, cpu, state.max_fraction, state.finish
                )
            )
        state = _evolve(state, checkpoint_sig=sig)

    # A VM checkpoint that succeeded counts as the task's checkpoint (its CPU, as BOINC's wrapper counts
    # the checkpoint file's).
    if inp.vm_checkpoint_cpu > state.vm_checkpoint_cpu:
        state = _evolve(
            state,
            vm_checkpoint_cpu=inp.vm_checkpoint_cpu,
            file_checkpoint_cpu=max(state.file_checkpoint_cpu, inp.vm_checkpoint_cpu),
        )
        cpu = cpu_times(inp, state.file_checkpoint_cpu)[1]
        actions.append(SaveState("VM checkpoint", state.last_event_id, cpu, state.max_fraction, state.finish))

    # 4. Suspend / resume (deferred while the guest is in a critical section, as BOINC's API does); a
    # long suspend saves the VM and ends it (its memory goes back to the host), the resume restores it.
    in_critical = g is not None and g.critical_section
    if state.released and backend.state is VMState.PAUSED:
        # the release did not take (the VM could not be saved: it is still paused in memory): a resume
        # resumes it, a suspend that goes on tries again after another release_after
        state = _evolve(state, released=False, paused_since=now)
    if b.suspended and not state.paused and not in_critical and backend.state is VMState.RUNNING:
        state = _evolve(state, paused=True, paused_since=now)
        actions.append(PauseTask())
    elif not b.suspended and state.paused:
        actions.append(RestoreTask() if state.released else ResumeTask())
        state = _evolve(state, paused=False, paused_since=None, released=False)
    elif (
        state.paused
        and not state.released
        and task.release_after > 0
        and state.paused_since is not None
        and now - state.paused_since >= task.release_after
    ):
        state = _evolve(state, released=True)
        actions.append(ReleaseTask())

    # Periodic VM checkpoints, counted in running time (not while paused, booting or in a critical section).
    period = task.vm_checkpoint_period
    if (
        period > 0
        and running
        and state.app_seen
        and not in_critical
        and state.running_time - state.vm_checkpoint_at >= period
    ):
        state = _evolve(state, vm_checkpoint_at=state.running_time)
        actions.append(CheckpointVM())

    # 5. Control file: tell the guest what changed (suspend flag, network, acks).
    ctl = (state.paused, b.network_suspended, state.last_event_id)
    if ctl != state.control_sent:
        state = _evolve(state, control_sent=ctl)
        actions.append(WriteControl(suspended=ctl[0], network_suspended=ctl[1], ack=ctl[2]))

    # 6. Trickle-ups: the guest's, one at a time, in order; and --trickle's periodic one.
    if queued > 0 and not inp.trickle_busy:
        actions.append(SendTrickleUp())
    trickle_due = state.last_trickle is not None and now - state.last_trickle >= task.trickle_period
    if task.trickle_period > 0 and trickle_due:
        state = _evolve(state, last_trickle=now)
        actions.append(PeriodicTrickleUp(cpu_times(inp, state.file_checkpoint_cpu)[0]))

    # 7. The environment's state.
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
        failure = Failure(backend.error or "the task's environment stopped unexpectedly", temporary=True)
        return _end_with_failure(state, actions, failure, task)
    fin = state.finish
    if (
        fin is not None
        and state.finish_seen_at is not None
        and now - state.finish_seen_at >= policy.finish_grace
    ):
        actions.extend(_final_report(state, inp, done=fin.status == 0))
        return _evolve(state, ending=True), [
            *actions,
            StopTask(save=False),
            EndTask(fin.status, fin.message, fin.is_notice),
        ]

    # 8. The wrapper's <time_limit>: the task is ended and counts as done, as with BOINC's wrapper
    # (TASK::poll: kill, status 0), e.g. an app that runs until it is stopped; the job goes on.
    limit = task.time_limit
    if limit > 0 and state.running_time >= limit:
        actions.extend(_final_report(state, inp, done=True))
        return _evolve(state, ending=True), [
            *actions,
            StopTask(save=False),
            EndTask(0, f"reached its time limit of {limit:g} s (<time_limit>): ended, counted as done"),
        ]

    # 9. A guest that stopped talking while running is hung.
    hb_timeout = task.heartbeat_timeout
    if hb_timeout > 0 and g is not None and state.silent_running >= hb_timeout:
        return _evolve(state, ending=True), [
            *actions,
            StopTask(save=False),
            retry_later(
                f"no heartbeat from the task for {state.silent_running:.0f} s of running time; "
                "it will be restarted from its last checkpoint",
                policy.hung_delay,
            ),
        ]

    # 10. Report progress: at once when the guest changed, otherwise at least every report_interval.
    if guest_changed or now - state.last_report_at >= policy.report_interval:
        report = _report(state, inp)
        key = (
            report.fraction_done,
            report.cpu_time,
            report.checkpoint_cpu_time,
            report.fpops_cumulative,
            report.intops_cumulative,
            float(report.want_network),
        )
        if key != state.last_report or now - state.last_report_at >= policy.report_interval:
            state = _evolve(state, last_report=key, last_report_at=now, max_fraction=report.fraction_done)
            actions.append(report)
    return _evolve(state, wake_in=_wake_in(state, inp)), actions


def _wake_in(state: CoreState, inp: Inputs) -> float:
    """How long the loop may sleep: the tick, shorter while a finished guest is expected to exit (its
    exit is watched closely: task end -> bridge exit), while wrapper-style files (which give no hints)
    are due, or before a periodic trickle-up."""
    policy = inp.task.policy
    wake = policy.tick
    if state.finish is not None:
        soon = state.finish_seen_at is None or inp.now - state.finish_seen_at < policy.finish_fast_window
        wake = min(wake, policy.finish_poll_fast if soon else policy.finish_poll_slow)
    if inp.task.polls_files:
        wake = min(wake, inp.files_read_at + policy.report_interval - inp.now)
    if inp.task.trickle_period > 0 and state.last_trickle is not None:
        wake = min(wake, state.last_trickle + inp.task.trickle_period - inp.now)
    if inp.task.vm_checkpoint_period > 0 and not state.paused:
        wake = min(wake, state.vm_checkpoint_at + inp.task.vm_checkpoint_period - state.running_time)
    if inp.task.release_after > 0 and state.paused and not state.released and state.paused_since is not None:
        wake = min(wake, state.paused_since + inp.task.release_after - inp.now)
    return max(0.0, wake)


_APP_STATES = frozenset({VMState.RUNNING, VMState.PAUSED, VMState.EXITED})


def _task_fraction(inp: Inputs) -> float:
    if inp.guest is not None:
        return inp.guest.fraction_done
    if inp.fraction_file is not None and math.isfinite(inp.fraction_file):
        return inp.fraction_file
    return 0.0


def _report(state: CoreState, inp: Inputs, *, task_fraction: float | None = None) -> ReportStatus:
    tf = _task_fraction(inp) if task_fraction is None else task_fraction
    fraction = max(state.max_fraction, overall_fraction(inp.task, tf))
    cpu, ckpt = cpu_times(inp, state.file_checkpoint_cpu)
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
