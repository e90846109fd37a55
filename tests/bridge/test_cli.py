"""The host-bridge command line: check, demo, and the exit codes of a run without a client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_bridge import cli
from host_bridge.core import ExitBridge as Outcome
from tests.support.paths import ROOT

REAL = ROOT / "tests" / "data" / "jobs-real"

pytestmark = pytest.mark.timeout(120)


ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "guest_sdk" / "python")]))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host_bridge", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=ENV,
        cwd=cwd,
    )


def test_check_prints_the_plan():
    r = run("check", str(REAL / "extra" / "boinc_samples_vm_wrapper_job.xml"))
    assert r.returncode == 0, r.stderr
    assert "worker.py" in r.stdout and "out" in r.stdout
    assert "VMmanage" in r.stdout + r.stderr  # obsolete tasks are named, with a warning


def test_check_names_file_line_and_tag(tmp_path):
    bad = tmp_path / "job.xml"
    bad.write_text(
        "<job_desc>\n  <task>\n    <application>a</application>\n"
        "    <weight>x</weight>\n  </task>\n</job_desc>\n"
    )
    r = run("check", str(bad))
    assert r.returncode != 0
    assert f"{bad}:4" in r.stderr and "<weight>" in r.stderr


def test_check_malformed_real_file():
    path = REAL / "icrar_sourcefinder_MALFORMED_vbox_job.xml"
    r = run("check", str(path))
    assert r.returncode != 0
    assert f"{path}:7" in r.stderr


def test_check_describes_a_vbox_job():
    """A vboxwrapper vbox_job.xml is checked too (it used to be refused as "not a <job_desc>")."""
    r = run("check", str(REAL / "lhcathome_CMS_vbox_job.xml"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "vbox_job.xml" in out and "job_desc" not in out + r.stderr
    for shown in ("Linux26_64", "2048 MB", "CMS.vdi", "7859", "80", "64800 s", "init_data.xml", "shutdown"):
        assert shown in out, shown
    assert "heartbeat, touched at least every 1200 s" in out
    assert "no warnings" in out


def test_check_vbox_job_prints_its_warnings():
    """ICRAR's misspelt <vm_minimum_checkpoint_interval> reaches the terminal, with the hint."""
    path = REAL / "icrar_sourcefinder_vbox_job_1.0.xml"
    r = run("check", str(path))
    assert r.returncode == 0, r.stderr
    assert "warnings (2):" in r.stdout
    assert (
        f"{path}:7: <vm_minimum_checkpoint_interval>: unknown tag in <vbox_job>, ignored; "
        "did you mean <minimum_checkpoint_interval>?"
    ) in r.stdout
    assert "memory 512 MB (256 MB asked" in r.stdout


def test_check_vbox_job_template_is_an_error():
    path = REAL / "boinc2docker_template_vbox_job.xml"
    r = run("check", str(path))
    assert r.returncode != 0
    assert f"{path}:3: <memory_size_mb>:" in r.stderr and "{memory}" in r.stderr
    assert "unrendered template" in r.stderr


def test_demo_runs_the_worker_standalone():
    r = run("demo", "--local", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100.0%" in r.stdout
    assert "HELLO FROM THE INPUT FILE" in r.stdout
    assert "QEMU" not in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_vm_demo_quits_half_way_and_resumes_from_the_checkpoint():
    """The default demo: the worker in a real VM (the image built by the image builder on first use,
    then cached), a quit at half-way that saves the whole VM, a restart that restores it (the image's
    root disk does not pin the VM: the agent relays the share in it too)."""
    r = subprocess.run(
        [sys.executable, "-m", "host_bridge", "demo", "8"],
        capture_output=True, text=True, timeout=800, env=ENV,
    )  # fmt: skip
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "in a QEMU VM" in out and "image ready in" in out
    assert "-- run 1: until half-way" in out and "-- run 2: restarted, to the end" in out
    assert "starting VM" in r.stderr  # a real VM, twice
    assert r.stderr.count("starting VM") == 2, r.stderr
    assert "worker: resuming from checkpoint" in r.stderr or "resuming job at task 1" in r.stderr
    assert "saved for the quit" in r.stderr and "restored from its save" in r.stderr, r.stderr
    first, second = out.split("-- run 2")
    assert "100.0%" not in first and "100.0%" in second
    assert "output file: " in out and "HELLO FROM THE INPUT FILE" in out and "exit status 0" in out


def run_job(slot: Path, application: str, command_line: str) -> subprocess.CompletedProcess[str]:
    """Write a one-task job file into ``slot`` and run the bridge there, standalone."""
    slot.mkdir(exist_ok=True)
    (slot / "job.xml").write_text(
        f"<job_desc><task><application>{application}</application><command_line>{command_line}"
        "</command_line></task></job_desc>"
    )
    return run("--standalone", cwd=slot)


def test_standalone_run_in_a_plain_directory(tmp_path):
    r = run_job(tmp_path, "sh", "-c 'echo hi > out; exit 3'")
    assert r.returncode == 3, r.stdout + r.stderr
    assert (tmp_path / "out").read_text() == "hi\n"


def test_standalone_run_with_an_absolute_program_path(tmp_path):
    """<application> may name a program on the host by its absolute path (not a logical name)."""
    r = run_job(tmp_path, "/bin/sh", "-c 'echo abs > out'")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "out").read_text() == "abs\n"
    assert "internal error" not in r.stderr


def test_job_option_takes_a_path(tmp_path):
    """--job is "a logical name in the slot or a path" (--help): an absolute path or one with ../ gave an
    internal error (the path was taken for a logical name) and a temporary exit retried forever."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "myjob.xml").write_text(
        "<job_desc><task><application>sh</application><command_line>-c 'echo job > out'</command_line>"
        "</task></job_desc>"
    )
    slot = tmp_path / "slot"
    slot.mkdir()
    for job in (str(other / "myjob.xml"), "../elsewhere/myjob.xml"):
        r = run("--standalone", "--job", job, cwd=slot)
        assert r.returncode == 0 and "internal error" not in r.stderr, r.stderr
        assert (slot / "out").read_text() == "job\n"
        (slot / "out").unlink()
        for f in slot.iterdir():  # the next run starts the job afresh
            if f.is_file():
                f.unlink()
    r = run("--standalone", "--job", str(other / "nosuch.xml"), cwd=slot)
    assert r.returncode == 256 - 112 and "nosuch.xml" in r.stderr, r.stderr


def test_one_standalone_bridge_per_folder(tmp_path):
    """Two standalone bridges in one folder killed each other's tasks (each took the other's processes
    for leftovers of an earlier run, and both ended 193). The second is now refused at once (206), and
    the first goes on; under a client, the BOINC library's lock file does the same."""
    (tmp_path / "job.xml").write_text(
        "<job_desc><task><application>sh</application>"
        "<command_line>-c 'sleep 3; echo first > out'</command_line></task></job_desc>"
    )
    first = subprocess.Popen(
        [sys.executable, "-m", "host_bridge", "--standalone"], cwd=tmp_path, env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "host_bridge_state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = run("--standalone", cwd=tmp_path)
        assert second.returncode == 206, second.stderr
        assert f"another host-bridge is running in {tmp_path}" in second.stderr, second.stderr
        assert "cannot initialise the BOINC API" not in second.stderr
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert first.returncode == 0, err
    assert (tmp_path / "out").read_text() == "first\n"


def test_python_interpreter_choice(tmp_path):
    """A bare python3 runs with the bridge's interpreter (it has the guest SDK); an absolute interpreter
    path is run as named (the host's own Python and its packages)."""
    code = "-c \"import sys; open('out','w').write(sys.executable)\""
    for app, expected in (("python3", sys.executable), ("/usr/bin/python3", "/usr/bin/python3")):
        slot = tmp_path / app.replace("/", "_")
        r = run_job(slot, app, code)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (slot / "out").read_text() == expected


# ---------------------------------------------------------------- run arguments


def test_run_options_are_not_abbreviated():
    """Unknown arguments are the task's (BOINC's wrapper hands them on): --po is not --poll, --stand is
    not --standalone, --nthread is not --nthreads."""
    cfg, verbose = cli._config(["--po", "--stand", "--nthread", "3"])
    assert cfg.extra_args == ("--po", "--stand", "--nthread", "3")
    assert cfg.watch_mode == "auto" and not cfg.standalone and cfg.nthreads is None
    assert verbose == 0
    cfg, verbose = cli._config(["--nthreads", "2", "-vv", "--poll", "--s", "app-arg"])
    assert (cfg.nthreads, verbose, cfg.watch_mode) == (2, 2, "poll")
    assert cfg.extra_args == ("--s", "app-arg")


def test_help_names_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "host-bridge check JOBFILE" in out and "host-bridge demo [SECONDS]" in out
    assert "vbox_job.xml" in out


def test_mistyped_command_is_refused_without_a_client(tmp_path):
    """Standalone (no init_data.xml), `host-bridge chek job.xml` does not run the job."""
    (tmp_path / "job.xml").write_text(
        "<job_desc><task><application>sh</application><command_line>-c 'echo ran > out'</command_line>"
        "</task></job_desc>"
    )
    r = run("chek", "job.xml", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "unknown command 'chek': did you mean 'host-bridge check'?" in r.stderr
    assert "host-bridge run chek" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.xml"]


def test_mistyped_command_decision(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli._mistyped_command(["chek", "job.xml"]) == "check"
    assert cli._mistyped_command(["dem"]) == "demo"
    assert cli._mistyped_command(["rnu", "--standalone"]) == "run"
    for args in ([], ["check"], ["--chek"], ["job.xml"], ["10"], ["input_file"], ["--standalone", "chek"]):
        assert cli._mistyped_command(args) is None, args
    # under BOINC (init_data.xml in the slot) positional words are the task's, whatever they look like
    (tmp_path / "init_data.xml").write_text("<app_init_data/>")
    assert cli._mistyped_command(["chek", "job.xml"]) is None
    assert cli._config(["chek", "job.xml"])[0].extra_args == ("chek", "job.xml")
    # the slot is the one --slot names
    other = tmp_path / "other"
    other.mkdir()
    assert cli._mistyped_command(["chek", "--slot", str(other)]) == "check"
    monkeypatch.chdir(other)
    assert cli._mistyped_command(["chek", f"--slot={tmp_path}"]) is None


# ---------------------------------------------------------------- demo arguments


@pytest.mark.parametrize("seconds", ["-1", "0", "nan", "inf", "x"])
def test_demo_seconds_must_be_positive(seconds, capsys):
    with pytest.raises(SystemExit) as e:
        cli._demo([seconds])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument seconds" in err and repr(seconds) in err


# ---------------------------------------------------------------- stopped by a signal


class _NoApi:
    """An API whose ending calls must not be used for a quit."""

    def finish(self, *a, **k):  # pragma: no cover - fails the test
        raise AssertionError("finish called")

    temporary_exit = finish


QUIT = Outcome("quit", 0, "quit requested by the BOINC client; the task will resume later")


def test_quit_message_names_the_signal(caplog):
    with caplog.at_level("INFO", logger="host_bridge"):
        assert cli._end_inner(_NoApi(), QUIT, signal.SIGINT) == 0
    assert "stopped by SIGINT; started again in this folder, the job resumes from its last checkpoint" in (
        caplog.text
    )
    assert "BOINC client" not in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="host_bridge"):
        assert cli._end_inner(_NoApi(), QUIT) == 0  # a real client's quit: its own message
    assert "quit requested by the BOINC client" in caplog.text


def _start(args: list[str], cwd: Path, out: Path, err: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as o, err.open("wb") as e:
        return subprocess.Popen(
            [sys.executable, "-m", "host_bridge", *args], cwd=cwd, env=ENV, stdout=o, stderr=e
        )


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"{text!r} not seen in {path.read_text(errors='replace')}"
        time.sleep(0.1)


def test_ctrl_c_on_a_standalone_run(tmp_path):
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "job.xml").write_text(
        "<job_desc><task><application>sh</application><command_line>-c 'sleep 60'</command_line>"
        "</task></job_desc>"
    )
    out, err = tmp_path / "out", tmp_path / "err"
    proc = _start(["--standalone"], slot, out, err)
    try:
        _wait_for(err, "started", proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0  # a quit: BOINC's status for "resume later"
    finally:
        proc.kill()
    text = err.read_text()
    assert "stopped by SIGINT; started again in this folder, the job resumes from its last checkpoint" in text
    assert "quit requested by the BOINC client" not in text


def test_ctrl_c_in_the_demo(tmp_path):
    """The demo interrupted: said so, its slot deleted, and 130 as for any program a Ctrl-C ends."""
    out, err = tmp_path / "out", tmp_path / "err"
    proc = _start(["demo", "--local", "60"], tmp_path, out, err)
    try:
        _wait_for(out, "task 1/1", proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 128 + signal.SIGINT
    finally:
        proc.kill()
    text = err.read_text()
    assert "stopped by SIGINT; the demo was interrupted (its slot is deleted)" in text
    assert "resumes" not in text and "quit requested by the BOINC client" not in text
    first = out.read_text().splitlines()[0]
    assert first.startswith("host-bridge demo: slot ")
    assert not Path(first.removeprefix("host-bridge demo: slot ")).exists()
    assert "exit status 130" in out.read_text()


def test_internal_error_ends_as_a_temporary_exit(tmp_path, monkeypatch, capsys):
    """An unexpected exception in the runtime is logged with its traceback and ends as BOINC's temporary
    exit (the task is retried later), through the same ending as every other outcome (the demo's API
    returns instead of exiting, and no exception escapes)."""
    from host_bridge.boinc.api import StandaloneApi
    from host_bridge.runtime import Runtime

    def boom(self):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(Runtime, "run", boom)
    (tmp_path / "job.xml").write_text("<job_desc><task><application>true</application></task></job_desc>")
    cwd = os.getcwd()
    try:
        rc = cli._run(
            ["--slot", str(tmp_path), "--standalone"], api=cli._DemoApi(StandaloneApi(slot_dir=tmp_path))
        )
    finally:
        os.chdir(cwd)
    assert rc == 0
    err = capsys.readouterr().err
    assert "simulated bug" in err and "internal error; the task will be retried later" in err
    assert "temporary exit for 300 s: host-bridge internal error" in err


def test_logging_setup_keeps_the_qmp_librarys_own_errors_quiet(capsys):
    """qemu.qmp logs a QEMU that ends during a command as an error of its own ("Task.Reader:
    ConnectionResetError"), which image check printed; the caller gets the exception anyway. The one
    logging set-up keeps the library quiet and the bridge's own lines as they are."""
    import logging

    from host_bridge.logsetup import setup_logging

    setup_logging(0, "X %(name)s %(message)s")
    try:
        logging.getLogger("qemu.qmp.protocol").error("Task.Reader: ConnectionResetError")
        logging.getLogger("watchdog.observers").info("noise")
        logging.getLogger("host_bridge.backends.qemu").info("VM started")
        err = capsys.readouterr().err
        assert "ConnectionResetError" not in err and "noise" not in err
        assert "X host_bridge.backends.qemu VM started" in err
    finally:
        logging.getLogger().handlers.clear()
