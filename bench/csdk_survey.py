"""Compatibility survey of the C guest SDK: public BOINC apps' sources, built unmodified against the
SDK (static and dynamic) and against BOINC 7.20.5's own headers and libraries (Debian's
libboinc-app-dev), run standalone in a fresh folder each, their output files compared.

The apps' sources are not in this repository (their licences, and they are only inputs): put each in
SRC/<name>/ (default /tmp/csdk_survey_src) as listed in APPS below (repository, path, commit), then

    .venv/bin/python bench/csdk_survey.py [SRC [APP ...]]

prints one Markdown table row per app (docs/guest_sdk_c.md keeps the last run's table)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("csdk_survey")

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "guest_sdk" / "c"
BOINC_INC = Path("/usr/include/boinc")


@dataclass
class App:
    name: str
    language: str
    origin: str  # repository, path, commit
    sources: list[str]
    compiler: str  # gcc / g++ / gfortran
    outputs: list[str]  # files the run writes, compared between the builds ("stderr": stderr + stderr.txt)
    inputs: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    # files of our own (a main program, stand-ins for the rest of a big app) written next to the build and
    # compiled with the app's sources; named before / after `sources` by their key's order
    driver_before: dict[str, str] = field(default_factory=dict)
    driver_after: dict[str, str] = field(default_factory=dict)
    # BOINC's own sources the reference build needs that Debian's libboinc_api lacks (SRC-relative)
    boinc_extra: list[str] = field(default_factory=list)
    # regular expressions whose matches are removed before comparing (times, pids), and whether the
    # lines are sorted first (threads)
    normalize: list[str] = field(default_factory=list)
    sort_lines: bool = False
    timeout: float = 300


PRST_DRIVER = r"""// Our own main for PRST's BOINC layer (bow.cpp): the calls PRST's prst.cpp / boinc.cpp
// make, in that order, around a small computation in place of the gwnum test.
#include <cstdio>
#include <cstdlib>
#define BOINC
#include "bow.h"

int main() {
    bow_init();
    int cp = bow_get_checkpoint_seconds(600);
    unsigned long long x = 3, p = 1000003ULL;
    unsigned events = 0;
    for (int i = 1; i <= 100000; i++) {
        x = x * x % p;
        if (i % 10000 == 0) {
            bow_report_progress(i / 100000.0);
            events |= bow_poll_events();
        }
        if (i == 50000) bow_app_checkpointed(0.5);
    }
    bow_send_trickle_up("prst", 1.0);
    FILE* f = fopen("result.txt", "w");
    fprintf(f, "standalone=%d checkpoint_seconds=%d events=%u residue=%llu\n",
        bow_standalone(), cp, events, x);
    fclose(f);
    bow_finish(0);
}
"""

SIXTRACK_STUBS = """! Stand-ins for the SixTrack modules mod_boinc.f90 uses (our own, not SixTrack's code):
! the kinds, unit handling, the tracking parameters and a checkpoint routine that counts its calls.
module floatPrecision
  use, intrinsic :: iso_fortran_env, only : real64
  implicit none
  integer, parameter :: fPrec = real64
end module floatPrecision

module mod_units
  implicit none
  integer, save :: nextUnit = 50
contains
  subroutine f_requestUnit(fileName, unit)
    character(len=*), intent(in) :: fileName
    integer, intent(inout) :: unit
    if (unit < 0) then
      unit = nextUnit
      nextUnit = nextUnit + 1
    end if
  end subroutine f_requestUnit
  subroutine f_open(unit, file, formatted, mode)
    integer, intent(in) :: unit
    character(len=*), intent(in) :: file, mode
    logical, intent(in) :: formatted
    logical :: isOpen
    inquire(unit=unit, opened=isOpen)
    if (isOpen) return
    if (mode == "w+") then
      open(unit, file=file, form="formatted", status="unknown", position="append", action="write")
    else
      open(unit, file=file, form="formatted", status="replace", action="write")
    end if
  end subroutine f_open
  subroutine f_close(unit)
    integer, intent(in) :: unit
    close(unit)
  end subroutine f_close
end module mod_units

module mod_common
  implicit none
  integer, save :: ipos = 1, numl = 2000, napxo = 4
end module mod_common

module checkpoint_restart
  implicit none
  integer, save :: nCheckpoints = 0
contains
  subroutine crpoint
    nCheckpoints = nCheckpoints + 1
    open(77, file="crpoint.dat", status="replace", action="write")
    write(77, "(a,i0)") "checkpoints: ", nCheckpoints
    close(77)
  end subroutine crpoint
end module checkpoint_restart
"""

SIXTRACK_MAIN = """! Our own main in SixTrack's shape: one particle through a linear one-turn map for numl
! turns, calling mod_boinc as SixTrack's tracking loop does, then post-processing progress and the end.
program sixtrack_driver
  use floatPrecision
  use mod_common
  use mod_boinc
  implicit none
  integer :: n, i
  real(kind=fPrec) :: x, xp, xn, mu
  mu = 0.31_fPrec * 8.0_fPrec * atan(1.0_fPrec)
  x = 1.0e-3_fPrec
  xp = 0.0_fPrec
  call boinc_initialise
  do n = 1, numl
    xn = cos(mu) * x + sin(mu) * xp
    xp = -sin(mu) * x + cos(mu) * xp
    x = xn
    call boinc_turn(n)
  end do
  call boinc_post
  open(10, file="fort.10", status="replace", action="write")
  write(10, "(a,i0,2es24.15)") "turns ", numl, x, xp
  close(10)
  do i = 1, napxo
    call boinc_postpr(i)
  end do
  call boinc_finalise(0)
end program sixtrack_driver
"""

MSG_PREFIX = r"^\d\d:\d\d:\d\d \(\d+\): "  # boinc_msg_prefix: "HH:MM:SS (pid): "
BOINC_OWN_LINES = r"^(Can't open init data file - running in standalone mode|called boinc_finish\(\d+\))$"

APPS = [
    App(
        name="spyhill_hello",
        language="C++",
        origin="spy-hill.com 'Hello, BOINC World!' 7.01 (E. Myers), hello.C as stored by the search index",
        sources=["hello.cpp"],
        compiler="g++",
        outputs=["out.txt"],
    ),
    App(
        name="boinc_uc2",
        language="C++",
        origin="BOINC/boinc samples/example_app/uc2.cpp + uc2.h, 6a1a967",
        sources=["uc2.cpp"],
        compiler="g++",
        outputs=["out"],
        inputs={"in": "Hello, BOINC! The quick brown fox jumps over the lazy dog.\n" * 40},
        args=["--cpu_time", "1"],
    ),
    App(
        name="boinc_multi_thread",
        language="C++",
        origin="BOINC/boinc samples/multi_thread/multi_thread.cpp, ee35fb3",
        sources=["multi_thread.cpp"],
        compiler="g++",
        outputs=["stderr"],
        args=["--nthreads", "2"],
        flags=["-pthread"],
        # BOINC's library adds two lines of its own to stderr.txt in standalone mode; the SDK does not
        normalize=[MSG_PREFIX, r"Elapsed time [0-9.]+", BOINC_OWN_LINES],
        sort_lines=True,
    ),
    App(
        name="potholes_home",
        language="C++",
        origin="Potholes-Home/potholeshome-app main.cpp, 3acf204",
        sources=["main.cpp"],
        compiler="g++",
        outputs=["out.txt"],
    ),
    App(
        name="prst_bow",
        language="C++",
        origin="patnashev/prst (PrimeGrid's PRST) src/bow.cpp f3b293c + bow.h e81a903, with our own main",
        sources=["bow.cpp"],
        compiler="g++",
        outputs=["result.txt"],
        driver_after={"bow_driver.cpp": PRST_DRIVER},
    ),
    App(
        name="sixtrack_boinc",
        language="Fortran",
        origin="SixTrack/SixTrack (LHC@home) source/mod_boinc.f90, fb14870, with our own stand-ins and main",
        sources=["mod_boinc.f90"],
        compiler="gfortran",
        outputs=["cr_boinc.log", "fort.10", "crpoint.dat"],
        # SixTrack's own flags: -DAPI selects the BOINC calls; the module passes a REAL(4) literal to
        # boinc_fraction_done (gfortran >= 10 refuses that without -fallow-argument-mismatch)
        flags=["-cpp", "-DAPI", "-fallow-argument-mismatch"],
        driver_before={"sixtrack_stubs.f90": SIXTRACK_STUBS},
        driver_after={"sixtrack_main.f90": SIXTRACK_MAIN},
        boinc_extra=["boinc_api_fortran/boinc_api_fortran.cpp"],
        normalize=[r"Last checkpoint [0-9.]+ seconds"],
    ),
]


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BOINC_GUEST_DIR"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def first_error(text: str) -> str:
    lines = text.strip().splitlines()
    errs = [ln for ln in lines if "error" in ln.lower()]
    return (errs or lines or ["?"])[0].strip()


def build(app: App, src: Path, out: Path, how: str) -> tuple[bool, str]:
    """Builds in a folder of its own (Fortran module files land in the working folder)."""
    bdir = out.parent / f"build_{how}"
    bdir.mkdir()
    for name, text in {**app.driver_before, **app.driver_after}.items():
        (bdir / name).write_text(text)
    files = [str(bdir / n) for n in app.driver_before] + [str(src / s) for s in app.sources]
    files += [str(bdir / n) for n in app.driver_after]
    if how == "boinc":
        extra = []
        for i, e in enumerate(app.boinc_extra):  # BOINC's own C++ sources, against BOINC's headers
            obj = bdir / f"boinc_extra{i}.o"
            r = run(["g++", "-c", f"-I{BOINC_INC}", str(src.parent / e), "-o", str(obj)], bdir)
            if r.returncode:
                return False, first_error(r.stderr)
            extra.append(str(obj))
        cmd = [app.compiler, f"-I{BOINC_INC}", f"-I{src}", *app.flags, *files, *extra, "-o", str(out),
               "-lboinc_api", "-lboinc", "-lstdc++", "-lpthread"]  # fmt: skip
    else:
        cmd = [app.compiler, f"-I{SDK / 'include'}", f"-I{src}", *app.flags, *files, "-o", str(out),
               f"-L{SDK / 'build'}", f"-Wl,-rpath,{SDK / 'build'}", "-lboinc_guest"]  # fmt: skip
        if how == "static":
            cmd.append("-static")
    r = run(cmd, bdir)
    return r.returncode == 0, first_error(r.stderr) if r.returncode else ""


def normalized(app: App, data: bytes) -> bytes:
    text = data.decode(errors="replace")
    lines = text.splitlines()
    for pattern in app.normalize:
        lines = [re.sub(pattern, "", ln) for ln in lines]
    if app.sort_lines:
        lines = sorted(ln for ln in lines if ln.strip())
    return "\n".join(lines).encode()


def execute(app: App, exe: Path, work: Path) -> tuple[int, dict[str, bytes]]:
    work.mkdir()
    for name, text in app.inputs.items():
        (work / name).write_text(text)
    r = run([str(exe), *app.args], work, timeout=app.timeout)
    got = {}
    for o in app.outputs:
        if o == "stderr":
            txt = work / "stderr.txt"
            data = r.stderr.encode() + (txt.read_bytes() if txt.exists() else b"")
        else:
            data = (work / o).read_bytes() if (work / o).exists() else b""
        got[o] = normalized(app, data)
    return r.returncode, got


def survey(src_root: Path, only: set[str] | None = None) -> list[str]:
    subprocess.run(["make", "-s", "-C", str(SDK)], check=True, timeout=300)
    rows = ["| app | language | builds (SDK static / dynamic; BOINC 7.20.5) | runs | result checked |",
            "|---|---|---|---|---|"]  # fmt: skip
    for app in APPS:
        if only and app.name not in only:
            continue
        src = src_root / app.name
        if not src.is_dir():
            rows.append(f"| {app.name} | {app.language} | sources not in {src} | - | - |")
            continue
        log.info("%s: building and running", app.name)
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            built = {how: build(app, src, t / f"app_{how}", how) for how in ("static", "dynamic", "boinc")}
            results = {}
            for how, (ok, _) in built.items():
                if ok:
                    results[how] = execute(app, t / f"app_{how}", t / f"run_{how}")
            builds = " / ".join("yes" if built[h][0] else f"no ({built[h][1]})" for h in built)
            runs = ", ".join(f"{h}: exit {rc}" for h, (rc, _) in results.items())
            ref = results.get("boinc")
            same = [h for h in ("static", "dynamic") if h in results and ref and results[h][1] == ref[1]]
            if ref and len(same) == 2 and all(ref[1].values()):
                checked = f"{', '.join(app.outputs)} identical to BOINC's build ({' + '.join(same)})"
            elif ref and not all(ref[1].values()):
                checked = "BOINC's build wrote no output to compare"
            else:
                diff = [h for h in ("static", "dynamic") if h not in same]
                checked = f"differs from BOINC's build ({' + '.join(diff)})"
            rows.append(f"| {app.name} ({app.origin}) | {app.language} | {builds} | {runs} | {checked} |")
    return rows


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    args = sys.argv[1:]
    src_root = Path(args[0]) if args else Path("/tmp/csdk_survey_src")
    for row in survey(src_root, set(args[1:]) or None):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
