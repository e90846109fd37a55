"""``host-bridge``: the command BOINC starts as the app, plus ``check`` and ``demo``.

This is the only module that parses arguments, configures logging, captures signals and ends the
process. Usage:

    host-bridge [--nthreads N] [--trickle X] [--job FILE] [--poll] [--standalone] [other args]
        run the job in the current directory (a BOINC slot); unknown arguments are handed on to
        tasks that ask for them (<append_cmdline_args/>), as BOINC's wrapper does
    host-bridge check JOBFILE      validate a job file (job.xml, or vboxwrapper's vbox_job.xml) and
                                   print what would run
    host-bridge demo [SECONDS]     run examples/worker.py through the bridge in a VM (built on first
                                   use), standalone, with a live progress line; --local: no VM
    host-bridge image build|check  VM images a project can ship (docs/images.md)

The run parser takes no abbreviations (``--po`` is an argument for the task, not ``--poll``). A first
word that is almost a command (``chek``) is refused when no BOINC client started the bridge.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from . import __version__
from .config import Config
from .exitcodes import ERR_XML_PARSE, ExitCode
from .logsetup import setup_logging
from .policy import DEFAULT_POLICY

log = logging.getLogger("host_bridge")


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


COMMANDS = ("check", "demo", "image", "run")
INIT_DATA_FILE = "init_data.xml"  # written into the slot by the BOINC client (host_bridge.boinc.api)

RUN_USAGE = """\
host-bridge [run] [options] [arguments for the task]
       host-bridge check JOBFILE
       host-bridge demo [SECONDS] [--local] [--keep]
       host-bridge image build|check ..."""

RUN_EPILOG = """\
commands:
  host-bridge [run] ...       run the job in this folder (a BOINC slot): what the BOINC client starts;
                              unknown arguments are handed on to tasks with <append_cmdline_args/>
  host-bridge check JOBFILE   validate a job file (job.xml, or vboxwrapper's vbox_job.xml) and print
                              what would run; errors name the file, the line and the tag
  host-bridge demo [SECONDS]  run examples/worker.py through the bridge in a VM, standalone, with a
                              live progress line (host-bridge demo --help; --local: without a VM)
  host-bridge image build|check   build a VM image for an app version / boot it once (docs/images.md)

Options are never abbreviated: --po is handed on to the task, it is not --poll."""


def _run_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: unknown arguments belong to the task (BOINC's wrapper hands them on), so an
    # app's --po must not be taken as --poll, nor --s be an ambiguity error
    p = argparse.ArgumentParser(
        prog="host-bridge",
        usage=RUN_USAGE,
        description="BOINC VM bridge (wrapper)",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
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
    if args and args[0] == "image":
        from .images.cli import main as image_main

        sys.exit(image_main(args[1:]))
    if args and args[0] == "run":
        args = args[1:]
    elif (meant := _mistyped_command(args)) is not None:
        word = args[0]
        print(
            f"host-bridge: unknown command {word!r}: did you mean 'host-bridge {meant}'? Nothing was run. "
            f"(The commands are {', '.join(COMMANDS)}; to run the job in this folder and hand {word!r} "
            f"to the task, write 'host-bridge run {word} ...'.)",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(_run(args))


def _slot_of(args: list[str]) -> Path:
    """The slot directory the run arguments name (``--slot``, default the current directory)."""
    p = argparse.ArgumentParser(prog="host-bridge", add_help=False, allow_abbrev=False)
    p.add_argument("--slot", default=".")
    return Path(p.parse_known_args(args)[0].slot)


def _mistyped_command(args: list[str]) -> str | None:
    """The command a person at a shell probably meant when the first word is almost one (``chek``),
    or None: run the job. Under BOINC (an init_data.xml in the slot) never: the client may pass
    positional arguments, and they are the task's."""
    if not args or args[0].startswith("-") or args[0] in COMMANDS:
        return None
    import difflib  # only for a first word that is not an option

    close = difflib.get_close_matches(args[0], COMMANDS, n=1, cutoff=0.6)
    if not close or (_slot_of(args) / INIT_DATA_FILE).exists():
        return None
    return close[0]


# ---------------------------------------------------------------- check


def _check(args: list[str]) -> int:
    from .jobfile import JobFileError
    from .jobfile.vbox import describe_vbox_job, parse_vbox_job

    p = argparse.ArgumentParser(
        prog="host-bridge check",
        description="validate a job file (job.xml, or vboxwrapper's vbox_job.xml) and print what would run",
    )
    p.add_argument("jobfile")
    ns = p.parse_args(args)
    setup_logging(0)
    path = Path(ns.jobfile)
    try:  # the warnings are in the printed text (vboxjob only logs them at debug level)
        text = describe_vbox_job(parse_vbox_job(path)) if _is_vbox_job(path) else _describe_job(path)
    except JobFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot read {ns.jobfile}: {e.strerror}", file=sys.stderr)
        return 1
    print(text)
    return 0


def _describe_job(path: Path) -> str:
    """The job file's plan, as the run would make it in the job file's folder (the folder stands for
    the slot: an app version's vm_kernel or vbox_job.xml beside the job file counts, as in a slot)."""
    from .jobfile import describe, parse_job_file
    from .runtime.job import VBOX_JOB_FILE
    from .runtime.plan import PlanContext, plan_job

    job = parse_job_file(path)
    folder = path.resolve().parent
    vbox_job = None
    if (folder / VBOX_JOB_FILE).is_file():
        from .jobfile.vbox import parse_vbox_job

        vbox_job = parse_vbox_job(folder / VBOX_JOB_FILE)
    return describe(job, plan_job(job, PlanContext.of(folder, vbox_job=vbox_job)))


def _is_vbox_job(path: Path) -> bool:
    """Whether the file's root element is <vbox_job> (vboxwrapper's job file). A file that cannot be
    read or parsed: False, and the job-file parser then says why."""
    from .jobfile import JobFileError, decode_xml_bytes, parse_xml, read_bounded

    if path.suffix == ".toml":
        return False
    try:
        return parse_xml(decode_xml_bytes(read_bounded(path), str(path)), str(path)).tag == "vbox_job"
    except (JobFileError, OSError):
        return False


# ---------------------------------------------------------------- run


RESUME_HINT = "started again in this folder, the job resumes from its last checkpoint"


def _config(args: list[str]) -> tuple[Config, int]:
    """The run's Config and verbosity from its arguments (unknown ones are handed on to the task)."""
    ns, extra = _run_parser().parse_known_args(args)
    cfg = Config(
        slot_dir=Path(ns.slot).resolve(),
        job_file=ns.job,
        nthreads=int(ns.nthreads) if ns.nthreads else None,
        trickle_period=ns.trickle,
        extra_args=tuple(extra),
        watch_mode="poll" if ns.poll else "auto",
        standalone=ns.standalone,
        policy=replace(DEFAULT_POLICY, heartbeat_timeout=ns.heartbeat_timeout),
    )
    return cfg, ns.verbose


def _run(
    args: list[str],
    *,
    progress: bool = False,
    api=None,
    signals: _Signals | None = None,
    stop_hint: str = RESUME_HINT,
    on_report=None,
) -> int:
    """Run the job. ``stop_hint``: what the final message says after "stopped by SIGINT; ";
    ``on_report``: called with each progress report (the VM demo), in place of the progress line."""
    from .boinc.api import load_api
    from .core import retry_later
    from .runtime import Runtime

    cfg, verbose = _config(args)
    setup_logging(verbose)
    os.chdir(cfg.slot_dir)
    if api is None:
        api = load_api(force_standalone=cfg.standalone)
    try:
        api.init()
    except Exception as e:  # the library refused to start (or the folder is taken): nothing can work
        what = "" if getattr(api, "standalone", False) else "cannot initialise the BOINC API: "
        print(f"host-bridge: {what}{e}", file=sys.stderr)
        return int(ExitCode.EXIT_INIT_FAILURE)
    # boinc_init has reopened fd 2 to stderr.txt: point logging at the new stream
    setup_logging(verbose)
    if signals is None:
        signals = _Signals()
    signals.install()
    if on_report is None and progress:
        on_report = _ProgressLine()
    rt = Runtime(cfg, api, on_report=on_report, should_stop=signals.requested)
    try:
        outcome = rt.run()
    except Exception:
        log.exception("internal error; the task will be retried later")
        outcome = retry_later("host-bridge internal error (see stderr.txt)", cfg.policy.failed_delay)
    if isinstance(on_report, _ProgressLine):
        on_report.done()
    return _end(api, outcome, signals.signum, stop_hint)


class _DemoExit(Exception):
    """Raised by the demo's API in place of ending the process."""

    def __init__(self, status: int) -> None:
        self.status = status


def _end(api, outcome, signum: int | None = None, stop_hint: str = RESUME_HINT) -> int:
    """Turn the runtime's outcome into BOINC's way of ending. Does not return for the real library."""
    try:
        return _end_inner(api, outcome, signum, stop_hint)
    except _DemoExit as e:
        return e.status


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _end_inner(api, outcome, signum: int | None = None, stop_hint: str = RESUME_HINT) -> int:
    """``signum``: the signal that asked the bridge to stop (a quit then came from it, not from a
    BOINC client: the message says so; the exit status stays 0, as BOINC expects of a quit)."""
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
    if kind == "quit" and signum is not None:
        log.warning("stopped by %s; %s", _signal_name(signum), stop_hint)
        return 0
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
    p.add_argument(
        "seconds",
        nargs="?",
        type=_positive_seconds,
        default=None,
        help="CPU seconds the worker burns (> 0; default 5 with --local, 20 in the VM)",
    )
    p.add_argument("--keep", action="store_true", help="keep the demo slot directory")
    p.add_argument("--local", action="store_true", help="run the worker as a local process (no VM)")
    ns = p.parse_args(args)
    ns.seconds_given = ns.seconds is not None
    if ns.seconds is None:
        ns.seconds = 5.0
    worker = _find_worker()
    if worker is None:
        print("host-bridge demo: examples/worker.py not found (run it from a checkout)", file=sys.stderr)
        return 2
    if not ns.local:
        from .images.demo import DemoRunner, vm_demo

        runner = DemoRunner(run=_run, signals=_Signals, progress_line=_ProgressLine, demo_api=_DemoApi)
        return vm_demo(ns.seconds if ns.seconds_given else 20.0, ns.keep, worker, runner)
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
    signals = _Signals()
    kept = f"its slot is kept: {slot}" if ns.keep else "its slot is deleted"
    try:
        rc = _run(
            ["--slot", str(slot), "--standalone"],
            progress=True,
            api=_DemoApi(StandaloneApi(slot_dir=slot)),
            signals=signals,
            stop_hint=f"the demo was interrupted ({kept})",
        )
    finally:
        os.chdir(cwd)
    if signals.signum is not None and rc == 0:
        rc = 128 + signals.signum  # a person's Ctrl-C: the shell's status for a process ended by it
    out = slot / "out"
    if out.exists():
        print(f"output file 'out':\n{textwrap.indent(out.read_text(errors='replace'), '  ')}")
    print(f"exit status {rc}")
    if not ns.keep:
        shutil.rmtree(slot, ignore_errors=True)
    return rc


def _positive_seconds(text: str) -> float:
    """argparse type of the demo's SECONDS: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give the seconds, e.g. 5") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: the seconds must be a positive number, e.g. 5")
    return value


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
