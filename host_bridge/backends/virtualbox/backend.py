"""VirtualBox backend: one task's VM driven through VBoxManage (or pyvbox where usable).

The verbs of ``backends.base`` map to VirtualBox as BOINC's vboxwrapper does (see
docs/virtualbox.md): ``create`` registers a VM named after the task's owner tag, with the job's disk
image attached multi-attach (VirtualBox gives every VM its own differencing image, so the project's
base image is never written), the share as shared folder ``shared``; ``start`` boots it headless;
``pause``/``resume`` are ``controlvm pause/resume``; ``checkpoint`` saves the VM state (or takes a
snapshot); ``restore`` restarts a saved VM; ``poweroff``/``cleanup`` power off, unregister and delete.

Ownership: the VM carries extradata ``boinc/creator`` = ``host_bridge``, ``boinc/owner`` = the
task's owner tag, ``boinc/slot`` = the slot directory and ``boinc/result`` = the result name. A
restarted bridge finds and reuses its own VM; ``collect_orphans`` removes VMs of ours whose slot no
longer holds their task; a VM without our marks is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from host_bridge.backends.base import BackendError, BackendStatus, ConsoleEndpoints, TaskSpec, VMState
from host_bridge.backends.virtualbox.settings import VBoxSettings
from host_bridge.backends.virtualbox.vboxmanage import (
    ONLINE_STATES,
    VBoxDriver,
    VBoxError,
    classify,
    parse_colon_fields,
    select_driver,
)
from host_bridge.share import Share

logger = logging.getLogger(__name__)

__all__ = ["VBoxError", "VBoxSettings", "VirtualBoxBackend", "collect_orphans", "slot_is_stale"]

CREATOR = "host_bridge"
KEY_CREATOR = "boinc/creator"
KEY_OWNER = "boinc/owner"
KEY_SLOT = "boinc/slot"
KEY_RESULT = "boinc/result"
DISK_CTL = "Hard Disk Controller"
SNAPSHOT_PREFIX = "boinc_"
_LOCK_WAIT = 90.0  # seconds, as vboxwrapper's race-mitigation lock


def vm_name_for(tag: str) -> str:
    """The VM name for an owner tag: ``boinc_`` + the tag with unsafe characters replaced
    (long tags are cut and keep a hash, so two tags never share a name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", tag)
    if len(safe) > 80 or safe != tag:
        safe = f"{safe[:80]}_{hashlib.sha256(tag.encode()).hexdigest()[:10]}"
    return "boinc_" + safe


def _read_init_data(slot: Path) -> str | None:
    """The client-written init_data.xml of a slot (bounded read), None if absent."""
    try:
        with open(slot / "init_data.xml", "rb") as f:
            return f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return None


def _xml_field(text: str, tag: str) -> str | None:
    m = re.search(rf"<{tag}>\s*([^<]*?)\s*</{tag}>", text)
    return m.group(1) if m else None


def slot_is_stale(slot: str | os.PathLike[str], result: str) -> bool:
    """A VM's slot no longer holds its task: the slot directory is gone, has no init_data.xml (the
    client empties a slot when its task ends), or its init_data.xml names another result."""
    p = Path(slot)
    if not p.is_dir():
        return True
    data = _read_init_data(p)
    if data is None:
        return True
    current = _xml_field(data, "result_name")
    return current is not None and current != result


@contextlib.contextmanager
def _medium_lock(medium: Path, wait: float = _LOCK_WAIT) -> Iterator[None]:
    """Serialize changes to one shared (multi-attach) image between bridges on this host, as
    vboxwrapper's race-mitigation lock does: a flock on a per-image file in the temp directory."""
    digest = hashlib.md5(str(medium).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"boinc_vbox_lock_{digest}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise VBoxError(
                        f"VirtualBox could not attach '{medium}': another BOINC task held the image lock "
                        f"{path} for more than {wait:.0f} s. BOINC will retry the task later.",
                        temporary=True,
                        code="IMAGE_LOCK_TIMEOUT",
                        delay=600,
                    ) from e
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attachments(info: dict[str, str]) -> list[str]:
    """UUIDs of the media attached to a VM (from showvminfo --machinereadable)."""
    return [v for k, v in info.items() if "-ImageUUID-" in k and v and v != "none"]


def _remove_vm(driver: VBoxDriver, vm: str, *, stop_wait: float = 30.0) -> None:
    """Power off, unregister and delete a VM with its differencing images; close a multi-attach
    parent that no VM uses any more. Best effort after the unregister (each step logged)."""
    info = driver.vm_info(vm)
    if info is None:
        return
    if info.get("VMState", "") in ONLINE_STATES:
        driver.control(vm, "poweroff")
        deadline = time.monotonic() + stop_wait
        while (driver.vm_state(vm) or "") in ONLINE_STATES and time.monotonic() < deadline:
            time.sleep(0.2)
    media: list[tuple[str, str, str]] = []  # (uuid, parent uuid or "base", location)
    for uid in _attachments(info):
        try:
            f = parse_colon_fields(driver.manage(["showhdinfo", uid], what="read a disk's details"))
            media.append((uid, f.get("Parent UUID", "base"), f.get("Location", "")))
        except VBoxError as e:
            logger.warning("cannot read medium %s of VM %s: %s", uid, vm, e)
    parents = {p for _, p, _ in media if p and p != "base"}
    parent_locations: list[str] = []
    for p in parents:
        with contextlib.suppress(VBoxError):
            loc = parse_colon_fields(driver.manage(["showhdinfo", p], what="read a disk's details"))
            parent_locations.append(loc.get("Location", ""))
    locks = [_medium_lock(Path(loc)) for loc in parent_locations if loc]
    with contextlib.ExitStack() as stack:
        for lk in locks:
            stack.enter_context(lk)
        driver.manage(["unregistervm", vm, "--delete"], what="unregister and delete the VM")
        for uid, parent, _ in media:
            if parent == "base":
                continue  # a base image is the project's: never deleted here
            with contextlib.suppress(VBoxError):  # gone with the VM in the normal case
                driver.manage(
                    ["closemedium", "disk", uid, "--delete"], what="delete the VM's differencing disk"
                )
                logger.info("closed leftover differencing disk %s of %s", uid, vm)
        for loc in parent_locations:
            try:
                f = parse_colon_fields(driver.manage(["showhdinfo", loc], what="read a disk's details"))
            except VBoxError:
                continue
            if f.get("Child UUIDs") or f.get("In use by VMs"):
                continue
            try:  # unregister only: the file stays in the project directory
                driver.manage(["closemedium", "disk", loc], what="close the unused base disk")
            except VBoxError as e:
                logger.info("base disk %s stays registered: %s", loc, e)


def collect_orphans(driver: VBoxDriver, *, keep: frozenset[str] = frozenset()) -> list[str]:
    """Remove our stale VMs (see ``slot_is_stale``); returns their names. A VM is ours only if its
    extradata has ``boinc/creator`` = host_bridge and a slot and result; owner tags in ``keep`` and
    every other VM are never touched. Failures are logged, never raised (next start retries)."""
    removed = []
    for name, uid in driver.list_vms():
        try:
            if driver.get_extradata(uid, KEY_CREATOR) != CREATOR:
                continue
            owner = driver.get_extradata(uid, KEY_OWNER)
            slot = driver.get_extradata(uid, KEY_SLOT)
            result = driver.get_extradata(uid, KEY_RESULT)
            if not owner or not slot or not result or owner in keep:
                continue
            if not slot_is_stale(slot, result):
                continue
            logger.info("removing stale VM %s (owner %s, slot %s no longer holds result %s)", name, owner,
                        slot, result)  # fmt: skip
            _remove_vm(driver, uid)
            removed.append(name)
        except VBoxError as e:
            logger.warning("could not check or remove stale VM %s: %s", name, e)
    return removed


class VirtualBoxBackend:
    """One task's VirtualBox VM. See the module docstring and docs/virtualbox.md.

    ``settings``: from the job file and the slot (``VBoxSettings.from_vboxjob``: the slot, project
    directory and result name come from the runtime, which read init_data.xml); ``driver``: ``"auto"``,
    ``"vboxmanage"``, ``"pyvbox"`` or a driver object; ``basefolder``: where VM settings and
    differencing images go (default: the slot directory).
    """

    name = "virtualbox"

    def __init__(
        self,
        settings: VBoxSettings | None = None,
        *,
        driver: str | VBoxDriver = "auto",
        vboxmanage: str = "VBoxManage",
        basefolder: Path | None = None,
        timeout: float = 60.0,
        start_timeout: float = 300.0,
        retries: int = 5,
        retry_delay: float = 1.0,
    ) -> None:
        self.settings = settings or VBoxSettings()
        if isinstance(driver, str):
            driver = select_driver(driver, executable=vboxmanage, timeout=timeout,
                                   start_timeout=start_timeout,
                                   retries=retries, retry_delay=retry_delay)  # fmt: skip
        self.driver: VBoxDriver = driver
        self.slot_dir = (self.settings.slot_dir or Path.cwd()).resolve()
        pd = self.settings.project_dir
        self.project_dir = Path(pd).resolve() if pd else None
        self.result_name = self.settings.result_name or None
        self.basefolder = (basefolder or self.slot_dir).resolve()
        self.task: TaskSpec | None = None
        self.share: Share | None = None  # the runtime's: never closed here
        self.vm: str | None = None
        self.owner_tag = ""
        self.started = False
        self.remote_desktop_port = 0
        self.port_forward_host_port = 0
        self.last_error: VBoxError | None = None
        self._pid: int | None = None
        self._cpu_base = 0.0

    # ------------------------------------------------------------------ helpers
    def _need_vm(self) -> str:
        if self.vm is None:
            raise BackendError("VirtualBox backend: no VM yet (create() was not called)", temporary=False)
        return self.vm

    def _vbm(self, *args: str, what: str) -> str:
        return self.driver.manage(list(args), what=what)

    def _state(self) -> str | None:
        return self.driver.vm_state(self._need_vm())

    def _base_image(self, task: TaskSpec) -> Path:
        s = self.settings
        if s.multiattach_vdi_file:
            p = Path(s.multiattach_vdi_file)
            if not p.is_absolute():
                base = self.project_dir or (Path(task.image).parent if task.image else self.slot_dir)
                p = base / p
        elif task.image:
            p = Path(task.image)
        else:
            raise BackendError(
                "VirtualBox backend: the job names no disk image (vbox_job.xml <multiattach_vdi_file> or "
                "the job's image). Ask the project to fix the job file.", temporary=False,
            )  # fmt: skip
        p = p.resolve()
        if not p.is_file():
            raise VBoxError(
                f"VirtualBox backend: the disk image {p} does not exist (from <multiattach_vdi_file> in "
                "vbox_job.xml or the job's image). The task's files are incomplete; the task fails.",
                temporary=False, code="FILE_ERROR",
            )  # fmt: skip
        return p

    def _is_ours(self, vm: str) -> bool:
        return (
            self.driver.get_extradata(vm, KEY_CREATOR) == CREATOR
            and self.driver.get_extradata(vm, KEY_OWNER) == self.owner_tag
        )

    # ------------------------------------------------------------------ verbs
    def create(self, task: TaskSpec, share: Share) -> None:
        """Create (or find again) the task's VM; ``share`` (the runtime's, for ``task.share``) becomes its
        shared folder ``shared``."""
        self.task = task
        self.share = share
        self.owner_tag = task.owner_tag or f"{self.slot_dir}:{task.name}"
        name = vm_name_for(self.owner_tag)
        s = self.settings
        existing = self.driver.vm_info(name)
        if existing is not None:
            if not self._is_ours(name):
                raise VBoxError(
                    f"VirtualBox already has a VM named '{name}' that this task did not create (no matching "
                    f"'{KEY_OWNER}' extradata). Rename or remove it in VirtualBox Manager; BOINC will retry "
                    "the task later.", temporary=True, code="FOREIGN_VM", delay=3600,
                )  # fmt: skip
            self.vm = name
            state = existing.get("VMState", "")
            self.started = state in ONLINE_STATES
            logger.info("reusing our VM %s (state %s)", name, state)
            return
        image = self._base_image(task)
        memory = s.memory_size_mb or task.memory_mb or 512
        cpus = s.cpus or max(1, task.nthreads)
        self._vbm("createvm", "--name", name, "--basefolder", str(self.basefolder), "--ostype", s.os_name,
                  "--register", what="create the VM")  # fmt: skip
        self.vm = name
        try:
            self._configure(name, image, memory, cpus)
        except BaseException:
            logger.warning("creating VM %s failed; removing the partial VM", name)
            with contextlib.suppress(VBoxError):
                _remove_vm(self.driver, name)
            self.vm = None
            raise
        logger.info("created VM %s (%s, %d MB, %d CPUs, image %s)", name, s.os_name, memory, cpus, image)

    def _configure(self, name: str, image: Path, memory: int, cpus: int) -> None:
        s = self.settings
        # ownership first: a crash from here on leaves a VM that collect_orphans can judge
        result = self.result_name or self.owner_tag
        marks = ((KEY_CREATOR, CREATOR), (KEY_OWNER, self.owner_tag), (KEY_SLOT, str(self.slot_dir)),
                 (KEY_RESULT, result))  # fmt: skip
        for key, value in marks:
            self._vbm("setextradata", name, key, value, what="record the VM's owner")
        desc = f"BOINC task {result} (slot {self.slot_dir}), host_bridge"
        self._vbm("modifyvm", name, "--description", desc,
                  "--memory", str(memory), "--cpus", str(cpus), "--acpi", "on", "--ioapic", "on",
                  "--boot1", "disk", "--boot2", "none", "--boot3", "none", "--boot4", "none",
                  what="set the VM's memory and processors")  # fmt: skip
        v7 = self.driver.version() >= (7, 0, 0)
        for opts in (["--usb", "off"], ["--uart1", "off", "--uart2", "off"],
                     ["--audio-enabled", "off"] if v7 else ["--audio", "none"],
                     ["--clipboard", "disabled"], ["--draganddrop", "disabled"]):  # fmt: skip
            try:  # cosmetic, as in vboxwrapper: a failure is logged only
                self._vbm("modifyvm", name, *opts, what="disable an unused VM device")
            except VBoxError as e:
                logger.info("ignored: %s", e)
        cable = "--cable-connected1" if v7 else "--cableconnected1"
        if s.enable_network:
            self._vbm("modifyvm", name, "--nic1", "nat", "--natdnsproxy1", "on", cable, "on",
                      what="enable the VM's network")  # fmt: skip
            if s.pf_guest_port:
                hp = s.pf_host_port or _free_port()
                self._vbm("modifyvm", name, "--natpf1", f"boinc_pf,tcp,127.0.0.1,{hp},,{s.pf_guest_port}",
                          what="forward a host port to the VM")  # fmt: skip
                self.port_forward_host_port = hp
        else:
            self._vbm("modifyvm", name, "--nic1", "none", what="disable the VM's network")
        if s.enable_remotedesktop:
            packs = self._vbm("list", "extpacks", what="list the extension packs")
            if "Oracle VM VirtualBox Extension Pack" in packs or "VBoxVRDP" in packs:
                port = _free_port()
                self._vbm("modifyvm", name, "--vrde", "on", "--vrdeextpack", "default", "--vrdeauthlibrary",
                          "default", "--vrdeauthtype", "null", "--vrdeport", str(port),
                          what="enable remote desktop")  # fmt: skip
                self.remote_desktop_port = port
            else:
                logger.warning(
                    "remote desktop asked but the VirtualBox Extension Pack is not installed: skipped"
                )
        ctl = s.vm_disk_controller_type
        args = [
            "storagectl",
            name,
            "--name",
            DISK_CTL,
            "--add",
            ctl,
            "--controller",
            s.vm_disk_controller_model,
        ]
        if ctl.lower() in ("sata", "scsi", "sas"):
            args += ["--hostiocache", "off"]
        if ctl.lower() == "sata":
            args += ["--portcount", "3"]
        self._vbm(*args, what="add the VM's disk controller")
        self._attach_multiattach(name, image)
        shares: list[tuple[str, Path]] = []
        if s.enable_shared_directory:
            assert self.share is not None
            shares.append(("shared", self.share.path))
        if s.share_project_dir and self.project_dir:
            shares.append(("project", self.project_dir))
        elif s.enable_scratch_directory and self.project_dir:
            shares.append(("scratch", self.project_dir / "scratch"))
        for sname, path in shares:
            path.mkdir(parents=True, exist_ok=True)
            self._vbm("sharedfolder", "add", name, "--name", sname, "--hostpath", str(path), "--automount",
                      what=f"share {path} with the VM")  # fmt: skip

    def _attach_multiattach(self, name: str, image: Path) -> None:
        """vboxwrapper's sequence: an image that is not yet multi-attach is attached normally and
        detached once (registering it in a VM's media registry), then attached ``--mtype
        multiattach``, which gives this VM its own differencing image. Under the per-image lock."""
        base = [
            "storageattach",
            name,
            "--storagectl",
            DISK_CTL,
            "--port",
            "0",
            "--device",
            "0",
            "--type",
            "hdd",
        ]
        with _medium_lock(image):
            info = parse_colon_fields(self._vbm("showhdinfo", str(image), what="register the disk image"))
            if info.get("Type", "").split(" ")[0] != "multiattach":
                self._vbm(*base, "--medium", str(image), what="register the disk image with the VM")
                self._vbm(*base, "--medium", "none", what="detach the disk image")
            self._vbm(*base, "--mtype", "multiattach", "--medium", str(image),
                      what="attach the disk image (multi-attach)")  # fmt: skip

    def start(self) -> None:
        vm = self._need_vm()
        state = self._state()
        if state == "running":
            self.started = True
            return
        if state == "paused":
            self.resume()
            return
        try:
            self.driver.start(vm, headless=self.settings.headless)
        except VBoxError as e:
            self.last_error = e
            raise
        self.started = True
        self._pid = None
        after = self._state()
        if after in ("aborted", "gurumeditation", "poweroff"):
            err = self._failure_from_log(f"VM '{vm}' stopped right after the start (state {after})")
            self.last_error = err
            raise err

    def pause(self) -> None:
        state = self._state()
        if state == "running":
            self.driver.control(self._need_vm(), "pause")

    def resume(self) -> None:
        state = self._state()
        if state == "paused":
            self.driver.control(self._need_vm(), "resume")
        elif state == "saved":
            self.start()
        elif state != "running":
            logger.info("resume: VM %s is %s; nothing to resume", self.vm, state)

    def checkpoint(self) -> bool:
        if self.vm is None:
            return False
        state = self._state()
        if state is None:
            return False
        if state == "saved":
            return True
        s = self.settings
        if state in ONLINE_STATES and s.enable_vm_savestate_usage:
            self.driver.control(self.vm, "savestate")
            self.started = False
            return True
        if s.disable_automatic_checkpoints:
            return False
        return self._snapshot(state)

    def _snapshot(self, state: str) -> bool:
        """Take a snapshot (paused while taken, as vboxwrapper does), then drop older ones."""
        vm = self._need_vm()
        was_running = state == "running"
        if was_running:
            self.driver.control(vm, "pause")
        try:
            info = self.driver.vm_info(vm) or {}
            old = [  # by UUID: names may repeat
                info.get("SnapshotUUID" + k[len("SnapshotName") :], "")
                for k, v in info.items()
                if k.split("#")[0] == "SnapshotName" and v.startswith(SNAPSHOT_PREFIX)
            ]
            name = f"{SNAPSHOT_PREFIX}{time.time_ns()}"
            self._vbm("snapshot", vm, "take", name, what="take a VM snapshot")
        finally:
            if was_running:
                self.driver.control(vm, "resume")
        for snap in filter(None, old):
            try:
                self._vbm("snapshot", vm, "delete", snap, what="delete an older VM snapshot")
            except VBoxError as e:
                logger.warning("older snapshot %s stays: %s", snap, e)
        return True

    def restore(self) -> bool:
        if self.vm is None:
            return False
        state = self._state()
        if state is None:
            return False
        if state in ONLINE_STATES:
            self.started = True
            return True
        if state == "saved":
            self.start()
            return True
        info = self.driver.vm_info(self.vm) or {}
        if info.get("CurrentSnapshotName"):
            self._vbm("snapshot", self.vm, "restorecurrent", what="restore the VM's last snapshot")
            self.start()
            return True
        return False

    def poweroff(self) -> None:
        if self.vm is None:
            return
        if (self._state() or "") in ONLINE_STATES:
            self.driver.control(self.vm, "poweroff")

    def poll(self) -> BackendStatus:
        if self.vm is None:
            return BackendStatus(VMState.ABSENT)
        try:
            state = self._state()
        except VBoxError as e:
            if e.temporary:  # busy VirtualBox: report the last known kind of state, not a failure
                logger.warning("poll: %s", e)
                return BackendStatus(VMState.RUNNING if self.started else VMState.CREATED)
            raise
        if state is None:
            if self.started:
                return BackendStatus(VMState.FAILED, error=(
                    f"The task's VM '{self.vm}' disappeared from VirtualBox while the task ran (removed in "
                    "VirtualBox Manager?). BOINC will restart the task."))  # fmt: skip
            return BackendStatus(VMState.ABSENT)
        cpu = self._cpu_time() if state in ONLINE_STATES else 0.0
        if state in ("paused", "deletingsnapshotlivepaused", "teleportingpausedvm"):
            return BackendStatus(VMState.PAUSED, cpu_time=cpu)
        if state in ONLINE_STATES:
            return BackendStatus(VMState.RUNNING, cpu_time=cpu)
        if state == "saved":
            return BackendStatus(VMState.SAVED)
        if state in ("poweroff", "teleported"):
            return (
                BackendStatus(VMState.EXITED, exit_code=0) if self.started else BackendStatus(VMState.CREATED)
            )
        err = self._failure_from_log(
            f"The task's VM '{self.vm}' stopped unexpectedly (VirtualBox state {state})"
        )
        self.last_error = err
        return BackendStatus(VMState.FAILED, error=str(err))

    def _failure_from_log(self, what: str) -> VBoxError:
        """Classify a VM that died using its VBox.log (vboxwrapper reads the log the same way)."""
        log = self.basefolder / (self.vm or "") / "Logs" / "VBox.log"
        text = ""
        with contextlib.suppress(OSError), open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - (256 << 10)))
            text = f.read().decode("utf-8", "replace")
        err = classify(text, what="keep the VM running")
        if err.code == "VBOX_ERROR":
            return VBoxError(f"{what}; see {log} for VirtualBox's reasons. BOINC will retry the task later.",
                             temporary=True, code="VM_DIED", delay=600, output=text[-2000:])  # fmt: skip
        return VBoxError(
            f"{what}: {err}", temporary=err.temporary, code=err.code, delay=err.delay, output=text[-2000:]
        )

    def _cpu_time(self) -> float:
        """CPU seconds of the VM's process (VBoxHeadless --startvm <uuid>), found with psutil."""
        try:
            if self._pid is None or not psutil.pid_exists(self._pid):
                self._pid = find_vm_process(self.vm or "", self._uuid())
            if self._pid is None:
                return 0.0
            t = psutil.Process(self._pid).cpu_times()
            return float(t.user + t.system)
        except (psutil.Error, VBoxError):
            return 0.0

    def _uuid(self) -> str:
        info = self.driver.vm_info(self._need_vm()) or {}
        return info.get("UUID", "")

    def console(self) -> ConsoleEndpoints:
        """The host port forwarded to the guest's web console (vbox_job.xml ``<pf_guest_port>``) and the
        remote desktop port, as vboxwrapper reports them to the client; None where there is none."""
        return ConsoleEndpoints(
            host_port=self.port_forward_host_port or None,
            remote_desktop_port=self.remote_desktop_port or None,
        )

    def exit_fd(self) -> int | None:
        """None: a VirtualBox VM's end is seen at the next poll."""
        return None

    def discard(self) -> None:
        """The VM and its snapshots go with ``cleanup``."""
        self.cleanup()

    def cleanup(self) -> None:
        if self.vm is None:
            return
        vm = self.vm
        if self.driver.vm_info(vm) is not None:
            if not self._is_ours(vm):
                logger.warning(
                    "cleanup: VM %s is not ours any more (owner extradata changed); left alone", vm
                )
            else:
                _remove_vm(self.driver, vm)
                logger.info("removed VM %s", vm)
        self.vm = None
        self.started = False

    def collect_orphans(self) -> list[str]:
        """Remove stale VMs of finished tasks (never this task's, never a VM that is not ours)."""
        keep = frozenset({self.owner_tag}) if self.owner_tag else frozenset()
        return collect_orphans(self.driver, keep=keep)


def find_vm_process(name: str, uuid: str) -> int | None:
    """PID of the VirtualBox process running the VM (``VBoxHeadless``/``VirtualBoxVM`` with
    ``--startvm <uuid>`` or ``--comment <name>`` on its command line), None if not found."""
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if not cmd or os.path.basename(cmd[0]) not in ("VBoxHeadless", "VirtualBoxVM", "VirtualBox"):
            continue
        pairs = set(itertools.pairwise(cmd))
        if (uuid and ("--startvm", uuid) in pairs) or (name and ("--comment", name) in pairs):
            return int(p.info["pid"])
    return None
