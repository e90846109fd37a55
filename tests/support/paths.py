"""Where the tests find things: one definition each."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
TESTS = ROOT / "tests"
DATA = TESTS / "data"  # job files (tests/data/jobs, the real ones in jobs-real)
VECTORS = TESTS / "vectors"  # the protocol's shared test vectors
C_PROGRAMS = TESTS / "c_programs"  # C / C++ / Fortran test programs and their builder (csdk.py)
FAKES = TESTS / "fakes"  # named fakes (VirtualBox's VBoxManage, the runtime's backend / API / watcher)
