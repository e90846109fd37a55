"""QEMU backend: each task runs in a real virtual machine (KVM when it works, else TCG emulation).

The VM boots a kernel + initramfs (PVH, e.g. ``host_bridge.vmimage.ensure_test_image()``) or a disk
image (through a per-task qcow2 overlay, so the base image stays read-only). The task's share is exported
over virtio-9p (mount tag ``shared``) and mounted by the image at ``/boinc/shared``; the image's guest
agent (``guest_agent/agent.c``) reads ``boinc_task.json`` from the share, runs the app there, writes
``boinc_agent_exit`` when it ends and powers the VM off. See docs/qemu.md for the whole protocol.

Control goes through QMP (``qemu.qmp``) on a Unix socket in the task's private state directory (never in
the share): ``stop`` / ``cont`` for pause / resume, ``query-status`` for the run state, ``quit`` as a last
resort before SIGKILL. Quitting is app-level: ``poweroff`` ends the VM, the app's checkpoint stays in the
share, and the next ``start`` boots a fresh VM that resumes from it (``checkpoint()`` returns False).

Every QEMU process carries the task's owner tag in its command line (``-name guest=boinc-TAG,
process=bridge-TAG``) and in a pidfile, so that ``restore()`` in a restarted bridge finds its own VM and
only its own. The QEMU child gets ``PR_SET_PDEATHSIG`` (SIGKILL): it never outlives the thread that
started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from host_bridge import _frozen
from host_bridge.backends.base import BackendError, BackendStatus, TaskSpec, VMState
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
AGENT_FILES = (TASK_FILE, EXIT_FILE, STARTED_FILE, REQUEST_FILE)
_AGENT_TEMPS = tuple(f".{n}.tmp" for n in AGENT_FILES)

DEFAULT_MEMORY_MB = 256
DEFAULT_BOOT_TIMEOUT = 120.0  # s from start until the agent reports the app started (TCG: ~3-5 s)
DEFAULT_POWEROFF_GRACE = 3.0  # s the agent gives the app between SIGTERM and SIGKILL
QMP_TIMEOUT = 10.0
KVM_PROBE_TIMEOUT = 4.0
MAX_OUTPUT_BYTES = 1 << 40

# Extra keys (TaskSpec.extra) this backend reads; anything else is ignored with a debug log.
EXTRA_KEYS = (
    "vm_kernel",
    "vm_initrd",
    "vm_disk_image",
    "vm_cmdline",
    "vm_accel",
    "vm_state_dir",
    "vm_boot_timeout",
    "vm_poweroff_grace",
    "vm_share_security",
    "vm_qemu",
    "vm_pyroot",
)
_SECURITY_MODELS = ("mapped-xattr", "mapped-file", "none")
DEFAULT_SECURITY_MODEL = "mapped-xattr"
_EXIT_RE = re.compile(rb"\A(exit|signal) (\d{1,3})\n?\Z")
_ERROR_RE = re.compile(rb"\Aerror ([^\x00]{0,1000})\n?\Z")

GUEST_SHARE = "/boinc/shared"  # where the image mounts the share (docs/protocol.md, docs/qemu.md)

# The smallest vm_memory_mb create() accepts for a kernel (+ initrd): the RAM the kernel is loaded into
# (an ELF's highest physical PT_LOAD end, a bzImage's init_size, else the file's size), twice the initrd
# (it is held in RAM while it is unpacked), and this much for the kernel's own start (page tables,
# struct pages, slabs). A floor below which the VM cannot boot, not a promise that it boots above it.
MEMORY_MARGIN_MB = 8

# The guest's console (serial.log): what the FAILED message and the failure log quote.
CONSOLE_SCAN_BYTES = 16384  # the tail of the console searched for the telling lines below
CONSOLE_LOG_LINES = 20  # lines logged (stderr.txt) when the app fails or the VM fails
CONSOLE_LOG_BYTES = 4096
CONSOLE_LINE_MAX = 300
# Console lines that say why a VM or its app failed, quoted first (before the last lines, which for a
# kernel panic are the tail of its call trace).
TELLING_CONSOLE_LINES = (
    "Kernel panic - not syncing",
    "VFS: Unable to mount root fs",
    "invalid magic at start of compressed archive",
    "Out of memory",
    "Killed process",
    "cannot run",
)

# Leftover state folders (a bridge killed with SIGKILL, its slot then deleted by the client): create()
# removes those under the default base folder whose VM is gone and that nobody touched for a day.
STALE_STATE_AGE = 86400.0
_SWEEP_MAX_DIRS = 256  # folders looked at per sweep
_SWEEP_MAX_FILES = 64  # a folder with more entries is not a VM state folder: left alone
SHARE_ID_FILE = "share.id"  # in a state folder: "DEV INO PATH" of the task's shared folder


# --------------------------------------------------------------------------------------------- QMP plumbing


class _LoopThread:
    """One private asyncio loop on a daemon thread for all QMP calls of this process."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Any, timeout: float) -> Any:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="qemu-qmp-loop", daemon=True)
                t.start()
                cls._loop = loop
            loop = cls._loop
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise


def qmp_call(
    sock: Path, cmd: str, args: Mapping[str, object] | None = None, timeout: float = QMP_TIMEOUT
) -> Any:
    """Connect to the QMP socket, run one command, disconnect. Raises OSError / qemu.qmp errors."""
    from qemu.qmp import QMPClient

    async def go() -> Any:
        client = QMPClient("boinc-bridge")
        try:
            await asyncio.wait_for(client.connect(str(sock)), timeout)
            return await asyncio.wait_for(client.execute(cmd, args), timeout)
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()

    return _LoopThread.run(go(), timeout + 2.0)


# ------------------------------------------------------------------------------------------------ helpers


def safe_tag(owner_tag: str, fallback: str) -> str:
    """The owner tag as it appears in QEMU's command line: [A-Za-z0-9._-] plus a hash of the full tag."""
    tag = owner_tag or fallback
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", tag)[:40]
    return f"{clean}-{hashlib.sha256(tag.encode()).hexdigest()[:10]}"


def name_arg(tag: str) -> str:
    """The ``-name`` value that marks a VM as ours (exact command-line argument)."""
    return f"guest=boinc-{tag},process=bridge-{tag}"


def _kernel_format(head: bytes) -> str | None:
    """The kind of kernel a file is, from its first 0x210 bytes or more: "elf" (a vmlinux, booted with
    PVH), "bzimage" (its setup header's "HdrS" at 0x202) or None (anything else)."""
    if head[:4] == b"\x7fELF":
        return "elf"
    if head[0x202:0x206] == b"HdrS":
        return "bzimage"
    return None


def _is_kernel(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(0x210)
    except OSError:
        return False
    return _kernel_format(head) is not None


def share_is_virtfs_mapped(extra: Mapping[str, str] | Iterable[tuple[str, str]]) -> bool:
    """Whether a QEMU task's share holds 9p mapped metadata (``vm_share_security`` mapped-xattr, the
    default, or mapped-file): the guest's symlinks, FIFOs and device nodes are then regular host files,
    so a ``Share`` of that folder must be made with ``virtfs_mapped=True``. ``extra``: the task's
    ``TaskSpec.extra`` (pairs or a mapping)."""
    security = dict(extra).get("vm_share_security") or DEFAULT_SECURITY_MODEL
    return security in ("mapped-xattr", "mapped-file")


def kernel_memory_bytes(path: Path) -> tuple[int, str]:
    """A lower bound of the RAM a kernel needs to be loaded, and how it was found: an ELF (PVH) kernel is
    loaded at its physical addresses (the end of its highest PT_LOAD segment: a vmlinux loaded at 16 MiB
    needs RAM up to there); a bzImage needs its setup header's ``init_size`` (boot protocol 2.10+) to
    decompress and start in; anything else its file size."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(0x270)
            kind = _kernel_format(head)
            if kind == "elf" and len(head) >= 64:
                top = _elf_load_end(f, head)
                if top:
                    return top, "its ELF segments are loaded at physical addresses up to there"
            if kind == "bzimage" and len(head) >= 0x264:
                (version,) = struct.unpack_from("<H", head, 0x206)
                (init_size,) = struct.unpack_from("<I", head, 0x260)
                if version >= 0x020A and 0 < init_size < 1 << 36:
                    return init_size, "its bzImage init_size: the memory it decompresses and starts in"
    except (OSError, struct.error):
        pass
    return size, "its file size"


def _elf_load_end(f: Any, head: bytes) -> int:
    """The end of the highest PT_LOAD segment's physical range of an ELF file (0: unknown)."""
    if head[4] not in (1, 2) or head[5] not in (1, 2):
        return 0
    e = "<" if head[5] == 1 else ">"
    if head[4] == 2:  # ELF64: e_phoff, e_phentsize, e_phnum; p_type, p_paddr, p_memsz offsets
        (phoff,) = struct.unpack_from(e + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(e + "HH", head, 0x36)
        word, paddr_at, memsz_at = "Q", 0x18, 0x28
    else:
        (phoff,) = struct.unpack_from(e + "I", head, 0x1C)
        phentsize, phnum = struct.unpack_from(e + "HH", head, 0x2A)
        word, paddr_at, memsz_at = "I", 0x0C, 0x14
    if phentsize < memsz_at + struct.calcsize(word) or not 0 < phnum <= 256:
        return 0
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    top = 0
    for off in range(0, len(table) - phentsize + 1, phentsize):
        (ptype,) = struct.unpack_from(e + "I", table, off)
        if ptype == 1:  # PT_LOAD
            (paddr,) = struct.unpack_from(e + word, table, off + paddr_at)
            (memsz,) = struct.unpack_from(e + word, table, off + memsz_at)
            top = max(top, paddr + memsz)
    return top if top < 1 << 40 else 0


def minimum_memory_mb(kernel: Path, initrd: Path | None) -> tuple[int, str]:
    """The smallest ``vm_memory_mb`` that can boot ``kernel`` (+ ``initrd``), and the reckoning in words.
    The rule (docs/qemu.md): the kernel's load size (``kernel_memory_bytes``) + twice the initrd's size
    (held in RAM while unpacked) + MEMORY_MARGIN_MB, rounded up to MiB. A floor, not a guarantee."""
    mib = 1 << 20
    k, how = kernel_memory_bytes(kernel)
    i = initrd.stat().st_size if initrd is not None else 0
    need = -(-(k + 2 * i) // mib) + MEMORY_MARGIN_MB
    why = f"the kernel {kernel} needs {k / mib:.1f} MiB ({how})"
    if initrd is not None:
        why += f", the initrd {initrd} is {i / mib:.1f} MiB (held in memory and unpacked: twice that)"
    why += f", plus {MEMORY_MARGIN_MB} MiB for the kernel's start"
    return need, why


def sweep_state_dirs(base: Path, keep: str = "", now: float | None = None) -> list[Path]:
    """Remove VM state folders under ``base`` left by bridges that were killed (SIGKILL: no cleanup)
    and whose slots are gone: a sub-folder is removed only when neither it nor its files were modified
    for STALE_STATE_AGE (a day), its ``qemu.pid`` names no live QEMU process, and no live QEMU carries
    its ``-name`` marker. A folder holding a disk overlay (the VM's disk writes) is also kept while the
    shared folder it recorded (``SHARE_ID_FILE``, same device and inode) exists: a task quit by the
    client and suspended for days resumes with it. ``keep``: the caller's own folder name.

    Bounded: at most _SWEEP_MAX_DIRS folders of at most _SWEEP_MAX_FILES entries each; only folders
    owned by this user; links are never followed. Returns what was removed (each logged)."""
    uid = os.getuid()
    now = time.time() if now is None else now
    try:
        st = os.lstat(base)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            return []
        with os.scandir(base) as it:
            entries = [e for _, e in zip(range(_SWEEP_MAX_DIRS), it, strict=False)]
    except OSError:
        return []
    candidates: list[Path] = []
    for e in entries:
        if e.name == keep:
            continue
        try:
            est = e.stat(follow_symlinks=False)
            if not stat.S_ISDIR(est.st_mode) or est.st_uid != uid or now - est.st_mtime < STALE_STATE_AGE:
                continue
            with os.scandir(e.path) as inner:
                files = [f for _, f in zip(range(_SWEEP_MAX_FILES + 1), inner, strict=False)]
            if len(files) > _SWEEP_MAX_FILES:
                continue
            if any(now - f.stat(follow_symlinks=False).st_mtime < STALE_STATE_AGE for f in files):
                continue
        except OSError:
            continue
        if _pidfile_names_qemu(Path(e.path) / "qemu.pid"):
            continue
        if any(f.name == "overlay.qcow2" for f in files) and _share_still_there(Path(e.path)):
            continue
        candidates.append(Path(e.path))
    if not candidates:
        return []
    # A VM whose pidfile is gone or wrong but that still runs keeps its folder too (its -name marker).
    live: set[str] = set()
    with contextlib.suppress(psutil.Error, OSError):
        for proc in psutil.process_iter(["cmdline"]):
            cl = proc.info.get("cmdline") or []
            live.update(a for a in cl if a.startswith("guest=boinc-"))
    removed: list[Path] = []
    for d in candidates:
        if name_arg(d.name) in live:
            continue
        shutil.rmtree(d, ignore_errors=True)
        if not d.exists():
            logger.info("removed the state folder of a VM that ended more than a day ago: %s", d)
            removed.append(d)
    return removed


def _read_small(path: Path, limit: int) -> bytes | None:
    """The first ``limit`` bytes of a small file of a state folder, never through a link (None: absent
    or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _share_still_there(state_dir: Path) -> bool:
    """Whether the shared folder a state folder recorded still exists (same device and inode: a slot
    the client emptied and reused has a new one)."""
    data = _read_small(state_dir / SHARE_ID_FILE, 4096)
    if data is None:
        return False
    try:
        dev, ino, path = data.decode("utf-8", "surrogateescape").rstrip("\n").split(" ", 2)
        st = os.stat(path)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def _pidfile_names_qemu(pidfile: Path) -> bool:
    """Whether ``pidfile`` names a live process that is QEMU (unsure: True, the folder is kept)."""
    data = _read_small(pidfile, 32)
    try:
        pid = int(data.split()[0]) if data is not None else 0
    except (ValueError, IndexError):
        return False
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cl = proc.cmdline()
        return "qemu" in proc.name() or bool(cl and "qemu" in os.path.basename(cl[0]))
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def qemu_binary(override: str | None = None) -> str:
    exe = override or os.environ.get("BOINC_QEMU") or "qemu-system-x86_64"
    found = shutil.which(exe)
    if not found:
        raise BackendError(
            f"QEMU is not installed ({exe} not found): install the qemu-system-x86 package "
            "(apt-get install qemu-system-x86 qemu-utils) or set the job file's vm_qemu",
            temporary=True,
        )
    return found


_accel_cache: dict[str, str] = {}
KVM_CPU = "host"  # the CPU model of a VM under KVM (the probe boots the same one)


def _accel_key(qemu: str) -> str:
    st = os.stat(qemu)
    return f"{qemu}:{st.st_size}:{int(st.st_mtime)}:{os.uname().release}"


def _accel_file() -> Path:
    from host_bridge.vmimage import cache_dir

    return cache_dir() / "accel-probe.json"


def _load_accel_file() -> dict[str, str]:
    """The persisted choices, {probe key: "kvm" | "tcg"} (an unreadable or old-format file: none)."""
    try:
        data = json.loads(_accel_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if "key" in data and "accel" in data:  # the one-entry format of earlier versions
        data = {data["key"]: data["accel"]}
    return {k: v for k, v in data.items() if isinstance(k, str) and v in ("kvm", "tcg")}


def remember_accel(qemu: str, accel: str) -> None:
    """Record the accelerator for this QEMU binary and host kernel (in memory and in the image cache)."""
    key = _accel_key(qemu)
    _accel_cache[key] = accel
    entries = _load_accel_file()
    entries[key] = accel
    cfile = _accel_file()
    with contextlib.suppress(OSError):
        tmp = cfile.with_name(f".{cfile.name}.{os.getpid()}")
        tmp.write_text(json.dumps(dict(list(entries.items())[-16:])))
        os.replace(tmp, cfile)


def choose_accel(qemu: str, requested: str = "auto") -> str:
    """ "kvm" if a probe boot under KVM gets through the firmware within a few seconds, else "tcg".

    ``/dev/kvm`` may exist and still fail guests (nested / paravirtual KVM): a VM is only put on KVM after
    SeaBIOS ran to its end there, with the CPU model a real VM gets (``-cpu host``: on some hosts only
    that one fails, e.g. QEMU aborting on an MSR the host's KVM refuses). The backend still falls back
    to TCG when a VM fails under KVM anyway (``QemuBackend.start``, ``poll``). The result is cached per
    QEMU binary and host kernel, in memory and in the image cache folder. ``requested`` (job file
    ``vm_accel`` or env ``BOINC_VM_ACCEL``): auto, kvm, tcg.
    """
    requested = accel_request(requested)
    if requested in ("kvm", "tcg"):
        return requested
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    key = _accel_key(qemu)
    if key in _accel_cache:
        return _accel_cache[key]
    cached = _load_accel_file().get(key)
    if cached is not None:
        _accel_cache[key] = cached
        return cached
    accel = "kvm" if _probe_kvm(qemu) else "tcg"
    logger.info("accelerator probe: %s", accel)
    remember_accel(qemu, accel)
    return accel


def accel_request(requested: str = "auto") -> str:
    """The accelerator asked for: the environment's BOINC_VM_ACCEL, else the job's vm_accel."""
    requested = (os.environ.get("BOINC_VM_ACCEL") or requested or "auto").strip().lower()
    if requested not in ("auto", "kvm", "tcg"):
        raise BackendError(f"vm_accel must be auto, kvm or tcg, not {requested!r}: fix the job file")
    return requested


def _probe_kvm(qemu: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="boinc-kvm-probe-") as d:
        log = Path(d) / "debugcon.log"
        cmd = [
            qemu,
            "-accel",
            "kvm",
            "-cpu",
            KVM_CPU,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-m",
            "32",
            "-chardev",
            f"file,id=dbg,path={log}",
            "-device",
            "isa-debugcon,iobase=0x402,chardev=dbg",
        ]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=child_preexec(os.getpid()),
            )
        except OSError:
            return False
        ok = False
        deadline = time.monotonic() + KVM_PROBE_TIMEOUT
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(OSError):
                    text = log.read_bytes()
                    if b"No bootable device" in text or b"Booting from" in text:
                        ok = True
                        break
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
        return ok


# ------------------------------------------------------------------------------------------------ backend


@dataclass
class _Config:
    """Everything needed to start one VM of a task (from the task's spec and the job's tags)."""

    qemu: str
    tag: str
    state_dir: Path
    kernel: Path | None
    initrd: Path | None
    disk: Path | None
    cmdline: str
    accel_req: str
    memory_mb: int
    cpus: int
    network: bool
    security: str
    boot_timeout: float
    grace: float
    pyroot: Path | None = None  # read-only root the app runs in (tag "pyroot"), e.g. the Python root
    extra: dict[str, str] = field(default_factory=dict)


class QemuBackend:
    """One task in one QEMU VM. See the module docstring and docs/qemu.md."""

    name = "qemu"

    def __init__(self) -> None:
        self._task: TaskSpec | None = None
        self._cfg: _Config | None = None
        self._share: Share | None = None
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
        return self.cfg.state_dir / "qmp.sock"

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
    def create(self, task: TaskSpec) -> None:
        extra = dict(task.extra)
        for k in extra:
            if k not in EXTRA_KEYS:
                logger.debug("QEMU backend ignores extra setting %s", k)
        qemu = qemu_binary(extra.get("vm_qemu"))
        share = Path(task.share).resolve()
        if not share.is_dir():
            raise BackendError(f"the shared folder {share} does not exist (task {task.name})")
        tag = safe_tag(task.owner_tag, f"{task.name}:{share}")
        if extra.get("vm_state_dir"):
            state_dir = Path(extra["vm_state_dir"]).resolve()
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
        if state_dir == share or share in state_dir.parents:
            raise BackendError(
                f"vm_state_dir {state_dir} is inside the shared folder {share}: the guest could tamper with "
                "the VM's control socket; choose a folder outside the share"
            )
        if len(str(state_dir / "qmp.sock")) > 100:
            raise BackendError(
                f"vm_state_dir {state_dir} is too long for a Unix socket path: choose a shorter one"
            )

        kernel, initrd, disk = self._resolve_image(task, extra)
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
        security = extra.get("vm_share_security", DEFAULT_SECURITY_MODEL)
        if security not in _SECURITY_MODELS:
            raise BackendError(
                f"vm_share_security must be one of {', '.join(_SECURITY_MODELS)}, not {security!r}"
            )
        try:
            boot_timeout = float(extra.get("vm_boot_timeout", DEFAULT_BOOT_TIMEOUT))
            grace = float(extra.get("vm_poweroff_grace", DEFAULT_POWEROFF_GRACE))
        except ValueError as e:
            raise BackendError(
                f"vm_boot_timeout / vm_poweroff_grace must be numbers (seconds): {e}"
            ) from None
        pyroot = self._resolve_pyroot(extra.get("vm_pyroot", ""), share)
        self._task = task
        if self._share is not None:
            self._share.close()
        # mapped-xattr / mapped-file: a guest symlink or FIFO is a regular host file + 9p metadata
        self._share = Share(share, virtfs_mapped=share_is_virtfs_mapped({"vm_share_security": security}))
        self._cfg = _Config(
            qemu=qemu,
            tag=tag,
            state_dir=state_dir,
            kernel=kernel,
            initrd=initrd,
            disk=disk,
            cmdline=extra.get("vm_cmdline", ""),
            accel_req=extra.get("vm_accel", "auto"),
            memory_mb=memory_mb,
            cpus=max(1, task.nthreads),
            network=task.network,
            security=security,
            boot_timeout=boot_timeout,
            grace=max(0.0, grace),
            pyroot=pyroot,
            extra=extra,
        )

    @staticmethod
    def _resolve_pyroot(value: str, share: Path) -> Path | None:
        """``vm_pyroot``: "builtin:python" (the cached Debian + python3 + guest SDK tree, built on first
        use, see host_bridge.vmimage.ensure_python_root) or a host folder holding a root file system."""
        value = value.strip()
        if not value:
            return None
        if value == "builtin:python":
            if _frozen.is_frozen():
                raise BackendError(_NOT_IN_BUNDLE.format(what="<vm_python/> (the guest Python root)"))
            from host_bridge.vmimage import ImageError, ensure_python_root

            try:
                return ensure_python_root().path
            except ImageError as e:
                raise BackendError(
                    f"cannot build the guest Python root (vm_pyroot): {e}", temporary=True
                ) from e
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

    def _resolve_image(
        self, task: TaskSpec, extra: dict[str, str]
    ) -> tuple[Path | None, Path | None, Path | None]:
        kernel = extra.get("vm_kernel")
        initrd = extra.get("vm_initrd")
        disk = extra.get("vm_disk_image")
        image = task.image
        if image == "builtin:test" and not (kernel or disk):
            if _frozen.is_frozen():
                raise BackendError(_NOT_IN_BUNDLE.format(what="the image builtin:test"))
            from host_bridge.vmimage import ImageError, ensure_test_image

            try:
                img = ensure_test_image()
            except ImageError as e:
                raise BackendError(f"cannot build the built-in test VM image: {e}", temporary=True) from e
            kernel, initrd = str(img.kernel), str(img.initrd)
        elif image and not (kernel or disk):
            if _is_kernel(Path(image)):
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
        if kpath is not None and not _is_kernel(kpath):
            raise BackendError(
                f"vm_kernel: {kernel} is not a Linux kernel image (neither an ELF vmlinux nor a bzImage): "
                "fix the job file's vm_kernel or the app version's vm_kernel file"
            )
        return kpath, check("vm_initrd", initrd), check("vm_disk_image", disk)

    # -- start ------------------------------------------------------------------------------------------
    def _command(self) -> list[str]:
        c = self.cfg
        cmd = [
            c.qemu, "-name", name_arg(c.tag), "-accel", self._accel,
            "-m", str(c.memory_mb), "-smp", str(c.cpus),
            "-display", "none", "-nodefaults", "-no-user-config", "-no-reboot",
            "-serial", f"file:{self.serial_log}",
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
            append = "console=ttyS0 quiet panic=-1"
            if c.network:
                append += " boinc.network=1"
            if c.pyroot is not None:
                append += " boinc.pyroot=1"
            if c.cmdline:
                append += " " + c.cmdline
            cmd += ["-kernel", str(c.kernel), "-append", append]
            if c.initrd is not None:
                cmd += ["-initrd", str(c.initrd)]
        if c.disk is not None:
            cmd += ["-drive", f"file={self.overlay},if=virtio,format=qcow2"]
        cmd += ["-nic", "user,model=virtio-net-pci"] if c.network else ["-nic", "none"]
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
                "qemu-img is not installed: install the qemu-utils package", temporary=True
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

    def _launch(self) -> None:
        """Start the QEMU process (``self._accel``) and wait for its control socket."""
        c = self.cfg
        for p in (self.qmp_socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        cmd = self._command()
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

    def checkpoint(self) -> bool:
        """App-level checkpoints only: the app's checkpoint in the share is what survives a quit."""
        return False

    # -- restore ----------------------------------------------------------------------------------------
    def _find_own(self) -> list[psutil.Process]:
        """QEMU processes whose command line carries exactly our ``-name`` value."""
        marker = name_arg(self.cfg.tag)
        found: list[psutil.Process] = []
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                cl = p.info.get("cmdline") or []
                if marker in cl and "-name" in cl and p.pid != os.getpid():
                    found.append(p)
        return found

    def restore(self) -> bool:
        """Reattach to our own VM still running from an earlier bridge (True), or kill whatever of ours is
        left and clean its state (False: start a fresh VM; the app resumes from its checkpoint)."""
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
        return False

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
        telling, tail = _console_excerpt(self.serial_log, CONSOLE_LOG_LINES, CONSOLE_LOG_BYTES)
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

    # -- files ------------------------------------------------------------------------------------------
    def copy_in(self, src: Path, name: str) -> None:
        """Copy ``src`` into the share as ``name``; an executable ``src`` stays executable (the guest runs
        programs from the share)."""
        try:
            self.share.copy_in(src, name)
            if os.stat(src).st_mode & 0o111:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.share.fd)
                try:
                    os.fchmod(fd, 0o755)
                finally:
                    os.close(fd)
        except (OSError, GuestFileRefused) as e:
            raise BackendError(f"cannot copy {src} into the shared folder as {name}: {e}") from e

    def copy_out(self, name: str, dest: Path) -> None:
        try:
            self.share.copy_out(name, dest, MAX_OUTPUT_BYTES)
        except (OSError, GuestFileRefused) as e:
            raise BackendError(f"cannot copy {name} out of the shared folder to {dest}: {e}") from e

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

    def close(self) -> None:
        if self._share is not None:
            self._share.close()
            self._share = None

    # -- internals --------------------------------------------------------------------------------------
    def _qmp(self, cmd: str, args: Mapping[str, object] | None = None, timeout: float = QMP_TIMEOUT) -> Any:
        try:
            return qmp_call(self.qmp_socket, cmd, args, timeout)
        except Exception as e:  # qemu.qmp raises its own hierarchy, OSError, TimeoutError
            raise BackendError(
                f"the VM does not answer its control socket ({cmd}): {e}", temporary=True
            ) from e

    def _stderr_tail(self) -> str:
        return _tail(self.cfg.state_dir / "qemu.stderr")

    def _serial_tail(self) -> str:
        """The console's telling lines (a kernel panic's reason, OOM, "cannot run") first, then its last
        lines, joined with " | " (for a FAILED message)."""
        telling, tail = _console_excerpt(self.serial_log, 5, 4096)
        return " | ".join([*telling, *tail])


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean_line(line: str) -> str:
    """A console line fit for a log: no control characters (the guest writes the console: no terminal
    escapes into stderr.txt), at most CONSOLE_LINE_MAX characters."""
    line = _CONTROL.sub("?", line.strip())
    return line if len(line) <= CONSOLE_LINE_MAX else line[: CONSOLE_LINE_MAX - 3] + "..."


def _console_excerpt(path: Path, lines: int, limit: int) -> tuple[list[str], list[str]]:
    """(telling, tail) of a console log: the last ``lines`` lines within its last ``limit`` bytes, and
    before them the lines of the last CONSOLE_SCAN_BYTES that say why something failed
    (TELLING_CONSOLE_LINES; at most 4, the latest, each once), not repeated in the tail."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - CONSOLE_SCAN_BYTES))
            data = f.read(CONSOLE_SCAN_BYTES)
    except OSError:
        return [], []
    text = data.decode("utf-8", "replace").replace("\r", "")
    raw = text.split("\n")
    if size > CONSOLE_SCAN_BYTES and len(raw) > 1:
        raw = raw[1:]  # a cut first line
    all_lines = [c for c in (_clean_line(ln) for ln in raw) if c]
    tail: list[str] = []
    used = 0
    for ln in reversed(all_lines):
        if len(tail) >= lines or used + len(ln) + 1 > limit:
            break
        tail.insert(0, ln)
        used += len(ln) + 1
    telling: list[str] = []
    for ln in reversed(all_lines):
        if len(telling) >= 4:
            break
        if any(t in ln for t in TELLING_CONSOLE_LINES) and ln not in telling:
            telling.insert(0, ln)
    return telling, [ln for ln in tail if ln not in telling]


def _tail(path: Path, lines: int = 5, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(_clean_line(ln) for ln in text.strip().splitlines()[-lines:])
