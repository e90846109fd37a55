#!/usr/bin/env python3
"""Write the protocol v1 test vectors (tests/vectors/README.md) from the Python implementation.

    python tests/vectors/generate.py          # rewrite status.json, control.json, sessions.json, invalid.json
    python tests/vectors/generate.py --check  # exit 1 if the committed files differ from a fresh run

The committed files are the reference: a change to the encoding shows up as a diff there. The session
runner (``run_session``) is also what tests/unit/test_vectors_python.py uses to replay sessions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "guest_sdk" / "python"))

import boinc_guest as bg  # noqa: E402
import msgpack  # noqa: E402
from boinc_guest import _runtime, testing  # noqa: E402
from boinc_guest import protocol as P  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Helpers


def status_meaning(**kw: Any) -> dict[str, Any]:
    events = kw.pop("events", ())
    return P.to_meaning(P.Status(events=tuple(events), **kw))


def control_meaning(**kw: Any) -> dict[str, Any]:
    init = kw.pop("init_data", None)
    c = P.Control(
        init_data=init if init is not None else P.InitData(),
        trickle_down=tuple(kw.pop("trickle_down", ())),
        uploads=tuple(kw.pop("uploads", ())),
        **kw,
    )
    return P.to_meaning(c)


def text_of_bytes(n: int, fill: str = "x") -> str:
    return fill * n


def float_arg(x: Any) -> float:
    """Session float arguments: JSON numbers, or the strings "nan", "inf", "-inf"."""
    if isinstance(x, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[x]
    return float(x)


def raw_map(d: dict[str, Any]) -> bytes:
    return msgpack.packb(d, use_bin_type=True)


# --------------------------------------------------------------------------------------------------
# status.json


def status_vectors() -> list[dict[str, Any]]:
    out: list[tuple[str, dict[str, Any]]] = []
    add = lambda name, m: out.append((name, m))  # noqa: E731

    add("defaults", status_meaning())
    add(
        "typical_progress",
        status_meaning(
            seq=12,
            hb=7,
            fraction_done=0.25,
            cpu_time=123.5,
            elapsed_time=130.25,
            checkpoint_cpu_time=100.0,
            checkpoint_count=3,
            fpops_per_cpu_sec=2.5e9,
            fpops_cumulative=3.0e11,
            intops_per_cpu_sec=1.0e9,
            intops_cumulative=1.25e11,
            critical_section=True,
            want_network=True,
            td_ack=4,
        ),
    )
    add("fraction_one", status_meaning(seq=1, fraction_done=1.0))
    add(
        "floats_awkward",
        status_meaning(
            seq=1,
            fraction_done=0.1,
            cpu_time=1e300,
            elapsed_time=5e-324,
            fpops_cumulative=1.7976931348623157e308,
            intops_cumulative=0.3,
        ),
    )
    for n in (127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1):
        add(f"seq_{n}", status_meaning(seq=n, hb=n, checkpoint_count=n, td_ack=n))
    add("event_trickle_up", status_meaning(seq=2, events=[P.TrickleUp(1, "progress", "<n>1</n>")]))
    add("event_upload", status_meaning(seq=2, events=[P.UploadRequest(1, "result.dat")]))
    add("event_finish", status_meaning(seq=2, events=[P.Finish(1, 0, "", False)]))
    add("event_finish_notice", status_meaning(seq=2, events=[P.Finish(5, 3, "input file corrupt", True)]))
    add(
        "event_temporary_exit",
        status_meaning(seq=2, events=[P.TemporaryExit(1, 600.0, "VM not ready", True)]),
    )
    add("event_temporary_exit_zero", status_meaning(seq=2, events=[P.TemporaryExit(9, 0.0, "", False)]))
    for st in (-1, -31, -32, -33, -128, -129, -32768, -32769, -(2**31), 2**31 - 1, 127, 128, 194):
        add(f"finish_status_{st}", status_meaning(seq=3, events=[P.Finish(2, st, "", False)]))
    for n in (31, 32, 255, 256, 65535, 65536):
        add(f"trickle_text_{n}_bytes", status_meaning(seq=1, events=[P.TrickleUp(1, "t", text_of_bytes(n))]))
    for n in (31, 32, 255):
        add(f"variety_{n}_bytes", status_meaning(seq=1, events=[P.TrickleUp(1, "v" * n, "")]))
        add(f"upload_name_{n}_bytes", status_meaning(seq=1, events=[P.UploadRequest(1, "n" * n)]))
    add("finish_message_4096_bytes", status_meaning(seq=1, events=[P.Finish(1, 1, "m" * 4096, False)]))
    add(
        "unicode",
        status_meaning(
            seq=1,
            events=[
                P.TrickleUp(1, "grüße", "日本語テキスト 🚀 ÅÄÖ"),
                P.UploadRequest(2, "résultat_ü.dat"),
                P.Finish(3, -1, "Ошибка: файл не найден ✗", True),
            ],
        ),
    )
    add(
        "all_event_types",
        status_meaning(
            seq=99,
            hb=42,
            fraction_done=0.5,
            events=[
                P.TrickleUp(10, "a", "b"),
                P.UploadRequest(11, "out"),
                P.TemporaryExit(12, 30.5, "later", False),
                P.Finish(13, 0, "done", False),
            ],
        ),
    )
    add(
        "ids_sparse",
        status_meaning(
            seq=5, events=[P.UploadRequest(3, "a"), P.UploadRequest(1000, "b"), P.UploadRequest(2**40, "c")]
        ),
    )
    for count in (15, 16, 64):
        add(
            f"events_{count}",
            status_meaning(seq=count, events=[P.TrickleUp(i, "v", str(i)) for i in range(1, count + 1)]),
        )
    return [{"name": n, "meaning": m, "hex": P.encode_status(P.status_from_meaning(m)).hex()} for n, m in out]


# --------------------------------------------------------------------------------------------------
# control.json

FULL_INIT = P.InitData(
    app_name="worker",
    wu_name="worker_wu_1",
    result_name="worker_wu_1_0",
    project_preferences="<project_preferences><color>blue</color></project_preferences>",
    user_name="Zoë Volunteer",
    team_name="Team ☀",
    master_url="http://127.0.0.1:9/test/",
    userid=7,
    teamid=-1,
    hostid=123456,
    app_version=710,
    checkpoint_period=60.0,
    nthreads=4,
    fraction_done_start=0.25,
    fraction_done_end=0.75,
    wu_cpu_time=1234.5,
    starting_elapsed_time=1500.25,
    rsc_fpops_est=1e13,
    rsc_fpops_bound=1e15,
    rsc_memory_bound=536870912.0,
    rsc_disk_bound=2147483648.0,
    computation_deadline=1767225600.0,
)


def control_vectors() -> list[dict[str, Any]]:
    out: list[tuple[str, dict[str, Any]]] = []
    add = lambda name, m: out.append((name, m))  # noqa: E731
    add("defaults", control_meaning())
    add("full_init_data", control_meaning(seq=1, init_data=FULL_INIT))
    add("suspended", control_meaning(seq=2, suspended=True))
    add("quit", control_meaning(seq=3, quit=True))
    add("abort", control_meaning(seq=4, abort=True))
    add("network_suspended", control_meaning(seq=5, network_suspended=True))
    for n in (127, 128, 65536, 2**32, 2**64 - 1):
        add(f"ack_{n}", control_meaning(seq=n, ack=n))
    add(
        "trickle_down",
        control_meaning(
            seq=6, ack=2, trickle_down=[P.TrickleDown(1, "<msg>hello</msg>"), P.TrickleDown(2, "ünïcode ✓")]
        ),
    )
    add(
        "uploads",
        control_meaning(
            seq=7,
            uploads=[
                P.UploadResult("out.dat", 0),
                P.UploadResult("big.dat", -120),
                P.UploadResult("x", -161),
            ],
        ),
    )
    add(
        "negative_ids",
        control_meaning(init_data=P.InitData(userid=-(2**63), teamid=2**63 - 1, hostid=-1, app_version=-129)),
    )
    add("init_strings_64k", control_meaning(init_data=P.InitData(project_preferences="p" * 65536)))
    add(
        "everything",
        control_meaning(
            seq=1000,
            suspended=True,
            quit=False,
            abort=False,
            network_suspended=True,
            ack=17,
            init_data=FULL_INIT,
            trickle_down=[P.TrickleDown(i, f"td {i}") for i in range(3, 8)],
            uploads=[P.UploadResult("a", 0)],
        ),
    )
    return [
        {"name": n, "meaning": m, "hex": P.encode_control(P.control_from_meaning(m)).hex()} for n, m in out
    ]


# --------------------------------------------------------------------------------------------------
# invalid.json


def invalid_vectors() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []

    def add(name: str, kind: str, data: bytes, error: str, pad_to: int | None = None) -> None:
        item: dict[str, Any] = {"name": name, "kind": kind, "hex": data.hex(), "error": error}
        if pad_to is not None:
            item["pad_to"] = pad_to
        items.append(item)

    good_s = status_meaning(
        seq=3, fraction_done=0.5, events=[P.TrickleUp(1, "v", "t"), P.Finish(2, 0, "", False)]
    )
    good_c = control_meaning(seq=1, trickle_down=[P.TrickleDown(1, "x")], uploads=[P.UploadResult("a", 0)])
    s_bytes = P.encode_status(P.status_from_meaning(good_s))
    c_bytes = P.encode_control(P.control_from_meaning(good_c))

    def s_with(**changes: Any) -> bytes:
        m = json.loads(json.dumps(good_s))
        for k, v in changes.items():
            if v is _DELETE:
                del m[k]
            else:
                m[k] = v
        return raw_map(m)

    def c_with(**changes: Any) -> bytes:
        m = json.loads(json.dumps(good_c))
        for k, v in changes.items():
            if v is _DELETE:
                del m[k]
            else:
                m[k] = v
        return raw_map(m)

    def ev(**changes: Any) -> list[dict[str, Any]]:
        e = {"id": 1, "type": "trickle_up", "variety": "v", "text": "t"}
        e.update(changes)
        return [e]

    for kind, good in (("status", s_bytes), ("control", c_bytes)):
        add(f"{kind}_empty", kind, b"", "format")
        add(f"{kind}_truncated_1", kind, good[:1], "format")
        add(f"{kind}_truncated_half", kind, good[: len(good) // 2], "format")
        add(f"{kind}_truncated_last_byte", kind, good[:-1], "format")
        add(f"{kind}_trailing_garbage", kind, good + b"\x00", "format")
        add(f"{kind}_two_maps", kind, good + good, "format")
        add(f"{kind}_too_big", kind, good, "size", pad_to=P.MAX_FILE + 1)
        add(f"{kind}_not_msgpack", kind, b"\xc1", "format")
        add(f"{kind}_top_array", kind, raw_map([1]), "type")  # type: ignore[arg-type]
        add(f"{kind}_top_int", kind, b"\x01", "type")
        add(f"{kind}_top_string", kind, b"\xa1v", "type")
        add(f"{kind}_top_nil", kind, b"\xc0", "type")
        add(f"{kind}_v_missing", kind, raw_map({"seq": 1}), "version")
        add(f"{kind}_v_2", kind, raw_map({"v": 2}), "version")
        add(f"{kind}_v_0", kind, raw_map({"v": 0}), "version")
        add(f"{kind}_v_string", kind, raw_map({"v": "1"}), "version")
        add(f"{kind}_v_float", kind, raw_map({"v": 1.0}), "version")
        add(f"{kind}_v_true", kind, raw_map({"v": True}), "version")
        add(f"{kind}_ext_fixext1", kind, b"\x82\xa1v\x01\xa1x\xd4\x05\x00", "format")
        add(f"{kind}_ext_timestamp", kind, b"\x82\xa1v\x01\xa1x\xd6\xff\x00\x00\x00\x01", "format")
        add(f"{kind}_ext8", kind, b"\x82\xa1v\x01\xa1x\xc7\x02\x07ab", "format")
        add(f"{kind}_ext_top", kind, b"\xd4\x01\x00", "format")
        add(f"{kind}_str32_claims_4GiB", kind, b"\x81\xa1v\xdb\xff\xff\xff\xff", "format")
        add(f"{kind}_bin32_claims_4GiB", kind, b"\x81\xa1v\xc6\xff\xff\xff\xff", "format")
        add(f"{kind}_array32_claims_4G_items", kind, b"\x81\xa1v\xdd\xff\xff\xff\xff", "format")
        add(f"{kind}_map32_claims_4G_items", kind, b"\xdf\xff\xff\xff\xff", "format")
        add(f"{kind}_invalid_utf8_key", kind, b"\x81\xa2\xff\xfe\x01", "format")
        add(f"{kind}_invalid_utf8_value", kind, b"\x82\xa1v\x01\xa1x\xa2\xc3\x28", "format")
        add(f"{kind}_int_map_key", kind, b"\x82\xa1v\x01\x01\x01", "format")
        # depth: the top-level map is depth 1; an object at depth 9 is refused
        deep9 = b"\x82\xa1v\x01\xa1x" + b"\x91" * 7 + b"\x01"
        add(f"{kind}_depth_9", kind, deep9, "format")
        add(f"{kind}_depth_1000", kind, b"\x82\xa1v\x01\xa1x" + b"\x91" * 1000 + b"\x01", "format")
        add(
            f"{kind}_nan_in_unknown_field",
            kind,
            b"\x82\xa1v\x01\xa1x\xcb" + b"\x7f\xf8" + b"\x00" * 6,
            "range",
        )

    # status: missing / type / range
    add("status_seq_missing", "status", s_with(seq=_DELETE), "missing")
    add("status_events_missing", "status", s_with(events=_DELETE), "missing")
    add("status_td_ack_missing", "status", s_with(td_ack=_DELETE), "missing")
    add("status_seq_float", "status", s_with(seq=1.0), "type")
    add("status_seq_string", "status", s_with(seq="1"), "type")
    add("status_seq_bool", "status", s_with(seq=True), "type")
    add("status_seq_nil", "status", s_with(seq=None), "type")
    add("status_seq_negative", "status", s_with(seq=-1), "range")
    add("status_hb_bool", "status", s_with(hb=False), "type")
    add("status_checkpoint_count_bool", "status", s_with(checkpoint_count=True), "type")
    add("status_fraction_string", "status", s_with(fraction_done="0.5"), "type")
    add("status_fraction_bool", "status", s_with(fraction_done=True), "type")
    add("status_fraction_1.5", "status", s_with(fraction_done=1.5), "range")
    add("status_fraction_negative", "status", s_with(fraction_done=-0.1), "range")
    add("status_fraction_int_2", "status", s_with(fraction_done=2), "range")
    add("status_fraction_nan", "status", s_with(fraction_done=math.nan), "range")
    add("status_cpu_inf", "status", s_with(cpu_time=math.inf), "range")
    add("status_cpu_minus_inf", "status", s_with(cpu_time=-math.inf), "range")
    add("status_cpu_negative", "status", s_with(cpu_time=-1.0), "range")
    add("status_elapsed_negative_int", "status", s_with(elapsed_time=-5), "range")
    add("status_fpops_nan", "status", s_with(fpops_cumulative=math.nan), "range")
    add("status_critical_int", "status", s_with(critical_section=1), "type")
    add("status_want_network_string", "status", s_with(want_network="true"), "type")
    add("status_events_map", "status", s_with(events={}), "type")
    add(
        "status_events_too_many",
        "status",
        s_with(events=[{"id": i, "type": "upload", "name": "a"} for i in range(1, 66)]),
        "range",
    )
    add("status_event_not_map", "status", s_with(events=[1]), "type")
    add("status_event_no_id", "status", s_with(events=[{"type": "upload", "name": "a"}]), "missing")
    add("status_event_no_type", "status", s_with(events=[{"id": 1, "name": "a"}]), "missing")
    add("status_event_unknown_type", "status", s_with(events=ev(type="telemetry")), "range")
    add("status_event_type_int", "status", s_with(events=ev(type=1)), "type")
    add("status_event_id_zero", "status", s_with(events=ev(id=0)), "range")
    add("status_event_id_float", "status", s_with(events=ev(id=1.0)), "type")
    add("status_event_id_bool", "status", s_with(events=ev(id=True)), "type")
    add("status_event_ids_equal", "status", s_with(events=ev(id=3) + ev(id=3)), "range")
    add("status_event_ids_decreasing", "status", s_with(events=ev(id=5) + ev(id=4)), "range")
    add("status_trickle_variety_empty", "status", s_with(events=ev(variety="")), "range")
    add("status_trickle_variety_256", "status", s_with(events=ev(variety="v" * 256)), "range")
    add("status_trickle_text_65537", "status", s_with(events=ev(text="t" * 65537)), "range")
    add(
        "status_trickle_text_missing",
        "status",
        s_with(events=[{"id": 1, "type": "trickle_up", "variety": "v"}]),
        "missing",
    )
    add(
        "status_trickle_text_bin",
        "status",
        raw_map({**good_s, "events": [{"id": 1, "type": "trickle_up", "variety": "v", "text": b"t"}]}),
        "type",
    )
    add(
        "status_upload_name_slash",
        "status",
        s_with(events=[{"id": 1, "type": "upload", "name": "a/b"}]),
        "range",
    )
    add(
        "status_upload_name_dotdot",
        "status",
        s_with(events=[{"id": 1, "type": "upload", "name": ".."}]),
        "range",
    )
    add(
        "status_upload_name_nul",
        "status",
        s_with(events=[{"id": 1, "type": "upload", "name": "a\0b"}]),
        "range",
    )
    add(
        "status_upload_name_empty",
        "status",
        s_with(events=[{"id": 1, "type": "upload", "name": ""}]),
        "range",
    )
    add(
        "status_upload_name_256",
        "status",
        s_with(events=[{"id": 1, "type": "upload", "name": "n" * 256}]),
        "range",
    )
    fin = {"id": 1, "type": "finish", "status": 0, "message": "", "is_notice": False}
    add("status_finish_status_float", "status", s_with(events=[{**fin, "status": 0.0}]), "type")
    add("status_finish_status_over_int32", "status", s_with(events=[{**fin, "status": 2**31}]), "range")
    add(
        "status_finish_status_under_int32",
        "status",
        s_with(events=[{**fin, "status": -(2**31) - 1}]),
        "range",
    )
    add("status_finish_message_4097", "status", s_with(events=[{**fin, "message": "m" * 4097}]), "range")
    add("status_finish_is_notice_int", "status", s_with(events=[{**fin, "is_notice": 0}]), "type")
    add(
        "status_finish_is_notice_missing",
        "status",
        s_with(events=[{k: v for k, v in fin.items() if k != "is_notice"}]),
        "missing",
    )
    tmp = {"id": 1, "type": "temporary_exit", "delay": 1.0, "reason": "", "is_notice": False}
    add("status_temporary_exit_delay_negative", "status", s_with(events=[{**tmp, "delay": -1.0}]), "range")
    add("status_temporary_exit_delay_nan", "status", s_with(events=[{**tmp, "delay": math.nan}]), "range")
    add("status_temporary_exit_delay_string", "status", s_with(events=[{**tmp, "delay": "1"}]), "type")
    add(
        "status_temporary_exit_reason_4097", "status", s_with(events=[{**tmp, "reason": "r" * 4097}]), "range"
    )

    # control: missing / type / range
    init = good_c["init_data"]
    add("control_ack_missing", "control", c_with(ack=_DELETE), "missing")
    add("control_init_data_missing", "control", c_with(init_data=_DELETE), "missing")
    add("control_uploads_missing", "control", c_with(uploads=_DELETE), "missing")
    add("control_quit_int", "control", c_with(quit=1), "type")
    add("control_abort_nil", "control", c_with(abort=None), "type")
    add("control_ack_bool", "control", c_with(ack=True), "type")
    add("control_ack_negative", "control", c_with(ack=-1), "range")
    add("control_seq_float", "control", c_with(seq=2.0), "type")
    add("control_init_data_array", "control", c_with(init_data=[]), "type")
    add(
        "control_init_data_key_missing",
        "control",
        c_with(init_data={k: v for k, v in init.items() if k != "hostid"}),
        "missing",
    )
    add("control_nthreads_zero", "control", c_with(init_data={**init, "nthreads": 0}), "range")
    add("control_nthreads_float", "control", c_with(init_data={**init, "nthreads": 1.0}), "type")
    add("control_userid_bool", "control", c_with(init_data={**init, "userid": False}), "type")
    add(
        "control_checkpoint_period_negative",
        "control",
        c_with(init_data={**init, "checkpoint_period": -1.0}),
        "range",
    )
    add(
        "control_checkpoint_period_inf",
        "control",
        c_with(init_data={**init, "checkpoint_period": math.inf}),
        "range",
    )
    add(
        "control_fraction_done_end_1.5",
        "control",
        c_with(init_data={**init, "fraction_done_end": 1.5}),
        "range",
    )
    add("control_app_name_int", "control", c_with(init_data={**init, "app_name": 5}), "type")
    add(
        "control_project_preferences_65537",
        "control",
        c_with(init_data={**init, "project_preferences": "p" * 65537}),
        "range",
    )
    add(
        "control_trickle_down_too_many",
        "control",
        c_with(trickle_down=[{"id": i, "text": ""} for i in range(1, 66)]),
        "range",
    )
    add(
        "control_trickle_down_ids_not_increasing",
        "control",
        c_with(trickle_down=[{"id": 2, "text": ""}, {"id": 2, "text": ""}]),
        "range",
    )
    add(
        "control_trickle_down_text_65537",
        "control",
        c_with(trickle_down=[{"id": 1, "text": "t" * 65537}]),
        "range",
    )
    add("control_trickle_down_item_not_map", "control", c_with(trickle_down=["x"]), "type")
    add("control_uploads_status_string", "control", c_with(uploads=[{"name": "a", "status": "0"}]), "type")
    add("control_uploads_name_slash", "control", c_with(uploads=[{"name": "../a", "status": 0}]), "range")
    add(
        "control_uploads_too_many",
        "control",
        c_with(uploads=[{"name": "a", "status": 0} for _ in range(65)]),
        "range",
    )
    return items


class _Delete:
    pass


_DELETE = _Delete()


# --------------------------------------------------------------------------------------------------
# sessions.json

RC_OPS = {
    "boinc_init",
    "boinc_fraction_done",
    "boinc_checkpoint_completed",
    "boinc_send_trickle_up",
    "boinc_upload_file",
    "boinc_upload_status",
    "boinc_finish_message",
    "boinc_temporary_exit",
}
VOID_OPS = {
    "boinc_ops_per_cpu_sec",
    "boinc_ops_cumulative",
    "boinc_begin_critical_section",
    "boinc_end_critical_section",
    "boinc_need_network",
    "boinc_network_done",
}
FLOAT_ARGS = {"boinc_fraction_done", "boinc_ops_per_cpu_sec", "boinc_ops_cumulative", "set_times"}


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def run_session(ops: list[list[Any]], share: str | os.PathLike) -> list[dict[str, Any]]:
    """Run ``ops`` against the Python SDK in test mode in the (empty) folder ``share``; return the
    steps ``[{op, rc?, ret?, write}]`` as in sessions.json."""
    share = os.fspath(share)
    status_path = os.path.join(share, P.STATUS_FILE)

    def current() -> bytes | None:
        try:
            with open(status_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    testing.reset()
    testing.enable()
    steps: list[dict[str, Any]] = []
    try:
        with _env(_runtime.ENV_SHARE, share):
            prev = current()
            for op in ops:
                name, args = op[0], list(op[1:])
                step: dict[str, Any] = {"op": op}
                if name == "setup":
                    spec = args[0]
                    if spec.get("control") is not None:
                        data = P.encode_control(P.control_from_meaning(spec["control"]))
                        P.write_atomic(share, P.CONTROL_FILE, data)
                    if spec.get("status_hex") is not None:
                        P.write_atomic(share, P.STATUS_FILE, bytes.fromhex(spec["status_hex"]))
                    prev = current()  # setup never counts as a write
                elif name == "control":
                    P.write_atomic(share, P.CONTROL_FILE, P.encode_control(P.control_from_meaning(args[0])))
                    testing.reload_control()
                elif name == "set_times":
                    testing.set_times(*(float_arg(a) for a in args))
                elif name == "flush":
                    testing.flush()
                elif name == "heartbeat":
                    testing.heartbeat()
                elif name == "boinc_receive_trickle_down":
                    step["ret"] = bg.boinc_receive_trickle_down()
                else:
                    fn = getattr(bg, name)
                    if name in FLOAT_ARGS:
                        args = [float_arg(a) for a in args]
                    if name in RC_OPS:
                        step["rc"] = fn(*args)
                    elif name in VOID_OPS:
                        fn(*args)
                    else:
                        raise ValueError(f"unknown session op {name!r}")
                if name != "setup":
                    now = current()
                    step["write"] = now.hex() if now is not None and now != prev else None
                    prev = now
                else:
                    step["write"] = None
                steps.append(step)
    finally:
        testing.reset()
    return steps


def sessions() -> list[tuple[str, list[list[Any]]]]:
    c0 = control_meaning()
    s: list[tuple[str, list[list[Any]]]] = []
    s.append(
        (
            "basic_progress",
            [
                ["boinc_init"],
                ["set_times", 1.5, 2.0],
                ["boinc_fraction_done", 0.25],
                ["flush"],
                ["boinc_fraction_done", 0.5],
                ["heartbeat"],
                ["heartbeat"],
                ["set_times", 10.0, 12.5],
                ["boinc_checkpoint_completed"],
                ["boinc_fraction_done", 0.75],
                ["flush"],
            ],
        )
    )
    s.append(
        ("init_with_control", [["setup", {"control": c0, "status_hex": None}], ["boinc_init"], ["flush"]])
    )
    s.append(
        (
            "fraction_clamping_and_nan",
            [
                ["boinc_init"],
                ["boinc_fraction_done", 1.5],
                ["flush"],
                ["boinc_fraction_done", -0.1],
                ["flush"],
                ["boinc_fraction_done", 0.375],
                ["boinc_fraction_done", "nan"],
                ["flush"],
                ["boinc_fraction_done", "inf"],
                ["flush"],
                ["boinc_fraction_done", "-inf"],
                ["flush"],
                ["boinc_fraction_done", 1],
                ["flush"],
            ],
        )
    )
    s.append(
        (
            "ops_critical_network",
            [
                ["boinc_init"],
                ["boinc_ops_per_cpu_sec", 2.5e9, 1e9],
                ["boinc_ops_cumulative", 5e11, 2e11],
                ["boinc_begin_critical_section"],
                ["boinc_need_network"],
                ["flush"],
                ["boinc_ops_cumulative", "nan", -5.0],
                ["boinc_ops_per_cpu_sec", "inf", 3.0],
                ["boinc_begin_critical_section"],
                ["boinc_end_critical_section"],
                ["flush"],
                ["boinc_end_critical_section"],
                ["boinc_end_critical_section"],
                ["boinc_network_done"],
                ["flush"],
                ["boinc_begin_critical_section"],
                ["set_times", 3.0, 4.0],
                ["boinc_checkpoint_completed"],
            ],
        )
    )
    s.append(
        (
            "every_event_type",
            [
                ["setup", {"control": c0, "status_hex": None}],
                ["boinc_init"],
                ["set_times", 0.5, 1.0],
                ["boinc_send_trickle_up", "progress", "<p>0.1</p>"],
                ["boinc_upload_file", "result.dat"],
                ["boinc_temporary_exit", 300, "waiting for the VM", True],
                ["boinc_finish_message", 0, "all done", False],
                ["flush"],
            ],
        )
    )
    s.append(
        (
            "finish_statuses",
            [
                ["boinc_init"],
                ["boinc_finish_message", -1, "", False],
                ["boinc_finish_message", -129, "", True],
                ["boinc_finish_message", 194, "", False],
                ["boinc_finish_message", 2147483647, "", False],
                ["boinc_temporary_exit", "nan", "", False],
                ["boinc_temporary_exit", -5.0, "", False],
                ["boinc_temporary_exit", 0.5, "", False],
            ],
        )
    )
    s.append(
        (
            "bad_arguments",
            [
                ["boinc_init"],
                ["boinc_send_trickle_up", "", "text"],
                ["boinc_send_trickle_up", "v" * 256, "text"],
                ["boinc_send_trickle_up", "v" * 255, "text"],
                ["boinc_send_trickle_up", "w", "t" * 65537],
                ["boinc_send_trickle_up", "w", ""],
                ["boinc_upload_file", ""],
                ["boinc_upload_file", "a/b"],
                ["boinc_upload_file", ".."],
                ["boinc_upload_file", "."],
                ["boinc_upload_file", "n" * 256],
                ["boinc_upload_file", "n" * 255],
                ["boinc_upload_file", "..."],
                ["boinc_send_trickle_up", "w", "t" * 65536],
            ],
        )
    )
    s.append(
        (
            "message_truncation_utf8",
            [
                ["boinc_init"],
                ["boinc_finish_message", 1, "ab" + "€" * 1700, True],
                ["boinc_temporary_exit", 60, "x" + "é" * 2500, True],
                ["boinc_finish_message", 2, "y" * 5000, False],
                ["boinc_finish_message", 3, "z" * 4096, False],
                ["boinc_finish_message", 4, "🚀" * 1025, False],
            ],
        )
    )
    s.append(
        (
            "unicode_and_string_sizes",
            [
                ["boinc_init"],
                ["boinc_send_trickle_up", "grüße", "日本語 🚀"],
                ["boinc_send_trickle_up", "a" * 31, "b" * 32],
                ["boinc_send_trickle_up", "c" * 32, "d" * 255],
                ["boinc_send_trickle_up", "e" * 255, "f" * 256],
                ["boinc_upload_file", "résultat.dat"],
            ],
        )
    )
    full = [["boinc_send_trickle_up", "t", str(i)] for i in range(1, 65)]
    s.append(
        (
            "full_event_queue_and_ack",
            [
                ["boinc_init"],
                *full,
                ["boinc_send_trickle_up", "t", "65"],
                ["boinc_upload_file", "x"],
                ["boinc_finish_message", 0, "", False],
                ["control", control_meaning(seq=1, ack=10)],
                ["boinc_upload_file", "x"],
                ["control", control_meaning(seq=2, ack=74)],
                ["flush"],
                ["boinc_send_trickle_up", "t", "after"],
            ],
        )
    )
    s.append(
        (
            "ack_drops_events",
            [
                ["boinc_init"],
                ["boinc_send_trickle_up", "a", "1"],
                ["boinc_send_trickle_up", "a", "2"],
                ["boinc_send_trickle_up", "a", "3"],
                ["control", control_meaning(seq=1, ack=2)],
                ["flush"],
                ["control", control_meaning(seq=2, ack=2, suspended=True)],
                ["flush"],
                ["control", control_meaning(seq=3, ack=3)],
                ["heartbeat"],
                ["boinc_upload_file", "out"],
            ],
        )
    )
    old_status = P.encode_status(
        P.Status(seq=41, hb=9, fraction_done=0.5, events=(P.TrickleUp(6, "a", "x"), P.TrickleUp(7, "a", "y")))
    ).hex()
    s.append(
        (
            "continue_from_status_file",
            [
                ["setup", {"control": control_meaning(seq=4, ack=5), "status_hex": old_status}],
                ["boinc_init"],
                ["boinc_send_trickle_up", "a", "z"],
            ],
        )
    )
    old_status2 = P.encode_status(P.Status(seq=3, events=(P.UploadRequest(3, "a"),))).hex()
    s.append(
        (
            "continue_from_control_ack",
            [
                ["setup", {"control": control_meaning(seq=8, ack=12), "status_hex": old_status2}],
                ["boinc_init"],
                ["boinc_upload_file", "b"],
            ],
        )
    )
    s.append(
        (
            "corrupt_old_status_file",
            [
                ["setup", {"control": None, "status_hex": "81a17602"}],
                ["boinc_init"],
                ["boinc_send_trickle_up", "a", "b"],
            ],
        )
    )
    s.append(
        (
            "trickle_down",
            [
                [
                    "setup",
                    {
                        "control": control_meaning(trickle_down=[P.TrickleDown(1, "first")]),
                        "status_hex": None,
                    },
                ],
                ["boinc_init"],
                ["boinc_receive_trickle_down"],
                ["boinc_receive_trickle_down"],
                ["flush"],
                [
                    "control",
                    control_meaning(seq=1, trickle_down=[P.TrickleDown(1, "first"), P.TrickleDown(2, "twö")]),
                ],
                ["boinc_receive_trickle_down"],
                [
                    "control",
                    control_meaning(seq=2, trickle_down=[P.TrickleDown(5, "five"), P.TrickleDown(9, "")]),
                ],
                ["boinc_receive_trickle_down"],
                ["boinc_receive_trickle_down"],
                ["boinc_receive_trickle_down"],
                ["heartbeat"],
            ],
        )
    )
    s.append(
        (
            "upload_status",
            [
                ["boinc_init"],
                ["boinc_upload_status", "out.dat"],
                ["boinc_upload_file", "out.dat"],
                [
                    "control",
                    control_meaning(
                        seq=1, ack=1, uploads=[P.UploadResult("out.dat", 0), P.UploadResult("big.dat", -120)]
                    ),
                ],
                ["boinc_upload_status", "out.dat"],
                ["boinc_upload_status", "big.dat"],
                ["boinc_upload_status", "other.dat"],
                ["flush"],
            ],
        )
    )
    s.append(
        (
            "quit_abort_in_test_mode",
            [
                ["boinc_init"],
                ["control", control_meaning(seq=1, quit=True)],
                ["boinc_fraction_done", 0.5],
                ["control", control_meaning(seq=2, abort=True)],
                ["flush"],
            ],
        )
    )
    s.append(
        (
            "calls_before_init",
            [
                ["boinc_fraction_done", 0.5],
                ["boinc_send_trickle_up", "a", "b"],
                ["flush"],
                ["boinc_init"],
            ],
        )
    )
    return s


def session_vectors() -> list[dict[str, Any]]:
    out = []
    for name, ops in sessions():
        with tempfile.TemporaryDirectory(prefix="boinc_vectors_") as share:
            out.append({"name": name, "steps": run_session(ops, share)})
    return out


# --------------------------------------------------------------------------------------------------


def build() -> dict[str, Any]:
    return {
        "status.json": status_vectors(),
        "control.json": control_vectors(),
        "invalid.json": invalid_vectors(),
        "sessions.json": session_vectors(),
    }


def dump(items: Any) -> str:
    return json.dumps(items, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files, write nothing"
    )
    args = parser.parse_args(argv)
    files = build()
    bad = 0
    for name, items in files.items():
        text = dump(items)
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                print(f"{path}: differs from a fresh generation", file=sys.stderr)
                bad += 1
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(items)} items)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
