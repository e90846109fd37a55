"""The QMP thread of the QEMU backend: one private asyncio loop on a daemon thread runs every QMP call
(``qemu.qmp``) of this process, so the bridge's own loop stays synchronous."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

QMP_TIMEOUT = 10.0


class _LoopThread:
    """One private asyncio loop on a daemon thread for all QMP calls of this process."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Any, timeout: float) -> Any:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="qemu-qmp-loop", daemon=True)
                t.start()
                cls._loop = loop
            loop = cls._loop
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise


def qmp_call(
    sock: Path, cmd: str, args: Mapping[str, object] | None = None, timeout: float = QMP_TIMEOUT
) -> Any:
    """Connect to the QMP socket, run one command, disconnect. Raises OSError / qemu.qmp errors."""
    from qemu.qmp import QMPClient

    async def go() -> Any:
        client = QMPClient("boinc-bridge")
        try:
            await asyncio.wait_for(client.connect(str(sock)), timeout)
            return await asyncio.wait_for(client.execute(cmd, args), timeout)
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()

    return _LoopThread.run(go(), timeout + 2.0)
