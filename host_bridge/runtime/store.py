"""The bridge's own checkpoint, as the runtime uses it: the state (``host_bridge.state``), saving it,
and the fraction-done floor that a restart never reports below."""

from __future__ import annotations

import logging
from pathlib import Path

from ..policy import Policy
from ..state import BridgeState, FractionFloor, load_state, save_state

log = logging.getLogger(__name__)


class StateStore:
    def __init__(self, slot: Path, policy: Policy) -> None:
        self.slot = slot
        self.policy = policy
        self.state = BridgeState()
        self.fraction_floor = 0.0  # the highest fraction done recorded in the floor file
        self._floor_file: FractionFloor | None = None

    def load(self, job_digest: str) -> BridgeState:
        self.state = load_state(self.slot, job_digest)
        self.fraction_floor = self.state.max_fraction
        self._floor_file = FractionFloor(self.slot, job_digest)
        return self.state

    def save(self, reason: str) -> bool:
        """Write the state atomically; False (logged) when it cannot be written (disk full?)."""
        try:
            save_state(self.slot, self.state)
            return True
        except OSError as e:
            log.error("cannot save the bridge state (%s): %s", reason, e)
            return False

    def raise_floor(self, fraction: float) -> None:
        """Record ``fraction`` (a small step ahead) before it is reported, so a kill -9 never lowers it;
        a step ahead, so a guest reporting 10 times a second costs ~200 tiny writes a job, not one per
        report (after a restart the client may see up to ``fraction_floor_step`` more)."""
        if fraction <= self.fraction_floor:
            return
        self.fraction_floor = min(1.0, fraction + self.policy.fraction_floor_step)
        if self._floor_file is None:
            return
        try:
            self._floor_file.save(self.fraction_floor)
        except OSError as e:
            log.debug("cannot record the fraction done floor: %s", e)

    def close(self) -> None:
        if self._floor_file is not None:
            self._floor_file.close()
            self._floor_file = None
