"""Fixtures and helpers for tests that boot real QEMU VMs (tests/backends/test_qemu_backend.py,
bench/bench_qemu.py).

The guest programs are small static C programs compiled here with ``gcc -static`` and put into the test
image's initramfs (``/bin/...``) by ``host_bridge.images.testimage.ensure_test_image``:

- ``hello``: writes ``hello_out.txt`` (its argument and ``BOINC_GUEST_DIR``), a line on stdout, and exits
  with the code given as its second argument.
- ``counter STEPS STEP_MS EXIT``: the stand-in for an unmodified app with its own checkpoints. It resumes
  from ``ckpt.txt`` (the step reached), then per step writes ``progress.txt`` atomically ("STEP\\n") and,
  every 5 steps, ``ckpt.txt`` atomically; at the end ``result.txt`` ("done STEPS started_at START\\n"),
  exit code EXIT.
- ``pinger``: for the benchmark: polls ``ping.txt`` every 1 ms and answers each new number in
  ``pong.txt`` (atomic rename), until ``ping.txt`` says "stop".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from tests.support.client_shm import SlotClient

HELLO_C = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    FILE *f = fopen("hello_out.txt", "w");
    if (!f) return 100;
    fprintf(f, "hi %s %s\n", argc > 1 ? argv[1] : "", getenv("BOINC_GUEST_DIR"));
    fclose(f);
    printf("stdout line\n");
    return argc > 2 ? atoi(argv[2]) : 0;
}
"""

COUNTER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static void put(const char *name, const char *text) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, ".%s.tmp", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) exit(101);
    if (write(fd, text, strlen(text)) < 0) exit(102);
    fsync(fd);
    close(fd);
    if (rename(tmp, name) != 0) exit(103);
}
int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 50, ms = argc > 2 ? atoi(argv[2]) : 100;
    int code = argc > 3 ? atoi(argv[3]) : 0, start = 0;
    FILE *f = fopen("ckpt.txt", "r");
    if (f) { if (fscanf(f, "%d", &start) != 1) start = 0; fclose(f); }
    char buf[64];
    for (int i = start + 1; i <= steps; i++) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        snprintf(buf, sizeof buf, "%d\n", i);
        put("progress.txt", buf);
        if (i % 5 == 0) put("ckpt.txt", buf);
    }
    snprintf(buf, sizeof buf, "done %d started_at %d\n", steps, start);
    put("result.txt", buf);
    return code;
}
"""

PINGER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    char last[64] = "", buf[64];
    for (;;) {
        int fd = open("ping.txt", O_RDONLY);
        if (fd >= 0) {
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n > 0) {
                buf[n] = 0;
                if (strncmp(buf, "stop", 4) == 0) return 0;
                if (strcmp(buf, last) != 0) {
                    strcpy(last, buf);
                    int out = open(".pong.tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
                    if (out >= 0) {
                        if (write(out, buf, (size_t)n) < 0) return 1;
                        close(out);
                        rename(".pong.tmp", "pong.txt");
                    }
                }
            }
        }
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
}
"""

PROGRAMS = {"hello": HELLO_C, "counter": COUNTER_C, "pinger": PINGER_C}


def build_guest_programs(out_dir: Path) -> dict[str, Path]:
    """Compile the guest programs statically into ``out_dir``; returns guest path -> host binary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    for name, src in PROGRAMS.items():
        c = out_dir / f"{name}.c"
        c.write_text(src)
        exe = out_dir / name
        subprocess.run(
            ["gcc", "-static", "-O2", "-Wall", "-o", str(exe), str(c)],
            check=True,
            timeout=120,
            capture_output=True,
        )
        result[f"/bin/{name}"] = exe
    return result


def tag_prefix() -> str:
    return f"pytest-{os.getpid()}-"


def own_qemu_processes(marker: str) -> list[psutil.Process]:
    """Live QEMU processes whose command line contains ``marker`` (e.g. ``process=bridge-pytest-123-``)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cl = p.info.get("cmdline") or []
        if p.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in a for a in cl) and any("qemu-system" in a for a in cl[:1]):
            found.append(p)
    return found


def kill_all(marker: str) -> int:
    procs = own_qemu_processes(marker)
    for p in procs:
        try:
            p.kill()
            p.wait(5)
        except psutil.Error:
            pass
    return len(procs)


def read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def qemu_of(slot: Path) -> list[psutil.Process]:
    """Live QEMU processes started for ``slot`` (their command line names a path in it)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cl = p.info.get("cmdline") or []
        ours = cl and "qemu-system" in cl[0] and any(str(slot) in a for a in cl)
        if ours and p.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def vm_slot(prefix: str, files: dict[str, Path], texts: dict[str, str], **client_kw: Any) -> SlotClient:
    """A BOINC slot for a VM task at a short path under /tmp (the VM's QMP socket lives in the slot, and
    a Unix socket path is limited to 108 bytes): ``files`` copied in, ``texts`` written, and a
    SlotClient playing the client through the real shared memory (heartbeats on; ``client_kw`` go to
    SlotClient, e.g. ``checkpoint_period``). Close it with ``close_vm_slots``."""
    slot = Path(f"/tmp/{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}")
    slot.mkdir()
    for name, src in files.items():
        shutil.copy(src, slot / name)
    for name, text in texts.items():
        (slot / name).write_text(text)
    client = SlotClient(slot, **client_kw)
    client.start_heartbeats()
    return client


def close_vm_slots(clients: list[SlotClient]) -> None:
    """Kill what is left of the slots' VMs, stop playing the client, remove the slots."""
    for c in clients:
        for p in qemu_of(c.slot_dir):
            p.kill()
        c.close()
        shutil.rmtree(c.slot_dir, ignore_errors=True)
