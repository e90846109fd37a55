"""atheris harness: the job-file parsers on arbitrary text.

``jobfile.parse_job_text`` (BOINC wrapper / VMwrapper dialect) and ``vboxjob.parse_vbox_job_text``
(vboxwrapper dialect) must return a parsed job or raise ``JobFileError``; anything else (or a hang) is a
bug. Job files are not guest input (they come with the workunit / app version), but they come from the
network, and a parser that crashes on a typo is a support cost.

Run (see docs/security.md, "Fuzzing"):

    .venv/bin/python fuzz/fuzz_jobfile.py -atheris_runs=1000000 fuzz/corpus_jobfile
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "guest_sdk" / "python")]

with atheris.instrument_imports():
    from host_bridge.jobfile import JobFileError, parse_job_text
    from host_bridge.jobfile.vbox import parse_vbox_job_text


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    for parse in (parse_job_text, parse_vbox_job_text):
        try:
            parse(text)
        except JobFileError as e:
            assert str(e)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
