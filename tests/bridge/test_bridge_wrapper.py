"""BOINC's wrapper dialect through the bridge (subprocess, real libboinc_api, SlotClient playing the
client): unzip_input, zip_output, daemons, setenv and macros, fraction_done_filename,
checkpoint_filename, append_cmdline_args, time_limit, stdio files through BOINC's soft links."""

from __future__ import annotations

import zipfile

import pytest

from tests.support.bridge import Bridge, alive, run_bridge
from tests.support.client_shm import SlotClient
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(120)

APP = """#!/bin/sh
echo "args: $*"
echo "greeting: $GREETING"
cat data/input.txt
for f in 0.25 0.5 0.75; do
    echo "$f" > frac
    sleep 0.4
done
echo saved > ckpt
echo one > res_1
echo two > res_2
echo other > notme
exit 0
"""

DAEMON = """#!/bin/sh
echo $$ > daemon.pid
while true; do sleep 0.2; done
"""

JOB = """<job_desc>
  <unzip_input><zipfilename>input.zip</zipfilename></unzip_input>
  <task>
    <application>daemon.sh</application>
    <daemon/>
  </task>
  <task>
    <application>app.sh</application>
    <command_line>--x $NTHREADS</command_line>
    <setenv>GREETING=hello from $PWD</setenv>
    <fraction_done_filename>frac</fraction_done_filename>
    <checkpoint_filename>ckpt</checkpoint_filename>
    <append_cmdline_args/>
    <stdout_filename>app_stdout</stdout_filename>
  </task>
  <zip_output>
    <zipfilename>result.zip</zipfilename>
    <filename>res_.*</filename>
  </zip_output>
</job_desc>
"""


def _slot(tmp_path, job: str = JOB, apps: dict[str, str] | None = None) -> SlotClient:
    """A slot with the job, app.sh and daemon.sh, and ``apps`` (more scripts: name -> text)."""
    slot = tmp_path / "slot"
    slot.mkdir()
    for name, text in (("app.sh", APP), ("daemon.sh", DAEMON), *(apps or {}).items()):
        (slot / name).write_text(text)
        (slot / name).chmod(0o755)
    with zipfile.ZipFile(slot / "input.zip", "w") as zf:
        zf.writestr("data/input.txt", "zipped input\n")
    (slot / "job.xml").write_text(job)
    c = SlotClient(slot)
    c.start_heartbeats()
    return c


def test_wrapper_dialect_features(tmp_path):
    c = _slot(tmp_path)
    try:
        b = Bridge(c.slot_dir, "--nthreads", "3", "--extra-arg", "foo")
        try:
            st = c.wait_status(lambda s: 0.2 < float(s["fraction_done"]) < 0.8, timeout=30)
            assert float(st["fraction_done"]) in (0.25, 0.5, 0.75)  # the values the app wrote
            pid = int(
                wait_for(
                    lambda: (
                        (c.slot_dir / "daemon.pid").exists()
                        and (c.slot_dir / "daemon.pid").read_text().strip()
                    ),
                    10,
                    "daemon pid",
                )
            )
            assert alive(pid)
            assert b.wait(60) == 0, b.log()
        finally:
            b.close()
        out = (c.slot_dir / "app_stdout").read_text()
        assert "args: --x 3 --extra-arg foo" in out
        assert f"greeting: hello from {c.slot_dir}" in out
        assert "zipped input" in out
        with zipfile.ZipFile(c.slot_dir / "result.zip") as zf:
            assert sorted(zf.namelist()) == ["res_1", "res_2"]
            assert zf.read("res_2") == b"two\n"
        wait_for(lambda: not alive(pid), 10, "the daemon to be stopped at the end")
    finally:
        c.close()


def test_time_limit_ends_the_task_as_done_and_the_job_goes_on(tmp_path):
    """<time_limit>: as BOINC's wrapper (TASK::poll: kill, status 0), the task is ended and counts as
    done; the next task runs and the job finishes with 0."""
    job = """<job_desc>
    <task><application>sleep</application><command_line>60</command_line><time_limit>2</time_limit></task>
    <task><application>app2.sh</application></task></job_desc>"""
    c = _slot(tmp_path, job, {"app2.sh": "#!/bin/sh\necho second > second_ran\n"})
    try:
        rc, log = run_bridge(c.slot_dir, timeout=30)
        assert rc == 0, log
        assert "reached its time limit of 2 s" in log
        assert (c.slot_dir / "second_ran").read_text() == "second\n"
    finally:
        c.close()


@pytest.mark.parametrize("exec_dir", [None, "work"])
def test_stdio_files_are_resolved_through_soft_links(tmp_path, exec_dir):
    """BOINC's client puts a soft-link file in the slot for each workunit / result file; BOINC's wrapper
    opens stdin / stdout / stderr through them, in the slot, before it changes to <exec_dir>. The
    output must land in the result's file (in the project folder), the link file must stay as it was."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "wu_stdin").write_text("line from the workunit\n")
    in_exec_dir = f"<exec_dir>{exec_dir}</exec_dir>" if exec_dir else ""
    job = f"""<job_desc><task><application>app3.sh</application>{in_exec_dir}
    <stdin_filename>in_file</stdin_filename>
    <stdout_filename>out_file</stdout_filename>
    <stderr_filename>err_file</stderr_filename></task></job_desc>"""
    c = _slot(tmp_path, job, {"app3.sh": '#!/bin/sh\nread line\necho "got: $line"\necho oops >&2\n'})
    if exec_dir:
        (c.slot_dir / exec_dir).mkdir()
    links = {
        "in_file": "<soft_link>../proj/wu_stdin</soft_link>\n",
        "out_file": "<soft_link>../proj/res_stdout</soft_link>\n",
        "err_file": "<soft_link>../proj/res_stderr</soft_link>\n",
    }
    for name, text in links.items():
        (c.slot_dir / name).write_text(text)
    try:
        rc, log = run_bridge(c.slot_dir, timeout=30)
        assert rc == 0, log
        assert (proj / "res_stdout").read_text() == "got: line from the workunit\n"
        assert (proj / "res_stderr").read_text() == "oops\n"
        for name, text in links.items():
            assert (c.slot_dir / name).read_text() == text
    finally:
        c.close()


def test_unnamed_stderr_reaches_stderr_txt(tmp_path):
    """Without <stderr_filename> the task's stderr is the bridge's: under the client the slot's
    stderr.txt, which the project gets back with the result (as with BOINC's wrapper), so an app's
    own error message is not lost."""
    job = "<job_desc><task><application>app4.sh</application></task></job_desc>"
    c = _slot(tmp_path, job, {"app4.sh": "#!/bin/sh\necho 'app4: cannot find input.dat' >&2\nexit 3\n"})
    try:
        rc, log = run_bridge(c.slot_dir, timeout=30)
        assert rc == 3, log
        assert "app4: cannot find input.dat" in log
    finally:
        c.close()


def test_missing_program_is_named(tmp_path):
    job = "<job_desc><task><application>no_such_program_xyz</application></task></job_desc>"
    c = _slot(tmp_path, job)
    try:
        rc, log = run_bridge(c.slot_dir, timeout=30)
        assert rc != 0, log
        assert "no_such_program_xyz" in log
    finally:
        c.close()
