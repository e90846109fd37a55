"""Reading what the guest says: its status file (strict, budgeted decoding) or, for a guest that only
writes vboxwrapper's files, the synthetic status ``host_bridge.vboxcompat`` makes of them.

Everything here is hostile input: ``share.Share`` reads it (no links, bounded), ``protocol.decode_status``
refuses it with one logged reason (``share.RefusalLog``), and the decoding is budgeted so that a guest
rewriting costly files cannot hold more than a small share of a core.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from boinc_guest import protocol as P

from ..share import GuestFileRefused, RefusalLog, Share

if TYPE_CHECKING:
    from ..policy import Policy
    from ..vboxcompat import VboxCompat


class StatusReader:
    """The guest's newest valid status file. The same bytes are never decoded twice, and after a
    decode that took d seconds the next one waits until ``decode_budget`` x d has passed (the previous
    view stands meanwhile; a valid 1 MiB file of a million empty containers takes ~0.6 s)."""

    def __init__(self, share: Share, refusals: RefusalLog, policy: Policy) -> None:
        self.share = share
        self.refusals = refusals
        self.policy = policy
        self._bytes: bytes | None = None  # the status file's bytes last decoded, and the result
        self._status: P.Status | None = None
        self._not_before = 0.0  # time.perf_counter() before which no new decode starts
        self._deferred = False  # a status file was skipped by the budget: re-read when allowed

    def read(self) -> P.Status | None:
        try:
            data = self.share.read(P.STATUS_FILE, P.MAX_FILE)
        except GuestFileRefused as e:
            self.refusals.report(e)
            return None
        if data is None:
            return None
        if data == self._bytes:
            return self._status
        t0 = time.perf_counter()
        if t0 < self._not_before:
            self._deferred = True  # the loop re-reads once the budget allows
            return self._status
        self._deferred = False
        status: P.Status | None = None
        try:
            status = P.decode_status(data)
        except P.ProtocolError as e:
            self.refusals.report(GuestFileRefused(P.STATUS_FILE, f"bad status file ({e.category})", str(e)))
        t1 = time.perf_counter()
        self._bytes, self._status = data, status
        spent = t1 - t0
        # an ordinary status file decodes in tens of microseconds: only costly ones are budgeted
        if spent > self.policy.decode_costly:
            self._not_before = t1 + min(self.policy.decode_budget * spent, self.policy.decode_wait_max)
        else:
            self._not_before = t1
        return status

    def retry_due(self) -> bool:
        """A newer status file was skipped by the decode budget and the budget now allows it."""
        return self._deferred and time.perf_counter() >= self._not_before

    def retry_in(self, longest: float) -> float:
        """How long the loop may sleep without delaying a deferred decode (at most ``longest``)."""
        if not self._deferred:
            return longest
        return min(longest, max(0.0, self._not_before - time.perf_counter()))


class GuestView:
    """The guest's status as the core sees it: the SDK's status file, or (with a vbox_job.xml, when
    the guest writes no status file) vboxwrapper's files. After a restart, the previous run's file is
    ignored until the restarted app writes its first one (``stale_seq``)."""

    def __init__(self, reader: StatusReader, compat: VboxCompat | None, stale_seq: int | None) -> None:
        self.reader = reader
        self.compat = compat
        self.stale_seq = stale_seq
        self.status: P.Status | None = None

    def refresh(self, now: float, *, running: bool, final: bool = False) -> P.Status | None:
        """Re-read; returns the newest accepted status (None: none yet)."""
        g = self.reader.read()
        if g is None and self.compat is not None and not self.reader.share.exists(P.STATUS_FILE):
            # a guest that writes only vboxwrapper's files (the SDK's status file wins when present)
            self.status = self.compat.poll(now, running, force=final)
            return self.status
        if g is None:
            return self.status
        if self.stale_seq is not None:
            if g.seq == self.stale_seq:
                return self.status  # the previous run's file: wait for the restarted app's first write
            self.stale_seq = None
        self.status = g
        return g
