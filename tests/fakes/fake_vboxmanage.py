"""THIS IS A FAKE of VirtualBox's ``VBoxManage`` command line tool, for tests only.

VirtualBox cannot be installed on the development machine (no Debian candidate, no usable VT-x), so
the VirtualBox backend is tested against this fake. It was written from VirtualBox's documented
behaviour (https://www.virtualbox.org/manual/ch08.html, "VBoxManage"), from the error texts that
real VBoxManage 6.x/7.x prints (as quoted in BOINC's vboxwrapper sources and public bug reports), and
from vboxwrapper's own comments about VirtualBox's behaviour (multi-attach disks, session locks).
It is NOT VirtualBox: it runs no guest, it keeps a state machine in a JSON file. Where its behaviour
is inferred rather than documented, the code says so ("inferred").

What it models (state file = ``$FAKE_VBOX_STATE``, a JSON file guarded by an flock):
  * registered VMs: name, UUID, state (poweroff / running / paused / saved / aborted), settings
    (ostype, memory, cpus, NIC, NAT port forwards, VRDE, ...), extradata, storage controllers and
    attachments, shared folders, snapshots; a settings file ``<basefolder>/<name>/<name>.vbox`` is
    written on ``createvm`` and deleted by ``unregistervm --delete``;
  * the media registry: base images (``normal`` / ``multiattach``) and the differencing images that
    VirtualBox creates automatically when a multi-attach image is attached to a VM (written into the
    VM's ``Snapshots`` folder, deleted with the VM);
  * what the real tool rejects, with exit code 1 and real-looking ``VBoxManage: error:`` text:
    modifyvm / storagectl / storageattach / sharedfolder add while the VM runs ("is already locked
    for a session (or being unlocked)"), controlvm on a VM that is not running ("is not currently
    running"), pause when paused, resume when running, startvm when running ("already locked by a
    session"), unregistervm while running ("while it is locked"), unknown VM names
    (VBOX_E_OBJECT_NOT_FOUND), missing medium files (VBOX_E_FILE_ERROR), closing a medium that is
    attached or has children (VBOX_E_OBJECT_IN_USE), a multi-attach type set on an image that was
    never attached to a VM (inferred from vboxwrapper: "can't be registered and set to multiattach
    mode within 1 step"), unknown options (syntax error, exit code 2).

Test switches (environment):
  * ``FAKE_VBOX_STATE``: the JSON state file (required).
  * ``FAKE_VBOX_LOG``: append each invocation's argv as one JSON line (commands in order).
  * ``FAKE_VBOX_FAIL``: comma-separated ``command[.action]:ERROR[:count]`` injections, e.g.
    ``startvm:VERR_VMX_NO_VMX`` or ``controlvm.pause:LOCKED:2`` (the first 2 calls fail). ERROR is a
    key of ``INJECTIONS`` (VirtualBox status names plus LOCKED, NO_VBOXSVC, VBOXDRV, HANG, ...).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STATE_ENV = "FAKE_VBOX_STATE"
LOG_ENV = "FAKE_VBOX_LOG"
FAIL_ENV = "FAKE_VBOX_FAIL"
VERSION = "7.0.14r161095"

ONLINE = ("running", "paused")
OSTYPES = {
    "Other",
    "Other_64",
    "Linux",
    "Linux_64",
    "Linux26",
    "Linux26_64",
    "Debian",
    "Debian_64",
    "Ubuntu",
    "Ubuntu_64",
    "Fedora",
    "Fedora_64",
    "RedHat",
    "RedHat_64",
    "ArchLinux_64",
    "Oracle_64",
    "OpenSUSE_64",
    "Gentoo_64",
    "Windows10_64",
    "Windows11_64",
}
CONTROLLER_TYPES = {"ide", "sata", "scsi", "floppy", "sas", "usb", "pcie", "virtio"}
CONTROLLER_MODELS = {
    "lsilogic",
    "lsilogicsas",
    "buslogic",
    "intelahci",
    "piix3",
    "piix4",
    "ich6",
    "i82078",
    "usb",
    "nvme",
    "virtio",
}


class FakeVBoxError(Exception):
    """A failed fake command: what goes to stderr and the exit code."""

    def __init__(self, stderr: str, rc: int = 1, stdout: str = "") -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.rc = rc
        self.stdout = stdout


def com_error(
    msg: str, code: str, hresult: int, component: str, interface: str, context: str = ""
) -> FakeVBoxError:
    """The shape of a real VBoxManage COM error: message lines, then Details and Context lines."""
    lines = [f"VBoxManage: error: {line}" for line in msg.splitlines()]
    lines.append(
        f"VBoxManage: error: Details: code {code} (0x{hresult:08x}), component {component}, "
        f"interface {interface}, callee nsISupports"
    )
    if context:
        lines.append(f'VBoxManage: error: Context: "{context}" at line 1 of file VBoxManage.cpp')
    return FakeVBoxError("\n".join(lines) + "\n")


def syntax_error(msg: str) -> FakeVBoxError:
    return FakeVBoxError(f"VBoxManage: error: {msg}\n", rc=2)


def err_not_found(name: str) -> FakeVBoxError:
    return com_error(
        f"Could not find a registered machine named '{name}'",
        "VBOX_E_OBJECT_NOT_FOUND",
        0x80BB0001,
        "VirtualBoxWrap",
        "IVirtualBox",
        "FindMachine(Bstr(a->argv[0]).raw(), machine.asOutParam())",
    )


def err_locked(name: str) -> FakeVBoxError:
    return com_error(
        f"The machine '{name}' is already locked for a session (or being unlocked)",
        "VBOX_E_INVALID_OBJECT_STATE",
        0x80BB0007,
        "MachineWrap",
        "IMachine",
        "LockMachine(a->session, LockType_Write)",
    )


def err_locked_launch(name: str) -> FakeVBoxError:
    return com_error(
        f"The machine '{name}' is already locked by a session (or being locked or unlocked)",
        "VBOX_E_INVALID_OBJECT_STATE",
        0x80BB0007,
        "MachineWrap",
        "IMachine",
        "LaunchVMProcess(a->session, sessionType.raw(), ComSafeArrayAsInParam(aBstrEnv), "
        "progress.asOutParam())",
    )


def err_not_running(name: str) -> FakeVBoxError:
    return FakeVBoxError(f"VBoxManage: error: Machine '{name}' is not currently running\n")


def err_vm_state(msg: str) -> FakeVBoxError:
    return com_error(msg, "VBOX_E_INVALID_VM_STATE", 0x80BB0002, "ConsoleWrap", "IConsole")


def err_file(path: str) -> FakeVBoxError:
    return com_error(
        f"Could not find file for the medium '{path}' (VERR_FILE_NOT_FOUND)",
        "VBOX_E_FILE_ERROR",
        0x80BB0004,
        "MediumWrap",
        "IMedium",
        "OpenMedium(Bstr(pszFilenameOrUuid).raw(), enmDevType, enmAccessMode, fForceNewUuidOnOpen, "
        "pMedium.asOutParam())",
    )


def err_in_use(msg: str) -> FakeVBoxError:
    return com_error(msg, "VBOX_E_OBJECT_IN_USE", 0x80BB000C, "MediumWrap", "IMedium", "Close()")


def _startvm_failure(detail: str, code: str = "NS_ERROR_FAILURE", hresult: int = 0x80004005):
    def make(name: str) -> FakeVBoxError:
        e = com_error(detail, code, hresult, "ConsoleWrap", "IConsole")
        e.stdout = f'Waiting for VM "{name}" to power on...\n'
        return e

    return make


#: Injectable failures: name -> factory(vm name) -> error. Texts as printed by real VBoxManage.
INJECTIONS: dict[str, Callable[[str], FakeVBoxError]] = {
    "VERR_VMX_NO_VMX": _startvm_failure("VT-x is not available (VERR_VMX_NO_VMX)"),
    "VERR_SVM_NO_SVM": _startvm_failure("AMD-V is not available (VERR_SVM_NO_SVM)"),
    "VERR_VMX_MSR_ALL_VMX_DISABLED": _startvm_failure(
        "VT-x is disabled in the BIOS for all CPU modes (VERR_VMX_MSR_ALL_VMX_DISABLED)"
    ),
    "VERR_SVM_DISABLED": _startvm_failure(
        "AMD-V is disabled in the BIOS (or by the host OS) (VERR_SVM_DISABLED)"
    ),
    "VERR_VMX_IN_VMX_ROOT_MODE": _startvm_failure(
        "VT-x is being used by another hypervisor (VERR_VMX_IN_VMX_ROOT_MODE).\n"
        "VirtualBox can't operate in VMX root mode. Please disable the KVM kernel extension, "
        "recompile your kernel and reboot"
    ),
    "VERR_SVM_IN_USE": _startvm_failure(
        "AMD-V is being used by another hypervisor (VERR_SVM_IN_USE).\n"
        "VirtualBox can't enable the AMD-V extension. Please disable the KVM kernel extension, "
        "recompile your kernel and reboot"
    ),
    "VERR_NO_MEMORY": _startvm_failure("Failed to allocate memory for the guest (VERR_NO_MEMORY)."),
    "VERR_EM_NO_MEMORY": _startvm_failure(
        "Unable to allocate and lock memory. The virtual machine will be paused. "
        "Please close applications to free up memory or close the VM (VERR_EM_NO_MEMORY)"
    ),
    "VBOXDRV": _startvm_failure(
        "The virtual machine '{name}' has terminated unexpectedly during startup with exit code 1 (0x1)."
        "\nKernel driver not installed (rc=-1908)\n\nThe VirtualBox Linux kernel driver is either not "
        "loaded or not set up correctly. Please reinstall virtualbox-dkms package and load the kernel "
        "module by executing\n\n'modprobe vboxdrv'"
    ),
    "LOCKED": err_locked,
    "NO_VBOXSVC": lambda name: FakeVBoxError(
        "VBoxManage: error: Failed to create the VirtualBox object!\n"
        "VBoxManage: error: Code NS_ERROR_ABORT (0x80004004) - Operation aborted "
        "(extended info not available)\n"
        "VBoxManage: error: Most likely, the VirtualBox COM server is not running or failed to start.\n"
    ),
    "CO_E_SERVER_EXEC_FAILURE": lambda name: com_error(
        "Failed to create the VirtualBox object!",
        "CO_E_SERVER_EXEC_FAILURE",
        0x80080005,
        "VirtualBoxClientWrap",
        "IVirtualBoxClient",
    ),
    "VBOX_E_FILE_ERROR": lambda name: err_file("/nonexistent/image.vdi"),
    "E_FAIL": lambda name: com_error(
        "Internal error in the fake: an unspecified failure", "E_FAIL", 0x80004005, "MachineWrap", "IMachine"
    ),
    "HANG": lambda name: FakeVBoxError("", rc=0),  # handled specially: sleeps (the caller's timeout)
}


# ---------------------------------------------------------------------------------------------
# State


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


class FakeVBox:
    """The fake's state machine over one JSON file. Use ``with FakeVBox.open(path) as vb:``."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.data.setdefault("vms", {})
        self.data.setdefault("media", {})
        self.data.setdefault("injected", {})

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | os.PathLike[str]) -> Iterator[FakeVBox]:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(str(p) + ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(p.read_text()) if p.exists() and p.stat().st_size else {}
                vb = cls(p, data)
                yield vb
                tmp = p.with_suffix(".tmp")
                tmp.write_text(json.dumps(vb.data, indent=1, sort_keys=True))
                os.replace(tmp, p)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- lookups --
    def find_vm(self, ident: str) -> dict[str, Any]:
        vms = self.data["vms"]
        if ident in vms:
            return vms[ident]
        for vm in vms.values():
            if vm["name"] == ident:
                return vm
        raise err_not_found(ident)

    def find_medium(self, ident: str) -> dict[str, Any] | None:
        media = self.data["media"]
        if ident in media:
            return media[ident]
        loc = os.path.abspath(ident)
        for m in media.values():
            if m["location"] == loc:
                return m
        return None

    def open_medium(self, ident: str) -> dict[str, Any]:
        """Look a medium up, registering an existing image file on first use (as VirtualBox does)."""
        m = self.find_medium(ident)
        if m is not None:
            return m
        loc = os.path.abspath(ident)
        if not os.path.isfile(loc):
            raise err_file(loc)
        m = {
            "uuid": _new_uuid(),
            "location": loc,
            "type": "normal",
            "parent": None,
            "machine_registry": False,
        }
        self.data["media"][m["uuid"]] = m
        return m

    def children(self, m: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in self.data["media"].values() if c["parent"] == m["uuid"]]

    def users(self, m: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for vm in self.data["vms"].values():
            for ctl in vm["controllers"].values():
                if any(a["medium"] == m["uuid"] for a in ctl["attachments"].values()):
                    out.append(vm)
        return out

    # -- helpers used by tests and by the fake pyvbox --
    def set_state(self, ident: str, state: str) -> None:
        """Test hook: the guest powered itself off / the VM process crashed ("aborted")."""
        self.find_vm(ident)["state"] = state

    def require_unlocked(self, vm: dict[str, Any]) -> None:
        if vm["state"] in ONLINE:
            raise err_locked(vm["name"])

    # -- VM lifecycle (shared by the CLI and the fake pyvbox) --
    def start(self, vm: dict[str, Any]) -> None:
        if vm["state"] in ONLINE:
            raise err_locked_launch(vm["name"])
        for ctl in vm["controllers"].values():
            for a in ctl["attachments"].values():
                m = self.data["media"].get(a["medium"])
                if m is None or not os.path.isfile(m["location"]):
                    raise _startvm_failure(
                        f"Could not open the medium '{m['location'] if m else a['medium']}'.\n"
                        "VD: error VERR_FILE_NOT_FOUND opening image file (VERR_FILE_NOT_FOUND)",
                        "VBOX_E_FILE_ERROR",
                        0x80BB0004,
                    )(vm["name"])
        vm["state"] = "running"

    def control(self, vm: dict[str, Any], action: str) -> None:
        state = vm["state"]
        if state not in ONLINE:
            raise err_not_running(vm["name"])
        label = {"running": "Running", "paused": "Paused"}[state]
        if action == "pause":
            if state != "running":
                raise err_vm_state(f"Cannot pause the machine as it is not running (machine state: {label})")
            vm["state"] = "paused"
        elif action == "resume":
            if state != "paused":
                raise err_vm_state(f"Cannot resume the machine as it is not paused (machine state: {label})")
            vm["state"] = "running"
        elif action == "savestate":
            vm["state"] = "saved"
        elif action in ("poweroff", "acpipowerbutton"):
            vm["state"] = "poweroff"
        else:
            raise syntax_error(f"Invalid parameter '{action}'")

    def take_snapshot(self, vm: dict[str, Any], name: str) -> str:
        snap = {"name": name, "uuid": _new_uuid(), "online": vm["state"] in ONLINE or vm["state"] == "saved"}
        vm["snapshots"].append(snap)
        vm["current_snapshot"] = snap["uuid"]
        return snap["uuid"]

    def restore_snapshot(self, vm: dict[str, Any], ident: str | None) -> None:
        if vm["state"] in ONLINE:
            label = vm["state"].capitalize()
            raise com_error(
                f"Cannot delete the current state of the running machine (machine state: {label})",
                "VBOX_E_INVALID_VM_STATE",
                0x80BB0002,
                "SessionMachine",
                "IMachine",
            )
        ident = ident or vm.get("current_snapshot")
        snap = next((s for s in vm["snapshots"] if ident in (s["name"], s["uuid"])), None)
        if snap is None:
            raise com_error(
                f"Could not find a snapshot named '{ident}'",
                "VBOX_E_OBJECT_NOT_FOUND",
                0x80BB0001,
                "MachineWrap",
                "IMachine",
            )
        vm["current_snapshot"] = snap["uuid"]
        vm["state"] = "saved" if snap["online"] else "poweroff"

    def unregister(self, vm: dict[str, Any], delete: bool) -> None:
        if vm["state"] in ONLINE:
            raise com_error(
                f"Cannot unregister the machine '{vm['name']}' while it is locked",
                "VBOX_E_INVALID_OBJECT_STATE",
                0x80BB0007,
                "MachineWrap",
                "IMachine",
                "Unregister(CleanupMode_DetachAllReturnHardDisksOnly, ComSafeArrayAsOutParam(aMedia))",
            )
        media = self.data["media"]
        for ctl in vm["controllers"].values():
            for a in ctl["attachments"].values():
                m = media.get(a["medium"])
                if m is None:
                    continue
                # A differencing image created for this VM belongs to it; a plain (normal) image
                # attached only here is returned by Unregister and deleted with --delete; a
                # multi-attach parent is shared and stays.
                if delete and (m["parent"] is not None or m["type"] == "normal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(m["location"])
                    del media[m["uuid"]]
            ctl["attachments"] = {}
        if delete:
            vmdir = Path(vm["cfgfile"]).parent
            for sub in ("Logs", "Snapshots"):
                d = vmdir / sub
                if d.is_dir():
                    for f in d.iterdir():
                        f.unlink()
                    d.rmdir()
            for f in (Path(vm["cfgfile"]), Path(vm["cfgfile"] + "-prev")):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
            with contextlib.suppress(OSError):
                vmdir.rmdir()
        del self.data["vms"][vm["uuid"]]


# ---------------------------------------------------------------------------------------------
# Command line


class Args:
    """Minimal option walker: VBoxManage options are ``--opt value`` (or ``--opt=value``) pairs."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = list(argv)

    def take(self) -> str:
        if not self.argv:
            raise syntax_error("Missing argument")
        return self.argv.pop(0)

    def options(self, with_value: set[str], flags: set[str] = frozenset()) -> dict[str, str]:  # type: ignore[assignment]
        out: dict[str, str] = {}
        while self.argv:
            a = self.argv.pop(0)
            key, eq, val = a.partition("=")
            if key in flags and not eq:
                out[key] = ""
            elif key in with_value:
                out[key] = val if eq else self.take()
            else:
                raise syntax_error(f"Unknown option: {a}")
        return out


def _q(v: object) -> str:
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _machinereadable(vb: FakeVBox, vm: dict[str, Any]) -> str:
    lines = [
        f"name={_q(vm['name'])}",
        f"ostype={_q(vm['ostype'])}",
        f"UUID={_q(vm['uuid'])}",
        f"CfgFile={_q(vm['cfgfile'])}",
        f"memory={vm['memory']}",
        f"cpus={vm['cpus']}",
        f"VMState={_q(vm['state'])}",
        f"VMStateChangeTime={_q(vm['state_time'])}",
        f"description={_q(vm['description'])}",
        f"nic1={_q(vm['nic1'])}",
        f"cableconnected1={_q(vm['cableconnected1'])}",
        f"vrde={_q(vm['vrde'])}",
    ]
    if vm["vrde"] == "on":
        lines.append(f"vrdeport={vm['vrdeport']}")
    for i, rule in enumerate(vm["natpf1"]):
        lines.append(f"Forwarding({i})={_q(rule)}")
    for i, (cname, ctl) in enumerate(vm["controllers"].items()):
        lines += [
            f"storagecontrollername{i}={_q(cname)}",
            f"storagecontrollertype{i}={_q(ctl['controller'])}",
            f"storagecontrollerportcount{i}={ctl['portcount']}",
        ]
        for pd, a in sorted(ctl["attachments"].items()):
            m = vb.data["media"].get(a["medium"], {})
            lines.append(f'"{cname}-{pd}"={_q(m.get("location", "none"))}')
            lines.append(f'"{cname}-ImageUUID-{pd}"={_q(a["medium"])}')
    for i, (sname, sf) in enumerate(vm["sharedfolders"].items(), start=1):
        lines.append(f"SharedFolderNameMachineMapping{i}={_q(sname)}")
        lines.append(f"SharedFolderPathMachineMapping{i}={_q(sf['hostpath'])}")
    for s in vm["snapshots"]:
        lines.append(f"SnapshotName={_q(s['name'])}")
        lines.append(f"SnapshotUUID={_q(s['uuid'])}")
    if vm.get("current_snapshot"):
        cur = next(s for s in vm["snapshots"] if s["uuid"] == vm["current_snapshot"])
        lines.append(f"CurrentSnapshotName={_q(cur['name'])}")
        lines.append(f"CurrentSnapshotUUID={_q(cur['uuid'])}")
    return "\n".join(lines) + "\n"


MODIFYVM_VALUE_OPTS = {
    "--memory",
    "--cpus",
    "--ostype",
    "--description",
    "--acpi",
    "--ioapic",
    "--boot1",
    "--boot2",
    "--boot3",
    "--boot4",
    "--nic1",
    "--cableconnected1",
    "--cable-connected1",
    "--natdnsproxy1",
    "--nat-dns-proxy1",
    "--natpf1",
    "--nat-pf1",
    "--usb",
    "--uart1",
    "--uart2",
    "--lpt1",
    "--lpt2",
    "--audio",
    "--audio-enabled",
    "--clipboard",
    "--clipboard-mode",
    "--draganddrop",
    "--drag-and-drop",
    "--hwvirtex",
    "--vrde",
    "--vrdeport",
    "--vrde-port",
    "--vrdeextpack",
    "--vrde-extpack",
    "--vrdeauthlibrary",
    "--vrde-auth-library",
    "--vrdeauthtype",
    "--vrde-auth-type",
    "--vrde-property",
    "--graphicscontroller",
    "--vram",
    "--rtcuseutc",
    "--paravirtprovider",
    "--pae",
    "--longmode",
    "--nested-hw-virt",
}
ONOFF = {"on", "off"}


def _modifyvm(vb: FakeVBox, vm: dict[str, Any], opts: dict[str, str]) -> None:
    for k, v in opts.items():
        numeric = k in ("--memory", "--cpus", "--vram", "--vrdeport", "--vrde-port")
        if numeric and (not v.isdigit() or int(v) <= 0):
            raise syntax_error(f"Invalid {k} value: '{v}'")
        if k == "--memory":
            vm["memory"] = int(v)
        elif k == "--cpus":
            vm["cpus"] = int(v)
        elif k == "--ostype":
            if v not in OSTYPES:
                raise com_error(
                    f"Guest OS type '{v}' is invalid", "E_INVALIDARG", 0x80070057, "MachineWrap", "IMachine"
                )
            vm["ostype"] = v
        elif k == "--description":
            vm["description"] = v
        elif k == "--nic1":
            if v not in ("none", "null", "nat", "bridged", "intnet", "hostonly", "natnetwork", "generic"):
                raise syntax_error(f"Invalid type '{v}' specfied for NIC 1")
            vm["nic1"] = v
        elif k in ("--cableconnected1", "--cable-connected1"):
            if v not in ONOFF:
                raise syntax_error(f"Invalid {k} argument '{v}'")
            vm["cableconnected1"] = v
        elif k in ("--natpf1", "--nat-pf1"):
            if vm["nic1"] != "nat":
                raise com_error(
                    "The NAT engine is not available: NIC 1 is not attached to NAT",
                    "E_INVALIDARG",
                    0x80070057,
                    "NATEngineWrap",
                    "INATEngine",
                )
            if v.startswith("delete "):
                name = v[len("delete ") :]
                vm["natpf1"] = [r for r in vm["natpf1"] if r.split(",")[0] != name]
                continue
            parts = v.split(",")
            if (
                len(parts) != 6
                or parts[1] not in ("tcp", "udp")
                or not parts[3].isdigit()
                or not parts[5].isdigit()
                or not 0 < int(parts[5]) < 65536
            ):
                raise syntax_error(f"Invalid NAT rule: '{v}'")
            if any(r.split(",")[0] == parts[0] for r in vm["natpf1"]):
                raise com_error(
                    f"A NAT rule of this name already exists ('{parts[0]}')",
                    "NS_ERROR_INVALID_ARG",
                    0x80070057,
                    "NATEngineWrap",
                    "INATEngine",
                )
            vm["natpf1"].append(v)
        elif k == "--vrde":
            if v not in ONOFF:
                raise syntax_error(f"Invalid --vrde argument '{v}'")
            vm["vrde"] = v
        elif k in ("--vrdeport", "--vrde-port"):
            vm["vrdeport"] = int(v)
        else:
            vm.setdefault("other", {})[k] = v


def _storageattach(vb: FakeVBox, vm: dict[str, Any], o: dict[str, str]) -> None:
    cname = o.get("--storagectl")
    if cname is None or cname not in vm["controllers"]:
        raise com_error(
            f"Could not find a controller named '{cname}'",
            "VBOX_E_OBJECT_NOT_FOUND",
            0x80BB0001,
            "SessionMachine",
            "IMachine",
            "GetStorageControllerByName",
        )
    ctl = vm["controllers"][cname]
    port, device = o.get("--port", "0"), o.get("--device", "0")
    if not port.isdigit() or int(port) >= ctl["portcount"]:
        raise com_error(
            f"The port {port} is out of range [0..{ctl['portcount'] - 1}]",
            "E_INVALIDARG",
            0x80070057,
            "SessionMachine",
            "IMachine",
        )
    key = f"{port}-{device}"
    medium = o.get("--medium")
    if medium is None:
        raise syntax_error("Missing --medium argument")
    media = vb.data["media"]
    if medium in ("none", "emptydrive"):
        old = ctl["attachments"].pop(key, None)
        if old is not None:
            m = media.get(old["medium"])
            if m is not None and m["parent"] is not None:  # implicit diff goes with the attachment
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(m["location"])
                del media[m["uuid"]]
        return
    if o.get("--type", "hdd") != "hdd":
        raise syntax_error("The fake only models --type hdd")
    m = vb.open_medium(medium)
    if "--setuuid" in o:
        new = o["--setuuid"] or _new_uuid()
        del media[m["uuid"]]
        m["uuid"] = new
        media[new] = m
    mtype = o.get("--mtype")
    if mtype is not None and mtype != m["type"]:
        if mtype not in ("normal", "multiattach", "immutable", "writethrough", "shareable", "readonly"):
            raise syntax_error(f"Invalid medium type '{mtype}'")
        if mtype == "multiattach" and not m["machine_registry"]:
            # inferred from vboxwrapper: an image opened only into the global registry cannot take
            # the MultiAttach type; it must first be attached normally to a VM, then detached.
            raise com_error(
                f"Cannot attach medium '{m['location']}': the media type 'MultiAttach' can only be "
                "attached to machines that were created with VirtualBox 4.0 or later",
                "VBOX_E_INVALID_OBJECT_STATE",
                0x80BB0007,
                "SessionMachine",
                "IMachine",
                "AttachDevice(Bstr(pszCtl).raw(), port, device, DeviceType_HardDisk, pMedium2Mount)",
            )
        if vb.users(m) or vb.children(m):
            raise err_in_use(
                f"Cannot change the type of medium '{m['location']}' because it is attached "
                "to virtual machines or has child media"
            )
        m["type"] = mtype
    if m["parent"] is None and m["type"] == "normal" and vb.users(m):
        raise err_in_use(f"Medium '{m['location']}' is already attached to a virtual machine")
    m["machine_registry"] = True
    attach_uuid = m["uuid"]
    if m["type"] == "multiattach":
        # VirtualBox attaches a multi-attach image indirectly: a fresh differencing image per VM.
        snapdir = Path(vm["cfgfile"]).parent / "Snapshots"
        snapdir.mkdir(parents=True, exist_ok=True)
        child = {"uuid": _new_uuid(), "type": "normal", "parent": m["uuid"], "machine_registry": True}
        child["location"] = str(snapdir / f"{{{child['uuid']}}}.vdi")
        Path(child["location"]).write_bytes(b"fake differencing image\n")
        media[child["uuid"]] = child
        attach_uuid = child["uuid"]
    ctl["attachments"][key] = {"medium": attach_uuid}


def _showhdinfo(vb: FakeVBox, ident: str) -> str:
    m = vb.open_medium(ident)
    users = vb.users(m)
    lines = [
        f"UUID:           {m['uuid']}",
        f"Parent UUID:    {m['parent'] or 'base'}",
        "State:          created",
        f"Type:           {m['type']}",
        f"Location:       {m['location']}",
        "Storage format: VDI",
    ]
    if users:
        lines.append("In use by VMs:  " + ", ".join(f"{u['name']} (UUID: {u['uuid']})" for u in users))
    kids = vb.children(m)
    if kids:
        lines.append("Child UUIDs:    " + "\n                ".join(k["uuid"] for k in kids))
    return "\n".join(lines) + "\n"


def _closemedium(vb: FakeVBox, args: Args) -> None:
    a = args.take()
    kind = "disk"
    if a in ("disk", "dvd", "floppy"):
        kind, a = a, args.take()
    opts = args.options(set(), {"--delete"})
    if kind != "disk":
        raise syntax_error("The fake only models disks")
    m = vb.open_medium(a)
    if vb.users(m):
        raise err_in_use(
            f"Medium '{m['location']}' cannot be closed because it is still attached to "
            f"{len(vb.users(m))} virtual machines"
        )
    if vb.children(m):
        raise err_in_use(
            f"Cannot close medium '{m['location']}' because it has {len(vb.children(m))} child media"
        )
    if "--delete" in opts:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(m["location"])
    del vb.data["media"][m["uuid"]]


def dispatch(vb: FakeVBox, argv: list[str]) -> str:
    args = Args(argv)
    cmd = args.take()
    if cmd == "list":
        what = args.take()
        if what == "vms":
            return "".join(f'"{v["name"]}" {{{v["uuid"]}}}\n' for v in vb.data["vms"].values())
        if what == "runningvms":
            return "".join(
                f'"{v["name"]}" {{{v["uuid"]}}}\n' for v in vb.data["vms"].values() if v["state"] in ONLINE
            )
        if what == "hostinfo":
            return "Host Information:\n\nProcessor count: 2\nMemory size: 4096 MByte\n"
        if what == "extpacks":
            return "Extension Packs: 0\n"
        if what == "hdds":
            return "".join(
                f"UUID: {m['uuid']}\nLocation: {m['location']}\n\n" for m in vb.data["media"].values()
            )
        raise syntax_error(f"Unknown parameter '{what}'")
    if cmd == "createvm":
        o = args.options(
            {"--name", "--basefolder", "--ostype", "--uuid", "--groups", "--default"}, {"--register"}
        )
        name = o.get("--name")
        if not name:
            raise syntax_error("Parameter --name is required")
        ostype = o.get("--ostype", "Other")
        if ostype not in OSTYPES:
            raise com_error(
                f"Guest OS type '{ostype}' is invalid",
                "E_INVALIDARG",
                0x80070057,
                "VirtualBoxWrap",
                "IVirtualBox",
                "CreateMachine",
            )
        base = os.path.abspath(o.get("--basefolder", os.path.expanduser("~/VirtualBox VMs")))
        cfg = os.path.join(base, name, name + ".vbox")
        if os.path.exists(cfg):
            raise com_error(
                f"Machine settings file '{cfg}' already exists",
                "VBOX_E_FILE_ERROR",
                0x80BB0004,
                "MachineWrap",
                "IMachine",
                "CreateMachine",
            )
        if any(v["name"] == name for v in vb.data["vms"].values()) and "--register" in o:
            raise com_error(
                f"A machine named '{name}' already exists",
                "VBOX_E_OBJECT_IN_USE",
                0x80BB000C,
                "VirtualBoxWrap",
                "IVirtualBox",
                "RegisterMachine",
            )
        uid = o.get("--uuid") or _new_uuid()
        os.makedirs(os.path.dirname(cfg), exist_ok=True)
        Path(cfg).write_text(f'<?xml version="1.0"?>\n<!-- FAKE VirtualBox settings for {name} -->\n')
        if "--register" in o:
            vb.data["vms"][uid] = {
                "name": name,
                "uuid": uid,
                "cfgfile": cfg,
                "ostype": ostype,
                "state": "poweroff",
                "state_time": time.strftime("%Y-%m-%dT%H:%M:%S.000000000"),
                "memory": 128,
                "cpus": 1,
                "description": "",
                "nic1": "nat",
                "cableconnected1": "on",
                "natpf1": [],
                "vrde": "off",
                "vrdeport": 0,
                "extradata": {},
                "controllers": {},
                "sharedfolders": {},
                "snapshots": [],
                "current_snapshot": None,
            }
        return (
            f"Virtual machine '{name}' is created{' and registered' if '--register' in o else ''}.\n"
            f"UUID: {uid}\nSettings file: '{cfg}'\n"
        )
    if cmd == "showhdinfo":
        return _showhdinfo(vb, args.take())
    if cmd == "closemedium":
        _closemedium(vb, args)
        return ""
    if cmd == "setextradata":
        target = args.take()
        key = args.take()
        value = args.take() if args.argv else None
        store = (
            vb.data.setdefault("global_extradata", {})
            if target == "global"
            else vb.find_vm(target)["extradata"]
        )
        if value is None or value == "":
            store.pop(key, None)
        else:
            store[key] = value
        return ""
    if cmd == "getextradata":
        target = args.take()
        key = args.take()
        store = vb.data.get("global_extradata", {}) if target == "global" else vb.find_vm(target)["extradata"]
        if key == "enumerate":
            return "".join(f"Key: {k}, Value: {v}\n" for k, v in sorted(store.items()))
        return f"Value: {store[key]}\n" if key in store else "No value set!\n"
    sub = args.take() if cmd == "sharedfolder" else ""  # VBoxManage sharedfolder add|remove <vm> ...
    vm = vb.find_vm(args.take())
    if cmd == "showvminfo":
        o = args.options(set(), {"--machinereadable", "--details", "--log"})
        if "--machinereadable" in o:
            return _machinereadable(vb, vm)
        return (
            f"Name:            {vm['name']}\nUUID:            {vm['uuid']}\nState:           {vm['state']}\n"
        )
    if cmd == "modifyvm":
        opts = args.options(MODIFYVM_VALUE_OPTS)
        vb.require_unlocked(vm)
        _modifyvm(vb, vm, opts)
        return ""
    if cmd == "storagectl":
        o = args.options(
            {
                "--name",
                "--add",
                "--controller",
                "--portcount",
                "--sataportcount",
                "--hostiocache",
                "--bootable",
            },
            {"--remove"},
        )
        vb.require_unlocked(vm)
        name = o.get("--name")
        if not name:
            raise syntax_error("storage controller name not specified")
        if "--remove" in o:
            if name not in vm["controllers"]:
                raise com_error(
                    f"Could not find a storage controller named '{name}'",
                    "VBOX_E_OBJECT_NOT_FOUND",
                    0x80BB0001,
                    "SessionMachine",
                    "IMachine",
                    "RemoveStorageController",
                )
            del vm["controllers"][name]
            return ""
        add = o.get("--add", "").lower()
        model = o.get("--controller", "").lower()
        if add not in CONTROLLER_TYPES or (model and model not in CONTROLLER_MODELS):
            raise syntax_error(
                f"Invalid --add argument '{o.get('--add')}' or --controller '{o.get('--controller')}'"
            )
        if name in vm["controllers"]:
            raise com_error(
                f"Storage controller named '{name}' already exists",
                "VBOX_E_OBJECT_IN_USE",
                0x80BB000C,
                "SessionMachine",
                "IMachine",
                "AddStorageController",
            )
        ports = int(o.get("--portcount", o.get("--sataportcount", "2" if add == "ide" else "1")))
        vm["controllers"][name] = {
            "bus": add,
            "controller": o.get("--controller", ""),
            "portcount": ports,
            "attachments": {},
        }
        return ""
    if cmd == "storageattach":
        o = args.options(
            {
                "--storagectl",
                "--port",
                "--device",
                "--type",
                "--medium",
                "--mtype",
                "--setuuid",
                "--nonrotational",
                "--discard",
            }
        )
        vb.require_unlocked(vm)
        _storageattach(vb, vm, o)
        return ""
    if cmd == "sharedfolder":
        o = args.options(
            {"--name", "--hostpath", "--auto-mount-point"}, {"--automount", "--readonly", "--transient"}
        )
        if "--transient" not in o:
            vb.require_unlocked(vm)
        if sub == "add":
            if not os.path.isdir(o.get("--hostpath", "")):
                raise com_error(
                    f"Shared folder path '{o.get('--hostpath')}' does not exist on the host",
                    "E_INVALIDARG",
                    0x80070057,
                    "SharedFolderWrap",
                    "ISharedFolder",
                )
            if o.get("--name") in vm["sharedfolders"]:
                raise com_error(
                    f"Shared folder named '{o['--name']}' already exists",
                    "VBOX_E_OBJECT_IN_USE",
                    0x80BB000C,
                    "SessionMachine",
                    "IMachine",
                )
            vm["sharedfolders"][o["--name"]] = {
                "hostpath": o["--hostpath"],
                "automount": "--automount" in o,
                "readonly": "--readonly" in o,
            }
        elif sub == "remove":
            if vm["sharedfolders"].pop(o.get("--name", ""), None) is None:
                raise com_error(
                    f"Could not find a shared folder named '{o.get('--name')}'",
                    "VBOX_E_OBJECT_NOT_FOUND",
                    0x80BB0001,
                    "SessionMachine",
                    "IMachine",
                )
        else:
            raise syntax_error(f"Invalid parameter '{sub}'")
        return ""
    if cmd == "startvm":
        o = args.options({"--type"})
        if o.get("--type", "gui") not in ("gui", "headless", "sdl", "separate"):
            raise syntax_error(f"Invalid session type '{o['--type']}'")
        vb.start(vm)
        name = vm["name"]
        return f'Waiting for VM "{name}" to power on...\nVM "{name}" has been successfully started.\n'
    if cmd == "controlvm":
        action = args.take()
        vb.control(vm, action)
        return ""
    if cmd == "snapshot":
        sub = args.take()
        if sub == "take":
            name = args.take()
            args.options({"--description", "--uniquename"}, {"--live"})
            uid = vb.take_snapshot(vm, name)
            return f"Snapshot taken. UUID: {uid}\n"
        if sub == "restorecurrent":
            vb.restore_snapshot(vm, None)
            return ""
        if sub == "restore":
            vb.restore_snapshot(vm, args.take())
            return ""
        if sub == "delete":
            ident = args.take()
            before = len(vm["snapshots"])
            vm["snapshots"] = [s for s in vm["snapshots"] if ident not in (s["name"], s["uuid"])]
            if len(vm["snapshots"]) == before:
                raise com_error(
                    f"Could not find a snapshot named '{ident}'",
                    "VBOX_E_OBJECT_NOT_FOUND",
                    0x80BB0001,
                    "MachineWrap",
                    "IMachine",
                )
            if vm["current_snapshot"] and all(s["uuid"] != vm["current_snapshot"] for s in vm["snapshots"]):
                vm["current_snapshot"] = vm["snapshots"][-1]["uuid"] if vm["snapshots"] else None
            return ""
        if sub == "list":
            if not vm["snapshots"]:
                raise FakeVBoxError("", rc=1, stdout="This machine does not have any snapshots\n")
            cur = vm["current_snapshot"]
            return "".join(
                f"   Name: {s['name']} (UUID: {s['uuid']}){' *' if s['uuid'] == cur else ''}\n"
                for s in vm["snapshots"]
            )
        raise syntax_error(f"Invalid parameter '{sub}'")
    if cmd == "unregistervm":
        o = args.options(set(), {"--delete", "--delete-all"})
        vb.unregister(vm, delete=bool(o))
        return ""
    raise syntax_error(f"Invalid command '{cmd}'")


def _injection(vb: FakeVBox, argv: list[str]) -> tuple[str, str] | None:
    """The injected failure for this call, if any (and count it)."""
    spec = os.environ.get(FAIL_ENV, "")
    if not spec or not argv:
        return None
    keys = {argv[0]}
    name = argv[1] if len(argv) > 1 else ""
    if len(argv) >= 3 and argv[0] in ("controlvm", "snapshot"):
        keys.add(f"{argv[0]}.{argv[2]}")
    elif len(argv) >= 3 and argv[0] == "sharedfolder":
        keys.add(f"sharedfolder.{argv[1]}")
        name = argv[2]
    for token in filter(None, (t.strip() for t in spec.split(","))):
        parts = token.split(":")
        if len(parts) not in (2, 3) or parts[0] not in keys or parts[1] not in INJECTIONS:
            continue
        count = int(parts[2]) if len(parts) == 3 else None
        used = vb.data["injected"].get(token, 0)
        if count is not None and used >= count:
            continue
        vb.data["injected"][token] = used + 1
        return parts[1], name
    return None


def run(argv: list[str]) -> tuple[int, str, str]:
    """Run one fake invocation; returns (exit code, stdout, stderr)."""
    while argv and argv[0] in ("-q", "--nologo"):
        argv = argv[1:]
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(argv) + "\n")
    if argv in (["--version"], ["-v"]):
        return 0, VERSION + "\n", ""
    state = os.environ.get(STATE_ENV)
    if not state:
        return 1, "", f"fake VBoxManage: {STATE_ENV} is not set (this is a test fake)\n"
    inj = None
    try:
        with FakeVBox.open(state) as vb:
            inj = _injection(vb, argv)
            if inj is None:
                out = dispatch(vb, argv)
    except FakeVBoxError as e:
        return e.rc, e.stdout, e.stderr
    if inj is not None:
        kind, name = inj
        if kind == "HANG":
            time.sleep(60)
            return 0, "", ""
        e = INJECTIONS[kind](name)
        return e.rc, e.stdout, e.stderr.replace("{name}", name)
    return 0, out, ""


def main(argv: list[str]) -> int:
    rc, out, err = run(argv)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
