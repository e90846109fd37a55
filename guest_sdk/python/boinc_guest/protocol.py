"""The shared-folder protocol, version 1 (docs/protocol.md): canonical encoder, strict bounded decoder.

This module is shared by the guest SDK and the host bridge. It depends on msgpack only.

- ``encode_status`` / ``encode_control`` produce the one canonical byte form of a meaning (keys in the
  documented order, all present; float fields always float64; shortest ints; str only).
- ``decode_status`` / ``decode_control`` accept hostile bytes: the size is checked before unpacking,
  container lengths are bounded, ext types are refused, the nesting depth is bounded, and every known
  field is type- and range-checked. Any problem raises :class:`ProtocolError` (and nothing else) with
  a ``category`` and a message naming the file and the field.
"""

from __future__ import annotations

import math
import os

# The typing names are for type checkers only: an app's start pays neither ``typing`` nor
# ``dataclasses`` nor ``logging`` (under TCG in a VM, ~0.5 s of a Python app's first status write).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass as _record
    from dataclasses import field, replace
    from typing import Any, Union
else:
    from ._records import _record, field, replace

try:
    import msgpack
except ImportError as _e:  # a host or guest Python without it: say what to install
    raise ImportError(
        "boinc_guest needs the msgpack package: pip install msgpack (Debian / Ubuntu: apt-get install "
        "python3-msgpack)"
    ) from _e

__all__ = [
    "CATEGORIES",
    "CONTROL_FILE",
    "ERR_BUFFER_OVERFLOW",
    "ERR_INVALID_PARAM",
    "ERR_NOT_FOUND",
    "ERR_NULL",
    "ERR_WRITE",
    "EXIT_ABORTED_BY_CLIENT",
    "MAX_DEPTH",
    "MAX_EVENTS",
    "MAX_FILE",
    "MAX_MESSAGE",
    "MAX_NAME",
    "MAX_TEXT",
    "SCHEMA_VERSION",
    "STATUS_FILE",
    "Control",
    "Event",
    "Finish",
    "InitData",
    "ProtocolError",
    "Status",
    "TemporaryExit",
    "TrickleDown",
    "TrickleUp",
    "UploadRequest",
    "UploadResult",
    "check_upload_name",
    "clean_text",
    "control_from_meaning",
    "decode_control",
    "decode_status",
    "encode_control",
    "encode_status",
    "read_file_bounded",
    "replace",
    "status_from_meaning",
    "to_meaning",
    "truncate_utf8",
    "write_atomic",
]

STATUS_FILE = "boinc_status.msgpack"
CONTROL_FILE = "boinc_control.msgpack"
SCHEMA_VERSION = 1

MAX_FILE = 1048576
MAX_EVENTS = 64
MAX_NAME = 255
MAX_TEXT = 65536
MAX_MESSAGE = 4096
MAX_DEPTH = 8

# BOINC error codes (lib/error_numbers.h) and exit codes.
ERR_NULL = -116
ERR_BUFFER_OVERFLOW = -118
ERR_NOT_FOUND = -161
ERR_INVALID_PARAM = -178
ERR_WRITE = -103
EXIT_ABORTED_BY_CLIENT = 194

_UINT_MAX = 2**64 - 1
_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

CATEGORIES = ("size", "format", "version", "missing", "type", "range")


class ProtocolError(ValueError):
    """A status or control file (or a meaning) that does not follow protocol v1.

    ``category`` is one of ``size``, ``format``, ``version``, ``missing``, ``type``, ``range``.
    """

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category

    def __reduce__(self):  # pragma: no cover - pickling support
        return (type(self), (self.category, self.args[0]))


# --------------------------------------------------------------------------------------------------
# Data model


@_record(frozen=True)
class TrickleUp:
    """Event: a trickle-up message for the project (``boinc_send_trickle_up``)."""

    id: int
    variety: str
    text: str


@_record(frozen=True)
class UploadRequest:
    """Event: upload this file now (``boinc_upload_file``)."""

    id: int
    name: str


@_record(frozen=True)
class Finish:
    """Event: the app finished with this status (``boinc_finish`` / ``boinc_finish_message``)."""

    id: int
    status: int
    message: str = ""
    is_notice: bool = False


@_record(frozen=True)
class TemporaryExit:
    """Event: stop now and restart after ``delay`` seconds (``boinc_temporary_exit``)."""

    id: int
    delay: float
    reason: str = ""
    is_notice: bool = False


if TYPE_CHECKING:
    Event = Union[TrickleUp, UploadRequest, Finish, TemporaryExit]  # noqa: UP007 (Python 3.8 runtime)
else:
    Event = (TrickleUp, UploadRequest, Finish, TemporaryExit)  # the event classes (for isinstance)


@_record(frozen=True)
class Status:
    """The guest's status file: progress, CPU, checkpoints, heartbeat and the events not yet acked."""

    seq: int = 0
    hb: int = 0
    fraction_done: float = 0.0
    cpu_time: float = 0.0
    elapsed_time: float = 0.0
    checkpoint_cpu_time: float = 0.0
    checkpoint_count: int = 0
    fpops_per_cpu_sec: float = 0.0
    fpops_cumulative: float = 0.0
    intops_per_cpu_sec: float = 0.0
    intops_cumulative: float = 0.0
    critical_section: bool = False
    want_network: bool = False
    td_ack: int = 0
    events: tuple[Event, ...] = ()


@_record(frozen=True)
class InitData:
    """The part of BOINC's init data the host passes to the guest (``boinc_get_init_data``)."""

    app_name: str = ""
    wu_name: str = ""
    result_name: str = ""
    project_preferences: str = ""
    user_name: str = ""
    team_name: str = ""
    master_url: str = ""
    userid: int = 0
    teamid: int = 0
    hostid: int = 0
    app_version: int = 0
    checkpoint_period: float = 300.0
    nthreads: int = 1
    fraction_done_start: float = 0.0
    fraction_done_end: float = 1.0
    wu_cpu_time: float = 0.0
    starting_elapsed_time: float = 0.0
    rsc_fpops_est: float = 0.0
    rsc_fpops_bound: float = 0.0
    rsc_memory_bound: float = 0.0
    rsc_disk_bound: float = 0.0
    computation_deadline: float = 0.0


@_record(frozen=True)
class TrickleDown:
    """A trickle-down message from the project, for ``boinc_receive_trickle_down``."""

    id: int
    text: str


@_record(frozen=True)
class UploadResult:
    """The outcome of an upload request, for ``boinc_upload_status``."""

    name: str
    status: int


@_record(frozen=True)
class Control:
    """The host's control file: suspend / quit / abort, the events acknowledged, init data, trickle-
    downs, upload results."""

    seq: int = 0
    suspended: bool = False
    quit: bool = False
    abort: bool = False
    network_suspended: bool = False
    ack: int = 0
    init_data: InitData = field(default_factory=InitData)
    trickle_down: tuple[TrickleDown, ...] = ()
    uploads: tuple[UploadResult, ...] = ()


# --------------------------------------------------------------------------------------------------
# Field kinds and checks

# kind names: "uint", "int", "int32", "nthreads", "frac", "nnfloat", "bool",
#             ("str", min_bytes, max_bytes), "name" (plain file name)

_STATUS_FIELDS: tuple[tuple[str, Any], ...] = (
    ("seq", "uint"),
    ("hb", "uint"),
    ("fraction_done", "frac"),
    ("cpu_time", "nnfloat"),
    ("elapsed_time", "nnfloat"),
    ("checkpoint_cpu_time", "nnfloat"),
    ("checkpoint_count", "uint"),
    ("fpops_per_cpu_sec", "nnfloat"),
    ("fpops_cumulative", "nnfloat"),
    ("intops_per_cpu_sec", "nnfloat"),
    ("intops_cumulative", "nnfloat"),
    ("critical_section", "bool"),
    ("want_network", "bool"),
    ("td_ack", "uint"),
)

_EVENT_TYPES: dict[str, tuple[type, tuple[tuple[str, Any], ...]]] = {
    "trickle_up": (TrickleUp, (("variety", ("str", 1, MAX_NAME)), ("text", ("str", 0, MAX_TEXT)))),
    "upload": (UploadRequest, (("name", "name"),)),
    "finish": (
        Finish,
        (("status", "int32"), ("message", ("str", 0, MAX_MESSAGE)), ("is_notice", "bool")),
    ),
    "temporary_exit": (
        TemporaryExit,
        (("delay", "nnfloat"), ("reason", ("str", 0, MAX_MESSAGE)), ("is_notice", "bool")),
    ),
}
_EVENT_TYPE_OF = {cls: name for name, (cls, _f) in _EVENT_TYPES.items()}

_CONTROL_FIELDS: tuple[tuple[str, Any], ...] = (
    ("seq", "uint"),
    ("suspended", "bool"),
    ("quit", "bool"),
    ("abort", "bool"),
    ("network_suspended", "bool"),
    ("ack", "uint"),
)

_INIT_DATA_FIELDS: tuple[tuple[str, Any], ...] = (
    ("app_name", ("str", 0, MAX_TEXT)),
    ("wu_name", ("str", 0, MAX_TEXT)),
    ("result_name", ("str", 0, MAX_TEXT)),
    ("project_preferences", ("str", 0, MAX_TEXT)),
    ("user_name", ("str", 0, MAX_TEXT)),
    ("team_name", ("str", 0, MAX_TEXT)),
    ("master_url", ("str", 0, MAX_TEXT)),
    ("userid", "int"),
    ("teamid", "int"),
    ("hostid", "int"),
    ("app_version", "int"),
    ("checkpoint_period", "nnfloat"),
    ("nthreads", "nthreads"),
    ("fraction_done_start", "frac"),
    ("fraction_done_end", "frac"),
    ("wu_cpu_time", "nnfloat"),
    ("starting_elapsed_time", "nnfloat"),
    ("rsc_fpops_est", "nnfloat"),
    ("rsc_fpops_bound", "nnfloat"),
    ("rsc_memory_bound", "nnfloat"),
    ("rsc_disk_bound", "nnfloat"),
    ("computation_deadline", "nnfloat"),
)

_TRICKLE_DOWN_FIELDS = (("id", "uint"), ("text", ("str", 0, MAX_TEXT)))
_UPLOAD_RESULT_FIELDS = (("name", "name"), ("status", "int32"))

_FLOAT_KINDS = ("frac", "nnfloat")


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_upload_name(name: str) -> int:
    """0 if ``name`` is a plain file name allowed for an upload, else the BOINC error code."""
    if not name:
        return ERR_NULL
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        return ERR_BUFFER_OVERFLOW
    if "/" in name or "\0" in name or name in (".", ".."):
        return ERR_INVALID_PARAM
    return 0


_INT_BOUNDS = {
    "uint": (0, _UINT_MAX),
    "int": (_INT_MIN, _INT_MAX),
    "int32": (_INT32_MIN, _INT32_MAX),
    "nthreads": (1, _UINT_MAX),
}


def _check(value: Any, kind: Any, where: str) -> Any:
    """Check one known field; return the normalised value (ints widened to float for float fields).

    The common valid cases come first and touch as little as possible: the bridge decodes every status
    update, and its CPU budget is counted in tens of microseconds."""
    t = type(value)
    if t is float and kind in _FLOAT_KINDS:
        if value == value and (0.0 <= value <= 1.0 if kind == "frac" else 0.0 <= value < math.inf):
            return value
    elif t is int and kind in _INT_BOUNDS:
        lo, hi = _INT_BOUNDS[kind]
        if lo <= value <= hi:
            return value
    return _check_slow(value, kind, where)


def _check_slow(value: Any, kind: Any, where: str) -> Any:
    """``_check`` for everything but the common valid cases: the full checks, and the error messages."""
    if kind in _INT_BOUNDS:
        if not _is_int(value):
            raise ProtocolError("type", f"{where}: {_fmt(value)} is not an integer")
        lo, hi = _INT_BOUNDS[kind]
        if not lo <= value <= hi:
            raise ProtocolError("range", f"{where}: {value} is outside [{lo}, {hi}]")
        return int(value)
    if kind in _FLOAT_KINDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError("type", f"{where}: {_fmt(value)} is not a number")
        if isinstance(value, int):
            if abs(value) > 2**1023:
                raise ProtocolError("range", f"{where}: {_fmt(value)} is out of range")
            value = float(value)
        if not math.isfinite(value):
            raise ProtocolError("range", f"{where}: {value!r} is not a finite number")
        if kind == "frac" and not 0.0 <= value <= 1.0:
            raise ProtocolError("range", f"{where}: {value!r} is outside [0, 1]")
        if kind == "nnfloat" and value < 0.0:
            raise ProtocolError("range", f"{where}: {value!r} is negative")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ProtocolError("type", f"{where}: {_fmt(value)} is not a boolean")
        return value
    if kind == "name" or (isinstance(kind, tuple) and kind[0] == "str"):
        if not isinstance(value, str):
            raise ProtocolError("type", f"{where}: {_fmt(value)} is not a string")
        try:
            nbytes = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise ProtocolError("type", f"{where}: not valid UTF-8 text ({exc.reason})") from None
        if kind == "name":
            code = check_upload_name(value)
            if code == ERR_BUFFER_OVERFLOW:
                raise ProtocolError("range", f"{where}: {nbytes} bytes, more than {MAX_NAME}")
            if code:
                raise ProtocolError(
                    "range", f"{where}: {_fmt(value)} is not a plain file name (empty, '/', NUL, . or ..)"
                )
            return value
        lo, hi = kind[1], kind[2]
        if nbytes > hi:
            raise ProtocolError("range", f"{where}: {nbytes} bytes, more than {hi}")
        if nbytes < lo:
            raise ProtocolError("range", f"{where}: empty string")
        return value
    raise AssertionError(f"unknown kind {kind!r}")  # pragma: no cover


def _require_map(obj: Any, where: str) -> dict[Any, Any]:
    if not isinstance(obj, dict):
        raise ProtocolError("type", f"{where}: {type(obj).__name__} where a map is required")
    return obj


def _fields(obj: dict[Any, Any], spec: tuple[tuple[str, Any], ...], kind: str, path: str) -> dict[str, Any]:
    """Check the known keys ``spec`` of map ``obj``; ``kind`` is status/control, ``path`` where the map is."""
    out: dict[str, Any] = {}
    for name, ftype in spec:
        try:
            value = obj[name]
        except KeyError:
            full = f"{path}.{name}" if path else name
            raise ProtocolError("missing", f"{kind} field '{full}': required key is missing") from None
        try:
            out[name] = _check(value, ftype, "")
        except ProtocolError:  # again, with the field's name in the message (only on the error path)
            full = f"{path}.{name}" if path else name
            out[name] = _check(value, ftype, f"{kind} field '{full}'")
    return out


def _array(obj: Any, where: str, bound: int) -> list[Any]:
    if not isinstance(obj, list):
        raise ProtocolError("type", f"{where}: {type(obj).__name__} where an array is required")
    if len(obj) > bound:
        raise ProtocolError("range", f"{where}: {len(obj)} items, more than {bound}")
    return obj


def _version(obj: dict[Any, Any], kind: str) -> None:
    if "v" not in obj:
        raise ProtocolError("version", f"{kind} file: key 'v' (schema version) is missing")
    v = obj["v"]
    if not _is_int(v) or v != SCHEMA_VERSION:
        raise ProtocolError(
            "version",
            f"{kind} file: unknown schema version {_fmt(v)} (this program speaks version {SCHEMA_VERSION})",
        )


def status_from_meaning(obj: Any) -> Status:
    """Check a decoded status map (msgpack or JSON meaning) and build a :class:`Status`."""
    top = _require_map(obj, "status file")
    _version(top, "status")
    vals = _fields(top, _STATUS_FIELDS, "status", "")
    if "events" not in top:
        raise ProtocolError("missing", "status file: required key 'events' is missing")
    raw_events = _array(top["events"], "status field 'events'", MAX_EVENTS)
    events: list[Event] = []
    last_id = 0
    for i, ev in enumerate(raw_events):
        where = f"status field 'events[{i}]'"
        ev = _require_map(ev, where)
        for key in ("id", "type"):
            if key not in ev:
                raise ProtocolError("missing", f"{where}: required key '{key}' is missing")
        ev_id = _check(ev["id"], "uint", f"status field 'events[{i}].id'")
        if ev_id < 1:
            raise ProtocolError("range", f"status field 'events[{i}].id': event ids start at 1")
        if ev_id <= last_id:
            raise ProtocolError(
                "range",
                f"status field 'events[{i}].id': {ev_id} does not follow {last_id} (ids must increase)",
            )
        last_id = ev_id
        etype = ev["type"]
        if not isinstance(etype, str):
            raise ProtocolError("type", f"status field 'events[{i}].type': {_fmt(etype)} is not a string")
        if etype not in _EVENT_TYPES:
            raise ProtocolError("range", f"status field 'events[{i}].type': unknown event type {_fmt(etype)}")
        cls, spec = _EVENT_TYPES[etype]
        events.append(cls(id=ev_id, **_fields(ev, spec, "status", f"events[{i}]")))
    return Status(events=tuple(events), **vals)


def control_from_meaning(obj: Any) -> Control:
    """Check a decoded control map (msgpack or JSON meaning) and build a :class:`Control`."""
    top = _require_map(obj, "control file")
    _version(top, "control")
    vals = _fields(top, _CONTROL_FIELDS, "control", "")
    for key in ("init_data", "trickle_down", "uploads"):
        if key not in top:
            raise ProtocolError("missing", f"control file: required key '{key}' is missing")
    init = _require_map(top["init_data"], "control field 'init_data'")
    init_data = InitData(**_fields(init, _INIT_DATA_FIELDS, "control", "init_data"))
    tds: list[TrickleDown] = []
    last_id = 0
    for i, td in enumerate(_array(top["trickle_down"], "control field 'trickle_down'", MAX_EVENTS)):
        where = f"control field 'trickle_down[{i}]'"
        item = TrickleDown(
            **_fields(_require_map(td, where), _TRICKLE_DOWN_FIELDS, "control", f"trickle_down[{i}]")
        )
        if item.id < 1 or item.id <= last_id:
            raise ProtocolError(
                "range", f"control field 'trickle_down[{i}].id': {item.id} does not follow {last_id}"
            )
        last_id = item.id
        tds.append(item)
    ups: list[UploadResult] = []
    for i, up in enumerate(_array(top["uploads"], "control field 'uploads'", MAX_EVENTS)):
        where = f"control field 'uploads[{i}]'"
        ups.append(
            UploadResult(
                **_fields(_require_map(up, where), _UPLOAD_RESULT_FIELDS, "control", f"uploads[{i}]")
            )
        )
    return Control(init_data=init_data, trickle_down=tuple(tds), uploads=tuple(ups), **vals)


# --------------------------------------------------------------------------------------------------
# Meaning (JSON-able dicts in canonical key order)


def _meaning_fields(obj: Any, spec: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in spec:
        value = getattr(obj, name)
        if kind in _FLOAT_KINDS and _is_int(value):
            value = float(value)
        out[name] = value
    return out


def to_meaning(obj: Any) -> dict[str, Any]:
    """The canonical meaning of a protocol object: a dict with keys in wire order (JSON-able)."""
    if isinstance(obj, Status):
        out: dict[str, Any] = {"v": SCHEMA_VERSION}
        out.update(_meaning_fields(obj, _STATUS_FIELDS))
        out["events"] = [to_meaning(ev) for ev in obj.events]
        return out
    if isinstance(obj, Control):
        out = {"v": SCHEMA_VERSION}
        out.update(_meaning_fields(obj, _CONTROL_FIELDS))
        out["init_data"] = to_meaning(obj.init_data)
        out["trickle_down"] = [to_meaning(td) for td in obj.trickle_down]
        out["uploads"] = [to_meaning(up) for up in obj.uploads]
        return out
    if isinstance(obj, InitData):
        return _meaning_fields(obj, _INIT_DATA_FIELDS)
    if isinstance(obj, TrickleDown):
        return _meaning_fields(obj, _TRICKLE_DOWN_FIELDS)
    if isinstance(obj, UploadResult):
        return _meaning_fields(obj, _UPLOAD_RESULT_FIELDS)
    etype = _EVENT_TYPE_OF.get(type(obj))
    if etype is not None:
        out = {"id": obj.id, "type": etype}
        out.update(_meaning_fields(obj, _EVENT_TYPES[etype][1]))
        return out
    raise TypeError(f"to_meaning: not a protocol object: {type(obj).__name__}")


# --------------------------------------------------------------------------------------------------
# Encoding


def _pack(meaning: dict[str, Any], kind: str) -> bytes:
    data = msgpack.packb(meaning, use_bin_type=True, use_single_float=False)
    if len(data) > MAX_FILE:
        raise ProtocolError("size", f"{kind} file: {len(data)} bytes, more than {MAX_FILE}")
    return data


def encode_status(status: Status) -> bytes:
    """The canonical bytes of a status file. Raises ProtocolError if ``status`` breaks a bound."""
    meaning = to_meaning(status)
    status_from_meaning(meaning)  # the encoder writes only what a decoder accepts
    return _pack(meaning, "status")


def encode_control(control: Control) -> bytes:
    """The canonical bytes of a control file. Raises ProtocolError if ``control`` breaks a bound."""
    meaning = to_meaning(control)
    control_from_meaning(meaning)
    return _pack(meaning, "control")


# --------------------------------------------------------------------------------------------------
# Decoding


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("format", f"msgpack ext type {code} is not allowed")


def _unpack(data: Any, kind: str) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("type", f"{kind} file: expected bytes, got {type(data).__name__}")
    size = len(data) if not isinstance(data, memoryview) else data.nbytes
    if size > MAX_FILE:
        raise ProtocolError("size", f"{kind} file: {size} bytes, more than {MAX_FILE}")
    if size == 0:
        raise ProtocolError("format", f"{kind} file: empty")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            max_str_len=MAX_FILE,
            max_bin_len=MAX_FILE,
            max_array_len=MAX_FILE,
            max_map_len=MAX_FILE // 2,
            max_ext_len=MAX_FILE,
        )
    except ProtocolError as exc:
        raise ProtocolError("format", f"{kind} file: {exc}") from None
    except msgpack.ExtraData:
        raise ProtocolError("format", f"{kind} file: trailing bytes after the top-level map") from None
    except Exception as exc:  # msgpack raises ValueError, StackError, FormatError, UnicodeDecodeError...
        raise ProtocolError(
            "format", f"{kind} file: not valid msgpack ({type(exc).__name__}: {exc})"
        ) from None
    _walk(obj, kind)
    return obj


_SCALARS = (str, int, float, bool, bytes, type(None))


def _walk(obj: Any, kind: str) -> None:
    """Bound the nesting depth, refuse ext types (msgpack turns ext -1 into a Timestamp without calling
    ext_hook) and refuse NaN / inf anywhere.

    The top-level object is at depth 1 and the items of a container at depth d are at depth d + 1;
    nothing may be deeper than MAX_DEPTH (so a container at depth MAX_DEPTH must be empty).
    """
    containers = (dict, list)
    stack: list[tuple[Any, int]] = []
    for x in (obj,):
        t = type(x)
        if t in containers:
            stack.append((x, 1))
        elif t not in _SCALARS:
            raise ProtocolError("format", f"{kind} file: msgpack ext type is not allowed")
        elif t is float and not math.isfinite(x):
            raise ProtocolError("range", f"{kind} file: {x!r} is not a finite number")
    while stack:
        o, depth = stack.pop()
        items = o.values() if type(o) is dict else o
        if depth >= MAX_DEPTH and len(o):
            raise ProtocolError("format", f"{kind} file: nested deeper than {MAX_DEPTH} levels")
        for x in items:
            t = type(x)
            if t is list or t is dict:
                if x:  # an empty container has nothing deeper to check
                    stack.append((x, depth + 1))
            elif t is float:
                if not math.isfinite(x):
                    raise ProtocolError("range", f"{kind} file: {x!r} is not a finite number")
            elif t not in _SCALARS:
                raise ProtocolError("format", f"{kind} file: msgpack ext type is not allowed")


def decode_status(data: bytes) -> Status:
    """Decode a status file strictly. Raises only ProtocolError."""
    obj = _unpack(data, "status")
    return status_from_meaning(obj)


def decode_control(data: bytes) -> Control:
    """Decode a control file strictly. Raises only ProtocolError."""
    obj = _unpack(data, "control")
    return control_from_meaning(obj)


# --------------------------------------------------------------------------------------------------
# Helpers shared by writers


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 at a character boundary.

    Lone surrogates (which cannot be UTF-8) are replaced by U+FFFD first.
    """
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
        raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (so that it encodes as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def write_atomic(folder: Union[str, os.PathLike], name: str, data: bytes) -> None:  # noqa: UP007
    """Write ``data`` to ``folder/name`` atomically: temp file ``.<name>.tmp`` in the same folder,
    fsync, rename over the target, then fsync the folder where the file system allows it."""
    folder = os.fspath(folder)
    tmp = os.path.join(folder, f".{name}.tmp")
    target = os.path.join(folder, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some shared-folder file systems refuse fsync on a dir
        pass
    finally:
        os.close(fd)


def read_file_bounded(path: Union[str, os.PathLike]) -> bytes:  # noqa: UP007
    """Read at most MAX_FILE + 1 bytes of ``path`` (a decoder then rejects an oversized file)."""
    with open(path, "rb") as f:
        return f.read(MAX_FILE + 1)
