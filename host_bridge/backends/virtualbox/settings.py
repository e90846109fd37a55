"""The VirtualBox backend's typed settings: vboxwrapper's vbox_job.xml names, and the task's slot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class VBoxSettings:
    """The VirtualBox settings of one task (vboxwrapper's vbox_job.xml names)."""

    os_name: str = "Linux26_64"
    memory_size_mb: int = 0  # 0: TaskSpec.memory_mb, else 512
    cpus: int = 0  # 0: TaskSpec.nthreads
    vm_disk_controller_type: str = "sata"
    vm_disk_controller_model: str = "IntelAHCI"
    multiattach_vdi_file: str = ""  # in the project directory (or absolute); else TaskSpec.image
    enable_network: bool = False
    enable_shared_directory: bool = True  # the share (TaskSpec.share) as shared folder "shared"
    share_project_dir: bool = False  # project dir as shared folder "project"
    enable_scratch_directory: bool = False  # project dir/scratch as shared folder "scratch"
    pf_host_port: int = 0  # 0 with a guest port: pick a free host port
    pf_guest_port: int = 0
    enable_remotedesktop: bool = False
    enable_vm_savestate_usage: bool = False  # checkpoint = save state (else a snapshot)
    disable_automatic_checkpoints: bool = False  # with no savestate usage: no VM-level checkpoint
    headless: bool = True
    # The task's slot and what the client's init_data.xml says of it (the VM's owner marks; relative
    # image names are found in the project directory). None: the working directory / unknown.
    slot_dir: Path | None = None
    project_dir: Path | None = None
    result_name: str | None = None

    @classmethod
    def from_vboxjob(
        cls,
        job: Any,
        *,
        slot_dir: Path | None = None,
        project_dir: Path | None = None,
        result_name: str | None = None,
    ) -> VBoxSettings:
        """Build from a parsed vbox_job.xml (any object with vboxwrapper's attribute names; its
        ``<copy_to_shared>`` is the runtime's, not the backend's) and the task's slot."""
        d = cls()

        def get(name: str, default: Any) -> Any:
            v = getattr(job, name, None)
            return default if v is None else v

        return cls(
            os_name=str(get("os_name", d.os_name)) or d.os_name,
            memory_size_mb=int(get("memory_size_mb", 0) or 0),
            cpus=int(get("vm_cpu_count", 0) or 0),
            vm_disk_controller_type=str(get("vm_disk_controller_type", "") or d.vm_disk_controller_type),
            vm_disk_controller_model=str(get("vm_disk_controller_model", "") or d.vm_disk_controller_model),
            multiattach_vdi_file=str(get("multiattach_vdi_file", "") or ""),
            enable_network=bool(get("enable_network", False)),
            enable_shared_directory=True,  # the bridge protocol needs the share, whatever the job says
            share_project_dir=bool(get("share_project_dir", False)),
            enable_scratch_directory=bool(get("enable_scratch_directory", False)),
            pf_host_port=int(get("pf_host_port", 0) or 0),
            pf_guest_port=int(get("pf_guest_port", 0) or 0),
            enable_remotedesktop=bool(get("enable_remotedesktop", False)),
            enable_vm_savestate_usage=bool(get("enable_vm_savestate_usage", False)),
            disable_automatic_checkpoints=bool(get("disable_automatic_checkpoints", False)),
            headless=bool(get("headless", True)),
            slot_dir=slot_dir,
            project_dir=project_dir,
            result_name=result_name,
        )
