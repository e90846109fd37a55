"""Named fakes for running the bridge's task loop in process, in fake time (as httpx's MockTransport):

- ``FakeClock``: the loop's monotonic clock, advanced only by ``FakeWatcher.wait``;
- ``FakeBackend``: a backend with the verb set of ``host_bridge.backends.base`` and a script (the app
  starts at, exits at, fails at ...); it records every verb called;
- ``RecordingApi``: the BOINC API as the client would see it (requests scheduled in fake time; every
  status, trickle-up and the finish recorded);
- ``FakeWatcher``: the share watcher: ``wait(timeout)`` advances the clock to the next scripted guest
  write (written into the share with the real protocol encoder) or by ``timeout``.

``World`` ties them together; ``World.run()`` runs ``host_bridge.runtime.Runtime`` on a slot and returns
its outcome. A task lifetime of minutes runs in milliseconds.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from boinc_guest import protocol as P

from host_bridge.backends.base import BackendStatus, ConsoleEndpoints, TaskSpec, VMState
from host_bridge.boinc.api import AppInitData, BoincApiBase, BoincStatus
from host_bridge.config import Config
from host_bridge.core import ExitBridge
from host_bridge.policy import DEFAULT_POLICY, Policy
from host_bridge.runtime import Runtime


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class BackendScript:
    """What the fake environment does, in seconds after ``start``."""

    app_starts: float = 0.0  # the app runs this long after start (a VM booting); inf: never
    exits_at: float | None = None  # the program ends by itself
    exit_code: int = 0
    fails_at: float | None = None  # the environment dies (FAILED)
    error: str = "the VM stopped unexpectedly"
    # (message, temporary[, notice]) raised by create()
    create_error: tuple[str, bool] | tuple[str, bool, bool] | None = None
    poweroff_error: tuple[str, bool] | None = None  # (message, temporary) raised by poweroff()
    cpu_per_second: float = 1.0


class FakeBackend:
    """A backend with a script. ``calls`` lists every verb called, in order."""

    name = "fake"

    def __init__(self, clock: FakeClock, script: BackendScript | None = None) -> None:
        self.clock = clock
        self.script = script or BackendScript()
        self.calls: list[str] = []
        self.state = VMState.ABSENT
        self.started_at: float | None = None
        self.run_cpu = 0.0  # CPU accrued while running
        self._last = 0.0
        self.exit_code: int | None = None

    def _accrue(self) -> None:
        now = self.clock()
        if self.state is VMState.RUNNING:
            self.run_cpu += (now - self._last) * self.script.cpu_per_second
        self._last = now

    def _elapsed(self) -> float:
        return self.clock() - self.started_at if self.started_at is not None else 0.0

    def create(self, task: TaskSpec, share: object = None) -> None:
        from host_bridge.backends.base import BackendError

        self.calls.append("create")
        if self.script.create_error is not None:
            msg, temporary, *notice = self.script.create_error
            raise BackendError(msg, temporary=temporary, notice=bool(notice and notice[0]))
        self.state = VMState.CREATED

    def start(self) -> None:
        self.calls.append("start")
        self.state = VMState.RUNNING
        self.started_at = self._last = self.clock()

    def pause(self) -> None:
        self.calls.append("pause")
        self._accrue()
        self.state = VMState.PAUSED

    def resume(self) -> None:
        self.calls.append("resume")
        self._accrue()
        self.state = VMState.RUNNING

    def checkpoint(self) -> bool:
        self.calls.append("checkpoint")
        return False

    def restore(self) -> bool:
        self.calls.append("restore")
        return False

    def poweroff(self) -> None:
        from host_bridge.backends.base import BackendError

        self.calls.append("poweroff")
        self._accrue()
        if self.script.poweroff_error is not None:
            msg, temporary = self.script.poweroff_error
            raise BackendError(msg, temporary=temporary)
        if self.state in (VMState.RUNNING, VMState.PAUSED, VMState.CREATED):
            self.state = VMState.ABSENT

    def cleanup(self) -> None:
        self.calls.append("cleanup")

    def discard(self) -> None:
        self.calls.append("discard")
        self.cleanup()

    def console(self) -> ConsoleEndpoints:
        return ConsoleEndpoints()

    def exit_fd(self) -> int | None:
        return None

    def poll(self) -> BackendStatus:
        self._accrue()
        sc = self.script
        if self.state is VMState.RUNNING:
            t = self._elapsed()
            if sc.fails_at is not None and t >= sc.fails_at:
                self.state = VMState.FAILED
            elif sc.exits_at is not None and t >= sc.exits_at:
                self.state, self.exit_code = VMState.EXITED, sc.exit_code
        app = self.started_at is not None and self._elapsed() >= sc.app_starts
        if self.state is VMState.FAILED:
            return BackendStatus(VMState.FAILED, error=sc.error, cpu_time=self.run_cpu, app_started=app)
        return BackendStatus(self.state, exit_code=self.exit_code, cpu_time=self.run_cpu, app_started=app)


class RecordingApi(BoincApiBase):
    """The BOINC API a test plays the client for. ``requests``: (time, field, value) of BOINC_STATUS
    changes (suspended, quit_request, abort_request, no_heartbeat) in fake time."""

    standalone = False

    def __init__(self, clock: FakeClock, requests: list[tuple[float, str, bool]] | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.requests = sorted(requests or [])
        self.statuses: list[dict[str, Any]] = []
        self.trickle_ups: list[tuple[str, str]] = []
        self.uploads: list[str] = []
        self.start = clock()

    def init(self) -> None:
        pass

    def init_data(self) -> AppInitData:
        return AppInitData(result_name="fake_result_0")

    def get_status(self) -> BoincStatus:
        status = BoincStatus()
        for t, name, value in self.requests:
            if self.clock() - self.start >= t:
                status = replace(status, **{name: value})
        return status

    def send_status(self, **kw: Any) -> None:
        self.statuses.append({"at": self.clock() - self.start, **kw})

    def send_trickle_up(self, variety: str, text: str) -> int:
        self.trickle_ups.append((variety, text))
        return 0

    def receive_trickle_down(self) -> str | None:
        return None

    def upload_file(self, name: str) -> int:
        self.uploads.append(name)
        return 0

    def upload_status(self, name: str) -> int:
        return 0


@dataclass(order=True)
class GuestWrite:
    """The guest writes its status file at ``at`` s after the bridge's start."""

    at: float
    status: P.Status = field(compare=False)


class FakeWatcher:
    """The share watcher in fake time: ``wait`` advances the clock to the next guest write (which it
    performs, returning True) or by ``timeout`` (False)."""

    def __init__(self, world: World, folder: Path) -> None:
        self.world = world
        self.folder = folder

    def __enter__(self) -> FakeWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wake_on(self, fd: int) -> None:
        pass

    def wait(self, timeout: float) -> bool:
        w = self.world
        w.waits += 1
        if w.waits > w.max_waits:  # a loop that never ends: fail, do not spin for ever
            raise AssertionError(f"the task loop slept {w.waits} times without ending")
        deadline = w.clock.now + max(timeout, 0.0)
        pending = w.guest_writes
        if pending and w.start + pending[0].at <= deadline:
            write = heapq.heappop(pending)
            w.clock.now = max(w.clock.now, w.start + write.at)
            P.write_atomic(self.folder, P.STATUS_FILE, P.encode_status(write.status))
            return True
        w.clock.now = deadline if timeout > 0 else w.clock.now + 0.001
        return False


class World:
    """One slot, one job, a scripted backend, client and guest, in fake time."""

    def __init__(
        self,
        slot: Path,
        job_xml: str,
        *,
        script: BackendScript | None = None,
        requests: list[tuple[float, str, bool]] | None = None,
        guest: list[GuestWrite] | None = None,
        policy: Policy = DEFAULT_POLICY,
        trickle_period: float = 0.0,
        extra_args: tuple[str, ...] = (),
        job_name: str = "job.xml",
    ) -> None:
        self.extra_args = extra_args
        self.plans: list[Any] = []  # the plan of each backend made, in order
        self.slot = slot
        slot.mkdir(parents=True, exist_ok=True)
        (slot / job_name).write_text(job_xml)
        self.clock = FakeClock()
        self.start = self.clock.now
        self.script = script or BackendScript()
        self.requests = requests or []
        self.guest_writes = list(guest or [])
        heapq.heapify(self.guest_writes)
        self.policy = policy
        self.trickle_period = trickle_period
        self.backends: list[FakeBackend] = []
        self.api: RecordingApi | None = None
        self.waits = 0
        self.max_waits = 100_000

    def backend_factory(self, plan: object, ctx: object) -> FakeBackend:
        self.plans.append(plan)
        b = FakeBackend(self.clock, self.script)
        self.backends.append(b)
        return b

    def run(self, *, should_stop: Callable[[], bool] = lambda: False) -> ExitBridge:
        """One run of the bridge (a later call is a restart of the bridge in the same slot)."""
        self.start = self.clock.now
        self.api = RecordingApi(self.clock, self.requests)
        cfg = Config(
            slot_dir=self.slot,
            policy=self.policy,
            trickle_period=self.trickle_period,
            extra_args=self.extra_args,
        )
        rt = Runtime(
            cfg,
            self.api,
            backend_factory=self.backend_factory,
            clock=self.clock,
            should_stop=should_stop,
            watcher_factory=lambda folder, _cfg: FakeWatcher(self, folder),
        )
        return rt.run()

    @property
    def backend(self) -> FakeBackend:
        return self.backends[-1]
