"""host_bridge.boinc.api against the REAL libboinc_api.so.7.

The app side runs in a subprocess (boinc_init redirects fd 2, installs a SIGALRM timer and C signal
handlers, and finish / temporary_exit end the process with C exit()); the test side plays the
client through the real shared memory (tests/support/client_shm.py), or is the real BOINC client
(last test).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_bridge.boinc import api as boinc_api
from host_bridge.boinc.api import (
    AppInitData,
    StandaloneApi,
    format_status,
    load_api,
    parse_init_data,
)
from tests.support.boinc_client import BoincClientRun
from tests.support.client_shm import SlotClient
from tests.support.paths import ROOT

# A small command server: one JSON command per stdin line, one JSON answer per stdout line.
CHILD = r"""
import json, sys, time
from host_bridge.boinc.api import load_api, BoincApi

out = sys.stdout
def reply(**kw):
    out.write(json.dumps(kw) + "\n"); out.flush()

api = load_api()
reply(kind=type(api).__name__)
for line in sys.stdin:
    cmd = json.loads(line)
    op, args = cmd["op"], cmd.get("args", {})
    if op == "init":
        api.init(); reply(ok=True, standalone=api.standalone)
    elif op == "status":
        s = api.get_status(); reply(**s.__dict__)
    elif op == "wait_status":  # poll get_status until a flag is set (bounded)
        deadline = time.monotonic() + args["within"]
        while time.monotonic() < deadline:
            s = api.get_status()
            if getattr(s, args["flag"]) == args["value"]:
                break
            time.sleep(0.02)
        reply(**s.__dict__)
    elif op == "init_data":
        reply(**api.init_data().__dict__)
    elif op == "send_status":
        api.send_status(**args); reply(ok=True)
    elif op == "log":
        import logging
        logging.basicConfig(stream=sys.stderr, level=logging.INFO)
        logging.getLogger("child").info(args["text"]); reply(ok=True)
    elif op == "no_shim":
        api._shim = None; reply(ok=True)
    elif op in ("send_trickle_up", "receive_trickle_down", "upload_file", "upload_status",
                "resolve_filename", "web_graphics_url", "remote_desktop_addr", "finish",
                "temporary_exit"):
        reply(result=getattr(api, op)(**args))
    else:
        raise SystemExit("unknown op " + op)
"""


class Child:
    """The app side: a Python subprocess using host_bridge.boinc.api in the slot dir."""

    def __init__(self, slot: Path, env: dict[str, str] | None = None) -> None:
        self.slot = slot
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            cwd=slot,
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.kind = self._read()["kind"]

    def _read(self, timeout: float = 20.0) -> dict:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"child did not answer in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError(f"child exited ({self.proc.wait(5)}): {self.proc.stderr.read()}")
        return json.loads(line)

    def call(self, op: str, timeout: float = 20.0, **args: object) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def call_exit(self, op: str, timeout: float = 20.0, **args: object) -> int:
        """A call that ends the process; its exit code."""
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


@pytest.fixture
def slot(tmp_path: Path):
    client = SlotClient(tmp_path / "slot")
    yield client
    client.close()


@pytest.fixture
def child(slot: SlotClient):
    c = Child(slot.slot_dir)
    yield c
    c.close()


def test_init_wrapper_mode_status_and_process_control(slot: SlotClient, child: Child) -> None:
    assert child.kind == "BoincApi"
    assert child.call("init") == {"ok": True, "standalone": False}
    data = child.call("init_data")
    assert data["wu_name"] == "test_wu" and data["result_name"] == "test_wu_0"
    assert data["project_preferences"] == "<color>blue</color>"
    assert data["hostid"] == 42 and data["rsc_fpops_est"] == 1e12

    child.call(
        "send_status",
        cpu_time=12.5,
        checkpoint_cpu_time=10.0,
        fraction_done=0.25,
        fpops_cumulative=8e9,
        fpops_per_cpu_sec=1.5e9,
        want_network=True,
    )
    st = slot.wait_status(timeout=5)
    assert st["raw"] == (
        "<current_cpu_time>1.250000e+01</current_cpu_time>\n"
        "<checkpoint_cpu_time>1.000000e+01</checkpoint_cpu_time>\n"
        "<want_network>1</want_network>\n"
        "<fraction_done>2.500000e-01</fraction_done>\n"
        "<fpops_per_cpu_sec>1.500000000000000e+09</fpops_per_cpu_sec>\n"
        "<fpops_cumulative>8.000000000000000e+09</fpops_cumulative>\n"
    )
    # force semantics: an unread status is replaced by the newer one
    child.call("send_status", cpu_time=13, checkpoint_cpu_time=10, fraction_done=0.4)
    child.call("send_status", cpu_time=14, checkpoint_cpu_time=10, fraction_done=0.5)
    st = slot.read_app_status()
    assert st is not None and st["fraction_done"] == 0.5 and st["current_cpu_time"] == 14
    # send_status_msgs = 0: the library's timer sends nothing of its own (it would within 1 s)
    time.sleep(1.3)
    assert not slot.pending("app_status"), slot.peek("app_status")

    # direct_process_action = 0: the library only flags; the process keeps running
    slot.suspend()
    assert child.call("wait_status", flag="suspended", value=True, within=5)["suspended"]
    slot.resume()
    assert not child.call("wait_status", flag="suspended", value=False, within=5)["suspended"]
    slot.quit()
    s = child.call("wait_status", flag="quit_request", value=True, within=5)
    assert s["quit_request"] and not s["abort_request"]
    assert child.proc.poll() is None  # still alive: the bridge decides when to exit

    child.call("log", text="bridge says bye")
    assert child.call_exit("finish", status=0) == 0
    assert (slot.slot_dir / "boinc_finish_called").read_text() == "0\n"
    stderr = (slot.slot_dir / "stderr.txt").read_text()
    assert "bridge says bye" in stderr  # fd 2 went to stderr.txt, flushed before C exit()
    assert "called boinc_finish(0)" in stderr


def test_abort_is_flagged_and_finish_message(slot: SlotClient, child: Child) -> None:
    child.call("init")
    slot.abort()
    assert child.call("wait_status", flag="abort_request", value=True, within=5)["abort_request"]
    assert child.proc.poll() is None
    rc = child.call_exit("finish", status=194, message="aborted by the client", is_notice=True)
    assert rc == 194
    assert (slot.slot_dir / "boinc_finish_called").read_text() == "194\naborted by the client\nnotice\n"


def test_temporary_exit_via_shim(slot: SlotClient, child: Child) -> None:
    child.call("init")
    assert child.call_exit("temporary_exit", delay=123, reason="VM not ready", is_notice=True) == 0
    assert (slot.slot_dir / "boinc_temporary_exit").read_text() == "123\nVM not ready\nnotice\n"
    assert not (slot.slot_dir / "boinc_finish_called").exists()


def test_temporary_exit_and_finish_message_without_shim(tmp_path: Path) -> None:
    """The fallback: the mangled C++ symbols called directly through cffi ABI mode."""
    for op, args, rc, fname, text in (
        ("temporary_exit", {"delay": 60.4, "reason": "later"}, 0, "boinc_temporary_exit", "60\nlater\n"),
        ("finish", {"status": 5, "message": "bad input"}, 5, "boinc_finish_called", "5\nbad input\n\n"),
    ):
        with SlotClient(tmp_path / op) as slot:
            c = Child(slot.slot_dir)
            try:
                c.call("init")
                c.call("no_shim")
                assert c.call_exit(op, **args) == rc
            finally:
                c.close()
            assert (slot.slot_dir / fname).read_text() == text


def test_trickles_uploads_graphics_resolve(slot: SlotClient, child: Child) -> None:
    child.call("init")
    # trickle up: the library writes trickle_up.xml and flags it on the channel (timer, <= 1 s)
    assert child.call("send_trickle_up", variety="progress", text="<p>1</p>")["result"] == 0
    assert slot.trickle_up_file() == "<variety>progress</variety>\n<p>1</p>"
    assert slot.wait_message("trickle_up", timeout=5).get("have_new_trickle_up") is True

    # trickle down: a file in the slot + <have_trickle_down/>
    assert child.call("receive_trickle_down")["result"] is None
    slot.send_trickle_down("trickle_down_0001", "<msg>hello</msg>")
    deadline = time.monotonic() + 5
    name = None
    while name is None and time.monotonic() < deadline:
        name = child.call("receive_trickle_down")["result"]
        time.sleep(0.1)
    assert name == "trickle_down_0001"

    # upload through the C++ shim (std::string&): boinc_ufr_<name> + <have_new_upload_file/>
    (slot.slot_dir / "result.dat").write_text("data")
    assert child.call("upload_file", name="result.dat")["result"] == 0
    assert (slot.slot_dir / "boinc_ufr_result.dat").exists()
    assert slot.wait_message("trickle_up", timeout=5).get("have_new_upload_file") is True
    assert child.call("upload_status", name="result.dat")["result"] == boinc_api.ERR_NOT_FOUND
    (slot.slot_dir / "boinc_ufs_result.dat").write_text("<status>0</status>\n")
    slot.send("trickle_down", "<upload_file_status/>")
    deadline = time.monotonic() + 5
    status = None
    while status != 0 and time.monotonic() < deadline:
        status = child.call("upload_status", name="result.dat")["result"]
        time.sleep(0.1)
    assert status == 0

    # graphics: sent by the library's timer on graphics_reply
    child.call("web_graphics_url", url="http://127.0.0.1:8080/")
    assert slot.wait_message("graphics_reply", timeout=5)["web_graphics_url"] == "http://127.0.0.1:8080/"
    child.call("remote_desktop_addr", addr="127.0.0.1:5901")
    assert slot.wait_message("graphics_reply", timeout=5)["remote_desktop_addr"] == "127.0.0.1:5901"

    # resolve: a soft-link file as the client writes it for an input
    (slot.slot_dir / "in.txt").write_text("<soft_link>../../projects/p/in_1</soft_link>\n")
    assert child.call("resolve_filename", logical="in.txt")["result"] == "../../projects/p/in_1"
    assert child.call("resolve_filename", logical="plain.txt")["result"] == "plain.txt"


def test_dead_client_sets_no_heartbeat(tmp_path: Path) -> None:
    """With client_pid set, the library checks the client every 10 s (kill(pid, 0)); with
    direct_process_action = 0 it only flags no_heartbeat."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    with SlotClient(tmp_path / "slot", client_pid=gone.pid) as slot:
        c = Child(slot.slot_dir)
        try:
            c.call("init")
            t0 = time.monotonic()
            s = c.call("wait_status", flag="no_heartbeat", value=True, within=15)
            assert s["no_heartbeat"], s
            assert time.monotonic() - t0 < 13
            assert c.proc.poll() is None
        finally:
            c.close()


def test_standalone_without_init_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="host_bridge.boinc.api")
    api = load_api(slot_dir=tmp_path)
    assert isinstance(api, StandaloneApi) and api.standalone
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "no init_data.xml" in msgs[0] and "standalone" in msgs[0]
    api.init()
    assert not any(api.get_status().__dict__[k] for k in ("suspended", "quit_request", "abort_request"))
    api.send_status(cpu_time=1, checkpoint_cpu_time=0, fraction_done=0.5)
    assert api.last_status["fraction_done"] == 0.5
    assert api.init_data() == AppInitData()
    with pytest.raises(SystemExit) as e:
        api.finish(3, "msg")
    assert e.value.code == 3
    with pytest.raises(SystemExit) as e:
        api.temporary_exit(10, "later")
    assert e.value.code == 0
    assert not (tmp_path / "boinc_finish_called").exists()
    assert isinstance(load_api(force_standalone=True, slot_dir=tmp_path), StandaloneApi)


def test_library_missing_falls_back_with_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="host_bridge.boinc.api")
    with SlotClient(tmp_path / "slot"):
        monkeypatch.setenv(boinc_api.LIBRARY_ENV, "libboinc_api_missing.so.99")
        api = load_api(slot_dir=tmp_path / "slot")
        assert isinstance(api, StandaloneApi)
        msgs = [r.getMessage() for r in caplog.records]
        assert len(msgs) == 1
        assert "libboinc_api_missing.so.99" in msgs[0] and "install libboinc-app7" in msgs[0]
        monkeypatch.delenv(boinc_api.LIBRARY_ENV)
        # the real one loads (in a child process: Debian's libboinc_api.so.7 turns on flush-to-zero
        # for the whole process when loaded, which would change float behaviour for later tests)
        code = (
            "import sys; from pathlib import Path; from host_bridge.boinc.api import load_api, BoincApi; "
            "print(isinstance(load_api(slot_dir=Path(sys.argv[1])), BoincApi))"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        r = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "slot")],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert r.stdout.strip() == "True", r.stderr


def test_format_status_sanitises() -> None:
    msg = format_status(float("nan"), -1, 7, fpops_cumulative=float("inf")).decode()
    assert "<current_cpu_time>0.000000e+00</current_cpu_time>" in msg
    assert "<checkpoint_cpu_time>0.000000e+00</checkpoint_cpu_time>" in msg
    assert "<fraction_done>1.000000e+00</fraction_done>" in msg
    assert "fpops_cumulative>0" in msg
    assert len(format_status(1e308, 1e308, 1, 1e308, 1e308, 1e308, 1e308, True)) < 1022


def test_parse_init_data_hostile(tmp_path: Path) -> None:
    p = tmp_path / "init_data.xml"
    p.write_text(
        "<app_init_data><hostid>x</hostid><ncpus>nan</ncpus><wu_name>w&amp;1</wu_name></app_init_data>"
    )
    d = parse_init_data(p)
    assert d.hostid == 0 and d.ncpus == 0 and d.wu_name == "w&1"
    p.write_text("<app_init_data><wu_name>")
    with pytest.raises(boinc_api.BoincApiError, match=r"init_data\.xml: not well-formed"):
        parse_init_data(p)


APP = """#!{python}
import os, sys
sys.path.insert(0, {root!r})
from host_bridge.boinc.api import load_api
api = load_api()
assert type(api).__name__ == "BoincApi", api
api.init()
api.send_status(cpu_time=2.0, checkpoint_cpu_time=2.0, fraction_done=1.0, fpops_cumulative=8e9)
api.finish(0)
"""


def test_real_client_receives_fpops_cumulative(tmp_path: Path) -> None:
    """The real BOINC client parses <fpops_cumulative> from the status the bridge writes itself."""
    app = tmp_path / "app.py"
    app.write_text(APP.format(python=sys.executable, root=str(ROOT)))
    app.chmod(0o755)
    with BoincClientRun(tmp_path, app, rsc_fpops_est=1e10) as run:
        rc = run.wait_exit(90)
    assert rc == 0, run.log_tail()
    res = run.final_result()
    assert res["exit_status"] == 0, res
    assert res["fpops_cumulative"] == pytest.approx(8e9), res
    assert not run.app_pids()


def test_shim_build_cli_inplace_if_stale() -> None:
    """scripts/setup.sh runs this: it builds the shim when missing/stale, else does nothing."""
    cmd = [sys.executable, "-m", "host_bridge.boinc._shim_build", "--inplace-if-stale"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and second.stdout.startswith("shim up to date"), second.stdout
    from host_bridge.boinc import _shim_build

    assert not _shim_build.is_stale()
