"""A container task's standard streams and GPU request, on real podman (root, a private configuration
and storage: tests/support/podman.py), through the bridge as BOINC starts it:

- ``<stdin_filename>``: the app reads the file's bytes, then end of file; the redirect is made inside
  the container (backends/container/command.py), so a kill -9 of the bridge and a restart that
  reattaches leave the app reading on from where it was; a missing file fails the task (195) with a
  message naming the file and the tag; an image without /bin/sh fails as with any missing program,
  and the bridge says why it needs one.
- ``<stdout_filename>`` / ``<stderr_filename>``: the container's output lands in them, once, across a
  bridge restart.
- docker_wrapper's ``use_gpu`` on this GPU-less host: BOINC's temporary exit (the host must be set up,
  the job is fine) with what the administrator must do, and no container left.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from host_bridge.backends.base import BackendError, TaskSpec, VMState
from host_bridge.backends.container.backend import OWNER_LABEL, ContainerBackend
from host_bridge.backends.container.command import gpu_unavailable, image_command, redirect_command
from host_bridge.backends.container.podman import Engine
from host_bridge.backends.container.settings import ContainerSettings
from host_bridge.jobfile import JobFileError, parse_job_file
from host_bridge.jobfile.docker import parse_docker_text
from host_bridge.runtime.plan import PlanContext, plan_job
from host_bridge.share import Share
from tests.support.bridge import Bridge, run_bridge
from tests.support.client_shm import SlotClient
from tests.support.podman import PrivatePodman, counted
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(180)


def _owned(pm: PrivatePodman) -> list[dict]:
    return pm.containers(OWNER_LABEL)


# ----------------------------------------------------------------------------------- pure parts


def test_redirect_command_runs_the_image_command_under_sh_with_the_redirects():
    assert redirect_command("/app", ["/bin/cat", "-n"], stdin="in put.txt") == [
        "-c",
        "exec \"$@\" <'/app/in put.txt'",
        "sh",
        "/bin/cat",
        "-n",
    ]
    assert redirect_command("/", ["x"], stdin="in")[1] == 'exec "$@" </in'
    both = redirect_command("/w/", ["x"], stdout="out.txt", stderr="e r")
    assert both[1] == "exec \"$@\" >>/w/out.txt 2>>'/w/e r'"  # appended, as BOINC's wrapper does


def test_image_command_is_entrypoint_then_argv_or_cmd():
    config = {"Entrypoint": ["/entry", "-v"], "Cmd": ["default"]}
    assert image_command(config, ["app", "1"]) == ["/entry", "-v", "app", "1"]
    assert image_command(config, []) == ["/entry", "-v", "default"]
    assert image_command({"Cmd": ["/bin/sh", "run.sh"]}, []) == ["/bin/sh", "run.sh"]
    assert image_command(None, []) == []


def test_use_gpu_parses_from_job_toml_and_reaches_the_settings(tmp_path):
    assert parse_docker_text("use_gpu = true\n").use_gpu
    assert not parse_docker_text("workdir = '/w'\n").use_gpu
    with pytest.raises(JobFileError, match=r"use_gpu = 'yes': write true or false"):
        parse_docker_text("use_gpu = 'yes'\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "job.toml").write_text("use_gpu = true\n")
    job = parse_job_file(tmp_path / "job.toml")
    s = plan_job(job, PlanContext(slot=tmp_path, docker_job=job.docker_job)).tasks[0].settings  # type: ignore[arg-type]
    assert s.use_gpu and s.gpu_tag == "job.toml: use_gpu = true"
    (tmp_path / "job.toml").write_text("verbose = 1\n")
    job = parse_job_file(tmp_path / "job.toml")
    s = plan_job(job, PlanContext(slot=tmp_path, docker_job=job.docker_job)).tasks[0].settings  # type: ignore[arg-type]
    assert not s.use_gpu and not s.gpu_tag


def _engine_named(tmp_path: Path, name: str) -> Engine:
    """A real Engine whose program is called ``name`` (a link to podman): the CLI form follows it."""
    link = tmp_path / name
    link.symlink_to(shutil.which("podman") or "/usr/bin/podman")
    return Engine(str(link))


@pytest.mark.parametrize(
    ("program", "expected"),
    [("podman", ["--device", "nvidia.com/gpu=all"]), ("docker", ["--gpus", "all"])],
)
def test_create_args_ask_for_the_gpu_in_each_engines_form(tmp_path, program, expected):
    eng = _engine_named(tmp_path, program)
    assert eng.kind == program
    args: dict[bool, list[str]] = {}
    for gpu in (True, False):
        b = ContainerBackend(ContainerSettings(image="localhost/x:1", use_gpu=gpu), engine=eng)
        b.create(TaskSpec(name="task0", argv=("/app/run",), share=tmp_path, owner_tag="hb-gpu-t0"))
        b.image_ref = "localhost/x:1"
        args[gpu] = b._create_args(b._spec())
    with_gpu, without = args[True], args[False]
    i = with_gpu.index(expected[0])
    assert with_gpu[i : i + 2] == expected
    assert with_gpu.index("localhost/x:1") > i  # an engine option, before the image
    assert expected[0] not in without and "nvidia.com/gpu=all" not in without


def test_redirected_files_and_an_entrypoint_of_the_job_are_refused_together(tmp_path):
    """The redirects run the image's command under /bin/sh as the entry point, so a job's own
    --entrypoint would silently lose: refused, naming the tags, for an output file as for stdin."""
    for files in ({"stdout": "out.txt"}, {"stdin": "in.txt"}):
        b = ContainerBackend(ContainerSettings(image="localhost/x:1", create_args=("--entrypoint", "/run")))
        spec = TaskSpec(name="task0", argv=("/app/run",), share=tmp_path, owner_tag="hb-ep-t0", **files)
        with pytest.raises(BackendError, match=r"cannot be combined with --entrypoint") as err:
            b._check_redirects(spec)
        assert f"_filename>{next(iter(files.values()))}<" in str(err.value)
    ContainerBackend(
        ContainerSettings(image="localhost/x:1", create_args=("--entrypoint", "/run"))
    )._check_redirects(
        TaskSpec(name="task0", argv=("/app/run",), share=tmp_path, owner_tag="hb-ep-t0")
    )  # without redirected files the job's entry point stands


def test_gpu_errors_are_recognised_and_others_are_not():
    podman_text = (
        "container engine: starting the container of task task0 failed (podman start, exit 125): Error: "
        "unable to start container: setting up CDI devices: unresolvable CDI devices nvidia.com/gpu=all"
    )
    e = gpu_unavailable(podman_text, engine_kind="podman", tag="job.toml: use_gpu = true", task_name="task0")
    assert e is not None and e.temporary
    assert "job.toml: use_gpu = true" in str(
        e
    ) and "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in str(e)
    docker_text = 'Error response from daemon: could not select device driver "" with capabilities: [[gpu]]'
    e = gpu_unavailable(docker_text, engine_kind="docker", tag="", task_name="task0")
    assert e is not None and e.temporary and "nvidia-ctk runtime configure --runtime=docker" in str(e)
    assert gpu_unavailable("Error: image not known", engine_kind="podman", tag="", task_name="t") is None


# ------------------------------------------------------------------------------------- stdin

READER = """\
n=0
while read -r line; do
  n=$((n+1)); echo "got $line"; echo "$n" > count.tmp; mv count.tmp count; sleep {dt}
done
echo "eof after $n lines"
echo "to stderr" >&2
exit {code}
"""


def _stdin_slot(
    tmp_path: Path, pm: PrivatePodman, *, lines: int, dt: float, code: int, job_extra: str = ""
) -> SlotClient:
    slot = tmp_path / "slot"
    slot.mkdir()
    c = SlotClient(slot)
    pm.rootfs_tar(slot / "app_rootfs.tar")
    (slot / "read.sh").write_text(READER.format(dt=dt, code=code))
    (slot / "in.txt").write_text("".join(f"line {i}\n" for i in range(1, lines + 1)))
    (slot / "job.xml").write_text(
        "<job_desc><task><application>/bin/sh</application><command_line>read.sh</command_line>"
        "<container_image>app_rootfs.tar</container_image><stdin_filename>in.txt</stdin_filename>"
        f"<stdout_filename>out.txt</stdout_filename><stderr_filename>err.txt</stderr_filename>{job_extra}"
        "</task></job_desc>"
    )
    return c


def _expected_out(lines: int) -> str:
    return "".join(f"got line {i}\n" for i in range(1, lines + 1)) + f"eof after {lines} lines\n"


def test_a_large_stdout_file_is_whole_and_unnamed_output_is_bounded(podman, tmp_path):
    """A task whose result is its stdout (<stdout_filename>) gets all of it, as with BOINC's wrapper, not
    the end of the engine's log: 3 MiB of numbered lines, every one once. The engine's log of the
    container (what has no file) is capped, so a chatty app cannot fill the host's container storage."""
    slot = tmp_path / "slot"
    slot.mkdir()
    c = SlotClient(slot)
    podman.rootfs_tar(slot / "app_rootfs.tar")
    n = 150_000  # "line NNNNNN of stdout\n": ~3.3 MB
    (slot / "big.sh").write_text(
        f'i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo "line $i of stdout"; done; echo unnamed >&2\n'
    )
    (slot / "job.xml").write_text(
        "<job_desc><task><application>/bin/sh</application><command_line>big.sh</command_line>"
        "<container_image>app_rootfs.tar</container_image><stdout_filename>out.txt</stdout_filename>"
        "</task></job_desc>"
    )
    c.start_heartbeats()
    try:
        rc, log = run_bridge(slot, timeout=150)
        assert rc == 0, log
        out = (slot / "out.txt").read_text()
        assert out == "".join(f"line {i} of stdout\n" for i in range(1, n + 1)), (len(out), log[-2000:])
        assert "unnamed" in log  # the unnamed stderr reaches stderr.txt
        assert not _owned(podman)
    finally:
        c.close()


def test_stdin_file_then_eof_and_the_output_files(podman, tmp_path):
    c = _stdin_slot(tmp_path, podman, lines=5, dt=0, code=4)
    slot = c.slot_dir
    c.start_heartbeats()
    try:
        t0 = time.monotonic()
        rc, log = run_bridge(slot, timeout=90)
        took = time.monotonic() - t0
        assert rc == 4, log  # the app reached end of file (no wait for more input) and exited
        assert took < 60, took
        assert (slot / "out.txt").read_text() == _expected_out(5), log
        assert (slot / "err.txt").read_text() == "to stderr\n", log
        assert not _owned(podman)
    finally:
        c.close()


def test_stdin_and_output_files_across_a_kill_9_and_a_restart(podman, tmp_path):
    lines = 30
    c = _stdin_slot(tmp_path, podman, lines=lines, dt=0.1, code=0)
    slot = c.slot_dir
    c.start_heartbeats()
    try:
        b = Bridge(slot)
        try:
            wait_for(lambda: counted(slot) >= 5, 60, "the app to read 5 lines")
            b.kill()
        finally:
            b.close()
        at_kill = counted(slot)
        assert at_kill < lines and len(_owned(podman)) == 1, "the container should outlive the bridge"
        rc, log = run_bridge(slot, timeout=90)
        assert "reattached" in log, log
        assert rc == 0, log
        # one reader went on reading the same open file: every line once, then end of file
        assert (slot / "out.txt").read_text() == _expected_out(lines), log
        assert (slot / "err.txt").read_text() == "to stderr\n", log
        assert not _owned(podman)
    finally:
        c.close()


def test_a_missing_stdin_file_fails_the_task_naming_the_file_and_the_tag(podman, tmp_path):
    c = _stdin_slot(tmp_path, podman, lines=1, dt=0, code=0)
    slot = c.slot_dir
    (slot / "in.txt").unlink()
    c.start_heartbeats()
    try:
        rc, log = run_bridge(slot, timeout=90)
        assert rc == 195, log  # EXIT_CHILD_FAILED, as the local backend and BOINC's wrapper fail it
        assert (
            "the stdin file 'in.txt' (the job file's <stdin_filename>) is not in the shared folder" in log
        ), log
        assert not (slot / "boinc_temporary_exit").exists()
        assert not _owned(podman)
    finally:
        c.close()


def test_stdin_from_a_boinc_link_file_in_the_slot_is_refused_with_the_fix(podman, tmp_path):
    c = _stdin_slot(tmp_path, podman, lines=1, dt=0, code=0)
    slot = c.slot_dir
    (tmp_path / "projects").mkdir()
    (tmp_path / "projects" / "in_1").write_text("line 1\n")
    (slot / "in.txt").write_text("<soft_link>../projects/in_1</soft_link>\n")
    c.start_heartbeats()
    try:
        rc, log = run_bridge(slot, timeout=90)
        assert rc == 195, log
        assert "is a BOINC link in the slot" in log and "<copy_file_to_VM>in.txt</copy_file_to_VM>" in log, (
            log
        )
        assert not _owned(podman)
    finally:
        c.close()


def test_stdin_through_copy_file_to_vm_in_a_shared_folder(podman, tmp_path):
    """The workunit's file is a BOINC link in the slot; <copy_file_to_VM> copies its content into the
    task's shared/ folder, where the redirect reads it."""
    c = _stdin_slot(tmp_path, podman, lines=1, dt=0, code=0)
    slot = c.slot_dir
    (tmp_path / "projects").mkdir()
    (tmp_path / "projects" / "in_1").write_text("alpha\nbeta\n")
    (slot / "in.txt").write_text("<soft_link>../projects/in_1</soft_link>\n")
    job = (slot / "job.xml").read_text()
    job = job.replace(
        "<stdin_filename>",
        "<copy_file_to_VM>read.sh</copy_file_to_VM><copy_file_to_VM>in.txt</copy_file_to_VM><stdin_filename>",
    ).replace(
        "<stdout_filename>out.txt</stdout_filename>",
        "<stdout_filename>out.txt</stdout_filename><copy_file_from_VM>out.txt</copy_file_from_VM>",
    )
    (slot / "job.xml").write_text(job)
    c.start_heartbeats()
    try:
        rc, log = run_bridge(slot, timeout=90)
        assert rc == 0, log
        assert (slot / "shared" / "out.txt").read_text() == "got alpha\ngot beta\neof after 2 lines\n", log
        assert not _owned(podman)
    finally:
        c.close()


def test_stdin_needs_a_shell_in_the_image_and_says_so(podman, tmp_path):
    slot = tmp_path / "slot"
    slot.mkdir()
    c = SlotClient(slot)
    rootfs = podman.rootfs_tar(tmp_path / "full.tar")
    # the same busybox, but no /bin/sh in the image: the app is named by its path
    import tarfile

    with tarfile.open(rootfs) as src, tarfile.open(slot / "app_rootfs.tar", "w") as dst:
        for m in src.getmembers():
            if m.name != "bin/sh":
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    (slot / "in.txt").write_text("x\n")
    (slot / "job.xml").write_text(
        "<job_desc><task><application>/bin/cat</application>"
        "<container_image>app_rootfs.tar</container_image><stdin_filename>in.txt</stdin_filename>"
        "</task></job_desc>"
    )
    c.start_heartbeats()
    try:
        rc, log = run_bridge(slot, timeout=90)
        assert rc == 1, log  # the init's status when it cannot exec its child, as for any missing program
        assert "failed to exec pid1" in log, log  # the init's own words (the container's stderr)
        assert "needs /bin/sh in the container image" in log, log
        assert not _owned(podman)
    finally:
        c.close()


# ----------------------------------------------------------------------------------------- GPU

GPU_DOCKERFILE = """\
FROM scratch
ADD rootfs.tar /
CMD ["/bin/sh", "-c", "echo ran > ran.txt"]
"""


def test_use_gpu_on_a_host_without_the_gpu_set_up_is_a_temporary_exit(podman, tmp_path):
    """No CDI spec names nvidia.com/gpu here (no GPU, no nvidia-container-toolkit): the bridge ends
    with BOINC's temporary exit (status 0 and boinc_temporary_exit: the client retries later) and
    says what the administrator must do; the container never ran and none is left."""
    assert not Path("/etc/cdi/nvidia.yaml").exists() and not Path("/var/run/cdi/nvidia.yaml").exists()
    slot = tmp_path / "slot"
    slot.mkdir()
    c = SlotClient(slot)
    (slot / "job.toml").write_text("use_gpu = true\n")
    (slot / "Dockerfile").write_text(GPU_DOCKERFILE)
    podman.rootfs_tar(slot / "rootfs.tar")
    c.start_heartbeats()
    try:
        rc, log = run_bridge(slot, timeout=90)
        assert rc == 0, log  # boinc_temporary_exit ends the process with 0
        # BOINC's API writes the delay, the reason and "notice": the Manager shows the volunteer the fix
        assert (slot / "boinc_temporary_exit").read_text().splitlines()[-1] == "notice", log
        assert "the job asks for the GPU (job.toml: use_gpu = true)" in log, log
        assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in log, log
        assert "unresolvable CDI devices nvidia.com/gpu=all" in log, log  # the engine's own words too
        assert "failure 1 of 3 before the task's app started" in log, log
        state = json.loads((slot / "host_bridge_state.json").read_text())
        assert state["env_failures"] == 1
        assert not (slot / "ran.txt").exists()
        assert not _owned(podman)
    finally:
        c.close()


def test_use_gpu_start_error_in_process_is_temporary_and_leaves_nothing(podman, tmp_path):
    image = podman.import_image(podman.rootfs_tar(tmp_path / "r.tar"), "localhost/hb-gpu-test:1")
    try:
        settings = ContainerSettings(image=image, use_gpu=True, gpu_tag="job.toml: use_gpu = true")
        b = ContainerBackend(settings)
        share = Share(tmp_path)
        try:
            b.create(
                TaskSpec(name="task0", argv=("/bin/true",), share=tmp_path, owner_tag="hb-gpu-t0"), share
            )
            with pytest.raises(BackendError, match=r"cannot give it to the container on this host") as err:
                b.start()
            assert err.value.temporary and err.value.notice
            assert b.container_id is None
            assert not podman.containers(f"{OWNER_LABEL}=hb-gpu-t0")
            b.cleanup()
        finally:
            share.close()
    finally:
        podman.run("rmi", "--force", image, check=False)
    assert os.path.exists(tmp_path)


def test_the_engines_log_of_unnamed_output_is_capped(podman, tmp_path, monkeypatch, capfd):
    """Output without a file of its own stays in podman's log of the container, which is capped
    (``--log-opt max-size``, LOG_MAX; 1 MiB here): an app printing 3 MB to an unnamed stdout leaves at
    most about that much for the bridge's stderr, and the end of it (podman keeps the newest lines)."""
    from host_bridge.backends.container import backend as container_backend

    monkeypatch.setattr(container_backend, "LOG_MAX", "1m")
    image = podman.import_image(podman.rootfs_tar(tmp_path / "r.tar"), "localhost/hb-log-test:1")
    share_dir = tmp_path / "share"
    share_dir.mkdir()
    script = 'i=0; while [ $i -lt 150000 ]; do i=$((i+1)); echo "line $i of stdout"; done'
    try:
        b = ContainerBackend(ContainerSettings(image=image))
        share = Share(share_dir)
        try:
            spec = TaskSpec(
                name="task0", argv=("/bin/sh", "-c", script), share=share_dir, owner_tag="hb-log-t0"
            )
            b.create(spec, share)
            b.start()

            def ended():
                st = b.poll()
                return st if st.state in (VMState.EXITED, VMState.FAILED) else None

            s = wait_for(ended, 120, "the app to end")
            assert s.state is VMState.EXITED and s.exit_code == 0, s
            kept = podman.run("logs", b.container_id or "?").stdout  # the ended container, before rm
            assert "line 150000 of stdout" in kept and len(kept) < 2 << 20, len(kept)
            b.cleanup()
        finally:
            share.close()
    finally:
        podman.run("rmi", "--force", image, check=False)
    out = capfd.readouterr().err
    assert "line 150000 of stdout" in out  # the newest lines are kept
    assert "line 1 of stdout\n" not in out
    assert len(out) < 2 << 20, len(out)  # ~3.3 MB printed
    assert not podman.containers(f"{OWNER_LABEL}=hb-log-t0")
