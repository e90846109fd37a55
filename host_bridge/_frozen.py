"""The bridge as a single-file app version (PyInstaller onefile, built by scripts/build_app_version.sh).

A project ships the bridge to volunteers' hosts as one executable: it carries its Python, the libraries,
the guest SDK and the real BOINC API library (``libboinc_api.so.7`` and ``libboinc.so.7``), since a
volunteer's host has none of them. At start the bootloader unpacks them into a temporary folder
(``sys._MEIPASS``) and runs the bridge there. What differs from a bridge run from a Python install is
here, and nowhere else:

- the BOINC API library is the bundled one (:func:`bundled_file`);
- processes the bridge starts (the task, QEMU, VBoxManage) must not inherit the loader path the
  bootloader set for the bundle (``LD_LIBRARY_PATH``), or a host program would load the bundle's
  libraries instead of its own (:func:`restore_child_environment`);
- there is no ``python`` beside the bridge: a local task's Python program runs with the bundle itself in
  "python mode" (:func:`python_command`, :func:`run_as_python`), which has the standard library, the guest
  SDK and msgpack, as the bridge's own interpreter has in a Python install;
- each process is the child of a bootloader: it dies with it (parent-death signal), and what a killed
  bootloader could not remove is removed later (:func:`sweep_stale_unpacked`, :func:`remove_unpacked_of`).

See docs/shipping.md.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

#: Set in a task's environment when the bundled bridge runs a Python program: the bundle then acts as a
#: Python interpreter instead of a bridge. Only the bundle reads it; it stays set for the program's own
#: children, so that those that run ``sys.executable`` (the bundle) get a Python too.
PYTHON_MODE_ENV = "HOST_BRIDGE_AS_PYTHON"

#: The bootloader keeps the loader path the bridge was started with under this name.
_LD_ORIG = "LD_LIBRARY_PATH_ORIG"

#: A file only the bridge's bundle unpacks (the sweep leaves other PyInstaller programs' folders alone).
_BUNDLE_MARK = "libboinc_api.so.7"


def is_frozen() -> bool:
    """Whether this is the single-file bundle (PyInstaller), not a Python install."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def bundle_dir() -> Path | None:
    """The folder the bundle was unpacked into; None in a Python install."""
    return Path(sys._MEIPASS) if is_frozen() else None  # type: ignore[attr-defined]


def bundled_file(name: str) -> Path | None:
    """A file the bundle carries (e.g. ``libboinc_api.so.7``); None in a Python install or when the
    bundle does not carry it."""
    d = bundle_dir()
    if d is None:
        return None
    p = d / name
    return p if p.is_file() else None


def restore_child_environment(
    environ: dict[str, str] | os._Environ[str] | None = None, *, keep_bootloader_vars: bool = False
) -> None:
    """Give the processes the bridge starts the environment the bridge was started with: the
    ``LD_LIBRARY_PATH`` it had, and none of the bootloader's own ``_PYI_*`` variables (with those, a
    task that is itself a PyInstaller program, or the bundle in python mode, would take the bridge's
    unpacked folder for its own). The bridge's own process is not affected (the dynamic loader read the
    variable when the process started). A no-op in a Python install.

    ``keep_bootloader_vars``: python mode keeps the ``_PYI_*`` variables: there the program's children
    that run ``sys.executable`` (multiprocessing's spawn workers) must reuse its unpacked folder, as
    PyInstaller intends."""
    if not is_frozen():
        return
    env = os.environ if environ is None else environ
    orig = env.pop(_LD_ORIG, None)
    if orig is None:
        env.pop("LD_LIBRARY_PATH", None)
    else:
        env["LD_LIBRARY_PATH"] = orig
    if keep_bootloader_vars:
        return
    for name in [n for n in env if n.startswith("_PYI_") or n == "_MEIPASS2"]:
        del env[name]


def python_command() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """How to run a Python program with the bridge's own interpreter: the command's first words and the
    environment it needs. ``sys.executable`` in a Python install; the bundle itself in python mode in
    the single-file bundle."""
    if is_frozen():
        return (sys.executable,), ((PYTHON_MODE_ENV, "1"),)
    return (sys.executable,), ()


PYTHON_MODE_USAGE = (
    "host-bridge (single-file bundle), python mode: "
    "PROGRAM.py [ARG...] | -c CODE [ARG...] | -m MODULE [ARG...]"
)


#: Python's options without an argument that python mode accepts (only -u has an effect).
_IGNORED_FLAGS = ("-u", "-B", "-E", "-s", "-S", "-I", "-O", "-OO", "-q", "-b", "-bb")


def run_as_python(argv: list[str]) -> int:
    """Act as ``python ARGV...`` (a script, ``-c CODE`` or ``-m MODULE``; -u makes stdout and stderr
    unbuffered, -B, -E, -s, -S, -I, -O, -q and -b are accepted and have no effect; the workers of
    multiprocessing's spawn and forkserver start methods run). The return value is the exit
    status; a ``SystemExit`` raised by the program passes through, an uncaught exception prints its
    traceback and gives 1, as Python does."""
    import runpy
    import traceback

    # PYTHON_MODE_ENV stays set: the program's children that run sys.executable (the bundle) expect a
    # Python too (subprocess.run([sys.executable, ...]), multiprocessing's spawn); other programs ignore it
    args = list(argv)
    if args[:1] == ["--multiprocessing-fork"]:
        # a worker of multiprocessing's spawn / forkserver start method: PyInstaller's run-time hook
        # made freeze_support() run it (and exit) when this argument is there
        import multiprocessing

        sys.argv = [sys.argv[0], *args]
        multiprocessing.freeze_support()
        return 0
    while args and args[0] in _IGNORED_FLAGS:
        if args.pop(0) == "-u":
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(AttributeError, ValueError):
                    stream.reconfigure(write_through=True)  # type: ignore[union-attr]
    if not args or args[0] in ("-", "-i") or (args[0].startswith("-") and args[0] not in ("-c", "-m")):
        print(
            f"{PYTHON_MODE_USAGE}\n"
            f"not supported here: {' '.join(argv) or '(no program)'}. Run the task's program with a "
            "host Python instead (an absolute path in <application>, e.g. /usr/bin/python3).",
            file=sys.stderr,
        )
        return 2
    try:
        if args[0] == "-c":
            if len(args) < 2:
                print("python mode: -c needs the code", file=sys.stderr)
                return 2
            sys.argv = ["-c", *args[2:]]
            sys.path.insert(0, "")
            exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        elif args[0] == "-m":
            if len(args) < 2:
                print("python mode: -m needs the module", file=sys.stderr)
                return 2
            sys.argv = [args[1], *args[2:]]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            script = args[0]
            sys.argv = list(args)
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            runpy.run_path(script, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as e:
        # the program's traceback, as Python prints it: without the frames of this function and runpy
        tb = e.__traceback__
        while tb is not None and _is_runner_frame(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    return 0


def _is_runner_frame(filename: str) -> bool:
    return filename.endswith("_frozen.py") or "runpy" in filename


def stop_with_parent(sig: int) -> int:
    """In the bundle the process is the child of the bootloader: for the bridge, the process the BOINC
    client started and knows; for a task in python mode, the process the bridge started. If that
    bootloader is killed (SIGKILL cannot be passed on), this process gets ``sig`` from the kernel: the
    bridge SIGTERM (it stops the task as for a quit; the job resumes from its checkpoint when started
    again), a python-mode task SIGKILL (as a compiled task whose bridge died: the bridge's death
    SIGKILLs the task's bootloader), instead of running on unseen. Returns the parent's pid."""
    from .osutil import set_parent_death_signal

    parent = os.getppid()
    if not set_parent_death_signal(sig):
        return parent
    if os.getppid() != parent:  # the parent died before the request: nobody will send the signal
        os.kill(os.getpid(), sig)
    return parent
    if os.getppid() != parent:  # the parent died before the request: nobody will send the signal
        os.kill(os.getpid(), sig)
    return parent


def sweep_stale_unpacked() -> None:
    """Remove this user's unpacked bundles of the bridge whose bootloader is gone (``_MEI`` + its pid in
    8 hex digits): what a python-mode task killed together with its bootloader left (~30 MB each), and
    what any bundle of the bridge killed with SIGKILL left. Folders of live processes, and those of other
    PyInstaller programs (no ``libboinc_api.so.7`` in them), are never touched."""
    if bundle_dir() is None:
        return
    for e, pid in _unpacked_dirs():
        try:
            os.kill(pid, 0)
            continue  # alive (or not ours to signal): keep
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if os.path.isfile(os.path.join(e.path, _BUNDLE_MARK)):
            _remove_unpacked_dir(e)


def _unpacked_dirs() -> list[tuple[os.DirEntry[str], int]]:
    """The entries of the temporary folder named as a bootloader names its unpacked folder (``_MEI`` +
    its pid in 8 hex digits + random letters), with that pid."""
    import tempfile

    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return []
    hexdigits = frozenset("0123456789abcdefABCDEF")
    return [
        (e, int(e.name[4:12], 16))
        for e in entries
        if e.name.startswith("_MEI") and len(e.name) >= 12 and hexdigits.issuperset(e.name[4:12])
    ]


def _remove_unpacked_dir(e: os.DirEntry[str]) -> None:
    import shutil
    import stat

    try:
        st = e.stat(follow_symlinks=False)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and Path(e.path) != bundle_dir():
        shutil.rmtree(e.path, ignore_errors=True)


def remove_unpacked_if_orphaned(parent: int) -> None:
    """The bootloader removes the unpacked bundle when the bridge ends; a bootloader that was killed
    cannot, so the orphaned bridge removes it (~30 MB in the temporary folder each time otherwise)."""
    d = bundle_dir()
    if d is None or os.getppid() == parent:
        return
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def remove_unpacked_of(pid: int) -> None:
    """Remove what the bundle started as process ``pid`` unpacked (the bootloader names the folder
    ``_MEI`` + the pid in 8 hex digits + random letters, in the temporary folder), once that process is
    gone. A task the bridge ran in python mode and had to kill (SIGKILL after the grace) could not
    remove it itself. Only folders of this user; a no-op in a Python install."""
    if not is_frozen():
        return
    for e, owner in _unpacked_dirs():
        if owner == pid:
            _remove_unpacked_dir(e)


__all__ = [
    "PYTHON_MODE_ENV",
    "bundle_dir",
    "bundled_file",
    "is_frozen",
    "python_command",
    "remove_unpacked_if_orphaned",
    "remove_unpacked_of",
    "restore_child_environment",
    "run_as_python",
    "stop_with_parent",
    "sweep_stale_unpacked",
]
