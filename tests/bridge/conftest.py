"""Fixtures the bridge tests share."""

from __future__ import annotations

import shutil

import pytest

from host_bridge.backends.container.orphans import OWNER_LABEL
from tests.support.podman import private_podman


@pytest.fixture(scope="module")
def podman():
    """Real podman with a private storage and configuration (tests/support/podman.py), for one test
    module; no container of the bridge's may be left when the module ends."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run scripts/setup.sh (it installs podman and runc)")
    with private_podman() as pm, pm.activate():
        yield pm
        left = pm.containers(OWNER_LABEL)
        assert not left, f"containers left behind: {left}"
