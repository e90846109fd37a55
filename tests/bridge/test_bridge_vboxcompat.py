"""A guest that only writes vboxwrapper's files works unchanged: the bridge as a subprocess on the real
libboinc_api, LOCAL backend, the test playing the client (``SlotClient``).

The guest is a shell script with no SDK at all, like LHC@home's VMs: it writes ``heartbeat`` and
``progress`` in the shared folder and ends with ``shutdown`` (vboxwrapper's completion trigger), or
asks for a temporary exit, or drops a trickle trigger file, or stops its heartbeat.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.support.bridge import Bridge, alive
from tests.support.client_shm import SlotClient
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(120)

# LHC@home CMS's vbox_job.xml, with the VM-only tags left out and the intervals made short
VBOX_JOB = """\
<vbox_job>
    <os_name>Linux26_64</os_name>
    <memory_size_mb>2048</memory_size_mb>
    <enable_remotedesktop/>
    <copy_to_shared>init_data.xml</copy_to_shared>
    <copy_cmdline_to_shared/>
    <completion_trigger_file>shutdown</completion_trigger_file>
    <temporary_exit_trigger_file>restart_later</temporary_exit_trigger_file>
    <trickle_trigger_file>credits</trickle_trigger_file>
    <enable_shared_directory/>
    <pf_host_port>7859</pf_host_port>
    <pf_guest_port>80</pf_guest_port>
    {extra}
    <fraction_done_filename>progress</fraction_done_filename>
    <heartbeat_filename>heartbeat</heartbeat_filename>
    <minimum_heartbeat_interval>{hb}</minimum_heartbeat_interval>
</vbox_job>
"""

JOB = """\
<job_desc>
    <task>
        <application>./guest.sh</application>
        <copy_app_to_VM/>
        <command_line>{mode}</command_line>
    </task>
</job_desc>
"""

# No BOINC API, no SDK: only vboxwrapper's files, in the working directory (the share).
GUEST = """\
#!/bin/sh
mode=$1
echo $$ >> pids
test -f init_data.xml || { echo "copy_to_shared did not bring init_data.xml" >&2; exit 9; }
n=0
for f in 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1.0; do
    n=$((n + 1))
    if [ "$mode" != hang ] || [ $n -le 2 ]; then
        echo "beat $n" > heartbeat
    fi
    [ "$mode" = duration ] || echo "$f" >> progress
    sleep 0.15
done
case $mode in
    ok) echo 0 > shutdown ;;
    fail) printf '3\\n0\\nthe event generator crashed\\n' > shutdown ;;
    notice) printf '5\\n1\\nplease update VirtualBox\\n' > shutdown; exec sleep 60 ;;
    tempexit) printf '1234\\n1\\nno jobs in the queue\\n' > restart_later; exec sleep 60 ;;
    trickle)
        echo '<credit>12.5</credit>' > credits.tmp
        mv credits.tmp credits
        sleep 0.5
        echo 0 > shutdown ;;
    hang) exec sleep 60 ;;
    duration) sleep 1.5 ;;
esac
exit 0
"""


@pytest.fixture
def slot(tmp_path):
    clients: list[SlotClient] = []

    def make(mode: str, *, hb: float = 30, extra: str = "") -> SlotClient:
        d = tmp_path / "slot"
        d.mkdir()
        (d / "guest.sh").write_text(GUEST)
        os.chmod(d / "guest.sh", 0o755)
        (d / "job.xml").write_text(JOB.format(mode=mode))
        (d / "vbox_job.xml").write_text(VBOX_JOB.format(hb=hb, extra=extra))
        c = SlotClient(d)
        c.start_heartbeats()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def _run(c: SlotClient, *args: str, timeout: float = 60) -> tuple[int, list[float], Bridge]:
    b = Bridge(c.slot_dir, *args)
    fractions: list[float] = []
    try:
        deadline = time.monotonic() + timeout
        while b.proc.poll() is None and time.monotonic() < deadline:
            st = c.read_app_status()
            if st is not None:
                fractions.append(float(st["fraction_done"]))
            time.sleep(0.01)
        rc = b.wait(10)
    finally:
        b.close()
    return rc, fractions, b


def _guests_gone(c: SlotClient) -> None:
    pids = [int(x) for x in (c.slot_dir / "shared" / "pids").read_text().split()]
    for p in pids:
        wait_for(lambda p=p: not alive(p), 10, f"guest {p} gone")


def test_lhc_like_guest_completes_with_exit_0_and_progress(slot):
    c = slot("ok")
    rc, fractions, b = _run(c, "--events", "100")
    assert rc == 0, b.log()
    assert (c.slot_dir / "boinc_finish_called").exists()
    assert fractions == sorted(fractions), fractions
    assert any(0.0 < f < 1.0 for f in fractions), fractions  # the progress file's values came through
    assert fractions[-1] == pytest.approx(1.0)
    assert (c.slot_dir / "shared" / "init_data.xml").exists()  # <copy_to_shared>
    assert (c.slot_dir / "shared" / "cmdline").read_text() == "--events 100 "  # <copy_cmdline_to_shared/>
    # vbox_job.xml's port forward: the web console address went to the client (local backend: direct)
    assert "web console of the task: http://localhost:7859" in b.log()
    _guests_gone(c)


def test_web_console_url_reaches_the_client(slot):
    c = slot("hang", hb=30)
    b = Bridge(c.slot_dir)
    try:
        msg = c.wait_message("graphics_reply", timeout=20)
        assert msg.get("web_graphics_url") == "http://localhost:7859", msg
        c.abort()
        assert b.wait(20) == 194, b.log()
    finally:
        b.close()
    _guests_gone(c)


def test_completion_trigger_with_a_failure_code_and_message(slot):
    c = slot("fail")
    rc, _f, b = _run(c)
    assert rc == 3, b.log()
    log = b.log()
    assert "the event generator crashed" in log
    assert "status 3" in log
    _guests_gone(c)


def test_completion_trigger_ends_a_guest_that_keeps_running(slot):
    c = slot("notice")
    rc, _f, b = _run(c)
    assert rc == 5, b.log()
    assert "please update VirtualBox" in b.log()
    _guests_gone(c)  # the bridge stopped the guest after the grace period


def test_temporary_exit_trigger(slot):
    c = slot("tempexit")
    rc, _f, b = _run(c)
    assert rc == 0, b.log()
    text = (c.slot_dir / "boinc_temporary_exit").read_text()
    assert text.splitlines()[0].strip() == "1234", text
    assert "no jobs in the queue" in text
    assert not (c.slot_dir / "shared" / "restart_later").exists()  # taken, as vboxwrapper does
    assert not (c.slot_dir / "boinc_finish_called").exists()
    _guests_gone(c)


def test_trickle_trigger_file_becomes_a_trickle_up(slot):
    c = slot("trickle")
    b = Bridge(c.slot_dir)
    try:
        wait_for(lambda: c.read_trickle_up(), 30, "the trickle-up notice")
        text = (c.slot_dir / "trickle_up.xml").read_text()
        (c.slot_dir / "trickle_up.xml").unlink()
        assert b.wait(30) == 0, b.log()
    finally:
        b.close()
    assert "<variety>credits</variety>" in text, text
    assert "<credit>12.5</credit>" in text, text
    assert not (c.slot_dir / "shared" / "credits").exists()
    _guests_gone(c)


def test_heartbeat_stops_temporary_exit_after_the_interval(slot):
    c = slot("hang", hb=2)
    t0 = time.monotonic()
    rc, _f, b = _run(c)
    took = time.monotonic() - t0
    assert rc == 0, b.log()
    assert "no heartbeat" in b.log()
    text = (c.slot_dir / "boinc_temporary_exit").read_text()
    assert float(text.splitlines()[0]) > 0
    assert took < 30, took  # the guest sleeps 60 s: it was stopped, not waited for
    assert not (c.slot_dir / "boinc_finish_called").exists()
    _guests_gone(c)


def test_job_duration_drives_progress_and_ends_the_job(slot):
    c = slot("duration", extra="<job_duration>4</job_duration>")
    rc, fractions, b = _run(c)
    assert rc == 0, b.log()
    rising = [f for f in fractions if 0.0 < f < 1.0]
    assert len(set(rising)) >= 2, fractions  # progress rose with the running time (1 s ticks)
    assert fractions == sorted(fractions), fractions
    assert fractions[-1] == pytest.approx(1.0)
    assert "job_duration" in b.log()
    _guests_gone(c)
