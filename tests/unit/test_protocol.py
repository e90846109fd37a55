"""The protocol module: canonical encoding, strict decoding, hostile input, atomic writes."""

from __future__ import annotations

import math
import os
from pathlib import Path

import msgpack
import pytest
from boinc_guest import protocol as P
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _status_map(**changes: object) -> dict:
    m = P.to_meaning(P.Status(seq=1, events=(P.TrickleUp(1, "v", "t"),)))
    m.update(changes)
    return m


def _reject(data: bytes, category: str, kind: str = "status") -> P.ProtocolError:
    decode = P.decode_status if kind == "status" else P.decode_control
    with pytest.raises(P.ProtocolError) as info:
        decode(data)
    assert info.value.category == category, str(info.value)
    return info.value


def test_public_constants() -> None:
    assert (P.STATUS_FILE, P.CONTROL_FILE, P.SCHEMA_VERSION) == (
        "boinc_status.msgpack",
        "boinc_control.msgpack",
        1,
    )
    assert (P.MAX_FILE, P.MAX_EVENTS, P.MAX_NAME, P.MAX_TEXT, P.MAX_MESSAGE) == (
        1048576,
        64,
        255,
        65536,
        4096,
    )
    assert (P.ERR_NULL, P.ERR_BUFFER_OVERFLOW, P.ERR_NOT_FOUND, P.ERR_INVALID_PARAM, P.ERR_WRITE) == (
        -116,
        -118,
        -161,
        -178,
        -103,
    )
    assert P.EXIT_ABORTED_BY_CLIENT == 194
    assert issubclass(P.ProtocolError, ValueError)


def test_canonical_form_float64_and_key_order() -> None:
    data = P.encode_status(P.Status(seq=1, cpu_time=3))  # an int given for a float field
    obj = msgpack.unpackb(data)
    assert list(obj) == [
        "v",
        "seq",
        "hb",
        "fraction_done",
        "cpu_time",
        "elapsed_time",
        "checkpoint_cpu_time",
        "checkpoint_count",
        "fpops_per_cpu_sec",
        "fpops_cumulative",
        "intops_per_cpu_sec",
        "intops_cumulative",
        "critical_section",
        "want_network",
        "td_ack",
        "events",
    ]
    assert b"\xa8cpu_time\xcb\x40\x08" + b"\0" * 6 in data  # 3.0 as float64
    c = msgpack.unpackb(P.encode_control(P.Control()))
    assert list(c) == [
        "v",
        "seq",
        "suspended",
        "quit",
        "abort",
        "network_suspended",
        "ack",
        "init_data",
        "trickle_down",
        "uploads",
    ]
    assert list(c["init_data"])[:3] == ["app_name", "wu_name", "result_name"]
    assert c["init_data"]["checkpoint_period"] == 300.0 and c["init_data"]["nthreads"] == 1


def test_unknown_keys_ignored_at_every_level() -> None:
    m = _status_map(future=[1, 2, {"x": None}], zzz=b"bin")
    m["events"][0]["extra"] = "later"
    s = P.decode_status(msgpack.packb(m))
    assert s.seq == 1 and s.events == (P.TrickleUp(1, "v", "t"),)
    c = P.to_meaning(P.Control())
    c["init_data"]["gpu_type"] = "none"
    c["new"] = True
    assert P.decode_control(msgpack.packb(c)) == P.Control()


def test_ints_accepted_for_floats_floats_rejected_for_ints() -> None:
    s = P.decode_status(msgpack.packb(_status_map(fraction_done=1, cpu_time=7)))
    assert s.fraction_done == 1.0 and isinstance(s.fraction_done, float) and s.cpu_time == 7.0
    err = _reject(msgpack.packb(_status_map(checkpoint_count=2.0)), "type")
    assert "checkpoint_count" in str(err)


def test_bool_int_confusion_rejected_both_ways() -> None:
    _reject(msgpack.packb(_status_map(seq=True)), "type")
    _reject(msgpack.packb(_status_map(critical_section=0)), "type")
    _reject(msgpack.packb(_status_map(fraction_done=False)), "type")
    with pytest.raises(P.ProtocolError):
        P.encode_status(P.Status(seq=True))  # type: ignore[arg-type]
    with pytest.raises(P.ProtocolError):
        P.encode_status(P.Status(want_network=1))  # type: ignore[arg-type]


def test_messages_name_the_field() -> None:
    err = _reject(msgpack.packb(_status_map(fraction_done=1.5)), "range")
    assert str(err) == "status field 'fraction_done': 1.5 is outside [0, 1]"
    m = _status_map()
    m["events"][0]["variety"] = "v" * 300
    assert "events[0].variety" in str(_reject(msgpack.packb(m), "range"))
    c = P.to_meaning(P.Control())
    c["init_data"]["nthreads"] = 0
    assert "init_data.nthreads" in str(_reject(msgpack.packb(c), "range", "control"))
    del c["init_data"]["hostid"]
    assert "init_data.hostid" in str(_reject(msgpack.packb(c), "missing", "control"))


def test_size_limit_exact() -> None:
    # a valid file of exactly MAX_FILE bytes decodes; one byte more is refused before unpacking
    base = P.encode_status(P.Status(events=(P.TrickleUp(1, "v", ""),)))
    m = _status_map(pad="")
    m["pad"] = "p" * (P.MAX_FILE - len(msgpack.packb(m)) - 4)  # str32 header is 5 bytes instead of 1
    data = msgpack.packb(m)
    assert len(data) == P.MAX_FILE, len(data)
    assert P.decode_status(data).seq == 1
    _reject(data + b"\0", "size")
    assert len(base) < 400
    with pytest.raises(P.ProtocolError) as info:
        P.encode_status(P.Status(events=tuple(P.TrickleUp(i, "v", "t" * 65536) for i in range(1, 17))))
    assert info.value.category == "size"


def test_depth_limit_boundary() -> None:
    ok = {"v": 1, "x": [[[[[[[]]]]]]]}  # innermost empty list at depth 8
    _reject(msgpack.packb(ok), "missing")  # passes the depth check, then fails on 'seq'
    _reject(msgpack.packb({"v": 1, "x": [[[[[[[0]]]]]]]}), "format")
    _reject(b"\x91" * 100000 + b"\x01", "format")


def test_decoders_accept_bytearray_and_memoryview_reject_other_types() -> None:
    data = P.encode_control(P.Control(seq=3))
    assert P.decode_control(bytearray(data)).seq == 3
    assert P.decode_control(memoryview(data)).seq == 3
    _reject("text", "type", "control")  # type: ignore[arg-type]


def test_meaning_round_trip_and_helpers() -> None:
    events = (
        P.TrickleUp(1, "a", "b"),
        P.UploadRequest(2, "f"),
        P.Finish(3, -2, "m", True),
        P.TemporaryExit(4, 5, "r", False),
    )
    s = P.Status(seq=9, events=events)
    assert P.status_from_meaning(P.to_meaning(s)) == s
    assert P.to_meaning(events[3])["delay"] == 5.0
    assert P.truncate_utf8("ab" + "€" * 10, 6) == "ab€"
    assert P.truncate_utf8("\ud800x", 10) == "\ufffdx"
    assert P.check_upload_name("a.txt") == 0 and P.check_upload_name("a/b") == P.ERR_INVALID_PARAM
    with pytest.raises(TypeError):
        P.to_meaning(object())


def test_write_atomic(tmp_path: Path) -> None:
    P.write_atomic(tmp_path, "f.bin", b"one")
    P.write_atomic(str(tmp_path), "f.bin", b"two")
    assert (tmp_path / "f.bin").read_bytes() == b"two"
    assert sorted(os.listdir(tmp_path)) == ["f.bin"], "the temp file is renamed away"
    # a symlink planted at the temp name is not followed
    target = tmp_path / "victim"
    target.write_bytes(b"keep")
    os.symlink(target, tmp_path / ".g.bin.tmp")
    with pytest.raises(OSError):
        P.write_atomic(tmp_path, "g.bin", b"x")
    assert target.read_bytes() == b"keep"


# --------------------------------------------------------------------------------------------------
# hypothesis: decoders never raise anything but ProtocolError; encoders round-trip

_FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    for decode in (P.decode_status, P.decode_control):
        try:
            decode(data)
        except P.ProtocolError as exc:
            assert exc.category in P.CATEGORIES


_VALID = [
    P.encode_status(
        P.Status(seq=5, fraction_done=0.5, events=(P.TrickleUp(1, "v", "t"), P.Finish(2, 1, "m", True)))
    ),
    P.encode_control(
        P.Control(seq=2, trickle_down=(P.TrickleDown(1, "x"),), uploads=(P.UploadResult("a", 0),))
    ),
]


@_FUZZ
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
    st.integers(0, 2000),
)
def test_fuzz_mutated_valid_files(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for pos, val in flips:
        data[pos % len(data)] = val
    data = data[: max(1, len(data) - cut % 8)] if cut % 3 == 0 else data
    for decode in (P.decode_status, P.decode_control):
        try:
            decode(bytes(data))
        except P.ProtocolError as exc:
            assert exc.category in P.CATEGORIES


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=10),
)
_trees = st.recursive(
    _scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=30,
)
_keys = st.sampled_from(
    [
        "v",
        "seq",
        "events",
        "init_data",
        "id",
        "type",
        "fraction_done",
        "ack",
        "uploads",
        "trickle_down",
        "text",
        "name",
        "status",
    ]
)


@_FUZZ
@given(st.dictionaries(_keys, _trees, max_size=10), st.booleans())
def test_fuzz_structured_maps(obj: dict, with_v: bool) -> None:
    if with_v:
        obj["v"] = 1
    data = msgpack.packb(obj, use_bin_type=True)
    for decode in (P.decode_status, P.decode_control):
        try:
            decode(data)
        except P.ProtocolError as exc:
            assert exc.category in P.CATEGORIES


_finite = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
_uint = st.integers(0, 2**64 - 1)
_text = st.text(max_size=40).map(lambda s: P.truncate_utf8(s, 40))
_name = st.text(
    alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=20
).filter(lambda s: s not in (".", ".."))


@st.composite
def _statuses(draw: st.DrawFn) -> P.Status:
    n = draw(st.integers(0, 6))
    ids = sorted(draw(st.sets(st.integers(1, 2**64 - 1), min_size=n, max_size=n)))
    events = []
    for i in ids:
        kind = draw(st.integers(0, 3))
        if kind == 0:
            events.append(P.TrickleUp(i, draw(_name), draw(_text)))
        elif kind == 1:
            events.append(P.UploadRequest(i, draw(_name)))
        elif kind == 2:
            events.append(
                P.Finish(i, draw(st.integers(-(2**31), 2**31 - 1)), draw(_text), draw(st.booleans()))
            )
        else:
            events.append(P.TemporaryExit(i, draw(_finite), draw(_text), draw(st.booleans())))
    return P.Status(
        seq=draw(_uint),
        hb=draw(_uint),
        fraction_done=draw(st.floats(0.0, 1.0)),
        cpu_time=draw(_finite),
        elapsed_time=draw(_finite),
        checkpoint_cpu_time=draw(_finite),
        checkpoint_count=draw(_uint),
        fpops_per_cpu_sec=draw(_finite),
        fpops_cumulative=draw(_finite),
        intops_per_cpu_sec=draw(_finite),
        intops_cumulative=draw(_finite),
        critical_section=draw(st.booleans()),
        want_network=draw(st.booleans()),
        td_ack=draw(_uint),
        events=tuple(events),
    )


@settings(max_examples=200, deadline=None)
@given(_statuses())
def test_status_round_trip(status: P.Status) -> None:
    data = P.encode_status(status)
    back = P.decode_status(data)
    assert back == status
    assert P.encode_status(back) == data
    for f in ("fraction_done", "cpu_time"):
        assert math.isfinite(getattr(back, f))
