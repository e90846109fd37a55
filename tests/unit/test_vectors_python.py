"""The Python protocol module and SDK against the shared vectors in tests/vectors/."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from boinc_guest import protocol as P

from tests.support.paths import VECTORS

VECTORS = VECTORS


def _load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _generate_module():
    spec = importlib.util.spec_from_file_location("vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


STATUS = _load("status.json")
CONTROL = _load("control.json")
INVALID = _load("invalid.json")
SESSIONS = _load("sessions.json")


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


def test_vector_files_are_substantial() -> None:
    assert len(STATUS) >= 40 and len(CONTROL) >= 10 and len(INVALID) >= 100 and len(SESSIONS) >= 15
    for items in (STATUS, CONTROL, INVALID, SESSIONS):
        names = _ids(items)
        assert len(names) == len(set(names)), "vector names must be unique"


@pytest.mark.parametrize("item", STATUS, ids=_ids(STATUS))
def test_status_encode_and_decode(item: dict[str, Any]) -> None:
    status = P.status_from_meaning(item["meaning"])
    assert P.encode_status(status).hex() == item["hex"]
    decoded = P.decode_status(bytes.fromhex(item["hex"]))
    assert P.to_meaning(decoded) == item["meaning"]
    assert decoded == status


@pytest.mark.parametrize("item", CONTROL, ids=_ids(CONTROL))
def test_control_encode_and_decode(item: dict[str, Any]) -> None:
    control = P.control_from_meaning(item["meaning"])
    assert P.encode_control(control).hex() == item["hex"]
    decoded = P.decode_control(bytes.fromhex(item["hex"]))
    assert P.to_meaning(decoded) == item["meaning"]
    assert decoded == control


def _invalid_bytes(item: dict[str, Any]) -> bytes:
    data = bytes.fromhex(item["hex"])
    if "pad_to" in item:
        data += b"\0" * (item["pad_to"] - len(data))
    return data


@pytest.mark.parametrize("item", INVALID, ids=_ids(INVALID))
def test_invalid_rejected_with_category(item: dict[str, Any]) -> None:
    decode = P.decode_status if item["kind"] == "status" else P.decode_control
    with pytest.raises(P.ProtocolError) as info:
        decode(_invalid_bytes(item))
    assert info.value.category == item["error"], str(info.value)
    assert info.value.category in P.CATEGORIES
    assert str(info.value).startswith(item["kind"]), "the message names the file kind"


def test_invalid_covers_every_category() -> None:
    assert {item["error"] for item in INVALID} == set(P.CATEGORIES)


@pytest.mark.parametrize("item", SESSIONS, ids=_ids(SESSIONS))
def test_session_reproduces_exactly(item: dict[str, Any], tmp_path: Path) -> None:
    gen = _generate_module()
    ops = [step["op"] for step in item["steps"]]
    steps = gen.run_session(ops, tmp_path)
    assert len(steps) == len(item["steps"])
    for i, (got, want) in enumerate(zip(steps, item["steps"], strict=True)):
        assert got == want, f"step {i} {want['op'][0]} differs"
    # every write in a session is a valid status file, with seq strictly increasing
    seqs = [P.decode_status(bytes.fromhex(s["write"])).seq for s in item["steps"] if s["write"]]
    assert seqs == sorted(set(seqs))


def test_sessions_cover_the_ops() -> None:
    used = {step["op"][0] for item in SESSIONS for step in item["steps"]}
    gen = _generate_module()
    expected = gen.RC_OPS | gen.VOID_OPS | {"setup", "control", "set_times", "flush", "heartbeat"}
    expected.add("boinc_receive_trickle_down")
    assert expected <= used


def test_committed_vectors_match_a_fresh_generation() -> None:
    gen = _generate_module()
    fresh = gen.build()
    for name, items in fresh.items():
        assert (VECTORS / name).read_text(encoding="utf-8") == gen.dump(items), (
            f"tests/vectors/{name} is stale: run python tests/vectors/generate.py and review the diff"
        )
