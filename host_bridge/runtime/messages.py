"""The bridge's conversations, in both directions: with the BOINC client (status messages, trickles,
uploads, through ``host_bridge.boinc.api``) and with the guest (the control file in the share).

``ClientLink`` applies the core's message actions and gathers the client's side of the plumbing
(trickle-downs, upload results); it keeps what must survive a restart in the bridge's state.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from boinc_guest import protocol as P

from .. import core
from ..boinc.api import AppInitData, BoincApiBase
from ..share import GuestFileRefused, RefusalLog, Share, safe_name
from . import slotfiles
from .plan import TaskPlan
from .store import StateStore

log = logging.getLogger(__name__)


def nn(x: Any) -> float:
    """A finite, non-negative float (0.0 for anything else)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) and f >= 0 else 0.0


class ClientLink:
    def __init__(
        self,
        api: BoincApiBase,
        store: StateStore,
        init_data: AppInitData,
        nthreads: int,
        refusals: RefusalLog,
    ) -> None:
        self.api = api
        self.store = store
        self.init_data = init_data
        self.nthreads = nthreads
        self.refusals = refusals
        self._control_seq = 0
        self._control: tuple[bool, bool, int] = (False, False, 0)  # (suspended, network, ack) last written

    # -- the control file (to the guest)

    def write_control(
        self,
        share: Share,
        *,
        suspended: bool,
        network_suspended: bool,
        ack: int,
        quit: bool = False,
        abort: bool = False,
    ) -> None:
        state = self.store.state
        aid = self.init_data
        self._control_seq += 1
        init = P.InitData(
            app_name=aid.app_name,
            wu_name=aid.wu_name,
            result_name=aid.result_name,
            project_preferences=P.truncate_utf8(aid.project_preferences, P.MAX_TEXT),
            user_name=aid.user_name,
            team_name=aid.team_name,
            master_url=aid.master_url,
            userid=aid.userid,
            teamid=aid.teamid,
            hostid=aid.hostid,
            app_version=aid.app_version,
            checkpoint_period=nn(aid.checkpoint_period) or self.store.policy.default_checkpoint_period,
            nthreads=self.nthreads,
            fraction_done_start=0.0,
            fraction_done_end=1.0,
            wu_cpu_time=nn(state.cpu_done + state.task_cpu_checkpoint),
            starting_elapsed_time=nn(aid.starting_elapsed_time),
            rsc_fpops_est=nn(aid.rsc_fpops_est),
            rsc_fpops_bound=nn(aid.rsc_fpops_bound),
            rsc_memory_bound=nn(aid.rsc_memory_bound),
            rsc_disk_bound=nn(aid.rsc_disk_bound),
            computation_deadline=nn(aid.computation_deadline),
        )
        ctl = P.Control(
            seq=self._control_seq,
            suspended=suspended,
            quit=quit,
            abort=abort,
            network_suspended=network_suspended,
            ack=ack,
            init_data=init,
            trickle_down=tuple(P.TrickleDown(int(i), str(t)) for i, t in state.trickle_down[: P.MAX_EVENTS]),
            uploads=tuple(P.UploadResult(n, s) for n, s in list(state.uploads.items())[: P.MAX_EVENTS]),
        )
        self._control = (suspended, network_suspended, ack)
        share.write_atomic(P.CONTROL_FILE, P.encode_control(ctl))

    def rewrite_control(self, share: Share) -> None:
        s, n, ack = self._control
        self.write_control(share, suspended=s, network_suspended=n, ack=ack)

    # -- status and trickles (to the client)

    def report(self, action: core.ReportStatus) -> None:
        self.store.raise_floor(action.fraction_done)
        self.api.send_status(
            cpu_time=action.cpu_time,
            checkpoint_cpu_time=action.checkpoint_cpu_time,
            fraction_done=action.fraction_done,
            fpops_per_cpu_sec=action.fpops_per_cpu_sec,
            fpops_cumulative=action.fpops_cumulative,
            intops_per_cpu_sec=action.intops_per_cpu_sec,
            intops_cumulative=action.intops_cumulative,
            want_network=action.want_network,
        )
        st = self.store.state
        st.max_fraction = max(st.max_fraction, action.fraction_done)

    def trickle_busy(self) -> bool:
        """The client has not taken the last trickle-up yet: the API keeps a single trickle_up.xml in
        the slot until then, so a second send would overwrite the first."""
        return os.path.lexists(self.store.slot / "trickle_up.xml")

    def send_queued_trickle_up(self) -> None:
        st = self.store.state
        if not st.trickle_up:
            return
        variety, text = st.trickle_up[0]
        rc = self.api.send_trickle_up(variety, text)
        if rc:
            log.warning("trickle-up %r was refused by the BOINC API (%d); dropped", variety, rc)
        st.trickle_up.pop(0)
        self.store.save("trickle-up sent")

    def periodic_trickle_up(self, cpu: float) -> None:
        """--trickle X: a trickle-up with the CPU time every X seconds, as BOINC's wrapper sends."""
        rc = self.api.send_trickle_up("cpu_time", f"<cpu_time>{cpu:f}</cpu_time>\n")
        if rc:
            log.warning("periodic trickle-up refused by the BOINC API: %d", rc)

    def drain_trickle_ups(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Before finishing: hand every queued trickle-up to the client (bounded in time)."""
        st = self.store.state
        deadline = clock() + timeout
        while st.trickle_up and clock() < deadline:
            if not self.trickle_busy():
                self.send_queued_trickle_up()
            time.sleep(0.05)
        deadline = clock() + timeout
        while self.trickle_busy() and clock() < deadline and not self.api.standalone:
            time.sleep(0.05)
        if st.trickle_up:
            log.warning("%d trickle-up message(s) could not be handed to the client", len(st.trickle_up))

    # -- uploads

    def upload(self, plan: TaskPlan, share: Share, ev: P.UploadRequest, limit: int) -> None:
        """A guest's request for an intermediate upload: copied out of the share (only to a destination
        the job allows: ``slotfiles.upload_dest``) and handed to the client."""
        uploads = self.store.state.uploads
        try:
            name = safe_name(ev.name)
        except GuestFileRefused as e:
            self.refusals.report(e)
            return
        if not plan.in_slot:
            dest = slotfiles.upload_dest(plan, self.store.slot, name, uploads)
            if dest is None:
                self.refusals.report(
                    GuestFileRefused(
                        name,
                        "upload refused",
                        "only the result's output files may be copied out of the shared folder: a name "
                        "declared with <copy_file_from_VM> in the job file, or a logical name of the slot "
                        "whose file does not exist yet (never the job file, an input, an app file or the "
                        "bridge's and the client's own files)",
                    )
                )
                uploads[name] = int(P.ERR_INVALID_PARAM)
                return
            try:
                share.copy_out(name, dest, limit)
            except GuestFileRefused as e:
                self.refusals.report(e)
                uploads[name] = int(P.ERR_INVALID_PARAM)
                return
            except OSError as e:
                log.warning("upload %r: cannot copy it out of the share: %s", name, e)
                uploads[name] = int(P.ERR_INVALID_PARAM)
                return
        rc = self.api.upload_file(name)
        uploads[name] = 1 if rc == 0 else rc

    # -- what the client sends (gathered once a second)

    def gather(self, share: Share) -> None:
        """Trickle-downs from the client and the results of pending uploads: kept in the state and
        told to the guest in the control file."""
        st = self.store.state
        changed = False
        td = self._take_trickle_down()
        if td is not None:
            st.trickle_down.append([st.trickle_down_next, P.truncate_utf8(td, P.MAX_TEXT)])
            st.trickle_down_next += 1
            st.trickle_down = st.trickle_down[-P.MAX_EVENTS :]
            changed = True
        for name, status in list(st.uploads.items()):
            if status == 1:
                new = self.api.upload_status(name)
                if new != 1 and new != P.ERR_NOT_FOUND:
                    st.uploads[name] = new
                    changed = True
        if changed:
            self.store.save("trickle-down / upload status")
            self.rewrite_control(share)

    def trickle_downs_acked(self, share: Share, td_ack: int) -> None:
        """The guest has read the trickle-downs up to ``td_ack``: they leave the control file."""
        st = self.store.state
        if not td_ack or not st.trickle_down:
            return
        before = len(st.trickle_down)
        st.trickle_down = [x for x in st.trickle_down if x[0] > td_ack]
        if len(st.trickle_down) != before:
            self.store.save("trickle-down acked")
            self.rewrite_control(share)

    def _take_trickle_down(self) -> str | None:
        """A trickle-down from the client: the API names a slot file; read it (bounded) and delete it."""
        name = self.api.receive_trickle_down()
        if not name:
            return None
        path = self.store.slot / os.path.basename(name)
        try:
            with open(path, "rb") as f:
                data = f.read(P.MAX_TEXT + 1)
            os.unlink(path)
        except OSError as e:
            log.warning("cannot read the trickle-down file %s: %s", path, e)
            return None
        if len(data) > P.MAX_TEXT:
            log.warning("trickle-down %s is larger than %d bytes: truncated for the guest", path, P.MAX_TEXT)
        return data[: P.MAX_TEXT].decode("utf-8", errors="replace")
