#!/usr/bin/env python3
"""worker: BOINC's sample worker (samples/worker/worker.cpp), ported to the guest SDK.

    worker.py [SECONDS] [--nsecs SECONDS] [--in NAME] [--out NAME]

Burns about SECONDS of CPU time, then copies the input file (logical name ``in``) to the output file
(``out``) and standard input to standard output, converting both to upper case: the seed's worker
(BOINC's samples/vm_wrapper job runs it as ``worker.py 5`` with ``in``, ``out`` and redirected stdio).

What the port adds to the seed, in a few lines (look for ``boinc_``):

- ``boinc_init()`` at the start and ``boinc_finish(0)`` at the end;
- ``boinc_fraction_done()`` while it works (costs well under a microsecond: call it as often as you like);
- a checkpoint (its own small file, written atomically) whenever ``boinc_time_to_checkpoint()`` says so,
  followed by ``boinc_checkpoint_completed()``; a restarted worker resumes from it.

Without a host (no shared folder) the same program runs standalone, like any BOINC app started by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from boinc_guest import (
    boinc_checkpoint_completed,
    boinc_finish,
    boinc_fraction_done,
    boinc_init,
    boinc_is_standalone,
    boinc_ops_cumulative,
    boinc_resolve_filename,
    boinc_time_to_checkpoint,
)

CHECKPOINT_FILE = "worker_checkpoint.json"


FLOPS_PER_CALL = 2 * 20000  # one add and one multiply per iteration of do_some_flops


def do_some_flops(seed: int) -> float:
    """A few milliseconds of floating-point work (the seed's do_a_giga_flop, scaled down)."""
    x = 3.14159 * seed
    for _ in range(20000):
        x += 5.12313123
        x *= 0.5398394834
    return x


def read_checkpoint(path: str) -> float:
    """CPU seconds already burned by earlier runs (0 if there is no usable checkpoint)."""
    try:
        with open(path, encoding="utf-8") as f:
            done = float(json.load(f)["cpu_done"])
    except FileNotFoundError:
        return 0.0
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"worker: ignoring unreadable checkpoint {path}: {exc}", file=sys.stderr)
        return 0.0
    return done if done >= 0.0 else 0.0


def write_checkpoint(path: str, cpu_done: float) -> None:
    """Write the checkpoint atomically: a crash leaves either the old or the new one."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"cpu_done": cpu_done}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_stdin() -> str:
    """Standard input, unless it is a terminal (the worker never waits for a person to type)."""
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return ""
        return sys.stdin.read()
    except (OSError, ValueError):
        return ""


def read_input(name: str) -> str:
    if name == "stdin":
        return sys.stdin.read()
    with open(boinc_resolve_filename(name), encoding="utf-8", errors="replace") as f:
        return f.read()


def write_output(name: str, text: str) -> None:
    if name == "stdout":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = boinc_resolve_filename(name)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="BOINC sample worker (guest SDK port)")
    parser.add_argument("seconds", nargs="?", type=float, default=None, help="CPU seconds to burn")
    parser.add_argument("--nsecs", type=float, default=0.0, help="CPU seconds to burn (default 0)")
    parser.add_argument("--in", dest="infile", default="in", help="input file, or 'stdin' (default: in)")
    parser.add_argument(
        "--out", dest="outfile", default="out", help="output file, or 'stdout' (default: out)"
    )
    args = parser.parse_args(argv)
    if args.seconds is not None:
        args.nsecs = args.seconds

    boinc_init()
    mode = "standalone" if boinc_is_standalone() else "with the host"
    print(f"worker: starting ({mode})", file=sys.stderr)

    try:
        text = read_input(args.infile)
    except OSError as exc:
        print(f"worker: cannot read input file {args.infile}: {exc}", file=sys.stderr)
        boinc_finish(1)

    checkpoint = boinc_resolve_filename(CHECKPOINT_FILE)
    done_before = read_checkpoint(checkpoint)
    if done_before > 0:
        print(
            f"worker: resuming from checkpoint: {done_before:.2f} of {args.nsecs:.2f} CPU seconds done",
            file=sys.stderr,
        )

    start_cpu = time.process_time()
    i = 0
    while True:
        done = done_before + (time.process_time() - start_cpu)
        if done >= args.nsecs:
            break
        do_some_flops(i)
        i += 1
        boinc_fraction_done(done / args.nsecs)
        if boinc_time_to_checkpoint():
            write_checkpoint(checkpoint, done)
            boinc_ops_cumulative(i * FLOPS_PER_CALL, 0)
            boinc_checkpoint_completed()

    write_output(args.outfile, text.upper())
    if args.infile != "stdin" and args.outfile != "stdout":
        piped = read_stdin()
        if piped:
            sys.stdout.write(piped.upper())
            sys.stdout.flush()
    boinc_ops_cumulative(max(i, 1) * FLOPS_PER_CALL, 0)
    boinc_fraction_done(1.0)
    if os.path.exists(checkpoint):  # the job is done: nothing to resume from
        os.remove(checkpoint)
    print("worker: done", file=sys.stderr)
    boinc_finish(0)
    return 0  # not reached: boinc_finish ends the process


if __name__ == "__main__":
    sys.exit(main())
