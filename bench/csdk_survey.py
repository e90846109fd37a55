"""Compatibility survey of the C guest SDK: public BOINC apps' sources, built unmodified against the
SDK (static and dynamic) and against BOINC 7.20.5's own headers and libraries (Debian's
libboinc-app-dev), run standalone in a fresh folder each, their output files compared.

The apps' sources are not in this repository (their licences, and they are only inputs): put each in
SRC/<name>/ (default /tmp/csdk_survey_src) as listed in APPS below (repository, path, commit), then

    .venv/bin/python bench/csdk_survey.py [SRC]

prints one Markdown table row per app (docs/guest_sdk_c.md keeps the last run's table)."""

from __future__ import annotations

import logging
import os
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
    outputs: list[str]  # files the run writes, compared between the builds
    inputs: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


APPS = [
    App(
        name="spyhill_hello",
        language="C++",
        origin="spy-hill.com 'Hello, BOINC World!' 7.01 (E. Myers), hello.C as stored by the search index",
        sources=["hello.cpp"],
        compiler="g++",
        outputs=["out.txt"],
    ),
]


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BOINC_GUEST_DIR"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def build(app: App, src: Path, out: Path, how: str) -> tuple[bool, str]:
    files = [str(src / s) for s in app.sources]
    if how == "boinc":
        cmd = [app.compiler, f"-I{BOINC_INC}", f"-I{src}", *app.flags, *files, "-o", str(out),
               "-lboinc_api", "-lboinc", "-lpthread"]  # fmt: skip
    else:
        cmd = [app.compiler, f"-I{SDK / 'include'}", f"-I{src}", *app.flags, *files, "-o", str(out),
               f"-L{SDK / 'build'}", f"-Wl,-rpath,{SDK / 'build'}", "-lboinc_guest"]  # fmt: skip
        if how == "static":
            cmd.append("-static")
    r = run(cmd, src)
    return r.returncode == 0, r.stderr.strip().splitlines()[0] if r.returncode else ""


def execute(app: App, exe: Path, work: Path) -> tuple[int, dict[str, bytes]]:
    work.mkdir()
    for name, text in app.inputs.items():
        (work / name).write_text(text)
    r = run([str(exe), *app.args], work)
    return r.returncode, {o: (work / o).read_bytes() if (work / o).exists() else b"" for o in app.outputs}


def survey(src_root: Path) -> list[str]:
    subprocess.run(["make", "-s", "-C", str(SDK)], check=True, timeout=300)
    rows = ["| app | language | builds (SDK static / dynamic; BOINC 7.20.5) | runs | result checked |",
            "|---|---|---|---|---|"]  # fmt: skip
    for app in APPS:
        src = src_root / app.name
        if not src.is_dir():
            rows.append(f"| {app.name} | {app.language} | sources not in {src} | - | - |")
            continue
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
            checked = (
                f"{', '.join(app.outputs)} identical to BOINC's build ({' + '.join(same)})"
                if ref and len(same) == 2
                else "differs from BOINC's build"
            )
            rows.append(f"| {app.name} ({app.origin}) | {app.language} | {builds} | {runs} | {checked} |")
    return rows


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    src_root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/csdk_survey_src")
    for row in survey(src_root):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
