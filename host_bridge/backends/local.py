"""The local backend: the task runs as a plain process tree on the host, the share as its working dir.

The main program is started in its own session (and process group) with ``PR_SET_PDEATHSIG = SIGKILL``,
so a killed bridge does not leave its direct child running. Note: the death signal fires when the
*thread* that called ``start()`` ends, so call it from a thread that lives as long as the task (the
runtime's main loop).

The tree is tracked by process group and by psutil's ``children(recursive=True)``; processes seen once
are remembered, so a grandchild re-parented to init (its parent exited) is still paused, counted and
killed. Every process of the tree inherits ``BOINC_BRIDGE_OWNER=<owner tag>``: ``restore()`` (after a
bridge restart) and ``poweroff()`` use it to find leftovers that escaped both (e.g. a double fork with
``setsid``). Only processes of our own uid are ever signalled.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import types
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from host_bridge import _frozen
from host_bridge.backends.base import BackendError, BackendStatus, ConsoleEndpoints, TaskSpec, VMState
from host_bridge.backends.local_settings import LocalSettings
from host_bridge.osutil import child_preexec
from host_bridge.share import GuestFileRefused, Share


def _lazy_import(name: str) -> types.ModuleType:
    """``name``, loaded on first attribute access (the importlib documentation's lazy-import recipe).
    psutil takes ~25 ms to import here: the task is started before that is paid (start-up target)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


if TYPE_CHECKING:
    import psutil
else:
    psutil = _lazy_import("psutil")


logger = logging.getLogger(__name__)

__all__ = ["OWNER_ENV", "LocalBackend", "LocalSettings"]

OWNER_ENV = "BOINC_BRIDGE_OWNER"
GUEST_DIR_ENV = "BOINC_GUEST_DIR"


def _in_python_mode(task: TaskSpec) -> bool:
    """Whether the task is a Python program run by the single-file bundle in python mode."""
    return any(k == _frozen.PYTHON_MODE_ENV for k, _v in task.env)


def _open_stdio(share: Share, name: str, *, write: bool) -> int:
    """A standard stream file for the task: a host path (a BOINC-wrapper-style task's logical file,
    resolved by the runtime) opened as BOINC's wrapper does (stdin read, stdout / stderr appended), or a
    name in the share, opened with the share's hostile-file rules. The caller closes it."""
    if not os.path.isabs(name):
        return share.open_append(name) if write else share.open_input(name)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT if write else os.O_RDONLY
    try:
        return os.open(name, flags | os.O_CLOEXEC | os.O_NOCTTY, 0o644)
    except OSError as e:
        raise OSError(e.errno, f"{name}: {e.strerror}") from None


def _exit_code(wstatus: int) -> int:
    if os.WIFSIGNALED(wstatus):
        return -os.WTERMSIG(wstatus)
    return os.WEXITSTATUS(wstatus)


_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` from /proc/PID/task/TID/children (no scan of every process)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return out


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _parse_stat(data: bytes) -> tuple[bytes, float, int]:
    rest = data[data.rindex(b")") + 2 :].split()
    ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return rest[0], ticks / _CLK_TCK, int(rest[19])


class _StatReader:
    """(state letter, CPU seconds including reaped children, start time in clock ticks) of a process from
    its /proc/PID/stat: the figures psutil's ``cpu_times()`` gives (utime + stime + cutime + cstime), at
    a fraction of the cost (psutil reads the file again for each of ``is_running()``, ``status()`` and
    ``cpu_times()``: ~0.3 ms a poll here). The file of each process measured is kept open (up to
    ``MAX_OPEN``) and re-read with one ``pread`` (the kernel regenerates it at offset 0): one system
    call per process per poll instead of open + read + close. An open file keeps naming the process it
    was opened for: once that process is gone it reads ESRCH, never another process that got its pid."""

    MAX_OPEN = 64

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}

    def read(self, pid: int) -> tuple[bytes, float, int] | None:
        """The figures, or None when the process is gone (or unreadable)."""
        fd = self._fds.get(pid)
        try:
            if fd is None:
                fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
                if len(self._fds) < self.MAX_OPEN:
                    self._fds[pid] = fd
                else:  # a very large tree: the rest are read the plain way
                    try:
                        return _parse_stat(os.read(fd, 4096))
                    finally:
                        os.close(fd)
            return _parse_stat(os.pread(fd, 4096, 0))
        except (OSError, ValueError, IndexError):
            self._drop(pid)
            return None

    def keep_only(self, pids: Iterable[int]) -> None:
        """Close the files of processes not in ``pids``."""
        keep = set(pids)
        for pid in [p for p in self._fds if p not in keep]:
            self._drop(pid)

    def close(self) -> None:
        self.keep_only(())

    def _drop(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _descendants(p: psutil.Process) -> list[psutil.Process]:
    """All descendants of ``p``. Walks the kernel's per-task children lists where the kernel has them
    (CONFIG_PROC_CHILDREN); psutil's ``children(recursive=True)`` reads every process in /proc, which
    costs far more than the bridge's CPU budget when done every poll."""
    if not _PROC_CHILDREN:
        return p.children(recursive=True)
    result: list[psutil.Process] = []
    todo = [p.pid]
    seen = {p.pid}
    while todo:
        for c in _child_pids(todo.pop()):
            if c in seen:
                continue
            seen.add(c)
            try:
                result.append(psutil.Process(c))
            except psutil.Error:
                continue
            todo.append(c)
    return result


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)


def _wait_dead(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has ended (a zombie counts as ended: its reaper may be slow);
    returns those still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if _alive(p)]
    return alive


def find_owned(tag: str, *, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Live processes of our uid whose environment has ``BOINC_BRIDGE_OWNER=<tag>``."""
    if not tag:
        return []
    uid = os.getuid()
    skip = {os.getpid(), *exclude}
    found = []
    for p in psutil.process_iter(["uids", "status"]):
        try:
            if p.pid in skip or p.info["uids"] is None or p.info["uids"].real != uid:
                continue
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(OWNER_ENV) == tag:
                found.append(p)
        except psutil.Error:
            continue
    return found


class LocalBackend:
    """Backend verbs for a task run as a local process tree. See the module doc."""

    name = "local"

    def __init__(
        self,
        settings: LocalSettings | None = None,
        *,
        grace: float = 2.0,
        cpu_interval: float = 0.5,
        discover_interval: float = 5.0,
    ) -> None:
        self.settings = settings or LocalSettings()
        self.grace = grace
        self.cpu_interval = cpu_interval
        # new descendants are looked for this often (s); known ones are measured every cpu_interval. A
        # process reaped by its parent counts at once (in the parent's children times).
        self.discover_interval = discover_interval
        self._cpu_at = -math.inf
        self._walk_at = -math.inf
        self._task: TaskSpec | None = None
        self._share: Share | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None  # exit_fd()
        self._root: psutil.Process | None = None
        self._known: dict[int, psutil.Process] = {}
        self._start_ticks: dict[int, int] = {}  # pid -> start time (clock ticks) when first seen
        self._stat = _StatReader()
        self._swept = False  # powered off: the tree is gone and the owner-tag sweep found nothing alive
        self._paused = False
        self._exit_code: int | None = None
        self._root_cpu_final = 0.0  # rusage of the reaped main program (incl. its reaped descendants)
        self._cpu_max = 0.0

    # -- verbs -------------------------------------------------------------------------------------------
    def create(self, task: TaskSpec, share: Share) -> None:
        """``share``: the task's working directory (``task.share``), the runtime's: never closed here."""
        if not task.argv:
            raise BackendError(f"task {task.name}: no program to run (empty argv); check the job file")
        self._task, self._share = task, share

    def _spec(self) -> tuple[TaskSpec, Share]:
        if self._task is None or self._share is None:
            raise BackendError("local backend: create() was not called")
        return self._task, self._share

    def _resolve_program(self, task: TaskSpec, env: dict[str, str]) -> str:
        prog = task.argv[0]
        share = Path(task.share)
        if os.path.isabs(prog):
            path: str | None = prog
        elif "/" in prog or (share / prog).exists():
            path = str(share / prog)
        else:
            path = shutil.which(prog, path=env.get("PATH", os.defpath))
        if path is None or not os.path.exists(path):
            raise BackendError(
                f"task {task.name}: program {prog!r} not found (looked in the shared folder {share}"
                f"{'' if '/' in prog else ' and on PATH'}); check the job file's application name and "
                "that the app version ships the file"
            )
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or not os.access(path, os.X_OK):
            raise BackendError(
                f"task {task.name}: program {path} is not an executable file; make it executable "
                "(chmod +x, or <executable/> in the app version's file_info)"
            )
        # a Python program run with the bridge's own interpreter: missing is the job's error, as for
        # any program (the interpreter would fail with its own message and status)
        script = task.argv[1] if len(task.argv) > 1 else ""
        own_python = os.path.realpath(path) == os.path.realpath(sys.executable)
        if own_python and script.endswith(".py") and not (share / script).is_file():
            raise BackendError(
                f"task {task.name}: Python program {script!r} not found (looked in the shared folder "
                f"{share}); check the job file's application name and that the app version ships "
                "the file"
            )
        return path

    def start(self) -> None:
        task, share = self._spec()
        if self._proc is not None and self._exit_code is None:
            return  # already running
        env = dict(os.environ)
        env.update(dict(task.env))
        env[GUEST_DIR_ENV] = str(task.share)
        env[OWNER_ENV] = task.owner_tag
        program = self._resolve_program(task, env)
        fds: list[int] = []
        try:
            # Unnamed stdout / stderr are the bridge's own (as with BOINC's wrapper: under the client,
            # stderr is the slot's stderr.txt, which the project gets back with the result).
            try:
                stdin = _open_stdio(share, task.stdin, write=False) if task.stdin else subprocess.DEVNULL
                if task.stdin:
                    fds.append(stdin)
                stdout = _open_stdio(share, task.stdout, write=True) if task.stdout else None
                if stdout is not None:
                    fds.append(stdout)
                stderr = _open_stdio(share, task.stderr, write=True) if task.stderr else None
                if stderr is not None:
                    fds.append(stderr)
            except (OSError, GuestFileRefused) as e:
                raise BackendError(
                    f"task {task.name}: standard stream file ({e}); check the job file's "
                    "stdin_filename / stdout_filename / stderr_filename"
                ) from e
            try:
                self._proc = subprocess.Popen(
                    [program, *task.argv[1:]],
                    executable=program,
                    cwd=task.share,
                    env=env,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    close_fds=True,
                    start_new_session=True,
                    preexec_fn=child_preexec(os.getpid(), priority=task.priority),
                )
            except OSError as e:
                raise BackendError(f"task {task.name}: cannot start {program}: {e.strerror or e}") from e
        finally:
            for fd in fds:
                os.close(fd)
        self._root = psutil.Process(self._proc.pid)
        self._known = {self._proc.pid: self._root}
        self._start_ticks = {}
        self._stat.close()
        self._swept = False
        self._walk_at = -math.inf
        self._paused = False
        self._exit_code = None
        self._root_cpu_final = 0.0
        self._cpu_max = 0.0
        self._cpu_at = -math.inf
        shown = program
        if _in_python_mode(task):  # the single-file bundle as python
            shown = f"{' '.join(task.argv[1:2]) or 'python'} with the bundle's Python"
        logger.info("task %s: started %s (pid %d) in %s", task.name, shown, self._proc.pid, task.share)

    def _reap(self) -> bool:
        """Reap the main program if it ended; True once it has."""
        if self._proc is None:
            return False
        if self._exit_code is not None:
            return True
        try:
            pid, wstatus, rusage = os.wait4(self._proc.pid, os.WNOHANG)
        except ChildProcessError:
            pid, wstatus, rusage = self._proc.pid, 0, None
        if pid == 0:
            return False
        self._exit_code = _exit_code(wstatus)
        self._proc.returncode = self._exit_code
        if rusage is not None:
            self._root_cpu_final = rusage.ru_utime + rusage.ru_stime
        self._known.pop(self._proc.pid, None)
        return True

    def _tree(self) -> list[psutil.Process]:
        """The live processes of the task: the main program, its descendants, and those seen before."""
        found: dict[int, psutil.Process] = {}
        for p in list(self._known.values()):
            if not _alive(p):
                continue
            found[p.pid] = p
            with contextlib.suppress(psutil.Error):
                for c in _descendants(p):
                    found.setdefault(c.pid, c)
        self._known = dict(found)
        if self._root is not None and self._exit_code is None:
            self._known.setdefault(self._root.pid, self._root)
        return list(found.values())

    def _tree_cpu(self, *, discover: bool) -> float:
        """CPU seconds of the task's tree (what ``_tree`` finds, summed as psutil's ``cpu_times()`` would),
        reading each known process's /proc/PID/stat once. With ``discover``, the kernel's children lists
        are walked too and newcomers join ``_known`` (that walk is the costly part: several /proc reads
        per process). A process is ours while its start time is the one recorded when it was first seen
        (a reused pid is not)."""
        total = self._root_cpu_final
        todo = list(self._known)
        if self._root is not None and self._exit_code is None and self._root.pid not in self._known:
            todo.append(self._root.pid)
        seen: set[int] = set()
        live: dict[int, psutil.Process] = {}
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            st = self._stat.read(pid)
            if st is None or st[0] in (b"Z", b"X", b"x"):
                continue
            if self._start_ticks.setdefault(pid, st[2]) != st[2]:
                continue  # the pid now names another process
            p = self._known.get(pid)
            if p is None:
                try:
                    p = psutil.Process(pid)
                except psutil.Error:
                    continue
            live[pid] = p
            total += st[1]
            if not discover:
                continue
            if _PROC_CHILDREN:
                todo.extend(_child_pids(pid))
            else:  # no per-task children lists: psutil's scan (costly, rare kernels)
                with contextlib.suppress(psutil.Error):
                    todo.extend(c.pid for c in p.children(recursive=True))
        for pid in [k for k in self._start_ticks if k not in live]:
            del self._start_ticks[pid]
        self._stat.keep_only(live)
        self._known = live
        return total

    def _group_alive(self, tree: list[psutil.Process]) -> bool:
        """Whether the main program's process group id still names our group (never signal a reused id)."""
        assert self._proc is not None
        if self._exit_code is None:
            return True  # not reaped: the pid (and so the group id) cannot have been reused
        for p in tree:
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) == self._proc.pid:
                    return True
        return False

    def _signal_tree(self, sig: int) -> list[psutil.Process]:
        """Signal the process group, then every process of the tree, until no new process shows up.

        A SIGTERM to a Python task of the single-file bundle goes to its bootloader, which passes it on
        to the Python it runs: sent to both, the program got it two to four times (a handler that
        prints then failed with "reentrant call"), where a Python install's program gets it once."""
        signalled: set[int] = set()
        procs: list[psutil.Process] = []
        forwarded = self._forwarded_by_bootloader() if sig == signal.SIGTERM else set()
        for _ in range(20):
            tree = self._tree()
            if not forwarded and self._proc is not None and self._group_alive(tree):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, sig)
            new = [p for p in tree if p.pid not in signalled and p.pid not in forwarded]
            if not new:
                break
            _signal_all(new, sig)
            signalled.update(p.pid for p in new)
            procs.extend(new)
        return procs

    def _forwarded_by_bootloader(self) -> set[int]:
        """The pids a python-mode task's bootloader passes signals on to (its children); empty for any
        other task, or once the bootloader has ended."""
        task = self._task
        if task is None or self._root is None or self._exit_code is not None or not _in_python_mode(task):
            return set()
        try:
            return {c.pid for c in self._root.children()}
        except psutil.Error:
            return set()

    def pause(self) -> None:
        if self._proc is None or self._paused or self._reap():
            return
        procs = self._signal_tree(signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + 1.0  # SIGSTOP is asynchronous: wait until they are stopped
        while time.monotonic() < deadline:
            running = [p for p in procs if _alive(p) and p.status() != psutil.STATUS_STOPPED]
            if not running:
                break
            time.sleep(0.005)

    def resume(self) -> None:
        if self._proc is None or not self._paused:
            return
        self._signal_tree(signal.SIGCONT)
        self._paused = False

    def poll(self) -> BackendStatus:
        """Cheap enough to call every tick: the exit check is one waitpid; the process tree's CPU is
        re-measured at most every ``cpu_interval`` seconds (and at the end)."""
        if self._task is None:
            return BackendStatus(VMState.ABSENT)
        if self._proc is None:
            return BackendStatus(VMState.CREATED)
        ended = self._reap()
        now = time.monotonic()
        if ended or now - self._cpu_at >= self.cpu_interval:
            self._cpu_at = now
            discover = ended or now - self._walk_at >= self.discover_interval
            if discover:
                self._walk_at = now
            self._cpu_max = max(self._cpu_max, self._tree_cpu(discover=discover))
        if ended:
            return BackendStatus(VMState.EXITED, exit_code=self._exit_code, cpu_time=self._cpu_max)
        state = VMState.PAUSED if self._paused else VMState.RUNNING
        return BackendStatus(state, cpu_time=self._cpu_max)

    def checkpoint(self) -> bool:
        return False  # no process-level checkpoint: the app's own checkpoint files survive

    def restore(self) -> bool:
        """Kill processes left over from an earlier bridge run of the same owner tag; always False."""
        task, _share = self._spec()
        own = {p.pid for p in self._tree()} if self._proc is not None else set()
        leftovers = find_owned(task.owner_tag, exclude=own)
        if leftovers:
            logger.warning(
                "task %s: killing %d process(es) left over from an earlier run (owner %s): %s",
                task.name,
                len(leftovers),
                task.owner_tag,
                ", ".join(str(p.pid) for p in leftovers),
            )
            self._terminate(leftovers, grace=min(self.grace, 0.5))
        return False

    def _terminate(self, procs: list[psutil.Process], *, grace: float) -> None:
        _signal_all(procs, signal.SIGTERM)
        _signal_all(procs, signal.SIGCONT)  # a stopped process gets its pending SIGTERM now
        alive = _wait_dead(procs, grace)
        if alive:
            _signal_all(alive, signal.SIGKILL)
            for p in _wait_dead(alive, 5.0):
                logger.error("process %d did not die after SIGKILL (state %s)", p.pid, _status(p))

    def _done(self) -> bool:
        self._reap()
        return self._exit_code is not None and not self.processes()

    def poweroff(self) -> None:
        """SIGTERM the tree (continuing it if stopped), SIGKILL what is left after ``grace`` seconds,
        reap the main program; then kill anything else carrying our owner tag."""
        if self._proc is None or self._task is None or self._swept:
            return  # nothing started, or already powered off (cleanup() after poweroff(): no second scan)
        task = self._task
        if not self._done():
            self._signal_tree(signal.SIGTERM)
            self._signal_tree(signal.SIGCONT)  # a stopped process gets its pending SIGTERM now
            self._paused = False
            deadline = time.monotonic() + self.grace
            while not self._done() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not self._done():
                self._signal_tree(signal.SIGKILL)
                deadline = time.monotonic() + 5.0
                while not self._done() and time.monotonic() < deadline:
                    time.sleep(0.01)
                for p in self.processes():
                    logger.error(
                        "task %s: process %d survived SIGKILL (state %s)", task.name, p.pid, _status(p)
                    )
        escaped = find_owned(task.owner_tag) if task.owner_tag else []
        if escaped:  # e.g. a double-forked daemon that left both the group and the tree
            logger.warning(
                "task %s: %d process(es) escaped the process tree; killing them", task.name, len(escaped)
            )
            self._terminate(escaped, grace=0.2)
        self._paused = False
        # the tree is gone and what carried our tag is dead: nothing of this run can start anything now
        self._swept = self._done()
        if self._swept:  # a Python task of the single-file bundle killed before it removed its unpacking
            _frozen.remove_unpacked_of(self._proc.pid)

    def discard(self) -> None:
        """Nothing is kept for later runs: as ``cleanup``."""
        self.cleanup()

    def cleanup(self) -> None:
        self.poweroff()
        self._stat.close()
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    def console(self) -> ConsoleEndpoints:
        """A host process: a project's graphics app reaches it directly, nothing is forwarded."""
        return ConsoleEndpoints(direct=True)

    def exit_fd(self) -> int | None:
        """A pidfd of the task's main process (Linux >= 5.3): readable once it has ended."""
        if self._pidfd is None and self._proc is not None and self._exit_code is None:
            pidfd_open = getattr(os, "pidfd_open", None)
            if pidfd_open is not None:
                with contextlib.suppress(OSError):
                    self._pidfd = pidfd_open(self._proc.pid)
        return self._pidfd

    # -- introspection (tests, diagnostics) ----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def processes(self) -> list[psutil.Process]:
        """The task's live processes (main program first if alive)."""
        return [p for p in self._tree() if _alive(p)]


def _status(p: psutil.Process) -> str:
    try:
        return p.status()
    except psutil.Error:
        return "gone"
