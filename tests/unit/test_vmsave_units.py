"""The VM save's pieces without a VM (host_bridge/backends/qemu/migrate.py, vmsave.py): when the quit
stops the guest, which compressor writes and reads a stream, the manifest's commit. The real saves and
restores: tests/bridge/test_vmsave.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from host_bridge.backends.base import BackendError
from host_bridge.backends.qemu import migrate, saving, vmsave

BLOCKER = "Migration is disabled when VirtFS export path '/x' is mounted in the guest (mount_tag 'shared')"


class FakeQemu:
    """QMP of a guest that unmounts the share after ``blocked_polls`` query-migrate calls; ``refuse``
    migrate commands are refused after that (a guest that mounted it again)."""

    def __init__(self, blocked_polls: int, refuse: int = 0) -> None:
        self.blocked_polls = blocked_polls
        self.refuse = refuse
        self.calls: list[str] = []
        self.running = True

    def __call__(self, cmd: str, args: Any = None, timeout: float = 10.0) -> Any:
        self.calls.append(cmd)
        if cmd == "query-migrate":
            if self.blocked_polls > 0:
                self.blocked_polls -= 1
                return {"blocked-reasons": [BLOCKER]}
            return {}
        if cmd == "stop":
            self.running = False
        elif cmd == "cont":
            self.running = True
        elif cmd == "migrate":
            if self.refuse > 0:
                self.refuse -= 1
                raise BackendError(BLOCKER)
            assert args is not None and args["uri"].startswith("exec:")
        return {}


def test_quit_stops_the_guest_only_once_the_share_is_unmounted(tmp_path: Path):
    """Stopped while its unmount is under way, the guest could never finish it: QEMU would refuse the
    migration until the handshake is redone. The guest runs until the blocker is gone."""
    q = FakeQemu(blocked_polls=3)
    migrate.start_save(q, tmp_path / "ram-1.lz4", accept_within=5.0, stop=True)
    assert q.calls[1:] == ["query-migrate"] * 4 + ["stop", "migrate"]
    assert not q.running


def test_a_refused_quit_save_leaves_the_guest_running(tmp_path: Path):
    q = FakeQemu(blocked_polls=0, refuse=1000)
    with pytest.raises(BackendError, match="refused to save the VM: Migration is disabled"):
        migrate.start_save(q, tmp_path / "ram-1.zst", accept_within=0.05, stop=True)
    assert q.running, "a stopped guest cannot unmount: the caller redoes the handshake with it running"
    assert q.calls.count("stop") == q.calls.count("cont") >= 1


def test_live_save_never_stops_the_guest(tmp_path: Path):
    q = FakeQemu(blocked_polls=2, refuse=1)
    migrate.start_save(q, tmp_path / "ram-1.lz4", accept_within=5.0)
    assert "stop" not in q.calls and q.calls.count("migrate") == 2


def test_waiting_for_the_migration_survives_a_failed_poll():
    answers: list[Any] = [BackendError("garbled greeting"), {"status": "active"}, BackendError("again")]
    answers.append({"status": "completed", "ram": {"total": 100, "normal-bytes": 40}})

    def qmp(cmd: str, args: Any = None, timeout: float = 10.0) -> Any:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    res = migrate.wait_done(qmp, 0.0, timeout=5.0)
    assert (res.total_bytes, res.normal_bytes) == (100, 40) and not answers

    def dead(cmd: str, args: Any = None, timeout: float = 10.0) -> Any:
        raise BackendError("connection refused")

    with pytest.raises(BackendError, match="refused"):
        migrate.wait_done(dead, 0.0, timeout=5.0)


def test_the_compressor_is_lz4_else_zstd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert migrate.save_codec().program == "lz4"
    assert "lz4" in migrate.save_uri(tmp_path / "ram-1.lz4", migrate.save_codec())
    real = migrate.shutil.which
    monkeypatch.setattr(migrate.shutil, "which", lambda p: None if p == "lz4" else real(p))
    assert migrate.save_codec().suffix == ".zst"
    assert "zstd" in migrate.load_uri(tmp_path / "ram-1.zst")
    with pytest.raises(BackendError, match="install the lz4 package"):
        migrate.load_uri(tmp_path / "ram-1.lz4")
    monkeypatch.setattr(migrate.shutil, "which", lambda p: None)
    with pytest.raises(BackendError, match="install the lz4 \\(or zstd\\) package"):
        migrate.save_codec()


def test_the_decompressor_follows_the_suffix(tmp_path: Path):
    zst, lz4 = migrate.load_uri(tmp_path / "ram-1.zst"), migrate.load_uri(tmp_path / "ram-1.lz4")
    assert "zstd" in zst and " -d " in zst and zst.endswith("ram-1.zst")
    assert "lz4" in lz4 and " -d " in lz4 and lz4.endswith("ram-1.lz4")
    with pytest.raises(BackendError, match="no known compression suffix"):
        migrate.load_uri(tmp_path / "ram-1.gz")


def test_commit_records_size_and_checksum_and_keeps_only_the_new_save(tmp_path: Path):
    d = vmsave.save_dir(tmp_path)
    d.mkdir()
    (d / "ram-1.zst").write_bytes(b"old")
    vmsave.commit(tmp_path, d / "ram-1.zst", {"qemu": "q"}, None)
    new = d / "ram-2.lz4"
    new.write_bytes(b"x" * 5000)
    assert vmsave.commit(tmp_path, new, {"qemu": "q"}, None) == 5000
    doc = json.loads((d / vmsave.MANIFEST).read_text())
    assert doc["stream"] == "ram-2.lz4" and doc["sha256"] == hashlib.sha256(b"x" * 5000).hexdigest()
    assert sorted(p.name for p in d.iterdir()) == ["ram-2.lz4", vmsave.MANIFEST]
    save = vmsave.load(tmp_path, {"qemu": "q"})
    assert save is not None and save.stream == new


def test_a_stream_of_unknown_compression_is_refused(tmp_path: Path):
    d = vmsave.save_dir(tmp_path)
    d.mkdir()
    s = d / "ram-1.lz4"
    s.write_bytes(b"data")
    vmsave.commit(tmp_path, s, {}, None)
    s.rename(d / "ram-1.gz")
    man = d / vmsave.MANIFEST
    man.write_text(man.read_text().replace("ram-1.lz4", "ram-1.gz"))
    with pytest.raises(vmsave.SaveRefused, match="unknown compression"):
        vmsave.load(tmp_path, {})


class FakeVM(saving.SavingMixin):
    """The save verbs over a fake QEMU and a guest agent that never answers (the handshake fails)."""

    def __init__(self, state_dir: Path, paused: bool) -> None:
        self.q = FakeQemu(blocked_polls=0)
        self.q.running = not paused
        self._paused_at = 1.0 if paused else None
        self._state_dir = state_dir
        self._relay = True
        self.save_limit = None
        self.last_save = {}

    @property
    def cfg(self) -> Any:
        return SimpleNamespace(state_dir=self._state_dir, tag="t", memory_mb=256, disk=None)

    def identity(self) -> dict[str, str]:
        return {"qemu": "q"}

    def _qmp(self, cmd: str, args: Any = None, timeout: float = 10.0) -> Any:
        return self.q(cmd, args, timeout)

    def _handshake(self, nonce: str) -> None:
        raise BackendError("the guest's agent did not answer the save request within 10 s", temporary=True)


@pytest.mark.parametrize("paused", [True, False])
def test_a_failed_save_leaves_the_vm_as_it_was(tmp_path: Path, paused: bool):
    """A long suspend's release whose save fails leaves the VM paused (the task loop says "it stays
    paused"); a quit's leaves it running (the caller powers it off)."""
    vm = FakeVM(tmp_path, paused)
    with pytest.raises(BackendError, match="did not answer"):
        vm._save(keep_running=False)
    assert vm.q.running is not paused
    assert not list(vmsave.save_dir(tmp_path).iterdir()), "nothing of the failed save is left"
