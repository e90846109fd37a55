"""Which accelerator a VM gets: KVM only after a probe boot got through the firmware under it, else TCG
emulation; the choice is remembered per QEMU binary and host kernel (in memory and in the image cache)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from host_bridge.backends.base import BackendError
from host_bridge.osutil import atomic_write, child_preexec

logger = logging.getLogger(__name__)

KVM_PROBE_TIMEOUT = 4.0


def qemu_binary(override: str | None = None) -> str:
    exe = override or os.environ.get("BOINC_QEMU") or "qemu-system-x86_64"
    found = shutil.which(exe)
    if not found:
        raise BackendError(
            f"QEMU is not installed ({exe} not found): install the qemu-system-x86 package "
            "(apt-get install qemu-system-x86 qemu-utils) or set the job file's vm_qemu",
            temporary=True,
            notice=True,
        )
    return found


_accel_cache: dict[str, str] = {}
KVM_CPU = "host"  # the CPU model of a VM under KVM (the probe boots the same one)


def _accel_key(qemu: str) -> str:
    st = os.stat(qemu)
    return f"{qemu}:{st.st_size}:{int(st.st_mtime)}:{os.uname().release}"


def _accel_file() -> Path:
    from host_bridge.images.parts import cache_dir

    return cache_dir() / "accel-probe.json"


def _load_accel_file() -> dict[str, str]:
    """The persisted choices, {probe key: "kvm" | "tcg"} (an unreadable or old-format file: none)."""
    try:
        data = json.loads(_accel_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if "key" in data and "accel" in data:  # the one-entry format of earlier versions
        data = {data["key"]: data["accel"]}
    return {k: v for k, v in data.items() if isinstance(k, str) and v in ("kvm", "tcg")}


def remember_accel(qemu: str, accel: str) -> None:
    """Record the accelerator for this QEMU binary and host kernel (in memory and in the image cache)."""
    import fcntl

    key = _accel_key(qemu)
    _accel_cache[key] = accel
    path = _accel_file()
    with contextlib.suppress(OSError), open(path.with_name(".accel-probe.lock"), "w") as lock:
        # bridges of several slots (and test runs) update the file at once: read, change and write it
        # under a lock, or one's entry is lost (and its probe runs again)
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _load_accel_file()
        entries[key] = accel
        atomic_write(path, json.dumps(dict(list(entries.items())[-16:])).encode(), sync=False)  # a cache


def choose_accel(qemu: str, requested: str = "auto") -> str:
    """ "kvm" if a probe boot under KVM gets through the firmware within a few seconds, else "tcg".

    ``/dev/kvm`` may exist and still fail guests (nested / paravirtual KVM): a VM is only put on KVM after
    SeaBIOS ran to its end there, with the CPU model a real VM gets (``-cpu host``: on some hosts only
    that one fails, e.g. QEMU aborting on an MSR the host's KVM refuses). The backend still falls back
    to TCG when a VM fails under KVM anyway (``QemuBackend.start``, ``poll``). The result is cached per
    QEMU binary and host kernel, in memory and in the image cache folder. ``requested`` (job file
    ``vm_accel`` or env ``BOINC_VM_ACCEL``): auto, kvm, tcg.
    """
    requested = accel_request(requested)
    if requested in ("kvm", "tcg"):
        return requested
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    key = _accel_key(qemu)
    if key in _accel_cache:
        return _accel_cache[key]
    cached = _load_accel_file().get(key)
    if cached is not None:
        _accel_cache[key] = cached
        return cached
    accel = "kvm" if _probe_kvm(qemu) else "tcg"
    logger.info("accelerator probe: %s", accel)
    remember_accel(qemu, accel)
    return accel


def accel_request(requested: str = "auto") -> str:
    """The accelerator asked for: the environment's BOINC_VM_ACCEL, else the job's vm_accel."""
    requested = (os.environ.get("BOINC_VM_ACCEL") or requested or "auto").strip().lower()
    if requested not in ("auto", "kvm", "tcg"):
        raise BackendError(f"vm_accel must be auto, kvm or tcg, not {requested!r}: fix the job file")
    return requested


def _probe_kvm(qemu: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="boinc-kvm-probe-") as d:
        log = Path(d) / "debugcon.log"
        cmd = [
            qemu,
            "-accel",
            "kvm",
            "-cpu",
            KVM_CPU,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-m",
            "32",
            "-chardev",
            f"file,id=dbg,path={log}",
            "-device",
            "isa-debugcon,iobase=0x402,chardev=dbg",
        ]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=child_preexec(os.getpid()),
            )
        except OSError:
            return False
        ok = False
        deadline = time.monotonic() + KVM_PROBE_TIMEOUT
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(OSError):
                    text = log.read_bytes()
                    if b"No bootable device" in text or b"Booting from" in text:
                        ok = True
                        break
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
        return ok
