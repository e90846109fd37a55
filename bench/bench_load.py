"""Load: N bridges at once (default 16, on a 2-core machine), each with a guest writing its status file 100
times a second for S seconds, each with its own client (``SlotClient``: the real shared memory, the real
libboinc_api in every bridge).

The guest writes the protocol directly (``protocol.write_atomic``, no SDK coalescing): rising fraction, a
heartbeat, a trickle-up event every second (kept until the bridge acks it), a last trickle "final", an
output, a finish event. Checked for every bridge: exit 0, last fraction reported 1.0, the output present,
every trickle-up delivered to the client once and in order, the "final" one included. Measured per
bridge: CPU (% of a core over the run, the bridge process only) and peak RSS (VmHWM).

    .venv/bin/python bench/bench_load.py                 # 16 bridges x 60 s
    .venv/bin/python bench/bench_load.py --bridges 4 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "guest_sdk" / "python")]

from tests.support.client_shm import SlotClient  # noqa: E402

GUEST = textwrap.dedent(
    """\
    import os, sys, time
    from boinc_guest import protocol as P

    seconds, rate = float(sys.argv[1]), float(sys.argv[2])
    share = os.getcwd()
    seq = hb = 0
    next_id = 1
    events = []
    ack = 0

    def write(fraction):
        global seq
        seq += 1
        st = P.Status(seq=seq, hb=hb, fraction_done=fraction, cpu_time=time.process_time(),
                      elapsed_time=time.monotonic() - t0, events=tuple(events))
        P.write_atomic(share, P.STATUS_FILE, P.encode_status(st))

    def read_ack():
        global ack, events
        try:
            ctl = P.decode_control(open(P.CONTROL_FILE, "rb").read())
        except (OSError, P.ProtocolError):
            return
        ack = max(ack, ctl.ack)
        events = [e for e in events if e.id > ack]

    t0 = time.monotonic()
    last_trickle = t0
    period = 1.0 / rate
    tick = t0
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        hb = int(now - t0)
        if now - last_trickle >= 1.0 and len(events) < 60:
            events.append(P.TrickleUp(next_id, "tick", f"<n>{next_id}</n>"))
            next_id += 1
            last_trickle = now
        read_ack()
        write(min(1.0, (now - t0) / seconds))
        tick += period
        time.sleep(max(0.0, tick - time.monotonic()))
    events.append(P.TrickleUp(next_id, "final", f"<n>{next_id}</n>"))
    next_id += 1
    write(1.0)
    with open("out", "w") as f:
        f.write(f"done {seq}\\n")
    deadline = time.monotonic() + 30
    while events and time.monotonic() < deadline:  # until the host acked every event
        read_ack()
        time.sleep(0.05)
    events.append(P.Finish(next_id, 0, "", False))
    write(1.0)
    print(next_id - 1)
    """
)

JOB = """<job_desc><task><application>./guest.py</application><copy_app_to_VM>1</copy_app_to_VM>
<copy_file_from_VM>out</copy_file_from_VM><stdout_filename>guest_stdout</stdout_filename>
<command_line>{seconds} {rate}</command_line></task></job_desc>
"""


class One:
    """One slot: its client, its bridge, its measurements."""

    def __init__(self, base: Path, i: int, seconds: float, rate: float) -> None:
        self.dir = base / f"b{i:02d}"
        self.slot = self.dir / "slot"
        self.slot.mkdir(parents=True)
        (self.dir / "project").mkdir()
        (self.slot / "guest.py").write_text(GUEST)
        (self.slot / "job.xml").write_text(JOB.format(seconds=seconds, rate=rate))
        (self.slot / "out").write_text("<soft_link>../project/result_out</soft_link>\n")
        self.client = SlotClient(self.slot)
        self.fractions: list[float] = []
        self.trickles: list[str] = []
        self.cpu = 0.0
        self.hwm_kb = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.rc: int | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "guest_sdk" / "python")])
        self.client.start_heartbeats()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host_bridge"],
            cwd=self.slot,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ps = psutil.Process(self.proc.pid)

    def service(self) -> None:
        """What the client does, once: read app_status, take the trickle-up file; sample the bridge."""
        st = self.client.read_app_status()
        if st is not None and "fraction_done" in st:
            self.fractions.append(float(st["fraction_done"]))
        # like the client: take trickle_up.xml only after the library's <have_new_trickle_up/> (sent once the
        # file is complete); the bridge writes the next one only when this one is gone
        if self.client.read_trickle_up() is not None:
            p = self.slot / "trickle_up.xml"
            if p.exists():
                self.trickles.append(p.read_text())
                p.unlink()
        if self.rc is None and self.proc is not None:
            try:
                t = self.ps.cpu_times()
                self.cpu = t.user + t.system
                for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.hwm_kb = int(line.split()[1])
            except (psutil.Error, OSError):
                pass
            self.rc = self.proc.poll()

    def check(self) -> list[str]:
        errs = []
        if self.rc != 0:
            errs.append(f"exit {self.rc}")
        if not self.fractions or abs(self.fractions[-1] - 1.0) > 1e-9:
            errs.append(f"last fraction {self.fractions[-1] if self.fractions else None}")
        if any(b < a - 1e-9 for a, b in zip(self.fractions, self.fractions[1:], strict=False)):
            errs.append("fraction went backwards")
        out = self.dir / "project" / "result_out"
        if not out.exists() or not out.read_text().startswith("done "):
            errs.append("output missing")
        ns = [int(t.split("<n>")[1].split("</n>")[0]) for t in self.trickles if "<n>" in t]
        if ns != list(range(1, len(ns) + 1)):
            errs.append(f"trickle-ups not once and in order: {ns}")
        if not any("final" in t for t in self.trickles):
            errs.append("the final trickle-up was not delivered")
        return errs

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.client.close()


def run(bridges: int, seconds: float, rate: float, keep: bool = False) -> int:
    base = Path(tempfile.mkdtemp(prefix="bench_load_"))
    ones = [One(base, i, seconds, rate) for i in range(bridges)]
    t0 = time.monotonic()
    try:
        for o in ones:
            o.start()
        deadline = t0 + seconds + 120
        while time.monotonic() < deadline:
            for o in ones:
                o.service()
            if all(o.rc is not None for o in ones):
                break
            time.sleep(0.01)
        for _ in range(20):  # the last messages after the exits
            for o in ones:
                o.service()
            time.sleep(0.01)
        wall = time.monotonic() - t0
    finally:
        for o in ones:
            o.close()
    failures = 0
    cpus = []
    hwms = []
    print(f"{bridges} bridges, guests writing {rate:.0f} status/s for {seconds:.0f} s; wall {wall:.1f} s")
    head = ("bridge", "rc", "CPU s", "CPU %", "VmHWM MiB", "trickles", "reports")
    print("{:>6} {:>4} {:>7} {:>6} {:>9} {:>8} {:>7}  check".format(*head))
    for i, o in enumerate(ones):
        errs = o.check()
        failures += bool(errs)
        pct = 100 * o.cpu / wall
        cpus.append(pct)
        hwms.append(o.hwm_kb / 1024)
        print(
            f"{i:>6} {o.rc!s:>4} {o.cpu:>7.2f} {pct:>6.2f} {o.hwm_kb / 1024:>9.1f} {len(o.trickles):>8} "
            f"{len(o.fractions):>7}  {'ok' if not errs else '; '.join(errs)}"
        )
    print(
        f"CPU per bridge: mean {sum(cpus) / len(cpus):.2f} %, max {max(cpus):.2f} % of a core; "
        f"all bridges {sum(cpus):.1f} % of a core; peak RSS mean {sum(hwms) / len(hwms):.1f} MiB, "
        f"max {max(hwms):.1f} MiB; load avg {os.getloadavg()[0]:.1f}"
    )
    print(f"correct: {bridges - failures}/{bridges}")
    if keep or failures:
        print(f"slots kept in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failures else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bridges", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=100.0, help="status writes per second per guest")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    sys.exit(run(a.bridges, a.seconds, a.rate, a.keep))


if __name__ == "__main__":
    main()
