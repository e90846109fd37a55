"""What the planner hands a backend for a task (``plan.spec``): the job file's VM settings and files."""

from __future__ import annotations

from pathlib import Path

from host_bridge.jobfile import parse_job_text
from host_bridge.runtime.plan import PlanContext, TaskPlan, plan_job


def _plan(slot: Path, job: str) -> TaskPlan:
    (task,) = plan_job(parse_job_text(job), PlanContext(slot=slot)).tasks
    return task


def test_vm_settings_and_image_files_reach_the_backend(tmp_path: Path) -> None:
    """The QEMU tags of the job file become the backend's extra settings; an absolute image path (an
    image installed on the host) is used as it is, a relative one is a logical name of the slot,
    resolved through BOINC's soft link."""
    kernel = tmp_path / "host-vmlinux"
    kernel.write_bytes(b"\x7fELF")
    proj = tmp_path / "project"
    proj.mkdir()
    (proj / "initrd_v2.gz").write_bytes(b"x")
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "vm_initrd").write_text("<soft_link>../project/initrd_v2.gz</soft_link>\n")
    plan = _plan(
        slot,
        f"""<job_desc><task>
        <application>/bin/agent_app</application>
        <vm_kernel>{kernel}</vm_kernel>
        <vm_initrd>vm_initrd</vm_initrd>
        <vm_cmdline>quiet loglevel=3</vm_cmdline>
        <vm_accel>TCG</vm_accel>
        <vm_boot_timeout>300</vm_boot_timeout>
        <vm_poweroff_grace>1.5</vm_poweroff_grace>
        <vm_share_security>mapped-file</vm_share_security>
        </task></job_desc>""",
    )
    assert plan.kind == "qemu"
    extra = dict(plan.spec.extra)
    assert extra["vm_kernel"] == str(kernel)
    assert Path(extra["vm_initrd"]).resolve() == (proj / "initrd_v2.gz").resolve()
    assert extra["vm_cmdline"] == "quiet loglevel=3"
    assert extra["vm_accel"] == "tcg"
    assert float(extra["vm_boot_timeout"]) == 300.0
    assert float(extra["vm_poweroff_grace"]) == 1.5
    assert extra["vm_share_security"] == "mapped-file"


def test_unset_vm_settings_are_left_to_the_backend(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "vmlinux").write_bytes(b"\x7fELF")
    plan = _plan(
        slot,
        "<job_desc><task><application>/bin/a</application><vm_kernel>vmlinux</vm_kernel></task></job_desc>",
    )
    extra = dict(plan.spec.extra)
    assert extra["vm_kernel"] == str(slot / "vmlinux")
    for tag in ("vm_accel", "vm_boot_timeout", "vm_poweroff_grace", "vm_share_security", "vm_cmdline"):
        assert tag not in extra
