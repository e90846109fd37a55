"""THIS IS A FAKE of the few pyvbox (``virtualbox`` module) objects the VirtualBox backend uses.

pyvbox cannot run here (it needs VirtualBox's ``vboxapi``). This fake was written from pyvbox 2.x's
sources (``virtualbox.VirtualBox``, ``virtualbox.Session``, ``library.IMachine.launch_vm_process /
lock_machine / get_extra_data / state``, ``IConsole.pause / resume / power_down``,
``IMachine.save_state``, ``IProgress``, ``library.VBoxError`` subclasses with ``name`` / ``value`` /
``msg``) and VirtualBox's API reference (MachineState values). It backs onto the SAME JSON state file
as the fake VBoxManage (``tests/fakes/fake_vboxmanage.py``, ``$FAKE_VBOX_STATE``), honours the same
failure injections (``startvm:...`` for ``launch_vm_process``, ``controlvm.<action>:...``) and logs
its calls to ``$FAKE_VBOX_LOG`` as ``["api:<method>", vm, ...]``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from tests.fakes.fake_vboxmanage import (
    INJECTIONS,
    LOG_ENV,
    STATE_ENV,
    FakeVBox,
    FakeVBoxError,
    _injection,
)


class library:
    class VBoxError(Exception):
        name = "undef"
        value = -1
        msg = ""

        def __str__(self) -> str:
            return f"0x{self.value & 0xFFFFFFFF:x} ({self.msg})"

    class VBoxErrorObjectNotFound(VBoxError):
        name, value = "VBOX_E_OBJECT_NOT_FOUND", 0x80BB0001

    class VBoxErrorInvalidVmState(VBoxError):
        name, value = "VBOX_E_INVALID_VM_STATE", 0x80BB0002

    class VBoxErrorFileError(VBoxError):
        name, value = "VBOX_E_FILE_ERROR", 0x80BB0004

    class VBoxErrorInvalidObjectState(VBoxError):
        name, value = "VBOX_E_INVALID_OBJECT_STATE", 0x80BB0007

    class VBoxErrorObjectInUse(VBoxError):
        name, value = "VBOX_E_OBJECT_IN_USE", 0x80BB000C

    class MachineState:
        null, powered_off, saved, teleported, aborted, running, paused = 0, 1, 2, 3, 4, 5, 6

    class LockType:
        null, shared, write, vm = 0, 1, 2, 3


_STATE_VALUES = {"poweroff": 1, "saved": 2, "aborted": 4, "running": 5, "paused": 6}
_CODE = re.compile(r"code (\w+) \(0x([0-9a-fA-F]+)\)")


def _text(e: FakeVBoxError) -> str:
    return "\n".join(ln.removeprefix("VBoxManage: error: ") for ln in (e.stderr or e.stdout).splitlines())


def _api_error(e: FakeVBoxError) -> library.VBoxError:
    m = _CODE.search(e.stderr)
    classes = {c.name: c for c in library.VBoxError.__subclasses__()}
    cls = classes.get(m.group(1), library.VBoxError) if m else library.VBoxError
    err = cls()
    err.value = int(m.group(2), 16) if m else 0x80004005
    err.msg = next((ln for ln in _text(e).splitlines() if not ln.startswith(("Details:", "Context:"))), "")
    return err


def _state_path() -> str:
    path = os.environ.get(STATE_ENV)
    if not path:  # like pyvbox without vboxapi: constructing VirtualBox() fails
        raise ModuleNotFoundError("No module named 'vboxapi' (fake pyvbox: FAKE_VBOX_STATE is not set)")
    return path


def _log(*argv: str) -> None:
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(list(argv)) + "\n")


def _injected(vb: FakeVBox, argv: list[str]) -> FakeVBoxError | None:
    inj = _injection(vb, argv)
    if inj is None:
        return None
    kind, name = inj
    if kind == "HANG":
        return FakeVBoxError("VBoxManage: error: fake: operation timed out\n")
    e = INJECTIONS[kind](name)
    e.stderr = e.stderr.replace("{name}", name)
    return e


class ErrorInfo:
    def __init__(self, text: str) -> None:
        self.text = text


class Progress:
    """A finished IProgress (the fake completes operations at once)."""

    def __init__(self, error: FakeVBoxError | None = None) -> None:
        self.completed = True
        self.result_code = 0
        self.error_info: ErrorInfo | None = None
        if error is not None:
            m = _CODE.search(error.stderr)
            self.result_code = int(m.group(2), 16) if m else 0x80004005
            self.error_info = ErrorInfo(_text(error))

    def wait_for_completion(self, timeout: int = -1) -> None:
        return None


class Console:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _control(self, action: str) -> Progress:
        vm_id = self._session._locked
        with FakeVBox.open(_state_path()) as vb:  # first transaction: count the injection
            name = vb.find_vm(vm_id)["name"]
            _log(f"api:console.{action}", name)
            err = _injected(vb, ["controlvm", name, action])
        if err is not None:
            raise _api_error(err)
        try:
            with FakeVBox.open(_state_path()) as vb:
                vb.control(vb.find_vm(vm_id), action)
        except FakeVBoxError as e:
            raise _api_error(e) from None
        return Progress()

    def pause(self) -> None:
        self._control("pause")

    def resume(self) -> None:
        self._control("resume")

    def power_down(self) -> Progress:
        return self._control("poweroff")


class SessionMachine:
    def __init__(self, session: Session) -> None:
        self._session = session

    def save_state(self) -> Progress:
        return self._session.console._control("savestate")


class Session:
    def __init__(self) -> None:
        self._locked: str | None = None
        self.console = Console(self)
        self.machine = SessionMachine(self)

    def unlock_machine(self) -> None:
        self._locked = None


class Machine:
    def __init__(self, uuid: str) -> None:
        self._uuid = uuid

    def _vm(self, vb: FakeVBox) -> dict[str, Any]:
        try:
            return vb.find_vm(self._uuid)
        except FakeVBoxError as e:
            raise _api_error(e) from None

    @property
    def id_p(self) -> str:
        return self._uuid

    @property
    def name(self) -> str:
        with FakeVBox.open(_state_path()) as vb:
            return str(self._vm(vb)["name"])

    @property
    def state(self) -> int:
        with FakeVBox.open(_state_path()) as vb:
            return _STATE_VALUES[self._vm(vb)["state"]]

    def get_extra_data(self, key: str) -> str:
        with FakeVBox.open(_state_path()) as vb:
            return str(self._vm(vb)["extradata"].get(key, ""))

    def lock_machine(self, session: Session, lock_type: int) -> None:
        with FakeVBox.open(_state_path()) as vb:
            vm = self._vm(vb)
            if lock_type == library.LockType.shared and vm["state"] not in ("running", "paused"):
                # a shared lock needs a running VM's session (VirtualBox: VBOX_E_INVALID_OBJECT_STATE)
                raise _api_error(
                    FakeVBoxError(
                        f"VBoxManage: error: Machine '{vm['name']}' is not currently running\n"
                        "VBoxManage: error: Details: code VBOX_E_INVALID_VM_STATE (0x80bb0002)\n"
                    )
                )
        session._locked = self._uuid

    def launch_vm_process(self, session: Session, type_p: str, environment_changes: list[str]) -> Progress:
        with FakeVBox.open(_state_path()) as vb:  # first transaction: count the injection
            name = self._vm(vb)["name"]
            _log("api:launch_vm_process", name, type_p)
            err = _injected(vb, ["startvm", name])
        if err is None:
            try:
                with FakeVBox.open(_state_path()) as vb:
                    vb.start(self._vm(vb))
            except FakeVBoxError as e:
                err = e
        if err is not None:
            if "already locked" in err.stderr:  # LaunchVMProcess itself fails on a locked machine
                raise _api_error(err)
            return Progress(err)  # the VM process failed: the error is in the progress object
        session._locked = self._uuid
        return Progress()


class VirtualBox:
    def __init__(self) -> None:
        self._path = _state_path()
        self.version = "7.0.14"

    def find_machine(self, name_or_id: str) -> Machine:
        with FakeVBox.open(self._path) as vb:
            _log("api:find_machine", name_or_id)
            try:
                return Machine(vb.find_vm(name_or_id)["uuid"])
            except FakeVBoxError as e:
                raise _api_error(e) from None

    @property
    def machines(self) -> list[Machine]:
        with FakeVBox.open(self._path) as vb:
            return [Machine(u) for u in vb.data["vms"]]
