"""The BoincClientRun harness (tests/support/boinc_client.py) with the REAL BOINC client and a tiny
shell-script app (no BOINC API: it plays by the file conventions only)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.boinc_client import (
    RESULT_ABORTED,
    BoincClientRun,
    ExtraFile,
    parse_get_tasks,
)

# Reads its input through the soft-link file the client puts in the slot, writes its output,
# waits (bounded) for the test's "go" file, then reports success the way boinc_finish does.
APP = """#!/bin/sh
src=$(sed -n 's:.*<soft_link>\\(.*\\)</soft_link>.*:\\1:p' in.txt)
{ cat "$src"; echo "args: $*"; } > out.txt
i=0
while [ ! -e go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
echo 0 > boinc_finish_called
exit 0
"""


def _app(tmp_path: Path, text: str = APP) -> Path:
    p = tmp_path / "app.sh"
    p.write_text(text)
    p.chmod(0o755)
    return p


def _state(tasks: list[dict[str, str]]) -> str | None:
    return tasks[0].get("active_task_state") if tasks else None


def test_shell_app_runs_suspends_resumes_and_finishes(tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("hello from the workunit\n")
    out = ExtraFile(Path("test_wu_0_r0"), "out.txt", is_input=False)
    with BoincClientRun(
        tmp_path,
        _app(tmp_path),
        extra_files=[ExtraFile(tmp_path / "input.txt", "in.txt"), out],
        command_line="--alpha 1",
    ) as run:
        tasks = run.wait(lambda t: _state(t) == "EXECUTING", timeout=30)
        assert tasks[0]["name"] == "test_wu_0" and "fraction done" in tasks[0]
        assert run.app_pids(), "the client started no app process"
        run.task_op("suspend")
        run.wait(lambda t: _state(t) == "SUSPENDED", timeout=15)
        run.task_op("resume")
        run.wait(lambda t: _state(t) == "EXECUTING", timeout=15)
        (run.slot_dir() / "go").touch()
        assert run.wait_exit(30) == 0
    assert run.final_result()["exit_status"] == 0
    assert run.output_text(out) == "hello from the workunit\nargs: --alpha 1\n"
    assert not run.app_pids()


def test_abort_kills_the_app_and_the_harness_cleans_up(tmp_path: Path) -> None:
    app = _app(tmp_path, "#!/bin/sh\nsleep 60\n")
    t0 = time.monotonic()
    with BoincClientRun(tmp_path, app) as run:
        run.wait(lambda t: _state(t) == "EXECUTING", timeout=30)
        pids = run.app_pids()
        assert pids
        run.task_op("abort")
        # the client sends <abort/> and waits for the app, which ignores it: ABORT_PENDING
        tasks = run.wait(lambda t: t[0].get("state") == "aborted", 15)
        assert _state(tasks) == "ABORT_PENDING"
        assert run.app_pids() == pids
    # stop() ran: the client and every process it started are gone, well before the app's 60 s
    assert run.proc is not None and run.proc.poll() is not None
    assert not run.app_pids()
    assert time.monotonic() - t0 < 30
    res = run.final_result()
    assert res["state"] == RESULT_ABORTED and res["exit_status"] == 203, res  # ERR_ABORTED_VIA_GUI


def test_parse_get_tasks() -> None:
    text = (
        "\n======== Tasks ========\n1) -----------\n   name: r1\n   WU name: w1\n"
        "   active_task_state: EXECUTING\n   fraction done: 0.250000\n2) -----------\n"
        "   name: r2\n   state: downloaded\n"
    )
    tasks = parse_get_tasks(text)
    assert tasks == [
        {"name": "r1", "WU name": "w1", "active_task_state": "EXECUTING", "fraction done": "0.250000"},
        {"name": "r2", "state": "downloaded"},
    ]
