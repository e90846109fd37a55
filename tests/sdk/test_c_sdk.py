"""The C guest SDK as apps use it: the Makefile's products, install + pkg-config, the headers in
strict C / C++ modes, and real C, C++ and Fortran programs (linked statically and dynamically) run
in a temporary share, whose status file is decoded with the protocol module. Also: an app written
for BOINC's own API compiles unchanged, quit / abort / critical sections in child processes,
standalone mode, hostile control files, and the examples/c worker with checkpoint and resume. BOINC's
example app (samples/example_app/uc2.cpp: config.h, str_util.h, mfile.h, graphics2.h, g_sleep, ...) is
mirrored by uc_app.cpp, built as C++11 and C++17, static and dynamic, and killed and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import C_PROGRAMS
from tests.support.wait import wait_for

sys.path.insert(0, str(C_PROGRAMS))
import csdk
from boinc_guest import protocol as P

PROGRAMS = csdk.PROGRAMS
EXAMPLES = csdk.ROOT / "examples" / "c"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The library, plus every test program compiled once (-Wall -Wextra -Werror)."""
    csdk.build()
    out = tmp_path_factory.mktemp("cbin")
    progs = {
        "probe_dyn": csdk.compile_program([PROGRAMS / "probe.c"], out / "probe_dyn"),
        "probe_static": csdk.compile_program([PROGRAMS / "probe.c"], out / "probe_static", static=True),
        "cxx_dyn": csdk.compile_program([PROGRAMS / "cxx_app.cpp"], out / "cxx_dyn", cxx=True),
        "cxx_static": csdk.compile_program(
            [PROGRAMS / "cxx_app.cpp"], out / "cxx_static", cxx=True, static=True
        ),
    }
    for link in ("dyn", "static"):
        progs[f"fortran_{link}"] = csdk.compile_program(
            [PROGRAMS / "fortran_app.f90"], out / f"fortran_{link}", fortran=True, static=link == "static"
        )
        progs[f"boinc_style_{link}"] = csdk.compile_program(
            [PROGRAMS / "boinc_style_app.cpp"], out / f"boinc_style_{link}", cxx=True, static=link == "static"
        )
    for std in ("c++11", "c++17"):
        for link in ("dyn", "static"):
            name = f"uc_{std.replace('+', 'x')}_{link}"
            progs[name] = csdk.compile_program(
                [PROGRAMS / "uc_app.cpp"],
                out / name,
                cxx=True,
                static=link == "static",
                extra=[f"-std={std}"],
            )
    return progs


UC_BUILDS = ["uc_cxx11_dyn", "uc_cxx11_static", "uc_cxx17_dyn", "uc_cxx17_static"]
UC_INPUT = "Hello, World! mixed Case 0123 xy\n" * 10  # 330 bytes


def status_of(share: Path) -> P.Status:
    return P.decode_status((share / P.STATUS_FILE).read_bytes())


def write_control(share: Path, **kw: Any) -> None:
    init = kw.pop("init_data", P.InitData())
    c = P.Control(init_data=init, **kw)
    P.write_atomic(share, P.CONTROL_FILE, P.encode_control(c))


class Child:
    """A program started in the share, always killed and reaped at the end."""

    def __init__(self, cmd: list[str], share: Path, **env: str) -> None:
        e = dict(os.environ, BOINC_GUEST_DIR=str(share), **env)
        self.p = subprocess.Popen(cmd, cwd=share, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate(timeout=10)

    def wait(self, timeout: float = 10.0) -> tuple[int, str, str]:
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, out.decode(), err.decode()


# --------------------------------------------------------------------------------------------------
# build products


def test_library_depends_on_libc_only(built: dict[str, Path]) -> None:
    assert csdk.LIB_A.is_file() and csdk.LIB_SO.is_file() and (csdk.BUILD / "boinc-guest.pc").is_file()
    dyn = subprocess.run(["readelf", "-d", str(csdk.LIB_SO)], capture_output=True, text=True, timeout=30)
    needed = [line.split("[")[1].rstrip("]") for line in dyn.stdout.splitlines() if "(NEEDED)" in line]
    assert needed == ["libc.so.6"], needed
    syms = subprocess.run(["nm", "-D", str(csdk.LIB_SO)], capture_output=True, text=True, timeout=30).stdout
    for name in ("boinc_init", "boinc_fraction_done", "boinc_temporary_exit", "boinc_finish_message",
                 "boinc_upload_file", "boinc_init_", "boincrf_", "boinc_fopen", "boinc_status",
                 "boinc_truncate", "boinc_crash", "g_sleep", "boinc_disable_timer_thread",
                 "boinc_graphics_make_shmem", "strip_whitespace", "parse_command_line"):  # fmt: skip
        assert f" {name}\n" in syms, name
    # strlcpy / strlcat only where libc lacks them (glibc < 2.38)
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    if glibc.startswith("glibc ") and tuple(int(x) for x in glibc.split()[1].split(".")[:2]) < (2, 38):
        assert " strlcpy\n" in syms and " strlcat\n" in syms


def test_make_install_and_pkg_config_static_link(built: dict[str, Path], tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    r = subprocess.run(
        ["make", "-s", "-C", str(csdk.SDK), "install", f"PREFIX={prefix}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    for rel in ("include/boinc/boinc_api.h", "include/boinc/app_ipc.h", "include/boinc/error_numbers.h",
                "include/boinc/filesys.h", "include/boinc/mfile.h", "include/boinc/str_util.h",
                "include/boinc/graphics2.h", "include/boinc/config.h", "include/boinc/util.h",
                "include/boinc_guest.h", "lib/libboinc_guest.a", "lib/libboinc_guest.so",
                "lib/pkgconfig/boinc-guest.pc"):  # fmt: skip
        assert (prefix / rel).exists(), rel
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "--static", "boinc-guest"],
        capture_output=True, text=True, timeout=30, env=env, check=True,
    ).stdout.split()  # fmt: skip
    assert f"-I{prefix}/include/boinc" in flags and "-lboinc_guest" in flags
    exe = tmp_path / "worker"
    cmd = ["gcc", *csdk.STRICT, "-static", str(EXAMPLES / "worker.c"), "-o", str(exe), *flags]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    share = tmp_path / "share"
    share.mkdir()
    (share / "in").write_text("abc\n")
    res = csdk.run([str(exe), "0.05"], share, stdin=b"xyz")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"XYZ" and (share / "out").read_text() == "ABC\n"
    assert status_of(share).events[-1] == P.Finish(id=1, status=0, message="", is_notice=False)
    # the BOINC-sample-style C++ app with the installed headers alone (its "config.h" included)
    exe = tmp_path / "uc"
    cmd = ["g++", *csdk.STRICT, "-static", str(PROGRAMS / "uc_app.cpp"), "-o", str(exe), *flags]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (share / "in").write_text("abc\n")
    res = csdk.run([str(exe)], share)
    assert res.returncode == 0, res.stderr
    assert (share / "out").read_text() == "ABC\n"


def test_documented_checkout_link_line_runs(built: dict[str, Path], tmp_path: Path) -> None:
    """The link line docs/guest_sdk_c.md gives for this checkout builds a dynamic binary that starts
    from any folder (the rpath names the library's folder), with no LD_LIBRARY_PATH."""
    flags = (
        "-Iguest_sdk/c/include -Lguest_sdk/c/build -Wl,-rpath,$PWD/guest_sdk/c/build -lboinc_guest -lpthread"
    )
    doc = (csdk.ROOT / "docs" / "guest_sdk_c.md").read_text()
    assert f"`{flags}`" in doc
    exe = tmp_path / "probe"
    r = subprocess.run(
        f"cc tests/c_programs/probe.c {flags} -o {exe}", shell=True, cwd=csdk.ROOT,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("BOINC_GUEST_DIR", "LD_LIBRARY_PATH")}
    r2 = subprocess.run([str(exe), "standalone"], cwd=tmp_path, env=env, capture_output=True, timeout=30)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.startswith(b"standalone=1")


@pytest.mark.parametrize(
    "compiler,std",
    [("gcc", "-std=c99"), ("gcc", "-std=c11"), ("g++", "-std=c++11"), ("g++", "-std=c++17")],
)
def test_headers_compile_strict(built: dict[str, Path], tmp_path: Path, compiler: str, std: str) -> None:
    src = tmp_path / ("t.cpp" if compiler == "g++" else "t.c")
    cxx = compiler == "g++"
    src.write_text(
        '#include "config.h"\n'
        "#include <boinc/boinc_api.h>\n#include <boinc/app_ipc.h>\n#include <boinc/error_numbers.h>\n"
        '#include "filesys.h"\n#include "util.h"\n#include "diagnostics.h"\n#include "boinc_guest.h"\n'
        '#include "str_util.h"\n#include "mfile.h"\n#include "graphics2.h"\n'
        "#include <boinc/str_util.h>\n#include <boinc/mfile.h>\n#include <boinc/graphics2.h>\n"
        "int main(void) { BOINC_OPTIONS o; BOINC_STATUS s; APP_INIT_DATA a; char b[8];\n"
        "  boinc_get_status(&s); boinc_get_init_data_p(&a); (void)o; g_sleep = 0;\n"
        '  safe_strcpy(b, "x"); safe_strcat(b, "y"); strip_whitespace(b); downcase_string(b);\n'
        '  if (boinc_graphics_make_shmem("uc", 8) || boinc_truncate(b, 0) != ERR_TRUNCATE) boinc_crash();\n'
        + (
            '  MFILE m; m.open(b, "ab"); m._putchar(\'c\'); m.printf("%d", 1); m.flush(); m.close();\n'
            "  std::string t(b); strip_whitespace(t); (void)starts_with(t, t);\n"
            if cxx
            else ""
        )
        + "  return ERR_BUFFER_OVERFLOW == -118 && EXIT_ABORTED_BY_CLIENT == 194 ? 0 : 1; }\n"
    )
    cmd = [compiler, std, "-pedantic", *csdk.STRICT, f"-I{csdk.INCLUDE}", "-fsyntax-only", str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------------------------------
# C programs


@pytest.mark.parametrize("link", ["probe_dyn", "probe_static"])
def test_c_program_uses_str_util_graphics_and_file_helpers(
    built: dict[str, Path], tmp_path: Path, link: str
) -> None:
    res = csdk.run([str(built[link]), "helpers"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().splitlines() == [
        "strip=[hello world] strip8=[é x] strlcpy=8,[abcde] strlcat=7,[abcde] safe=[abcd]",
        "argc=5 [prog] [-a] [two words] [x y] [last] [NULL]",
        "down=mixed overlap=abc starts=1,0 ends=1,0",
        "shmem=(nil),(nil) gstatus=0",
        "truncate=0,-218,-218 size=4 truncate() failed thread_cpu=0,1 g_sleep=0,0",
    ]


@pytest.mark.parametrize("link", ["probe_dyn", "probe_static"])
def test_c_program_progress_checkpoint_trickle_finish(
    built: dict[str, Path], tmp_path: Path, link: str
) -> None:
    res = csdk.run([str(built[link]), "finish", "3", "three é"], tmp_path)
    assert res.returncode == 3, res.stderr
    st = status_of(tmp_path)
    assert st.fraction_done == 0.75
    assert st.checkpoint_count == 1 and st.checkpoint_cpu_time >= 0
    assert st.fpops_cumulative == 1e9 and st.intops_cumulative == 2e9
    assert st.events == (
        P.TrickleUp(id=1, variety="progress", text="half way"),
        P.Finish(id=2, status=3, message="three é", is_notice=True),
    )


def test_c_program_plain_finish_and_atexit_flush(built: dict[str, Path], tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    res = csdk.run([str(built["probe_dyn"]), "plain_finish", "0"], a)
    assert res.returncode == 0
    st = status_of(a)
    assert st.fraction_done == 1.0 and st.events == (P.Finish(id=1, status=0, message="", is_notice=False),)
    # returning from main: the atexit hook writes the dirty progress
    res = csdk.run([str(built["probe_dyn"]), "return"], b)
    assert res.returncode == 0
    st = status_of(b)
    assert st.fraction_done == 0.75 and st.events == ()


def test_progress_is_written_about_once_a_second(built: dict[str, Path], tmp_path: Path) -> None:
    """An app reporting progress all the time: the init write, the first change at once, then one
    write a second (with the heartbeat), and the atexit flush -- not one per 0.1 s tick."""
    res = csdk.run([str(built["probe_dyn"]), "hot", "2.5"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) > 100_000
    st = status_of(tmp_path)
    assert st.fraction_done == 0.875
    assert st.hb >= 2, "the heartbeat advanced"
    assert 4 <= st.seq <= 7, st.seq  # per 0.1 s it would be ~26


@pytest.mark.parametrize("request_", ["quit", "abort"])
def test_quit_and_abort_end_the_process(built: dict[str, Path], tmp_path: Path, request_: str) -> None:
    with Child([str(built["probe_dyn"]), "loop"], tmp_path) as ch:
        wait_for(lambda: (tmp_path / "ready").exists(), what="ready")
        # the background thread writes progress and a heartbeat without any checkpoint
        wait_for(
            lambda: (
                (tmp_path / P.STATUS_FILE).exists()
                and status_of(tmp_path).hb >= 1
                and status_of(tmp_path).fraction_done > 0
            ),
            what="heartbeat and progress",
        )
        seq_before = status_of(tmp_path).seq
        write_control(tmp_path, seq=1, **{request_: True})
        rc, out, _err = ch.wait(timeout=5)
    assert rc == (0 if request_ == "quit" else 194)
    assert out == ""  # the SDK ended it (the probe does not poll boinc_get_status here)
    st = status_of(tmp_path)
    assert st.seq > seq_before and st.events == ()


def test_quit_waits_for_the_critical_section(built: dict[str, Path], tmp_path: Path) -> None:
    with Child([str(built["probe_static"]), "loop_crit"], tmp_path) as ch:
        wait_for(lambda: (tmp_path / "in_crit").exists(), what="critical section")
        wait_for(lambda: (tmp_path / P.STATUS_FILE).exists() and status_of(tmp_path).critical_section)
        write_control(tmp_path, seq=1, quit=True)
        rc, _out, _err = ch.wait(timeout=10)
    assert rc == 0
    assert (tmp_path / "crit_done").exists()  # it left the critical section before the exit
    assert not status_of(tmp_path).critical_section


def test_direct_process_action_0_leaves_it_to_the_app(built: dict[str, Path], tmp_path: Path) -> None:
    with Child([str(built["probe_dyn"]), "loop_dpa0"], tmp_path) as ch:
        wait_for(lambda: (tmp_path / "ready").exists(), what="ready")
        write_control(tmp_path, seq=1, quit=True)
        rc, out, _err = ch.wait(timeout=10)
    assert rc == 7 and out == "request quit=1 abort=0\n"
    assert status_of(tmp_path).events[-1].status == 7  # type: ignore[union-attr]


def test_standalone_mode(built: dict[str, Path], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BOINC_GUEST_DIR"}
    r = subprocess.run(
        [str(built["probe_dyn"]), "standalone"], cwd=tmp_path, env=env, capture_output=True, timeout=30
    )
    assert r.returncode == 0 and r.stdout == b"standalone=1 resolved=in ttc=0\n"
    assert list(tmp_path.iterdir()) == []  # nothing written
    # a BOINC_GUEST_DIR that does not exist: a warning naming it, then standalone
    res = csdk.run([str(built["probe_dyn"]), "standalone"], tmp_path / "missing", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith(b"standalone=1")
    assert b"BOINC_GUEST_DIR" in res.stderr and b"missing" in res.stderr


def test_init_data_and_times_from_control(built: dict[str, Path], tmp_path: Path) -> None:
    init = P.InitData(
        app_name="uc", wu_name="wu_1", result_name="wu_1_0", project_preferences="<p/>", user_name="ann",
        team_name="t", master_url="http://x/", userid=7, hostid=9, checkpoint_period=60.0, nthreads=4,
        wu_cpu_time=100.0, starting_elapsed_time=200.0, rsc_fpops_est=1e12,
    )  # fmt: skip
    write_control(tmp_path, init_data=init)
    res = csdk.run([str(built["probe_static"]), "init_data"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode() == (
        "app=uc wu=wu_1 result=wu_1_0 user=ann team=t url=http://x/ prefs=<p/> userid=7 hostid=9 "
        "ncpus=4 ckpt=60 wu_cpu_ge=1 elapsed_ge=1 fpops_est=1e+12\n"
    )


def test_trickle_down_received_and_acked(built: dict[str, Path], tmp_path: Path) -> None:
    with Child([str(built["probe_dyn"]), "trickle_down"], tmp_path) as ch:
        wait_for(lambda: (tmp_path / P.STATUS_FILE).exists(), what="status file")
        write_control(tmp_path, seq=1, trickle_down=(P.TrickleDown(id=4, text="hello"),))
        rc, out, _err = ch.wait(timeout=10)
    assert rc == 0 and out == "got=hello\n"
    assert status_of(tmp_path).td_ack == 4


@pytest.mark.parametrize("bad", ["ext", "symlink", "huge"])
def test_hostile_control_file_is_refused(built: dict[str, Path], tmp_path: Path, bad: str) -> None:
    ctl = tmp_path / P.CONTROL_FILE
    if bad == "ext":
        ctl.write_bytes(bytes.fromhex("81a176d40001"))
    elif bad == "symlink":
        target = tmp_path / "elsewhere"
        target.write_bytes(P.encode_control(P.Control(quit=True)))
        ctl.symlink_to(target)
    else:
        ctl.write_bytes(b"\x00" * (P.MAX_FILE + 10))
    res = csdk.run([str(built["probe_dyn"]), "finish", "0", "ok"], tmp_path)
    assert res.returncode == 0  # not ended by a quit it should not have read
    assert P.CONTROL_FILE.encode() in res.stderr  # the warning names the file
    assert status_of(tmp_path).events[-1] == P.Finish(id=2, status=0, message="ok", is_notice=True)


# --------------------------------------------------------------------------------------------------
# C++ and Fortran


@pytest.mark.parametrize("link", ["cxx_dyn", "cxx_static"])
def test_cxx_program(built: dict[str, Path], tmp_path: Path, link: str) -> None:
    write_control(tmp_path, init_data=P.InitData(app_name="cxx", nthreads=2))
    res = csdk.run([str(built[link])], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode() == "app=cxx ncpus=2 resolved=in cpu_ok=1 elapsed_ok=1\nupload=0 status=-161\n"
    st = status_of(tmp_path)
    assert st.checkpoint_count == 1 and st.fraction_done == 0.5
    assert st.events == (
        P.UploadRequest(id=1, name="result.dat"),
        P.Finish(id=2, status=0, message="c++ done", is_notice=False),
    )
    other = tmp_path / "t"
    other.mkdir()
    res = csdk.run([str(built[link]), "temporary_exit"], other)
    assert res.returncode == 0
    assert status_of(other).events[-1] == P.TemporaryExit(
        id=2, delay=60.0, reason="waiting for the VM", is_notice=False
    )


@pytest.mark.parametrize("link", ["cxx_dyn", "cxx_static"])
def test_mfile_buffers_until_flush(built: dict[str, Path], tmp_path: Path, link: str) -> None:
    res = csdk.run([str(built[link]), "mfile"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().splitlines() == [
        "open=0 putchar=a puts=2 printf=4 write=2 size=0,9 tell=0,9 flush=0 big=5001 got=1 empty=1 close=0,0",
        "file=abc42-xyztail none=-116 missing=-108 str=[mixed case] 11",
    ]


@pytest.mark.parametrize("link", ["fortran_dyn", "fortran_static"])
def test_fortran_program(built: dict[str, Path], tmp_path: Path, link: str) -> None:
    """boinc_init, then unit I/O (open / write / close / read): linked -static this died of SIGSEGV at
    the first close (libgfortran's weak pthread_mutex_destroy left NULL; see static_link.c)."""
    res = csdk.run([str(built[link])], tmp_path)
    assert res.returncode == 5, (res.returncode, res.stderr)
    assert res.stdout.decode().split() == ["standalone=0", "resolved=in", "due=0", "readback=24"]
    assert (tmp_path / "fortran_out.txt").read_text() == "written after boinc_init\n"
    st = status_of(tmp_path)
    assert st.fraction_done == 0.5 and st.checkpoint_count == 1 and not st.critical_section
    assert st.events == (P.Finish(id=1, status=5, message="", is_notice=False),)


# --------------------------------------------------------------------------------------------------
# BOINC-style app and the example worker


@pytest.mark.parametrize("link", ["boinc_style_dyn", "boinc_style_static"])
def test_boinc_style_app_compiles_unchanged_and_resumes(
    built: dict[str, Path], tmp_path: Path, link: str
) -> None:
    (tmp_path / "in").write_text("line\n" * 200)
    write_control(tmp_path, init_data=P.InitData(checkpoint_period=0.0))  # a checkpoint is always due
    res = csdk.run([str(built[link])], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out").read_text().startswith("200 lines (resumed at 0)")
    st = status_of(tmp_path)
    assert st.checkpoint_count == 200 and st.fraction_done == 1.0
    assert (tmp_path / "app_state").read_text() == "200"
    # a restart resumes from the checkpoint file
    (tmp_path / "app_state").write_text("150")
    res = csdk.run([str(built[link])], tmp_path)
    assert res.returncode == 0
    assert (tmp_path / "out").read_text().startswith("200 lines (resumed at 150)")
    assert status_of(tmp_path).checkpoint_count == 50


@pytest.mark.parametrize("name", UC_BUILDS)
def test_uc_app_standalone(built: dict[str, Path], tmp_path: Path, name: str) -> None:
    """BOINC's example app, compiled unchanged: run by hand (no share), it upper-cases "in" into "out"
    through MFILE; no graphics shared memory in a VM (the app says so, as BOINC's sample does)."""
    (tmp_path / "in").write_text(UC_INPUT)
    env = {k: v for k, v in os.environ.items() if k != "BOINC_GUEST_DIR"}
    slow = name == "uc_cxx17_dyn"  # one build runs long enough for the timer callback
    cmd = [str(built[name]), *(["-sleep", "0.004"] if slow else [])]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out").read_text() == UC_INPUT.upper()
    err = r.stderr.decode()
    assert "failed to create shared mem segment" in err
    assert "upper_case: done chars=330 fraction=1 cpu_ok=1 timer_calls=" in err, err
    if slow:  # the app calls it twice itself; the SDK once a second, in standalone mode too
        calls = int(err.split("timer_calls=")[1].split()[0])
        assert 3 <= calls <= 5, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # standalone: no checkpoint


@pytest.mark.parametrize("name", ["uc_cxx11_dyn", "uc_cxx17_static"])
def test_uc_app_checkpoint_kill_and_resume(built: dict[str, Path], tmp_path: Path, name: str) -> None:
    """In a share: the fraction rises in the status file, each checkpoint flushes the MFILE output;
    killed (SIGKILL) mid-way, a restart resumes from the checkpoint (boinc_truncate + "ab") and the
    final output is exactly the input upper-cased."""
    expected = UC_INPUT.upper().encode()
    (tmp_path / "in").write_text(UC_INPUT)
    write_control(tmp_path, init_data=P.InitData(checkpoint_period=0.2))
    fractions: list[float] = []

    def enough() -> bool:
        if not (tmp_path / P.STATUS_FILE).exists():
            return False
        st = status_of(tmp_path)
        fractions.append(st.fraction_done)
        return st.checkpoint_count >= 4 and (tmp_path / "upper_case_state").exists()

    with Child([str(built[name]), "-sleep", "0.01"], tmp_path) as ch:
        wait_for(enough, timeout=20, what="four checkpoints")
        time.sleep(0.15)
        ch.p.send_signal(signal.SIGKILL)
        rc, _out, _err = ch.wait(timeout=10)
    assert rc == -signal.SIGKILL
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1, fractions
    assert len(set(fractions)) >= 3, fractions  # it rose while running
    done = int((tmp_path / "upper_case_state").read_text())
    partial = (tmp_path / "out").read_bytes()
    assert 0 < done < len(expected) and len(partial) >= done
    assert partial[:done] == expected[:done]  # flushed at the checkpoint
    killed = status_of(tmp_path)
    assert 0 < killed.fraction_done < 1 and killed.events == ()
    # the restart (with a compute phase for the second half of the progress) finishes the job
    res = csdk.run([str(built[name]), "-cpu_time", "0.3"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"upper_case: resumed at {done}".encode() in res.stderr
    assert (tmp_path / "out").read_bytes() == expected
    st = status_of(tmp_path)
    assert st.seq > killed.seq and st.fraction_done == 1.0 and st.checkpoint_count >= 1
    assert st.events == (P.Finish(id=1, status=0, message="", is_notice=False),)


def test_uc_app_g_sleep_is_a_hung_app(built: dict[str, Path], tmp_path: Path) -> None:
    """g_sleep = true, as BOINC's sample does for -early_sleep: the SDK's thread stops (no heartbeat,
    no status writes) and a quit request is not acted on; the host's heartbeat timeout sees a hung
    task."""
    (tmp_path / "in").write_text(UC_INPUT)
    write_control(tmp_path)
    with Child([str(built["uc_cxx11_static"]), "-early_sleep", "-sleep", "0.01"], tmp_path) as ch:
        wait_for(lambda: (tmp_path / "asleep").exists(), what="g_sleep set")
        time.sleep(0.3)
        frozen = (tmp_path / P.STATUS_FILE).read_bytes()
        time.sleep(1.5)  # more than a heartbeat interval
        assert (tmp_path / P.STATUS_FILE).read_bytes() == frozen
        write_control(tmp_path, seq=1, quit=True)
        time.sleep(1.0)
        assert ch.p.poll() is None, "a hung app does not act on a quit request"
        assert (tmp_path / P.STATUS_FILE).read_bytes() == frozen


def test_uc_app_boinc_crash(built: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "in").write_text(UC_INPUT)
    res = csdk.run([str(built["uc_cxx17_dyn"]), "-early_crash"], tmp_path)
    assert res.returncode == -signal.SIGABRT
    assert status_of(tmp_path).events == ()  # no finish reported: the host sees a crash


@pytest.fixture(scope="module")
def worker(built: dict[str, Path]) -> Path:
    r = subprocess.run(
        ["make", "-s", "-C", str(EXAMPLES), "STATIC=1"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return EXAMPLES / "build" / "worker"


def test_worker_example_runs_and_resumes_after_quit(worker: Path, tmp_path: Path) -> None:
    (tmp_path / "in").write_text("input file\n")
    write_control(tmp_path, init_data=P.InitData(checkpoint_period=0.1))
    with Child([str(worker), "30"], tmp_path) as ch:
        wait_for(
            lambda: (
                (tmp_path / "worker_checkpoint.txt").exists() and status_of(tmp_path).checkpoint_count >= 2
            ),
            timeout=20,
            what="two checkpoints",
        )
        write_control(tmp_path, seq=1, quit=True, init_data=P.InitData(checkpoint_period=0.1))
        rc, _out, _err = ch.wait(timeout=10)
    assert rc == 0
    done = float((tmp_path / "worker_checkpoint.txt").read_text())
    assert 0 < done < 30
    first = status_of(tmp_path)
    assert 0 < first.fraction_done < 1
    # restart (the host would pass the job's CPU so far): finish quickly by asking for less work
    write_control(tmp_path, seq=2, init_data=P.InitData(checkpoint_period=0.1))
    res = csdk.run([str(worker), "--nsecs", f"{done + 0.2:.3f}"], tmp_path, stdin=b"std in\n")
    assert res.returncode == 0, res.stderr
    assert b"resuming from checkpoint" in res.stderr
    assert res.stdout == b"STD IN\n" and (tmp_path / "out").read_text() == "INPUT FILE\n"
    assert not (tmp_path / "worker_checkpoint.txt").exists()
    st = status_of(tmp_path)
    assert st.seq > first.seq and st.fraction_done == 1.0
    assert st.events[-1] == P.Finish(id=1, status=0, message="", is_notice=False)
