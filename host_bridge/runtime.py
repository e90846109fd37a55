"""The bridge's main loop: run the job's tasks one after the other, each through a backend.

For each task: prepare the share, start the backend, then tick: gather the inputs (the client's
requests, the backend's state, the newest guest status), ask ``core.decide`` what to do, and apply the
actions. The loop sleeps in ``ShareWatcher.wait`` so a guest update wakes it at once. Nothing here ends
the process: ``Runtime.run`` returns an ``Outcome`` and the CLI acts on it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boinc_guest import protocol as P

from . import _frozen, core
from .backends import BackendSettings, LocalSettings, make_backend
from .backends.base import Backend, BackendError, BackendStatus, TaskSpec, VMState
from .boinc.api import AppInitData, BoincApiBase
from .config import Config
from .exitcodes import ERR_XML_PARSE, ExitCode
from .jobfile import JobFileError, JobSpec, TaskDesc, parse_job_file
from .share import GuestFileRefused, RefusalLog, Share, safe_name
from .slot import SlotNameError, expand_macros, read_soft_link, resolve_logical
from .state import BridgeState, FractionFloor, load_state, save_state

if TYPE_CHECKING:
    from .vboxcompat import VboxCompat
    from .vboxjob import VboxJob
    from .watch import ShareWatcher

# zipfile and the vboxwrapper modules are imported where a job needs them (<unzip_input>, <zip_output>,
# a vbox_job.xml): most jobs do not, and every import adds to the bridge's start-up time and memory.

log = logging.getLogger(__name__)

SHARE_DIR = "shared"  # the share inside the slot, for VM tasks and VMwrapper-style local tasks
VBOX_JOB_FILE = "vbox_job.xml"  # vboxwrapper's job file (logical name), honoured when present
FRACTION_FILE_MAX = 4096
FRACTION_FLOOR_STEP = 0.005  # see the ReportStatus action
DECODE_BUDGET = 20.0  # after a status decode of d seconds, the next waits DECODE_BUDGET x d
DECODE_WAIT_MAX = 30.0
# A task whose environment fails this many times in a row before its app starts (a VM that does not
# boot: a wrong image or vm_* setting) fails for good instead of being retried every few minutes forever
MAX_ENV_FAILURES = 3


@dataclass(frozen=True)
class Outcome:
    """How the bridge ends. kind: finish | temporary_exit | quit | abort | lost_client."""

    kind: str
    status: int = 0
    message: str = ""
    delay: float = 0.0
    is_notice: bool = False


BackendFactory = Callable[[BackendSettings, "Runtime"], Backend]
VM_KERNEL_FILE = "vm_kernel"  # logical names of a VM image shipped with the app version, used by the
VM_INITRD_FILE = "vm_initrd"  # seed's <virtualmachine> tasks that name no image of their own
_VM_FILES = ("vm_kernel", "vm_initrd", "vm_disk_image")  # the job's image files (host paths)
# QemuSettings field <- the job file's tag
_QEMU_TAGS = {
    "cmdline": "vm_cmdline",
    "accel": "vm_accel",
    "boot_timeout": "vm_boot_timeout",
    "poweroff_grace": "vm_poweroff_grace",
    "share_security": "vm_share_security",
}


def default_backend_factory(settings: BackendSettings, rt: Runtime) -> Backend:
    """The backend for a task's typed settings (``Runtime._backend_settings``)."""
    return make_backend(settings)


def _digest(data: bytes) -> str:
    """A short non-cryptographic fingerprint (zlib's CRC-32 and Adler-32 plus the length): enough to
    tell one job file or slot from another, without loading OpenSSL (hashlib) into the bridge."""
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}{len(data):x}"


def job_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return _digest(f.read(4 * 1024 * 1024))


class Runtime:
    def __init__(
        self,
        config: Config,
        api: BoincApiBase,
        *,
        backend_factory: BackendFactory = default_backend_factory,
        clock: Callable[[], float] = time.monotonic,
        on_report: Callable[[core.ReportStatus, int, int], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.should_stop = should_stop
        self.cfg = config
        self.api = api
        self.backend_factory = backend_factory
        self.clock = clock
        self.on_report = on_report
        self.slot = config.slot_dir
        self.state = BridgeState()
        self.job: JobSpec | None = None
        self.init_data = AppInitData()
        self.refusals = RefusalLog(log)
        self._control_seq = 0
        self._last_ack = 0
        self._decoded_bytes: bytes | None = None  # the status file's bytes last decoded, and the result
        self._decoded_status: P.Status | None = None
        self._decode_not_before = 0.0  # time.perf_counter() before which no new decode starts
        self._decode_deferred = False  # a status file was skipped by the budget: re-read when allowed
        self._fraction_floor = 0.0  # the highest fraction done recorded in _floor_file
        self._floor_file: FractionFloor | None = None
        self.vbox_job: VboxJob | None = None
        self.daemons: list[Backend] = []
        self._daemon_share: Share | None = None  # the slot, the daemons' working directory

    # ------------------------------------------------------------ job

    def load_job(self) -> JobSpec:
        # --job: a logical name in the slot (resolved through BOINC's soft link), or a path (it has a
        # '/': absolute, or relative to the slot), as --help says
        name = self.cfg.job_file
        path = self.slot / name if "/" in name else resolve_logical(self.slot, name)
        job = parse_job_file(path)
        for w in job.warnings:
            log.warning("%s", w)
        self.job = job
        # vboxwrapper's vbox_job.xml next to it: its guest files are honoured (host_bridge.vboxcompat)
        vbox_path = resolve_logical(self.slot, VBOX_JOB_FILE)
        if vbox_path.is_file():
            from .vboxjob import parse_vbox_job

            self.vbox_job = parse_vbox_job(vbox_path)
            for w in self.vbox_job.warnings:
                log.warning("%s", w)
        return job

    def tasks(self) -> list[TaskDesc]:
        assert self.job is not None
        return list(self.job.run_order)

    # ------------------------------------------------------------ run

    def run(self) -> Outcome:
        try:
            job = self.load_job()
        except JobFileError as e:
            return Outcome("finish", ERR_XML_PARSE, str(e))
        except OSError as e:
            return Outcome(
                "finish",
                ERR_XML_PARSE,
                f"cannot read the job file {self.cfg.job_file!r} in {self.slot}: {e.strerror}; "
                "the app version must include it (logical name job.xml)",
            )
        self.init_data = self.api.init_data()
        digest = job_digest(Path(job.path))
        self.state = load_state(self.slot, digest)
        self._fraction_floor = self.state.max_fraction
        self._floor_file = FractionFloor(self.slot, digest)
        self.state.runs += 1
        if not self._save("start"):
            return Outcome("temporary_exit", 0, "cannot write the bridge state (disk full?)", delay=600)
        if self.state.runs > 1:
            log.info(
                "resuming job at task %d (run %d, %.1f CPU s done)",
                self.state.task_index + 1,
                self.state.runs,
                self.state.cpu_done + self.state.task_cpu_checkpoint,
            )
        if self.state.task_index == 0 and not self.state.task_started and job.unzip_input:
            err = self._unzip_inputs(job)
            if err is not None:
                return err
        tasks = self.tasks()
        total = sum(self._weight(t) for t in tasks) or 1.0
        try:
            err = self._start_daemons(job)
            if err is not None:
                return err
            return self._run_tasks(job, tasks, total)
        finally:
            self._stop_daemons()
            if self._floor_file is not None:
                self._floor_file.close()
            refused = self.refusals.summary()
            if refused is not None:
                log.warning("%s", refused)

    def _start_daemons(self, job: JobSpec) -> Outcome | None:
        """The wrapper's daemons: started before the tasks (in the slot), stopped at the end."""
        for i, desc in enumerate(job.daemons):
            try:
                spec = replace(self._spec(1000 + i, desc, self.slot), name=f"daemon{i}")
                d = make_backend(LocalSettings())
                if self._daemon_share is None:
                    self._daemon_share = Share(self.slot)
                d.create(spec, self._daemon_share)
                d.restore()
                d.start()
            except (BackendError, OSError) as e:
                return Outcome(
                    "finish",
                    int(ExitCode.EXIT_INIT_FAILURE),
                    f"daemon {desc.application!r} cannot start: {e}",
                )
            self.daemons.append(d)
            log.info("daemon %s started", desc.application)
        return None

    def _stop_daemons(self) -> None:
        while self.daemons:
            self._stop_quietly(self.daemons.pop())
        if self._daemon_share is not None:
            self._daemon_share.close()
            self._daemon_share = None

    def pause_daemons(self, pause: bool) -> None:
        for d in self.daemons:
            try:
                d.pause() if pause else d.resume()
            except BackendError as e:
                log.warning("daemon: %s", e)

    def _run_tasks(self, job: JobSpec, tasks: list[TaskDesc], total: float) -> Outcome:
        for idx in range(self.state.task_index, len(tasks)):
            before = sum(self._weight(t) for t in tasks[:idx])
            outcome = self._run_task(idx, tasks[idx], weight_before=before, total_weight=total)
            if outcome is not None:
                if outcome.kind == "finish":
                    self._drain_trickle_ups()
                return outcome
        self._drain_trickle_ups()
        if job.zip_output:
            err = self._zip_outputs(job)
            if err is not None:
                return err
        return Outcome("finish", 0, "")

    def _unzip_inputs(self, job: JobSpec) -> Outcome | None:
        """<unzip_input>: unpack the named zip files into the slot before the first task."""
        import zipfile

        slot = self.slot.resolve()
        for name in job.unzip_input:
            path = resolve_logical(self.slot, name)
            try:
                with zipfile.ZipFile(path) as zf:
                    for info in zf.infolist():
                        target = (slot / info.filename).resolve()
                        if not target.is_relative_to(slot) or target == slot:
                            return Outcome(
                                "finish",
                                int(ExitCode.EXIT_INIT_FAILURE),
                                f"<unzip_input> {name}: member {info.filename!r} would land outside the slot",
                            )
                    zf.extractall(slot)
            except (OSError, zipfile.BadZipFile) as e:
                return Outcome(
                    "finish",
                    int(ExitCode.EXIT_INIT_FAILURE),
                    f"<unzip_input> {name} ({path}): cannot unzip it ({e}); check the workunit's input files",
                )
            log.info("unzipped %s into the slot", name)
        return None

    def _zip_outputs(self, job: JobSpec) -> Outcome | None:
        """<zip_output>: zip the slot files whose names match the patterns into the named output."""
        import zipfile

        for z in job.zip_output:
            try:
                regexes = [re.compile(p) for p in z.patterns]
            except re.error as e:
                return Outcome("finish", ERR_XML_PARSE, f"<zip_output> {z.zipfilename}: bad pattern ({e})")
            dest = resolve_logical(self.slot, z.zipfilename)
            names = sorted(
                e.name
                for e in os.scandir(self.slot)
                if e.is_file(follow_symlinks=False) and any(r.fullmatch(e.name) for r in regexes)
            )
            tmp = dest.with_name(f".{dest.name}.tmp")
            try:
                with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                    for n in names:
                        zf.write(self.slot / n, n)
                os.replace(tmp, dest)
            except OSError as e:
                return Outcome(
                    "temporary_exit", 0, f"<zip_output> {z.zipfilename}: cannot write {dest} ({e})", delay=600
                )
            log.info("zipped %d file(s) into %s", len(names), z.zipfilename)
        return None

    def _drain_trickle_ups(self, timeout: float = 15.0) -> None:
        """Before finishing: hand every queued trickle-up to the client (bounded in time)."""
        deadline = self.clock() + timeout
        marker = self.slot / "trickle_up.xml"
        while self.state.trickle_up and self.clock() < deadline:
            if not os.path.lexists(marker):
                variety, text = self.state.trickle_up.pop(0)
                if self.api.send_trickle_up(variety, text):
                    log.warning("trickle-up %r was refused by the BOINC API; dropped", variety)
                self._save("trickle-up sent")
            time.sleep(0.05)
        deadline = self.clock() + timeout
        while os.path.lexists(marker) and self.clock() < deadline and not self.api.standalone:
            time.sleep(0.05)
        if self.state.trickle_up:
            log.warning(
                "%d trickle-up message(s) could not be handed to the client", len(self.state.trickle_up)
            )

    @staticmethod
    def _weight(t: TaskDesc) -> float:
        if getattr(t, "kind", "task") != "task":
            return 0.0
        w = getattr(t, "weight", 1.0)
        return float(w if w is not None else 1.0)

    def _save_fraction_floor(self, fraction: float) -> None:
        self._fraction_floor = fraction
        if self._floor_file is None:
            return
        try:
            self._floor_file.save(fraction)
        except OSError as e:
            log.debug("cannot record the fraction done floor: %s", e)

    def _save(self, reason: str) -> bool:
        try:
            save_state(self.slot, self.state)
            return True
        except OSError as e:
            log.error("cannot save the bridge state (%s): %s", reason, e)
            return False

    # ------------------------------------------------------------ one task

    def _share_dir(self, desc: TaskDesc) -> Path:
        if self.vbox_job is not None:  # vboxwrapper: shared/ with <enable_shared_directory/>, or the slot
            if self.vbox_job.enable_shared_directory:
                return self.slot / SHARE_DIR
            if self.vbox_job.share_slot_dir:
                return self.slot
        vmish = bool(
            (getattr(desc, "virtualmachine", None) or "").strip()
            or getattr(desc, "copy_files_to_vm", ())
            or getattr(desc, "copy_files_from_vm", ())
            or getattr(desc, "copy_app_to_vm", False)
            or getattr(desc, "vm_kernel", None)
            or getattr(desc, "vm_disk_image", None)
        )
        if vmish:
            return self.slot / SHARE_DIR
        exec_dir = getattr(desc, "exec_dir", None)
        if exec_dir:
            return (self.slot / self._expand(exec_dir)).resolve()
        return self.slot

    def _expand(self, text: str) -> str:
        project_dir = self.init_data.project_dir or str(self.slot)
        return expand_macros(text, project_dir=project_dir, nthreads=self._nthreads(), pwd=str(self.slot))

    def _nthreads(self) -> int:
        if self.cfg.nthreads:
            return max(1, int(self.cfg.nthreads))
        n = self.init_data.ncpus
        return max(1, int(n)) if n and math.isfinite(n) else 1

    def _copy_inputs(self, desc: TaskDesc, share: Share, share_dir: Path) -> None:
        if share_dir == self.slot:
            return
        names = [(n, False) for n in desc.copy_files_to_vm]
        if desc.copy_app_to_vm and desc.application:
            names.insert(0, (self._expand(desc.application), True))
        for raw, is_app in names:
            name = raw[2:] if raw.startswith("./") else raw
            src = resolve_logical(self.slot, name)
            if not src.exists():
                tag = "application (copy_app_to_VM)" if is_app else "copy_file_to_VM"
                raise BackendError(
                    f"job file {self.job.path if self.job else ''}: {tag} names {raw!r}, "
                    f"but {src} does not exist; add it to the workunit or the app version"
                )
            share.copy_in(src, os.path.basename(name))
            if is_app or os.access(src, os.X_OK):
                # the program must be executable in the guest (BOINC's copies of app files may not be)
                os.chmod(share_dir / os.path.basename(name), 0o755)

    def backend_kind(self, desc: TaskDesc) -> str:
        """Where a task runs: "qemu" for the QEMU tags, or a <virtualmachine> with an image (its
        <image>, or the app version's vm_kernel / vm_initrd files); "vbox" for <virtualmachine>
        VirtualBox; otherwise "local" (the seed's VMwrapper without an image: its files still go
        through the shared folder, as in a VM)."""
        if desc.backend == "qemu":
            return "qemu"
        vm = (desc.virtualmachine or "").strip()
        if vm.lower() in ("virtualbox", "vbox"):
            return "vbox"
        if vm:
            if desc.image or resolve_logical(self.slot, VM_KERNEL_FILE).is_file():
                return "qemu"
            if not getattr(self, "_warned_vm", False):
                self._warned_vm = True
                log.warning(
                    "task at line %s names virtualmachine %r but no VM image (<image>, <vm_kernel>, or a "
                    "vm_kernel file in the app version): it runs as a local process, its files going "
                    "through the shared folder as they would in a VM",
                    desc.line,
                    vm,
                )
        return "local"

    def _argv(self, desc: TaskDesc, share_dir: Path) -> tuple[str, ...]:
        if self.backend_kind(desc) != "local":
            return self._guest_argv(desc)
        app = self._expand(desc.application.strip())
        in_share = set()
        if share_dir != self.slot:
            names = list(getattr(desc, "copy_files_to_vm", ()) or ())
            if getattr(desc, "copy_app_to_vm", False):
                names.append(app)
            in_share = {n[2:] if n.startswith("./") else n for n in names}
        args = [self._resolve_arg(a.text, a.logical, in_share) for a in desc.args]
        if getattr(desc, "append_cmdline_args", False):
            args.extend(self.cfg.extra_args)
        # A local task's Python program runs with the bridge's own interpreter, which has the guest SDK
        # (boinc_guest) and msgpack: a bare "python3" / "python", or a *.py program. An absolute path
        # (e.g. /usr/bin/python3, for the host's own packages) is run as named.
        # (In the single-file bundle that interpreter is the bundle itself, in python mode: _frozen.)
        python = _frozen.python_command()[0]
        if app in ("python", "python3"):
            return (*python, *args)
        prog = self._resolve_program(app, in_share, share_dir)
        if prog.endswith(".py"):
            return (*python, prog, *args)
        return (prog, *args)

    def _guest_argv(self, desc: TaskDesc) -> tuple[str, ...]:
        """The command line as the guest sees it: programs and ./names copied into the share are run
        from there (the share is the task's working directory in the VM); anything else must be in the
        VM image. No host path is ever handed to a guest."""
        app = self._expand(desc.application.strip())
        name = app[2:] if app.startswith("./") else app
        in_share = {n[2:] if n.startswith("./") else n for n in desc.copy_files_to_vm}
        if desc.copy_app_to_vm:
            in_share.add(name)
        prog = f"./{os.path.basename(name)}" if name in in_share else app
        args = [
            f"./{a.logical}" if a.logical and a.logical in in_share else self._expand(a.text)
            for a in desc.args
        ]
        if desc.append_cmdline_args:
            args.extend(self.cfg.extra_args)
        return (prog, *args)

    def _resolve_arg(self, text: str, logical: str | None, in_share: set[str]) -> str:
        if not logical:
            return self._expand(text)
        if logical in in_share:
            return f"./{logical}"
        phys = resolve_logical(self.slot, logical)
        return str(phys) if phys.exists() else self._expand(text)

    def _resolve_program(self, app: str, in_share: set[str], share_dir: Path) -> str:
        name = app[2:] if app.startswith("./") else app
        if os.path.isabs(name):
            return name  # a program on the host, e.g. /usr/bin/python3 (the backend checks it exists)
        if name in in_share or ((share_dir / name).is_file() and share_dir != self.slot):
            return str(share_dir / os.path.basename(name))
        try:
            phys = resolve_logical(self.slot, name)
        except SlotNameError:
            return name  # not a logical name (e.g. "../x"): the backend says it is not found
        if phys.is_file():
            return str(phys)
        found = shutil.which(name)
        if found:
            return found
        return str(phys)

    def _spec(self, idx: int, desc: TaskDesc, share_dir: Path) -> TaskSpec:
        env: list[tuple[str, str]] = []
        for item in getattr(desc, "setenv", ()) or ():
            if isinstance(item, tuple):
                k, v = item
            else:
                k, _, v = str(item).partition("=")
            env.append((k, self._expand(v)))
        # the guest SDK for a task's Python (a host python3 named in <application> too); the single-file
        # bundle carries the SDK's sources for it
        bundled_sdk = _frozen.bundled_file("guest_python/boinc_guest/__init__.py")
        guest_sdk = bundled_sdk.parent if bundled_sdk else Path(P.__file__).resolve().parent
        guest_pkg = str(guest_sdk.parent)
        pythonpath = os.pathsep.join(p for p in (guest_pkg, os.environ.get("PYTHONPATH", "")) if p)
        env.append(("PYTHONPATH", pythonpath))
        env.append(("BOINC_NTHREADS", str(self._nthreads())))
        image = getattr(desc, "vm_disk_image", None) or getattr(desc, "image", None) or None
        kind = self.backend_kind(desc)
        argv = self._argv(desc, share_dir)
        python, python_env = _frozen.python_command()
        if kind == "local" and argv[: len(python)] == python:
            env.extend(python_env)
        if kind == "qemu" and getattr(desc, "vm_python", False) and argv and argv[0].endswith(".py"):
            # <vm_python/>: a .py program is started by the guest's python3, whatever its file mode
            argv = ("python3", *argv)
        return TaskSpec(
            name=f"task{idx}",
            argv=argv,
            share=share_dir,
            stdin=self._stdio(getattr(desc, "stdin_filename", None), kind, share_dir),
            stdout=self._stdio(getattr(desc, "stdout_filename", None), kind, share_dir),
            stderr=self._stdio(getattr(desc, "stderr_filename", None), kind, share_dir),
            env=tuple(env),
            nthreads=self._nthreads(),
            memory_mb=int(getattr(desc, "vm_memory_mb", 0) or 0),
            network=bool(getattr(desc, "vm_network", False)),
            image=str(self._host_file(image)) if image else None,
            priority=_nice(getattr(desc, "priority", None)),
            owner_tag=self._owner_tag(idx),
        )

    def _backend_settings(self, desc: TaskDesc) -> BackendSettings:
        """The typed settings of the task's backend (``backends.make_backend`` picks the backend by their
        type): a QEMU task's ``vm_*`` tags with its image files resolved to host paths, a VirtualBox
        task's vbox_job.xml and slot (init_data.xml's project folder and result name)."""
        kind = self.backend_kind(desc)
        if kind == "vbox":
            from .backends.virtualbox.settings import VBoxSettings

            project = Path(self.init_data.project_dir) if self.init_data.project_dir else None
            result = self.init_data.result_name or None
            if self.vbox_job is not None:
                return VBoxSettings.from_vboxjob(
                    self.vbox_job, slot_dir=self.slot, project_dir=project, result_name=result
                )
            return VBoxSettings(slot_dir=self.slot, project_dir=project, result_name=result)
        if kind != "qemu":
            return LocalSettings()
        from .backends.qemu.settings import QemuSettings

        files = {t: self._host_file(v) if (v := getattr(desc, t, None)) else None for t in _VM_FILES}
        image = getattr(desc, "vm_disk_image", None) or getattr(desc, "image", None) or None
        if not image and not desc.vm_kernel:
            # the seed's <virtualmachine> task: the VM image the app version ships
            files["vm_kernel"] = resolve_logical(self.slot, VM_KERNEL_FILE)
            initrd = resolve_logical(self.slot, VM_INITRD_FILE)
            if initrd.is_file():
                files["vm_initrd"] = initrd
        # the job file's QEMU settings (unset: the backend's defaults); the parser checked their values
        given = {k: v for k, v in _QEMU_TAGS.items() if getattr(desc, v, None) not in (None, "")}
        state_dir = self.slot.resolve() / "vm_state"
        return QemuSettings(
            kernel=files["vm_kernel"],
            initrd=files["vm_initrd"],
            disk_image=files["vm_disk_image"],
            # the VM's private files (QMP socket, overlay) live in the slot, outside the share, where a
            # Unix socket path has room (~107 bytes)
            state_dir=state_dir if len(str(state_dir)) < 80 else None,
            # <vm_python/>: the guest Python root (built / found by the QEMU backend)
            builtin_python=bool(getattr(desc, "vm_python", False)),
            **{k: getattr(desc, v) for k, v in given.items()},
        )

    def _stdio(self, name: str | None, kind: str, share_dir: Path) -> str | None:
        """A task's stdin / stdout / stderr file as the backend (``kind``) gets it. A local task of the
        BOINC wrapper kind (it runs in the slot, or its exec_dir) names logical files of the slot:
        resolved through BOINC's soft links to the host path, as BOINC's wrapper does (before it changes
        to exec_dir), so the output lands in the result's file, not in the slot's link file. A task with
        a shared folder (a VM, or the VMwrapper style) names a file in that folder, as the guest sees it."""
        if not name:
            return None
        if kind != "local" or share_dir == self.slot / SHARE_DIR:
            return name
        return str(resolve_logical(self.slot, name).absolute())

    def _host_file(self, name: str) -> Path:
        """A VM image file named by the job file: an absolute host path as it is (images installed on
        the host), else a logical name of the slot (the app version's or the workunit's file)."""
        return Path(name) if os.path.isabs(name) else resolve_logical(self.slot, name)

    def _owner_tag(self, idx: int) -> str:
        ident = self.init_data.result_name or str(self.slot.resolve())
        h = _digest(f"{self.slot.resolve()}|{ident}".encode())[:12]
        return f"hb-{h}-t{idx}"

    def _run_task(
        self, idx: int, desc: TaskDesc, *, weight_before: float, total_weight: float
    ) -> Outcome | None:
        share_dir = self._share_dir(desc)
        share_dir.mkdir(parents=True, exist_ok=True)
        share = Share(share_dir, virtfs_mapped=self._virtfs_mapped(desc))
        try:
            return self._run_task_in(idx, desc, share, share_dir, weight_before, total_weight)
        finally:
            share.close()

    def _virtfs_mapped(self, desc: TaskDesc) -> bool:
        """Whether the task's share is a QEMU 9p export with mapped metadata: a guest's symlink or FIFO
        is then a regular host file that only its metadata tells apart (host_bridge.share)."""
        if self.backend_kind(desc) != "qemu":
            return False
        from .backends.qemu.settings import share_is_virtfs_mapped

        return share_is_virtfs_mapped(getattr(desc, "vm_share_security", None))

    def _run_task_in(
        self,
        idx: int,
        desc: TaskDesc,
        share: Share,
        share_dir: Path,
        weight_before: float,
        total_weight: float,
    ) -> Outcome | None:
        resumed = self.state.task_started
        stale_seq: int | None = None
        old: P.Status | None = None
        compat = self._make_compat(idx, share, resumed)
        try:
            if resumed:
                old = self._read_guest(share)
                stale_seq = old.seq if old is not None else None
            else:
                share.clear([P.STATUS_FILE, P.CONTROL_FILE])
                self._copy_inputs(desc, share, share_dir)
                if compat is not None:
                    compat.clear_triggers()
                    self._copy_to_shared(share, share_dir)
            spec = self._spec(idx, desc, share_dir)
        except (BackendError, OSError, GuestFileRefused) as e:
            return Outcome("finish", int(ExitCode.EXIT_INIT_FAILURE), f"cannot prepare task {idx + 1}: {e}")

        backend = self.backend_factory(self._backend_settings(desc), self)
        ctx = core.TaskContext(
            weight_before=weight_before,
            weight=self._weight(desc),
            total_weight=total_weight,
            cpu_base=self.state.cpu_done + self.state.task_cpu_checkpoint,
            fpops_base=_nn(self.state.fpops_done),
            intops_base=_nn(self.state.intops_done),
            report_interval=self.cfg.report_interval,
            finish_grace=self.cfg.finish_grace,
            heartbeat_timeout=self.cfg.heartbeat_timeout or (compat.heartbeat_timeout if compat else 0.0),
            time_limit=float(getattr(desc, "time_limit", 0.0) or 0.0),
        )
        cstate = core.CoreState(last_event_id=self.state.last_event_id, max_fraction=self.state.max_fraction)
        task = _TaskRun(self, idx, desc, share, share_dir, backend, ctx, stale_seq)
        task.compat = compat
        try:
            backend.create(spec, share)
            if resumed:
                # remove (or reattach) what an earlier run of this task left: a scan of the host's
                # processes / VMs for this task's owner tag, only worth its cost (~10 ms) when there was
                # an earlier run (task_started is saved right after the first start)
                backend.restore()
        except BackendError as e:
            backend.cleanup()
            return self._backend_failure(e, idx, before_app=True)
        try:
            if old is not None or self.state.task_finish is not None:
                ended = task.recover(old or P.Status())
                if ended is not _CONTINUE:
                    return ended  # type: ignore[return-value]
            return task.loop(cstate)
        except BackendError as e:
            self._stop_quietly(backend)
            return self._backend_failure(e, idx, before_app=not task.app_seen)
        except BaseException:
            self._stop_quietly(backend)
            raise

    def _make_compat(self, idx: int, share: Share, resumed: bool) -> VboxCompat | None:
        """vboxwrapper's guest files for this task (only with a vbox_job.xml)."""
        if self.vbox_job is None:
            return None
        from .vboxcompat import VboxCompat, load_running_time

        return VboxCompat(
            self.vbox_job,
            share,
            first_id=self.state.last_event_id + 1,
            running_time=load_running_time(self.slot, idx) if resumed else 0.0,
            refusals=self.refusals,
        )

    def _copy_to_shared(self, share: Share, share_dir: Path) -> None:
        """vbox_job.xml <copy_to_shared>: slot files (logical names) copied into the share at the start;
        <copy_cmdline_to_shared/>: the command line in the share's ``cmdline`` (vboxwrapper's format)."""
        assert self.vbox_job is not None
        if self.vbox_job.copy_cmdline_to_shared:
            share.write_atomic("cmdline", "".join(f"{a} " for a in self.cfg.extra_args).encode())
        if share_dir == self.slot:
            return
        for name in self.vbox_job.copy_to_shared:
            try:
                dest = safe_name(name[2:] if name.startswith("./") else name)
            except GuestFileRefused:
                raise BackendError(
                    f"{self.vbox_job.path}: <copy_to_shared>{name}</copy_to_shared> must be a plain file "
                    "name in the slot (no '/')",
                    temporary=False,
                ) from None
            src = resolve_logical(self.slot, dest)
            if not src.is_file():
                raise BackendError(
                    f"{self.vbox_job.path}: <copy_to_shared>{name}</copy_to_shared> names {src}, which "
                    "does not exist; add it to the workunit or the app version",
                    temporary=False,
                )
            share.copy_in(src, dest)

    def _backend_failure(self, e: BackendError, idx: int, *, before_app: bool) -> Outcome:
        if not e.temporary:
            return Outcome("finish", int(ExitCode.EXIT_CHILD_FAILED), f"task {idx + 1}: {e}")
        outcome = Outcome("temporary_exit", 0, f"task {idx + 1}: {e}", delay=300)
        return self.env_failure(outcome) if before_app else outcome

    def env_failure(self, outcome: Outcome) -> Outcome:
        """A temporary exit because the task's environment failed before its app started: counted over
        restarts; the MAX_ENV_FAILURES-th in a row ends the task for good (EXIT_CHILD_FAILED), since
        the VM image or the job's settings are then most likely wrong, not the host's moment."""
        self.state.env_failures += 1
        n = self.state.env_failures
        self._save("environment failure")
        if n < MAX_ENV_FAILURES:
            return replace(
                outcome,
                message=f"{outcome.message} (failure {n} of {MAX_ENV_FAILURES} before the task's app "
                "started; the task is retried later)",
            )
        return Outcome(
            "finish",
            int(ExitCode.EXIT_CHILD_FAILED),
            f"{outcome.message} -- the task's environment failed {n} times in a row before the task's "
            "app started: the VM image or the job file's vm_* settings are most likely wrong (the VM's "
            "console lines, if any, are above in stderr.txt); the task is given up",
        )

    @staticmethod
    def _stop_quietly(backend: Backend) -> None:
        try:
            backend.poweroff()
        except Exception as e:  # already failing: report the first error, not this one
            log.warning("stopping the task failed too: %s", e)
        try:
            backend.cleanup()
        except Exception as e:
            log.warning("cleaning up the task failed too: %s", e)

    # ------------------------------------------------------------ guest I/O

    def _read_guest(self, share: Share) -> P.Status | None:
        try:
            data = share.read(P.STATUS_FILE, P.MAX_FILE)
        except GuestFileRefused as e:
            self.refusals.report(e)
            return None
        if data is None:
            return None
        # Decoding is budgeted (a valid 1 MiB file of a million empty containers takes ~0.6 s): the
        # same bytes are never decoded twice, and after a decode that took d seconds the next one waits
        # until DECODE_BUDGET x d has passed (the previous view stands meanwhile), so a guest rewriting
        # such files cannot hold more than ~1/DECODE_BUDGET of a core.
        if data == self._decoded_bytes:
            return self._decoded_status
        t0 = time.perf_counter()
        if t0 < self._decode_not_before:
            self._decode_deferred = True  # the loop re-reads once the budget allows
            return self._decoded_status
        self._decode_deferred = False
        status: P.Status | None = None
        try:
            status = P.decode_status(data)
        except P.ProtocolError as e:
            self.refusals.report(GuestFileRefused(P.STATUS_FILE, f"bad status file ({e.category})", str(e)))
        t1 = time.perf_counter()
        self._decoded_bytes, self._decoded_status = data, status
        spent = t1 - t0
        # an ordinary status file decodes in tens of microseconds: only costly ones are budgeted
        self._decode_not_before = t1 + min(DECODE_BUDGET * spent, DECODE_WAIT_MAX) if spent > 0.002 else t1
        return status

    def decode_retry_due(self) -> bool:
        """A newer status file was skipped by the decode budget and the budget now allows it."""
        return self._decode_deferred and time.perf_counter() >= self._decode_not_before

    def decode_retry_in(self, longest: float) -> float:
        """How long the loop may sleep without delaying a deferred decode (at most ``longest``)."""
        if not self._decode_deferred:
            return longest
        return min(longest, max(0.0, self._decode_not_before - time.perf_counter()))

    def write_control(
        self,
        share: Share,
        *,
        suspended: bool,
        network_suspended: bool,
        ack: int,
        quit: bool = False,
        abort: bool = False,
    ) -> None:
        self._control_seq += 1
        aid = self.init_data
        init = P.InitData(
            app_name=aid.app_name,
            wu_name=aid.wu_name,
            result_name=aid.result_name,
            project_preferences=P.truncate_utf8(aid.project_preferences, P.MAX_TEXT),
            user_name=aid.user_name,
            team_name=aid.team_name,
            master_url=aid.master_url,
            userid=aid.userid,
            teamid=aid.teamid,
            hostid=aid.hostid,
            app_version=aid.app_version,
            checkpoint_period=_nn(aid.checkpoint_period) or 300.0,
            nthreads=self._nthreads(),
            fraction_done_start=0.0,
            fraction_done_end=1.0,
            wu_cpu_time=_nn(self.state.cpu_done + self.state.task_cpu_checkpoint),
            starting_elapsed_time=_nn(aid.starting_elapsed_time),
            rsc_fpops_est=_nn(aid.rsc_fpops_est),
            rsc_fpops_bound=_nn(aid.rsc_fpops_bound),
            rsc_memory_bound=_nn(aid.rsc_memory_bound),
            rsc_disk_bound=_nn(aid.rsc_disk_bound),
            computation_deadline=_nn(aid.computation_deadline),
        )
        ctl = P.Control(
            seq=self._control_seq,
            suspended=suspended,
            quit=quit,
            abort=abort,
            network_suspended=network_suspended,
            ack=ack,
            init_data=init,
            trickle_down=tuple(
                P.TrickleDown(int(i), str(t)) for i, t in self.state.trickle_down[: P.MAX_EVENTS]
            ),
            uploads=tuple(P.UploadResult(n, s) for n, s in list(self.state.uploads.items())[: P.MAX_EVENTS]),
        )
        self._last_ack = ack
        share.write_atomic(P.CONTROL_FILE, P.encode_control(ctl))


def _nice(priority: int | None) -> int | None:
    """BOINC's <priority> 1 (lowest) .. 5 (highest) as a nice value; None: inherit the client's."""
    if priority is None:
        return None
    return {1: 19, 2: 15, 3: 10, 4: 5, 5: 0}.get(int(priority), 19)


def _nn(x: Any) -> float:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) and f >= 0 else 0.0


class _TaskRun:
    """The tick loop of one task (kept apart from Runtime so each piece stays small)."""

    def __init__(
        self,
        rt: Runtime,
        idx: int,
        desc: TaskDesc,
        share: Share,
        share_dir: Path,
        backend: Backend,
        ctx: core.TaskContext,
        stale_seq: int | None,
    ) -> None:
        self.rt = rt
        self.idx = idx
        self.desc = desc
        self.share = share
        self.share_dir = share_dir
        self.backend = backend
        self.ctx = ctx
        self.stale_seq = stale_seq
        self.guest: P.Status | None = None
        self.bstatus = BackendStatus(VMState.CREATED)
        self.last_backend_poll = -math.inf
        self.last_plumbing = -math.inf
        self.last_guest_read = -math.inf
        self.last_trickle = -math.inf
        self.ctl_flags = (False, False)
        self.ops = (ctx.fpops_base, ctx.intops_base)  # the job's operation counts, as last reported
        self.fraction_file = getattr(desc, "fraction_done_filename", None) or None
        self.checkpoint_file = getattr(desc, "checkpoint_filename", None) or None
        self.fraction_value: float | None = None
        self.ckpt_sig: tuple[int, int] | None = None
        self.file_checkpoint_cpu = 0.0
        self.compat: VboxCompat | None = None  # vboxwrapper's guest files, when the job has a vbox_job.xml
        self.app_seen = False  # the backend reported the task's app running in this run

    def recover(self, old: P.Status) -> Outcome | object | None:
        """After a restart: the previous run's status file may hold events the bridge had not processed
        when it died (the restarted app does not carry them over). Deliver them now; a finish event means
        the task had ended: complete it without running it again. Returns _CONTINUE to run the task."""
        rt = self.rt
        finish: P.Finish | None = None
        if rt.state.task_finish is not None:  # processed (and saved) before the bridge died
            status, message, notice = rt.state.task_finish
            finish = P.Finish(
                id=rt.state.last_event_id, status=int(status), message=str(message), is_notice=bool(notice)
            )
        else:
            last = rt.state.last_event_id
            for ev in old.events:
                if ev.id <= last:
                    continue
                last = ev.id
                if isinstance(ev, P.TrickleUp):
                    rt.state.trickle_up.append([ev.variety, ev.text])
                elif isinstance(ev, P.UploadRequest):
                    self._upload(ev)
                elif isinstance(ev, P.Finish):
                    finish = ev
                    break
                # a temporary exit of the previous run is not repeated: the app decides again
            if last != rt.state.last_event_id:
                rt.state.last_event_id = last
                rt._save("events recovered from the previous run")
                log.info("delivered the previous run's pending events up to id %d", last)
        if finish is None:
            return _CONTINUE
        log.info("task %d had finished (status %d) before the bridge restarted", self.idx + 1, finish.status)
        return self._end_task(core.EndTask(finish.status, finish.message, finish.is_notice))

    def _job_cpu(self) -> float:
        """The job's CPU seconds now, by the core's rule (guest figure bounded by the environment's)."""
        inp = core.Inputs(
            now=0, boinc=core.BoincView(), backend=self.bstatus, guest=self.guest, task=self.ctx
        )
        return core.cpu_times(inp)[0]

    def loop(self, cstate: core.CoreState) -> Outcome | None:
        rt = self.rt
        cfg = rt.cfg
        with contextlib.ExitStack() as stack:
            watcher: ShareWatcher | None = None
            hinted = True
            while True:
                now = rt.clock()
                if (
                    hinted
                    or self.compat is not None
                    or now - self.last_guest_read >= cfg.report_interval
                    or rt.decode_retry_due()
                ):
                    self._refresh_guest(now)
                self._poll_backend(now)  # backends keep this cheap (exit check; CPU re-measured less often)
                if self.compat is not None and self.bstatus.state is VMState.EXITED:
                    self._refresh_guest(now, final=True)  # trigger files written just before the end
                if now - self.last_plumbing >= cfg.report_interval:
                    self._plumbing(now)
                b = rt.api.get_status()
                view = core.BoincView(
                    suspended=b.suspended,
                    quit_request=b.quit_request or rt.should_stop(),
                    abort_request=b.abort_request,
                    no_heartbeat=b.no_heartbeat,
                    network_suspended=b.network_suspended,
                )
                inp = core.Inputs(
                    now=now,
                    boinc=view,
                    backend=self.bstatus,
                    guest=self.guest,
                    fraction_file=self.fraction_value,
                    file_checkpoint_cpu=self.file_checkpoint_cpu,
                    task=self.ctx,
                )
                cstate, actions = core.decide(cstate, inp)
                for action in actions:
                    result = self._apply(action, cstate)
                    if result is not _CONTINUE:
                        return result  # type: ignore[return-value]
                if rt.state.trickle_up:
                    self._send_trickle_ups()
                if watcher is None:
                    # Set up after the first decision (which starts the task), so that importing and
                    # starting the watcher is not in the task's start-up time; a status written before
                    # the watch existed is read at once (hinted).
                    from .watch import ShareWatcher

                    watcher = stack.enter_context(
                        ShareWatcher(
                            self.share_dir,
                            [P.STATUS_FILE],
                            mode=cfg.watch_mode,
                            check_interval=cfg.watch_check_interval,
                        )
                    )
                    continue
                # once the guest has said it finished, watch for its exit closely (task end -> exit):
                # every 5 ms for a quarter of a second (an SDK app exits right after boinc_finish), then
                # every 50 ms until finish_grace (a guest that does not exit costs little meanwhile)
                tick = cfg.tick
                if cstate.finish is not None:
                    soon = cstate.finish_seen_at is None or now - cstate.finish_seen_at < 0.25
                    tick = min(tick, 0.005 if soon else 0.05)
                if self.fraction_file or self.checkpoint_file or self.compat is not None:
                    # wrapper-style files give no hints: read them every report_interval, as BOINC's
                    # wrapper and vboxwrapper do (once a second)
                    tick = min(tick, max(0.0, self.last_plumbing + cfg.report_interval - rt.clock()))
                hinted = watcher.wait(rt.decode_retry_in(tick))

    # -- inputs

    def _refresh_guest(self, now: float, *, final: bool = False) -> None:
        self.last_guest_read = now
        g = self.rt._read_guest(self.share)
        if g is None and self.compat is not None and not self.share.exists(P.STATUS_FILE):
            # a guest that writes only vboxwrapper's files (the SDK's status file wins when present)
            running = self.bstatus.state is VMState.RUNNING and not self.ctl_flags[0]
            self.guest = self.compat.poll(now, running, force=final)
            return
        if g is None:
            return
        if self.stale_seq is not None:
            if g.seq == self.stale_seq:
                return  # the previous run's file: wait for the restarted app's first write
            self.stale_seq = None
        self.guest = g
        if g.td_ack and self.rt.state.trickle_down:
            before = len(self.rt.state.trickle_down)
            self.rt.state.trickle_down = [x for x in self.rt.state.trickle_down if x[0] > g.td_ack]
            if len(self.rt.state.trickle_down) != before:
                self.rt._save("trickle-down acked")
                self._rewrite_control()

    def _poll_backend(self, now: float) -> None:
        self.last_backend_poll = now
        self.bstatus = st = self.backend.poll()
        if not self.app_seen and st.app_started and st.state in _APP_STATES:
            self.app_seen = True
            if self.rt.state.env_failures:  # the environment works: earlier failures were the moment's
                self.rt.state.env_failures = 0
                self.rt._save("the task's app started")

    def _plumbing(self, now: float) -> None:
        """Once a second: the wrapper-style files, trickle-downs from the client, upload results."""
        self.last_plumbing = now
        rt = self.rt
        if self.fraction_file:
            self.fraction_value = self._read_fraction_file()
        if self.checkpoint_file:
            self._check_checkpoint_file()
        if rt.cfg.trickle_period > 0 and now - self.last_trickle >= rt.cfg.trickle_period:
            if self.last_trickle > -math.inf:
                self._periodic_trickle()
            self.last_trickle = now
        changed = False
        td = self._take_trickle_down()
        if td is not None:
            rt.state.trickle_down.append([rt.state.trickle_down_next, P.truncate_utf8(td, P.MAX_TEXT)])
            rt.state.trickle_down_next += 1
            rt.state.trickle_down = rt.state.trickle_down[-P.MAX_EVENTS :]
            changed = True
        for name, st in list(rt.state.uploads.items()):
            if st == 1:
                new = rt.api.upload_status(name)
                if new != 1 and new != P.ERR_NOT_FOUND:
                    rt.state.uploads[name] = new
                    changed = True
        if changed:
            rt._save("trickle-down / upload status")
            self._rewrite_control()

    def _send_trickle_ups(self) -> None:
        """Hand queued trickle-ups to BOINC, one at a time: the API keeps a single trickle_up.xml in the
        slot until the client takes it, so a second send before that would overwrite the first."""
        rt = self.rt
        if os.path.lexists(rt.slot / "trickle_up.xml"):
            return
        variety, text = rt.state.trickle_up[0]
        rc = rt.api.send_trickle_up(variety, text)
        if rc:
            log.warning("trickle-up %r was refused by the BOINC API (%d); dropped", variety, rc)
        rt.state.trickle_up.pop(0)
        rt._save("trickle-up sent")

    def _take_trickle_down(self) -> str | None:
        """A trickle-down from the client: the API names a slot file; read it (bounded) and delete it."""
        name = self.rt.api.receive_trickle_down()
        if not name:
            return None
        path = self.rt.slot / os.path.basename(name)
        try:
            with open(path, "rb") as f:
                data = f.read(P.MAX_TEXT + 1)
            os.unlink(path)
        except OSError as e:
            log.warning("cannot read the trickle-down file %s: %s", path, e)
            return None
        if len(data) > P.MAX_TEXT:
            log.warning("trickle-down %s is larger than %d bytes: truncated for the guest", path, P.MAX_TEXT)
        return data[: P.MAX_TEXT].decode("utf-8", errors="replace")

    def _periodic_trickle(self) -> None:
        """--trickle X: a trickle-up with the CPU time every X seconds, as BOINC's wrapper sends."""
        cpu = self._job_cpu()
        rc = self.rt.api.send_trickle_up("cpu_time", f"<cpu_time>{cpu:f}</cpu_time>\n")
        if rc:
            log.warning("periodic trickle-up refused by the BOINC API: %d", rc)

    def _read_fraction_file(self) -> float | None:
        try:
            data = self.share.read(self.fraction_file, FRACTION_FILE_MAX)
        except GuestFileRefused as e:
            self.rt.refusals.report(e)
            return self.fraction_value
        if not data:
            return self.fraction_value
        for tok in reversed(data.decode("ascii", "replace").split()):
            try:
                v = float(tok)
            except ValueError:
                continue
            if math.isfinite(v):
                return min(max(v, 0.0), 1.0)
        return self.fraction_value

    def _check_checkpoint_file(self) -> None:
        try:
            st = os.stat(self.share_dir / self.checkpoint_file, follow_symlinks=False)
        except OSError:
            return
        sig = (st.st_mtime_ns, st.st_size)
        if self.ckpt_sig is not None and sig != self.ckpt_sig:
            cpu = self._job_cpu()
            self.file_checkpoint_cpu = max(0.0, cpu - self.ctx.cpu_base)
            self.rt.state.task_cpu_checkpoint = max(0.0, cpu - self.rt.state.cpu_done)
            self.rt._save("checkpoint file changed")
        self.ckpt_sig = sig

    def _rewrite_control(self) -> None:
        s, n = self.ctl_flags
        self.rt.write_control(self.share, suspended=s, network_suspended=n, ack=self.rt._last_ack)

    # -- actions

    def _apply(self, action: core.Action, cstate: core.CoreState) -> Any:
        rt = self.rt
        b = self.backend
        if isinstance(action, core.StartTask):
            b.start()
            rt.state.task_started = True
            rt._save("task started")
            self.last_backend_poll = -math.inf
            if self.compat is not None:
                self._report_console()
        elif isinstance(action, core.PauseTask):
            b.pause()
            rt.pause_daemons(True)
            log.info("task %d suspended", self.idx + 1)
        elif isinstance(action, core.ResumeTask):
            b.resume()
            rt.pause_daemons(False)
            log.info("task %d resumed", self.idx + 1)
        elif isinstance(action, core.WriteControl):
            self.ctl_flags = (action.suspended, action.network_suspended)
            rt.write_control(
                self.share,
                suspended=action.suspended,
                network_suspended=action.network_suspended,
                ack=action.ack,
                quit=action.quit,
                abort=action.abort,
            )
        elif isinstance(action, core.ReportStatus):
            if action.fraction_done > rt._fraction_floor:
                # recorded before it is reported, so a kill -9 never lowers it; recorded a small step
                # ahead, so a guest reporting 10 times a second costs ~200 tiny writes a job, not one
                # per report (after a restart the client may see up to FRACTION_FLOOR_STEP more)
                rt._save_fraction_floor(min(1.0, action.fraction_done + FRACTION_FLOOR_STEP))
            rt.api.send_status(
                cpu_time=action.cpu_time,
                checkpoint_cpu_time=action.checkpoint_cpu_time,
                fraction_done=action.fraction_done,
                fpops_per_cpu_sec=action.fpops_per_cpu_sec,
                fpops_cumulative=action.fpops_cumulative,
                intops_per_cpu_sec=action.intops_per_cpu_sec,
                intops_cumulative=action.intops_cumulative,
                want_network=action.want_network,
            )
            rt.state.max_fraction = max(rt.state.max_fraction, action.fraction_done)
            self.ops = (action.fpops_cumulative, action.intops_cumulative)
            if rt.on_report is not None:
                rt.on_report(action, self.idx, len(rt.tasks()))
        elif isinstance(action, core.ForwardTrickleUp):
            # queued (and checkpointed by the SaveState that follows); handed to BOINC one at a time
            rt.state.trickle_up.append([action.event.variety, action.event.text])
        elif isinstance(action, core.RequestUpload):
            self._upload(action.event)
        elif isinstance(action, core.SaveState):
            rt.state.last_event_id = action.last_event_id
            rt.state.max_fraction = max(rt.state.max_fraction, action.max_fraction)
            if action.finish is not None:
                f = action.finish
                rt.state.task_finish = [f.status, f.message, f.is_notice]
            if action.checkpoint_cpu is not None:
                rt.state.task_cpu_checkpoint = max(0.0, action.checkpoint_cpu - rt.state.cpu_done)
            if not rt._save(action.reason):
                Runtime._stop_quietly(b)
                return Outcome(
                    "temporary_exit", 0, "cannot save the bridge's state (is the disk full?)", delay=600
                )
            if self.compat is not None:
                from .vboxcompat import save_running_time

                self.compat.ack(rt.state.last_event_id)
                save_running_time(rt.slot, self.idx, self.compat.running_time)
        elif isinstance(action, core.StopTask):
            saved = False
            if action.save:
                try:
                    saved = b.checkpoint()
                except BackendError as e:
                    log.warning("could not save the task's state, powering it off: %s", e)
            if not saved:
                b.poweroff()
        elif isinstance(action, core.EndTask):
            return self._end_task(action)
        elif isinstance(action, core.ExitBridge):
            if action.kind == "abort":
                Runtime._stop_quietly(b)
            outcome = Outcome(action.kind, action.status, action.message, action.delay, action.is_notice)
            if action.kind == "temporary_exit" and self.bstatus.state is VMState.FAILED and not self.app_seen:
                return rt.env_failure(outcome)
            return outcome
        return _CONTINUE

    def _report_console(self) -> None:
        """vboxwrapper's web console / remote desktop address, told to the client once at the start."""
        assert self.compat is not None
        ends = self.backend.console()
        url, addr = self.compat.console(
            host_port=ends.host_port, rd_port=ends.remote_desktop_port, direct=ends.direct
        )
        try:
            if url and not (self.rt.slot / "graphics_app").exists():
                self.rt.api.web_graphics_url(url)
                log.info("web console of the task: %s", url)
            if addr:
                self.rt.api.remote_desktop_addr(addr)
                log.info("remote desktop of the task: %s", addr)
        except NotImplementedError:
            pass

    def _upload(self, ev: P.UploadRequest) -> None:
        rt = self.rt
        try:
            name = safe_name(ev.name)
        except GuestFileRefused as e:
            rt.refusals.report(e)
            return
        if self.share_dir != rt.slot:
            dest = self._upload_dest(name)
            if dest is None:
                rt.refusals.report(
                    GuestFileRefused(
                        name,
                        "upload refused",
                        "only the result's output files may be copied out of the shared folder: a name "
                        "declared with <copy_file_from_VM> in the job file, or a logical name of the slot "
                        "whose file does not exist yet (never the job file, an input, an app file or the "
                        "bridge's and the client's own files)",
                    )
                )
                rt.state.uploads[name] = int(P.ERR_INVALID_PARAM)
                return
            try:
                self.share.copy_out(name, dest, _max_output(rt))
            except GuestFileRefused as e:
                rt.refusals.report(e)
                rt.state.uploads[name] = int(P.ERR_INVALID_PARAM)
                return
            except OSError as e:
                log.warning("upload %r: cannot copy it out of the share: %s", name, e)
                rt.state.uploads[name] = int(P.ERR_INVALID_PARAM)
                return
        rc = rt.api.upload_file(name)
        rt.state.uploads[name] = 1 if rc == 0 else rc

    def _upload_dest(self, name: str) -> Path | None:
        """Where the guest's upload request for ``name`` may be copied, or None (refused).

        The guest names the file, so the name alone must not let it overwrite anything on the host: an
        output declared by the (trusted) job file goes to its physical path; any other name only if the
        slot holds a BOINC soft-link file for it (a logical file of the job) whose target does not exist
        yet, or that an earlier upload of this job created. Inputs, app-version files (the bridge
        itself, VM images) and the job file exist before the task runs; the slot's plain files
        (init_data.xml, the bridge's state, stderr.txt...) are not soft links.
        """
        rt = self.rt
        declared = {
            os.path.basename(n[2:] if n.startswith("./") else n)
            for n in getattr(self.desc, "copy_files_from_vm", ()) or ()
        }
        if name in declared:
            return resolve_logical(rt.slot, name)
        if read_soft_link(rt.slot / name) is None:
            return None
        dest = resolve_logical(rt.slot, name)
        if name in rt.state.uploads or not os.path.lexists(dest):
            return dest
        return None

    def _end_task(self, action: core.EndTask) -> Outcome | object:
        rt = self.rt
        b = self.backend
        try:
            b.poweroff()
        finally:
            b.cleanup()
        if action.status != 0:
            msg = action.message or f"task {self.idx + 1} ({self.desc.application}) failed"
            return Outcome("finish", action.status, msg, is_notice=action.is_notice)
        if action.message:
            log.info("task %d: %s", self.idx + 1, action.message)
        if not rt.state.outputs_copied:
            err = self._copy_outputs()
            if err is not None:
                return err
            rt.state.outputs_copied = True
            rt._save("outputs copied")
        final_cpu = self._job_cpu()
        rt.state.cpu_done = max(rt.state.cpu_done, final_cpu)
        rt.state.task_cpu_checkpoint = 0.0
        # the job's operation counts so far (the last report's: this task's on top of the earlier ones)
        rt.state.fpops_done = max(_nn(rt.state.fpops_done), _nn(self.ops[0]))
        rt.state.intops_done = max(_nn(rt.state.intops_done), _nn(self.ops[1]))
        rt.state.task_index = self.idx + 1
        rt.state.task_started = False
        rt.state.outputs_copied = False
        rt.state.task_finish = None
        rt.state.env_failures = 0
        if not rt._save("task done"):
            return Outcome(
                "temporary_exit", 0, "cannot save the bridge's state (is the disk full?)", delay=600
            )
        log.info("task %d done", self.idx + 1)
        return None

    def _copy_outputs(self) -> Outcome | None:
        rt = self.rt
        if self.share_dir == rt.slot:
            return None
        for raw in getattr(self.desc, "copy_files_from_vm", ()) or ():
            name = raw[2:] if raw.startswith("./") else raw
            dest = resolve_logical(rt.slot, name)
            try:
                self.share.copy_out(os.path.basename(name), dest, _max_output(rt))
            except GuestFileRefused as e:
                return Outcome(
                    "finish",
                    int(ExitCode.EXIT_CHILD_FAILED),
                    f"output file {name!r} was refused ({e.reason}): {e}",
                )
            except FileNotFoundError:
                return Outcome(
                    "finish",
                    int(ExitCode.EXIT_CHILD_FAILED),
                    f"the task did not produce its output file {name!r} (copy_file_from_VM)",
                )
            except OSError as e:
                return Outcome(
                    "temporary_exit",
                    0,
                    f"cannot copy the output file {name!r} back ({e.strerror})",
                    delay=600,
                )
        return None


_CONTINUE = object()
_APP_STATES = frozenset({VMState.RUNNING, VMState.PAUSED, VMState.EXITED})


def _max_output(rt: Runtime) -> int:
    bound = rt.init_data.rsc_disk_bound
    if bound and math.isfinite(bound) and bound > 0:
        return int(bound)
    return 16 * 1024**3


__all__ = ["Outcome", "Runtime", "default_backend_factory", "replace"]
