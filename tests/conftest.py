"""Shared pytest set-up. The project is installed into .venv by scripts/setup.sh; the path insert
below only lets a checkout's tests run against its own sources when the install is stale."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # tests.support.paths.ROOT, before tests is importable
for p in (ROOT, ROOT / "guest_sdk" / "python"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


import logging  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def share(tmp_path: Path) -> Path:
    """An empty folder to use as a task's shared folder."""
    d = tmp_path / "share"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def vm_files(tmp_path_factory) -> dict[str, Path]:
    """The static C worker (examples/c/worker.c + the C guest SDK) and the test VM image (kernel +
    initramfs built from Debian packages, cached outside the repo after the first build), under the
    logical names a job uses: worker, vm_kernel, vm_initrd."""
    from host_bridge.images.testimage import ensure_test_image

    subprocess.run(["make", "-s", "-C", str(ROOT / "guest_sdk" / "c")], check=True, timeout=300)
    out = tmp_path_factory.mktemp("vmfiles")
    worker = out / "worker"
    subprocess.run(
        [
            "gcc",
            "-static",
            "-O2",
            "-I",
            str(ROOT / "guest_sdk" / "c" / "include"),
            "-o",
            str(worker),
            str(ROOT / "examples" / "c" / "worker.c"),
            str(ROOT / "guest_sdk" / "c" / "build" / "libboinc_guest.a"),
            "-lpthread",
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    img = ensure_test_image()
    return {"worker": worker, "vm_kernel": Path(img.kernel), "vm_initrd": Path(img.initrd)}


@pytest.fixture(scope="session")
def numpy_image(tmp_path_factory) -> Path:
    """The image of the numpy and C++ apps (tests/support/images.py: --debian python3-numpy
    libgmpxx4ldbl + the apps), built once per session; its root disk is cached across sessions."""
    import time

    from tests.support.images import build_numpy_image

    t0 = time.monotonic()
    out, cached = build_numpy_image(tmp_path_factory.mktemp("numpyimg"))
    print(f"numpy image in {time.monotonic() - t0:.1f} s (root disk from the cache: {cached})")
    return out


@pytest.fixture(autouse=True)
def _floats_are_ieee():
    """Debian's libboinc_api.so.7 turns on flush-to-zero for the whole process when it is loaded:
    tests must load it only in child processes, or float tests that follow would see subnormals as 0."""
    tiny = 5e-324
    assert tiny * 1.0 != 0.0, "a test loaded libboinc_api (flush-to-zero) in the pytest process"
    yield


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A test that runs the CLI in-process configures logging on the stderr pytest captured for it, a
    stream closed after the test: later log records would print "--- Logging error ---" tracebacks.
    The root logger's handlers and level are put back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


_LEAK_GRACE = 5.0  # s a test's threads and processes get to end after it
# threads that live as long as the process by design, started by whichever test first needs them
_PROCESS_THREADS = {
    "qemu-qmp-loop",  # one asyncio loop for every QMP call of the process (host_bridge/backends/qemu/qmp.py)
}


@pytest.fixture(autouse=True)
def _nothing_leaks(request: pytest.FixtureRequest):
    """No test leaves a thread or a child process behind (a bridge, a task, QEMU, a watcher's thread):
    what is still there ``_LEAK_GRACE`` s after the test fails it, and is killed so that it cannot
    disturb the next test. Fixtures of a wider scope than the test (a session's image, a module's
    client) are exempt: what they start before the test's first line is not counted."""
    import threading
    import time

    import psutil

    me = psutil.Process()

    def children() -> dict[int, psutil.Process]:
        out = {}
        for p in me.children(recursive=True):
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    out[p.pid] = p
            except psutil.Error:
                pass
        return out

    threads_before = set(threading.enumerate())
    children_before = set(children())
    yield
    if request.node.get_closest_marker("leaks_ok"):
        return
    deadline = time.monotonic() + _LEAK_GRACE
    while True:
        threads = [
            t
            for t in threading.enumerate()
            if t not in threads_before and t.is_alive() and t.name not in _PROCESS_THREADS
        ]
        kids = {pid: p for pid, p in children().items() if pid not in children_before}
        if (not threads and not kids) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    described = []
    for p in kids.values():
        try:
            described.append(f"pid {p.pid} {p.cmdline()[:4]}")
            p.kill()
        except psutil.Error:
            pass
    assert not threads and not kids, (
        f"the test left threads {[t.name for t in threads]} and processes {described} behind"
    )
