"""The single-file app version (scripts/build_app_version.sh, docs/shipping.md), built for real with
PyInstaller and run as a volunteer's host would: from a folder outside the repository, with an
environment that has no Python install of the project (no venv, no PYTHONPATH), under the real BOINC
client. The bundle carries the real libboinc_api.so.7; the tests check it is the one loaded."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from PyInstaller.archive.readers import CArchiveReader

from tests.support.boinc_client import BoincClientRun, ExtraFile, fraction_done
from tests.support.images import busybox_rootfs_tar, image_job, image_version_files, static_c_app
from tests.support.jobs import C_WORKER_VM_JOB_NO_STDIO
from tests.support.paths import ROOT
from tests.support.vm import qemu_of

pytestmark = pytest.mark.timeout(420)

JOB = """\
<job_desc>
    <task>
        <application>worker.py</application>
        <copy_app_to_VM/>
        <copy_file_to_VM>in</copy_file_to_VM>
        <copy_file_from_VM>out</copy_file_from_VM>
        <command_line>{seconds}</command_line>
    </task>
    <task>
        <application>/bin/sh</application>
        <command_line>./ldpath.sh</command_line>
    </task>
</job_desc>
"""

# what a host program started by the bridge sees of the loader path and of the bootloader's variables
LDPATH_SH = 'printf "%s|%s" "${LD_LIBRARY_PATH-unset}" "$(env | grep -c "^_PYI_")" > ld.txt\n'


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_app_version.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.parent == out and path.name.startswith("host_bridge_") and path.name.endswith("-pc-linux-gnu")
    assert os.access(path, os.X_OK)
    # what a volunteer gets is this one file: copied alone, away from the repository
    shipped = tmp_path_factory.mktemp("shipped") / path.name
    shutil.copy2(path, shipped)
    return shipped


def _strings(path: Path) -> list[str]:
    r = subprocess.run(["strings", str(path)], capture_output=True, text=True, errors="replace", timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


# BOINC's tools/update_versions: the main program's API version, when version.xml gives none
UPDATE_VERSIONS = (
    r"""strings "$1" | grep -E --max-count=1 'API_VERSION_[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*$'"""
)


def test_strings_finds_the_carried_librarys_api_version_once(bundle: Path, tmp_path: Path) -> None:
    """update_versions gives the app version the <api_version> it finds with `strings` in the main
    program: the bundle shows exactly one API_VERSION_ line, the one of the libboinc_api.so.7 inside
    it (taken out of the bundle's archive, not the build machine's copy), and update_versions' own
    pipeline picks it."""
    lib = tmp_path / "libboinc_api.so.7"
    lib.write_bytes(CArchiveReader(str(bundle)).extract("libboinc_api.so.7"))
    carried = [line for line in _strings(lib) if line.startswith("API_VERSION_")]
    assert len(carried) == 1 and re.fullmatch(r"API_VERSION_[0-9]+\.[0-9]+\.[0-9]+", carried[0]), carried
    assert [line for line in _strings(bundle) if line.startswith("API_VERSION_")] == carried
    r = subprocess.run(
        ["sh", "-c", UPDATE_VERSIONS, "sh", str(bundle)], capture_output=True, text=True, timeout=120
    )
    assert r.stdout.strip() == carried[0], r


def _embed(lib: Path, exe: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "api_version.py"), str(lib), str(exe)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_api_version_helper_embeds_the_librarys_version_and_refuses_what_is_unclear(tmp_path: Path) -> None:
    """packaging/api_version.py (run by the build script) on a small ELF program: the version comes from
    the library's own string, the program still runs, a second run and libraries without one clear
    version are refused with a message naming the file."""
    exe = tmp_path / "prog"
    shutil.copy2(shutil.which("true") or "/bin/true", exe)
    lib = tmp_path / "libboinc_api.so.7"
    lib.write_bytes(b"\x7fELF\0\0BOINC\0API_VERSION_9.87.6\0more\0")
    r = _embed(lib, exe)
    assert r.returncode == 0 and r.stdout.strip() == "9.87.6", r
    assert [line for line in _strings(exe) if "API_VERSION" in line] == ["API_VERSION_9.87.6"]
    assert subprocess.run([str(exe)], timeout=30).returncode == 0
    r = _embed(lib, exe)  # already carries one: a second would make update_versions' pick arbitrary
    assert r.returncode == 1 and f"{exe}: already carries" in r.stderr, r
    for content, why in (
        (b"\0no version here\0", "no API_VERSION_x.y.z string"),
        (b"\0API_VERSION_7.20.5\0API_VERSION_7.22.0\0", "several API versions"),
        (b"\0XAPI_VERSION_7.20.5\0", "no API_VERSION_x.y.z string"),  # not the library's C string
    ):
        lib.write_bytes(content)
        fresh = tmp_path / "fresh"
        shutil.copy2(shutil.which("true") or "/bin/true", fresh)
        r = _embed(lib, fresh)
        assert r.returncode == 1 and f"{lib}: {why}" in r.stderr, (content, r)
        assert not [line for line in _strings(fresh) if "API_VERSION" in line]
    r = _embed(tmp_path / "missing.so", exe)
    assert r.returncode == 1 and "missing.so: cannot read it" in r.stderr and "libboinc-app7" in r.stderr, r


def _host_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A volunteer host's environment: no venv, no PYTHONPATH, its own temporary folder (to see what the
    bundle unpacks there)."""
    tmpdir = tmp / "hosttmp"
    tmpdir.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "LANG": "C.UTF-8", "TMPDIR": str(tmpdir)}
    env.update(extra)
    return env


def _unpacked(tmp: Path) -> list[str]:
    return sorted(p.name for p in (tmp / "hosttmp").iterdir() if p.name.startswith("_MEI"))


def _slot(tmp: Path, seconds: float) -> Path:
    slot = tmp / "slot"
    slot.mkdir()
    (slot / "job.xml").write_text(JOB.format(seconds=seconds))
    shutil.copy(ROOT / "examples" / "worker.py", slot / "worker.py")
    (slot / "in").write_text("input text\n")
    (slot / "ldpath.sh").write_text(LDPATH_SH)
    return slot


def test_bundle_commands_and_python_mode(bundle: Path, tmp_path: Path) -> None:
    env = _host_env(tmp_path)
    r = subprocess.run([str(bundle), "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("host-bridge "), r
    slot = _slot(tmp_path, 1)
    r = subprocess.run(
        [str(bundle), "check", "job.xml"], cwd=slot, env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "program: worker.py" in r.stdout and "program: /bin/sh" in r.stdout, r
    # python mode: the standard library, the guest SDK and msgpack, as a Python install has them
    code = (
        "import sys, json, sqlite3, hashlib, ssl, decimal, csv, zlib, boinc_guest, msgpack; "
        # submodules of standard packages, and shelve on dbm's pure-Python dbm.dumb
        "import json.tool, email.mime.text, logging.handlers, xml.dom.minidom, unittest.mock, shelve; "
        "print(sys.argv[1:], boinc_guest.boinc_fraction_done.__name__)"
    )
    r = subprocess.run(
        [str(bundle), "-c", code, "a", "b"],
        env={**env, "HOST_BRIDGE_AS_PYTHON": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['a', 'b'] boinc_fraction_done"
    for args, status in ((["-c", "raise SystemExit(7)"], 7), (["-c", "1/0"], 1), (["-i"], 2)):
        r = subprocess.run(
            [str(bundle), *args],
            env={**env, "HOST_BRIDGE_AS_PYTHON": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == status, (args, r)
    assert "ZeroDivisionError" in subprocess.run(
        [str(bundle), "-c", "1/0"], env={**env, "HOST_BRIDGE_AS_PYTHON": "1"}, capture_output=True,
        text=True, timeout=60,
    ).stderr  # fmt: skip
    assert _unpacked(tmp_path) == []  # each run removed what it unpacked


MP_SCRIPT = """\
import multiprocessing as mp, subprocess, sys

def work(x):
    import hashlib, sqlite3, ssl, zlib  # modules that need the bundle's own libraries
    return x * x

if __name__ == "__main__":
    print("sys.executable:", subprocess.run([sys.executable, "-c", "print(6 * 7)"],
                                            capture_output=True, text=True).stdout.strip())
    print("host program:", subprocess.run(["sh", "-c", 'echo "${LD_LIBRARY_PATH-unset}"'],
                                          capture_output=True, text=True).stdout.strip())
    for method in ("fork", "spawn", "forkserver"):
        with mp.get_context(method).Pool(2) as pool:
            print(method, pool.map(work, range(4)))
"""


def test_python_mode_runs_multiprocessing_and_subprocesses(bundle: Path, tmp_path: Path) -> None:
    """A ported app's Python: children that run sys.executable (the bundle) are Pythons too, the workers
    of every multiprocessing start method run (spawn / forkserver re-run the bundle), a host program
    gets the host's environment, and nothing stays unpacked."""
    (tmp_path / "mp.py").write_text(MP_SCRIPT)
    env = {**_host_env(tmp_path), "HOST_BRIDGE_AS_PYTHON": "1"}
    r = subprocess.run(
        [str(bundle), "mp.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines() == [
        "sys.executable: 42",
        "host program: unset",
        "fork [0, 1, 4, 9]",
        "spawn [0, 1, 4, 9]",
        "forkserver [0, 1, 4, 9]",
    ], r.stdout
    assert _unpacked(tmp_path) == []


def test_bundle_runs_a_job_standalone_and_gives_tasks_the_hosts_environment(bundle: Path, tmp_path: Path):
    """A Python task runs with the bundle in python mode; a host program gets the LD_LIBRARY_PATH the
    bridge was started with (the bootloader prepends its folder for the bridge itself) and none of the
    bootloader's variables."""
    slot = _slot(tmp_path, 1)
    env = _host_env(tmp_path, LD_LIBRARY_PATH="/opt/host/lib")
    r = subprocess.run(
        [str(bundle), "--standalone"], cwd=slot, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (slot / "out").read_text() == "INPUT TEXT\n"
    assert (slot / "ld.txt").read_text() == "/opt/host/lib|0"
    assert "job done" in r.stderr
    assert f"started {slot / 'shared' / 'worker.py'} with the bundle's Python" in r.stderr, r.stderr
    assert _unpacked(tmp_path) == []


@pytest.mark.parametrize("victim", ["bootloader", "bridge"])
def test_nothing_is_left_when_the_bootloader_or_the_bridge_is_killed(bundle: Path, tmp_path: Path, victim):
    """SIGKILL of the process BOINC started (the bootloader) cannot be passed on to the bridge, its
    child: the bridge gets SIGTERM from the kernel (parent-death signal), stops the task as for a quit,
    removes the unpacked folder the bootloader can no longer remove, and exits.
    SIGKILL of the bridge itself (the OOM killer, an admin): its death SIGKILLs the task's bootloader,
    whose death SIGKILLs the Python it ran (it kept running, unsupervised, to its end); what that task
    had unpacked is removed by the next start of the bundle. Nothing is left running or unpacked."""
    slot = _slot(tmp_path, 60)
    env = _host_env(tmp_path)
    log = (tmp_path / "bridge.log").open("wb")
    boot = subprocess.Popen(
        [str(bundle), "--standalone"], cwd=slot, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    tree: list[psutil.Process] = []
    try:
        boot_ps = psutil.Process(boot.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tree = boot_ps.children(recursive=True)
            # bootloader -> bridge -> task (the bundle in python mode: its own bootloader -> python)
            if len(tree) >= 3 and (slot / "shared" / "boinc_status.msgpack").exists():
                break
            time.sleep(0.1)
        assert len(tree) >= 3, [p.cmdline() for p in tree]
        assert len(_unpacked(tmp_path)) == 2  # the bridge's and the python-mode task's
        if victim == "bootloader":
            boot.kill()
        else:
            boot_ps.children()[0].kill()
        boot.wait(10)
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        text = (tmp_path / "bridge.log").read_text(errors="replace")
        assert (slot / "host_bridge_state.json").exists()  # a restart resumes the job
        if victim == "bootloader":
            assert _unpacked(tmp_path) == [], text[-3000:]
            assert "SIGTERM" in text, text[-3000:]
            return
        assert len(_unpacked(tmp_path)) == 1  # the killed task's; the bootloader removed the bridge's
        r = subprocess.run([str(bundle), "--version"], env=env, capture_output=True, timeout=60)
        assert r.returncode == 0 and _unpacked(tmp_path) == []
    finally:
        log.close()
        if boot.poll() is None:
            boot.kill()
            boot.wait(10)
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.kill()


def test_bundle_as_the_app_version_under_the_real_client(bundle: Path, tmp_path: Path):
    """The bundle is the app version's main program: the task runs, progress reaches the client, the
    library loaded is the bundle's libboinc_api.so.7 (not the system's), the result ends with status 0
    and its output file, fpops reach the client's state, and nothing is left running or unpacked."""
    slot_files = _slot(tmp_path, 6)
    files = [
        ExtraFile(slot_files / "job.xml", "job.xml"),
        ExtraFile(slot_files / "worker.py", "worker.py"),
        ExtraFile(slot_files / "in", "in"),
        ExtraFile(slot_files / "ldpath.sh", "ldpath.sh"),
    ]
    out = ExtraFile(Path("test_wu_0_r0_out"), "out", is_input=False)
    files.append(out)
    with BoincClientRun(tmp_path, bundle, extra_files=files, env=_host_env(tmp_path)) as run:
        run.wait(lambda t: fraction_done(t) > 0.05, timeout=90)
        maps = []
        for pid in run.app_pids():
            try:
                maps.append(Path(f"/proc/{pid}/maps").read_text())
            except OSError:
                continue
        loaded = {line.split()[-1] for m in maps for line in m.splitlines() if "libboinc_api" in line}
        assert loaded and all("/_MEI" in p for p in loaded), loaded
        run.task_op("suspend")
        run.wait(lambda t: (t[0] if t else {}).get("active_task_state") == "SUSPENDED", timeout=20)
        run.task_op("resume")
        assert run.wait_exit(120) == 0, run.log_tail()
    res = run.final_result()
    assert res["exit_status"] == 0, res
    assert float(res.get("fpops_cumulative", 0)) > 0, res
    assert run.output_text(out) == "INPUT TEXT\n"
    # the BOINC client gives apps its own LD_LIBRARY_PATH (the project folder, the slot): the task got
    # that one, without the bundle's folder the bootloader put first for the bridge
    ld, pyi = (run.slot_dir() / "ld.txt").read_text().split("|")
    assert ld.startswith("../../projects/") and "_MEI" not in ld and pyi == "0", (ld, pyi)
    assert not run.app_pids()
    assert _unpacked(tmp_path) == []


def test_bundle_runs_a_vm_task(bundle: Path, tmp_path: Path, vm_files) -> None:
    """QEMU, a host program, started by the bundled bridge (with the host's environment), and the QMP
    client inside the bundle: the C worker runs in a real VM and its output comes back."""
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "job.xml").write_text(C_WORKER_VM_JOB_NO_STDIO.format(seconds=2))
    (slot / "in").write_text("vm input\n")
    for name in ("worker", "vm_kernel", "vm_initrd"):
        shutil.copy(vm_files[name], slot / name)
    r = subprocess.run(
        [str(bundle), "--standalone"], cwd=slot, env=_host_env(tmp_path), capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "starting VM" in r.stderr and "job done" in r.stderr
    assert (slot / "out").read_text() == "VM INPUT\n"
    assert _unpacked(tmp_path) == []


COUNT_TERMS = """\
import signal, sys, time

terms = 0

def on_term(signum, frame):
    global terms
    terms += 1
    print("SIGTERM", terms, file=sys.stderr)  # not reentrant: a second delivery mid-print failed

signal.signal(signal.SIGTERM, on_term)
open("started", "w").close()
while not terms:
    time.sleep(0.01)
time.sleep(0.5)  # further deliveries would arrive now
open("terms.txt", "w").write(str(terms))
"""


def test_a_python_task_gets_one_sigterm_when_the_bridge_stops_it(bundle: Path, tmp_path: Path) -> None:
    """The bridge's quit stops the task with SIGTERM: a Python task of the bundle got it 2-4 times (from
    the bridge and again from its bootloader); now once, as in a Python install."""
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "count.py").write_text(COUNT_TERMS)
    (slot / "job.xml").write_text("<job_desc><task><application>count.py</application></task></job_desc>")
    env = _host_env(tmp_path)
    boot = subprocess.Popen([str(bundle), "--standalone"], cwd=slot, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (slot / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (slot / "started").exists()
        boot.terminate()  # the bootloader passes it on to the bridge: a quit
        _, err = boot.communicate(timeout=60)
    finally:
        if boot.poll() is None:
            boot.kill()
            boot.wait(10)
    assert boot.returncode == 0, err[-3000:]
    assert (slot / "terms.txt").read_text() == "1", err[-3000:]
    assert _unpacked(tmp_path) == []


@pytest.mark.timeout(900)
def test_bundle_runs_a_built_image_under_the_real_client(bundle: Path, tmp_path: Path) -> None:
    """The admin's path with an image: ``host-bridge image build --rootfs`` (a busybox root as ``podman
    export`` writes one, with a static C app), then the app version = the bundle as the main program, the
    job file with the image's job tags, and the image's files with the physical and logical names of its
    version.xml. Under the real client, the bundle finds QEMU on the host's PATH and the image's files by
    their logical names, boots the root disk, the app's progress reaches the client, the output comes
    back and the result ends with status 0; nothing is left running or unpacked."""
    app = static_c_app(tmp_path / "app")
    tar = busybox_rootfs_tar(tmp_path / "exported.tar", {"/app/run": app})
    image = tmp_path / "image"
    builder = ROOT / ".venv" / "bin" / "host-bridge"  # the admin's install, on the build machine
    r = subprocess.run(
        [str(builder), "image", "build", "--out", str(image), "--rootfs", str(tar)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    (tmp_path / "job.xml").write_text(image_job(image, "/app/run"))
    version_files = image_version_files(image)  # the <file> entries of the app version's version.xml
    app_files = [(tmp_path / "job.xml", "job.xml"), *version_files]
    out = ExtraFile(Path("test_wu_0_r0_out"), "out", is_input=False)
    fractions: list[float] = []
    cmdline: list[str] = []
    # a VM's control socket goes to SLOT/vm_state, else XDG_RUNTIME_DIR, else TMPDIR (docs/qemu.md): this
    # test's slot and TMPDIR are too deep for a Unix socket path (108 bytes); a volunteer's are short
    runtime = Path(tempfile.mkdtemp(prefix="hbrt-", dir="/tmp"))
    env = _host_env(tmp_path, XDG_RUNTIME_DIR=str(runtime))
    t0 = time.monotonic()
    try:
        with BoincClientRun(
            tmp_path, bundle, extra_files=[out], app_files=app_files, env=env,
            rsc_memory_bound=2e9, rsc_disk_bound=2e9,
        ) as run:  # fmt: skip
            deadline = t0 + 120  # s (10-17 s measured here under TCG)
            while run.proc is not None and run.proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                    fractions.append(fraction_done(run.boinccmd_tasks()))
                for p in [] if cmdline else qemu_of(run.slot_dir()):
                    with contextlib.suppress(psutil.Error):
                        cmdline = p.cmdline()
                time.sleep(0.2)
            assert run.wait_exit(max(1.0, deadline - time.monotonic())) == 0, run.log_tail()
            print(f"client start -> exit {time.monotonic() - t0:.1f} s; fractions {sorted(set(fractions))}")
            assert not run.app_pids()
            assert not qemu_of(run.slot_dir()), "the VM outlived its task"
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    res = run.final_result()
    stderr = (run.slot_dir() / "stderr.txt").read_text(errors="replace")
    assert res["exit_status"] == 0, (res, stderr[-3000:])
    assert run.output_text(out) == "static app ran\n"
    assert max(fractions, default=0.0) > 0.0, fractions
    # QEMU is the host's, and it booted the app version's files, found through the slot by logical name
    assert cmdline and cmdline[0] == shutil.which("qemu-system-x86_64", path="/usr/bin:/bin"), cmdline
    files = {logical: run.project_dir / p.name for p, logical in version_files}
    names = json.loads((image / "image.json").read_text())["files"]
    assert cmdline[cmdline.index("-kernel") + 1] == str(files[names["kernel"]]), cmdline
    assert cmdline[cmdline.index("-initrd") + 1] == str(files[names["initrd"]]), cmdline
    assert any(a.startswith("file=") and "qcow2" in a for a in cmdline), cmdline
    assert "starting VM" in stderr and "job done" in stderr, stderr[-3000:]
    assert _unpacked(tmp_path) == []
