"""What the planner hands a backend for a task (``plan.spec`` and ``plan.settings``): the job file's VM
settings and files, typed, and the backend ``make_backend`` picks for them."""

from __future__ import annotations

from pathlib import Path

from host_bridge.backends import LocalSettings
from host_bridge.backends.qemu.settings import QemuSettings
from host_bridge.backends.virtualbox.settings import VBoxSettings
from host_bridge.jobfile import parse_job_text
from host_bridge.runtime.plan import PlanContext, TaskPlan, plan_job


def _plan(slot: Path, job: str, **ctx: object) -> TaskPlan:
    (task,) = plan_job(parse_job_text(job), PlanContext(slot=slot, **ctx)).tasks  # type: ignore[arg-type]
    return task


def test_vm_settings_and_image_files_reach_the_backend(tmp_path: Path) -> None:
    """The QEMU tags of the job file become the backend's typed settings; an absolute image path (an
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
        <vm_release_after>90</vm_release_after>
        </task></job_desc>""",
    )
    assert plan.kind == "qemu"
    st = plan.settings
    assert isinstance(st, QemuSettings)
    assert st.kernel == kernel
    assert st.initrd is not None and st.initrd.resolve() == (proj / "initrd_v2.gz").resolve()
    assert st.disk_image is None
    assert st.cmdline == "quiet loglevel=3"
    assert st.accel == "tcg"
    assert st.boot_timeout == 300.0
    assert st.poweroff_grace == 1.5
    assert st.share_security == "mapped-file"
    assert st.release_after == 90.0
    assert st.state_dir == slot.resolve() / "vm_state" and not st.builtin_python
    assert plan.virtfs_mapped  # mapped-file: the share holds 9p metadata


def test_unset_vm_settings_are_left_to_the_backend(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "vmlinux").write_bytes(b"\x7fELF")
    plan = _plan(
        slot,
        "<job_desc><task><application>/bin/a</application><vm_kernel>vmlinux</vm_kernel></task></job_desc>",
    )
    st = plan.settings
    assert isinstance(st, QemuSettings)
    assert st.kernel == slot / "vmlinux"
    defaults = QemuSettings()
    fields = ("accel", "boot_timeout", "poweroff_grace", "share_security", "cmdline", "initrd")
    fields += ("release_after",)  # None: the task loop takes the policy's suspend_release_after
    for field in fields:
        assert getattr(st, field) == getattr(defaults, field), field
    assert plan.virtfs_mapped  # the default model, mapped-xattr


def test_vm_release_after_zero_reaches_the_settings_and_the_task_loop(tmp_path: Path) -> None:
    """<vm_release_after>0</vm_release_after> (never release) is a value, not "unset": the settings carry
    0 and the task loop's context gets 0 (core.decide then never releases), not the policy's default;
    unset, the task loop gets the policy's suspend_release_after."""
    from types import SimpleNamespace

    from host_bridge import core
    from host_bridge.policy import Policy
    from host_bridge.runtime.job import Runtime

    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "vmlinux").write_bytes(b"\x7fELF")
    job = "<job_desc><task><application>/bin/a</application><vm_kernel>vmlinux</vm_kernel>{}</task>"
    job += "</job_desc>"

    def release_after(tag: str, policy: Policy) -> float:
        plan = _plan(slot, job.format(tag))
        rt = SimpleNamespace(cfg=SimpleNamespace(policy=policy), vbox_job=None)
        session = SimpleNamespace(init_data=SimpleNamespace(checkpoint_period=60.0))
        backend = SimpleNamespace(vm_checkpoint=lambda: True)
        ctx = Runtime._vm_save_context(rt, core.TaskContext(), backend, plan, session)  # type: ignore[arg-type]
        return ctx.release_after

    policy = Policy(suspend_release_after=600.0)
    assert _plan(slot, job.format("<vm_release_after>0</vm_release_after>")).settings.release_after == 0.0
    assert release_after("<vm_release_after>0</vm_release_after>", policy) == 0.0
    assert release_after("<vm_release_after>45.5</vm_release_after>", policy) == 45.5
    assert release_after("", policy) == 600.0


def test_vm_python_and_the_seed_s_virtualmachine_task(tmp_path: Path) -> None:
    """<vm_python/>: the guest Python root and a .py program started by the guest's python3; a
    <virtualmachine> task without an image of its own boots the app version's vm_kernel + vm_initrd."""
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "vm_kernel").write_bytes(b"\x7fELF")
    (slot / "vm_initrd").write_bytes(b"x")
    plan = _plan(
        slot,
        "<job_desc><task><application>work.py</application><virtualmachine>builtin</virtualmachine>"
        "<vm_python/></task></job_desc>",
    )
    assert plan.kind == "qemu"
    st = plan.settings
    assert isinstance(st, QemuSettings) and st.builtin_python
    assert st.kernel == slot / "vm_kernel" and st.initrd == slot / "vm_initrd"
    assert plan.spec.argv[0] == "python3"


def test_local_and_vbox_tasks_get_their_settings(tmp_path: Path) -> None:
    """A plain task gets LocalSettings; a VirtualBox task gets VBoxSettings carrying the slot and what
    init_data.xml says (project folder, result name): the backend does not read the file itself."""
    slot = tmp_path / "slot"
    slot.mkdir()
    plan = _plan(slot, "<job_desc><task><application>/bin/true</application></task></job_desc>")
    assert plan.kind == "local" and plan.settings == LocalSettings() and not plan.virtfs_mapped
    plan = _plan(
        slot,
        "<job_desc><task><application>worker</application><virtualmachine>VirtualBox</virtualmachine>"
        "</task></job_desc>",
        project_dir=str(tmp_path / "proj"),
        result_name="r_1_0",
    )
    assert plan.kind == "vbox"
    st = plan.settings
    assert isinstance(st, VBoxSettings)
    assert (st.slot_dir, st.project_dir, st.result_name) == (slot, tmp_path / "proj", "r_1_0")
