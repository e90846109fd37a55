"""The host bridge as a subprocess on the real libboinc_api, local backend, with the test playing the
BOINC client through the real shared memory (``SlotClient``)."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from boinc_guest import protocol as P

from tests.support.bridge import Bridge, alive, guest_pids, make_slot, run_bridge
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def client(tmp_path):
    c = make_slot(tmp_path)
    c.start_heartbeats()
    yield c
    c.close()


def _share(client):
    return client.slot_dir / "shared"


def _no_guest_left(client):
    pids = guest_pids(_share(client))
    wait_for(lambda: not any(alive(p) for p in pids), 10, "guest processes to be gone")


def test_progress_checkpoints_finish_and_output(client, tmp_path):
    b = Bridge(client.slot_dir)
    try:
        fractions = []
        cpu = []
        deadline = time.monotonic() + 60
        final = None
        while time.monotonic() < deadline and b.proc.poll() is None:
            st = client.read_app_status()
            if st is not None:
                fractions.append(float(st["fraction_done"]))
                cpu.append(float(st["current_cpu_time"]))
                final = st
            time.sleep(0.01)
        rc = b.wait(30)
        assert rc == 0, b.log()
        assert len(fractions) >= 5, fractions
        assert fractions == sorted(fractions), "fraction done went backwards"
        assert fractions[-1] == pytest.approx(1.0)
        assert max(cpu) > 0.5  # 40 x 0.02 s of CPU
        assert float(final["checkpoint_cpu_time"]) > 0
        assert float(final.get("fpops_cumulative", 0)) == pytest.approx(8e9)
        # the output landed at the physical file behind the logical name, whole
        out = tmp_path / "project" / "result_0_out"
        assert out.read_text() == "done 40\n"
        assert (client.slot_dir / "boinc_finish_called").exists()
    finally:
        b.close()
    _no_guest_left(client)


def test_suspend_really_stops_the_task_and_resume_continues(client):
    b = Bridge(client.slot_dir)
    try:
        client.wait_status(lambda s: float(s["fraction_done"]) > 0.05, timeout=30)
        client.suspend()
        share = _share(client)
        pid = wait_for(lambda: guest_pids(share), 10, "guest pid")[0]
        wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, 5, "guest stopped")
        t0 = psutil.Process(pid).cpu_times()
        time.sleep(1.0)
        t1 = psutil.Process(pid).cpu_times()
        assert t1.user + t1.system == pytest.approx(t0.user + t0.system, abs=0.02)
        ctl = P.decode_control((share / P.CONTROL_FILE).read_bytes())
        assert ctl.suspended is True
        client.resume()
        wait_for(lambda: psutil.Process(pid).status() != psutil.STATUS_STOPPED, 5, "guest running")
        assert b.wait(60) == 0, b.log()
    finally:
        b.close()
    _no_guest_left(client)


def test_abort_kills_everything_and_exits_194(client):
    b = Bridge(client.slot_dir)
    try:
        client.wait_status(lambda s: float(s["fraction_done"]) > 0.05, timeout=30)
        pids = guest_pids(_share(client))
        assert pids
        client.abort()
        assert b.wait(20) == 194, b.log()
        for p in pids:
            wait_for(lambda p=p: not alive(p), 5, f"guest {p} gone")
    finally:
        b.close()


def test_quit_then_restart_resumes_from_checkpoint(client, tmp_path):
    b = Bridge(client.slot_dir)
    try:
        st = client.wait_status(lambda s: float(s["fraction_done"]) >= 0.3, timeout=30)
        client.quit()
        assert b.wait(20) == 0, b.log()
    finally:
        b.close()
    _no_guest_left(client)
    assert not (client.slot_dir / "boinc_finish_called").exists()
    frac_before = float(st["fraction_done"])
    # the client starts the app again in the same slot
    b = Bridge(client.slot_dir)
    try:
        first = client.wait_status(timeout=30)
        # fraction done never goes backwards across the restart
        assert float(first["fraction_done"]) >= frac_before - 1e-9
        assert b.wait(60) == 0, b.log()
    finally:
        b.close()
    starts = [int(x) for x in (_share(client) / "starts").read_text().split()]
    assert starts[0] == 0 and starts[1] >= 5, starts  # the second run resumed from a checkpoint
    assert (tmp_path / "project" / "result_0_out").read_text() == "done 40\n"


def test_kill_9_of_the_bridge_then_restart(client, tmp_path):
    b = Bridge(client.slot_dir)
    try:
        client.wait_status(lambda s: float(s["fraction_done"]) >= 0.3, timeout=30)
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(10)
    finally:
        b.close()
    pids = guest_pids(_share(client))
    # the guest does not outlive its bridge (PDEATHSIG), or the restarted bridge removes it
    b = Bridge(client.slot_dir)
    try:
        assert b.wait(60) == 0, b.log()
    finally:
        b.close()
    for p in pids:
        assert not alive(p)
    starts = [int(x) for x in (_share(client) / "starts").read_text().split()]
    assert len(starts) == 2 and starts[1] >= 5, starts
    assert (tmp_path / "project" / "result_0_out").read_text() == "done 40\n"


def test_lost_client_stops_the_task_and_exits(tmp_path):
    # a client pid that is not alive: the library reports no heartbeat and the bridge stops
    dead = psutil.Popen(["true"])
    dead.wait()
    c = make_slot(tmp_path, client_pid=dead.pid, args="3000 0.02")
    try:
        rc, log = run_bridge(c.slot_dir, timeout=60)
        assert rc == 0, log
        assert "lost contact" in log or "heartbeat" in log.lower()
        assert not (c.slot_dir / "boinc_finish_called").exists()
        pids = guest_pids(c.slot_dir / "shared")
        for p in pids:
            assert not alive(p)
    finally:
        c.close()


def test_guest_failure_status_and_message(tmp_path):
    c = make_slot(tmp_path, args="10 0.01 7")
    c.start_heartbeats()
    try:
        rc, log = run_bridge(c.slot_dir, timeout=60)
        assert rc == 7, log
        assert "failed on purpose" in log
        assert not (tmp_path / "project" / "result_0_out").exists()
    finally:
        c.close()


def test_bad_job_file_is_named_and_nothing_starts(tmp_path):
    c = make_slot(tmp_path)
    (c.slot_dir / "job.xml").write_text(
        "<job_desc>\n  <task>\n    <weight>abc</weight>\n  </task>\n</job_desc>\n"
    )
    try:
        rc, log = run_bridge(c.slot_dir, timeout=30)
        assert rc == (-112) & 0xFF, log
        log = log
        assert "job.xml:3" in log and "weight" in log
        assert not (c.slot_dir / "shared").exists() or not guest_pids(c.slot_dir / "shared")
    finally:
        c.close()


def test_no_process_left_behind_by_any_test():
    me = psutil.Process(os.getpid())
    leftovers = [p for p in me.children(recursive=True) if p.is_running()]
    assert not [p for p in leftovers if "guest.py" in " ".join(p.cmdline())]


MESSAGING_GUEST = """\
import os, time
from boinc_guest import *

boinc_init()
boinc_send_trickle_up("progress", "<step>1</step>")
boinc_send_trickle_up("progress", "<step>2</step>")
with open("partial.dat", "w") as f:
    f.write("intermediate result\\n")
assert boinc_upload_file("partial.dat") == 0
# wait (bounded) for a trickle-down from the client and echo it as the output
deadline = time.time() + 30
text = None
while time.time() < deadline and text is None:
    text = boinc_receive_trickle_down()
    time.sleep(0.05)
with open("out", "w") as f:
    f.write(f"got {text}\\n")
boinc_finish(0)
"""


def test_trickles_uploads_and_trickle_down(tmp_path):
    c = make_slot(tmp_path)
    (c.slot_dir / "guest.py").write_text(MESSAGING_GUEST)
    (c.slot_dir / "job.xml").write_text(
        "<job_desc><task><application>./guest.py</application><copy_app_to_VM/>"
        "<copy_file_from_VM>out</copy_file_from_VM></task></job_desc>"
    )
    # partial.dat's logical name is a soft link into the project directory, like any output
    (c.slot_dir / "partial.dat").write_text("<soft_link>../project/result_0_partial</soft_link>")
    c.start_heartbeats()
    try:
        b = Bridge(c.slot_dir)
        try:
            # the two trickle-ups arrive, in order (the API sends one file at a time)
            got = []
            deadline = time.monotonic() + 30
            while len(got) < 2 and time.monotonic() < deadline:
                msg = c.read_trickle_up()
                if msg is not None and (c.slot_dir / "trickle_up.xml").exists():
                    got.append((c.slot_dir / "trickle_up.xml").read_text())
                    (c.slot_dir / "trickle_up.xml").unlink()
                time.sleep(0.02)
            # the upload request reached the library: the file is at its physical path
            wait_for(lambda: (tmp_path / "project" / "result_0_partial").exists(), 10, "upload copied out")
            c.send_trickle_down("trickle_down_1", "<hello>from the project</hello>")
            assert b.wait(60) == 0, b.log()
        finally:
            b.close()
        assert any("<step>1</step>" in g for g in got), got
        assert (tmp_path / "project" / "result_0_partial").read_text() == "intermediate result\n"
        assert (tmp_path / "project" / "result_0_out").read_text() == "got <hello>from the project</hello>\n"
    finally:
        c.close()


def test_restart_delivers_events_the_dead_bridge_left_and_completes_a_finished_task(tmp_path):
    """The bridge died after the guest had finished (and trickled) but before it processed that:
    the restarted bridge delivers the trickle, copies the output and finishes without rerunning."""
    from host_bridge.runtime import job_digest
    from host_bridge.state import BridgeState, save_state

    c = make_slot(tmp_path)
    c.start_heartbeats()
    share = c.slot_dir / "shared"
    share.mkdir()
    (share / "out").write_text("done 40\n")
    P.write_atomic(
        share,
        P.STATUS_FILE,
        P.encode_status(
            P.Status(
                seq=7,
                fraction_done=1.0,
                events=(P.TrickleUp(id=1, variety="last", text="<x/>"), P.Finish(id=2, status=0)),
            )
        ),
    )
    st = BridgeState(job_digest=job_digest(c.slot_dir / "job.xml"), task_started=True, runs=1)
    save_state(c.slot_dir, st)
    try:
        b = Bridge(c.slot_dir)
        try:
            msg = wait_for(lambda: c.read_trickle_up(), 20, "the left-over trickle-up")
            assert msg is not None
            assert "<variety>last</variety>" in (c.slot_dir / "trickle_up.xml").read_text()
            (c.slot_dir / "trickle_up.xml").unlink()
            assert b.wait(30) == 0, b.log()
        finally:
            b.close()
        assert not (share / "pids").exists()  # the guest was not run again
        assert (tmp_path / "project" / "result_0_out").read_text() == "done 40\n"
    finally:
        c.close()


LINGERING_GUEST = """\
import time
from boinc_guest import protocol as P
with open("runs", "a") as f:
    f.write("run\\n")
with open("out", "w") as f:
    f.write("done 40\\n")
done = P.Status(seq=1, hb=1, fraction_done=1.0, events=(P.Finish(id=1, status=0),))
P.write_atomic(".", P.STATUS_FILE, P.encode_status(done))
time.sleep(60)  # lingers after its finish: the bridge waits finish_grace for it to exit
"""


def test_kill_9_after_the_finish_was_processed_completes_without_rerunning(tmp_path):
    """The bridge processed the guest's finish event (saved with its id) and was killed before the
    task was done: the restarted bridge completes the task (output copied, exit 0) instead of running
    the whole task again (it did: the event was below the saved id, so it was skipped)."""
    import json

    c = make_slot(tmp_path)
    c.start_heartbeats()
    (c.slot_dir / "guest.py").write_text(LINGERING_GUEST)
    state = c.slot_dir / "host_bridge_state.json"
    try:
        b = Bridge(c.slot_dir)
        try:
            wait_for(
                lambda: state.exists() and json.loads(state.read_text()).get("task_finish") is not None,
                30,
                "the finish recorded in the bridge's state",
            )
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait(10)
        finally:
            b.close()
        rc, log = run_bridge(c.slot_dir, timeout=30)
        assert rc == 0, log
        assert "had finished (status 0) before the bridge restarted" in log
        assert (c.slot_dir / "shared" / "runs").read_text() == "run\n"  # not run again
        assert (tmp_path / "project" / "result_0_out").read_text() == "done 40\n"
        assert json.loads(state.read_text())["task_finish"] is None
    finally:
        c.close()
