"""QEMU backend: each task runs in a real virtual machine (KVM when it works, else TCG emulation).

The VM boots a kernel + initramfs (PVH, e.g. ``host_bridge.images.testimage.ensure_test_image()``) or
a disk image (through a per-task qcow2 overlay, so the base image stays read-only). The task's share is
exported over virtio-9p (mount tag ``shared``) and mounted by the image at ``/boinc/shared``; the image's
guest agent (``guest_agent/agent.c``) reads ``boinc_task.json`` from the share, runs the app there, writes
``boinc_agent_exit`` when it ends and powers the VM off. See docs/qemu.md for the whole protocol.

Control goes through QMP (``qemu.qmp``) on a Unix socket in the task's private state directory (never in
the share): ``stop`` / ``cont`` for pause / resume, ``query-status`` for the run state, ``quit`` as a last
resort before SIGKILL. Quitting saves the whole VM where the guest's agent relays the share (docs/qemu.md,
"Saving VMs"): ``checkpoint()`` writes a migration stream into the state folder and ends QEMU,
``restore()`` starts QEMU from it; ``vm_checkpoint()`` saves while the guest runs on. Without a usable
save the next ``start`` boots a fresh VM that resumes from the app's own checkpoint in the share.

Every QEMU process carries the task's owner tag in its command line (``-name guest=boinc-TAG,
process=bridge-TAG``) and in a pidfile, so that ``restore()`` in a restarted bridge finds its own VM and
only its own. The QEMU child gets ``PR_SET_PDEATHSIG`` (SIGKILL): it never outlives the thread that
started it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from host_bridge import _frozen
from host_bridge.backends.base import BackendError, BackendStatus, ConsoleEndpoints, TaskSpec, VMState
from host_bridge.backends.qemu.accel import KVM_CPU, accel_request, choose_accel, qemu_binary, remember_accel
from host_bridge.backends.qemu.console import (
    CONSOLE_FILE_MAX,
    CONSOLE_LOG_BYTES,
    CONSOLE_LOG_LINES,
    bound_console,
    console_excerpt,
)
from host_bridge.backends.qemu.console import tail as file_tail
from host_bridge.backends.qemu.kernel import is_kernel, minimum_memory_mb
from host_bridge.backends.qemu.qmp import QMP_TIMEOUT, qmp_call
from host_bridge.backends.qemu.saving import SAVING_FILE, SavingMixin
from host_bridge.backends.qemu.settings import SECURITY_MODELS, QemuSettings, share_is_virtfs_mapped
from host_bridge.backends.qemu.sweep import SHARE_ID_FILE, find_own_vms, name_arg, safe_tag, sweep_state_dirs
from host_bridge.backends.qemu.vmconfig import VMConfig as _Config
from host_bridge.exitcodes import ExitCode
from host_bridge.osutil import child_preexec
from host_bridge.share import GuestFileRefused, Share

logger = logging.getLogger(__name__)

_NOT_IN_BUNDLE = (
    "{what} is built on the host from the project's sources, which the single-file app version does not "
    "carry: ship the VM image as app version files (vm_kernel + vm_initrd, or vm_disk_image; "
    "docs/shipping.md)"
)

# Files of the agent protocol in the share (docs/qemu.md).
TASK_FILE = "boinc_task.json"
EXIT_FILE = "boinc_agent_exit"
STARTED_FILE = "boinc_agent_started"
REQUEST_FILE = "boinc_agent_request"
AGENT_FILES = (TASK_FILE, EXIT_FILE, STARTED_FILE, REQUEST_FILE, SAVING_FILE)
_AGENT_TEMPS = tuple(f".{n}.tmp" for n in AGENT_FILES)

DEFAULT_MEMORY_MB = 256
CONSOLE_CHECK_EVERY = 5.0  # s between two looks at the console's size (console.bound_console)
# Kernel arguments for every directly booted kernel (each measured with initcall_debug under TCG):
# - cryptomgr.notests: the crypto self-tests are a kernel developer's check (crypto_algapi_init, 0.3 s);
# - initcall_blacklist: self-tests the cryptomgr switch does not cover, debug interfaces and a device
#   no task uses: the SP800-108 KDF's self-test (crypto_kdf108_init, 0.10-0.14 s; nothing uses the KDF
#   in a task's VM), BLAKE2s's self-test (blake2s_mod_init, 11 ms: the function itself stays), the
#   tracefs kprobe-events files (init_kprobe_trace, 0.07-0.17 s), the block-I/O tracer
#   (init_blk_tracer, 51 ms), trace_printk's tracefs file (10 ms) and the PS/2 keyboard and mouse
#   (i8042_init, 13 ms: a VM without a display);
# - acpi=noirq: PCI interrupts are routed from the firmware's $PIR table instead of ACPI's interrupt link
#   objects. Enabling each link through the AML interpreter took ~170 ms per virtio device (0.47-0.52 s
#   of virtio_pci's init for three devices, 6 ms without). ACPI itself stays on: the agent's power-off
#   uses it, and no ACPI event (power button) is used;
# - rodata=off: no read-only kernel text / data and so no W+X page-table walk (0.15-0.3 s). It hardens
#   the guest kernel against its own user space, and the guest's user space is the app, run as root in
#   the guest: the boundary that matters is QEMU's (docs/security.md).
_SKIPPED_INITCALLS = (
    "crypto_kdf108_init",
    "blake2s_mod_init",
    "init_kprobe_trace",
    "init_blk_tracer",
    "init_trace_printk_function_export",
    "i8042_init",
)
KERNEL_BOOT_ARGS = (
    f"cryptomgr.notests initcall_blacklist={','.join(_SKIPPED_INITCALLS)} acpi=noirq rodata=off"
)
_EXIT_RE = re.compile(rb"\A(exit|signal) (\d{1,3})\n?\Z")
_ERROR_RE = re.compile(rb"\Aerror ([^\x00]{0,1000})\n?\Z")

# The network of a task with <vm_network/>: QEMU's user-mode network (outgoing connections only, nothing
# changed on the host). Its addresses go to QEMU and, on the kernel command line (boinc.net=), to the
# guest agent, which configures eth0 and the app's resolv.conf with them (guest_agent/boot.c): no DHCP.
GUEST_NET = "10.0.2.0/24"
GUEST_ADDR = "10.0.2.15/24"
GUEST_GATEWAY = "10.0.2.2"  # also the host's loopback, as the guest reaches it
GUEST_DNS = "10.0.2.3"

# The VM's control sockets in its state folder: QMP, and the agent's wake-up line (saving.py)
QMP_SOCKET = "qmp.sock"
WAKE_SOCKET = "wake.sock"

GUEST_SHARE = "/boinc/shared"  # where the image mounts the share (docs/protocol.md, docs/qemu.md)

# ------------------------------------------------------------------------------------------------ backend


class QemuBackend(SavingMixin):
    """One task in one QEMU VM, booted as ``settings`` say. See the module docstring and docs/qemu.md."""

    name = "qemu"

    def __init__(self, settings: QemuSettings | None = None) -> None:
        self.settings = settings or QemuSettings()
        self._task: TaskSpec | None = None
        self._cfg: _Config | None = None
        self._share: Share | None = None  # the runtime's: never closed here
        self._proc: subprocess.Popen[bytes] | None = None  # our child
        self._ps: psutil.Process | None = None  # the QEMU process (child or reattached)
        self._stopping = False  # poweroff in progress / done: a QEMU exit is expected
        self._exit_status: BackendStatus | None = None
        self._cpu_time = 0.0
        self._boot_deadline: float | None = None
        self._paused_at: float | None = None
        self._started = False  # the agent reported the app started
        self._accel = ""
        self._kvm_may_fall_back = False  # chosen by the probe, not by the job: may retry under TCG
        self._fell_back = False
        self._cleaned = False
        self._console_logged = False  # the console's tail was logged for this VM's failure
        self._console_checked = 0.0  # when bound_console last looked at the console's size
        self._relay = False  # the agent relays the share (the app works in guest RAM): the VM can be saved
        self.save_limit: int | None = None  # bytes a periodic save may use at most (the runtime's disk bound)
        self.last_save: dict[
            str, float
        ] = {}  # the last save's figures (seconds, pause, bytes), for logs/bench

    # -- paths ------------------------------------------------------------------------------------------
    @property
    def cfg(self) -> _Config:
        if self._cfg is None:
            raise BackendError("QEMU backend used before create(): this is a bug in the bridge")
        return self._cfg

    @property
    def share(self) -> Share:
        if self._share is None:
            raise BackendError("QEMU backend used before create(): this is a bug in the bridge")
        return self._share

    @property
    def qmp_socket(self) -> Path:
        return self.cfg.state_dir / QMP_SOCKET

    @property
    def wake_socket(self) -> Path:
        """The agent's wake-up line (the VM's second serial port): saving.py writes on it once a save's
        migration is over, so that the agent mounts the share again at once (guest_agent/relay.c)."""
        return self.cfg.state_dir / WAKE_SOCKET

    @property
    def pidfile(self) -> Path:
        return self.cfg.state_dir / "qemu.pid"

    @property
    def serial_log(self) -> Path:
        return self.cfg.state_dir / "serial.log"

    @property
    def overlay(self) -> Path:
        return self.cfg.state_dir / "overlay.qcow2"

    @property
    def accel(self) -> str:
        return self._accel

    # -- create -----------------------------------------------------------------------------------------
    def create(self, task: TaskSpec, share: Share) -> None:
        """Check the settings and the image, and choose the VM's state folder; ``share`` (the runtime's,
        for ``task.share``) is exported to the guest and read through, never closed here. Its
        ``virtfs_mapped`` must match the settings' security model (``share_is_virtfs_mapped``)."""
        st = self.settings
        qemu = qemu_binary(st.qemu)
        share_dir = Path(task.share).resolve()
        if not share_dir.is_dir():
            raise BackendError(f"the shared folder {share_dir} does not exist (task {task.name})")
        if st.share_security not in SECURITY_MODELS:
            raise BackendError(
                f"vm_share_security must be one of {', '.join(SECURITY_MODELS)}, not {st.share_security!r}"
            )
        if share.virtfs_mapped != share_is_virtfs_mapped(st.share_security):
            raise BackendError(
                f"the shared folder {share.path} was opened with virtfs_mapped={share.virtfs_mapped} for "
                f"vm_share_security {st.share_security}: this is a bug in the bridge"
            )
        tag = safe_tag(task.owner_tag, f"{task.name}:{share_dir}")
        if st.state_dir is not None:
            state_dir = Path(st.state_dir).resolve()
        else:
            base = (
                Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"boinc-qemu-{os.getuid()}"
            )
            base.mkdir(mode=0o700, exist_ok=True)
            bst = os.lstat(base)
            if not stat.S_ISDIR(bst.st_mode) or bst.st_uid != os.getuid():
                raise BackendError(
                    f"{base} is not a folder of this user (a link, or another user's): the VMs' control "
                    "sockets cannot go there; remove it or set vm_state_dir",
                    temporary=True,
                )
            sweep_state_dirs(base, keep=tag)
            state_dir = base / tag
        if state_dir == share_dir or share_dir in state_dir.parents:
            raise BackendError(
                f"vm_state_dir {state_dir} is inside the shared folder {share_dir}: the guest could tamper "
                "with the VM's control socket; choose a folder outside the share"
            )
        if max(len(str(state_dir / n)) for n in (QMP_SOCKET, WAKE_SOCKET)) > 100:
            raise BackendError(
                f"vm_state_dir {state_dir} is too long for a Unix socket path: choose a shorter one"
            )

        kernel, initrd, disk = self._resolve_image(task)
        memory_mb = task.memory_mb or DEFAULT_MEMORY_MB
        if kernel is not None:
            need, why = minimum_memory_mb(kernel, initrd)
            if memory_mb < need:
                given = f"{task.memory_mb}" if task.memory_mb else f"0 (the default, {DEFAULT_MEMORY_MB})"
                raise BackendError(
                    f"vm_memory_mb {given} is too small to boot this VM: {why}: give at least {need} MiB "
                    "(vm_memory_mb in the job file, plus what the app itself needs); with less the kernel "
                    "hangs or panics before it prints a line"
                )
        pyroot = self._resolve_pyroot(share_dir)
        self._task = task
        self._share = share
        self._cfg = _Config(
            qemu=qemu,
            tag=tag,
            state_dir=state_dir,
            kernel=kernel,
            initrd=initrd,
            disk=disk,
            cmdline=st.cmdline,
            accel_req=st.accel,
            memory_mb=memory_mb,
            cpus=max(1, task.nthreads),
            network=task.network,
            security=st.share_security,
            boot_timeout=float(st.boot_timeout),
            grace=max(0.0, float(st.poweroff_grace)),
            pyroot=pyroot,
        )

    def _resolve_pyroot(self, share: Path) -> Path | None:
        """The settings' ``pyroot``: a host folder holding a root file system (a read-only 9p export)."""
        if self.settings.pyroot is None:
            return None
        value = self.settings.pyroot
        p = Path(value).resolve()
        if not p.is_dir():
            raise BackendError(
                f"vm_pyroot: {value} is not a folder: give a root file system tree or builtin:python"
            )
        if p == share or share in p.parents or p in share.parents:
            raise BackendError(f"vm_pyroot {p} and the shared folder {share} overlap: use a separate tree")
        if not (p / GUEST_SHARE.lstrip("/")).is_dir():
            raise BackendError(
                f"vm_pyroot: {p} has no {GUEST_SHARE.lstrip('/')} folder: create it (the share is bound "
                "there in the guest)"
            )
        return p

    @staticmethod
    def _python_image() -> tuple[Path, Path, Path]:
        """``<vm_python/>``'s kernel, initramfs and root disk (host_bridge.images.testimage)."""
        if _frozen.is_frozen():
            raise BackendError(_NOT_IN_BUNDLE.format(what="<vm_python/> (the guest Python image)"))
        from host_bridge.images.parts import ImageError
        from host_bridge.images.testimage import ensure_python_image

        try:
            img = ensure_python_image()
        except ImageError as e:
            raise BackendError(
                f"cannot build the guest Python image (<vm_python/>): {e}", temporary=True
            ) from e
        return img.kernel, img.initrd, img.disk

    def _resolve_image(self, task: TaskSpec) -> tuple[Path | None, Path | None, Path | None]:
        st = self.settings
        kernel = str(st.kernel) if st.kernel else None
        initrd = str(st.initrd) if st.initrd else None
        disk = str(st.disk_image) if st.disk_image else None
        image = task.image
        if st.builtin_python:
            if disk:
                raise BackendError(
                    "<vm_python/> brings its own root disk (Debian python3 + the guest SDKs) and the job "
                    f"also gives vm_disk_image {disk}: drop one of them from the job file"
                )
            if kernel or initrd:
                logger.info(
                    "<vm_python/>: the Python image's kernel and initramfs replace vm_kernel / vm_initrd"
                )
            kernel, initrd, disk = (str(p) for p in self._python_image())
        elif image == "builtin:test" and not (kernel or disk):
            if _frozen.is_frozen():
                raise BackendError(_NOT_IN_BUNDLE.format(what="the image builtin:test"))
            from host_bridge.images.parts import ImageError
            from host_bridge.images.testimage import ensure_test_image

            try:
                img = ensure_test_image()
            except ImageError as e:
                raise BackendError(f"cannot build the built-in test VM image: {e}", temporary=True) from e
            kernel, initrd = str(img.kernel), str(img.initrd)
        elif image and not (kernel or disk):
            if is_kernel(Path(image)):
                kernel = image
            else:
                disk = image
        if not (kernel or disk):
            raise BackendError(
                f"task {task.name}: no VM image given: set vm_kernel (+ vm_initrd) or vm_disk_image "
                "in the job file"
            )

        def check(tagname: str, value: str | None) -> Path | None:
            if not value:
                return None
            p = Path(value).resolve()
            if not p.is_file() or not os.access(p, os.R_OK):
                raise BackendError(f"{tagname}: {value} is not a readable file: fix the path in the job file")
            return p

        kpath = check("vm_kernel", kernel)
        if kpath is not None and not is_kernel(kpath):
            raise BackendError(
                f"vm_kernel: {kernel} is not a Linux kernel image (neither an ELF vmlinux nor a bzImage): "
                "fix the job file's vm_kernel or the app version's vm_kernel file"
            )
        return kpath, check("vm_initrd", initrd), check("vm_disk_image", disk)

    # -- start ------------------------------------------------------------------------------------------
    def _command(self, *, incoming: str | None = None) -> list[str]:
        c = self.cfg
        cmd = [
            c.qemu, "-name", name_arg(c.tag), "-accel", self._accel,
            "-m", str(c.memory_mb), "-smp", str(c.cpus),
            "-display", "none", "-nodefaults", "-no-user-config", "-no-reboot",
            # the console: appended to, so that bound_console can empty it while QEMU writes (console.py)
            "-chardev", f"file,id=console,path={self.serial_log},append=on",
            "-serial", "chardev:console",
            "-chardev", f"socket,id=wake,path={self.wake_socket},server=on,wait=off",
            "-serial", "chardev:wake",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-pidfile", str(self.pidfile),
            "-virtfs", f"local,path={self.share.path},mount_tag=shared,security_model={c.security},id=fs0",
        ]  # fmt: skip
        if c.pyroot is not None:  # read-only: the guest can never change the tree other tasks use
            cmd += [
                "-virtfs",
                f"local,path={c.pyroot},mount_tag=pyroot,security_model=none,readonly=on,id=fs1",
            ]
        if self._accel == "kvm":
            cmd += ["-cpu", KVM_CPU]
        if c.kernel is not None:
            append = f"console=ttyS0 quiet panic=-1 {KERNEL_BOOT_ARGS}"
            if c.network:
                append += f" boinc.network=1 boinc.net={GUEST_ADDR},{GUEST_GATEWAY},{GUEST_DNS}"
            if c.pyroot is not None:
                append += " boinc.pyroot=1"
            if c.cmdline:
                append += " " + c.cmdline
            cmd += ["-kernel", str(c.kernel), "-append", append]
            if c.initrd is not None:
                cmd += ["-initrd", str(c.initrd)]
        cmd += ["-device", "virtio-rng-pci"]  # entropy for the guest's random pool (see KERNEL_BOOT_ARGS)
        if c.disk is not None:
            cmd += ["-drive", f"file={self.overlay},if=virtio,format=qcow2"]
        if c.network:
            cmd += ["-nic", f"user,model=virtio-net-pci,net={GUEST_NET},host={GUEST_GATEWAY},dns={GUEST_DNS}"]
        else:
            cmd += ["-nic", "none"]
        if incoming is not None:  # a restore (saving.py): loads the stream, paused until a cont
            cmd += ["-S", "-incoming", incoming]
        return cmd

    def _make_overlay(self) -> None:
        c = self.cfg
        if c.disk is None or self.overlay.exists():
            return
        try:
            info = subprocess.run(
                ["qemu-img", "info", "--output=json", str(c.disk)],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            fmt = json.loads(info.stdout).get("format", "raw")
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(c.disk), str(self.overlay)],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
        except FileNotFoundError:
            raise BackendError(
                "qemu-img is not installed: install the qemu-utils package", temporary=True, notice=True
            ) from None
        except subprocess.CalledProcessError as e:
            raise BackendError(
                f"vm_disk_image {c.disk}: qemu-img failed: {e.stderr.strip()[-300:]}"
            ) from None
        except (subprocess.TimeoutExpired, ValueError) as e:
            raise BackendError(f"vm_disk_image {c.disk}: qemu-img failed: {e}", temporary=True) from None

    def _write_task_file(self) -> None:
        t = self._task
        assert t is not None
        hosts = {str(self.share.path), str(Path(t.share)), os.path.abspath(t.share)}

        def to_guest(arg: str) -> str:  # a host path into the share -> the same file in the guest
            for host in hosts:
                if arg == host:
                    return GUEST_SHARE
                if arg.startswith(host + "/"):
                    return GUEST_SHARE + arg[len(host) :]
            return arg

        doc = {
            "v": 1,
            "argv": [to_guest(a) for a in t.argv],
            "stdin": t.stdin,
            "stdout": t.stdout,
            "stderr": t.stderr,
            "env": dict(t.env),
        }
        self.share.write_atomic(TASK_FILE, json.dumps(doc, ensure_ascii=True).encode() + b"\n")

    def start(self) -> None:
        c = self.cfg
        if self._alive():
            return
        if not self._task or not self._task.argv:
            raise BackendError(
                f"task {self._task.name if self._task else '?'}: no program to run (empty argv)"
            )
        self._kill_own_leftovers()
        c.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_share_id()
        self._accel = choose_accel(c.qemu, c.accel_req)
        self._kvm_may_fall_back = self._accel == "kvm" and accel_request(c.accel_req) == "auto"
        self._fell_back = False
        try:
            self.share.clear(AGENT_FILES + _AGENT_TEMPS)
            self._write_task_file()
        except (OSError, GuestFileRefused) as e:
            raise BackendError(
                f"cannot prepare the shared folder {self.share.path}: {e}", temporary=True
            ) from e
        self._make_overlay()
        self._launch()

    def _write_share_id(self) -> None:
        """Record which shared folder this state folder serves (``SHARE_ID_FILE``): the sweep of old state
        folders keeps a disk overlay while its task's share exists (a task quit and suspended for days)."""
        with contextlib.suppress(OSError):
            st = os.stat(self.share.fd)
            (self.cfg.state_dir / SHARE_ID_FILE).write_text(f"{st.st_dev} {st.st_ino} {self.share.path}\n")

    def _launch(self, *, incoming: str | None = None) -> None:
        """Start the QEMU process (``self._accel``) and wait for its control socket."""
        c = self.cfg
        for p in (self.qmp_socket, self.wake_socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        cmd = self._command(incoming=incoming)
        logger.info("starting VM %s (%s, %d MiB, %d CPU)", c.tag, self._accel, c.memory_mb, c.cpus)
        logger.debug("QEMU command: %s", cmd)
        errlog = open(c.state_dir / "qemu.stderr", "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=errlog,
                stderr=errlog,
                preexec_fn=child_preexec(os.getpid()),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            raise BackendError(f"cannot start QEMU ({c.qemu}): {e}", temporary=True) from e
        finally:
            errlog.close()
        self._ps = psutil.Process(self._proc.pid)
        self._stopping = False
        self._cleaned = False
        self._exit_status = None
        self._cpu_time = 0.0
        self._started = False
        self._console_logged = False
        self._relay = False
        self._paused_at = None
        self._boot_deadline = time.monotonic() + c.boot_timeout
        # QMP comes up within milliseconds; fail early if QEMU refuses the command line.
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                why = f"QEMU exited at once ({self._stderr_tail()})"
                if self._fall_back_to_tcg(why):
                    return
                raise BackendError(f"QEMU failed to start: {self._stderr_tail()}", temporary=True)
            if self.qmp_socket.exists():
                break
            time.sleep(0.01)

    def _fall_back_to_tcg(self, why: str) -> bool:
        """A VM the accelerator probe put on KVM failed before its app started (QEMU died, or the guest
        never came up): start it again under TCG emulation. True if it did. Once the app starts under
        TCG, TCG is remembered for this QEMU and host kernel (``remember_accel``), so later tasks do
        not try KVM again; a job's ``vm_accel=kvm`` still insists on KVM."""
        if not self._kvm_may_fall_back or self._started or self._stopping:
            return False
        self._kvm_may_fall_back = False
        logger.warning(
            "VM %s failed under KVM before the app started: %s; starting it again under TCG emulation "
            "(slower: KVM does not work on this host; vm_accel=kvm in the job file insists on KVM)",
            self.cfg.tag,
            why,
        )
        if self._ps is not None:
            with contextlib.suppress(psutil.Error):
                self._ps.kill()
        self._reap()
        self._accel = "tcg"
        self._fell_back = True
        self._launch()
        return True

    # -- pause / resume ---------------------------------------------------------------------------------
    def pause(self) -> None:
        if not self._alive():
            return
        self._qmp("stop")
        if self._paused_at is None:
            self._paused_at = time.monotonic()

    def resume(self) -> None:
        if not self._alive():
            return
        self._qmp("cont")
        if self._paused_at is not None and self._boot_deadline is not None:
            self._boot_deadline += time.monotonic() - self._paused_at
        self._paused_at = None

    # -- restore ----------------------------------------------------------------------------------------
    def _find_own(self) -> list[psutil.Process]:
        """QEMU processes whose command line carries exactly our ``-name`` value."""
        return find_own_vms(self.cfg.tag)

    def restore(self) -> bool:
        """Reattach to our own VM still running from an earlier bridge (True), else kill whatever of ours
        is left and start the VM from its save in the state folder (True), else False (start a fresh VM;
        the app resumes from its checkpoint)."""
        own = [p for p in self._find_own() if p.status() != psutil.STATUS_ZOMBIE]
        if len(own) == 1:
            p = own[0]
            try:
                self._ps = p
                status = self._qmp("query-status")
                logger.info("reattached to VM %s (pid %d, %s)", self.cfg.tag, p.pid, status.get("status"))
                self._proc = None
                self._stopping = False
                self._exit_status = None
                self._accel = "kvm" if "kvm" in p.cmdline() else "tcg"
                self._started = self.share.exists(STARTED_FILE)
                self._boot_deadline = time.monotonic() + self.cfg.boot_timeout
                self._paused_at = time.monotonic() if status.get("status") == "paused" else None
                return True
            except BackendError as e:
                logger.warning("our VM %d does not answer QMP (%s): killing it", p.pid, e)
                self._ps = None
        self._kill_own_leftovers()
        self.cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._restore_save()

    def _kill_own_leftovers(self) -> None:
        for p in self._find_own():
            if self._ps is not None and p.pid == self._ps.pid:
                continue
            logger.warning("killing a leftover VM of this task (pid %d)", p.pid)
            with contextlib.suppress(psutil.Error):
                p.kill()
                p.wait(5)

    # -- poweroff ---------------------------------------------------------------------------------------
    def poweroff(self) -> None:
        """End the VM: ask the agent to stop the app (grace period), then QMP quit, then SIGKILL."""
        if self._ps is None:
            return
        self._stopping = True
        if self._alive():
            paused = self._paused_at is not None
            if not self._started:
                with contextlib.suppress(OSError, GuestFileRefused):
                    self._started = self.share.exists(STARTED_FILE)
            if not paused and self._started:
                with contextlib.suppress(OSError, GuestFileRefused):
                    self.share.write_atomic(REQUEST_FILE, f"poweroff {self.cfg.grace:g}\n".encode())
                self._wait_exit(self.cfg.grace + 2.0)
            if self._alive():
                with contextlib.suppress(BackendError):
                    self._qmp("quit", timeout=3.0)
                self._wait_exit(3.0)
            if self._alive():
                logger.warning("QEMU (pid %d) did not quit: killing it", self._ps.pid)
                with contextlib.suppress(psutil.Error):
                    self._ps.kill()
                self._wait_exit(5.0)
        self._reap()

    def _wait_exit(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._alive() and time.monotonic() < deadline:
            time.sleep(0.02)

    # -- poll -------------------------------------------------------------------------------------------
    def _alive(self) -> bool:
        if self._ps is None:
            return False
        if self._proc is not None and self._proc.poll() is not None:
            return False
        try:
            self._update_cpu()
            return self._ps.is_running() and self._ps.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _update_cpu(self) -> None:
        if self._ps is None:
            return
        with contextlib.suppress(psutil.Error):
            t = self._ps.cpu_times()
            self._cpu_time = max(self._cpu_time, t.user + t.system)

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)

    def _status(self, state: VMState, **kw: Any) -> BackendStatus:
        """A status of this VM: its CPU time, and whether the agent reported the app started."""
        kw.setdefault("app_started", self._started)
        return BackendStatus(state, cpu_time=self._cpu_time, **kw)

    def _read_exit(self) -> BackendStatus | None:
        """The app's end from the agent's exit file (None: not there yet). The file is the guest's: one
        that is refused (a link, a special file, too large) or does not parse ends the task as the
        guest's failure (EXITED, EXIT_CHILD_FAILED, ``error`` saying why), never as the environment's
        (FAILED is a temporary exit, retried). Only the agent's own "error TEXT" line (it could not run
        the app) and a read error of the host's folder are FAILED."""
        try:
            data = self.share.read(EXIT_FILE, 4096)
        except GuestFileRefused as e:
            return self._invalid_exit(f"not a plain file of at most 4 KiB ({e.reason})")
        except OSError as e:
            return self._status(VMState.FAILED, error=f"cannot read {EXIT_FILE} from the shared folder: {e}")
        if data is None:
            return None
        m = _EXIT_RE.match(data)
        if m:
            n = int(m.group(2))
            if (m.group(1) == b"exit" and n <= 255) or (m.group(1) == b"signal" and 1 <= n <= 127):
                code = n if m.group(1) == b"exit" else -n
                return self._status(VMState.EXITED, exit_code=code, app_started=True)
            return self._invalid_exit(repr(data[:100]))
        m = _ERROR_RE.match(data)
        if m is None:
            return self._invalid_exit(repr(data[:100]))
        text = m.group(1).decode("utf-8", "replace").strip()
        return self._status(VMState.FAILED, error=f"the VM's agent could not run the app: {text}")

    def _invalid_exit(self, what: str) -> BackendStatus:
        return self._status(
            VMState.EXITED,
            exit_code=int(ExitCode.EXIT_CHILD_FAILED),
            error=f"the guest wrote an invalid {EXIT_FILE}: {what}; refused",
        )

    def poll(self) -> BackendStatus:
        status = self._poll(query=True)
        assert status is not None
        return status

    def _poll(self, *, query: bool) -> BackendStatus | None:
        """The status; with ``query=False`` None where QMP would have to be asked (the VM is alive).
        ``app_started`` is False until the agent reported the app started (a failure before that is the
        image's or the settings', not the app's)."""
        if self._cfg is None or self._cleaned:
            return BackendStatus(VMState.ABSENT)
        if self._exit_status is not None:
            return self._exit_status
        if self._ps is None:
            return BackendStatus(VMState.CREATED)
        alive = self._alive()
        now = time.monotonic()
        if now - self._console_checked >= CONSOLE_CHECK_EVERY:
            self._console_checked = now
            dropped = bound_console(self.serial_log)
            if dropped:
                logger.warning(
                    "VM %s: its console passed %d MiB (an app writing to stdout / stderr without "
                    "<stdout_filename> / <stderr_filename>?): %d bytes of older console lines dropped",
                    self.cfg.tag,
                    CONSOLE_FILE_MAX >> 20,
                    dropped,
                )
        if not self._started and self.share.exists(STARTED_FILE):
            self._started = True
            if self._fell_back:
                remember_accel(self.cfg.qemu, "tcg")
                logger.info("the VM runs under TCG; TCG is remembered for this QEMU and host kernel")
        ended = self._read_exit()
        if ended is not None:
            if not alive:
                self._reap()
                self._exit_status = ended
            return self._noted(ended)
        if not alive:
            self._reap()
            if self._stopping:
                return BackendStatus(VMState.ABSENT, cpu_time=self._cpu_time)
            code = self._proc.returncode if self._proc is not None else None
            if self._fall_back_to_tcg(f"QEMU exited ({code}): {self._stderr_tail() or self._serial_tail()}"):
                return self._status(VMState.RUNNING)
            failed = self._status(
                VMState.FAILED,
                error=f"the VM stopped unexpectedly (QEMU exit {code}) before the app finished: "
                f"{self._stderr_tail() or self._serial_tail() or 'the console is empty'}",
            )
            self._exit_status = failed
            return self._noted(failed)
        if (
            not self._started
            and self._paused_at is None
            and self._boot_deadline is not None
            and time.monotonic() > self._boot_deadline
        ):
            if self._fall_back_to_tcg(f"the app did not start within {self.cfg.boot_timeout:g} s"):
                return self._status(VMState.RUNNING)
            console = self._serial_tail()
            said = (
                f"last console lines: {console}"
                if console
                else "the kernel printed nothing on the console (too little memory for it: vm_memory_mb, a "
                "kernel that is not for this machine, or a hung accelerator: try vm_accel=tcg)"
            )
            return self._noted(
                self._status(
                    VMState.FAILED,
                    error=f"the VM did not start the app within {self.cfg.boot_timeout:g} s "
                    f"(vm_boot_timeout); {said}",
                )
            )
        if not query:
            return None
        try:
            status = self._qmp("query-status")
        except BackendError:
            self._wait_exit(2.0)  # QEMU dying closes the socket before it is gone
            dead = self._poll(query=False)
            if dead is not None:
                return dead
            raise
        st = status.get("status") if isinstance(status, dict) else None
        if st == "paused" or (isinstance(status, dict) and not status.get("running", True)):
            return self._status(VMState.PAUSED)
        return self._status(VMState.RUNNING)

    def _noted(self, status: BackendStatus) -> BackendStatus:
        """Log the guest's console once when the app failed or the VM failed (before cleanup deletes it:
        the reason, e.g. "cannot run", a dynamic loader's message or the OOM killer, is only there)."""
        if status.state is VMState.FAILED:
            self._log_console("the VM failed before the app finished")
        elif status.state is VMState.EXITED and status.exit_code:
            code = status.exit_code
            self._log_console(
                status.error
                or (
                    f"the app was killed by signal {-code}"
                    if code < 0
                    else f"the app exited with status {code}"
                )
            )
        return status

    def _log_console(self, why: str) -> None:
        if self._console_logged or self._cfg is None:
            return
        self._console_logged = True
        telling, tail = console_excerpt(self.serial_log, CONSOLE_LOG_LINES, CONSOLE_LOG_BYTES)
        if not telling and not tail:
            logger.warning("VM %s: %s; its console (serial.log) is empty", self.cfg.tag, why)
            return
        lines = [*telling, "..."] if telling else []
        lines += tail
        logger.warning(
            "VM %s: %s; the VM's console (the guest kernel's, agent's and app's output), last lines:\n%s\n"
            "[VM console] (end)",
            self.cfg.tag,
            why,
            "\n".join(f"[VM console] {ln}" for ln in lines),
        )

    # -- console / cleanup ------------------------------------------------------------------------------
    def console(self) -> ConsoleEndpoints:
        """No port is forwarded to a QEMU guest (its network is user-mode, outgoing only)."""
        return ConsoleEndpoints()

    def exit_fd(self) -> int | None:
        """None: the app's end is the agent's exit file in the share (the watcher's hint wakes the loop)."""
        return None

    def discard(self) -> None:
        """``cleanup`` removes the state folder, saves included."""
        self.cleanup()

    def cleanup(self) -> None:
        """Power off, then remove the overlay, socket, pidfile, logs, state folder and the agent's files in
        the share. The share's other files (the app's outputs) stay."""
        if self._cfg is None:
            return
        self.poweroff()
        self._kill_own_leftovers()
        shutil.rmtree(self.cfg.state_dir, ignore_errors=True)
        self._cleaned = True
        self._ps = None
        self._proc = None
        if self._share is not None:
            with contextlib.suppress(OSError, GuestFileRefused):
                self._share.clear(AGENT_FILES + _AGENT_TEMPS)

    # -- internals --------------------------------------------------------------------------------------
    def _qmp(self, cmd: str, args: Mapping[str, object] | None = None, timeout: float = QMP_TIMEOUT) -> Any:
        try:
            return qmp_call(self.qmp_socket, cmd, args, timeout)
        except Exception as e:  # qemu.qmp raises its own hierarchy, OSError, TimeoutError
            raise BackendError(
                f"the VM does not answer its control socket ({cmd}): {e}", temporary=True
            ) from e

    def _stderr_tail(self) -> str:
        return file_tail(self.cfg.state_dir / "qemu.stderr")

    def _serial_tail(self) -> str:
        """The console's telling lines (a kernel panic's reason, OOM, "cannot run") first, then its last
        lines, joined with " | " (for a FAILED message)."""
        telling, tail = console_excerpt(self.serial_log, 5, 4096)
        return " | ".join([*telling, *tail])
