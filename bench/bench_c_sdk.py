#!/usr/bin/env python3
"""Benchmark: the cost of boinc_fraction_done() in the C guest SDK.

Builds the SDK (make), compiles a tiny C program that times 10^8 calls of boinc_fraction_done() in a
hot loop with clock_gettime (the SDK initialised on a temporary share, so its background thread is
running as in a real app), next to 10^8 calls of a bare, non-inlined C function that stores its
argument; linked dynamically (PLT call) and statically. Also the cost of one call through cffi from
Python, for reference. Prints ns per call and the ratio to the bare call.

    .venv/bin/python bench/bench_c_sdk.py [--calls N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "guest_sdk" / "c"
BUILD = SDK / "build"

BENCH_C = r"""
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "boinc_api.h"

volatile double sink;
__attribute__((noinline, noipa)) int bare_call(double x) { sink = x; return 0; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000000L;
    double step = 1.0 / (double)n;
    boinc_init();
    /* warm up */
    for (long i = 0; i < n / 100; i++) { bare_call(i * step); boinc_fraction_done(i * step); }
    double t0 = now();
    for (long i = 0; i < n; i++) bare_call(i * step);
    double t1 = now();
    for (long i = 0; i < n; i++) boinc_fraction_done(i * step);
    double t2 = now();
    printf("%.4f %.4f %d\n", (t1 - t0) * 1e9 / n, (t2 - t1) * 1e9 / n, boinc_is_standalone());
    return 0;
}
"""


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600, **kw)  # type: ignore[call-overload]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000_000, help="calls per timed loop (default 1e8)")
    args = ap.parse_args()

    run(["make", "-s", "-C", str(SDK)])
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        src = t / "bench.c"
        src.write_text(BENCH_C)
        share = t / "share"
        share.mkdir()
        common = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{SDK / 'include'}", str(src)]
        dyn, sta = t / "bench_dyn", t / "bench_static"
        run([*common, "-o", str(dyn), f"-L{BUILD}", f"-Wl,-rpath,{BUILD}", "-lboinc_guest", "-lpthread"])
        run([*common, "-o", str(sta), "-static", f"-L{BUILD}", "-lboinc_guest", "-lpthread"])
        env = dict(os.environ, BOINC_GUEST_DIR=str(share))
        print(f"boinc_fraction_done: {args.calls:.0e} calls per loop, timed inside C (clock_gettime)")
        for label, exe in (("dynamic (PLT)", dyn), ("static", sta)):
            out = run([str(exe), str(args.calls)], env=env, cwd=share).stdout.split()
            bare, fd, standalone = float(out[0]), float(out[1]), out[2]
            assert standalone == "0", "the bench should run with a share (background thread active)"
            print(
                f"  {label:14s} boinc_fraction_done {fd:6.2f} ns/call   bare C call {bare:6.2f} ns/call"
                f"   ratio {fd / bare:5.2f}x   (target <= 50 ns)"
            )

    sys.path.insert(0, str(ROOT / "tests" / "c_programs"))
    import csdk

    lib = csdk.load()
    n = 1_000_000
    f = lib.boinc_fraction_done
    t0 = time.perf_counter()
    for i in range(n):
        f(i * 1e-6)
    t1 = time.perf_counter()
    g = lib.boinc_get_fraction_done
    for _ in range(n):
        g()
    t2 = time.perf_counter()
    print(
        f"  cffi (ABI mode) from Python: boinc_fraction_done {(t1 - t0) * 1e9 / n:7.1f} ns/call, "
        f"boinc_get_fraction_done {(t2 - t1) * 1e9 / n:7.1f} ns/call (reference: Python call overhead)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
