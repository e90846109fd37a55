"""``host-bridge check`` and the run use one planner: for every job file under tests/data, in a slot with
and without the app version's vm_kernel file (and with a vbox_job.xml beside it), the backend ``check``
prints for each task is the backend the run starts it in (the run's backends are named fakes that record
the plan they were made for; tests/fakes/fake_runtime.py)."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import pytest

from host_bridge import cli
from host_bridge.jobfile import JobFileError, parse_job_file
from host_bridge.jobfile.vbox import parse_vbox_job
from tests.fakes.fake_runtime import BackendScript, FakeBackend, World
from tests.support.paths import DATA

VBOX_JOB = DATA / "jobs-real" / "lhcathome_Theory_vbox_job.xml"


def _job_files() -> list[Path]:
    out = []
    for p in sorted([*DATA.rglob("*.xml"), *DATA.rglob("*.toml")]):
        try:
            parse_job_file(p)
        except JobFileError:
            continue  # a vbox_job.xml, or a file that is invalid on purpose
        out.append(p)
    return out


JOBS = _job_files()


def test_the_agreement_covers_the_job_files() -> None:
    names = {p.name for p in JOBS}
    assert len(JOBS) >= 7, names
    assert {"icrar_magphys_client_job.xml", "boinc_samples_vm_wrapper_job.xml", "qemu_task.xml"} <= names
    assert "lhcathome_Theory_docker_job.toml" in names  # docker_wrapper's job.toml: a container task


def _checked_kinds(job: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    with pytest.raises(SystemExit) as e:
        cli.main(["check", str(job)])
    out = capsys.readouterr().out
    assert e.value.code == 0, out
    # the run starts the daemons first, then the unzip tasks and the tasks, in order
    daemons = re.findall(r"^  daemon \d+ \(line \d+\): backend (\w+)", out, re.M)
    return daemons + re.findall(r"^  (?:unzip task|task) \d+ \(line \d+\): backend (\w+)", out, re.M)


class _RecordingFactory:
    """Makes a fake backend per task and records the plan's kind; the fake's program ends at once, and
    the task's declared outputs are made in its share, so that every task of the job runs."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.kinds: list[str] = []

    def __call__(self, plan, ctx) -> FakeBackend:
        self.kinds.append(plan.kind)
        for f in plan.outputs:
            plan.share_dir.mkdir(parents=True, exist_ok=True)
            (plan.share_dir / f.name).write_text("out")
        return FakeBackend(self.world.clock, BackendScript(exits_at=0.0))


@pytest.mark.parametrize("with_vbox_job", [False, True], ids=["job.xml", "job.xml+vbox_job.xml"])
@pytest.mark.parametrize("with_kernel", [False, True], ids=["no vm_kernel", "vm_kernel"])
@pytest.mark.parametrize("job", JOBS, ids=[p.name for p in JOBS])
def test_check_and_run_choose_the_same_backends(
    job: Path, with_kernel: bool, with_vbox_job: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slot = tmp_path / "slot"
    slot.mkdir()
    name = "job.toml" if job.suffix == ".toml" else "job.xml"  # the run reads job.toml without a job.xml
    shutil.copy(job, slot / name)
    if with_kernel:
        (slot / "vm_kernel").write_bytes(b"\x7fELF")
    if with_vbox_job:
        shutil.copy(VBOX_JOB, slot / "vbox_job.xml")
        for copied in parse_vbox_job(VBOX_JOB).copy_to_shared:  # the files it copies into the share
            (slot / copied).write_text("<app_init_data/>")
    parsed = parse_job_file(slot / name)
    for t in parsed.run_order:  # every file a task names exists, as in a real slot
        for f in (t.application, *t.copy_files_to_vm, t.stdin_filename):
            if f and "/" not in f.removeprefix("./") and "$" not in f:
                (slot / f.removeprefix("./")).write_text("x")
    for z in parsed.unzip_input:
        with zipfile.ZipFile(slot / z, "w") as zf:
            zf.writestr("unzipped", "x")
    checked = _checked_kinds(slot / name, capsys)
    assert len(checked) == len(parsed.daemons) + len(parsed.run_order)

    world = World(slot, (slot / name).read_text(), job_name=name)
    factory = _RecordingFactory(world)
    world.backend_factory = factory  # type: ignore[method-assign]
    out = world.run()
    assert (out.kind, out.status) == ("finish", 0), out.message
    assert factory.kinds == checked
    if job.name == "virtualmachine_named.xml":  # the admin's case (issue #17): a named VM and a kernel
        assert checked == (["qemu"] if with_kernel else ["local"])
