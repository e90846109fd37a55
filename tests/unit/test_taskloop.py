"""Whole task lifetimes through the real runtime (planner, task loop, core, state file), in process and in
fake time, with the named fakes of ``tests/fakes/fake_runtime.py`` (a scripted backend, a recording BOINC
API, a fake-time share watcher). Each case runs in milliseconds; the subprocess tests on the real parts
(tests/test_bridge_*.py, tests/e2e/test_e2e_boinc_client.py) cover the same paths with real processes."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
from boinc_guest import protocol as P

from host_bridge.exitcodes import ExitCode
from host_bridge.policy import DEFAULT_POLICY
from host_bridge.state import STATE_FILE
from tests.fakes.fake_runtime import BackendScript, GuestWrite, World

JOB = "<job_desc><task><application>worker</application></task></job_desc>"


def _state(slot: Path) -> dict:
    return json.loads((slot / STATE_FILE).read_text())


def _w(at: float, seq: int, fraction: float = 0.0, *events: P.Event, **kw) -> GuestWrite:
    return GuestWrite(at, P.Status(seq=seq, hb=seq, fraction_done=fraction, events=tuple(events), **kw))


def test_a_task_that_finishes(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    w = World(
        tmp_path,
        JOB,
        script=BackendScript(exits_at=3.1),
        guest=[_w(1.0, 1, 0.5), _w(3.0, 2, 1.0, P.Finish(id=1, status=0))],
    )
    out = w.run()
    assert (out.kind, out.status) == ("finish", 0)
    assert w.backend.calls[:2] == ["create", "start"] and w.backend.calls[-2:] == ["poweroff", "cleanup"]
    fractions = [s["fraction_done"] for s in w.api.statuses]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0.5 in fractions
    st = _state(tmp_path)
    assert st["task_index"] == 1 and st["task_started"] is False
    assert time.perf_counter() - t0 < 2.0  # fake time: no real waiting


def test_suspend_and_resume(tmp_path: Path) -> None:
    w = World(
        tmp_path,
        JOB,
        script=BackendScript(exits_at=10.0),
        requests=[(2.0, "suspended", True), (5.0, "suspended", False)],
    )
    out = w.run()
    assert (out.kind, out.status) == ("finish", 0)
    calls = w.backend.calls
    assert calls.index("pause") < calls.index("resume")
    # while suspended the task used no CPU: about 10 s of running minus the 3 s paused
    # (the fake environment ends 10 s after its start, paused or not)
    assert 6.0 <= w.api.statuses[-1]["cpu_time"] <= 8.0


def test_quit_then_restart_from_the_state_file(tmp_path: Path) -> None:
    w = World(
        tmp_path,
        JOB,
        script=BackendScript(exits_at=50.0),
        requests=[(3.0, "quit_request", True)],
        guest=[_w(1.0, 1, 0.3, checkpoint_count=1, cpu_time=1.0, checkpoint_cpu_time=1.0)],
    )
    out = w.run()
    assert (out.kind, out.status) == ("quit", 0)
    st = _state(tmp_path)
    assert st["task_started"] is True and st["runs"] == 1 and st["task_cpu_checkpoint"] == pytest.approx(1.0)
    # restart: the client no longer asks to quit; the earlier run's environment is looked for
    w.requests = []
    w.script = BackendScript(exits_at=2.0)
    out = w.run()
    assert (out.kind, out.status) == ("finish", 0)
    assert w.backend.calls[:3] == ["create", "restore", "start"]
    assert _state(tmp_path)["runs"] == 2
    # the second run's CPU is added to the first run's checkpointed CPU, never reported lower
    assert w.api.statuses[-1]["cpu_time"] >= 1.0 + 2.0 - 0.01


def test_abort(tmp_path: Path) -> None:
    w = World(tmp_path, JOB, script=BackendScript(exits_at=50.0), requests=[(2.0, "abort_request", True)])
    out = w.run()
    assert (out.kind, out.status) == ("abort", int(ExitCode.EXIT_ABORTED_BY_CLIENT))
    # the client gave the task up: its environment is discarded, nothing kept for a later run
    assert "poweroff" in w.backend.calls and w.backend.calls[-2:] == ["discard", "cleanup"]


def test_a_power_off_that_fails_during_a_quit_ends_the_run(tmp_path: Path) -> None:
    """The quit's power-off raises: that failure is the outcome (a temporary exit naming it), and the
    loop ends; it went on sleeping for ever, the run already ending, before."""
    w = World(
        tmp_path,
        JOB,
        script=BackendScript(exits_at=None, poweroff_error=("QEMU did not stop", True)),
        requests=[(2.0, "quit_request", True)],
    )
    out = w.run()
    assert out.kind == "temporary_exit" and "task 1: QEMU did not stop" in out.message
    assert w.backend.calls[-1] == "cleanup"


def test_environment_failure_three_times_fails_the_task(tmp_path: Path) -> None:
    w = World(tmp_path, JOB, script=BackendScript(app_starts=math.inf, fails_at=1.0))
    outs = [w.run() for _ in range(3)]
    assert [o.kind for o in outs] == ["temporary_exit", "temporary_exit", "finish"]
    assert "failure 1 of 3" in outs[0].message and "failure 2 of 3" in outs[1].message
    assert outs[2].status == int(ExitCode.EXIT_CHILD_FAILED) and "3 times in a row" in outs[2].message
    assert outs[0].delay == DEFAULT_POLICY.failed_delay


def test_environment_failure_count_resets_once_the_app_runs(tmp_path: Path) -> None:
    w = World(tmp_path, JOB, script=BackendScript(app_starts=math.inf, fails_at=1.0))
    assert w.run().kind == "temporary_exit"
    assert _state(tmp_path)["env_failures"] == 1
    w.script = BackendScript(app_starts=0.5, fails_at=3.0)  # the app ran, then the VM died
    out = w.run()
    assert out.kind == "temporary_exit" and "before the task's app started" not in out.message
    assert _state(tmp_path)["env_failures"] == 0


def test_a_backend_error_at_create_is_a_counted_environment_failure(tmp_path: Path) -> None:
    w = World(tmp_path, JOB, script=BackendScript(create_error=("cannot map the VM's memory", True)))
    out = w.run()
    assert out.kind == "temporary_exit" and "failure 1 of 3" in out.message and "task 1:" in out.message
    w.script = BackendScript(create_error=("the image is not a kernel", False))
    out = w.run()
    assert (out.kind, out.status) == ("finish", int(ExitCode.EXIT_CHILD_FAILED))
    assert "start" not in w.backend.calls


def test_a_host_set_up_error_is_a_notice_and_the_last_failure_does_not_blame_a_vm(tmp_path: Path) -> None:
    """A failure the volunteer must fix on the host (an engine or GPU set-up: BackendError(notice=True))
    reaches BOINC as a notice, each time; the failure that gives the task up names no VM only."""
    err = ("the container engine cannot give the GPU: install nvidia-container-toolkit", True, True)
    w = World(tmp_path, JOB, script=BackendScript(create_error=err))
    outs = [w.run() for _ in range(3)]
    assert [o.kind for o in outs] == ["temporary_exit", "temporary_exit", "finish"]
    assert all(o.is_notice for o in outs)
    assert outs[-1].status == int(ExitCode.EXIT_CHILD_FAILED)
    assert "install nvidia-container-toolkit" in outs[-1].message and "for a container" in outs[-1].message
    w.script = BackendScript(create_error=("cannot map the VM's memory", True))
    assert not w.run().is_notice


def test_guest_finish_then_lingering(tmp_path: Path) -> None:
    policy = replace(DEFAULT_POLICY, finish_grace=10.0)
    w = World(
        tmp_path,
        JOB,
        policy=policy,
        script=BackendScript(exits_at=None),  # the program does not exit after boinc_finish
        guest=[_w(2.0, 1, 1.0, P.Finish(id=1, status=3, message="bad input"))],
    )
    out = w.run()
    assert (out.kind, out.status, out.message) == ("finish", 3, "bad input")
    assert "poweroff" in w.backend.calls
    assert 12.0 <= w.clock.now - w.start <= 12.5  # ended finish_grace after the finish event


def test_time_limit(tmp_path: Path) -> None:
    job = "<job_desc><task><application>worker</application><time_limit>5</time_limit></task></job_desc>"
    w = World(tmp_path, job, script=BackendScript(exits_at=None))
    out = w.run()
    assert (out.kind, out.status) == ("finish", 0)  # ended and counted as done (BOINC's wrapper)
    assert 5.0 <= w.clock.now - w.start <= 6.5
    assert w.api.statuses[-1]["fraction_done"] == 1.0


def test_heartbeat_silence_is_a_temporary_exit(tmp_path: Path) -> None:
    policy = replace(DEFAULT_POLICY, heartbeat_timeout=30.0)
    w = World(tmp_path, JOB, policy=policy, script=BackendScript(exits_at=None), guest=[_w(1.0, 1, 0.1)])
    out = w.run()
    assert out.kind == "temporary_exit" and "no heartbeat" in out.message
    assert out.delay == policy.hung_delay
    assert 30.0 <= w.clock.now - w.start <= 33.0


def test_trickle_ups_reach_the_client_in_order(tmp_path: Path) -> None:
    w = World(
        tmp_path,
        JOB,
        script=BackendScript(exits_at=4.0),
        guest=[
            _w(1.0, 1, 0.1, P.TrickleUp(1, "a", "<x>1</x>"), P.TrickleUp(2, "b", "<x>2</x>")),
            _w(2.0, 2, 0.2, P.TrickleUp(1, "a", "<x>1</x>"), P.TrickleUp(2, "b", "<x>2</x>"),
               P.TrickleUp(3, "c", "<x>3</x>")),
        ],
    )  # fmt: skip
    out = w.run()
    assert (out.kind, out.status) == ("finish", 0)
    assert [v for v, _ in w.api.trickle_ups] == ["a", "b", "c"]  # each once, in order
    assert _state(tmp_path)["trickle_up"] == []


def test_periodic_trickle_up(tmp_path: Path) -> None:
    w = World(tmp_path, JOB, script=BackendScript(exits_at=25.0), trickle_period=10.0)
    assert w.run().kind == "finish"
    sent = [t for v, t in w.api.trickle_ups if v == "cpu_time"]
    assert len(sent) == 2 and "<cpu_time>" in sent[0]


def test_a_task_without_the_sdk_ends_when_its_program_does(tmp_path: Path) -> None:
    """No status file at all (a fraction_done_filename task): the program's exit ends the task, with
    its progress from the wrapper's file."""
    job = (
        "<job_desc><task><application>worker</application>"
        "<fraction_done_filename>frac</fraction_done_filename></task></job_desc>"
    )
    (tmp_path).mkdir(parents=True, exist_ok=True)
    (tmp_path / "frac").write_text("0.25\n")
    w = World(tmp_path, job, script=BackendScript(exits_at=3.0, exit_code=0))
    out = w.run()
    assert (out.kind, out.status) == ("finish", 0)
    assert any(s["fraction_done"] == 0.25 for s in w.api.statuses)
    assert w.clock.now - w.start <= 4.3  # the wrapper-style file is read every second, no tick longer


def test_a_failing_program_fails_the_job_with_its_status(tmp_path: Path) -> None:
    w = World(tmp_path, JOB, script=BackendScript(exits_at=1.0, exit_code=7))
    out = w.run()
    assert (out.kind, out.status) == ("finish", 7) and "status 7" in out.message


def test_arguments_no_task_takes_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The client hands the workunit's command line to the bridge; without <append_cmdline_args/> no
    task gets it (as with BOINC's wrapper): one line in stderr.txt says so and names the tag."""
    w = World(tmp_path / "a", JOB, script=BackendScript(exits_at=1.0), extra_args=("20", "--fast"))
    with caplog.at_level("WARNING"):
        assert w.run().status == 0
    lines = [r.getMessage() for r in caplog.records if "not handed on" in r.getMessage()]
    assert len(lines) == 1 and "'20 --fast'" in lines[0] and "<append_cmdline_args/>" in lines[0]
    assert w.plans[0].spec.argv[-1] != "--fast"

    job = "<job_desc><task><application>worker</application><append_cmdline_args/></task></job_desc>"
    w = World(tmp_path / "b", job, script=BackendScript(exits_at=1.0), extra_args=("20", "--fast"))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert w.run().status == 0
    assert not [r for r in caplog.records if "not handed on" in r.getMessage()]
    assert w.plans[0].spec.argv[-2:] == ("20", "--fast")
