"""Job files: what the bridge reads to know what to run.

- ``safexml``: a safe, bounded XML reader with line numbers (job.xml and vbox_job.xml share it);
- ``model``: ``JobSpec`` / ``TaskDesc``, the job as written;
- ``wrapper``: BOINC wrapper's and the VMwrapper dialect's ``job.xml`` (the task tags, command lines);
- ``vbox``: vboxwrapper's ``vbox_job.xml``;
- ``docker``: docker_wrapper's ``job.toml``;
- ``description``: ``host-bridge check``'s text (``describe``).

Where a task runs is not decided here: ``host_bridge.runtime.plan`` does that, for the run and for
``check`` alike.
"""

from .model import CmdArg, JobSpec, TaskDesc, TaskKind, ZipOutput
from .safexml import (
    MAX_JOB_FILE_BYTES,
    JobFileError,
    check_no_stray_text,
    decode_xml_bytes,
    parse_xml,
    read_bounded,
)
from .wrapper import expand_args, expand_env, parse_job_file, parse_job_text, split_command_line

__all__ = [
    "MAX_JOB_FILE_BYTES",
    "CmdArg",
    "DockerJob",
    "JobFileError",
    "JobSpec",
    "TaskDesc",
    "TaskKind",
    "ZipOutput",
    "check_no_stray_text",
    "decode_xml_bytes",
    "describe",
    "expand_args",
    "expand_env",
    "parse_docker_job",
    "parse_docker_text",
    "parse_job_file",
    "parse_job_text",
    "parse_xml",
    "read_bounded",
    "split_command_line",
]

# check's text and the job.toml reader are loaded on first use: a run of a job.xml needs neither (every
# module imported costs the bridge's start-up time and memory: docs/benchmarks.md)
_LAZY = {
    "describe": ".description",
    "DockerJob": ".docker",
    "parse_docker_job": ".docker",
    "parse_docker_text": ".docker",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
