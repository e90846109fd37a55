"""One run of the bridge: load the job, restore the bridge's checkpoint, plan the tasks, run them one
after the other (``taskloop``), and return the run's outcome (``core.ExitBridge``) for the CLI to act
on. Nothing here ends the process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from boinc_guest import protocol as P

from .. import core
from ..backends import make_backend
from ..backends.base import Backend, BackendError
from ..boinc.api import AppInitData, BoincApiBase
from ..config import Config
from ..exitcodes import ERR_XML_PARSE, ExitCode
from ..jobfile import JobFileError, JobSpec, parse_job_file
from ..share import GuestFileRefused, RefusalLog, Share
from ..slot import resolve_logical
from . import slotfiles
from .guest import GuestView, StatusReader
from .messages import ClientLink, nn
from .plan import JobPlan, PlanContext, TaskPlan, digest, plan_daemon, plan_job
from .store import StateStore
from .taskloop import TASK_DONE, Session, TaskLoop, Watcher, share_watcher, stop_quietly

log = logging.getLogger(__name__)

VBOX_JOB_FILE = "vbox_job.xml"  # vboxwrapper's job file (logical name), honoured when present

BackendFactory = Callable[[TaskPlan, PlanContext], Backend]


def default_backend_factory(plan: TaskPlan, ctx: PlanContext) -> Backend:
    """The backend for the plan's typed settings (``host_bridge.backends.make_backend``)."""
    return make_backend(plan.settings)


def job_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return digest(f.read(4 * 1024 * 1024))


def load_job(slot: Path, job_file: str) -> tuple[JobSpec, object | None]:
    """The job file (--job: a logical name in the slot, resolved through BOINC's soft link, or a path
    with a '/': absolute, or relative to the slot) and vboxwrapper's vbox_job.xml beside it, if any.
    Raises JobFileError / OSError."""
    path = slot / job_file if "/" in job_file else resolve_logical(slot, job_file)
    if job_file == "job.xml" and not path.exists():
        path = _docker_job_file(slot) or path
    job = parse_job_file(path)
    vbox_job = None
    vbox_path = resolve_logical(slot, VBOX_JOB_FILE)
    if vbox_path.is_file():
        from ..jobfile.vbox import parse_vbox_job

        vbox_job = parse_vbox_job(vbox_path)
    return job, vbox_job


def _docker_job_file(slot: Path) -> Path | None:
    """A docker_wrapper app version in the slot (no job.xml): its job.toml, or, with only a Dockerfile,
    an empty one with docker_wrapper's defaults (written into the slot). docs/containers.md"""
    toml = resolve_logical(slot, "job.toml")
    if toml.is_file():
        return toml
    if resolve_logical(slot, "Dockerfile").is_file():
        default = slot / "job_default.toml"
        if not default.exists():
            default.write_text("# docker_wrapper's defaults: the app version ships a Dockerfile only\n")
        return default
    return None


class Runtime:
    def __init__(
        self,
        config: Config,
        api: BoincApiBase,
        *,
        backend_factory: BackendFactory = default_backend_factory,
        clock: Callable[[], float] = time.monotonic,
        on_report: Callable[[core.ReportStatus, int, int], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        watcher_factory: Callable[[Path, Config], Watcher] = share_watcher,
    ) -> None:
        self.watcher_factory = watcher_factory
        self.cfg = config
        self.api = api
        self.slot = config.slot_dir
        self.backend_factory = backend_factory
        self.clock = clock
        self.on_report = on_report
        self.should_stop = should_stop
        self.store = StateStore(self.slot, config.policy)
        self.refusals = RefusalLog(log)
        self.init_data = AppInitData()
        self.job: JobSpec | None = None
        self.vbox_job = None
        self.plan_ctx = PlanContext(slot=self.slot)
        self.plan: JobPlan | None = None

    @property
    def state(self):  # the bridge's checkpoint (host_bridge.state.BridgeState)
        return self.store.state

    def run(self) -> core.ExitBridge:
        try:
            job, self.vbox_job = load_job(self.slot, self.cfg.job_file)
        except JobFileError as e:
            return core.fail(ERR_XML_PARSE, str(e))
        except OSError as e:
            return core.fail(
                ERR_XML_PARSE,
                f"cannot read the job file {self.cfg.job_file!r} in {self.slot}: {e.strerror}; "
                "the app version must include it (logical name job.xml)",
            )
        self.job = job
        for w in (*job.warnings, *(self.vbox_job.warnings if self.vbox_job else ())):
            log.warning("%s", w)
        self.init_data = self.api.init_data()
        self.plan_ctx = PlanContext.of(
            self.slot,
            self.init_data,
            nthreads=self.cfg.nthreads,
            extra_args=self.cfg.extra_args,
            vbox_job=self.vbox_job,
            docker_job=job.docker_job,  # type: ignore[arg-type]
        )
        state = self.store.load(job_digest(Path(job.path)))
        state.runs += 1
        policy = self.cfg.policy
        if not self.store.save("start"):
            return core.cannot_save(policy)
        if state.runs > 1:
            log.info(
                "resuming job at task %d (run %d, %.1f CPU s done)",
                state.task_index + 1,
                state.runs,
                state.cpu_done + state.task_cpu_checkpoint,
            )
        self.plan = plan = plan_job(job, self.plan_ctx)
        for w in plan.warnings:
            log.warning("%s", w)
        if state.task_index == 0 and not state.task_started and job.unzip_input:
            err = slotfiles.unzip_inputs(job, self.slot)
            if err is not None:
                return err
        link = ClientLink(self.api, self.store, self.init_data, self.plan_ctx.threads, self.refusals)
        session = Session(
            cfg=self.cfg,
            api=self.api,
            store=self.store,
            link=link,
            init_data=self.init_data,
            refusals=self.refusals,
            job_path=job.path,
            ntasks=len(plan.tasks),
            clock=self.clock,
            should_stop=self.should_stop,
            on_report=self.on_report,
            watch=self.watcher_factory,
        )
        try:
            err = self._start_daemons(job, session)
            if err is not None:
                return err
            for idx in range(state.task_index, len(plan.tasks)):
                outcome = self._run_task(session, plan, plan.tasks[idx])
                if outcome is not TASK_DONE:
                    assert isinstance(outcome, core.ExitBridge)
                    if outcome.kind == "finish":
                        link.drain_trickle_ups(policy.trickle_drain_timeout, self.clock)
                    return outcome
            link.drain_trickle_ups(policy.trickle_drain_timeout, self.clock)
            if job.zip_output:
                err = slotfiles.zip_outputs(job, self.slot, policy)
                if err is not None:
                    return err
            return core.ExitBridge("finish", 0, "")
        finally:
            while session.daemons:
                stop_quietly(session.daemons.pop())
            if session.daemon_share is not None:
                session.daemon_share.close()
            self.store.close()
            refused = self.refusals.summary()
            if refused is not None:
                log.warning("%s", refused)

    def _start_daemons(self, job: JobSpec, session: Session) -> core.ExitBridge | None:
        """The wrapper's daemons: started before the tasks (in the slot), stopped at the end."""
        for i, desc in enumerate(job.daemons):
            plan = plan_daemon(i, desc, self.plan_ctx)
            try:
                d = self.backend_factory(plan, self.plan_ctx)
                if session.daemon_share is None:
                    session.daemon_share = Share(self.slot)
                d.create(plan.spec, session.daemon_share)
                d.restore()
                d.start()
            except (BackendError, OSError) as e:
                return core.fail(ExitCode.EXIT_INIT_FAILURE, f"daemon {desc.application!r} cannot start: {e}")
            session.daemons.append(d)
            log.info("daemon %s started", desc.application)
        return None

    def _run_task(self, session: Session, job_plan: JobPlan, plan: TaskPlan) -> core.ExitBridge | object:
        plan.share_dir.mkdir(parents=True, exist_ok=True)
        share = Share(plan.share_dir, virtfs_mapped=plan.virtfs_mapped)
        try:
            return self._run_task_in(session, job_plan, plan, share)
        finally:
            share.close()

    def _run_task_in(
        self, session: Session, job_plan: JobPlan, plan: TaskPlan, share: Share
    ) -> core.ExitBridge | object:
        st = self.store.state
        policy = self.cfg.policy
        resumed = st.task_started
        stale_seq: int | None = None
        old: P.Status | None = None
        reader = StatusReader(share, self.refusals, policy)
        compat = self._make_compat(plan, share, resumed)
        try:
            if resumed:
                old = reader.read()
                stale_seq = old.seq if old is not None else None
            else:
                share.clear([P.STATUS_FILE, P.CONTROL_FILE])
                slotfiles.copy_inputs(plan, share, session.job_path)
                if compat is not None:
                    compat.clear_triggers()
                    slotfiles.copy_to_shared(self.vbox_job, plan, share, self.slot, self.cfg.extra_args)
        except (slotfiles.PrepareError, OSError, GuestFileRefused) as e:
            return core.fail(ExitCode.EXIT_INIT_FAILURE, f"cannot prepare task {plan.number}: {e}")

        before = sum(t.weight for t in job_plan.tasks[: plan.index])
        ctx = core.TaskContext(
            number=plan.number,
            weight_before=before,
            weight=plan.weight,
            total_weight=job_plan.total_weight,
            cpu_base=st.cpu_done + st.task_cpu_checkpoint,
            fpops_base=nn(st.fpops_done),
            intops_base=nn(st.intops_done),
            heartbeat_timeout=policy.heartbeat_timeout or (compat.heartbeat_timeout if compat else 0.0),
            time_limit=float(plan.desc.time_limit or 0.0),
            env_failures=st.env_failures,
            trickle_period=self.cfg.trickle_period,
            polls_files=bool(plan.fraction_file or plan.checkpoint_file or compat is not None),
            policy=policy,
        )
        backend = self.backend_factory(plan, self.plan_ctx)
        ctx = self._vm_save_context(ctx, backend, plan, session)
        loop = TaskLoop(session, plan, backend, share, ctx, GuestView(reader, compat, stale_seq))
        cstate = core.CoreState(last_event_id=st.last_event_id, max_fraction=st.max_fraction)
        failure: core.Failure | None = None
        try:
            backend.create(plan.spec, share)
            if resumed:
                # remove (or reattach) what an earlier run of this task left: a scan of the host's
                # processes / VMs for this task's owner tag, only worth its cost (~10 ms) when there was
                # an earlier run (task_started is saved right after the first start)
                backend.restore()
        except BackendError as e:
            failure = core.Failure.of(e)
        try:
            if failure is None and (old is not None or st.task_finish is not None):
                ended = loop.recover(old or P.Status())
                if ended is not None:
                    return ended
            return loop.run(cstate, failure)
        except BaseException:
            stop_quietly(backend)
            raise

    def _vm_save_context(
        self, ctx: core.TaskContext, backend: object, plan: TaskPlan, session: Session
    ) -> core.TaskContext:
        """Periodic VM checkpoints and long-suspend releases for a backend that saves whole VMs: at
        BOINC's checkpoint period (init data), no more often than the policy's minimum and vbox_job.xml's
        minimum_checkpoint_interval; none with its disable_automatic_checkpoints."""
        if not hasattr(backend, "vm_checkpoint"):
            return ctx
        policy = self.cfg.policy
        period = max(
            nn(session.init_data.checkpoint_period) or policy.default_checkpoint_period,
            policy.vm_checkpoint_min,
        )
        if self.vbox_job is not None:
            period = max(period, self.vbox_job.minimum_checkpoint_interval)
            if self.vbox_job.disable_automatic_checkpoints:
                period = 0.0
        if not policy.vm_checkpoints:
            period = 0.0
        release = getattr(plan.settings, "release_after", None)
        return replace(
            ctx,
            vm_checkpoint_period=period,
            release_after=policy.suspend_release_after if release is None else float(release),
        )

    def _make_compat(self, plan: TaskPlan, share: Share, resumed: bool):
        """vboxwrapper's guest files for this task (only with a vbox_job.xml)."""
        if self.vbox_job is None:
            return None
        from ..vboxcompat import VboxCompat, load_running_time

        return VboxCompat(
            self.vbox_job,
            share,
            first_id=self.store.state.last_event_id + 1,
            running_time=load_running_time(self.slot, plan.index) if resumed else 0.0,
            refusals=self.refusals,
        )
