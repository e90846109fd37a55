"""BOINC's exit codes and error numbers (lib/error_numbers.h), named.

The bridge ends with one of these; ``describe`` gives the line written to stderr.txt.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    # app exit codes (error_numbers.h, "exit codes")
    EXIT_CHILD_FAILED = 195  # the task's program failed
    EXIT_ABORTED_BY_CLIENT = 194
    EXIT_INIT_FAILURE = 206  # the bridge could not start (bad job file, missing program, ...)
    EXIT_SIGNAL = 193
    EXIT_TIME_LIMIT_EXCEEDED = 197
    EXIT_DISK_LIMIT_EXCEEDED = 196
    EXIT_MEM_LIMIT_EXCEEDED = 198
    EXIT_UNSTARTED_LATE = 200
    EXIT_MISSING_COPROC = 201
    EXIT_ABORTED_VIA_GUI = 203


# error_numbers.h values used by the bridge (negative, as BOINC returns them)
ERR_XML_PARSE = -112
ERR_FOPEN = -108
ERR_WRITE = -103
ERR_NULL = -116
ERR_BUFFER_OVERFLOW = -118
ERR_NOT_FOUND = -161
ERR_INVALID_PARAM = -178
ERR_EXEC = -148
ERR_FILE_MISSING = -163


def describe(code: int) -> str:
    try:
        return f"{int(code)} ({ExitCode(code).name})"
    except ValueError:
        return str(int(code))
