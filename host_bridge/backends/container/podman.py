"""A thin driver over podman's command line (docker's as a fallback): one place that runs the engine
with a time limit, parses its ``--format json`` output, and turns its failures into ``BackendError``
with a message a volunteer or an admin can act on.

No service is kept alive (podman's REST service costs 35-50 MB): each verb is one CLI call (~40-50 ms).
Every ``create`` / ``run`` passes ``--pull never``: an image is never fetched from a registry here
unless the job asks for it (``ContainerSettings.allow_pull``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from host_bridge.backends.base import BackendError

log = logging.getLogger(__name__)

__all__ = ["Engine", "EngineResult", "find_engine"]

DEFAULT_TIMEOUT = 60.0  # s for one CLI call (build / load / checkpoint get their own)
_OUTPUT_LIMIT = 2000  # characters of the engine's error output quoted in a message

# Known host problems: (text in the engine's error output, what to tell the volunteer / admin).
_HINTS: tuple[tuple[str, str], ...] = (
    (
        "setrlimit",
        "the engine's default ulimits are above this host's limits: set default_ulimits (e.g. "
        '["nofile=20000:20000", "nproc=32768:32768"]) in containers.conf (/etc/containers/containers.conf '
        "or the file CONTAINERS_CONF names)",
    ),
    (
        "cgroups in hybrid mode",
        'crun cannot use this host\'s cgroup layout: set runtime = "runc" in the [engine] section of '
        "containers.conf (and install runc)",
    ),
    (
        "image not known",
        "the image is not on this host; the app version must ship it (an image archive or a Dockerfile) "
        "or the job must allow pulling it",
    ),
    ("no such image", "the image is not on this host; the app version must ship it"),
    (
        "cannot find newuidmap",
        "rootless podman needs the uidmap package (newuidmap); install it or run the client as root",
    ),
    (
        "permission denied",
        "the engine refused for lack of permission: rootless containers need user namespaces and "
        "/dev/fuse; see docs/containers.md",
    ),
    (
        "unresolvable cdi devices",
        "the job asks for a device (e.g. the GPU, nvidia.com/gpu) that no CDI spec on this host names: "
        "install nvidia-container-toolkit and run nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml",
    ),
    (
        "no space left on device",
        "the disk holding the container storage is full; free space (podman system prune) and retry",
    ),
)


def find_engine(preferred: str = "") -> str:
    """The engine's program: ``preferred`` ("podman" / "docker" / a path) or podman, else docker.
    Raises BackendError when none is installed."""
    names = [preferred] if preferred else ["podman", "docker"]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BackendError(
        f"no container engine found ({' or '.join(names)} not on PATH): this task runs in a container; "
        "install podman (Debian / Ubuntu: apt-get install podman runc) and restart the BOINC client",
        temporary=True,
        notice=True,
    )


class EngineResult:
    """A finished engine call: its exit status and output."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def json(self) -> Any:
        text = self.stdout.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return None


def explain(stderr: str) -> str:
    """The engine's error output, shortened, with a hint when the problem is a known one."""
    text = " ".join(stderr.split())[-_OUTPUT_LIMIT:]
    low = text.lower()
    for needle, hint in _HINTS:
        if needle in low:
            return f"{text} -- {hint}"
    return text or "(no error output)"


class Engine:
    """podman (or docker) run through its CLI. ``env``: the environment of its calls (default: the
    bridge's, so CONTAINERS_CONF / CONTAINERS_STORAGE_CONF of the host or a test apply)."""

    def __init__(self, program: str = "", *, env: dict[str, str] | None = None) -> None:
        self.program = find_engine(program)
        self.kind = "docker" if os.path.basename(self.program).startswith("docker") else "podman"
        self.env = env
        self.calls = 0

    def run(
        self,
        args: Sequence[str],
        *,
        what: str,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        temporary: bool = True,
    ) -> EngineResult:
        """Run ``program args``; ``what`` says what it was for in messages. With ``check``, a failure
        raises BackendError (``temporary``: BOINC retries the task later)."""
        cmd = [self.program, *args]
        t0 = time.monotonic()
        self.calls += 1
        try:
            p = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                env=self.env,
            )
        except subprocess.TimeoutExpired:
            raise BackendError(
                f"container engine: {what} did not finish within {timeout:.0f} s ({' '.join(cmd[:4])} ...); "
                "the host may be overloaded or the engine stuck (try: podman ps)",
                temporary=True,
            ) from None
        except OSError as e:
            raise BackendError(
                f"container engine: cannot run {self.program} for {what}: {e.strerror or e}", temporary=True
            ) from None
        log.debug(
            "%s %s -> %d (%.0f ms)",
            self.kind,
            " ".join(args[:3]),
            p.returncode,
            1e3 * (time.monotonic() - t0),
        )
        if check and p.returncode != 0:
            raise BackendError(
                f"container engine: {what} failed ({self.kind} {args[0] if args else ''}, exit "
                f"{p.returncode}): {explain(p.stderr)}",
                temporary=temporary,
            )
        return EngineResult(p.returncode, p.stdout, p.stderr)

    # -- queries ---------------------------------------------------------------------------------
    def inspect(self, ident: str) -> dict[str, Any] | None:
        """The container's inspect record, or None when there is no such container."""
        r = self.run(["container", "inspect", "--format", "json", ident], what="inspect", check=False)
        data = r.json()
        if r.returncode != 0 or not isinstance(data, list) or not data:
            if r.returncode != 0 and "no such" not in r.stderr.lower():
                log.warning("container engine: inspect %s: %s", ident[:12], explain(r.stderr))
            return None
        rec = data[0]
        return rec if isinstance(rec, dict) else None

    def containers_with_label(self, label: str) -> list[dict[str, Any]]:
        """Every container (running or not) that carries ``label`` ("key=value")."""
        r = self.run(
            ["ps", "--all", "--no-trunc", "--filter", f"label={label}", "--format", "json"],
            what="listing containers",
        )
        data = r.json()
        return [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []

    def image_exists(self, image: str) -> bool:
        r = self.run(["image", "inspect", "--format", "json", image], what="image inspect", check=False)
        return r.returncode == 0

    def image_config(self, image: str) -> dict[str, Any] | None:
        """The image's ``Config`` (Entrypoint, Cmd, Env, ...), None when there is no such image."""
        r = self.run(["image", "inspect", "--format", "json", image], what="image inspect", check=False)
        data = r.json()
        if r.returncode != 0 or not isinstance(data, list) or not data or not isinstance(data[0], dict):
            return None
        config = data[0].get("Config")
        return config if isinstance(config, dict) else {}

    def cpu_seconds(self, ident: str) -> float | None:
        """CPU seconds of a running container from ``stats`` (None when it has no figures)."""
        r = self.run(["stats", "--no-stream", "--format", "json", ident], what="stats", check=False)
        data = r.json()
        if r.returncode != 0 or not isinstance(data, list) or not data:
            return None
        text = str(data[0].get("cpu_time", ""))
        return _duration(text)

    # -- images ----------------------------------------------------------------------------------
    def load(self, archive: Path, tag: str) -> None:
        """``podman load`` an image archive (docker-archive / oci-archive) and tag it ``tag``."""
        r = self.run(
            ["load", "--quiet", "--input", str(archive)], what=f"loading the image {archive}", timeout=600
        )
        loaded = _loaded_name(r.stdout)
        if loaded is None:
            raise BackendError(
                f"container engine: {archive} loaded, but the engine named no image ({r.stdout.strip()!r}); "
                "the archive must be made by podman save / docker save"
            )
        self.run(["tag", loaded, tag], what=f"tagging the image of {archive}")

    def import_rootfs(self, archive: Path, tag: str) -> None:
        """``podman import`` a root file system tarball as the image ``tag``."""
        self.run(
            ["import", "--quiet", str(archive), tag],
            what=f"importing the root file system {archive}",
            timeout=600,
        )

    def build(
        self, context: Path, tag: str, *, dockerfile: Path | None = None, args: Sequence[str] = ()
    ) -> None:
        cmd = ["build", "--quiet", "--pull=never" if self.kind == "podman" else "--pull=false", "-t", tag]
        if dockerfile is not None:
            cmd += ["-f", str(dockerfile)]
        cmd += [*args, str(context)]
        self.run(cmd, what=f"building the image from {dockerfile or context / 'Dockerfile'}", timeout=1800)

    def remove_image_if_unused(self, image: str) -> None:
        """Remove ``image`` unless a container (another task's) uses it: no ``--force``."""
        self.run(["rmi", image], what=f"removing the image {image}", check=False)

    def remove_image(self, image: str) -> None:
        self.run(["rmi", "--force", image], what=f"removing the image {image}", check=False)

    # -- containers ------------------------------------------------------------------------------
    def remove(self, ident: str) -> None:
        r = self.run(["rm", "--force", "--time", "0", ident], what="removing the container", check=False)
        if r.returncode != 0 and "no such" not in r.stderr.lower():
            raise BackendError(f"container engine: cannot remove container {ident[:12]}: {explain(r.stderr)}")


def _loaded_name(out: str) -> str | None:
    """The image named by ``load``'s output ("Loaded image: NAME" / "Loaded image(s): A,B")."""
    for line in out.splitlines():
        if ":" in line and line.lower().startswith("loaded image"):
            name = line.split(":", 1)[1].strip().split(",")[0].strip()
            if name:
                return name
    return None


def _duration(text: str) -> float | None:
    """Go's duration text ("1.08s", "1m2.5s", "350ms", "12µs") in seconds."""
    import re

    text = text.strip()
    if not text:
        return None
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total = 0.0
    found = False
    for num, unit in re.findall(r"([0-9.]+)(h|ms|m|s|us|µs|ns)", text):
        total += float(num) * units[unit]
        found = True
    return total if found else None
