#!/usr/bin/env python3
"""Benchmark of the Python guest SDK's hot path and write coalescing.

    python bench/bench_python_sdk.py [--calls N] [--seconds S]

Prints:
- ns per ``boinc_fraction_done`` call in a hot loop, and the ratio to a bare Python function call that
  does nothing (the floor any Python API call pays); target: <= 1000 ns;
- ns per ``boinc_time_to_checkpoint`` call;
- status-file writes per second while the app calls ``boinc_fraction_done`` flat out for S seconds with
  the real background thread (target: <= ~10 per second: the 0.1 s coalescing), measured in a child
  process against a temporary share, and the ``encode_status`` + atomic write cost per write.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "guest_sdk" / "python"
sys.path.insert(0, str(SDK))

import boinc_guest as bg  # noqa: E402
from boinc_guest import protocol as P  # noqa: E402
from boinc_guest import testing  # noqa: E402


def _bare(x: float) -> int:
    return 0


def per_call_ns(stmt: str, calls: int, glb: dict) -> float:
    timer = timeit.Timer(stmt, globals=glb)
    best = min(timer.repeat(repeat=5, number=calls))
    return best / calls * 1e9


def coalescing(seconds: float) -> tuple[int, float, int]:
    code = f"""
        import time
        from boinc_guest import *
        boinc_init()
        end = time.monotonic() + {seconds}
        n = 0
        while time.monotonic() < end:
            for i in range(1000):
                boinc_fraction_done(i / 1000)
            n += 1000
        print(n)
    """
    with tempfile.TemporaryDirectory(prefix="bench_sdk_") as share:
        env = dict(os.environ, BOINC_GUEST_DIR=share, PYTHONPATH=str(SDK))
        r = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        )
        status = P.decode_status((Path(share) / P.STATUS_FILE).read_bytes())
    return status.seq, status.elapsed_time, int(r.stdout)


def write_cost_us(n: int = 200) -> float:
    with tempfile.TemporaryDirectory(prefix="bench_sdk_") as share:
        status = P.Status(seq=1, fraction_done=0.5, events=(P.TrickleUp(1, "v", "t" * 100),))
        t0 = time.perf_counter()
        for _ in range(n):
            P.write_atomic(share, P.STATUS_FILE, P.encode_status(status))
        return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()

    testing.reset()
    testing.enable()  # no thread, no share: the pure in-memory cost
    glb = {"bg": bg, "_bare": _bare, "fd": bg.boinc_fraction_done, "ttc": bg.boinc_time_to_checkpoint}
    bare = per_call_ns("_bare(0.5)", args.calls, glb)
    fd = per_call_ns("fd(0.5)", args.calls, glb)
    fd_attr = per_call_ns("bg.boinc_fraction_done(0.5)", args.calls, glb)
    ttc = per_call_ns("ttc()", args.calls, glb)
    testing.reset()
    testing.disable()

    print(f"bare Python call              {bare:8.1f} ns/call")
    print(
        f"boinc_fraction_done           {fd:8.1f} ns/call   ratio to bare call {fd / bare:5.2f}x   "
        f"(target <= 1000 ns: {'OK' if fd <= 1000 else 'MISSED'})"
    )
    print(f"bg.boinc_fraction_done (attr) {fd_attr:8.1f} ns/call   ratio to bare call {fd_attr / bare:5.2f}x")
    print(f"boinc_time_to_checkpoint      {ttc:8.1f} ns/call   ratio to bare call {ttc / bare:5.2f}x")

    cost = write_cost_us()
    print(f"encode_status + write_atomic  {cost:8.1f} us/write (fsync included)")

    seq, elapsed, calls = coalescing(args.seconds)
    rate = (seq - 1) / elapsed if elapsed > 0 else float("nan")
    print(
        f"coalescing: {calls} boinc_fraction_done calls in {elapsed:.2f} s -> {seq} status writes "
        f"({rate:.1f} writes/s after init; target <= ~10/s; {calls / max(seq, 1):.0f} calls per write)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
