"""BOINC's wrapper dialect through the bridge (subprocess, real libboinc_api, SlotClient playing the
client): unzip_input, zip_output, daemons, setenv and macros, fraction_done_filename,
checkpoint_filename, append_cmdline_args, time_limit."""

from __future__ import annotations

import zipfile

import pytest

from tests.bridge_support import Bridge, alive, wait_for
from tests.support.client_shm import SlotClient

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


def _slot(tmp_path, job: str = JOB) -> SlotClient:
    slot = tmp_path / "slot"
    slot.mkdir()
    for name, text in (("app.sh", APP), ("daemon.sh", DAEMON)):
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


def test_time_limit_ends_the_task(tmp_path):
    job = """<job_desc><task><application>sleep</application><command_line>60</command_line>
    <time_limit>2</time_limit></task></job_desc>"""
    c = _slot(tmp_path, job)
    try:
        b = Bridge(c.slot_dir)
        try:
            rc = b.wait(30)
        finally:
            b.close()
        assert rc == 197, b.log()
        assert "time limit" in b.log()
    finally:
        c.close()


def test_missing_program_is_named(tmp_path):
    job = "<job_desc><task><application>no_such_program_xyz</application></task></job_desc>"
    c = _slot(tmp_path, job)
    try:
        b = Bridge(c.slot_dir)
        try:
            rc = b.wait(30)
        finally:
            b.close()
        assert rc != 0, b.log()
        assert "no_such_program_xyz" in b.log()
    finally:
        c.close()
