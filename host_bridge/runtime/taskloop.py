"""One task's loop: gather the inputs, ask ``core.decide``, apply the actions. Nothing else.

Gathering: the guest's status (``guest``), the backend's poll, the wrapper-style files and the client's
plumbing once a second (``messages``), the client's requests (``boinc_get_status``). Applying: each
action maps to one backend verb, one message (``messages.ClientLink``), one state save or one file move
(``slotfiles``). What to do, when, and how a failure ends the run is the core's (``core.decide``); the
loop sleeps as long as the core says (``CoreState.wake_in``), or until the share watcher's hint (a guest
update) or the task's own exit (the backend's ``exit_fd``) wakes it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from boinc_guest import protocol as P

from .. import core
from ..backends.base import Backend, BackendError, BackendStatus, VMState
from ..boinc.api import AppInitData, BoincApiBase
from ..config import Config
from ..share import GuestFileRefused, RefusalLog, Share
from . import slotfiles
from .guest import GuestView
from .messages import ClientLink, nn
from .plan import TaskPlan
from .store import StateStore

if TYPE_CHECKING:
    from ..vboxcompat import VboxCompat

TASK_DONE = object()  # returned by the loop when the task ended well and the job goes on


class Watcher(Protocol):
    """What the loop sleeps on: ``host_bridge.watch.ShareWatcher`` (a named fake in the tests)."""

    def wait(self, timeout: float) -> bool: ...
    def wake_on(self, fd: int) -> None: ...
    def __enter__(self) -> Watcher: ...
    def __exit__(self, *exc: object) -> None: ...


def share_watcher(folder: Path, cfg: Config) -> Watcher:
    """The real watcher of a task's share: the guest's status file (inotify, or polling)."""
    from ..watch import ShareWatcher

    return ShareWatcher(
        folder, [P.STATUS_FILE], mode=cfg.watch_mode, check_interval=cfg.policy.watch_check_interval
    )


log = logging.getLogger(__name__)


@dataclass
class Session:
    """What every task of one run of the bridge shares."""

    cfg: Config
    api: BoincApiBase
    store: StateStore
    link: ClientLink
    init_data: AppInitData
    refusals: RefusalLog
    job_path: str
    ntasks: int
    clock: Callable[[], float] = time.monotonic
    should_stop: Callable[[], bool] = lambda: False
    on_report: Callable[[core.ReportStatus, int, int], None] | None = None
    daemons: list[Backend] = field(default_factory=list)
    watch: Callable[[Path, Config], Watcher] = share_watcher
    daemon_share: Share | None = None  # the slot, the daemons' working directory (closed at the end)

    def pause_daemons(self, pause: bool) -> None:
        for d in self.daemons:
            try:
                d.pause() if pause else d.resume()
            except BackendError as e:
                log.warning("daemon: %s", e)


def stop_quietly(backend: Backend) -> None:
    """Power off and clean up, logging (not raising) what fails: used when the run already fails."""
    try:
        backend.poweroff()
    except Exception as e:  # already failing: report the first error, not this one
        log.warning("stopping the task failed too: %s", e)
    try:
        backend.cleanup()
    except Exception as e:
        log.warning("cleaning up the task failed too: %s", e)


def discard_quietly(backend: Backend) -> None:
    """``discard``, logging (not raising) what fails: the run is ending anyway (an abort)."""
    try:
        backend.discard()
    except Exception as e:
        log.warning("removing the aborted task's environment failed: %s", e)


class TaskLoop:
    def __init__(
        self,
        session: Session,
        plan: TaskPlan,
        backend: Backend,
        share: Share,
        ctx: core.TaskContext,
        guest: GuestView,
    ) -> None:
        self.s = session
        self.plan = plan
        self.backend = backend
        self.share = share
        self.ctx = ctx
        self.guest = guest
        self.compat: VboxCompat | None = guest.compat
        self.bstatus = BackendStatus(VMState.CREATED)
        self.fraction_value: float | None = None
        self.checkpoint_sig: tuple[int, int] | None = None
        self.files_read_at = -math.inf
        self.last_guest_read = -math.inf
        self.ops = (ctx.fpops_base, ctx.intops_base)  # the job's operation counts, as last reported
        self.cstate = core.CoreState()
        self.failing = False  # the actions being applied end the run for a backend failure
        self.vm_checkpoint_cpu = 0.0  # this run's CPU at the newest VM checkpoint (Inputs.vm_checkpoint_cpu)
        limit_bound = session.init_data.rsc_disk_bound
        self.output_limit = slotfiles.max_output(limit_bound, session.cfg.policy)

    # ------------------------------------------------------------------ the loop

    def run(self, cstate: core.CoreState, failure: core.Failure | None = None) -> core.ExitBridge | object:
        """Run the task to its end: ``TASK_DONE`` (go on with the next task) or the run's outcome.
        ``failure``: the backend could not be created / restored (the first decision handles it)."""
        s = self.s
        self.cstate = cstate
        with contextlib.ExitStack() as stack:
            watcher: Watcher | None = None
            hinted = True
            while True:
                now = s.clock()
                if failure is None:
                    failure = self._gather(now, hinted)
                inp = core.Inputs(
                    now=now,
                    boinc=self._boinc_view(),
                    backend=self.bstatus,
                    guest=self.guest.status,
                    fraction_file=self.fraction_value,
                    checkpoint_file=self.checkpoint_sig,
                    files_read_at=self.files_read_at,
                    failure=failure,
                    trickle_queue=len(s.store.state.trickle_up),
                    trickle_busy=s.link.trickle_busy(),
                    vm_checkpoint_cpu=self.vm_checkpoint_cpu,
                    task=self.ctx,
                )
                self.cstate, actions = core.decide(self.cstate, inp)
                self.failing, failure = failure is not None, None
                for action in actions:
                    try:
                        result = self._apply(action)
                    except BackendError as e:
                        if self.failing:  # already ending because of a failure: the first error stands
                            log.warning("%s", e)
                            continue
                        stop_quietly(self.backend)
                        failure = core.Failure.of(e)
                        break
                    if result is not None:
                        return result
                if failure is not None:
                    continue  # the next decision ends the run for this failure
                if watcher is None:
                    # Set up after the first decision (which starts the task), so that importing and
                    # starting the watcher is not in the task's start-up time; a status written before
                    # the watch existed is read at once (hinted).
                    watcher = stack.enter_context(s.watch(self.plan.share_dir, s.cfg))
                    self._watch_exit(watcher)
                    continue
                hinted = watcher.wait(self.guest.reader.retry_in(self.cstate.wake_in))

    def _watch_exit(self, watcher: Watcher) -> None:
        """The task's own exit wakes the loop at once (a task without the SDK writes no status file:
        its end would otherwise be noticed only at the next tick)."""
        fd = self.backend.exit_fd()
        if fd is not None:
            watcher.wake_on(fd)

    # ------------------------------------------------------------------ gathering

    def _gather(self, now: float, hinted: bool) -> core.Failure | None:
        s = self.s
        policy = s.cfg.policy
        if (
            hinted
            or self.compat is not None
            or now - self.last_guest_read >= policy.report_interval
            or self.guest.reader.retry_due()
        ):
            self._refresh_guest(now)
        try:
            self.bstatus = self.backend.poll()  # backends keep this cheap (CPU re-measured less often)
        except BackendError as e:
            return core.Failure.of(e)
        if self.compat is not None and self.bstatus.state is VMState.EXITED:
            self._refresh_guest(now, final=True)  # trigger files written just before the end
        if now - self.files_read_at >= policy.report_interval:
            self.files_read_at = now
            if self.plan.fraction_file:
                self.fraction_value = self._read_fraction_file(self.plan.fraction_file)
            if self.plan.checkpoint_file:
                self.checkpoint_sig = self._checkpoint_sig(self.plan.checkpoint_file)
            s.link.gather(self.share)
        return None

    def _refresh_guest(self, now: float, *, final: bool = False) -> None:
        self.last_guest_read = now
        running = self.bstatus.state is VMState.RUNNING and not self.cstate.paused
        g = self.guest.refresh(now, running=running, final=final)
        if g is not None and g.td_ack:
            self.s.link.trickle_downs_acked(self.share, g.td_ack)

    def _boinc_view(self) -> core.BoincView:
        b = self.s.api.get_status()
        return core.BoincView(
            suspended=b.suspended,
            quit_request=b.quit_request or self.s.should_stop(),
            abort_request=b.abort_request,
            no_heartbeat=b.no_heartbeat,
            network_suspended=b.network_suspended,
        )

    def _checkpoint_sig(self, name: str) -> tuple[int, int] | None:
        """(mtime_ns, size) of the wrapper's checkpoint file (links not followed); the last one seen
        while it is missing (an app that replaces it)."""
        try:
            st = os.stat(self.plan.share_dir / name, follow_symlinks=False)
        except OSError:
            return self.checkpoint_sig
        return (st.st_mtime_ns, st.st_size)

    def _read_fraction_file(self, name: str) -> float | None:
        try:
            data = self.share.read(name, self.s.cfg.policy.fraction_file_max)
        except GuestFileRefused as e:
            self.s.refusals.report(e)
            return self.fraction_value
        if not data:
            return self.fraction_value
        for tok in reversed(data.decode("ascii", "replace").split()):
            try:
                v = float(tok)
            except ValueError:
                continue
            if math.isfinite(v):
                return min(max(v, 0.0), 1.0)
        return self.fraction_value

    def job_cpu(self) -> float:
        """The job's CPU seconds now, by the core's rule (guest figure bounded by the environment's)."""
        inp = core.Inputs(
            now=0, boinc=core.BoincView(), backend=self.bstatus, guest=self.guest.status, task=self.ctx
        )
        return core.cpu_times(inp, self.cstate.file_checkpoint_cpu)[0]

    # ------------------------------------------------------------------ applying

    def _apply(self, action: core.Action) -> core.ExitBridge | object | None:
        s = self.s
        st = s.store.state
        b = self.backend
        if isinstance(action, core.StartTask):
            b.start()
            st.task_started = True
            if not s.store.save("task started"):
                return core.cannot_save(s.cfg.policy)
            self._report_console()
        elif isinstance(action, core.PauseTask):
            b.pause()
            s.pause_daemons(True)
            log.info("task %d suspended", self.plan.number)
        elif isinstance(action, core.ResumeTask):
            b.resume()
            s.pause_daemons(False)
            log.info("task %d resumed", self.plan.number)
        elif isinstance(action, core.WriteControl):
            s.link.write_control(
                self.share,
                suspended=action.suspended,
                network_suspended=action.network_suspended,
                ack=action.ack,
                quit=action.quit,
                abort=action.abort,
            )
        elif isinstance(action, core.ReportStatus):
            s.link.report(action)
            self.ops = (action.fpops_cumulative, action.intops_cumulative)
            if s.on_report is not None:
                s.on_report(action, self.plan.index, s.ntasks)
        elif isinstance(action, core.ForwardTrickleUp):
            # queued (and checkpointed by the SaveState that follows); handed to BOINC one at a time
            st.trickle_up.append([action.event.variety, action.event.text])
        elif isinstance(action, core.SendTrickleUp):
            s.link.send_queued_trickle_up()
        elif isinstance(action, core.PeriodicTrickleUp):
            s.link.periodic_trickle_up(action.cpu_time)
        elif isinstance(action, core.RequestUpload):
            s.link.upload(self.plan, self.share, action.event, self.output_limit)
        elif isinstance(action, core.SaveState):
            return self._save_state(action)
        elif isinstance(action, core.StopTask):
            saved = False
            if action.save:
                try:
                    saved = b.checkpoint()
                except BackendError as e:
                    log.warning("could not save the task's state, powering it off: %s", e)
            if saved:  # the whole environment was saved: its CPU so far is checkpointed
                st.task_cpu_checkpoint = max(st.task_cpu_checkpoint, self.job_cpu() - st.cpu_done)
            else:
                b.poweroff()
        elif isinstance(action, core.CheckpointVM):
            self._vm_checkpoint()
        elif isinstance(action, core.ReleaseTask):
            if b.checkpoint():
                log.info(
                    "task %d: suspended for long: its VM was saved and ended (memory given back)",
                    self.plan.number,
                )
            else:
                log.info(
                    "task %d: suspended for long, but its VM was not saved: it stays paused (tried again "
                    "after another %.0f s)",
                    self.plan.number,
                    self.ctx.release_after,
                )
        elif isinstance(action, core.RestoreTask):
            if not b.restore():
                b.start()
            b.resume()
            s.pause_daemons(False)
            log.info("task %d resumed", self.plan.number)
        elif isinstance(action, core.EndTask):
            return self.end_task(action)
        elif isinstance(action, core.ExitBridge):
            if action.kind == "abort":
                discard_quietly(b)  # the client gave the task up: nothing is kept for a later run
            elif self.failing:
                stop_quietly(b)
            return action
        return None

    def _vm_checkpoint(self) -> None:
        """A periodic VM checkpoint, unless the slot's disk bound (rsc_disk_bound) would not hold it."""
        b = self.backend
        save = getattr(b, "vm_checkpoint", None)
        if save is None:
            return
        bound = self.s.init_data.rsc_disk_bound
        if bound and math.isfinite(bound) and bound > 0:
            used = slotfiles.folder_bytes(self.s.store.slot)
            last = float(getattr(b, "last_save", {}).get("bytes", 0.0))
            need = last * 1.5 + (1 << 20)  # the first one: the backend stops a save that outgrows the bound
            if used + need > bound:
                log.warning(
                    "task %d: VM checkpoint skipped: the slot uses %.0f MiB and a VM save needs up to %.0f "
                    "MiB more, over the task's disk bound (rsc_disk_bound %.0f MiB); the task runs on (the "
                    "project can raise rsc_disk_bound)",
                    self.plan.number,
                    used / 2**20,
                    need / 2**20,
                    bound / 2**20,
                )
                return
            b.save_limit = int(bound - used)
        if save():
            self.vm_checkpoint_cpu = max(self.vm_checkpoint_cpu, self.bstatus.cpu_time, 1e-9)

    def _save_state(self, action: core.SaveState) -> core.ExitBridge | None:
        s = self.s
        st = s.store.state
        st.last_event_id = max(st.last_event_id, action.last_event_id)
        st.max_fraction = max(st.max_fraction, action.max_fraction)
        if action.finish is not None:
            f = action.finish
            st.task_finish = [f.status, f.message, f.is_notice]
        if action.checkpoint_cpu is not None:
            st.task_cpu_checkpoint = max(0.0, action.checkpoint_cpu - st.cpu_done)
        if action.env_failures is not None:
            st.env_failures = action.env_failures
        if not s.store.save(action.reason):
            stop_quietly(self.backend)
            return core.cannot_save(s.cfg.policy)
        if self.compat is not None:
            from ..vboxcompat import save_running_time

            self.compat.ack(st.last_event_id)
            save_running_time(s.store.slot, self.plan.index, self.compat.running_time)
        return None

    def _report_console(self) -> None:
        """The task's web console / remote desktop address, told to the client once at the start: as
        vboxwrapper does with a vbox_job.xml (its pf_guest_port / remote desktop), else as docker_wrapper
        does (the host port a backend forwards to the task's web graphics port, as http://localhost:P)."""
        endpoints = self.backend.console()
        if self.compat is not None:
            url, addr = self.compat.console(
                host_port=endpoints.host_port, rd_port=endpoints.remote_desktop_port, direct=endpoints.direct
            )
        else:
            port = endpoints.host_port
            url, addr = (f"http://localhost:{port}" if port and not endpoints.direct else None), None
        s = self.s
        try:
            if url and not (s.store.slot / "graphics_app").exists():
                s.api.web_graphics_url(url)
                log.info("web console of the task: %s", url)
            if addr:
                s.api.remote_desktop_addr(addr)
                log.info("remote desktop of the task: %s", addr)
        except NotImplementedError:
            pass

    # ------------------------------------------------------------------ the task's end

    def recover(self, old: P.Status) -> core.ExitBridge | object | None:
        """After a restart: the previous run's status file may hold events the bridge had not processed
        when it died (the restarted app does not carry them over). Deliver them now; a finish event means
        the task had ended: complete it without running it again. Returns None to run the task."""
        s = self.s
        st = s.store.state
        finish: P.Finish | None = None
        if st.task_finish is not None:  # processed (and saved) before the bridge died
            status, message, notice = st.task_finish
            finish = P.Finish(
                id=st.last_event_id, status=int(status), message=str(message), is_notice=bool(notice)
            )
        else:
            last = st.last_event_id
            for ev in old.events:
                if ev.id <= last:
                    continue
                last = ev.id
                if isinstance(ev, P.TrickleUp):
                    st.trickle_up.append([ev.variety, ev.text])
                elif isinstance(ev, P.UploadRequest):
                    s.link.upload(self.plan, self.share, ev, self.output_limit)
                elif isinstance(ev, P.Finish):
                    finish = ev
                    break
                # a temporary exit of the previous run is not repeated: the app decides again
            if last != st.last_event_id:
                st.last_event_id = last
                s.store.save("events recovered from the previous run")
                log.info("delivered the previous run's pending events up to id %d", last)
        if finish is None:
            return None
        log.info(
            "task %d had finished (status %d) before the bridge restarted", self.plan.number, finish.status
        )
        return self.end_task(core.EndTask(finish.status, finish.message, finish.is_notice))

    def end_task(self, action: core.EndTask) -> core.ExitBridge | object:
        s = self.s
        st = s.store.state
        b = self.backend
        try:
            b.poweroff()
        finally:
            b.cleanup()
        if action.status != 0:
            msg = action.message or f"task {self.plan.number} ({self.plan.desc.application}) failed"
            return core.fail(action.status, msg, is_notice=action.is_notice)
        if action.message:
            log.info("task %d: %s", self.plan.number, action.message)
        if not st.outputs_copied:
            err = slotfiles.copy_outputs(self.plan, self.share, self.output_limit, s.cfg.policy)
            if err is not None:
                return err
            st.outputs_copied = True
            s.store.save("outputs copied")
        st.cpu_done = max(st.cpu_done, self.job_cpu())
        st.task_cpu_checkpoint = 0.0
        # the job's operation counts so far (the last report's: this task's on top of the earlier ones)
        st.fpops_done = max(nn(st.fpops_done), nn(self.ops[0]))
        st.intops_done = max(nn(st.intops_done), nn(self.ops[1]))
        st.task_index = self.plan.index + 1
        st.task_started = False
        st.outputs_copied = False
        st.task_finish = None
        st.env_failures = 0
        if not s.store.save("task done"):
            return core.cannot_save(s.cfg.policy)
        log.info("task %d done", self.plan.number)
        return TASK_DONE
