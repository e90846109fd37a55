"""A test harness that PLAYS THE BOINC CLIENT towards an app, through the real shared memory.

This is the *test side*: the app side is the real ``libboinc_api.so.7`` (in a subprocess, via
``host_bridge.boinc.api``). The harness prepares a slot directory the way the client does for a
7.x app on Unix: ``init_data.xml`` with ``<shm_key>-1</shm_key>`` (which makes the library mmap
``boinc_mmap_file``) and an 8192-byte ``boinc_mmap_file``: 8 message channels of 1024 bytes
(``SHARED_MEM`` in lib/app_ipc.h). Byte 0 of a channel is "message pending"; the text starts at
byte 1, NUL-terminated. A sender writes only when byte 0 is 0 and then sets it; the receiver copies
the text and clears byte 0. The client writes process_control_request / heartbeat / trickle_down and
reads app_status / trickle_up / graphics_reply / process_control_reply; so does this harness.
"""

from __future__ import annotations

import mmap
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

CHANNEL_SIZE = 1024
CHANNELS = (
    "process_control_request",
    "process_control_reply",
    "graphics_request",
    "graphics_reply",
    "heartbeat",
    "app_status",
    "trickle_up",
    "trickle_down",
)
MMAP_FILE = "boinc_mmap_file"
INIT_DATA_FILE = "init_data.xml"

_TAG_RE = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>([^<]*)</\1>|<([A-Za-z_][A-Za-z0-9_]*)/>")


def parse_msg(text: str) -> dict[str, Any]:
    """Tags of a channel message: ``<x>1.5</x>`` -> float (str if not a number), ``<x/>`` -> True;
    the text itself under ``"raw"``."""
    out: dict[str, Any] = {"raw": text}
    for m in _TAG_RE.finditer(text):
        if m.group(3):
            out[m.group(3)] = True
            continue
        tag, value = m.group(1), m.group(2)
        try:
            out[tag] = float(value)
        except ValueError:
            out[tag] = value
    return out


class SlotClient:
    """Plays the BOINC client for an app running in ``slot_dir`` (see the module docstring).

    ``client_pid`` defaults to this process (alive, so the library's client-alive check passes).
    ``extra_init_data`` adds or overrides ``init_data.xml`` tags (values escaped, except
    ``project_preferences`` which is an XML fragment, inserted as is).
    """

    def __init__(
        self,
        slot_dir: Path,
        *,
        client_pid: int | None = None,
        checkpoint_period: float | None = None,
        extra_init_data: dict[str, Any] | None = None,
    ) -> None:
        self.slot_dir = Path(slot_dir)
        self.slot_dir.mkdir(parents=True, exist_ok=True)
        self.client_pid = os.getpid() if client_pid is None else client_pid
        data: dict[str, Any] = {
            "major_version": 7,
            "minor_version": 20,
            "release": 5,
            "app_version": 100,
            "app_name": "test_app",
            "project_preferences": "<color>blue</color>",
            "userid": 1,
            "teamid": 0,
            "hostid": 42,
            "user_name": "tester",
            "team_name": "",
            "project_dir": str(self.slot_dir),
            "boinc_dir": str(self.slot_dir),
            "wu_name": "test_wu",
            "result_name": "test_wu_0",
            "authenticator": "0123456789abcdef",
            "slot": 0,
            "client_pid": self.client_pid,
            "rsc_fpops_est": 1e12,
            "rsc_fpops_bound": 1e13,
            "rsc_memory_bound": 2e8,
            "rsc_disk_bound": 1e9,
            "computation_deadline": time.time() + 86400,
            "fraction_done_start": 0,
            "fraction_done_end": 1,
            "ncpus": 1,
            "shm_key": -1,
            "wu_cpu_time": 0,
            "starting_elapsed_time": 0,
        }
        if checkpoint_period is not None:
            data["checkpoint_period"] = checkpoint_period
        data.update(extra_init_data or {})
        lines = ["<app_init_data>"]
        for tag, value in data.items():
            text = str(value) if tag == "project_preferences" else escape(str(value))
            if tag == "project_preferences":
                text = "\n" + text + "\n"
            lines.append(f"<{tag}>{text}</{tag}>")
        lines.append("</app_init_data>\n")
        (self.slot_dir / INIT_DATA_FILE).write_text("\n".join(lines))
        path = self.slot_dir / MMAP_FILE
        path.write_bytes(b"\0" * (CHANNEL_SIZE * len(CHANNELS)))
        self._fd = os.open(path, os.O_RDWR)
        self._mm = mmap.mmap(self._fd, CHANNEL_SIZE * len(CHANNELS))
        self._lock = threading.Lock()
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None

    # -- raw channel access -------------------------------------------------------------------
    def _off(self, channel: str) -> int:
        return CHANNELS.index(channel) * CHANNEL_SIZE

    def pending(self, channel: str) -> bool:
        return self._mm[self._off(channel)] != 0

    def send(self, channel: str, text: str, *, timeout: float = 5.0, force: bool = False) -> None:
        """Write a message (``send_msg``): wait (bounded) until the app consumed the previous one,
        as the client's message queue does; ``force`` overwrites (``send_msg_overwrite``)."""
        data = text.encode()
        if len(data) > CHANNEL_SIZE - 2:
            raise ValueError(f"message too long for a channel: {len(data)} bytes")
        off = self._off(channel)
        deadline = time.monotonic() + timeout
        while not force and self._mm[off] != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not consume the previous {channel} message in {timeout} s")
            time.sleep(0.01)
        with self._lock:
            self._mm[off + 1 : off + 2 + len(data)] = data + b"\0"
            self._mm[off] = 1

    def receive(self, channel: str) -> str | None:
        """Consume a message (``get_msg``): copy the text, clear byte 0. None when none pending."""
        off = self._off(channel)
        with self._lock:
            if self._mm[off] == 0:
                return None
            raw = self._mm[off + 1 : off + CHANNEL_SIZE]
            self._mm[off] = 0
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")

    def peek(self, channel: str) -> str:
        """The channel's text without consuming it (whatever the flag)."""
        off = self._off(channel)
        raw = self._mm[off + 1 : off + CHANNEL_SIZE]
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")

    # -- what the client sends ------------------------------------------------------------------
    def suspend(self) -> None:
        self.send("process_control_request", "<suspend/>")

    def resume(self) -> None:
        self.send("process_control_request", "<resume/>")

    def quit(self) -> None:
        self.send("process_control_request", "<quit/>")

    def abort(self) -> None:
        self.send("process_control_request", "<abort/>")

    def heartbeat(self) -> None:
        """One ``<heartbeat/>`` (the client sends one a second, even while the app is suspended);
        skipped while the previous one is unread, as the client does."""
        if not self.pending("heartbeat"):
            self.send("heartbeat", "<heartbeat/>")

    def start_heartbeats(self, interval: float = 0.5) -> None:
        if self._hb_thread is not None:
            return
        self._hb_stop.clear()

        def run() -> None:
            while not self._hb_stop.wait(interval):
                self.heartbeat()

        self._hb_thread = threading.Thread(target=run, name="slotclient-heartbeat", daemon=True)
        self._hb_thread.start()

    def stop_heartbeats(self) -> None:
        if self._hb_thread is not None:
            self._hb_stop.set()
            self._hb_thread.join(timeout=5)
            self._hb_thread = None

    def send_trickle_down(self, name: str, body: str) -> Path:
        """Put a trickle-down file in the slot (the client names them ``trickle_down_*``) and
        notify the app with ``<have_trickle_down/>``."""
        if "trickle_down" not in name:
            raise ValueError("the library only picks up files whose name contains 'trickle_down'")
        path = self.slot_dir / name
        path.write_text(body)
        self.send("trickle_down", "<have_trickle_down/>")
        return path

    # -- what the client reads ------------------------------------------------------------------
    def read_app_status(self) -> dict[str, Any] | None:
        """Consume the app_status message like the client (clear byte 0); parsed tags + ``raw``."""
        text = self.receive("app_status")
        return None if text is None else parse_msg(text)

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool] = lambda s: True, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Consume app_status messages until one satisfies ``predicate``; TimeoutError with the
        last message seen otherwise."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            st = self.read_app_status()
            if st is not None:
                last = st
                if predicate(st):
                    return st
            time.sleep(0.005)
        raise TimeoutError(f"no matching app_status message in {timeout} s; last: {last!r}")

    def wait_message(self, channel: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.receive(channel)
            if text is not None:
                return parse_msg(text)
            time.sleep(0.01)
        raise TimeoutError(f"no {channel} message in {timeout} s")

    def read_trickle_up(self) -> dict[str, Any] | None:
        """Consume a trickle_up channel message (``<have_new_trickle_up/>``,
        ``<have_new_upload_file/>``); the trickle itself is the slot file ``trickle_up.xml``."""
        text = self.receive("trickle_up")
        return None if text is None else parse_msg(text)

    def trickle_up_file(self) -> str | None:
        path = self.slot_dir / "trickle_up.xml"
        return path.read_text() if path.exists() else None

    def read_graphics_reply(self) -> dict[str, Any] | None:
        text = self.receive("graphics_reply")
        return None if text is None else parse_msg(text)

    # -- clean-up ---------------------------------------------------------------------------------
    def close(self) -> None:
        self.stop_heartbeats()
        if not self._mm.closed:
            self._mm.close()
            os.close(self._fd)

    def __enter__(self) -> SlotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
