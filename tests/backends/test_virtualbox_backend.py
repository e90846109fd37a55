"""Contract tests of the VirtualBox backend.

By default they run against FAKES (tests/fakes/fake_vboxmanage.py put first on PATH as
``VBoxManage``, tests/fakes/fake_pyvbox.py as the ``virtualbox`` module) because VirtualBox cannot
be installed here. With ``VBOX_BRIDGE_REAL=1`` and ``VBOX_TEST_VDI=/path/to/small.vdi`` the
contract tests that need no fake internals run against the real VBoxManage on PATH (see
docs/virtualbox.md, "How to verify on a real VirtualBox 7 host"); fake-only tests are then skipped
with that reason (they never skip in the default run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from host_bridge.backends.base import Backend, ConsoleEndpoints, TaskSpec, VMState
from host_bridge.backends.virtualbox import (
    VBoxSettings,
    VirtualBoxBackend,
    find_vm_process,
    slot_is_stale,
    vm_name_for,
)
from host_bridge.backends.virtualbox.vboxmanage import (
    PyvboxDriver,
    VBoxError,
    VBoxManageDriver,
    classify,
    parse_machinereadable,
    select_driver,
)
from host_bridge.share import Share
from tests.fakes import fake_pyvbox
from tests.fakes.fake_vboxmanage import FakeVBox
from tests.fakes.fake_vboxmanage import run as fake_run
from tests.support.paths import FAKES

REAL = os.environ.get("VBOX_BRIDGE_REAL") == "1"
FAKE_BIN = FAKES / "bin"
# "vboxmanage": the VBoxManage driver with the fake run in-process (the machine is slow to start
# processes); "exe": the same through the fake VBoxManage executable on PATH (subprocess, as in
# production); "pyvbox": the pyvbox driver over the fake pyvbox.
DRIVERS = ["vboxmanage"] if REAL else ["vboxmanage", "pyvbox"]


def _inproc(argv: list[str], timeout: float, env: dict[str, str] | None) -> tuple[int, str, str]:
    if "/" in argv[0]:  # an explicit path that does not exist stays a missing executable
        raise FileNotFoundError(argv[0])
    return fake_run(argv[1:])


fake_only = pytest.mark.skipif(REAL, reason="needs the fake's internals (VBOX_BRIDGE_REAL=1 run)")


class Env:
    """One test's VirtualBox world: a BOINC-like slot, project dir, share, and the fake's files."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "vbox-state.json"
        self.log = tmp / "vbox-argv.log"
        self.project = tmp / "projects" / "example.org"
        self.project.mkdir(parents=True)
        if REAL:
            self.image = Path(os.environ["VBOX_TEST_VDI"]).resolve()
        else:
            self.image = self.project / "base.vdi"
            self.image.write_bytes(b"fake base disk image\n")
        self.results: dict[Path, str] = {}  # slot -> the result its init_data.xml names
        self.shares: list[Share] = []
        self.slot = self.make_slot("slot0", "result_A_0")
        self.share = self.slot / "shared"

    def make_slot(self, name: str, result: str) -> Path:
        slot = self.tmp / "slots" / name
        slot.mkdir(parents=True)
        self.results[slot] = result
        (slot / "init_data.xml").write_text(
            f"<app_init_data>\n<result_name>{result}</result_name>\n"
            f"<project_dir>{self.project}</project_dir>\n</app_init_data>\n"
        )
        return slot

    def task(self, slot: Path | None = None, tag: str = "slot0:result_A_0", **kw: object) -> TaskSpec:
        slot = slot or self.slot
        return TaskSpec(name="worker", argv=("worker",), share=slot / "shared", owner_tag=tag,
                        memory_mb=256, nthreads=2, **kw)  # type: ignore[arg-type]  # fmt: skip

    def task_and_share(
        self, slot: Path | None = None, tag: str = "slot0:result_A_0"
    ) -> tuple[TaskSpec, Share]:
        """A task and its shared folder, opened as the runtime does (closed by ``close``)."""
        task = self.task(slot, tag)
        task.share.mkdir(exist_ok=True)
        self.shares.append(Share(task.share))
        return task, self.shares[-1]

    def close(self) -> None:
        for share in self.shares:
            share.close()

    def driver(self, kind: str, **opts: object) -> object:
        o: dict[str, object] = {"retries": 2, "retry_delay": 0.01, "timeout": 20.0}
        o.update(opts)
        if kind != "exe" and not REAL:
            o.setdefault("runner", _inproc)
        vbm = VBoxManageDriver(**o)  # type: ignore[arg-type]
        return PyvboxDriver(fake_pyvbox, vbm) if kind == "pyvbox" else vbm

    def backend(self, kind: str = "vboxmanage", settings: VBoxSettings | None = None,
                slot: Path | None = None,
                **opts: object) -> VirtualBoxBackend:  # fmt: skip
        """A backend with the slot's settings as the runtime makes them (the slot, and the project folder
        and result name from its init_data.xml)."""
        slot = slot or self.slot
        settings = replace(settings or VBoxSettings(multiattach_vdi_file=self.image.name), slot_dir=slot,
                           project_dir=self.project, result_name=self.results[slot])  # fmt: skip
        return VirtualBoxBackend(settings, driver=self.driver(kind, **opts))  # type: ignore[arg-type]

    def argv_log(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def fake(self) -> dict:
        with FakeVBox.open(self.state) as vb:
            return json.loads(json.dumps(vb.data))

    def set_state(self, vm: str, state: str) -> None:
        with FakeVBox.open(self.state) as vb:
            vb.set_state(vm, state)

    def vbm(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the fake VBoxManage (in-process) as a user would."""
        rc, out, err = fake_run(list(args))
        return subprocess.CompletedProcess(list(args), rc, out, err)

    def info(self, vm: str) -> dict[str, str]:
        info = self.driver("vboxmanage").vm_info(vm)  # type: ignore[attr-defined]
        assert info is not None
        return info


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the per-image lock files land here
    if not REAL:
        monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_VBOX_STATE", str(tmp_path / "vbox-state.json"))
        monkeypatch.setenv("FAKE_VBOX_LOG", str(tmp_path / "vbox-argv.log"))
        monkeypatch.delenv("FAKE_VBOX_FAIL", raising=False)
    env = Env(tmp_path)
    yield env
    env.close()


def registered(env: Env) -> list[str]:
    return [n for n, _ in env.driver("vboxmanage").list_vms()]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Lifecycle


@pytest.mark.parametrize("kind", DRIVERS if REAL else ["exe", *DRIVERS])
def test_full_lifecycle_leaves_nothing(env: Env, kind: str) -> None:
    b = env.backend(kind)
    assert isinstance(b, Backend)
    assert b.poll().state is VMState.ABSENT
    b.create(*env.task_and_share())
    vm = vm_name_for("slot0:result_A_0")
    assert b.vm == vm
    assert b.poll().state is VMState.CREATED
    info = env.info(vm)
    assert info["memory"] == "256" and info["cpus"] == "2" and info["nic1"] == "none"
    assert info["SharedFolderNameMachineMapping1"] == "shared"
    assert Path(info["SharedFolderPathMachineMapping1"]) == env.share
    disk_uuid = info["Hard Disk Controller-ImageUUID-0-0"]
    hd = env.driver("vboxmanage").manage(["showhdinfo", disk_uuid], what="t")  # type: ignore[attr-defined]
    assert (
        "Parent UUID:" in hd and "base" not in hd.split("Parent UUID:")[1].splitlines()[0]
    )  # a differencing disk
    b.start()
    st = b.poll()
    assert st.state is VMState.RUNNING
    b.poweroff()
    assert b.poll() == type(st)(VMState.EXITED, exit_code=0)
    b.cleanup()
    assert b.poll().state is VMState.ABSENT
    assert vm not in registered(env)
    b.cleanup()  # idempotent
    assert env.image.exists(), "the project's base image is never deleted"
    if not REAL:
        data = env.fake()
        assert data["vms"] == {} and data["media"] == {}, "VM unregistered, diff deleted, base closed"
        assert not (env.slot / vm).exists(), "VM folder (settings, Snapshots) deleted"


@fake_only
def test_commands_in_order_with_arguments(env: Env) -> None:
    b = env.backend("exe")
    b.create(*env.task_and_share())
    b.start()
    b.poweroff()
    b.cleanup()
    log = env.argv_log()
    vm = vm_name_for("slot0:result_A_0")
    cmds = [a[0] for a in log]

    def idx(pred) -> int:  # first index of an argv matching pred
        return next(i for i, a in enumerate(log) if pred(a))

    create = idx(lambda a: a[0] == "createvm")
    assert log[create] == ["createvm", "--name", vm, "--basefolder", str(env.slot), "--ostype", "Linux26_64",
                           "--register"]  # fmt: skip
    owner = idx(lambda a: a[:4] == ["setextradata", vm, "boinc/owner", "slot0:result_A_0"])
    assert ["setextradata", vm, "boinc/slot", str(env.slot)] in log
    assert ["setextradata", vm, "boinc/result", "result_A_0"] in log
    mem = idx(lambda a: a[0] == "modifyvm" and "--memory" in a)
    assert create < owner < mem, "ownership is recorded before any other setting"
    assert log[mem][log[mem].index("--memory") + 1] == "256" and log[mem][log[mem].index("--cpus") + 1] == "2"
    ctl = idx(lambda a: a[0] == "storagectl")
    assert log[ctl] == ["storagectl", vm, "--name", "Hard Disk Controller", "--add", "sata", "--controller",
                        "IntelAHCI", "--hostiocache", "off", "--portcount", "3"]  # fmt: skip
    attaches = [a for a in log if a[0] == "storageattach"]
    assert [a[a.index("--medium") + 1] for a in attaches] == [str(env.image), "none", str(env.image)]
    assert attaches[-1][attaches[-1].index("--mtype") + 1] == "multiattach"
    assert ctl < cmds.index("storageattach") < cmds.index("sharedfolder") < cmds.index("startvm")
    assert ["sharedfolder", "add", vm, "--name", "shared", "--hostpath", str(env.share), "--automount"] in log
    assert ["startvm", vm, "--type", "headless"] in log
    assert cmds.index("startvm") < log.index(["controlvm", vm, "poweroff"]) < cmds.index("unregistervm")
    assert ["unregistervm", vm, "--delete"] in log
    assert ["closemedium", "disk", str(env.image)] in log, "unused base closed, not deleted (no --delete)"


@pytest.mark.parametrize("kind", DRIVERS)
def test_pause_resume_idempotent(env: Env, kind: str) -> None:
    b = env.backend(kind)
    b.create(*env.task_and_share())
    b.start()
    b.pause()
    b.pause()
    assert b.poll().state is VMState.PAUSED
    b.resume()
    b.resume()
    assert b.poll().state is VMState.RUNNING
    if not REAL:
        log = env.argv_log()
        pauses = [a for a in log if a[:3] == ["controlvm", b.vm, "pause"] or a[0] == "api:console.pause"]
        assert len(pauses) == 1, "a second pause is not sent (the real VBoxManage would refuse it)"
    b.cleanup()


@pytest.mark.parametrize("kind", DRIVERS)
def test_quit_with_savestate_then_restarted_bridge_restores(env: Env, kind: str) -> None:
    settings = VBoxSettings(multiattach_vdi_file=env.image.name, enable_vm_savestate_usage=True)
    b = env.backend(kind, settings)
    b.create(*env.task_and_share())
    b.start()
    assert b.checkpoint() is True
    assert b.poll().state is VMState.SAVED
    # the bridge exits; BOINC restarts it in the same slot
    n_create = sum(a[0] == "createvm" for a in env.argv_log())
    b2 = env.backend(kind, settings)
    b2.create(*env.task_and_share())
    assert b2.vm == b.vm
    if not REAL:
        assert sum(a[0] == "createvm" for a in env.argv_log()) == n_create, "our VM is reused, not recreated"
    assert b2.restore() is True
    assert b2.poll().state is VMState.RUNNING
    b2.cleanup()
    assert b.vm not in registered(env)


@pytest.mark.parametrize("kind", DRIVERS)
def test_snapshot_checkpoint_keeps_running_and_restores_after_poweroff(env: Env, kind: str) -> None:
    b = env.backend(kind)  # no savestate usage: checkpoints are snapshots, as in vboxwrapper
    b.create(*env.task_and_share())
    assert b.restore() is False, "nothing saved yet"
    b.start()
    assert b.checkpoint() is True
    assert b.checkpoint() is True
    assert b.poll().state is VMState.RUNNING
    info = env.info(b.vm or "")
    snaps = [v for k, v in info.items() if k.split("#")[0] == "SnapshotName"]
    assert len(snaps) == 1 and snaps[0].startswith("boinc_"), "older snapshots are deleted"
    b.poweroff()
    b2 = env.backend(kind)
    b2.create(*env.task_and_share())
    assert b2.restore() is True
    assert b2.poll().state is VMState.RUNNING
    assert ["snapshot", b.vm, "restorecurrent"] in env.argv_log() or REAL
    b2.cleanup()


def test_no_vm_level_checkpoint_when_disabled(env: Env) -> None:
    s = VBoxSettings(multiattach_vdi_file=env.image.name, disable_automatic_checkpoints=True)
    b = env.backend("vboxmanage", s)
    assert b.checkpoint() is False
    b.create(*env.task_and_share())
    b.start()
    assert b.checkpoint() is False
    assert b.poll().state is VMState.RUNNING
    b.cleanup()


@pytest.mark.parametrize("kind", DRIVERS)
def test_abort_with_cleanup_of_running_vm(env: Env, kind: str) -> None:
    b = env.backend(kind)
    b.create(*env.task_and_share())
    b.start()
    b.pause()
    b.cleanup()  # abort: straight from paused to gone
    assert b.poll().state is VMState.ABSENT
    assert registered(env) == [] or REAL


@fake_only
def test_guest_poweroff_and_crash_are_reported(env: Env) -> None:
    b = env.backend("vboxmanage")
    b.create(*env.task_and_share())
    b.start()
    env.set_state(b.vm or "", "poweroff")  # the guest shut itself down
    assert b.poll().state is VMState.EXITED
    b.start()
    logs = env.slot / (b.vm or "") / "Logs"
    logs.mkdir()
    (logs / "VBox.log").write_text("00:00:01.0 HM: VERR_SVM_IN_USE\n00:00:01.1 Power off\n")
    env.set_state(b.vm or "", "aborted")
    st = b.poll()
    assert st.state is VMState.FAILED
    assert "another hypervisor" in st.error
    assert b.last_error is not None and b.last_error.temporary and b.last_error.code == "HYPERVISOR_IN_USE"
    b.cleanup()
    assert env.fake()["vms"] == {}


@fake_only
def test_vm_removed_behind_our_back_is_a_failure(env: Env) -> None:
    b = env.backend("vboxmanage")
    b.create(*env.task_and_share())
    b.start()
    assert env.vbm("controlvm", b.vm or "", "poweroff").returncode == 0
    assert env.vbm("unregistervm", b.vm or "", "--delete").returncode == 0
    st = b.poll()
    assert st.state is VMState.FAILED and "disappeared" in st.error
    b.cleanup()


# ---------------------------------------------------------------------------------------------
# Ownership


@fake_only
def test_orphan_collection_removes_only_our_stale_vms(env: Env) -> None:
    # our live VM (this bridge), plus VMs of other slots
    me = env.backend("vboxmanage")
    me.create(*env.task_and_share())
    me.start()
    gone_slot = env.make_slot("slot1", "result_B_0")
    reused_slot = env.make_slot("slot2", "result_C_0")
    live_slot = env.make_slot("slot3", "result_D_0")
    for slot, tag in ((gone_slot, "slot1:result_B_0"), (reused_slot, "slot2:result_C_0"),
                      (live_slot, "slot3:result_D_0")):  # fmt: skip
        other = env.backend("vboxmanage", slot=slot)
        other.create(*env.task_and_share(slot, tag))
        other.start()
    import shutil

    shutil.rmtree(gone_slot)  # task finished, slot removed
    (reused_slot / "init_data.xml").write_text(
        "<app_init_data><result_name>result_X_1</result_name></app_init_data>"
    )
    # not ours: no extradata at all, and one claimed by another program
    for n in ("users_own_vm", "boinc_lookalike"):
        assert (
            env.vbm("createvm", "--name", n, "--basefolder", str(env.tmp / "other"), "--register").returncode
            == 0
        )
    for key, val in (
        ("boinc/owner", "slot9:x"),
        ("boinc/slot", str(env.tmp / "nowhere")),
        ("boinc/result", "x"),
    ):
        assert env.vbm("setextradata", "boinc_lookalike", key, val).returncode == 0
    removed = me.collect_orphans()
    assert sorted(removed) == sorted([vm_name_for("slot1:result_B_0"), vm_name_for("slot2:result_C_0")])
    left = registered(env)
    assert sorted(left) == sorted([me.vm, vm_name_for("slot3:result_D_0"), "users_own_vm", "boinc_lookalike"])
    assert env.info(me.vm or "")["VMState"] == "running"
    assert me.collect_orphans() == []


@fake_only
def test_own_vm_kept_even_if_slot_looks_stale(env: Env) -> None:
    b = env.backend("vboxmanage")
    b.create(*env.task_and_share())
    (env.slot / "init_data.xml").unlink()
    assert slot_is_stale(env.slot, "result_A_0") is True
    assert b.collect_orphans() == []
    assert b.vm in registered(env)
    b.cleanup()


@fake_only
def test_foreign_vm_with_our_name_is_never_touched(env: Env) -> None:
    vm = vm_name_for("slot0:result_A_0")
    assert (
        env.vbm("createvm", "--name", vm, "--basefolder", str(env.tmp / "elsewhere"), "--register").returncode
        == 0
    )
    b = env.backend("vboxmanage")
    with pytest.raises(VBoxError) as ei:
        b.create(*env.task_and_share())
    assert ei.value.temporary and ei.value.code == "FOREIGN_VM"
    assert "VirtualBox Manager" in str(ei.value)
    b.cleanup()
    assert vm in registered(env)


def test_slot_is_stale_rules(tmp_path: Path) -> None:
    assert slot_is_stale(tmp_path / "missing", "r") is True
    (tmp_path / "s").mkdir()
    assert slot_is_stale(tmp_path / "s", "r") is True  # emptied slot
    (tmp_path / "s" / "init_data.xml").write_text("<result_name>r</result_name>")
    assert slot_is_stale(tmp_path / "s", "r") is False
    assert slot_is_stale(tmp_path / "s", "other") is True


def test_vm_names_are_safe_and_distinct() -> None:
    a, b = vm_name_for("slot 1:res/1"), vm_name_for("slot_1:res_1")
    assert a != b and a.startswith("boinc_") and "/" not in a and " " not in a
    assert len(vm_name_for("x" * 500)) < 110
    assert vm_name_for("slot1_r") == "boinc_slot1_r"


# ---------------------------------------------------------------------------------------------
# Errors


def _start_fails(env: Env, kind: str, spec: str, monkeypatch: pytest.MonkeyPatch) -> VBoxError:
    b = env.backend(kind)
    b.create(*env.task_and_share())
    monkeypatch.setenv("FAKE_VBOX_FAIL", spec)
    with pytest.raises(VBoxError) as ei:
        b.start()
    monkeypatch.delenv("FAKE_VBOX_FAIL")
    assert b.poll().state is VMState.CREATED
    b.cleanup()
    return ei.value


START_FAILURES = [
    # injection, temporary, code, words the volunteer must see
    ("VERR_VMX_NO_VMX", False, "NO_HARDWARE_VIRTUALIZATION", "cannot run here"),
    ("VERR_SVM_NO_SVM", False, "NO_HARDWARE_VIRTUALIZATION", "VT-x / AMD-V"),
    ("VERR_VMX_MSR_ALL_VMX_DISABLED", False, "VM_EXTENSIONS_DISABLED", "ERR_CPU_VM_EXTENSIONS_DISABLED"),
    ("VERR_SVM_DISABLED", False, "VM_EXTENSIONS_DISABLED", "BIOS/UEFI"),
    ("VERR_VMX_IN_VMX_ROOT_MODE", True, "HYPERVISOR_IN_USE", "another hypervisor"),
    ("VERR_SVM_IN_USE", True, "HYPERVISOR_IN_USE", "retry the task in a day"),
    ("VERR_NO_MEMORY", True, "HOST_OUT_OF_MEMORY", "not enough free memory"),
    ("VERR_EM_NO_MEMORY", True, "HOST_OUT_OF_MEMORY", "Close programs"),
    ("VBOXDRV", True, "VBOXDRV_NOT_LOADED", "vboxconfig"),
    ("E_FAIL", False, "VBOX_ERROR", "report the message"),
]


@fake_only
@pytest.mark.parametrize("kind", DRIVERS)
@pytest.mark.parametrize(("inj", "temporary", "code", "words"), START_FAILURES)
def test_start_failures_map_to_boinc_outcomes(
    env: Env, kind: str, inj: str, temporary: bool, code: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = _start_fails(env, kind, f"startvm:{inj}", monkeypatch)
    assert (e.temporary, e.code) == (temporary, code)
    msg = str(e)
    assert words in msg and msg.startswith("VirtualBox could not start the VM")
    assert "\n" not in msg and len(msg) < 700
    assert (e.delay > 0) == temporary


@fake_only
@pytest.mark.parametrize(
    ("spec", "temporary", "code", "words"),
    [
        ("createvm:NO_VBOXSVC", True, "VBOXSVC_UNREACHABLE", "VBoxSVC"),
        ("createvm:CO_E_SERVER_EXEC_FAILURE", True, "VBOXSVC_UNREACHABLE", "reinstall VirtualBox"),
        ("storageattach:VBOX_E_FILE_ERROR", False, "FILE_ERROR", "damaged or deleted"),
        ("storagectl:E_FAIL", False, "VBOX_ERROR", "add the VM's disk controller"),
        ("modifyvm:LOCKED", True, "SESSION_LOCKED", "VirtualBox Manager"),
    ],
)
def test_create_failures_map_and_leave_no_partial_vm(
    env: Env, spec: str, temporary: bool, code: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VBOX_FAIL", spec)
    b = env.backend("vboxmanage")
    with pytest.raises(VBoxError) as ei:
        b.create(*env.task_and_share())
    assert (ei.value.temporary, ei.value.code) == (temporary, code)
    assert words in str(ei.value)
    monkeypatch.delenv("FAKE_VBOX_FAIL")
    assert env.fake()["vms"] == {}, "a half-created VM is removed"
    assert b.poll().state is VMState.ABSENT


@fake_only
def test_locked_session_is_retried_a_bounded_number_of_times(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VBOX_FAIL", "modifyvm:LOCKED:2")
    b = env.backend("vboxmanage", retries=3)
    b.create(*env.task_and_share())  # two refusals, then it works
    mem = [a for a in env.argv_log() if a[0] == "modifyvm" and "--memory" in a]
    assert len(mem) == 3
    b.start()
    monkeypatch.setenv("FAKE_VBOX_FAIL", "controlvm.pause:LOCKED")  # never unlocks
    with pytest.raises(VBoxError) as ei:
        b.pause()
    assert ei.value.temporary and ei.value.code == "SESSION_LOCKED"
    assert "gave up after 4 attempts" in str(ei.value)
    assert sum(a[:3] == ["controlvm", b.vm, "pause"] for a in env.argv_log()) == 4
    monkeypatch.delenv("FAKE_VBOX_FAIL")
    b.cleanup()


@fake_only
def test_pyvbox_locked_session_retried_too(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    b = env.backend("pyvbox", retries=2)
    b.create(*env.task_and_share())
    b.start()
    monkeypatch.setenv("FAKE_VBOX_FAIL", "controlvm.pause:LOCKED:1")
    b.pause()
    assert b.poll().state is VMState.PAUSED
    assert sum(a[0] == "api:console.pause" for a in env.argv_log()) == 2
    b.cleanup()


@fake_only
def test_hung_vboxmanage_times_out_as_temporary(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VBOX_FAIL", "showvminfo:HANG")
    b = env.backend("exe", timeout=1.0)
    with pytest.raises(VBoxError) as ei:
        b.create(*env.task_and_share())
    assert ei.value.temporary and ei.value.code == "TIMEOUT"
    assert "did not answer within 1 s" in str(ei.value)


def test_vboxmanage_missing_is_temporary(env: Env) -> None:
    b = VirtualBoxBackend(VBoxSettings(multiattach_vdi_file=env.image.name, slot_dir=env.slot),
                          driver=VBoxManageDriver("/nonexistent/VBoxManage"))  # fmt: skip
    with pytest.raises(VBoxError) as ei:
        b.create(*env.task_and_share())
    assert ei.value.temporary and ei.value.code == "VBOXMANAGE_MISSING"
    assert "Install VirtualBox" in str(ei.value)


@fake_only
def test_missing_image_is_permanent(env: Env) -> None:
    b = env.backend("vboxmanage", VBoxSettings(multiattach_vdi_file="nope.vdi"))
    with pytest.raises(VBoxError) as ei:
        b.create(*env.task_and_share())
    assert not ei.value.temporary and "multiattach_vdi_file" in str(ei.value)
    assert env.fake()["vms"] == {}


def test_classify_unknown_and_syntax() -> None:
    e = classify("VBoxManage: error: Unknown option: --frobnicate\n", what="set up the VM", rc=2)
    assert (e.temporary, e.code) == (False, "SYNTAX") and "--frobnicate" in str(e)
    e = classify("", what="set up the VM", rc=1)
    assert e.code == "VBOX_ERROR" and "exit code 1" in str(e)


# ---------------------------------------------------------------------------------------------
# The fake's own strictness (so that a backend that skips a step would be caught)


@fake_only
def test_fake_rejects_what_real_vboxmanage_rejects(env: Env) -> None:
    assert env.vbm("createvm", "--name", "v", "--basefolder", str(env.tmp), "--register").returncode == 0
    r = env.vbm("controlvm", "v", "pause")
    assert r.returncode == 1 and "is not currently running" in r.stderr
    r = env.vbm("storagectl", "v", "--name", "c", "--add", "sata", "--controller", "IntelAhci")
    assert r.returncode == 0
    r = env.vbm("storageattach", "v", "--storagectl", "c", "--port", "0", "--device", "0", "--type", "hdd",
                "--mtype", "multiattach", "--medium", str(env.image))  # fmt: skip
    assert r.returncode == 1 and "MultiAttach" in r.stderr, "multi-attach needs the attach/detach dance first"
    assert env.vbm("startvm", "v", "--type", "headless").returncode == 0
    r = env.vbm("startvm", "v")
    assert r.returncode == 1 and "already locked by a session" in r.stderr
    r = env.vbm("modifyvm", "v", "--memory", "64")
    assert r.returncode == 1 and "is already locked for a session (or being unlocked)" in r.stderr
    r = env.vbm("controlvm", "v", "resume")
    assert r.returncode == 1 and "VBOX_E_INVALID_VM_STATE" in r.stderr
    r = env.vbm("unregistervm", "v", "--delete")
    assert r.returncode == 1 and "while it is locked" in r.stderr
    assert env.vbm("controlvm", "v", "pause").returncode == 0
    assert env.vbm("controlvm", "v", "savestate").returncode == 0, "save from paused is allowed"
    r = env.vbm("controlvm", "v", "savestate")
    assert r.returncode == 1 and "not currently running" in r.stderr
    r = env.vbm("showvminfo", "nope", "--machinereadable")
    assert r.returncode == 1 and "VBOX_E_OBJECT_NOT_FOUND" in r.stderr
    r = env.vbm("modifyvm", "v", "--frobnicate", "1")
    assert r.returncode == 2


# ---------------------------------------------------------------------------------------------
# Settings, drivers, helpers


def test_settings_from_vboxjob_attributes() -> None:
    job = types.SimpleNamespace(
        os_name="Debian_64", memory_size_mb=2048, vm_disk_controller_type="ide",
        vm_disk_controller_model="PIIX4",
        multiattach_vdi_file="CMS.vdi", enable_network=True, enable_shared_directory=True, pf_host_port=7859,
        pf_guest_port=80, enable_remotedesktop=True, enable_vm_savestate_usage=True,
        copy_to_shared="init_data.xml", share_project_dir=None,
    )  # fmt: skip
    s = VBoxSettings.from_vboxjob(job, slot_dir=Path("/slots/1"), project_dir=Path("/p"), result_name="r_0")
    assert s.os_name == "Debian_64" and s.memory_size_mb == 2048 and s.vm_disk_controller_type == "ide"
    assert (
        s.multiattach_vdi_file == "CMS.vdi"
        and s.enable_network
        and (s.pf_host_port, s.pf_guest_port) == (7859, 80)
    )
    assert s.enable_vm_savestate_usage and not s.share_project_dir
    assert (s.slot_dir, s.project_dir, s.result_name) == (Path("/slots/1"), Path("/p"), "r_0")
    assert not hasattr(s, "copy_to_shared"), "<copy_to_shared> is the runtime's (one owner of the copies)"
    assert VBoxSettings.from_vboxjob(
        types.SimpleNamespace(enable_shared_directory=False)
    ).enable_shared_directory
    d = VBoxSettings.from_vboxjob(object())
    assert d == VBoxSettings()


@fake_only
def test_network_port_forward_and_console(env: Env) -> None:
    s = VBoxSettings(multiattach_vdi_file=env.image.name, enable_network=True, pf_guest_port=80,
                     enable_remotedesktop=True,
                     vm_disk_controller_type="ide", vm_disk_controller_model="PIIX4")  # fmt: skip
    b = env.backend("vboxmanage", s)
    assert b.console() == ConsoleEndpoints()
    b.create(*env.task_and_share())
    info = env.info(b.vm or "")
    assert info["nic1"] == "nat" and info["cableconnected1"] == "on"
    port = b.port_forward_host_port
    assert port > 0 and info["Forwarding(0)"] == f"boinc_pf,tcp,127.0.0.1,{port},,80"
    assert info["vrde"] == "off", "no Extension Pack: remote desktop skipped, not failed"
    assert b.console() == ConsoleEndpoints(host_port=port, remote_desktop_port=None, direct=False)
    assert sorted(p.name for p in env.share.iterdir()) == [], "the backend copies no file into the share"
    b.cleanup()


@fake_only
def test_owner_marks_come_from_the_settings_not_init_data(env: Env) -> None:
    """The runtime read init_data.xml once and put the result name and project folder in the settings:
    the backend reads neither from the slot's file (here gone) for its own task."""
    (env.slot / "init_data.xml").unlink()
    b = env.backend("vboxmanage")
    b.create(*env.task_and_share())
    vm = b.vm or ""
    drv = env.driver("vboxmanage")
    assert drv.get_extradata(vm, "boinc/result") == "result_A_0"  # type: ignore[attr-defined]
    assert drv.get_extradata(vm, "boinc/slot") == str(env.slot.resolve())  # type: ignore[attr-defined]
    assert "result_A_0" in env.info(vm)["description"]  # the image was found in the project folder
    b.cleanup()


def test_select_driver(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(select_driver("vboxmanage"), VBoxManageDriver)
    try:
        import virtualbox  # type: ignore[import-not-found]  # noqa: F401

        has_pyvbox = True
    except Exception:
        has_pyvbox = False
    if not has_pyvbox:
        assert isinstance(select_driver("auto"), VBoxManageDriver)
    monkeypatch.setenv("FAKE_VBOX_STATE", str(env.state))
    assert isinstance(select_driver("auto", module=fake_pyvbox), PyvboxDriver)
    monkeypatch.delenv("FAKE_VBOX_STATE")
    assert isinstance(select_driver("auto", module=fake_pyvbox), VBoxManageDriver), "VirtualBox() fails"
    with pytest.raises(VBoxError) as ei:
        select_driver("pyvbox", module=fake_pyvbox)
    assert not ei.value.temporary and "vboxapi" in str(ei.value)
    with pytest.raises(ValueError, match="unknown VirtualBox driver"):
        select_driver("qemu")


def test_parse_machinereadable_quoting() -> None:
    text = (
        'name="a \\"b\\""\n"Hard Disk Controller-0-0"="/x y.vdi"\nmemory=512\n'
        'SnapshotName="s1"\nSnapshotName="s2"\n'
    )
    d = parse_machinereadable(text)
    assert d["name"] == 'a "b"' and d["Hard Disk Controller-0-0"] == "/x y.vdi" and d["memory"] == "512"
    assert (d["SnapshotName"], d["SnapshotName#2"]) == ("s1", "s2")


def test_find_vm_process_by_command_line() -> None:
    uuid = "0b7c9a2e-1111-4222-8333-944455556666"
    argv = ["VBoxHeadless", "-c", "import time; time.sleep(30)", "--comment", "vm1", "--startvm", uuid]
    p = subprocess.Popen(argv,
                         executable=sys.executable)  # fmt: skip
    try:
        import time

        deadline = time.monotonic() + 10
        pid = None
        while pid is None and time.monotonic() < deadline:
            pid = find_vm_process("vm1", uuid)
            time.sleep(0.05)
        assert pid == p.pid
        assert find_vm_process("other", "no-such-uuid") is None
    finally:
        p.kill()
        p.wait(timeout=10)


CMS_JOB = """<vbox_job>
    <os_name>Linux26_64</os_name>
    <memory_size_mb>2048</memory_size_mb>
    <enable_network/>
    <enable_remotedesktop/>
    <copy_to_shared>init_data.xml</copy_to_shared>
    <enable_shared_directory/>
    <pf_host_port>7859</pf_host_port>
    <pf_guest_port>80</pf_guest_port>
    <enable_vm_savestate_usage/>
    <disable_automatic_checkpoints/>
    <multiattach_vdi_file>CMS.vdi</multiattach_vdi_file>
</vbox_job>
"""  # LHC@home CMS's vbox_job.xml (as published), abridged


def test_settings_from_the_real_vboxjob_parser() -> None:
    from host_bridge.jobfile import vbox as vboxjob

    job = vboxjob.parse_vbox_job_text(CMS_JOB, "vbox_job.xml")
    s = VBoxSettings.from_vboxjob(job)
    assert (s.os_name, s.memory_size_mb, s.multiattach_vdi_file) == ("Linux26_64", 2048, "CMS.vdi")
    assert s.enable_network and (s.pf_host_port, s.pf_guest_port) == (7859, 80) and s.enable_remotedesktop
    assert s.enable_vm_savestate_usage and s.disable_automatic_checkpoints
    assert (s.vm_disk_controller_type, s.vm_disk_controller_model) == ("sata", "IntelAHCI")
    assert job.copy_to_shared == ("init_data.xml",)  # copied by the runtime, not by the backend
