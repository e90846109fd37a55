"""The host bridge: the program BOINC starts as the app. It runs a job's tasks in a VM or as a local
process, watches the folder it shares with the guest, and forwards the guest's status to the real BOINC
API. Public entry points: ``host_bridge.cli.main`` (the ``host-bridge`` command), ``Config`` and
``Runtime``."""

__version__ = "0.1.0"

__all__ = ["__version__"]
