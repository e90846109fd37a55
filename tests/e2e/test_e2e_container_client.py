"""End to end with the REAL BOINC client and a container task: the bridge is the app version's main
program, examples/worker.py (the Python guest SDK) runs in a podman container (an offline busybox root
with the SDK; the host's /usr bind-mounted read-only for python3), its progress reaches the client
through the bridge, it exits 0 and its output goes back through the slot. Real podman as root with a
private configuration and storage (tests/support/podman.py), passed to the client's environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from host_bridge.backends.container.orphans import OWNER_LABEL
from tests.support.boinc_client import BoincClientRun, ExtraFile, bridge_main_program, fraction_done
from tests.support.jobs import worker_job
from tests.support.paths import ROOT
from tests.support.podman import private_podman

pytestmark = pytest.mark.timeout(240)

CONTAINER_WORKER_JOB = worker_job(
    stdio=(),
    extra="<container_image>py_rootfs.tar</container_image>\n"
    "        <container_args>-v /usr:/usr:ro</container_args>\n"
    "        <setenv>PYTHONPATH=/opt/py</setenv>",
)


def test_worker_in_a_container_under_the_real_client(tmp_path):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run scripts/setup.sh (it installs podman and runc)")
    with private_podman() as pm:
        pm.python_rootfs(tmp_path / "py_rootfs.tar")
        (tmp_path / "job.xml").write_text(CONTAINER_WORKER_JOB.format(seconds=6))
        (tmp_path / "in").write_text("container input\n")
        out = ExtraFile(Path("test_wu_0_r0_out"), "out", is_input=False)
        files = [
            ExtraFile(tmp_path / "job.xml", "job.xml"),
            ExtraFile(ROOT / "examples" / "worker.py", "worker.py"),
            ExtraFile(tmp_path / "py_rootfs.tar", "py_rootfs.tar"),
            ExtraFile(tmp_path / "in", "in"),
            out,
        ]
        env = dict(os.environ)
        env.update(pm.env)
        with BoincClientRun(tmp_path, bridge_main_program(tmp_path), extra_files=files, env=env) as run:
            run.wait(lambda t: fraction_done(t) > 0.05, timeout=90)
            seen = [fraction_done(run.boinccmd_tasks())]
            running = pm.containers(OWNER_LABEL)
            assert len(running) == 1 and running[0]["State"] == "running", running
            run.wait(lambda t: fraction_done(t) > seen[0], timeout=60)
            seen.append(fraction_done(run.boinccmd_tasks()))
            assert run.wait_exit(120) == 0, run.log_tail()
        res = run.final_result()
        assert res["exit_status"] == 0, res
        assert float(res.get("fpops_cumulative", 0)) > 0, res
        assert seen == sorted(seen) and seen[-1] > seen[0], seen
        assert run.output_text(out) == "CONTAINER INPUT\n"
        # the container's unnamed output reaches the task's stderr.txt (as a wrapper's app's does)
        assert "worker: done" in (run.slot_dir() / "stderr.txt").read_text(errors="replace")
        assert not run.app_pids()
        assert not pm.containers(OWNER_LABEL), "the container outlived its task"
