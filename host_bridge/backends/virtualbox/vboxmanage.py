"""Drivers that talk to VirtualBox for the VirtualBox backend, and the error mapping.

Two drivers with one interface (``VBoxDriver``):

* ``VBoxManageDriver`` runs the ``VBoxManage`` command line (what BOINC's vboxwrapper does since
  2022): bounded timeouts, ``--machinereadable`` parsing, bounded retries with exponential backoff
  when another program holds the VM's session lock or VBoxSVC is momentarily unreachable.
* ``PyvboxDriver`` uses pyvbox (the ``virtualbox`` module, which needs VirtualBox's own ``vboxapi``)
  for the frequent control and query calls (state, start, pause, resume, save, power off, extradata),
  and the VBoxManage driver for one-time configuration. It is selected only when
  ``import virtualbox; virtualbox.VirtualBox()`` works.

Every failure becomes a ``VBoxError`` (a ``BackendError``) whose ``temporary`` flag and message
follow vboxwrapper's handling: see ``classify`` and docs/virtualbox.md.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, TypeVar

from host_bridge.backends.base import BackendError

logger = logging.getLogger(__name__)

T = TypeVar("T")

ONLINE_STATES = frozenset(
    {
        "running", "paused", "starting", "stopping", "saving", "restoring", "livesnapshotting",
        "onlinesnapshotting", "deletingsnapshotlive", "deletingsnapshotlivepaused", "teleporting",
        "teleportingpausedvm", "teleportingin",
    }
)  # fmt: skip


class VBoxError(BackendError):
    """A VirtualBox operation failed.

    ``code``: short name of the cause (e.g. ``SESSION_LOCKED``, ``VERR_VMX_NO_VMX``);
    ``delay``: for temporary errors, the suggested wait (seconds) before BOINC retries the task;
    ``output``: what VBoxManage / the API said, for the log.
    """

    def __init__(
        self, message: str, *, temporary: bool, code: str, delay: float = 0.0, output: str = ""
    ) -> None:
        super().__init__(message, temporary=temporary)
        self.code = code
        self.delay = delay
        self.output = output


@dataclass(frozen=True)
class _Rule:
    """How to classify one kind of VBoxManage failure: the patterns, temporary or not, the delay and the
    advice."""

    code: str
    patterns: tuple[str, ...]
    temporary: bool
    delay: float
    advice: str


# Ordered: the first rule whose pattern occurs in the output wins. Texts are what VBoxManage prints.
_RULES: tuple[_Rule, ...] = (
    _Rule(
        "SESSION_LOCKED",
        (
            "is already locked for a session",
            "is already locked by a session",
            "lock request pending",
            "while it is locked",
        ),
        True,
        600,
        "another program (VirtualBox Manager, another VBoxManage) holds this VM's session lock. "
        "Close VirtualBox Manager windows for BOINC's VMs; BOINC will retry the task later.",
    ),
    _Rule(
        "VBOXSVC_UNREACHABLE",
        (
            "Failed to create the VirtualBox object",
            "CO_E_SERVER_EXEC_FAILURE",
            "RPC_S_SERVER_UNAVAILABLE",
            "VirtualBox COM server is not running",
        ),
        True,
        3600,
        "VirtualBox's background service (VBoxSVC) could not be reached. Restart the computer or "
        "reinstall VirtualBox; BOINC will retry the task later.",
    ),
    _Rule(
        "VBOXDRV_NOT_LOADED",
        (
            "Kernel driver not installed",
            "vboxdrv kernel module is not loaded",
            "VERR_VM_DRIVER_NOT_INSTALLED",
            "VERR_VM_DRIVER_NOT_ACCESSIBLE",
        ),
        True,
        86400,
        "VirtualBox's kernel driver (vboxdrv) is not loaded. Run 'sudo /sbin/vboxconfig' (or reinstall "
        "virtualbox-dkms and run 'sudo modprobe vboxdrv'), then restart BOINC.",
    ),
    _Rule(
        "HYPERVISOR_IN_USE",
        ("VERR_VMX_IN_VMX_ROOT_MODE", "VERR_SVM_IN_USE"),
        True,
        86400,
        "another hypervisor (KVM, Hyper-V, VMware, another VM program) is using the processor's "
        "virtualization extensions, so VirtualBox cannot start the VM. Stop the other VMs (on Linux: "
        "'sudo modprobe -r kvm_intel kvm_amd'); BOINC will retry the task in a day.",
    ),
    _Rule(
        "HOST_OUT_OF_MEMORY",
        ("VERR_NO_MEMORY", "VERR_EM_NO_MEMORY", "VERR_NO_PHYS_MEMORY", "Failed to allocate memory"),
        True,
        300,
        "this computer has not enough free memory to start the VM. Close programs or let BOINC use "
        "less memory; BOINC will retry the task later.",
    ),
    _Rule(
        "VM_EXTENSIONS_DISABLED",
        (
            "VERR_VMX_MSR_ALL_VMX_DISABLED",
            "VERR_VMX_MSR_VMX_DISABLED",
            "VERR_VMX_MSR_LOCKED_OR_DISABLED",
            "VERR_VMX_MSR_VMXON_DISABLED",
            "VERR_VMX_MSR_SMX_VMXON_DISABLED",
            "VERR_SVM_DISABLED",
        ),
        False,
        0,
        "hardware virtualization (Intel VT-x / AMD-V) is disabled in this computer's BIOS/UEFI "
        "settings. Enable it there to run VirtualBox tasks. Error Code: ERR_CPU_VM_EXTENSIONS_DISABLED",
    ),
    _Rule(
        "NO_HARDWARE_VIRTUALIZATION",
        ("VERR_VMX_NO_VMX", "VERR_SVM_NO_SVM", "VERR_NEM_NOT_AVAILABLE"),
        False,
        0,
        "this processor offers no hardware virtualization (VT-x / AMD-V) that VirtualBox can use (or "
        "this computer is itself a VM without nested virtualization); this task's VM needs it and "
        "cannot run here.",
    ),
    _Rule(
        "VM_NOT_REGISTERED",
        ("Could not find a registered machine",),
        True,
        60,
        "the task's VM is no longer registered in VirtualBox (was it removed in VirtualBox Manager?). "
        "BOINC will restart the task, which recreates the VM.",
    ),
    _Rule(
        "FILE_ERROR",
        ("VBOX_E_FILE_ERROR", "VERR_FILE_NOT_FOUND", "VERR_PATH_NOT_FOUND"),
        False,
        0,
        "VirtualBox cannot open a file the task needs (disk image or VM settings). The task's files "
        "may be damaged or deleted; the task fails and the project can resend it.",
    ),
)

_ERROR_LINE = re.compile(r"^VBoxManage(?:\.exe)?: error: (?!Details:|Context:)(.*)$", re.MULTILINE)


def first_error_line(output: str) -> str:
    """The most telling line of a VBoxManage error output (bounded to 300 characters)."""
    m = _ERROR_LINE.search(output)
    line = m.group(1) if m else next((ln for ln in output.splitlines() if ln.strip()), "")
    return line.strip()[:300]


def classify(output: str, *, what: str, rc: int | None = None) -> VBoxError:
    """Map a failed VirtualBox operation (``what``, e.g. "start the VM") to a ``VBoxError``."""
    detail = first_error_line(output) or f"exit code {rc}"
    for rule in _RULES:
        if any(p in output for p in rule.patterns):
            return VBoxError(
                f"VirtualBox could not {what}: {rule.advice} (VirtualBox said: {detail})",
                temporary=rule.temporary,
                code=rule.code,
                delay=rule.delay,
                output=output,
            )
    if rc == 2:
        return VBoxError(
            f"VBoxManage rejected the command to {what} as a syntax error ({detail}). This VirtualBox "
            "version does not match what the bridge expects: report it to the project.",
            temporary=False,
            code="SYNTAX",
            output=output,
        )
    return VBoxError(
        f"VirtualBox could not {what}: {detail}. The task fails; if this repeats, report the message "
        "to the project.",
        temporary=False,
        code="VBOX_ERROR",
        output=output,
    )


_RETRIED = frozenset({"SESSION_LOCKED", "VBOXSVC_UNREACHABLE"})


def with_retries(
    op: Callable[[], T], *, retries: int, delay: float, what: str, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run ``op``; on a session lock / unreachable VBoxSVC, retry up to ``retries`` times with an
    exponential backoff starting at ``delay`` (capped at 16 s), as vboxwrapper's vbm_popen does."""
    attempt = 0
    while True:
        try:
            return op()
        except VBoxError as e:
            if e.code not in _RETRIED or attempt >= retries:
                if e.code in _RETRIED:
                    e.args = (f"{e.args[0]} [gave up after {attempt + 1} attempts]",)
                raise
            wait = min(delay * (2**attempt), 16.0)
            logger.warning(
                "VirtualBox busy (%s) while trying to %s; retry %d in %.2fs", e.code, what, attempt + 1, wait
            )
            sleep(wait)
            attempt += 1


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_machinereadable(text: str) -> dict[str, str]:
    """Parse ``showvminfo --machinereadable``: ``key="value"`` / ``"key"="value"`` / ``key=value``.
    Later keys win except for repeated snapshot keys (kept as ``key``, ``key#2``...)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" not in line:
            continue
        if line.startswith('"'):
            end = line.find('"=', 1)
            if end < 0:
                continue
            key, raw = line[1:end], line[end + 2 :]
        else:
            key, _, raw = line.partition("=")
        if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        k, n = key, 2
        while k in out:
            k = f"{key}#{n}"
            n += 1
        out[k] = raw
    return out


def parse_colon_fields(text: str) -> dict[str, str]:
    """Parse ``showhdinfo``-style ``Key:   value`` lines (continuation lines are appended)."""
    out: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[:1].isspace() and last:
            out[last] += " " + line.strip()
            continue
        key, sep, val = line.partition(":")
        if sep:
            last = key.strip()
            out[last] = val.strip()
    return out


def parse_list_vms(text: str) -> list[tuple[str, str]]:
    """Parse ``list vms``: ``"name" {uuid}`` lines."""
    out = []
    for m in re.finditer(r'^"(.*)" \{([0-9a-fA-F-]+)\}\s*$', text, re.MULTILINE):
        out.append((m.group(1), m.group(2)))
    return out


def parse_version(text: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)


# ---------------------------------------------------------------------------------------------
# Drivers


class VBoxDriver(Protocol):
    """What the backend needs from VirtualBox. VM arguments are names or UUIDs."""

    name: str

    def manage(self, args: Sequence[str], *, what: str, timeout: float | None = None) -> str:
        """Run one VBoxManage command (configuration); its stdout, or raise ``VBoxError``."""
        ...

    def version(self) -> tuple[int, int, int]: ...
    def vm_info(self, vm: str) -> dict[str, str] | None:
        """``showvminfo --machinereadable`` as a dict, None if no such VM is registered."""
        ...

    def vm_state(self, vm: str) -> str | None:
        """VBoxManage's state word (``running``, ``paused``, ``saved``, ``poweroff``, ``aborted``...)."""
        ...

    def list_vms(self) -> list[tuple[str, str]]: ...
    def get_extradata(self, vm: str, key: str) -> str | None: ...
    def start(self, vm: str, *, headless: bool = True) -> None: ...
    def control(self, vm: str, action: str) -> None:
        """``pause``, ``resume``, ``savestate`` or ``poweroff``."""
        ...


#: Runs ``argv`` with a timeout and environment; returns (exit code, stdout, stderr). Raises
#: FileNotFoundError / PermissionError / subprocess.TimeoutExpired like ``subprocess.run``.
Runner = Callable[[list[str], float, "dict[str, str] | None"], tuple[int, str, str]]


def _subprocess_runner(argv: list[str], timeout: float, env: dict[str, str] | None) -> tuple[int, str, str]:
    """The production runner: a child process, killed and reaped on timeout by subprocess.run."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False
    )
    return proc.returncode, proc.stdout, proc.stderr


class VBoxManageDriver:
    """VirtualBox through the ``VBoxManage`` executable."""

    name = "vboxmanage"

    def __init__(
        self,
        executable: str = "VBoxManage",
        *,
        timeout: float = 60.0,
        start_timeout: float = 300.0,
        retries: int = 5,
        retry_delay: float = 1.0,
        env: dict[str, str] | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.executable = executable
        self.runner = runner or _subprocess_runner
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.env = env
        self._version: tuple[int, int, int] | None = None

    def _run_once(self, args: Sequence[str], what: str, timeout: float) -> str:
        argv = [self.executable, "-q", *args]
        logger.debug("VBoxManage %s", " ".join(args))
        try:
            rc, stdout, stderr = self.runner(argv, timeout, self.env)
        except FileNotFoundError as e:
            raise VBoxError(
                f"VirtualBox could not {what}: VirtualBox is not installed or '{self.executable}' is not "
                "on PATH. Install VirtualBox 7 (https://www.virtualbox.org/wiki/Downloads) and restart "
                "BOINC; BOINC will retry the task in a day.",
                temporary=True,
                code="VBOXMANAGE_MISSING",
                delay=86400,
                output=str(e),
            ) from e
        except PermissionError as e:
            raise VBoxError(
                f"VirtualBox could not {what}: '{self.executable}' cannot be executed by the BOINC user "
                "(on Linux, add the 'boinc' user to the 'vboxusers' group). BOINC will retry later.",
                temporary=True,
                code="VBOXMANAGE_DENIED",
                delay=86400,
                output=str(e),
            ) from e
        except subprocess.TimeoutExpired as e:  # subprocess.run killed and reaped the child
            raise VBoxError(
                f"VirtualBox could not {what}: VBoxManage did not answer within {timeout:.0f} s "
                "(VirtualBox may be overloaded or hung). BOINC will retry the task later.",
                temporary=True,
                code="TIMEOUT",
                delay=600,
                output=str(e),
            ) from e
        if rc != 0:
            output = (stderr or "") + (stdout or "")
            logger.info("VBoxManage %s failed (exit %d): %s", " ".join(args), rc, output.strip())
            raise classify(output, what=what, rc=rc)
        return stdout

    def manage(self, args: Sequence[str], *, what: str, timeout: float | None = None) -> str:
        t = self.timeout if timeout is None else timeout
        return with_retries(
            lambda: self._run_once(args, what, t), retries=self.retries, delay=self.retry_delay, what=what
        )

    def version(self) -> tuple[int, int, int]:
        if self._version is None:
            self._version = parse_version(self._run_once(["--version"], "report its version", self.timeout))
        return self._version

    def vm_info(self, vm: str) -> dict[str, str] | None:
        try:
            out = self.manage(["showvminfo", vm, "--machinereadable"], what="read the VM's state")
        except VBoxError as e:
            if "VBOX_E_OBJECT_NOT_FOUND" in e.output:
                return None
            raise
        return parse_machinereadable(out)

    def vm_state(self, vm: str) -> str | None:
        info = self.vm_info(vm)
        return None if info is None else info.get("VMState", "")

    def list_vms(self) -> list[tuple[str, str]]:
        return parse_list_vms(self.manage(["list", "vms"], what="list the VMs"))

    def get_extradata(self, vm: str, key: str) -> str | None:
        out = self.manage(["getextradata", vm, key], what="read the VM's extra data")
        line = out.strip()
        return line[len("Value: ") :] if line.startswith("Value: ") else None

    def start(self, vm: str, *, headless: bool = True) -> None:
        self.manage(["startvm", vm, "--type", "headless" if headless else "gui"], what="start the VM",
                    timeout=self.start_timeout)  # fmt: skip

    def control(self, vm: str, action: str) -> None:
        words = {"pause": "pause the VM", "resume": "resume the VM", "savestate": "save the VM's state",
                 "poweroff": "power off the VM"}  # fmt: skip
        self.manage(["controlvm", vm, action], what=words.get(action, action), timeout=self.start_timeout)


# VirtualBox API MachineState values (VirtualBox 6.1 / 7.0 xidl) -> VBoxManage's words.
_MACHINE_STATES = {
    0: "null", 1: "poweroff", 2: "saved", 3: "teleported", 4: "aborted", 5: "running", 6: "paused",
    7: "gurumeditation", 8: "teleporting", 9: "livesnapshotting", 10: "starting", 11: "stopping",
    12: "saving", 13: "restoring", 14: "teleportingpausedvm", 15: "teleportingin",
    16: "deletingsnapshotlive", 17: "deletingsnapshotlivepaused", 18: "onlinesnapshotting",
    19: "restoringsnapshot", 20: "deletingsnapshot", 21: "settingup", 22: "snapshotting",
}  # fmt: skip


class PyvboxDriver:
    """Control and queries through pyvbox (``virtualbox`` module); configuration through VBoxManage.

    ``module`` is the imported ``virtualbox`` package (tests pass a fake with the same surface)."""

    name = "pyvbox"

    def __init__(self, module: ModuleType | Any, manage_driver: VBoxManageDriver) -> None:
        self.module = module
        self.vbm = manage_driver
        self.vbox = module.VirtualBox()
        self.wait_ms = int(manage_driver.start_timeout * 1000)

    def manage(self, args: Sequence[str], *, what: str, timeout: float | None = None) -> str:
        return self.vbm.manage(args, what=what, timeout=timeout)

    def version(self) -> tuple[int, int, int]:
        return parse_version(str(getattr(self.vbox, "version", "")))

    def _api_error(self, exc: Exception, what: str) -> VBoxError:
        name = getattr(exc, "name", type(exc).__name__)
        value = getattr(exc, "value", 0) or 0
        msg = getattr(exc, "msg", None) or str(exc)
        return classify(f"{msg}\nDetails: code {name} (0x{int(value) & 0xFFFFFFFF:08x})", what=what)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        def op() -> T:
            try:
                return fn()
            except self.module.library.VBoxError as e:
                raise self._api_error(e, what) from e

        return with_retries(op, retries=self.vbm.retries, delay=self.vbm.retry_delay, what=what)

    def _machine(self, vm: str) -> Any:
        return self.vbox.find_machine(vm)

    def vm_info(self, vm: str) -> dict[str, str] | None:
        return self.vbm.vm_info(vm)

    def vm_state(self, vm: str) -> str | None:
        try:
            m = self._call("read the VM's state", lambda: self._machine(vm))
        except VBoxError as e:
            if e.code == "VM_NOT_REGISTERED" or "VBOX_E_OBJECT_NOT_FOUND" in e.output:
                return None
            raise
        return _MACHINE_STATES.get(int(m.state), f"state{int(m.state)}")

    def list_vms(self) -> list[tuple[str, str]]:
        return self._call("list the VMs", lambda: [(m.name, str(m.id_p)) for m in self.vbox.machines])

    def get_extradata(self, vm: str, key: str) -> str | None:
        value = self._call("read the VM's extra data", lambda: self._machine(vm).get_extra_data(key))
        return value or None

    def _wait(self, progress: Any, what: str) -> None:
        progress.wait_for_completion(self.wait_ms)
        if not progress.completed:
            raise VBoxError(
                f"VirtualBox could not {what}: it did not finish within {self.wait_ms // 1000} s. "
                "BOINC will retry the task later.", temporary=True, code="TIMEOUT", delay=600,
            )  # fmt: skip
        if int(progress.result_code) != 0:
            info = progress.error_info
            text = getattr(info, "text", "") if info is not None else ""
            raise classify(f"{text}\nresult code 0x{int(progress.result_code) & 0xFFFFFFFF:08x}", what=what)

    def start(self, vm: str, *, headless: bool = True) -> None:
        what = "start the VM"

        def op() -> None:
            session = self.module.Session()
            progress = self._machine(vm).launch_vm_process(session, "headless" if headless else "gui", [])
            try:
                self._wait(progress, what)
            finally:
                session.unlock_machine()

        self._call(what, op)

    def control(self, vm: str, action: str) -> None:
        what = {"pause": "pause the VM", "resume": "resume the VM", "savestate": "save the VM's state",
                "poweroff": "power off the VM"}[action]  # fmt: skip

        def op() -> None:
            session = self.module.Session()
            self._machine(vm).lock_machine(session, self.module.library.LockType.shared)
            try:
                if action == "pause":
                    session.console.pause()
                elif action == "resume":
                    session.console.resume()
                elif action == "savestate":
                    self._wait(session.machine.save_state(), what)
                else:
                    self._wait(session.console.power_down(), what)
            finally:
                session.unlock_machine()

        self._call(what, op)


def select_driver(
    preference: str = "auto",
    *,
    executable: str = "VBoxManage",
    module: ModuleType | Any | None = None,
    **vbm_options: Any,
) -> VBoxDriver:
    """The driver to use. ``preference``: ``auto`` (pyvbox when ``virtualbox.VirtualBox()`` works,
    else VBoxManage), ``vboxmanage`` or ``pyvbox`` (raises ``VBoxError`` if pyvbox is unusable).
    ``module``: a ``virtualbox``-compatible module to use instead of importing one."""
    vbm = VBoxManageDriver(executable, **vbm_options)
    if preference == "vboxmanage":
        return vbm
    if preference not in ("auto", "pyvbox"):
        raise ValueError(f"unknown VirtualBox driver {preference!r} (auto, vboxmanage, pyvbox)")
    try:
        if module is None:
            import virtualbox as module  # type: ignore[import-not-found, no-redef]
        driver = PyvboxDriver(module, vbm)
    except Exception as e:  # ImportError, vboxapi missing, VBoxSVC unreachable: all mean "not usable"
        if preference == "pyvbox":
            raise VBoxError(
                f"The pyvbox driver was asked for but cannot be used ({type(e).__name__}: {e}). Install "
                "VirtualBox's SDK bindings (vboxapi) and pyvbox, or use the VBoxManage driver.",
                temporary=False,
                code="PYVBOX_UNUSABLE",
            ) from e
        logger.info("pyvbox not usable (%s: %s); using VBoxManage", type(e).__name__, e)
        return vbm
    logger.info("VirtualBox driver: pyvbox (control) + VBoxManage (configuration)")
    return driver
