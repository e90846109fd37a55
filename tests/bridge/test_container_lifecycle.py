"""The container backend's quit + restart with a CRIU checkpoint (an app whose state is only in its
memory continues), and the removal of orphan containers of finished slots at a bridge's start. Real
podman as root with a private configuration and storage (tests/support/podman.py); CRIU >= 4.1 as
scripts/setup.sh installs it (the test fails, never skips, where it does not work)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from host_bridge.backends.container import criu
from host_bridge.backends.container.orphans import OWNER_LABEL, RESULT_LABEL, SLOT_LABEL, slot_is_stale
from tests.support.bridge import Bridge, run_bridge, run_bridge_until_quit
from tests.support.client_shm import SlotClient
from tests.support.podman import PrivatePodman, counted
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(180)

# the count lives only in the shell's memory; the file only shows it (a fresh run starts again at 1)
COUNTER = """\
i=0
while [ $i -lt {n} ]; do i=$((i+1)); echo $i > count.tmp; mv count.tmp count; sleep 0.1; done
echo "counted to $i" > done.txt
exit {code}
"""
JOB = (
    "<job_desc><task><application>/bin/sh</application><command_line>count.sh</command_line>"
    "<container_image>app_rootfs.tar</container_image></task></job_desc>"
)


def _counter_slot(tmp_path: Path, pm: PrivatePodman, *, n: int, code: int) -> SlotClient:
    slot = tmp_path / "slot"
    slot.mkdir()
    c = SlotClient(slot)
    pm.rootfs_tar(slot / "app_rootfs.tar")
    (slot / "count.sh").write_text(COUNTER.format(n=n, code=code))
    (slot / "job.xml").write_text(JOB)
    return c


def test_quit_exports_a_criu_checkpoint_and_the_restart_continues_in_memory_state(podman, tmp_path):
    if not criu.criu_works():
        pytest.fail(
            "CRIU >= 4.1 does not work here (criu --version / criu check): run scripts/setup.sh, which "
            "builds it; without it a container task's quit keeps only the app's own checkpoint"
        )
    c = _counter_slot(tmp_path, podman, n=60, code=7)
    slot = c.slot_dir
    c.start_heartbeats()
    try:
        rc, log1 = run_bridge_until_quit(c, lambda: counted(slot) >= 15, "the container to count to 15")
        assert rc == 0, log1
        at_quit = counted(slot)
        # kept beside the slot, where the container (it sees only the slot) cannot write
        (ckpt,) = tmp_path.glob(f".hb-ckpt-{slot.name}-*.tar.zst")
        assert ckpt.is_file() and ckpt.stat().st_size > 0, log1
        assert "checkpointed" in log1, log1
        assert not podman.containers(OWNER_LABEL), "the container outlived the quit"
        assert not list(tmp_path.glob(".hb-checkpoint-*")), "the export's temporary folder was left"
        time.sleep(0.5)
        assert counted(slot) == at_quit, "the app ran on after the quit"

        seen: list[int] = []
        b2 = Bridge(slot)
        try:
            deadline = time.monotonic() + 90
            while b2.proc.poll() is None and time.monotonic() < deadline:
                n = counted(slot)
                if n and (not seen or seen[-1] != n):
                    seen.append(n)
                time.sleep(0.03)
            rc2 = b2.wait(30)
        finally:
            b2.close()
        log2 = b2.log()
        assert "restored from its checkpoint" in log2, log2
        assert rc2 == 7, log2
        assert (slot / "done.txt").read_text() == "counted to 60\n"
        # the restored shell went on from its in-memory count: never back to a fresh run's 1, 2, ...
        assert seen and min(seen) >= at_quit, (at_quit, seen)
        assert not ckpt.exists(), "the checkpoint stayed after its restore"
        assert not podman.containers(OWNER_LABEL)
        path = criu.restore_config_path("x")
        assert path is None or not list(path.parent.glob("hb-*.criu.conf")), "CRIU restore options left"
    finally:
        c.close()


def test_a_planted_checkpoint_is_never_restored(podman, tmp_path):
    """The guest writes only its own folder (the slot, mounted at workdir); the bridge keeps its export
    beside the slot. Files the guest plants in the slot under checkpoint-like names are never imported:
    after a stop without export the restart starts the app afresh."""
    c = _counter_slot(tmp_path, podman, n=10000, code=0)
    slot = c.slot_dir
    plant = "echo planted > task0_container_checkpoint.tar.zst; echo planted > .hb-ckpt-slot-x.tar.zst\n"
    (slot / "count.sh").write_text(plant + COUNTER.format(n=10000, code=0))
    c.start_heartbeats()
    try:
        b = Bridge(slot)
        try:
            wait_for(lambda: counted(slot) >= 2, 60, "the container to count")
            assert (slot / "task0_container_checkpoint.tar.zst").exists()
            c.abort()
            b.wait(60)
        finally:
            b.close()
        assert not list(tmp_path.glob(".hb-ckpt-*")), b.log()
        assert not podman.containers(OWNER_LABEL)
        (slot / "count").unlink()
        b2 = Bridge(slot)
        try:
            wait_for(lambda: counted(slot) >= 1, 60, "the restarted container to count")
            assert "restored" not in b2.log(), b2.log()
            c.quit()
            b2.wait(60)
        finally:
            b2.close()
    finally:
        c.close()


def _fake_task_container(pm: PrivatePodman, image: str, owner: str, slot: Path, result: str) -> str:
    out = pm.run(
        "run", "-d", "--network", "none", "--label", f"{OWNER_LABEL}={owner}",
        "--label", f"{SLOT_LABEL}={slot}", "--label", f"{RESULT_LABEL}={result}",
        image, "sleep", "600",
    )  # fmt: skip
    return out.stdout.strip()


def test_slot_is_stale(tmp_path):
    slot = tmp_path / "s"
    assert slot_is_stale(str(slot), "r1")  # gone
    slot.mkdir()
    assert slot_is_stale(str(slot), "r1")  # emptied by the client
    assert not slot_is_stale(str(slot), "")  # no result to compare: only a missing folder counts
    (slot / "init_data.xml").write_text("<app_init_data><result_name>r1</result_name></app_init_data>")
    assert not slot_is_stale(str(slot), "r1")
    assert slot_is_stale(str(slot), "r0")  # the slot runs another task now
    assert not slot_is_stale("relative/slot", "r1")  # not a label the bridge wrote


def test_orphans_of_finished_slots_are_removed_at_a_bridge_start_and_nothing_else(podman, tmp_path):
    image = podman.import_image(podman.rootfs_tar(tmp_path / "r.tar"), "localhost/hb-orphan-test:1")
    live = tmp_path / "live"
    SlotClient(live).close()  # init_data.xml naming test_wu_0
    reused = tmp_path / "reused"
    SlotClient(reused).close()
    gone = tmp_path / "gone"
    keep_live = _fake_task_container(podman, image, "hb-live-t0", live, "test_wu_0")
    stale_reused = _fake_task_container(podman, image, "hb-reused-t0", reused, "an_earlier_result_0")
    stale_gone = _fake_task_container(podman, image, "hb-gone-t0", gone, "test_wu_1")
    not_ours = podman.run(
        "run", "-d", "--network", "none", "--label", f"{SLOT_LABEL}={gone}", image, "sleep", "600"
    ).stdout.strip()  # no owner label: another program's
    try:
        c = _counter_slot(tmp_path, podman, n=3, code=0)
        c.start_heartbeats()
        try:
            b = Bridge(c.slot_dir)
            try:
                rc = b.wait(60)
            finally:
                b.close()
        finally:
            c.close()
        log = b.log()
        assert rc == 0, log
        left = {str(x["Id"]) for x in podman.containers()}
        assert keep_live in left and not_ours in left, log
        assert stale_reused not in left and stale_gone not in left, log
        assert log.count("removing orphan container") == 2, log
    finally:
        for ident in (keep_live, stale_reused, stale_gone, not_ours):
            podman.run("rm", "--force", "--time", "0", ident, check=False)
        podman.run("rmi", "--force", image, check=False)


def test_no_criu_annotation_file_without_a_restore(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    if os.geteuid() != 0:
        p = criu.restore_config_path("hb-x-t0")
        assert p is not None and p.parent == tmp_path / "boinc-host-bridge"
    p = criu.restore_config_path("hb-x/../t0")
    assert p is not None and "/" not in p.name
    with criu.restore_config("hb-x-t0"):
        made = criu.restore_config_path("hb-x-t0")
        assert made is not None and made.read_text() == criu.RESTORE_OPTIONS
    assert not made.exists()


# the line number lives only in the shell's memory and in its stdin's offset (a fresh run reads line 1)
STDIN_READER = """\
n=0
while read -r line; do
  n=$((n+1)); echo "got $line"; echo "$n" > count.tmp; mv count.tmp count; sleep 0.1
done
echo "eof after $n lines"
exit 3
"""


def test_quit_with_a_criu_checkpoint_keeps_the_stdin_offset_and_the_output(podman, tmp_path):
    """<stdin_filename> is an open file of the app inside the container (backends/container/command.py):
    the CRIU checkpoint of a quit keeps its offset, the restored app reads on from the next line, and
    <stdout_filename> holds every line once: what the app wrote before the quit and after the restore."""
    if not criu.criu_works():
        pytest.fail("CRIU >= 4.1 does not work here (criu --version / criu check): run scripts/setup.sh")
    lines = 50
    slot = tmp_path / "slot"
    slot.mkdir()
    c = SlotClient(slot)
    podman.rootfs_tar(slot / "app_rootfs.tar")
    (slot / "read.sh").write_text(STDIN_READER)
    (slot / "in.txt").write_text("".join(f"line {i}\n" for i in range(1, lines + 1)))
    (slot / "job.xml").write_text(
        "<job_desc><task><application>/bin/sh</application><command_line>read.sh</command_line>"
        "<container_image>app_rootfs.tar</container_image><stdin_filename>in.txt</stdin_filename>"
        "<stdout_filename>out.txt</stdout_filename></task></job_desc>"
    )
    c.start_heartbeats()
    try:
        rc, log1 = run_bridge_until_quit(c, lambda: counted(slot) >= 10, "the app to read 10 lines")
        assert rc == 0 and "checkpointed" in log1, log1
        at_quit = counted(slot)
        assert at_quit < lines
        rc2, log2 = run_bridge(slot, timeout=90)
        assert "restored from its checkpoint" in log2, log2
        assert rc2 == 3, log2
        expected = "".join(f"got line {i}\n" for i in range(1, lines + 1)) + f"eof after {lines} lines\n"
        assert (slot / "out.txt").read_text() == expected, (log1, log2)
        assert not podman.containers(OWNER_LABEL)
    finally:
        c.close()
