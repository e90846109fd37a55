"""Parser for vboxwrapper's ``vbox_job.xml`` (BOINC samples/vboxwrapper/vboxjob.cpp).

Tags, kinds and defaults follow ``VBOX_JOB::clear()`` / ``VBOX_JOB::parse()``; the combinations
that vboxwrapper.cpp refuses at start-up are refused here too, with a message naming the file,
line and tag. Unknown or misspelt tags are warnings naming the closest known tag (vboxwrapper
itself only logs "unexpected text"). Values that are not numbers, stray text between tags (an
unrendered template such as ``{extra}``) and malformed XML are errors. Same safe XML reader and
``JobFileError`` as host_bridge.jobfile.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .description import warning_lines
from .safexml import (
    JobFileError,
    XmlNode,
    attrs_warning,
    check_no_stray_text,
    decode_xml_bytes,
    node_text,
    parse_flag,
    parse_number,
    parse_xml,
    read_bounded,
    unknown_tag_warning,
)

logger = logging.getLogger(__name__)

MIN_MEMORY_SIZE_MB = 512  # vboxwrapper.h: smaller sizes are raised to this
VRAM_MIN_MB = 16.0  # vboxjob.h VBOX_VRAM_MIN / VBOX_VRAM_MAX: vram_size_mb is clamped to these
VRAM_MAX_MB = 128.0


@dataclass(frozen=True)
class PortForward:
    """One ``<port_forward>`` of vbox_job.xml: a host port forwarded to a guest port."""

    host_port: int
    guest_port: int
    is_remote: bool = False


@dataclass(frozen=True)
class VboxJob:
    """A parsed vbox_job.xml (vboxwrapper's job file): the VM's settings and the files the guest writes."""

    path: str
    os_name: str | None = None
    memory_size_mb: float = 0.0  # 0 = not given (vboxwrapper then uses its minimum, 512)
    vram_size_mb: float = VRAM_MIN_MB
    vm_disk_controller_type: str = "sata"
    vm_disk_controller_model: str = "IntelAHCI"
    multiattach_vdi_file: str | None = None
    job_duration: float = 0.0  # seconds of elapsed time; 0 = no limit
    minimum_checkpoint_interval: float = 600.0
    minimum_heartbeat_interval: float = 600.0
    fraction_done_filename: str | None = None
    heartbeat_filename: str | None = None
    completion_trigger_file: str | None = None
    temporary_exit_trigger_file: str | None = None
    trickle_trigger_files: tuple[str, ...] = ()
    intermediate_upload_files: tuple[str, ...] = ()
    copy_to_shared: tuple[str, ...] = ()
    copy_cmdline_to_shared: bool = False
    enable_shared_directory: bool = False
    enable_scratch_directory: bool = False
    share_slot_dir: bool = False
    share_project_dir: bool = False
    enable_network: bool = False
    network_bridged_mode: bool = False
    enable_nat_dns_host_resolver: bool = False
    vm_network_driver: str | None = None
    enable_remotedesktop: bool = False
    enable_graphics_support: bool = False
    enable_screenshots_on_error: bool = False
    enable_vm_savestate_usage: bool = False
    disable_automatic_checkpoints: bool = False
    enable_cern_dataformat: bool = False
    enable_floppyio: bool = False
    enable_cache_disk: bool = False
    enable_isocontextualization: bool = False
    boot_iso: bool = False
    enable_gbac: bool = False  # older vboxwrappers
    pf_host_port: int = 0
    pf_guest_port: int = 0
    port_forwards: tuple[PortForward, ...] = ()  # <port_forward> blocks, nports expanded
    warnings: tuple[str, ...] = ()

    @property
    def effective_memory_mb(self) -> float:
        """The RAM vboxwrapper gives the VM (sizes below 512 MB are raised to 512)."""
        return max(self.memory_size_mb, float(MIN_MEMORY_SIZE_MB))


# tag -> kind; the field has the tag's name except where _FIELD says otherwise
_TAGS: dict[str, str] = {
    "os_name": "str",
    "memory_size_mb": "float",
    "vram_size_mb": "float",
    "vm_disk_controller_type": "str",
    "vm_disk_controller_model": "str",
    "multiattach_vdi_file": "file",
    "job_duration": "float",
    "minimum_checkpoint_interval": "float",
    "minimum_heartbeat_interval": "float",
    "fraction_done_filename": "file",
    "heartbeat_filename": "file",
    "completion_trigger_file": "file",
    "temporary_exit_trigger_file": "file",
    "trickle_trigger_file": "filelist",
    "intermediate_upload_file": "filelist",
    "copy_to_shared": "filelist",
    "copy_cmdline_to_shared": "flag",
    "enable_shared_directory": "flag",
    "enable_scratch_directory": "flag",
    "share_slot_dir": "flag",
    "share_project_dir": "flag",
    "enable_network": "flag",
    "network_bridged_mode": "flag",
    "enable_nat_dns_host_resolver": "flag",
    "vm_network_driver": "str",
    "enable_remotedesktop": "flag",
    "enable_graphics_support": "flag",
    "enable_screenshots_on_error": "flag",
    "enable_vm_savestate_usage": "flag",
    "disable_automatic_checkpoints": "flag",
    "enable_cern_dataformat": "flag",
    "enable_floppyio": "flag",
    "enable_cache_disk": "flag",
    "enable_isocontextualization": "flag",
    "boot_iso": "flag",
    "enable_gbac": "flag",
    "pf_host_port": "port",
    "pf_guest_port": "port",
    "port_forward": "port_forward",
}
_FIELD = {
    "trickle_trigger_file": "trickle_trigger_files",
    "intermediate_upload_file": "intermediate_upload_files",
}
_DISK_CONTROLLER_TYPES = ("ide", "sata", "sas", "scsi", "usb", "pcie", "floppy", "virtio")


def _check_file_name(value: str, path: str, node: XmlNode) -> str:
    if value.startswith("/") or ".." in value.split("/") or "\0" in value:
        raise JobFileError(
            path,
            node.line,
            node.tag,
            f'"{value}" must be a file name in the slot (or shared) directory, '
            'not an absolute path or one with ".."',
        )
    return value


def _parse_port_forward(node: XmlNode, path: str, warnings: list[str]) -> list[PortForward]:
    check_no_stray_text(node, path)
    host = guest = nports = 0
    remote = False
    for c in node.children:
        text = node_text(c, path)
        if c.tag == "is_remote":
            remote = bool(parse_flag(text, path, c))
        elif c.tag in ("host_port", "guest_port", "nports"):
            if text is None:
                continue
            v = int(parse_number(text, path, c, integer=True, minimum=0, maximum=65535))
            if c.tag == "host_port":
                host = v
            elif c.tag == "guest_port":
                guest = v
            else:
                nports = v
        else:
            warnings.append(
                unknown_tag_warning(path, c, node.tag, ["host_port", "guest_port", "nports", "is_remote"])
            )
    if not host:
        raise JobFileError(path, node.line, node.tag, "has no <host_port>; give the host port to forward")
    if not guest:
        raise JobFileError(
            path, node.line, node.tag, "has no <guest_port>; give the guest port to forward to"
        )
    count = max(nports, 1)
    if host + count - 1 > 65535 or guest + count - 1 > 65535:
        raise JobFileError(path, node.line, node.tag, f"<nports>{nports}</nports> runs past port 65535")
    return [PortForward(host + i, guest + i, remote) for i in range(count)]


def parse_vbox_job_text(text: str, path_for_messages: str = "vbox_job.xml") -> VboxJob:
    """Parse the text of a vbox_job.xml. Raises JobFileError."""
    path = path_for_messages
    warnings: list[str] = []
    root = parse_xml(text, path, warnings)
    if root.tag != "vbox_job":
        hint = (
            " (this is a wrapper job.xml; use host_bridge.jobfile.parse_job_file)"
            if root.tag == "job_desc"
            else ""
        )
        raise JobFileError(
            path, root.line, root.tag, f"a vbox_job.xml's root element must be <vbox_job>{hint}"
        )
    if (w := attrs_warning(path, root)) is not None:
        warnings.append(w)
    values: dict[str, object] = {}
    lists: dict[str, list[str]] = {
        "copy_to_shared": [],
        "trickle_trigger_files": [],
        "intermediate_upload_files": [],
    }
    forwards: list[PortForward] = []
    seen: dict[str, int] = {}
    lines: dict[str, int] = {}
    for child in root.children:
        check_no_stray_text(root, path, before_line=child.line)
        kind = _TAGS.get(child.tag)
        if kind is None:
            warnings.append(unknown_tag_warning(path, child, root.tag, _TAGS))
            continue
        if (w := attrs_warning(path, child)) is not None:
            warnings.append(w)
        fname = _FIELD.get(child.tag, child.tag)
        if kind == "port_forward":
            forwards.extend(_parse_port_forward(child, path, warnings))
            continue
        text = node_text(child, path)
        if kind == "filelist":
            if text is not None:
                lists[fname].append(_check_file_name(text, path, child))
                lines.setdefault(fname, child.line)
            continue
        if fname in seen:
            warnings.append(
                str(
                    JobFileError(
                        path,
                        child.line,
                        child.tag,
                        f"given twice (first on line {seen[fname]}); the last one is used",
                    )
                )
            )
        seen[fname] = child.line
        lines[fname] = child.line
        if kind == "flag":
            values[fname] = bool(parse_flag(text, path, child))
            continue
        if text is None:
            values.pop(fname, None)
            continue
        if kind == "str":
            values[fname] = text
        elif kind == "file":
            values[fname] = _check_file_name(text, path, child)
        elif kind == "float":
            values[fname] = float(parse_number(text, path, child, minimum=0.0))
        elif kind == "port":
            values[fname] = int(parse_number(text, path, child, integer=True, minimum=0, maximum=65535))
        else:  # pragma: no cover - table error
            raise AssertionError(kind)

    check_no_stray_text(root, path)
    job = VboxJob(
        path=path,
        copy_to_shared=tuple(lists["copy_to_shared"]),
        trickle_trigger_files=tuple(lists["trickle_trigger_files"]),
        intermediate_upload_files=tuple(lists["intermediate_upload_files"]),
        port_forwards=tuple(forwards),
        **values,  # type: ignore[arg-type]
    )

    def err(fname: str, message: str) -> JobFileError:
        tag = fname if fname in _TAGS else next((t for t, f in _FIELD.items() if f == fname), fname)
        return JobFileError(path, lines.get(fname, root.line), tag, message)

    # the combinations vboxwrapper.cpp refuses (it ends with EXIT_INIT_FAILURE)
    if job.share_slot_dir and job.enable_shared_directory:
        raise err("share_slot_dir", "can't be used together with <enable_shared_directory>; keep one of them")
    if job.share_slot_dir and job.copy_to_shared:
        raise err(
            "copy_to_shared",
            "can't be used with <share_slot_dir> (the whole slot is shared already); remove it",
        )
    if job.copy_to_shared and not job.enable_shared_directory:
        raise err("copy_to_shared", "requires <enable_shared_directory/>; add it")
    if job.share_project_dir and job.enable_scratch_directory:
        raise err(
            "share_project_dir", "can't be used together with <enable_scratch_directory>; keep one of them"
        )

    # what vboxwrapper silently adjusts: say so
    if "memory_size_mb" in values and job.memory_size_mb < MIN_MEMORY_SIZE_MB:
        warnings.append(
            str(
                err(
                    "memory_size_mb",
                    f"{job.memory_size_mb:g} MB is below vboxwrapper's minimum; "
                    f"the VM gets {MIN_MEMORY_SIZE_MB} MB",
                )
            )
        )
    if "vram_size_mb" in values and not VRAM_MIN_MB <= job.vram_size_mb <= VRAM_MAX_MB:
        clamped = min(max(job.vram_size_mb, VRAM_MIN_MB), VRAM_MAX_MB)
        warnings.append(
            str(
                err(
                    "vram_size_mb",
                    f"{job.vram_size_mb:g} is outside {VRAM_MIN_MB:g}..{VRAM_MAX_MB:g}; {clamped:g} is used",
                )
            )
        )
        values["vram_size_mb"] = clamped
    if job.vm_disk_controller_type.lower() not in _DISK_CONTROLLER_TYPES:
        warnings.append(
            str(
                err(
                    "vm_disk_controller_type",
                    f'"{job.vm_disk_controller_type}" is not a VirtualBox storage bus '
                    f"({', '.join(_DISK_CONTROLLER_TYPES)})",
                )
            )
        )
    if job.pf_host_port and not job.pf_guest_port:
        warnings.append(str(err("pf_host_port", "has no effect without <pf_guest_port>")))
    if job.heartbeat_filename is None and "minimum_heartbeat_interval" in values:
        warnings.append(str(err("minimum_heartbeat_interval", "has no effect without <heartbeat_filename>")))
    if (job.completion_trigger_file or job.heartbeat_filename or job.temporary_exit_trigger_file) and not (
        job.enable_shared_directory or job.share_slot_dir
    ):
        warnings.append(
            str(
                JobFileError(
                    path,
                    root.line,
                    root.tag,
                    "trigger/heartbeat files are looked for in the shared directory, but no "
                    "<enable_shared_directory/> or <share_slot_dir/> is given",
                )
            )
        )
    for w in warnings:
        logger.debug("%s", w)
    return VboxJob(
        path=path,
        copy_to_shared=job.copy_to_shared,
        trickle_trigger_files=job.trickle_trigger_files,
        intermediate_upload_files=job.intermediate_upload_files,
        port_forwards=job.port_forwards,
        warnings=tuple(warnings),
        **values,  # type: ignore[arg-type]
    )


def parse_vbox_job(path: Path | str | os.PathLike[str]) -> VboxJob:
    """Read (bounded, regular files only) and parse a vbox_job.xml. Raises JobFileError."""
    name = str(path)
    data = read_bounded(Path(path), what="vbox_job.xml")
    return parse_vbox_job_text(decode_xml_bytes(data, name), name)


def _seconds(value: float) -> str:
    """``64800 s = 18 h``: seconds, with hours or minutes when that reads better."""
    if value >= 3600:
        return f"{value:g} s = {value / 3600:.3g} h"
    if value >= 60:
        return f"{value:g} s = {value / 60:.3g} min"
    return f"{value:g} s"


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names)


# flags that describe_vbox_job() explains on their own lines; any other set flag is listed by tag
_DESCRIBED_FLAGS = (
    "copy_cmdline_to_shared",
    "enable_shared_directory",
    "enable_scratch_directory",
    "share_slot_dir",
    "share_project_dir",
    "enable_network",
    "network_bridged_mode",
    "enable_remotedesktop",
    "enable_vm_savestate_usage",
    "disable_automatic_checkpoints",
)


def describe_vbox_job(job: VboxJob) -> str:
    """The human-readable summary printed by ``host-bridge check vbox_job.xml``: the VM's settings,
    the shared folder, the files the guest writes, and the warnings."""
    out = [f"vbox_job.xml {job.path} (vboxwrapper's VM settings and guest files)"]
    memory = f"{job.effective_memory_mb:g} MB"
    if job.memory_size_mb == 0:
        memory += " (not given: vboxwrapper's minimum)"
    elif job.memory_size_mb < MIN_MEMORY_SIZE_MB:
        memory += f" ({job.memory_size_mb:g} MB asked, raised to vboxwrapper's minimum)"
    out.append(
        f"VM: os {job.os_name or '(not given)'}, memory {memory}, video memory {job.vram_size_mb:g} MB"
    )
    out.append("  CPUs: as many as BOINC gives the task (--nthreads); vbox_job.xml has no CPU count")
    disk = f"{job.multiattach_vdi_file} (multi-attach)" if job.multiattach_vdi_file else "(not given)"
    out.append(f"  disk: {disk}, controller {job.vm_disk_controller_type} / {job.vm_disk_controller_model}")
    network = "off"
    if job.enable_network:
        network = "on, bridged" if job.network_bridged_mode else "on (NAT)"
    if job.vm_network_driver:
        network += f", driver {job.vm_network_driver}"
    out.append(f"  network: {network}")
    if job.pf_host_port or job.pf_guest_port:
        host = job.pf_host_port or "(chosen at start)"
        out.append(f"  web console: host port {host} -> guest port {job.pf_guest_port or '(none)'}")
    for f in job.port_forwards:
        remote = ", reachable from other machines" if f.is_remote else ""
        out.append(f"  port forward: host {f.host_port} -> guest {f.guest_port}{remote}")
    if job.enable_remotedesktop:
        out.append("  remote desktop: on")
    checkpoints = f"no more often than every {_seconds(job.minimum_checkpoint_interval)}"
    if job.disable_automatic_checkpoints:
        checkpoints = "automatic checkpoints (VM snapshots) off"
    if job.enable_vm_savestate_usage:
        checkpoints += "; the VM's state is saved when the task is stopped"
    out.append(f"checkpoints: {checkpoints}")
    if job.job_duration > 0:
        out.append(
            f"job duration: {_seconds(job.job_duration)} of running time, then the job ends (status 0)"
        )
    if job.share_slot_dir:
        share = "the slot directory itself (<share_slot_dir/>)"
    elif job.enable_shared_directory:
        share = "the slot's shared/ folder (<enable_shared_directory/>)"
    else:
        share = "none"
    out.append(f"shared folder: {share}")
    if job.copy_to_shared:
        out.append(f"  copied into it at the start: {_names(job.copy_to_shared)}")
    if job.copy_cmdline_to_shared:
        out.append("  the command-line arguments are written into it (cmdline)")
    if job.enable_scratch_directory:
        out.append("  scratch directory: on")
    if job.share_project_dir:
        out.append("  the project directory is shared too")
    files = [
        ("progress (fraction done)", job.fraction_done_filename),
        ("completion trigger", job.completion_trigger_file),
        ("temporary-exit trigger", job.temporary_exit_trigger_file),
    ]
    if job.heartbeat_filename:
        every = _seconds(job.minimum_heartbeat_interval)
        files.append(("heartbeat", f"{job.heartbeat_filename}, touched at least every {every}"))
    guest = [f"  {what}: {name}" for what, name in files if name]
    if job.trickle_trigger_files:
        guest.append(f"  trickle triggers: {_names(job.trickle_trigger_files)}")
    if job.intermediate_upload_files:
        guest.append(f"  intermediate uploads: {_names(job.intermediate_upload_files)}")
    out.append("files the guest writes in the shared folder:" if guest else "files the guest writes: none")
    out.extend(guest)
    others = [
        tag
        for tag, kind in _TAGS.items()
        if kind == "flag" and tag not in _DESCRIBED_FLAGS and getattr(job, _FIELD.get(tag, tag))
    ]
    if others:
        out.append(f"other settings: {', '.join(f'<{t}/>' for t in others)}")
    out.extend(warning_lines(job.warnings))
    return "\n".join(out) + "\n"
