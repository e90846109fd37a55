"""Orphan containers: containers a bridge made for a task whose slot no longer holds that task (the
client finished, aborted or moved it while no bridge ran, so no ``cleanup`` removed them).

A container is ours only with the owner label (``boinc-host-bridge.owner``) and the slot label
(``boinc-host-bridge.slot``); it is stale when its slot folder is gone, has no init_data.xml (the client
empties a slot when its task ends), or its init_data.xml names another result than the container's
``boinc-host-bridge.result`` label. Containers without these labels, of another engine's user, or of a
task still in its slot are never touched.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from host_bridge.backends.base import BackendError

from .podman import Engine

log = logging.getLogger(__name__)

__all__ = ["OWNER_LABEL", "RESULT_LABEL", "SLOT_LABEL", "collect_orphans", "slot_is_stale"]

OWNER_LABEL = "boinc-host-bridge.owner"  # value: the task's owner tag (slot + result + task)
SLOT_LABEL = "boinc-host-bridge.slot"  # value: the slot folder (absolute)
RESULT_LABEL = "boinc-host-bridge.result"  # value: the result's name ("" outside BOINC)
_INIT_DATA = "init_data.xml"
_INIT_DATA_LIMIT = 1 << 20


def slot_is_stale(slot: str, result: str) -> bool:
    """The slot no longer holds the task of ``result``: the folder is gone, it has no init_data.xml,
    or its init_data.xml names another result. Without a result name only a missing folder counts."""
    p = Path(slot)
    if not p.is_absolute():
        return False  # not a label we wrote: never judged
    if not p.is_dir():
        return True
    if not result:
        return False
    try:
        with open(p / _INIT_DATA, "rb") as f:
            text = f.read(_INIT_DATA_LIMIT).decode("utf-8", "replace")
    except FileNotFoundError:
        return True
    except OSError:
        return False  # unreadable now: judged at a later start
    m = re.search(r"<result_name>\s*([^<]*?)\s*</result_name>", text)
    return m is not None and m.group(1) != result


def collect_orphans(engine: Engine, *, keep: str = "") -> list[str]:
    """Remove the stale containers of finished slots (see the module doc); ``keep``: the caller's own
    owner tag, never removed. Returns the ids removed. Failures are logged, never raised (a later
    start retries)."""
    try:
        found = engine.containers_with_label(OWNER_LABEL)
    except BackendError as e:
        log.warning("cannot list containers to find orphans: %s", e)
        return []
    removed: list[str] = []
    for c in found:
        labels = c.get("Labels") or {}
        if not isinstance(labels, dict):
            continue
        owner = str(labels.get(OWNER_LABEL) or "")
        slot = str(labels.get(SLOT_LABEL) or "")
        result = str(labels.get(RESULT_LABEL) or "")
        ident = str(c.get("Id") or "")
        if not owner or not slot or not ident or owner == keep:
            continue
        if not slot_is_stale(slot, result):
            continue
        log.info(
            "removing orphan container %s (owner %s, %s): its slot %s no longer holds result %s",
            ident[:12],
            owner,
            c.get("State") or "?",
            slot,
            result or "(none)",
        )
        try:
            engine.remove(ident)
            removed.append(ident)
        except BackendError as e:
            log.warning("could not remove orphan container %s: %s", ident[:12], e)
    return removed
