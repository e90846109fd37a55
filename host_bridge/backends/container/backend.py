"""The container backend: one task in a podman (or docker) container, the task's share bind-mounted.

Lifecycle (docs/containers.md):

- ``start``: the image is made ready (loaded from an archive, built from a Dockerfile once per host and
  reused, or found on the host; never pulled unless the job allows it), then ``create`` with the task's
  ownership label, ``--network none`` unless asked, ``--cpus`` from the task's threads, ``--memory``
  from the job, the share mounted at ``workdir``; then ``start``. A container left by an earlier run
  of the same task (same label) is removed first.
- ``pause`` / ``resume``: the engine's ``pause`` / ``unpause`` (the cgroup freezer).
- ``poll``: the container's main process is watched through a pidfd (no engine call while it runs);
  CPU seconds are read from the container's cgroup (``cpuacct.usage`` / ``cpu.stat``) at most every
  ``cpu_interval`` s, falling back on ``stats``; the exit code comes from ``inspect`` once it ended.
- ``checkpoint`` (quit): a CRIU checkpoint exported into the slot (``criu.py``: only where CRIU >= 4.1
  works; a restore needs ``mntns-compat-mode`` for podman's ``--init``), then the container is removed;
  otherwise False and the app's own checkpoint is what survives.
- ``restore`` (a restarted bridge): a container with the task's label is reattached (running, paused or
  ended: its exit code is the task's) and one never started is removed; else the CRIU export is
  imported (the restored processes go on from their memory). An export is only ever restored if this
  backend wrote it: a stop without export, or a fresh start, removes the file.
- Orphans: the first ``start`` / ``restore`` of a bridge removes containers of finished slots
  (``orphans.py``: labels name the slot and result).
- ``poweroff``: ``stop`` (SIGTERM, SIGKILL after ``stop_grace``), then ``rm``; ``cleanup`` also
  removes any other container of the task's label. Containers of other labels are never touched.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from host_bridge.backends.base import BackendError, BackendStatus, ConsoleEndpoints, TaskSpec, VMState
from host_bridge.share import GuestFileRefused, Share

from . import criu
from .command import LOG_MAX, SHELL, gpu_args, gpu_unavailable, image_command, redirect_command
from .criu import criu_works
from .orphans import OWNER_LABEL, RESULT_LABEL, SLOT_LABEL, collect_orphans
from .podman import Engine, explain
from .settings import ContainerSettings

log = logging.getLogger(__name__)

__all__ = ["OWNER_LABEL", "ContainerBackend", "criu_works"]

IMAGE_PREFIX = "localhost/boinc-host-bridge"
GUEST_DIR_ENV = "BOINC_GUEST_DIR"
_orphans_collected = False  # collect_orphans ran in this bridge
_LOG_LIMIT = 1 << 20  # bytes of the container's output kept at its end


def _file_digest(path: Path, limit: int = 4 << 20) -> str:
    st = path.stat()
    with open(path, "rb") as f:
        crc = zlib.crc32(f.read(limit))
    return f"{crc:08x}{st.st_size:x}"


class ContainerBackend:
    """Backend verbs for a task run in a container. See the module doc."""

    name = "container"

    def __init__(
        self,
        settings: ContainerSettings | None = None,
        *,
        engine: Engine | None = None,
        cpu_interval: float = 1.0,
        inspect_interval: float = 1.0,
    ) -> None:
        self.settings = settings or ContainerSettings()
        self._engine = engine
        self.cpu_interval = cpu_interval
        self.inspect_interval = inspect_interval  # without a pidfd (docker, or no pid): inspect this often
        self._task: TaskSpec | None = None
        self._share: Share | None = None
        self._own_share = False
        self._id: str | None = None
        self._pidfd: int | None = None
        self._cgroup_cpu: Path | None = None
        self._cgroup_v2 = False
        self._paused = False
        self._exit_code: int | None = None
        self._error = ""
        self._cpu = 0.0
        self._cpu_at = -math.inf
        self._inspect_at = -math.inf
        self._host_port: int | None = None
        self.image_ref = ""  # the image the container runs (after start)

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(self.settings.engine)
        return self._engine

    def _spec(self) -> TaskSpec:
        if self._task is None:
            raise BackendError("container backend: create() was not called")
        return self._task

    @property
    def label(self) -> str:
        return f"{OWNER_LABEL}={self._spec().owner_tag}"

    @property
    def container_id(self) -> str | None:
        return self._id

    # -- verbs --------------------------------------------------------------------------------------
    def create(self, task: TaskSpec, share: Share | None = None) -> None:
        if not task.owner_tag:
            raise BackendError(f"task {task.name}: a container task needs an owner tag (a bug)")
        if share is None:
            try:
                share = Share(task.share)
            except (OSError, GuestFileRefused) as e:
                raise BackendError(f"task {task.name}: cannot use the shared folder {task.share}: {e}") from e
            self._own_share = True
        self._task, self._share = task, share

    def start(self) -> None:
        task = self._spec()
        if self._id is not None:
            if self._paused:  # reattached to a paused container: the loop decides suspension afresh
                self.resume()
            return
        self._collect_orphans()
        for c in self.engine.containers_with_label(self.label):
            ident, state = str(c.get("Id") or ""), str(c.get("State") or "").lower()
            # this task's container that restore() did not see (it lists containers once, and podman's list
            # can miss one while it changes state on a loaded host): the same task's, so take it over
            rec = self.engine.inspect(ident) if state in ("running", "paused", "exited", "stopped") else None
            if self._id is None and rec is not None:
                self._attach(rec)
                log.info("task %s: reattached to its container %s (%s)", task.name, ident[:12], state)
                continue
            log.warning("task %s: removing container %s left by an earlier run", task.name, ident[:12])
            self.engine.remove(ident)
        if self._id is not None:
            if self._paused:
                self.resume()
            return
        self._drop_checkpoint()  # a fresh start: an export left in the slot is not this run's
        self.image_ref = self._ensure_image()
        self._check_redirects(task)
        args = self._create_args(task)
        try:
            r = self.engine.run(
                args, what=f"creating the container of task {task.name} (image {self.image_ref})"
            )
        except BackendError as e:
            raise self._start_error(task, e) from None
        ident = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        if not ident:
            raise BackendError(f"container engine: create gave no container id ({explain(r.stderr)})")
        self._id = ident
        try:
            self.engine.run(
                ["start", ident], what=f"starting the container of task {task.name}", temporary=False
            )
        except BackendError as e:
            with contextlib.suppress(BackendError):
                self.engine.remove(ident)
            self._id = None
            raise self._start_error(task, e) from None
        self._attach(self.engine.inspect(ident))
        log.info(
            "task %s: started container %s (image %s) in %s",
            task.name,
            ident[:12],
            self.image_ref,
            task.share,
        )

    def _create_args(self, task: TaskSpec) -> list[str]:
        s = self.settings
        eng = self.engine
        args = ["create"]
        if eng.kind == "podman":
            args += ["--pull", "missing" if s.allow_pull else "never"]
        args += ["--label", self.label, "--name", f"boinc-{task.owner_tag}"]
        if s.slot_dir is not None:  # what tells an orphan of a finished slot (orphans.py)
            args += ["--label", f"{SLOT_LABEL}={s.slot_dir}", "--label", f"{RESULT_LABEL}={s.result_name}"]
        conf = criu.restore_config_path(task.owner_tag) if eng.kind == "podman" else None
        if conf is not None:  # CRIU's options for a restore (criu.py); absent at a dump
            args += ["--annotation", f"{criu.CRIU_CONFIG_ANNOTATION}={conf}"]
        # a small init as PID 1 (catatonit / tini): it passes SIGTERM on to the app (a program that is
        # PID 1 itself ignores it, and every stop would wait the whole grace period) and reaps zombies
        args.append("--init")
        if eng.kind == "podman":  # the output that has no file: capped in the engine's log (command.py)
            args += ["--log-opt", f"max-size={LOG_MAX}"]
        if not any(a.split("=")[0] in ("--network", "--net") for a in s.create_args):
            # user-mode networking when asked: no change to the host's firewall tables or ip_forward
            args += ["--network", "slirp4netns" if (s.network or task.network) else "none"]
        args += ["--cpus", str(max(1, task.nthreads))]
        memory = s.memory_mb or task.memory_mb
        if memory:
            args += ["--memory", f"{memory}m"]
        args += ["-v", f"{Path(task.share).resolve()}:{s.workdir}", "-w", s.workdir]
        if s.project_dir_mount and s.project_dir is not None:
            args += ["-v", f"{s.project_dir}:{s.project_dir_mount}:ro"]
        for m in s.mounts:
            args += ["-v", m]
        for p in s.portmaps:
            args += ["-p", p]
        if s.web_graphics_guest_port:
            args += ["-p", f"127.0.0.1::{s.web_graphics_guest_port}"]
        if s.use_gpu:
            args += gpu_args(eng.kind)
        env = list(task.env)  # the planner leaves out its host-only PYTHONPATH for container tasks
        env.append((GUEST_DIR_ENV, s.workdir))
        for k, v in env:
            args += ["-e", f"{k}={v}"]
        args += list(s.create_args)
        argv = [a for a in task.argv if a] if task.argv and task.argv[0] else []
        if _redirected(task):
            # stdin from the share's file, stdout / stderr appended to the share's files, redirected
            # inside the container (command.py's doc: it survives a bridge restart and a CRIU
            # checkpoint, which an attached pipe would not, and keeps the whole output)
            command = image_command(eng.image_config(self.image_ref), argv)
            if not command:
                raise BackendError(
                    f"task {task.name}: the image {self.image_ref} has no command (ENTRYPOINT / CMD) and "
                    f"the job file names no <application>: nothing to run with its {_redirect_tags(task)}"
                )
            redirect = redirect_command(
                s.workdir, command, stdin=task.stdin, stdout=task.stdout, stderr=task.stderr
            )
            return [*args, "--entrypoint", SHELL, self.image_ref, *redirect]
        args.append(self.image_ref)
        args += argv  # none: the image's own CMD / ENTRYPOINT (docker_wrapper's apps)
        return args

    def _check_redirects(self, task: TaskSpec) -> None:
        """The redirects of the task's files (command.py) are possible. They replace the image's entry
        point, so the job's container arguments cannot set another. The ``<stdin_filename>`` must be a
        regular file in the share before the container is made (BOINC's wrapper fails the task when it
        cannot open it; so does the local backend): a permanent error naming the file and the tag. A
        BOINC link file in the slot is refused too: the container sees the slot, not the project folder
        the link points into."""
        s = self.settings
        if _redirected(task) and any(
            a == "--entrypoint" or a.startswith("--entrypoint=") for a in s.create_args
        ):
            raise BackendError(
                f"task {task.name}: {_redirect_tags(task)} cannot be combined with --entrypoint in the "
                "job's container arguments (the redirects run the image's command under /bin/sh); name "
                "the program in <application> instead"
            )
        if not task.stdin:
            return
        share = self._share
        where = f"the shared folder {task.share}"
        try:
            if share is None:
                raise FileNotFoundError(task.stdin)
            os.close(share.open_input(task.stdin))
        except FileNotFoundError:
            raise BackendError(
                f"task {task.name}: the stdin file {task.stdin!r} (the job file's <stdin_filename>) is not "
                f"in {where}; the workunit or app version must provide it (with <copy_file_to_VM> when "
                "the task has a shared/ folder)"
            ) from None
        except (OSError, GuestFileRefused) as e:
            raise BackendError(
                f"task {task.name}: cannot use the stdin file {task.stdin!r} (the job file's "
                f"<stdin_filename>) in {where}: {e}"
            ) from None
        slot = s.slot_dir
        if slot is not None and Path(task.share).resolve() == slot.resolve():
            from host_bridge.slot import SlotNameError, resolve_logical

            with contextlib.suppress(SlotNameError, OSError):
                target = resolve_logical(slot, task.stdin)
                if target != slot / task.stdin:
                    raise BackendError(
                        f"task {task.name}: the stdin file {task.stdin!r} (the job file's <stdin_filename>)"
                        f" is a BOINC link in the slot to {target}, which the container cannot see; give "
                        "the file <copy_file/> in the workunit or app version, or copy it into the task's "
                        f"shared folder with <copy_file_to_VM>{task.stdin}</copy_file_to_VM>"
                    )

    def _start_error(self, task: TaskSpec, e: BackendError) -> BackendError:
        """The error of a failed create / start, made specific: the host cannot give the GPU the job
        asks for (temporary: command.py), or the image has no shell for the stdin redirect."""
        text = str(e)
        if self.settings.use_gpu:
            gpu = gpu_unavailable(
                text, engine_kind=self.engine.kind, tag=self.settings.gpu_tag, task_name=task.name
            )
            if gpu is not None:
                return gpu
        low = text.lower()
        if _redirected(task) and SHELL in text and ("not found" in low or "no such file" in low):
            return BackendError(f"task {task.name}: {self._no_shell(task)} ({text})")
        return e

    def _no_shell(self, task: TaskSpec) -> str:
        """Why a task with redirected files cannot run in an image without SHELL, and what to do."""
        image = self.image_ref or "(the task's image)"
        return (
            f"the job file's {_redirect_tags(task)} needs {SHELL} in the container image (the app runs as "
            f"{SHELL} -c 'exec APP <IN >>OUT' so that its standard input and output are the files), and the "
            f"image {image} has none: add a shell to the image (e.g. busybox) or have the app open the "
            "files by name"
        )

    def _ensure_image(self) -> str:
        """The image to run, made ready on this host (see ContainerSettings)."""
        s = self.settings
        eng = self.engine
        if s.image_archive is not None:
            src = Path(s.image_archive)
            if not src.is_file():
                raise BackendError(
                    f"the container image archive {src} is missing; the app version or workunit must "
                    "ship it (check the job file's <container_image>)"
                )
            tag = s.image or f"{IMAGE_PREFIX}-{_file_digest(src)}:latest"
            if not eng.image_exists(tag):
                if s.archive_is_rootfs:
                    eng.import_rootfs(src, tag)
                else:
                    eng.load(src, tag)
            return tag
        if s.dockerfile is not None:
            df = Path(s.dockerfile)
            if not df.is_file():
                raise BackendError(
                    f"{df}: the Dockerfile is missing; the app version must ship it as a file with "
                    "<copy_file/> (docker_wrapper's convention)"
                )
            tag = s.image or f"{IMAGE_PREFIX}-{self._context_digest(df)}:latest"
            if not eng.image_exists(tag):
                log.info("building the image %s from %s (once per host)", tag, df)
                eng.build(df.parent, tag, dockerfile=df, args=[f"--build-arg={a}" for a in s.build_args])
            return tag
        if not s.image:
            raise BackendError(
                "the container task names no image: give <container_image> in job.xml, or ship a "
                "Dockerfile (or job.toml's image_name) with the app version"
            )
        if not s.allow_pull and not eng.image_exists(s.image):
            raise BackendError(
                f"the container image {s.image!r} is not on this host and the job does not allow pulling "
                "it; ship it with the app version (an image archive or a Dockerfile)"
            )
        return s.image

    @staticmethod
    def _context_digest(dockerfile: Path) -> str:
        """What the built image depends on: the Dockerfile and the context files it names."""
        text = dockerfile.read_bytes()
        parts = [text]
        for word in sorted(set(re.findall(rb"[\w.\-]+", text))):
            f = dockerfile.parent / word.decode(errors="replace")
            if word not in (b".", b"..") and f.is_file() and not f.is_symlink():
                parts.append(word + _file_digest(f).encode())
            elif f.is_symlink() and f.is_file():  # BOINC's slot files may be links
                parts.append(word + _file_digest(f.resolve()).encode())
        blob = b"\0".join(parts)
        return f"{zlib.crc32(blob):08x}{zlib.adler32(blob):08x}"

    def _attach(self, rec: dict[str, Any] | None) -> None:
        """Track the container of ``rec`` (its inspect record): its main process and cgroup."""
        self._close_pidfd()
        self._cgroup_cpu = None
        if rec is None:
            return
        self._id = str(rec.get("Id") or self._id)
        state = rec.get("State") or {}
        self._paused = bool(state.get("Paused")) or state.get("Status") == "paused"
        pid = int(state.get("Pid") or 0)
        if pid > 0 and hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(pid)
            except OSError:
                self._pidfd = None
        self._cgroup_cpu, self._cgroup_v2 = _cpu_file(str(state.get("CgroupPath") or ""))
        ports = ((rec.get("NetworkSettings") or {}).get("Ports")) or {}
        gp = self.settings.web_graphics_guest_port
        for bind in ports.get(f"{gp}/tcp") or [] if gp else []:
            with contextlib.suppress(TypeError, ValueError):
                self._host_port = int(bind.get("HostPort"))
                break

    def exit_fd(self) -> int | None:
        """A descriptor readable once the container's main process ended (the loop waits on it)."""
        return self._pidfd

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    def pause(self) -> None:
        if self._id is None or self._paused or self._exit_code is not None:
            return
        r = self.engine.run(["pause", self._id], what="pausing the container", check=False)
        if r.returncode != 0 and not self._ended():
            raise BackendError(f"container engine: cannot pause the container: {explain(r.stderr)}")
        self._paused = r.returncode == 0

    def resume(self) -> None:
        if self._id is None or not self._paused:
            return
        r = self.engine.run(["unpause", self._id], what="resuming the container", check=False)
        if r.returncode != 0 and not self._ended():
            raise BackendError(f"container engine: cannot resume the container: {explain(r.stderr)}")
        self._paused = False

    def _ended(self) -> bool:
        rec = self.engine.inspect(self._id) if self._id else None
        return rec is None or (rec.get("State") or {}).get("Status") in ("exited", "stopped")

    def poll(self) -> BackendStatus:
        """Cheap while the container runs (a pidfd check, a cgroup file read every ``cpu_interval``);
        one ``inspect`` when it has ended."""
        if self._task is None:
            return BackendStatus(VMState.ABSENT)
        if self._id is None:
            return (
                BackendStatus(VMState.FAILED, error=self._error)
                if self._error
                else BackendStatus(VMState.CREATED)
            )
        if self._exit_code is None:
            now = time.monotonic()
            if now - self._cpu_at >= self.cpu_interval:
                self._cpu_at = now
                self._sample_cpu()
            if self._pidfd is not None:
                ended = bool(select.select([self._pidfd], [], [], 0)[0])
            else:
                ended = now - self._inspect_at >= self.inspect_interval and self._check_ended()
            if ended:
                self._sample_cpu()  # the cgroup outlives the main process by a moment: its last figure
                self._collect_exit()
        if self._exit_code is not None:
            return BackendStatus(VMState.EXITED, exit_code=self._exit_code, cpu_time=self._cpu)
        if self._error:
            return BackendStatus(VMState.FAILED, error=self._error, cpu_time=self._cpu)
        return BackendStatus(VMState.PAUSED if self._paused else VMState.RUNNING, cpu_time=self._cpu)

    def _check_ended(self) -> bool:
        self._inspect_at = time.monotonic()
        return self._ended()

    def _sample_cpu(self) -> None:
        cpu: float | None = None
        if self._cgroup_cpu is not None:
            try:
                text = self._cgroup_cpu.read_text()
                if self._cgroup_v2:
                    m = re.search(r"usage_usec (\d+)", text)
                    cpu = int(m.group(1)) / 1e6 if m else None
                else:
                    cpu = int(text.strip()) / 1e9
            except (OSError, ValueError):
                cpu = None
        if cpu is None and self._id is not None and self._pidfd is None:
            cpu = self.engine.cpu_seconds(self._id)
        if cpu is not None:
            self._cpu = max(self._cpu, cpu)

    def _collect_exit(self) -> None:
        """The ended container's exit code (the engine records it a moment after the process ends)."""
        assert self._id is not None
        deadline = time.monotonic() + 10.0
        rec = None
        while time.monotonic() < deadline:
            rec = self.engine.inspect(self._id)
            status = (rec or {}).get("State", {}).get("Status")
            if rec is None or status in ("exited", "stopped"):
                break
            time.sleep(0.05)
        self._close_pidfd()
        if rec is None:
            self._error = "the task's container disappeared (removed by someone else?)"
            return
        state = rec.get("State") or {}
        code = int(state.get("ExitCode") or 0)
        self._exit_code = code
        memory = self.settings.memory_mb or self._spec().memory_mb
        if state.get("OOMKilled") or (code == 137 and memory):
            log.error(
                "task %s: the container was killed (exit 137)%s; if the app needs more memory, raise the "
                "job's memory limit (%d MB)",
                self._spec().name,
                " for using more memory than allowed"
                if state.get("OOMKilled")
                else ", probably out of memory",
                memory,
            )
        self._save_logs()

    def _save_logs(self) -> None:
        """The container's output that has no file of its own (the engine's log, capped at LOG_MAX): to
        the bridge's stderr (stderr.txt under the client), as BOINC's wrapper does with a task's unnamed
        output. Named stdout / stderr files are written by the app itself (command.py)."""
        task = self._spec()
        if self._id is None:
            return
        try:
            p = subprocess.run(
                [self.engine.program, "logs", self._id],
                capture_output=True,
                timeout=30,
                env=self.engine.env,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("task %s: cannot read the container's output: %s", task.name, e)
            return
        if _redirected(task) and self._exit_code and b"failed to exec pid1" in p.stderr[-4096:]:
            # the init (catatonit / tini) could not run the redirects' shell: say why it is needed
            log.error(
                "task %s: the container's init could not start %s: %s", task.name, SHELL, self._no_shell(task)
            )
        # what has no file of its own (a named one was written by the app itself: command.py) goes to
        # the bridge's stderr (stderr.txt), as BOINC's wrapper does with a task's unnamed output
        for data, name in ((p.stdout, task.stdout), (p.stderr, task.stderr)):
            data = data[-_LOG_LIMIT:]
            if not data or name:
                continue
            with contextlib.suppress(OSError):
                sys.stderr.buffer.write(data)
                sys.stderr.flush()

    def checkpoint(self) -> bool:
        """A CRIU checkpoint exported beside the slot (``_checkpoint_path``; then the container is
        removed); False where CRIU does not work here: the app's own checkpoint files are then what
        survives.

        The dump stops the container's processes before the archive is written, so the share's files
        are those the checkpoint expects at its restore. The archive is written into a fresh folder
        (never a path the guest could have prepared: podman follows links) and renamed into place."""
        if (
            self._id is None
            or self._exit_code is not None
            or self.engine.kind != "podman"
            or not criu_works()
        ):
            return False
        task = self._spec()
        target = self._checkpoint_path()
        self.resume()  # a paused container cannot be checkpointed
        t0 = time.monotonic()
        try:
            tmpdir = Path(tempfile.mkdtemp(prefix=".hb-checkpoint-", dir=target.parent))
        except OSError as e:
            log.warning("task %s: no room for a container checkpoint beside %s: %s", task.name, target, e)
            return False
        try:
            tmp = tmpdir / target.name
            try:
                self.engine.run(
                    ["container", "checkpoint", "--export", str(tmp), "--file-locks", self._id],
                    what=f"checkpointing the container of task {task.name}",
                    timeout=300,
                )
                os.replace(tmp, target)
            except (BackendError, OSError) as e:
                log.warning("task %s: %s; the app's own checkpoint is used instead", task.name, e)
                return False
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        self._close_pidfd()
        self.engine.remove(self._id)
        self._id = None
        log.info(
            "task %s: container checkpointed to %s (%.1f MB, %.2f s)",
            task.name,
            target,
            target.stat().st_size / 1e6,
            time.monotonic() - t0,
        )
        return True

    def _slot(self) -> Path:
        task = self._spec()
        slot = self.settings.slot_dir or Path(task.share).resolve()
        if self.settings.slot_dir is None and slot.name == "shared":
            slot = slot.parent
        return slot

    def _checkpoint_path(self) -> Path:
        """Where this task's CRIU export is kept: beside the slot, never in it. The slot is the
        container's own folder for docker_wrapper apps (mounted at workdir), so a file there may be the
        guest's; the folder of the slots is the bridge's alone (BOINC mounts no container there). One
        name per slot, result and task (the owner tag)."""
        slot = self._slot()
        return slot.parent / f".hb-ckpt-{slot.name}-{self._spec().owner_tag}.tar.zst"

    def _drop_checkpoint(self) -> None:
        """Remove this task's container checkpoint (after its restore, on a fresh start, on a stop
        without export) and any an earlier result left for this slot."""
        slot = self._slot()
        with contextlib.suppress(OSError):
            for f in slot.parent.glob(f".hb-ckpt-{slot.name}-*.tar.zst"):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    f.unlink()

    def _collect_orphans(self) -> None:
        """Once per bridge: remove containers of finished slots (orphans.py); never this task's."""
        global _orphans_collected
        if _orphans_collected:
            return
        _orphans_collected = True
        collect_orphans(self.engine, keep=self._spec().owner_tag)

    def restore(self) -> bool:
        """After a bridge restart: reattach to this task's container (running, paused or ended), or
        restore a CRIU export; a container never started, or one we cannot use, is removed."""
        task = self._spec()
        self._collect_orphans()
        found = self.engine.containers_with_label(self.label)
        for c in found:
            ident = str(c.get("Id") or "")
            state = str(c.get("State") or "").lower()
            if self._id is None and state in ("running", "paused", "exited", "stopped"):
                rec = self.engine.inspect(ident)
                if rec is not None:
                    self._attach(rec)
                    log.info("task %s: reattached to its container %s (%s)", task.name, ident[:12], state)
                    continue
            log.warning(
                "task %s: removing container %s (%s) left by an earlier run", task.name, ident[:12], state
            )
            self.engine.remove(ident)
        if self._id is not None:
            return True
        ckpt = self._checkpoint_path()
        if not ckpt.is_file() or ckpt.is_symlink():
            return False
        if self.engine.kind != "podman" or not criu_works():
            log.warning(
                "task %s: %s holds a container checkpoint, but CRIU does not work here now: the task "
                "starts again from the app's own checkpoint",
                task.name,
                ckpt,
            )
            self._drop_checkpoint()
            return False
        t0 = time.monotonic()
        try:
            with criu.restore_config(task.owner_tag):
                self.engine.run(
                    ["container", "restore", "--import", str(ckpt)],
                    what=f"restoring the container of task {task.name} from {ckpt}",
                    timeout=300,
                )
        except BackendError as e:
            log.warning("task %s: %s; starting afresh from the app's own checkpoint", task.name, e)
            for c in self.engine.containers_with_label(self.label):  # a half-restored one
                self.engine.remove(str(c.get("Id")))
            return False
        finally:
            self._drop_checkpoint()
        again = self.engine.containers_with_label(self.label)
        if again:
            self._attach(self.engine.inspect(str(again[0].get("Id"))))
        if self._id is None:
            return False
        log.info("task %s: container restored from its checkpoint (%.2f s)", task.name, time.monotonic() - t0)
        return True

    def poweroff(self) -> None:
        """Stop (SIGTERM, then SIGKILL after ``stop_grace``), keep the exit code, remove the container."""
        if self._task is None:
            return
        if self._id is not None:
            ident = self._id
            if self._exit_code is None:
                with contextlib.suppress(BackendError):
                    self.resume()
                r = self.engine.run(
                    ["stop", "--time", str(math.ceil(self.settings.stop_grace)), ident],
                    what="stopping the container",
                    check=False,
                    timeout=self.settings.stop_grace + 30,
                )
                if r.returncode != 0 and "no such" not in r.stderr.lower():
                    log.warning("task %s: stop: %s", self._task.name, explain(r.stderr))
                if self._id is not None:
                    self._collect_exit()
            self._close_pidfd()
            self.engine.remove(ident)
            self._id = None
            self._drop_checkpoint()  # stopped without an export: whatever is there is not ours
        self._paused = False

    def console(self) -> ConsoleEndpoints:
        """The host port forwarded to the job's web_graphics_guest_port (docker_wrapper's web graphics)."""
        return ConsoleEndpoints(host_port=self._host_port)

    def discard(self) -> None:
        """``cleanup``, the checkpoint, and the image this backend made for the task's app version
        (built from its Dockerfile or loaded from its archive) unless another container uses it."""
        image = self.image_ref
        self.cleanup()
        if self._task is not None:
            self._drop_checkpoint()
        if image and image.startswith(IMAGE_PREFIX):
            self.engine.remove_image_if_unused(image)

    def cleanup(self) -> None:
        self.poweroff()
        if self._task is not None:
            for c in self.engine.containers_with_label(self.label):
                self.engine.remove(str(c.get("Id")))
        if self._task is not None and self._exit_code is not None:
            self._drop_checkpoint()
        if self._own_share and self._share is not None:
            self._share.close()
            self._share = None


def _cpu_file(cgroup_path: str) -> tuple[Path | None, bool]:
    """The file with the cgroup's CPU usage: cgroup v1 cpuacct.usage (ns), or v2 cpu.stat."""
    if not cgroup_path:
        return None, False
    rel = cgroup_path.lstrip("/")
    v1 = Path("/sys/fs/cgroup/cpuacct") / rel / "cpuacct.usage"
    if v1.is_file():
        return v1, False
    v2 = Path("/sys/fs/cgroup") / rel / "cpu.stat"
    if v2.is_file():
        return v2, True
    return None, False


def _redirected(task: TaskSpec) -> bool:
    """Whether the task's standard input or output is a file (run under the image's shell: command.py)."""
    return bool(task.stdin or task.stdout or task.stderr)


def _redirect_tags(task: TaskSpec) -> str:
    """The job-file tags of the task's redirected files, for messages."""
    tags = [
        f"<{tag}>{name}</{tag}>"
        for tag, name in (
            ("stdin_filename", task.stdin),
            ("stdout_filename", task.stdout),
            ("stderr_filename", task.stderr),
        )
        if name
    ]
    return " / ".join(tags)
