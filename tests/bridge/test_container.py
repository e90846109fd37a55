"""The container backend on real podman (root, a private configuration and storage: tests/support/podman.py):
docker_wrapper's job.toml (LHC@home Theory's shape) with an image built from a Dockerfile, a job.xml
container task running the Python guest SDK through the real shared memory, suspend / resume / abort,
and kill -9 of the bridge + restart. Images are made offline (busybox-static root tarballs)."""

from __future__ import annotations

import os
import re
import textwrap
import time
from pathlib import Path

import pytest

from host_bridge.backends.base import BackendError, TaskSpec
from host_bridge.backends.container.backend import OWNER_LABEL, ContainerBackend
from host_bridge.backends.container.podman import explain
from host_bridge.backends.container.settings import ContainerSettings
from host_bridge.jobfile import parse_job_file
from host_bridge.runtime.plan import PlanContext, plan_job
from tests.support.bridge import Bridge
from tests.support.client_shm import SlotClient
from tests.support.paths import ROOT
from tests.support.podman import PrivatePodman, counted
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(180)

THEORY_TOML = ROOT / "tests" / "data" / "jobs-real" / "lhcathome_Theory_docker_job.toml"


def _slot(tmp: Path, podman: PrivatePodman) -> SlotClient:
    slot = tmp / "slot"
    slot.mkdir()
    return SlotClient(slot)


def _bridge(slot: Path, podman: PrivatePodman, *args: str) -> Bridge:
    old = {k: os.environ.get(k) for k in podman.env}
    os.environ.update(podman.env)  # inherited by the bridge subprocess (already set by activate())
    try:
        return Bridge(slot, *args)
    finally:
        for k, v in old.items():
            if v is not None:
                os.environ[k] = v


def _owned(podman: PrivatePodman) -> list[dict]:
    return podman.containers(OWNER_LABEL)


# ------------------------------------------------------------------------------ job files and plans


def test_theory_job_toml_plans_a_container_task_in_the_slot(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    job = parse_job_file(THEORY_TOML)
    assert job.dialect == "docker"
    plan = plan_job(job, PlanContext(slot=tmp_path, docker_job=job.docker_job)).tasks[0]  # type: ignore[arg-type]
    assert plan.kind == "container"
    assert plan.in_slot and plan.share_dir == tmp_path
    assert plan.spec.argv == ()  # the image's own command
    assert plan.fraction_file == "fraction_done"
    assert not any(k == "PYTHONPATH" for k, _ in plan.spec.env)  # no host path handed to the image
    s = plan.settings
    assert s.workdir == "/boinc_slot_dir"
    assert s.dockerfile == tmp_path / "Dockerfile"
    assert s.create_args == ("-v", "/cvmfs:/cvmfs:shared")
    assert s.web_graphics_guest_port == 80 and s.network  # user-mode network for the port mapping


def test_job_xml_container_image_tag(tmp_path):
    (tmp_path / "job.xml").write_text(
        "<job_desc><task><application>/bin/sh</application><command_line>run.sh</command_line>"
        "<container_image>app_rootfs.tar</container_image><container_workdir>/work</container_workdir>"
        "<vm_memory_mb>64</vm_memory_mb></task></job_desc>"
    )
    (tmp_path / "app_rootfs.tar").write_bytes(b"")
    job = parse_job_file(tmp_path / "job.xml")
    assert not job.warnings
    ctx = PlanContext(slot=tmp_path)
    plan = plan_job(job, ctx).tasks[0]
    assert plan.kind == "container" and plan.spec.argv == ("/bin/sh", "run.sh")
    s = plan.settings
    assert s.image_archive == tmp_path / "app_rootfs.tar" and s.archive_is_rootfs
    assert s.workdir == "/work" and s.memory_mb == 64 and not s.network


def test_engine_errors_name_the_fix():
    assert 'runtime = "runc"' in explain(
        "Error: crun: cgroups in hybrid mode not supported, drop all controllers"
    )
    assert "default_ulimits" in explain("crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted")


def test_missing_image_is_a_clear_error(podman, tmp_path):
    b = ContainerBackend(ContainerSettings(image="localhost/no-such-image:1"))
    b.create(TaskSpec(name="task0", argv=("true",), share=tmp_path, owner_tag="hb-test-missing-t0"))
    with pytest.raises(BackendError, match=r"not on this host.*ship it"):
        b.start()
    b.cleanup()


# ------------------------------------------------------------------------- LHC@home Theory's shape

THEORY_RUN = """\
cd /boinc_slot_dir
mkdir -p shared
for f in 0.25 0.5 0.75 1; do echo $f > fraction_done.tmp; mv fraction_done.tmp fraction_done; sleep 0.8; done
echo "the run's output" > shared/result.txt
touch shared/shutdown
exit {code}
"""

DOCKERFILE = """\
FROM scratch
ADD rootfs.tar /
COPY run.sh /run.sh
CMD ["/bin/sh", "/run.sh"]
"""


def test_theory_job_toml_script_completes_with_its_exit_code(podman, tmp_path):
    c = _slot(tmp_path, podman)
    slot = c.slot_dir
    cvmfs = tmp_path / "cvmfs"
    cvmfs.mkdir()
    toml = THEORY_TOML.read_text().replace("/cvmfs:/cvmfs", f"{cvmfs}:/cvmfs")
    (slot / "job.toml").write_text(toml)
    (slot / "Dockerfile").write_text(DOCKERFILE)
    (slot / "run.sh").write_text(THEORY_RUN.format(code=3))
    podman.rootfs_tar(slot / "rootfs.tar")
    c.start_heartbeats()
    try:
        b = _bridge(slot, podman)
        try:
            fractions, graphics = [], []
            deadline = time.monotonic() + 90
            while b.proc.poll() is None and time.monotonic() < deadline:
                st = c.read_app_status()
                if st is not None:
                    fractions.append(float(st["fraction_done"]))
                g = c.read_graphics_reply()
                if g is not None:
                    graphics.append(g)
                time.sleep(0.05)
            rc = b.wait(30)
        finally:
            b.close()
        log = b.log()
        assert rc == 3, log
        assert (slot / "shared" / "shutdown").exists()
        assert (slot / "shared" / "result.txt").read_text() == "the run's output\n"
        assert fractions and max(fractions) >= 0.5, fractions
        # web_graphics_guest_port = 80: the host port forwarded to it, told to the client as docker_wrapper
        urls = [g.get("web_graphics_url", "") for g in graphics]
        assert any(re.fullmatch(r"http://localhost:[1-9][0-9]*", u) for u in urls), (graphics, log)
        assert not _owned(podman), "the container outlived its task"
        built = [i for i in podman.images() if any("boinc-host-bridge" in n for n in i.get("Names") or [])]
        assert built, "the image built from the Dockerfile is kept for the next task"
    finally:
        c.close()


# ------------------------------------------------------------------- the Python guest SDK, image-side

SDK_GUEST = textwrap.dedent(
    """\
    import os, sys, time
    from boinc_guest import *

    boinc_init()
    for i in range(10):
        time.sleep(0.1)
        boinc_fraction_done((i + 1) / 10)
    boinc_send_trickle_up("progress", "<step>from the container</step>")
    with open("out", "w") as f:
        f.write("done in " + os.environ.get("BOINC_GUEST_DIR", "?") + "\\n")
    time.sleep(1.0)
    boinc_finish_message(0, "container run finished", False)
    """
)


def test_python_sdk_in_a_container_through_the_shared_memory(podman, tmp_path):
    c = _slot(tmp_path, podman)
    slot = c.slot_dir
    podman.python_rootfs(slot / "py_rootfs.tar")
    (slot / "guest.py").write_text(SDK_GUEST)
    (slot / "job.xml").write_text(
        "<job_desc><task><application>/usr/bin/python3</application><command_line>guest.py</command_line>"
        "<container_image>py_rootfs.tar</container_image>"
        "<container_args>-v /usr:/usr:ro</container_args>"
        "<setenv>PYTHONPATH=/opt/py</setenv></task></job_desc>"
    )
    c.start_heartbeats()
    try:
        b = _bridge(slot, podman)
        try:
            fractions, trickles = [], []
            deadline = time.monotonic() + 90
            while b.proc.poll() is None and time.monotonic() < deadline:
                st = c.read_app_status()
                if st is not None:
                    fractions.append(float(st["fraction_done"]))
                if c.read_trickle_up() is not None and (slot / "trickle_up.xml").exists():
                    trickles.append((slot / "trickle_up.xml").read_text())
                    (slot / "trickle_up.xml").unlink()
                time.sleep(0.02)
            rc = b.wait(30)
        finally:
            b.close()
        log = b.log()
        assert rc == 0, log
        assert fractions and max(fractions) == pytest.approx(1.0), fractions
        assert fractions == sorted(fractions)
        assert any("<step>from the container</step>" in t for t in trickles), trickles
        assert "container run finished" in log
        assert (slot / "out").read_text() == "done in /app\n"
        assert (slot / "boinc_finish_called").exists()
        assert not _owned(podman)
    finally:
        c.close()


# ------------------------------------------------------------------ suspend, resume, abort, restart

COUNTER = """\
i=0
while [ $i -lt {n} ]; do i=$((i+1)); echo $i > count.tmp; mv count.tmp count; sleep 0.1; done
exit {code}
"""


def _counter_slot(tmp_path: Path, podman: PrivatePodman, *, n: int, code: int) -> SlotClient:
    c = _slot(tmp_path, podman)
    slot = c.slot_dir
    podman.rootfs_tar(slot / "app_rootfs.tar")
    (slot / "count.sh").write_text(COUNTER.format(n=n, code=code))
    (slot / "job.xml").write_text(
        "<job_desc><task><application>/bin/sh</application><command_line>count.sh</command_line>"
        "<container_image>app_rootfs.tar</container_image></task></job_desc>"
    )
    return c


def _cgroups_of(container_id: str) -> list[str]:
    """The cgroup folders (any controller, v1 or v2) named after a container."""
    import glob

    return glob.glob(f"/sys/fs/cgroup/**/*{container_id}*", recursive=True)


def test_suspend_freezes_resume_continues_abort_leaves_nothing(podman, tmp_path):
    c = _counter_slot(tmp_path, podman, n=100000, code=0)
    slot = c.slot_dir
    c.start_heartbeats()
    try:
        b = _bridge(slot, podman)
        try:
            wait_for(lambda: counted(slot) >= 3, 60, "the container to count")
            assert len(_owned(podman)) == 1
            cid = _owned(podman)[0]["Id"]
            assert _cgroups_of(cid), "the running container's cgroup was not found (the check below)"
            for _ in range(3):
                c.suspend()
                wait_for(lambda: podman.containers(OWNER_LABEL)[0]["State"] == "paused", 10, "pause")
                frozen = counted(slot)
                time.sleep(0.6)
                assert counted(slot) == frozen, "the container ran while suspended"
                c.resume()
                wait_for(lambda f=frozen: counted(slot) > f, 10, "counting again after resume")
            c.abort()
            rc = b.wait(60)
            assert rc != 0, b.log()
        finally:
            b.close()
        assert not _owned(podman), "abort left the container"
        assert not _cgroups_of(cid), f"abort left the container's cgroups: {_cgroups_of(cid)}"
        (image,) = set(re.findall(r"\(image (\S+)\)", b.log()))
        names = [n for i in podman.images() for n in i.get("Names") or []]
        assert image not in names, f"abort left the task's image {image}"
    finally:
        c.close()


def test_kill_9_of_the_bridge_then_restart_reattaches(podman, tmp_path):
    c = _counter_slot(tmp_path, podman, n=40, code=5)
    slot = c.slot_dir
    c.start_heartbeats()
    try:
        b = _bridge(slot, podman)
        try:
            wait_for(lambda: counted(slot) >= 3, 60, "the container to count")
            b.kill()
        finally:
            b.close()
        before = _owned(podman)
        assert len(before) == 1 and before[0]["State"] == "running", "the container dies with the bridge"
        at_kill = counted(slot)
        b2 = _bridge(slot, podman)
        try:
            rc = b2.wait(90)
        finally:
            b2.close()
        log = b2.log()
        assert "reattached" in log, log
        assert rc == 5, log
        assert counted(slot) == 40 and at_kill < 40  # the same run went on, not a fresh one
        assert not _owned(podman)
    finally:
        c.close()
