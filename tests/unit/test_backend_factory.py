"""``backends.make_backend``: the one place that names backend classes, chosen by the settings' type,
and a local task that never loads the QEMU or VirtualBox modules."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from host_bridge.backends import LocalSettings, make_backend
from host_bridge.backends.base import Backend, ConsoleEndpoints
from host_bridge.backends.local import LocalBackend
from host_bridge.backends.qemu import QemuBackend
from host_bridge.backends.qemu.settings import QemuSettings
from host_bridge.backends.virtualbox import VBoxSettings, VirtualBoxBackend
from host_bridge.backends.virtualbox.vboxmanage import VBoxManageDriver
from tests.support.paths import ROOT


def test_each_settings_type_picks_its_backend(tmp_path: Path) -> None:
    local = make_backend(LocalSettings())
    assert type(local) is LocalBackend and isinstance(local, Backend)
    assert local.settings == LocalSettings()

    qs = QemuSettings(accel="tcg", boot_timeout=5.0)
    qemu = make_backend(qs)
    assert type(qemu) is QemuBackend and isinstance(qemu, Backend)
    assert qemu.settings is qs

    vs = VBoxSettings(slot_dir=tmp_path, result_name="r_0")
    # the context goes to the backend's constructor (here: a driver, so no VirtualBox is looked for)
    vbox = make_backend(vs, driver=VBoxManageDriver(executable="/nonexistent/VBoxManage"))
    assert type(vbox) is VirtualBoxBackend and isinstance(vbox, Backend)
    assert vbox.settings is vs and vbox.slot_dir == tmp_path.resolve() and vbox.result_name == "r_0"


def test_unknown_settings_are_a_bug() -> None:
    with pytest.raises(TypeError, match="no backend takes settings of type dict"):
        make_backend({"vm_kernel": "x"})  # type: ignore[arg-type]


def test_every_backend_says_where_its_console_is(tmp_path: Path) -> None:
    assert make_backend(LocalSettings()).console() == ConsoleEndpoints(direct=True)
    assert make_backend(QemuSettings()).console() == ConsoleEndpoints()
    vbox = make_backend(VBoxSettings(slot_dir=tmp_path), driver=VBoxManageDriver(executable="/nonexistent"))
    assert vbox.console() == ConsoleEndpoints()
    vbox.port_forward_host_port, vbox.remote_desktop_port = 8080, 3390  # type: ignore[attr-defined]
    assert vbox.console() == ConsoleEndpoints(host_port=8080, remote_desktop_port=3390, direct=False)


LOCAL_ONLY = textwrap.dedent(
    """
    import json, sys
    from host_bridge import runtime  # what the bridge loads for every task
    from host_bridge.backends import LocalSettings, make_backend
    from host_bridge.backends.qemu.settings import share_is_virtfs_mapped
    b = make_backend(LocalSettings())
    print(json.dumps({
        "backend": type(b).__name__,
        "mapped": share_is_virtfs_mapped(None),
        "loaded": sorted(m for m in sys.modules if m.startswith("host_bridge.backends")),
    }))
    """
)


def test_a_local_task_loads_no_vm_backend() -> None:
    """Importing the backends and making a LocalBackend (and asking the QEMU settings module whether a
    share is 9p-mapped, as the runtime does) loads neither the QEMU backend nor anything of VirtualBox:
    the bridge's start-up time and memory for a local task do not pay for them."""
    out = subprocess.run(
        [sys.executable, "-c", LOCAL_ONLY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got = json.loads(out.stdout)
    assert got["backend"] == "LocalBackend" and got["mapped"] is True
    loaded = set(got["loaded"])
    assert "host_bridge.backends.local" in loaded
    assert not {m for m in loaded if m.startswith("host_bridge.backends.virtualbox")}, loaded
    assert not {m for m in loaded if m.startswith("host_bridge.backends.qemu.")} - {
        "host_bridge.backends.qemu.settings"
    }, loaded
