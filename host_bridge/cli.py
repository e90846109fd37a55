"""``host-bridge``: the command BOINC starts as the app, plus ``check`` and ``demo``.

This is the only module that parses arguments, configures logging, captures signals and ends the
process. Usage:

    host-bridge [--nthreads N] [--trickle X] [--job FILE] [--poll] [--standalone] [other args]
        run the job in the current directory (a BOINC slot); unknown arguments are handed on to
        tasks that ask for them (<append_cmdline_args/>), as BOINC's wrapper does
    host-bridge check JOBFILE      validate a job file and print what would run
    host-bridge demo [SECONDS]     run examples/worker.py through the bridge, standalone, with a
                                   live progress line
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .config import Config
from .exitcodes import ERR_XML_PARSE, ExitCode

log = logging.getLogger("host_bridge")

LOG_FORMAT = "%(asctime)s host-bridge %(levelname)s [%(name)s] %(message)s"


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 0 else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    logging.getLogger("qemu").setLevel(logging.WARNING)


class _Signals:
    """SIGTERM / SIGINT / SIGHUP captured in one place: the main loop sees a quit request."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._handler)

    def _handler(self, signum: int, frame: object) -> None:
        self.signum = signum
        self.event.set()

    def requested(self) -> bool:
        return self.event.is_set()


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="host-bridge", add_help=True, description="BOINC VM bridge (wrapper)")
    p.add_argument("--nthreads", type=float, default=None, help="CPUs for the task (BOINC passes this)")
    p.add_argument("--trickle", type=float, default=0.0, help="send a trickle-up every X seconds")
    p.add_argument("--job", default="job.xml", help="job file: logical name in the slot or a path")
    p.add_argument("--slot", default=".", help="the slot directory (default: the current directory)")
    p.add_argument("--poll", action="store_true", help="watch the share by polling instead of inotify")
    p.add_argument("--standalone", action="store_true", help="run without a BOINC client")
    p.add_argument(
        "--heartbeat-timeout", type=float, default=0.0, help="guest silent this long (s) -> restart later"
    )
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--version", action="version", version=f"host-bridge {__version__}")
    return p


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "check":
        sys.exit(_check(args[1:]))
    if args and args[0] == "demo":
        sys.exit(_demo(args[1:]))
    if args and args[0] == "run":
        args = args[1:]
    sys.exit(_run(args))


# ---------------------------------------------------------------- check


def _check(args: list[str]) -> int:
    from .jobfile import JobFileError, describe, parse_job_file

    p = argparse.ArgumentParser(prog="host-bridge check", description="validate a job file")
    p.add_argument("jobfile")
    ns = p.parse_args(args)
    _setup_logging(0)
    try:
        job = parse_job_file(Path(ns.jobfile))
    except JobFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot read {ns.jobfile}: {e.strerror}", file=sys.stderr)
        return 1
    print(describe(job))
    return 0


# ---------------------------------------------------------------- run


def _run(args: list[str], *, progress: bool = False, api=None) -> int:
    from .boinc.api import load_api
    from .runtime import Runtime

    ns, extra = _run_parser().parse_known_args(args)
    _setup_logging(ns.verbose)
    slot = Path(ns.slot).resolve()
    os.chdir(slot)
    cfg = Config(
        slot_dir=slot,
        job_file=ns.job,
        nthreads=int(ns.nthreads) if ns.nthreads else None,
        trickle_period=ns.trickle,
        extra_args=tuple(extra),
        watch_mode="poll" if ns.poll else "auto",
        standalone=ns.standalone,
        heartbeat_timeout=ns.heartbeat_timeout,
        progress=progress,
    )
    if api is None:
        api = load_api(force_standalone=cfg.standalone)
    try:
        api.init()
    except Exception as e:  # the library refused to start: nothing else can work
        print(f"host-bridge: cannot initialise the BOINC API: {e}", file=sys.stderr)
        return int(ExitCode.EXIT_INIT_FAILURE)
    # boinc_init has reopened fd 2 to stderr.txt: point logging at the new stream
    _setup_logging(ns.verbose)
    signals = _Signals()
    signals.install()
    on_report = _ProgressLine() if progress else None
    rt = Runtime(cfg, api, on_report=on_report, should_stop=signals.requested)
    try:
        outcome = rt.run()
    except Exception:
        log.exception("internal error; the task will be retried later")
        api.temporary_exit(300, "host-bridge internal error (see stderr.txt)", False)
    if on_report is not None:
        on_report.done()
    return _end(api, outcome)


class _DemoExit(Exception):
    """Raised by the demo's API in place of ending the process."""

    def __init__(self, status: int) -> None:
        self.status = status


def _end(api, outcome) -> int:
    """Turn the runtime's outcome into BOINC's way of ending. Does not return for the real library."""
    try:
        return _end_inner(api, outcome)
    except _DemoExit as e:
        return e.status


def _end_inner(api, outcome) -> int:
    kind = outcome.kind
    if kind == "finish":
        if outcome.status == 0:
            log.info("job done")
        else:
            log.error("job failed with status %d: %s", outcome.status, outcome.message)
        logging.shutdown()
        api.finish(outcome.status, outcome.message or None, outcome.is_notice)
    if kind == "temporary_exit":
        log.warning("temporary exit for %.0f s: %s", outcome.delay, outcome.message)
        logging.shutdown()
        api.temporary_exit(outcome.delay, outcome.message, outcome.is_notice)
    if kind == "abort":
        log.warning("%s", outcome.message or "aborted")
        return int(ExitCode.EXIT_ABORTED_BY_CLIENT)
    log.info("%s", outcome.message or kind)
    return 0


class _ProgressLine:
    """A live progress line on a terminal (the demo)."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = ""

    def __call__(self, report, idx: int, ntasks: int) -> None:
        width = 30
        filled = round(report.fraction_done * width)
        bar = "#" * filled + "." * (width - filled)
        line = (
            f"[{bar}] {report.fraction_done * 100:5.1f}%  cpu {report.cpu_time:6.1f} s  "
            f"checkpoint {report.checkpoint_cpu_time:6.1f} s  task {idx + 1}/{ntasks}"
        )
        if line == self.last:
            return
        self.last = line
        if self.tty:
            sys.stdout.write("\r" + line)
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def done(self) -> None:
        if self.tty and self.last:
            sys.stdout.write("\n")
            sys.stdout.flush()


# ---------------------------------------------------------------- demo

DEMO_JOB = """\
<job_desc>
    <task>
        <virtualmachine></virtualmachine>
        <application>./worker.py</application>
        <copy_app_to_VM>1</copy_app_to_VM>
        <copy_file_to_VM>in</copy_file_to_VM>
        <copy_file_to_VM>stdin_worker</copy_file_to_VM>
        <stdin_filename>stdin_worker</stdin_filename>
        <stdout_filename>stdout_worker</stdout_filename>
        <stderr_filename>stderr_worker</stderr_filename>
        <copy_file_from_VM>out</copy_file_from_VM>
        <command_line>{seconds}</command_line>
        <weight>1</weight>
    </task>
</job_desc>
"""


def _find_worker() -> Path | None:
    here = Path(__file__).resolve().parent.parent / "examples" / "worker.py"
    return here if here.is_file() else None


def _demo(args: list[str]) -> int:
    import tempfile  # demo only: not paid by the bridge's start-up
    import textwrap

    p = argparse.ArgumentParser(prog="host-bridge demo", description="run examples/worker.py via the bridge")
    p.add_argument("seconds", nargs="?", type=float, default=5.0, help="CPU seconds the worker burns")
    p.add_argument("--keep", action="store_true", help="keep the demo slot directory")
    ns = p.parse_args(args)
    worker = _find_worker()
    if worker is None:
        print("host-bridge demo: examples/worker.py not found (run it from a checkout)", file=sys.stderr)
        return 2
    slot = Path(tempfile.mkdtemp(prefix="host-bridge-demo-"))
    shutil.copy(worker, slot / "worker.py")
    (slot / "in").write_text("hello from the input file\n")
    (slot / "stdin_worker").write_text("hello from stdin\n")
    (slot / "job.xml").write_text(DEMO_JOB.format(seconds=ns.seconds))
    print(
        textwrap.dedent(f"""\
        host-bridge demo: slot {slot}
          the worker (examples/worker.py, Python guest SDK) burns {ns.seconds:g} CPU seconds in the
          share {slot / "shared"}; the bridge forwards its progress (standalone: no BOINC client).""")
    )
    from .boinc.api import StandaloneApi

    cwd = os.getcwd()
    try:
        rc = _run(
            ["--slot", str(slot), "--standalone"], progress=True, api=_DemoApi(StandaloneApi(slot_dir=slot))
        )
    finally:
        os.chdir(cwd)
    out = slot / "out"
    if out.exists():
        print(f"output file 'out':\n{textwrap.indent(out.read_text(errors='replace'), '  ')}")
    print(f"exit status {rc}")
    if not ns.keep:
        shutil.rmtree(slot, ignore_errors=True)
    return rc


class _DemoApi:
    """StandaloneApi, but finishing returns the status instead of exiting (the demo prints after)."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def finish(self, status: int, message: str | None = None, is_notice: bool = False) -> int:
        if message:
            print(f"\nfinish: {message}")
        raise _DemoExit(status)

    def temporary_exit(self, delay: float, reason: str, is_notice: bool = False) -> int:
        print(f"\ntemporary exit ({delay:.0f} s): {reason}")
        raise _DemoExit(0)


__all__ = ["ERR_XML_PARSE", "main"]
