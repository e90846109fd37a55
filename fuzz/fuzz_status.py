"""atheris harness: the bridge's status-file path on arbitrary bytes.

Each input is checked two ways:

1. ``protocol.decode_status(data)`` must return a ``Status`` or raise ``ProtocolError`` (anything else,
   or a hang, is a bug);
2. every 64th input is also written into a scratch share and read back through ``host_bridge.share.Share``
   (the bridge's only reader of guest files) before being decoded, so the bounded read is fuzzed too.

Run (see docs/security.md, "Fuzzing"):

    .venv/bin/pip install atheris      # optional extra, not a runtime dependency
    .venv/bin/python fuzz/fuzz_status.py -atheris_runs=1000000 fuzz/corpus_status
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "guest_sdk" / "python")]

with atheris.instrument_imports():
    from boinc_guest import protocol as P

    from host_bridge.share import GuestFileRefused, Share

_SHARE_DIR = tempfile.mkdtemp(prefix="fuzz_status_")
_SHARE = Share(_SHARE_DIR)
_COUNT = 0


def _decode(data: bytes) -> None:
    try:
        st = P.decode_status(data)
    except P.ProtocolError as e:
        assert e.category in P.CATEGORIES, e.category
        return
    assert isinstance(st, P.Status)
    # a decoded status re-encodes (canonical form) and decodes to the same value
    assert P.decode_status(P.encode_status(st)) == st


def test_one_input(data: bytes) -> None:
    global _COUNT
    _COUNT += 1
    if _COUNT % 64 == 0:
        P.write_atomic(_SHARE_DIR, P.STATUS_FILE, data)
        try:
            got = _SHARE.read(P.STATUS_FILE, P.MAX_FILE)
        except GuestFileRefused:
            return
        assert got == data
    _decode(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        _SHARE.close()
        for name in os.listdir(_SHARE_DIR):
            os.unlink(os.path.join(_SHARE_DIR, name))
        os.rmdir(_SHARE_DIR)


if __name__ == "__main__":
    main()
