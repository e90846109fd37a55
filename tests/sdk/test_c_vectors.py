"""The C guest SDK against the shared protocol vectors (tests/vectors/): byte-identical status
encoding, control (and status) decoding back to the meaning, rejection of every invalid vector with
the expected category, and the SDK call sessions written byte for byte like the Python SDK."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.paths import C_PROGRAMS, VECTORS

sys.path.insert(0, str(C_PROGRAMS))
import csdk
from boinc_guest import protocol as P

VECTORS = VECTORS


def _load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


STATUS = _load("status.json")
CONTROL = _load("control.json")
INVALID = _load("invalid.json")
SESSIONS = _load("sessions.json")


@pytest.fixture(scope="module")
def lib() -> Any:
    csdk.build()
    return csdk.load()


# --------------------------------------------------------------------------------------------------
# status / control / invalid


@pytest.mark.parametrize("vec", STATUS, ids=[v["name"] for v in STATUS])
def test_status_vector_encodes_byte_identically(lib: Any, vec: dict[str, Any]) -> None:
    assert csdk.encode_status_meaning(vec["meaning"]).hex() == vec["hex"]


@pytest.mark.parametrize("vec", STATUS, ids=[v["name"] for v in STATUS])
def test_status_vector_decodes_to_meaning(lib: Any, vec: dict[str, Any]) -> None:
    rc, meaning, err = csdk.decode("status", bytes.fromhex(vec["hex"]))
    assert rc == 0, err
    assert meaning == vec["meaning"]


@pytest.mark.parametrize("vec", CONTROL, ids=[v["name"] for v in CONTROL])
def test_control_vector_decodes_to_meaning(lib: Any, vec: dict[str, Any]) -> None:
    rc, meaning, err = csdk.decode("control", bytes.fromhex(vec["hex"]))
    assert rc == 0, err
    assert meaning == vec["meaning"]


# The C SDK only needs a control decoder; it also has a strict status decoder (used at boinc_init to
# continue seq / ids), so both kinds of invalid vectors apply.
@pytest.mark.parametrize("vec", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_rejected_with_category(lib: Any, vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["hex"])
    if "pad_to" in vec:  # hex followed by zero bytes up to pad_to bytes (the > 1 MiB inputs)
        data += bytes(vec["pad_to"] - len(data))
    rc, meaning, err = csdk.decode(vec["kind"], data)
    assert rc < 0 and meaning is None
    assert err.split(":", 1)[0] == vec["error"], err
    assert vec["kind"] in err  # the message names the file kind


def test_decoder_never_reads_past_truncations(lib: Any) -> None:
    """Every prefix of a rich control file is refused (and none crashes the process)."""
    full = bytes.fromhex(next(v["hex"] for v in CONTROL if v["name"] == "everything"))
    for n in range(len(full)):
        rc, _m, err = csdk.decode("control", full[:n])
        assert rc < 0 and err.startswith("format:"), (n, err)


# --------------------------------------------------------------------------------------------------
# UTF-8 handling, checked against Python


def _py_repair(raw: bytes) -> bytes:
    """What the Python SDK sends for a C string: each invalid byte becomes U+FFFD (surrogateescape
    turns each into a lone surrogate, which the SDK replaces)."""
    return P.clean_text(raw.decode("utf-8", "surrogateescape")).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_utf8_repair_matches_python(raw: bytes) -> None:
    lib = csdk.load()
    need = lib.boinc_guest_utf8_repair(raw, len(raw), csdk.ffi.NULL, 0)
    out = csdk.ffi.new("char[]", need + 1)
    lib.boinc_guest_utf8_repair(raw, len(raw), out, need)
    assert bytes(csdk.ffi.buffer(out, need)) == _py_repair(raw)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.integers(min_value=0, max_value=40))
def test_utf8_truncate_matches_python(text: str, limit: int) -> None:
    lib = csdk.load()
    raw = P.clean_text(text).encode("utf-8")
    n = lib.boinc_guest_utf8_truncate(raw, len(raw), limit)
    assert raw[:n] == P.truncate_utf8(P.clean_text(text), limit).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# sessions


def _float(x: Any) -> float:
    if isinstance(x, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[x]
    return float(x)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def run_session_c(lib: Any, steps: list[dict[str, Any]], share: Path) -> list[dict[str, Any]]:
    """Replay the ops of a session against the C SDK in test mode; returns [{rc?, ret?, write}]."""
    status_path = share / P.STATUS_FILE

    def current() -> bytes | None:
        try:
            return status_path.read_bytes()
        except FileNotFoundError:
            return None

    lib.boinc_guest_reset()
    lib.boinc_guest_test_mode(1)
    out: list[dict[str, Any]] = []
    old_env = os.environ.get("BOINC_GUEST_DIR")
    os.environ["BOINC_GUEST_DIR"] = str(share)
    try:
        prev = current()
        for step in steps:
            name, args = step["op"][0], step["op"][1:]
            got: dict[str, Any] = {}
            if name == "setup":
                spec = args[0]
                if spec.get("control") is not None:
                    data = P.encode_control(P.control_from_meaning(spec["control"]))
                    P.write_atomic(share, P.CONTROL_FILE, data)
                if spec.get("status_hex") is not None:
                    P.write_atomic(share, P.STATUS_FILE, bytes.fromhex(spec["status_hex"]))
                prev = current()
                out.append({"write": None})
                continue
            if name == "control":
                P.write_atomic(share, P.CONTROL_FILE, P.encode_control(P.control_from_meaning(args[0])))
                lib.boinc_guest_reload_control()
            elif name == "set_times":
                lib.boinc_guest_set_times(_float(args[0]), _float(args[1]))
            elif name == "flush":
                lib.boinc_guest_flush()
            elif name == "heartbeat":
                lib.boinc_guest_heartbeat()
            elif name == "boinc_init":
                got["rc"] = lib.boinc_init()
            elif name == "boinc_fraction_done":
                got["rc"] = lib.boinc_fraction_done(_float(args[0]))
            elif name in ("boinc_ops_per_cpu_sec", "boinc_ops_cumulative"):
                getattr(lib, name)(_float(args[0]), _float(args[1]))
            elif name == "boinc_checkpoint_completed":
                got["rc"] = lib.boinc_checkpoint_completed()
            elif name in (
                "boinc_begin_critical_section",
                "boinc_end_critical_section",
                "boinc_need_network",
                "boinc_network_done",
            ):
                getattr(lib, name)()
            elif name == "boinc_send_trickle_up":
                got["rc"] = lib.boinc_send_trickle_up(_b(args[0]), _b(args[1]))
            elif name == "boinc_upload_file":
                got["rc"] = lib.boinc_upload_file(_b(args[0]))
            elif name == "boinc_upload_status":
                got["rc"] = lib.boinc_upload_status(_b(args[0]))
            elif name == "boinc_receive_trickle_down":
                buf = csdk.ffi.new("char[]", 65536 * 4 + 1)
                r = lib.boinc_receive_trickle_down(buf, len(buf))
                got["ret"] = csdk.ffi.string(buf).decode("utf-8") if r else None
            elif name == "boinc_finish_message":
                got["rc"] = lib.boinc_finish_message(int(args[0]), _b(args[1]), bool(args[2]))
            elif name == "boinc_temporary_exit":
                delay = _float(args[0])
                if math.isfinite(delay) and delay == int(delay):
                    # BOINC's own signature (int delay) where the vector's delay is integral
                    got["rc"] = lib.boinc_temporary_exit(int(delay), _b(args[1]), bool(args[2]))
                else:
                    got["rc"] = lib.boinc_guest_temporary_exit(delay, _b(args[1]), int(bool(args[2])))
            else:
                raise AssertionError(f"unknown session op {name!r}")
            now = current()
            got["write"] = now.hex() if now is not None and now != prev else None
            prev = now
            out.append(got)
    finally:
        if old_env is None:
            os.environ.pop("BOINC_GUEST_DIR", None)
        else:
            os.environ["BOINC_GUEST_DIR"] = old_env
        lib.boinc_guest_reset()
        lib.boinc_guest_test_mode(0)
    return out


@pytest.mark.parametrize("session", SESSIONS, ids=[s["name"] for s in SESSIONS])
def test_session_writes_the_same_files(lib: Any, session: dict[str, Any], tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    got = run_session_c(lib, session["steps"], share)
    for i, (want, have) in enumerate(zip(session["steps"], got, strict=True)):
        where = f"{session['name']} step {i} {json.dumps(want['op'])[:80]}"
        if "rc" in want:
            assert have.get("rc") == want["rc"], where
        if "ret" in want:
            assert have.get("ret") == want["ret"], where
        if have["write"] != want["write"] and want["write"] is not None and have["write"] is not None:
            exp = P.to_meaning(P.decode_status(bytes.fromhex(want["write"])))
            _rc, act, err = csdk.decode("status", bytes.fromhex(have["write"]))
            raise AssertionError(f"{where}: different bytes\nwant {exp}\nhave {act or err}")
        assert have["write"] == want["write"], where


# --------------------------------------------------------------------------------------------------
# differential fuzzing: the C decoders accept exactly what the Python reference accepts


def _mutations() -> st.SearchStrategy[tuple[str, bytes]]:
    seeds = [("control", bytes.fromhex(v["hex"])) for v in CONTROL] + [
        ("status", bytes.fromhex(v["hex"])) for v in STATUS if len(v["hex"]) < 4000
    ]

    @st.composite
    def mutate(draw: st.DrawFn) -> tuple[str, bytes]:
        kind, data = draw(st.sampled_from(seeds))
        buf = bytearray(data)
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            op = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
            i = draw(st.integers(min_value=0, max_value=max(0, len(buf) - 1)))
            if op == "flip" and buf:
                buf[i] ^= 1 << draw(st.integers(min_value=0, max_value=7))
            elif op == "set" and buf:
                buf[i] = draw(st.integers(min_value=0, max_value=255))
            elif op == "cut":
                del buf[i : i + draw(st.integers(min_value=1, max_value=4))]
            else:
                buf[i:i] = draw(st.binary(min_size=1, max_size=3))
        return kind, bytes(buf)

    return mutate()


@settings(max_examples=int(os.environ.get("C_FUZZ_EXAMPLES", "400")), deadline=None)
@given(_mutations())
def test_c_decoders_agree_with_python(case: tuple[str, bytes]) -> None:
    kind, data = case
    csdk.load()
    rc, meaning, err = csdk.decode(kind, data)
    try:
        obj = P.decode_status(data) if kind == "status" else P.decode_control(data)
    except P.ProtocolError as exc:
        assert rc < 0, f"C accepted what Python refuses ({exc.category}: {exc})"
        assert err.split(":", 1)[0] == exc.category, (err, str(exc))
        return
    assert rc == 0, f"C refused what Python accepts: {err}"
    assert meaning == P.to_meaning(obj)
