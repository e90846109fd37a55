"""Saving and restoring whole VMs (the QEMU backend's quit, periodic checkpoints and long suspends).

A mixin of ``QemuBackend`` (backend.py): the agent handshake (``save NONCE`` in ``boinc_agent_request``,
answered in ``boinc_agent_saving`` once the guest unmounted the share), QEMU's migration into the state
folder (``migrate.py``) and the save's files and validation (``vmsave.py``). docs/qemu.md, "Saving VMs".
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from host_bridge.backends.base import BackendError
from host_bridge.backends.qemu import migrate, vmsave
from host_bridge.backends.qemu.accel import choose_accel
from host_bridge.share import GuestFileRefused, Share

if TYPE_CHECKING:
    import subprocess as _sp

logger = logging.getLogger(__name__)

STARTED_FILE = "boinc_agent_started"
REQUEST_FILE = "boinc_agent_request"
SAVING_FILE = "boinc_agent_saving"  # the agent's answer to "save NONCE": "saving NONCE" / "failed NONCE ..."
# What a save's VM must have had besides its configuration: the devices of QemuBackend._command that
# hold state (bump when one is added or removed: an older save is then refused, not loaded and failed)
DEVICE_LAYOUT = "2: wake-up serial port"


class SavingMixin:
    """The save verbs of ``QemuBackend`` (which provides the attributes and helpers declared here)."""

    _relay: bool
    _paused_at: float | None
    _stopping: bool
    _started: bool
    _accel: str
    _kvm_may_fall_back: bool
    _ps: psutil.Process | None
    _proc: _sp.Popen[bytes] | None
    save_limit: int | None
    last_save: dict[str, float]

    if TYPE_CHECKING:
        from host_bridge.backends.qemu.vmconfig import VMConfig as _Config

        @property
        def cfg(self) -> _Config: ...
        @property
        def share(self) -> Share: ...
        @property
        def overlay(self) -> Path: ...
        @property
        def wake_socket(self) -> Path: ...
        @property
        def _cfg(self) -> _Config | None: ...
        def _alive(self) -> bool: ...
        def _qmp(self, cmd: str, args: Any = None, timeout: float = ...) -> Any: ...
        def _wait_exit(self, timeout: float) -> None: ...
        def _reap(self) -> None: ...
        def _launch(self, *, incoming: str | None = None) -> None: ...

    def identity(self) -> dict[str, str]:
        """What a save must have been written for: QEMU, the VM's configuration, the image files."""
        c = self.cfg
        config = [c.memory_mb, c.cpus, c.network, c.security, c.cmdline, self._accel or "?", DEVICE_LAYOUT]
        return {
            "qemu": vmsave.qemu_version(c.qemu),
            "config": json.dumps(config),
            "kernel": vmsave.file_identity(c.kernel),
            "initrd": vmsave.file_identity(c.initrd),
            "disk": vmsave.file_identity(c.disk),
        }

    def can_save(self) -> bool:
        """The VM runs and its agent relays the share (otherwise QEMU cannot save it)."""
        if self._cfg is None or not self._alive():
            return False
        if not self._relay:
            with contextlib.suppress(OSError, GuestFileRefused):
                data = self.share.read(STARTED_FILE, 256) or b""
                self._relay = data.rstrip().endswith(b" relay")
        return self._relay

    def checkpoint(self) -> bool:
        """Quit: save the whole VM into the state folder and end QEMU (True); False (nothing saved, the
        VM still runs) where it cannot be saved: then the caller powers it off and the app's own
        checkpoint is what survives."""
        if not self.can_save():
            return False
        try:
            self._save(keep_running=False)
        except BackendError as e:
            logger.warning(
                "could not save VM %s: %s (the caller powers it off or keeps it paused)", self.cfg.tag, e
            )
            return False
        self._stopping = True
        self._alive()  # its CPU time, the save's included
        with contextlib.suppress(BackendError):
            self._qmp("quit", timeout=3.0)
        if self._proc is not None:  # our child: waited for at once (QEMU ends within milliseconds)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5.0)
        self._wait_exit(5.0)
        if self._alive() and self._ps is not None:
            with contextlib.suppress(psutil.Error):
                self._ps.kill()
            self._wait_exit(5.0)
        self._reap()
        self._ps = None
        return True

    def vm_checkpoint(self) -> bool:
        """A periodic checkpoint: save the VM while it runs on (a short pause at the end). True if saved."""
        if not self.can_save():
            return False
        try:
            self._save(keep_running=True)
        except BackendError as e:
            logger.warning("VM checkpoint of %s skipped: %s", self.cfg.tag, e)
            with contextlib.suppress(BackendError):
                if self._paused_at is None and self._alive():
                    self._qmp("cont")
            return False
        return True

    def _save(self, *, keep_running: bool) -> None:
        c = self.cfg
        paused = self._paused_at is not None
        d = vmsave.save_dir(c.state_dir)
        d.mkdir(mode=0o700, exist_ok=True)
        nonce = str(time.time_ns())
        out = d / f"ram-{nonce}{migrate.save_codec().suffix}"
        identity = self.identity()
        identity["machine"] = migrate.default_machine(self._qmp)
        t0 = time.monotonic()
        if paused:
            self._qmp("cont")  # the agent must unmount the share: it runs for the handshake only
        try:
            for attempt in range(3):  # the agent mounts the share again 150 ms after its answer
                self._handshake(f"{nonce}.{attempt}")
                try:
                    started = migrate.start_save(self._qmp, out, accept_within=0.1, stop=not keep_running)
                    break
                except BackendError:
                    if attempt == 2:
                        raise
            limit = c.memory_mb * 1024 * 1024 + (64 << 20)
            if self.save_limit is not None:
                limit = min(limit, self.save_limit)
            res = migrate.wait_done(self._qmp, started, timeout=120.0, out=out, limit=limit)
            stopped_at = time.monotonic()
            overlay = None
            if c.disk is not None:  # the VM is stopped: its overlay is consistent with the stream
                overlay = d / f"overlay-{nonce}.qcow2"
                subprocess.run(
                    ["cp", "--reflink=auto", str(self.overlay), str(overlay)], check=True, timeout=600
                )
            if keep_running and not paused:
                self._qmp("cont")
            pause = res.downtime_ms / 1000 + (time.monotonic() - stopped_at)
            if paused:
                self._qmp("stop")
            if keep_running:
                self._wake_agent()
            size = vmsave.commit(c.state_dir, out, identity, overlay)
        except (BackendError, OSError, subprocess.SubprocessError) as e:
            for p in d.glob(f"*-{nonce}*"):
                with contextlib.suppress(OSError):
                    p.unlink()
            if paused:  # it ran for the handshake only: a release that did not take leaves it paused
                with contextlib.suppress(BackendError):
                    self._qmp("stop")
            if isinstance(e, BackendError):
                raise
            raise BackendError(f"cannot write the VM save in {d}: {e}", temporary=True) from e
        total = time.monotonic() - t0
        self.last_save = {
            "seconds": total,
            "pause": pause,
            "bytes": float(size),
            "ram": float(res.total_bytes),
            "in_use": float(res.normal_bytes),
        }
        logger.info(
            "VM %s saved%s: %.1f MiB (of %d MiB guest RAM, %.1f MiB of it in use) in %.2f s, "
            "guest paused %.0f ms",
            c.tag,
            "" if keep_running else " for the quit",
            size / 2**20,
            c.memory_mb,
            res.normal_bytes / 2**20,
            total,
            pause * 1000,
        )

    def _wake_agent(self) -> None:
        """The save's migration is over: a line on the agent's wake-up port (QemuBackend.wake_socket)
        makes it mount the share at once rather than after its fallback delay (guest_agent/relay.c)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(str(self.wake_socket))
                s.sendall(b"wake\n")
        except OSError as e:  # the agent mounts the share after its delay anyway
            logger.debug("VM %s: no wake-up line (%s)", self.cfg.tag, e)

    def _handshake(self, nonce: str) -> None:
        """Ask the agent to push its files and unmount the share; wait for its answer."""
        self.share.clear([SAVING_FILE])
        self.share.write_atomic(REQUEST_FILE, f"save {nonce}\n".encode())
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                data = self.share.read(SAVING_FILE, 512)
            except (OSError, GuestFileRefused):
                data = None
            if data:
                if data.startswith(f"saving {nonce}\n".encode()):
                    return
                if data.startswith(f"failed {nonce}".encode()):
                    raise BackendError(f"the guest's agent cannot save: {data[:200]!r}", temporary=True)
            if not self._alive():
                raise BackendError("the VM ended during the save", temporary=True)
            time.sleep(0.003)
        raise BackendError("the guest's agent did not answer the save request within 10 s", temporary=True)

    def _restore_save(self) -> bool:
        """Start QEMU from the state folder's save (True), or say why not and discard it (False)."""
        c = self.cfg
        self._accel = choose_accel(c.qemu, c.accel_req)
        identity = self.identity()
        try:
            save = vmsave.load(c.state_dir, identity, checksum=False)  # the checksum: while QEMU starts
        except vmsave.SaveRefused as e:
            self._refused(e)
            return False
        if save is None:
            return False
        t0 = time.monotonic()
        try:
            if save.overlay is not None:
                subprocess.run(
                    ["cp", "--reflink=auto", str(save.overlay), str(self.overlay)], check=True, timeout=600
                )
            self._kvm_may_fall_back = False
            # QEMU loads the stream as it starts (-S: the guest stays stopped) while the stream's
            # checksum and the machine type are checked; only then does the guest run.
            self._launch(incoming=migrate.load_uri(save.stream))
            vmsave.verify(save)
            machine = migrate.default_machine(self._qmp_once_up)
            if save.identity.get("machine") != machine:
                raise BackendError(
                    f"the save was written for machine type {save.identity.get('machine')}, "
                    f"this QEMU's is {machine}"
                )
            migrate.wait_done(self._qmp, t0, timeout=120.0)
            self._qmp("cont")
            self._wake_agent()  # the guest runs on from its "saving" answer: the share can come back
        except (vmsave.SaveRefused, BackendError, OSError, subprocess.SubprocessError) as e:
            if self._ps is not None:
                with contextlib.suppress(psutil.Error):
                    self._ps.kill()
            self._reap()
            self._ps = None
            self._proc = None
            if isinstance(e, vmsave.SaveRefused):
                self._refused(e)
                return False
            logger.warning(
                "VM %s: restoring the save %s failed (%s); booting afresh (the app resumes from "
                "its own checkpoint)",
                c.tag,
                save.stream,
                e,
            )
            vmsave.discard(c.state_dir)
            return False
        self._started = True
        self._relay = True
        logger.info(
            "VM %s restored from its save (%.1f MiB) in %.2f s",
            c.tag,
            save.size / 2**20,
            time.monotonic() - t0,
        )
        return True

    def _refused(self, e: vmsave.SaveRefused) -> None:
        logger.warning(
            "VM %s: no VM restore: %s; booting afresh (the app resumes from its own checkpoint)",
            self.cfg.tag,
            e,
        )
        vmsave.discard(self.cfg.state_dir)

    def _qmp_once_up(self, cmd: str, args: Any = None, timeout: float = 10.0) -> Any:
        """A QMP call to a QEMU just started: its socket file exists a moment before it accepts
        connections (refused meanwhile; seen under load, and a refused restore loses the VM's memory)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._qmp(cmd, args, timeout)
            except BackendError:
                if time.monotonic() > deadline or not self._alive():
                    raise
                time.sleep(0.005)
