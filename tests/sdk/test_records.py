"""The protocol's record types (boinc_guest._records: a small dataclasses twin) and the SDK's import diet:
an app's start imports neither typing, dataclasses, inspect nor logging (under TCG in a VM these cost
about half a second of a Python app's first status write, docs/images.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from boinc_guest import protocol as P
from boinc_guest._records import FrozenRecordError
from boinc_guest._runtime import BoincOptions, BoincStatus

from tests.support.paths import ROOT


def test_records_construct_compare_hash_and_repr_like_dataclasses() -> None:
    a = P.Finish(7, 0)
    assert a == P.Finish(id=7, status=0, message="", is_notice=False)
    assert a != P.Finish(7, 1) and a != P.TemporaryExit(7, 0.0)
    assert hash(a) == hash(P.Finish(7, 0)) and len({a, P.Finish(7, 0)}) == 1
    assert repr(a) == "Finish(id=7, status=0, message='', is_notice=False)"
    assert P.Status().fraction_done == 0.0 and P.Status(seq=3).seq == 3
    with pytest.raises(TypeError, match="missing required argument: 'status'"):
        P.Finish(id=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        P.Finish(1, 0, nope=1)
    with pytest.raises(TypeError, match="multiple values for argument 'id'"):
        P.Finish(1, 0, id=2)
    with pytest.raises(TypeError, match="positional arguments"):
        P.UploadRequest(1, "a", "b")


def test_frozen_records_refuse_changes_and_replace_copies() -> None:
    s = P.Status(seq=1, fraction_done=0.25)
    with pytest.raises(FrozenRecordError):
        s.seq = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):  # FrozenRecordError is an AttributeError, as in dataclasses
        del s.seq  # type: ignore[misc]
    t = P.replace(s, seq=2)
    assert (t.seq, t.fraction_done, s.seq) == (2, 0.25, 1)
    with pytest.raises(TypeError):
        P.replace(s, nope=1)


def test_default_factories_give_each_record_its_own_value() -> None:
    c1, c2 = P.Control(), P.Control()
    assert c1.init_data == P.InitData() and c1.init_data is not c2.init_data
    assert "init_data" not in vars(P.Control)  # the factory is not left as a class attribute


def test_mutable_records_stay_mutable_and_unhashable() -> None:
    o = BoincOptions(direct_process_action=0)
    o.multi_thread = 1
    assert o == BoincOptions(direct_process_action=0, multi_thread=1)
    with pytest.raises(TypeError):
        hash(o)
    assert BoincStatus(suspended=1).suspended == 1


def test_an_apps_start_imports_no_typing_dataclasses_or_logging(tmp_path) -> None:
    code = (
        "import sys\n"
        "import boinc_guest\n"
        "boinc_guest.boinc_init()\n"
        "boinc_guest.boinc_fraction_done(0.5)\n"
        "heavy = ('typing', 'dataclasses', 'inspect', 'logging', 'ast')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "BOINC_GUEST_DIR": str(tmp_path), "PYTHONPATH": str(ROOT / "guest_sdk" / "python")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout
    assert (tmp_path / P.STATUS_FILE).exists()
