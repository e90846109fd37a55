"""``memcounter``: the stand-in for an unmodified app whose state is only in memory (it never
checkpoints), for the tests of whole-VM saves (tests/bridge/test_vmsave.py, tests/e2e/test_e2e_vm_client.py,
bench/bench_vmsave.py).

``memcounter STEP_MS [TARGET [OUT]]`` counts in memory, one step every STEP_MS, and writes the count to
``memcount.txt`` (atomically) after each step. Without TARGET it counts for ever; with one it writes
``done TARGET\\n`` into OUT (default ``out``) when the count reaches TARGET and exits 0. A restart of the
program (a fresh boot of its VM) starts again from 1: only a restored VM keeps the count.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

MEMCOUNTER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
/* memcounter STEP_MS [TARGET [OUT]]: state only in memory; writes the count to memcount.txt (atomically)
   each step; with TARGET, writes "done TARGET" into OUT (default "out") at TARGET and exits 0 */
static int put(const char *tmp, const char *name, const char *text, int len) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    if (write(fd, text, (size_t)len) != len) { close(fd); return -1; }
    close(fd);
    return rename(tmp, name);
}
int main(int argc, char **argv) {
    int ms = argc > 1 ? atoi(argv[1]) : 50;
    long target = argc > 2 ? atol(argv[2]) : 0, n = 0;
    const char *out = argc > 3 ? argv[3] : "out";
    char buf[64];
    for (;;) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        n++;
        int len = snprintf(buf, sizeof buf, "%ld\n", n);
        if (put(".memcount.tmp", "memcount.txt", buf, len) != 0) return 101;
        if (target > 0 && n >= target) {
            len = snprintf(buf, sizeof buf, "done %ld\n", n);
            if (put(".out.tmp", out, buf, len) != 0) return 102;
            return 0;
        }
    }
}
"""


def build_memcounter(out: Path) -> Path:
    """Compile ``memcounter`` statically (it runs in the test image's initramfs and from the share)."""
    src = out / "memcounter.c"
    src.write_text(MEMCOUNTER_C)
    exe = out / "memcounter"
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(exe), str(src)], check=True, timeout=120)
    return exe


def count(folder: Path) -> int:
    """The count in ``folder/memcount.txt``; -1 when there is none (yet)."""
    try:
        return int((folder / "memcount.txt").read_text())
    except (OSError, ValueError):
        return -1


def wait_count(folder: Path, pred: Callable[[int], bool], timeout: float, what: str) -> int:
    """Poll the count every 10 ms until ``pred(count)``; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = count(folder)
        if pred(n):
            return n
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (count {count(folder)})")
