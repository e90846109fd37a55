"""A test harness that runs the REAL BOINC client (``/usr/bin/boinc``, 7.20.5) on one task, with no
project server.

It writes a data directory by hand: ``client_state.xml`` (a project at an address that is never
contacted, ``<dont_request_more_work/>``, an app, an app version whose main program is the program
under test, a workunit and a result already "downloaded" (state 2), network use "never"), the
account file the client needs to keep the project, and the project directory holding the main
program and the input files (``<nbytes>`` = real sizes). Then it starts

    boinc --dir D --gui_rpc_unix_domain --allow_multiple_clients --no_gpus --no_info_fetch
          --skip_cpu_benchmarks --exit_after_finish

(GUI RPC on the Unix socket ``D/boinc_socket`` only, never TCP). ``boinccmd --unix_domain`` is run
with ``D`` as its working directory: it connects to ``boinc_socket`` there and reads the password
from ``D/gui_rpc_auth.cfg``. The client exits by itself after the task (``exit_after_finish=False``
leaves that out: a test that makes the client quit its task on the way); the harness always stops it
(and the app processes it started) by PID at the end, bounded. ``quit_client()`` + ``start()`` stop and
start the client on the same data directory as a volunteer does; ``set_prefs()`` changes global prefs
through the override file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import psutil

BOINC = shutil.which("boinc") or "/usr/bin/boinc"
BOINCCMD = shutil.which("boinccmd") or "/usr/bin/boinccmd"
MASTER_URL = "http://127.0.0.1:9/test/"
# an output's upload address (never contacted: network use is "never"); the client takes a <url> for an
# upload address only when it names file_upload_handler: otherwise, without the exit_after_finish that
# stops it first, it would take the output for uploaded at once and never keep it in the project dir
UPLOAD_URL = f"{MASTER_URL}cgi-bin/file_upload_handler"
PROJECT_DIR_NAME = "127.0.0.1_9_test"
ACCOUNT_FILE = "account_127.0.0.1_9_test.xml"
PLATFORM = "x86_64-pc-linux-gnu"

# RESULT states (client/result.h)
RESULT_FILES_DOWNLOADED = 2
RESULT_FILES_UPLOADING = 4
RESULT_FILES_UPLOADED = 5
RESULT_ABORTED = 6


@dataclass(frozen=True)
class ExtraFile:
    """A workunit input (``is_input``: ``path`` is copied into the project dir) or a result output
    (``path`` only names the physical file; the app writes ``logical_name`` in its slot, which the
    client copies back: ``<copy_file/>``)."""

    path: Path
    logical_name: str
    is_input: bool = True


def _fi(name: str, body: str) -> str:
    return f"<file_info>\n    <name>{escape(name)}</name>\n{body}</file_info>\n"


class BoincClientRun:
    """Run one task under the real BOINC client in ``tmpdir / "boinc"``.

    Use as a context manager (starts on enter, always stops on exit)::

        with BoincClientRun(tmp_path, Path("app.sh")) as run:
            run.wait(lambda tasks: tasks and tasks[0]["active_task_state"] == "EXECUTING", 30)
            rc = run.wait_exit(60)
        assert run.final_result()["exit_status"] == 0
    """

    def __init__(
        self,
        tmpdir: Path,
        main_program: Path,
        *,
        extra_files: Iterable[ExtraFile | tuple[Path, str, bool]] = (),
        app_files: Iterable[tuple[Path, str]] = (),
        command_line: str = "",
        rsc_fpops_est: float = 1e9,
        rsc_fpops_bound: float = 1e13,
        rsc_memory_bound: float = 2e8,
        rsc_disk_bound: float = 1e9,
        app_name: str = "test_app",
        wu_name: str = "test_wu",
        result_name: str = "test_wu_0",
        version_num: int = 100,
        extra_client_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        prefs: Mapping[str, object] | None = None,
        exit_after_finish: bool = True,
    ) -> None:
        self.dir = Path(tmpdir) / "boinc"
        self.project_dir = self.dir / "projects" / PROJECT_DIR_NAME
        self.main_program = Path(main_program)
        self.extra_files = [f if isinstance(f, ExtraFile) else ExtraFile(*f) for f in extra_files]
        # files of the app version beside its main program (a job file, VM image files): (the file,
        # its logical name); the physical name is the file's name, as in the project's version folder
        self.app_files = [(Path(p), str(name)) for p, name in app_files]
        self.command_line = command_line
        self.rsc = (rsc_fpops_est, rsc_fpops_bound, rsc_memory_bound, rsc_disk_bound)
        self.app_name = app_name
        self.wu_name = wu_name
        self.result_name = result_name
        self.version_num = version_num
        self.extra_client_args = list(extra_client_args)
        self.env = dict(env) if env is not None else None  # the client's (and so the apps') environment
        self.prefs: dict[str, object] = dict(prefs or {})  # more global prefs (e.g. disk_interval)
        self._prepared = False
        # --exit_after_finish: the client exits as soon as the task's app exits, for whatever reason (a
        # preempted task's quit too); without it the test waits for the result's state and quits it
        self.exit_after_finish = exit_after_finish
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "client.log"
        self._seen: dict[int, psutil.Process] = {}
        self._log_file: Any = None

    # -- data dir -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.project_dir.mkdir(parents=True, exist_ok=True)
        self._write_prefs()
        prog_name = f"{self.app_name}_{self.version_num}_{self.main_program.name}"
        prog = self.project_dir / prog_name
        shutil.copyfile(self.main_program, prog)
        prog.chmod(0o755)
        files = [
            _fi(
                prog_name,
                f"    <nbytes>{prog.stat().st_size}</nbytes>\n    <max_nbytes>0</max_nbytes>\n"
                "    <status>1</status>\n    <executable/>\n",
            )
        ]
        app_refs = []
        for path, logical in self.app_files:
            dst = self.project_dir / path.name
            _link_or_copy(path, dst)
            files.append(
                _fi(
                    path.name,
                    f"    <nbytes>{dst.stat().st_size}</nbytes>\n    <max_nbytes>0</max_nbytes>\n"
                    "    <status>1</status>\n",
                )
            )
            app_refs.append(
                f"    <file_ref>\n        <file_name>{escape(path.name)}</file_name>\n"
                f"        <open_name>{escape(logical)}</open_name>\n    </file_ref>\n"
            )
        wu_refs, result_refs = [], []
        for i, ef in enumerate(self.extra_files):
            if ef.is_input:
                phys = f"{self.wu_name}_in{i}_{Path(ef.path).name}"
                dst = self.project_dir / phys
                shutil.copyfile(ef.path, dst)
                files.append(
                    _fi(
                        phys,
                        f"    <nbytes>{dst.stat().st_size}</nbytes>\n    <max_nbytes>0</max_nbytes>\n"
                        "    <status>1</status>\n",
                    )
                )
                wu_refs.append(
                    f"    <file_ref>\n        <file_name>{escape(phys)}</file_name>\n"
                    f"        <open_name>{escape(ef.logical_name)}</open_name>\n    </file_ref>\n"
                )
            else:
                phys = Path(ef.path).name
                files.append(
                    _fi(
                        phys,
                        "    <nbytes>0</nbytes>\n    <max_nbytes>100000000</max_nbytes>\n"
                        "    <status>0</status>\n    <upload_when_present/>\n"
                        f"    <url>{UPLOAD_URL}</url>\n",
                    )
                )
                result_refs.append(
                    f"    <file_ref>\n        <file_name>{escape(phys)}</file_name>\n"
                    f"        <open_name>{escape(ef.logical_name)}</open_name>\n"
                    "        <copy_file/>\n    </file_ref>\n"
                )
        est, bound, mem, disk = self.rsc
        deadline = time.time() + 7 * 86400
        state = (
            "<client_state>\n"
            "<project>\n"
            f"    <master_url>{MASTER_URL}</master_url>\n"
            "    <project_name>test</project_name>\n"
            "    <user_name>tester</user_name>\n"
            "    <hostid>1</hostid>\n"
            "    <resource_share>100</resource_share>\n"
            "    <dont_request_more_work/>\n"
            "</project>\n"
            "<app>\n"
            f"    <name>{escape(self.app_name)}</name>\n"
            f"    <user_friendly_name>{escape(self.app_name)}</user_friendly_name>\n"
            "</app>\n" + "".join(files) + "<app_version>\n"
            f"    <app_name>{escape(self.app_name)}</app_name>\n"
            f"    <version_num>{self.version_num}</version_num>\n"
            f"    <platform>{PLATFORM}</platform>\n"
            "    <avg_ncpus>1</avg_ncpus>\n"
            "    <flops>1000000000</flops>\n"
            "    <api_version>7.20.5</api_version>\n"
            "    <file_ref>\n"
            f"        <file_name>{escape(prog_name)}</file_name>\n"
            "        <main_program/>\n"
            "    </file_ref>\n" + "".join(app_refs) + "</app_version>\n"
            "<workunit>\n"
            f"    <name>{escape(self.wu_name)}</name>\n"
            f"    <app_name>{escape(self.app_name)}</app_name>\n"
            f"    <version_num>{self.version_num}</version_num>\n"
            f"    <command_line>{escape(self.command_line)}</command_line>\n"
            f"    <rsc_fpops_est>{est:f}</rsc_fpops_est>\n"
            f"    <rsc_fpops_bound>{bound:f}</rsc_fpops_bound>\n"
            f"    <rsc_memory_bound>{mem:f}</rsc_memory_bound>\n"
            f"    <rsc_disk_bound>{disk:f}</rsc_disk_bound>\n" + "".join(wu_refs) + "</workunit>\n"
            "<result>\n"
            f"    <name>{escape(self.result_name)}</name>\n"
            "    <final_cpu_time>0</final_cpu_time>\n"
            "    <exit_status>0</exit_status>\n"
            f"    <state>{RESULT_FILES_DOWNLOADED}</state>\n"
            f"    <platform>{PLATFORM}</platform>\n"
            f"    <version_num>{self.version_num}</version_num>\n"
            f"    <wu_name>{escape(self.wu_name)}</wu_name>\n"
            f"    <report_deadline>{deadline:f}</report_deadline>\n"
            f"    <received_time>{time.time():f}</received_time>\n" + "".join(result_refs) + "</result>\n"
            "<user_network_request>3</user_network_request>\n"
            "</client_state>\n"
        )
        (self.dir / "client_state.xml").write_text(state)
        (self.dir / ACCOUNT_FILE).write_text(
            "<account>\n"
            f"    <master_url>{MASTER_URL}</master_url>\n"
            "    <authenticator>0123456789abcdef0123456789abcdef</authenticator>\n"
            "    <project_name>test</project_name>\n"
            "</account>\n"
        )

    def _write_prefs(self) -> None:
        # the test machine is busy (other tests, VMs): the client must not suspend the task because
        # of "non-BOINC CPU load" or user activity, or throttle it; then the test's own prefs
        prefs: dict[str, object] = {
            "run_if_user_active": 1,
            "run_gpu_if_user_active": 1,
            "suspend_cpu_usage": 0,
            "cpu_usage_limit": 100,
            "max_ncpus_pct": 100,
        }
        prefs.update(self.prefs)
        body = "".join(f"    <{k}>{escape(str(v))}</{k}>\n" for k, v in prefs.items())
        (self.dir / "global_prefs_override.xml").write_text(
            f"<global_preferences>\n{body}</global_preferences>\n"
        )

    def set_prefs(self, **prefs: object) -> None:
        """Change global prefs the way a volunteer's manager does: rewrite ``global_prefs_override.xml``
        and ``boinccmd --read_global_prefs_override`` (e.g. ``leave_apps_in_memory=0``)."""
        self.prefs.update(prefs)
        self._write_prefs()
        self.boinccmd("--read_global_prefs_override")

    # -- process ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the client; the first time on a data directory written by ``prepare()``, later (after
        ``quit_client``) on the same one as the client left it (its tasks resume in their slots)."""
        if self.proc is not None:
            raise RuntimeError("already started")
        if not self._prepared:
            self.prepare()
            self._prepared = True
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                BOINC,
                "--dir",
                str(self.dir),
                "--gui_rpc_unix_domain",
                "--allow_multiple_clients",
                "--no_gpus",
                "--no_info_fetch",
                "--skip_cpu_benchmarks",
                *(["--exit_after_finish"] if self.exit_after_finish else []),
                *self.extra_client_args,
            ],
            cwd=self.dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _track_children(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._seen.setdefault(child.pid, child)

    def app_pids(self) -> list[int]:
        """PIDs of the processes the client started (its descendants), as seen so far and alive."""
        self._track_children()
        alive = []
        for pid, p in sorted(self._seen.items()):
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        return alive

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop everything, bounded: first SIGKILL the app processes the client started (an app
        that ignores ``<quit/>`` / ``<abort/>`` would otherwise hold the client's exit for many
        seconds), then ``boinccmd --quit``, SIGTERM, SIGKILL to the client. Returns the client's
        exit code."""
        self._track_children()
        self._kill_apps()
        rc: int | None = None
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(Exception):
                    self.boinccmd("--quit", timeout=3)
                try:
                    self.proc.wait(timeout=timeout / 2)
                except subprocess.TimeoutExpired:
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=timeout / 2)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout=5)
            rc = self.proc.returncode
        self._kill_apps()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return rc

    def quit_client(self, timeout: float = 30.0, *, signal_term: bool = False) -> int:
        """Stop the client the way a volunteer does (``boinccmd --quit``, or SIGTERM to the client as a
        system shutdown does) and wait for it to exit, leaving its apps to end by themselves (the client
        asks them to quit and waits up to 15 s). Returns its exit code; TimeoutError after ``timeout``
        (``stop()`` then kills what is left). ``start()`` runs it again on the same data directory."""
        assert self.proc is not None
        self._track_children()
        if signal_term:
            self.proc.send_signal(signal.SIGTERM)
        else:
            self.boinccmd("--quit", timeout=10)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"the BOINC client did not quit in {timeout} s; log: {self.log_tail()}"
            ) from None
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return rc

    def _kill_apps(self) -> None:
        for p in self._seen.values():
            # psutil checks the creation time: a recycled PID is not killed
            with contextlib.suppress(psutil.Error):
                if p.is_running():
                    p.kill()
                    p.wait(timeout=5)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the client to exit by itself (``--exit_after_finish``); TimeoutError otherwise."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._track_children()
            rc = self.proc.poll()
            if rc is not None:
                return rc
            time.sleep(0.1)
        raise TimeoutError(f"the BOINC client did not exit in {timeout} s; log: {self.log_tail()}")

    def __enter__(self) -> BoincClientRun:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no client log)"

    # -- GUI RPC ------------------------------------------------------------------------------------
    def boinccmd(self, *args: str, timeout: float = 10.0) -> str:
        """Run ``boinccmd --unix_domain ARGS`` in the data dir (socket + gui_rpc_auth.cfg there)."""
        p = subprocess.run(
            [BOINCCMD, "--unix_domain", *args],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if p.returncode != 0:
            raise RuntimeError(f"boinccmd {' '.join(args)} failed ({p.returncode}): {p.stderr or p.stdout}")
        return p.stdout

    def boinccmd_tasks(self) -> list[dict[str, str]]:
        """``boinccmd --get_tasks`` parsed: one dict per task, keys as printed (``name``,
        ``fraction done``, ``active_task_state``, ``current CPU time``, ...)."""
        return parse_get_tasks(self.boinccmd("--get_tasks"))

    def task_op(self, op: str) -> None:
        """``boinccmd --task URL RESULT op``: suspend | resume | abort."""
        self.boinccmd("--task", MASTER_URL, self.result_name, op)

    def wait(
        self,
        predicate: Callable[[list[dict[str, str]]], bool],
        timeout: float,
        interval: float = 0.25,
    ) -> list[dict[str, str]]:
        """Poll ``boinccmd_tasks()`` until ``predicate(tasks)``; TimeoutError with the last answer."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, str]] | str = "nothing yet"
        while time.monotonic() < deadline:
            self._track_children()
            try:
                tasks = self.boinccmd_tasks()
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                last = str(exc)  # socket not up yet
            else:
                last = tasks
                if predicate(tasks):
                    return tasks
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"the BOINC client exited ({self.proc.returncode}); log: {self.log_tail()}"
                )
            time.sleep(interval)
        raise TimeoutError(f"condition not met in {timeout} s; last tasks: {last!r}")

    # -- results ------------------------------------------------------------------------------------
    def final_state(self) -> ET.Element:
        return ET.parse(self.dir / "client_state.xml").getroot()

    def final_result(self) -> dict[str, Any]:
        """The result's fields from ``client_state.xml``: ``state``, ``exit_status`` (int),
        ``final_cpu_time``, ``final_elapsed_time``, ``fpops_cumulative``, ... (float), ``stderr_out``."""
        root = self.final_state()
        for res in root.iter("result"):
            if (res.findtext("name") or "") == self.result_name:
                out: dict[str, Any] = {}
                for child in res:
                    text = (child.text or "").strip()
                    if child.tag in ("state", "exit_status", "version_num"):
                        out[child.tag] = int(text)
                    elif child.tag == "stderr_out":
                        out[child.tag] = text
                    else:
                        try:
                            out[child.tag] = float(text)
                        except ValueError:
                            out[child.tag] = text if text else True
                return out
        raise KeyError(f"result {self.result_name} not in {self.dir / 'client_state.xml'}")

    def output_path(self, physical_name: str) -> Path:
        return self.project_dir / physical_name

    def output_text(self, ef: ExtraFile, slot: int = 0) -> str:
        """An output file's text: from the project dir once the client copied it there, else from
        the slot (``--exit_after_finish`` exits as soon as the app has exited, before the client
        copies outputs back and moves the result on: the final state shows ``state`` 2)."""
        for path in (self.project_dir / Path(ef.path).name, self.slot_dir(slot) / ef.logical_name):
            if path.exists():
                return path.read_text(errors="replace")
        raise FileNotFoundError(f"output {ef.logical_name} ({Path(ef.path).name}) not produced")

    def slot_dir(self, n: int = 0) -> Path:
        return self.dir / "slots" / str(n)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (an image's files are large and never written by the client or the bridge), a copy
    across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def parse_get_tasks(text: str) -> list[dict[str, str]]:
    """Parse ``boinccmd --get_tasks`` output (``N) -----------`` headers, ``   key: value`` lines)."""
    tasks: list[dict[str, str]] = []
    for line in text.splitlines():
        if re.match(r"^\d+\) -+", line):
            tasks.append({})
            continue
        m = re.match(r"^\s+([^:]+):\s?(.*)$", line)
        if m and tasks:
            tasks[-1][m.group(1).strip()] = m.group(2).strip()
    return tasks


def wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def fraction_done(tasks: list[dict[str, str]]) -> float:
    """The first task's "fraction done" in ``boinccmd --get_tasks`` (0 when there is none yet)."""
    try:
        return float((tasks[0] if tasks else {}).get("fraction done", "0"))
    except ValueError:
        return 0.0


def bridge_main_program(folder: Path) -> Path:
    """The app version's main program for a test under the real client: a script that runs this
    checkout's bridge with the test's Python."""
    import sys

    from tests.support.paths import ROOT

    p = folder / "host_bridge.sh"
    p.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH={ROOT}:{ROOT / "guest_sdk" / "python"} exec {sys.executable} -m host_bridge "$@"\n'
    )
    p.chmod(0o755)
    return p
