"""BOINC's application API for apps inside a VM (or any sandbox sharing a folder with the host).

Port a BOINC app by replacing its BOINC import with ``from boinc_guest import *``: the functions keep
BOINC's names (``boinc_init``, ``boinc_fraction_done``, ``boinc_finish`` ...). Pythonic names
(``init``, ``fraction_done``, ``critical_section()`` ...) are there too. The SDK reports to the host
bridge through ``boinc_status.msgpack`` in the shared folder (docs/protocol.md); with no shared folder
it runs standalone, like a BOINC app started by hand. Depends on msgpack only.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # an app's start does not import typing
    from typing import Any

# ``from boinc_guest import *`` gives BOINC's names (what a port needs), the option / status types
# and the error codes; the Pythonic names are imported explicitly (``from boinc_guest import init``).
__all__ = [
    "ERR_BUFFER_OVERFLOW",
    "ERR_INVALID_PARAM",
    "ERR_NOT_FOUND",
    "ERR_NULL",
    "ERR_WRITE",
    "EXIT_ABORTED_BY_CLIENT",
    "BoincError",
    "BoincOptions",
    "BoincStatus",
    "InitData",
    "boinc_begin_critical_section",
    "boinc_checkpoint_completed",
    "boinc_elapsed_time",
    "boinc_end_critical_section",
    "boinc_finish",
    "boinc_finish_message",
    "boinc_fopen",
    "boinc_fraction_done",
    "boinc_get_fraction_done",
    "boinc_get_init_data",
    "boinc_get_status",
    "boinc_init",
    "boinc_init_options",
    "boinc_is_standalone",
    "boinc_need_network",
    "boinc_network_done",
    "boinc_network_poll",
    "boinc_ops_cumulative",
    "boinc_ops_per_cpu_sec",
    "boinc_receive_trickle_down",
    "boinc_resolve_filename",
    "boinc_resolve_filename_s",
    "boinc_send_trickle_up",
    "boinc_set_min_checkpoint_period",
    "boinc_temporary_exit",
    "boinc_time_to_checkpoint",
    "boinc_upload_file",
    "boinc_upload_status",
    "boinc_wu_cpu_time",
]

# The SDK's runtime (threads, the status writer) is imported on first use of one of its names, not
# with the package: the host bridge imports ``boinc_guest.protocol`` only, and pays neither the import
# time nor the memory of the guest-side runtime. The Pythonic names are imported explicitly
# (``from boinc_guest import init``); they come from the runtime, like BOINC's names.
_PYTHONIC = (
    "begin_critical_section",
    "checkpoint_completed",
    "critical_section",
    "elapsed_time",
    "end_critical_section",
    "find_share",
    "finish",
    "fraction_done",
    "get_fraction_done",
    "get_init_data",
    "get_status",
    "init",
    "is_standalone",
    "need_network",
    "network_done",
    "ops_cumulative",
    "ops_per_cpu_sec",
    "receive_trickle_down",
    "resolve_filename",
    "send_trickle_up",
    "set_min_checkpoint_period",
    "temporary_exit",
    "time_to_checkpoint",
    "upload_file",
    "upload_status",
    "wu_cpu_time",
)
_FROM_PROTOCOL = frozenset(
    (
        "ERR_BUFFER_OVERFLOW",
        "ERR_INVALID_PARAM",
        "ERR_NOT_FOUND",
        "ERR_NULL",
        "ERR_WRITE",
        "EXIT_ABORTED_BY_CLIENT",
        "InitData",
    )
)
_FROM_RUNTIME = frozenset(__all__).difference(_FROM_PROTOCOL).union(_PYTHONIC)


def __getattr__(name: str) -> Any:
    if name in _FROM_RUNTIME:
        from . import _runtime as module
    elif name in _FROM_PROTOCOL:
        from . import protocol as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module 'boinc_guest' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM_RUNTIME, *_FROM_PROTOCOL})
