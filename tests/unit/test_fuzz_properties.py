"""Property tests (hypothesis) on the two parsers that read untrusted or external text.

1. The status file through the bridge's own read path (``Share.read`` of the file a guest wrote, then
   ``StatusReader.read``'s decode with its budget): whatever the bytes, the outcome is a ``Status`` or a
   refusal (``GuestFileRefused`` / ``ProtocolError``, counted by the refusal log), never another exception.
2. The job-file parsers (``parse_job_text``, ``parse_vbox_job_text``): a parsed job or ``JobFileError``.

The atheris harnesses in fuzz/ run the same properties for 10^6 inputs (docs/security.md, "Fuzzing").
"""

from __future__ import annotations

import logging

import msgpack
import pytest
from boinc_guest import protocol as P
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_bridge.jobfile import JobFileError, parse_job_text
from host_bridge.jobfile.vbox import parse_vbox_job_text
from host_bridge.policy import DEFAULT_POLICY
from host_bridge.runtime.guest import StatusReader
from host_bridge.share import GuestFileRefused, RefusalLog, Share
from tests.support.paths import DATA

SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_VALID = P.encode_status(
    P.Status(
        seq=3,
        hb=2,
        fraction_done=0.5,
        events=(
            P.TrickleUp(1, "v", "<a>1</a>"),
            P.UploadRequest(2, "out.dat"),
            P.Finish(3, 0, "ok", False),
        ),
    )
)

# msgpack values of every kind, nested (what a hostile encoder can produce)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(max_size=12) | st.integers(-(2**63), 2**64 - 1), inner, max_size=6)
    ),
    max_leaves=40,
)
_KEYS = list(P.to_meaning(P.decode_status(_VALID)))


@st.composite
def _status_like(draw) -> bytes:
    """A status map whose known keys are replaced / removed / retyped at random."""
    meaning = P.to_meaning(P.decode_status(_VALID))
    for key in draw(st.lists(st.sampled_from(_KEYS), max_size=5)):
        if draw(st.booleans()):
            meaning.pop(key, None)
        else:
            meaning[key] = draw(_values)
    return msgpack.packb(meaning, use_bin_type=True)


@st.composite
def _mutated(draw) -> bytes:
    """The valid file with bytes flipped, cut or inserted."""
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i : i + draw(st.integers(1, 8))]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


_status_bytes = st.binary(max_size=2048) | _status_like() | _mutated() | _values.map(msgpack.packb)


@pytest.fixture
def runtime(tmp_path):
    slot = tmp_path / "slot"
    (slot / "shared").mkdir(parents=True)
    refusals = RefusalLog(logging.getLogger("test_fuzz_properties.quiet"))
    share = Share(slot / "shared")
    yield StatusReader(share, refusals, DEFAULT_POLICY), share, slot / "shared"
    share.close()


@SETTINGS
@given(data=_status_bytes)
def test_status_read_path_only_refuses(runtime, data):
    rt, share, folder = runtime
    P.write_atomic(folder, P.STATUS_FILE, data)
    # the share's bounded, link-refusing read gives back exactly what the guest wrote
    assert share.read(P.STATUS_FILE, P.MAX_FILE) == data
    before = rt.refusals.total
    # each example decoded afresh (no budget wait, no "same bytes as last time" short cut)
    rt._not_before, rt._bytes = 0.0, None
    got = rt.read()  # raises nothing: a Status, or None with the refusal counted
    if got is None:
        assert rt.refusals.total == before + 1
    else:
        assert isinstance(got, P.Status)
        assert 0.0 <= got.fraction_done <= 1.0
        assert len(got.events) <= P.MAX_EVENTS
        ids = [e.id for e in got.events]
        assert ids == sorted(set(ids))
    # the same bytes again: the cached answer, not decoded a second time, not counted a second time
    total = rt.refusals.total
    assert rt.read() == got and rt.refusals.total == total
    # the decoder alone: Status or ProtocolError with a known category
    try:
        P.decode_status(data)
    except P.ProtocolError as e:
        assert e.category in P.CATEGORIES


@SETTINGS
@given(size=st.integers(P.MAX_FILE + 1, P.MAX_FILE + 4096))
def test_status_over_the_bound_is_refused_before_reading(runtime, size):
    _rt, share, folder = runtime
    with open(folder / P.STATUS_FILE, "wb") as f:
        f.truncate(size)
    with pytest.raises(GuestFileRefused) as e:
        share.read(P.STATUS_FILE, P.MAX_FILE)
    assert e.value.reason == "too large"


_TAGS = [
    "job_desc", "task", "application", "command_line", "copy_app_to_VM", "copy_file_to_VM",
    "copy_file_from_VM", "stdin_filename", "stdout_filename", "weight", "setenv", "exec_dir",
    "checkpoint_filename", "fraction_done_filename", "priority", "unzip_input", "vm_kernel", "vm_memory_mb",
    "vbox_job", "os_name", "memory_size_mb", "enable_network", "port_forward", "host_port", "guest_port",
    "nports", "copy_to_shared", "job_duration", "multiattach_vdi_file", "x",
]  # fmt: skip


@st.composite
def _xmlish(draw) -> str:
    def node(depth: int) -> str:
        tag = draw(st.sampled_from(_TAGS))
        if depth > 3 or draw(st.booleans()):
            body = draw(
                st.sampled_from(["", "1", "0", "-5", "1e999", "nan", "abc", "./x", "../y", "a=b", "&amp;"])
            )
            body = body if draw(st.booleans()) else draw(st.text(max_size=20))
        else:
            body = "".join(node(depth + 1) for _ in range(draw(st.integers(0, 4))))
        if draw(st.integers(0, 9)) == 0:
            return f"<{tag}/>"
        return f"<{tag}>{body}</{tag}>"

    root = draw(st.sampled_from(["job_desc", "vbox_job", "x"]))
    inner = "".join(node(1) for _ in range(draw(st.integers(0, 5))))
    text = f"<{root}>{inner}</{root}>"
    if draw(st.integers(0, 4)) == 0:  # damage it
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=5)) + text[i + draw(st.integers(0, 5)) :]
    return text


@SETTINGS
@given(text=st.text(max_size=400) | _xmlish())
def test_job_parsers_raise_only_job_file_error(text):
    for parse in (parse_job_text, parse_vbox_job_text):
        try:
            parse(text)
        except JobFileError as e:
            assert str(e)


def test_real_job_files_parse(tmp_path):
    """The seeds of the property above: the repository's job files (a control that the parsers accept
    real input, so the property is not vacuous)."""
    ok = 0
    for p in sorted(DATA.joinpath("jobs-real").glob("*vbox_job*.xml")):
        if "MALFORMED" in p.name or "template" in p.name:
            continue
        parse_vbox_job_text(p.read_text(), p.name)
        ok += 1
    assert ok >= 3
