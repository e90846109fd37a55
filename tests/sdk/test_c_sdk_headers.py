"""The C guest SDK against BOINC's own app-facing surface: every header Debian's libboinc-app-dev
(BOINC 7.20.5) installs is provided or its absence is documented; a generated translation unit
includes every provided one (C and C++, strict); BOINC's XML helpers give the same output as
BOINC's own (the same program built against /usr/include/boinc and libboinc); an app reading its
preferences with XML_PARSER + MIOFILE, GPU_TYPE_* and APP_INIT_DATA::host_info runs in a share, linked
both ways; and the plain static link lines (no -lpthread) of C, C++ and Fortran programs run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import C_PROGRAMS

sys.path.insert(0, str(C_PROGRAMS))
import csdk
from boinc_guest import protocol as P

PROGRAMS = csdk.PROGRAMS
BOINC_INC = Path("/usr/include/boinc")
INVENTORY = PROGRAMS / "boinc_headers.txt"


def inventory() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in INVENTORY.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path, status = line.split(" ", 1)
            out[path] = status
    return out


@pytest.fixture(scope="module")
def built() -> None:
    csdk.build()


def test_every_debian_header_is_provided_or_documented(built: None) -> None:
    inv = inventory()
    debian = sorted(str(p.relative_to(BOINC_INC)) for p in BOINC_INC.rglob("*.h"))
    assert debian, f"{BOINC_INC} is empty: scripts/setup.sh installs libboinc-app-dev"
    assert sorted(inv) == debian
    doc = (csdk.ROOT / "docs" / "guest_sdk_c.md").read_text()
    for path, status in inv.items():
        if status == "provided":
            assert (csdk.INCLUDE / path).is_file(), path
        else:
            assert status.startswith("absent "), (path, status)
            assert f"`{Path(path).name}`" in doc, f"docs/guest_sdk_c.md does not say why {path} is absent"
    # every top-level header also has a <boinc/...> form
    for h in csdk.INCLUDE.glob("*.h"):
        assert (csdk.INCLUDE / "boinc" / h.name).is_file(), h.name


@pytest.mark.parametrize(
    "compiler,std",
    [("gcc", "-std=c99"), ("gcc", "-std=c11"), ("g++", "-std=c++11"), ("g++", "-std=c++17")],
)
def test_generated_unit_includes_every_provided_header(
    built: None, tmp_path: Path, compiler: str, std: str
) -> None:
    inv = inventory()
    provided = [p for p, s in inv.items() if s == "provided"]
    lines = [f'#include "{p}"' for p in provided] + [f"#include <boinc/{Path(p).name}>" for p in provided]
    cxx = compiler == "g++"
    body = (
        "int main(void) {\n  APP_INIT_DATA a;\n  boinc_get_init_data_p(&a);\n"
        '  if (strcmp(GPU_TYPE_NVIDIA, "NVIDIA") || strcmp(GPU_TYPE_ATI, "ATI")\n'
        '      || strcmp(GPU_TYPE_INTEL, "intel_gpu")) return 1;\n'
        "  if (a.host_info.p_ncpus < 1 || a.host_info.host_cpid[0]\n"
        "      || a.proxy_info.use_http_proxy) return 2;\n"
        '  if (a.global_prefs.max_ncpus_pct != 0 || coproc_type_name_to_num("CUDA") != PROC_TYPE_NVIDIA_GPU)'
        " return 3;\n"
        '  if (strcmp(SVN_VERSION, "7.20.5") || BOINC_MAJOR_VERSION != 7 || RUN_MODE_AUTO != 2) return 4;\n'
        + (
            '  MIOFILE mf; XML_PARSER xp(&mf); mf.init_buf_read("<n>3</n>"); int n = 0;\n'
            '  while (!xp.get_tag()) { if (xp.parse_int("n", n)) continue; }\n'
            "  double vm, rss;\n"
            "  if (n != 3 || mem_usage(vm, rss) || rss <= 0 || !a.app_files.empty()) return 5;\n"
            if cxx
            else "  double vm, rss; if (mem_usage(&vm, &rss) || rss <= 0) return 5;\n"
        )
        + "  return 0;\n}\n"
    )
    src = tmp_path / ("t.cpp" if cxx else "t.c")
    src.write_text("\n".join(lines) + "\n#include <string.h>\n" + body)
    for link in ("dyn", "static"):
        exe = csdk.compile_program([src], tmp_path / f"t_{link}", cxx=cxx, static=link == "static",
                                   extra=[std, "-pedantic"])  # fmt: skip
        res = csdk.run([str(exe)], tmp_path / "nowhere", cwd=tmp_path)
        assert res.returncode == 0, (link, res.returncode, res.stderr)


def _build_real_boinc(src: Path, out: Path) -> Path:
    cmd = ["g++", f"-I{BOINC_INC}", str(src), "-o", str(out), "-lboinc_api", "-lboinc"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return out


def test_xml_helpers_match_boinc(built: None, tmp_path: Path) -> None:
    """The same source against BOINC 7.20.5 (its headers and libboinc) and against the SDK: same output,
    including BOINC's quirks (<?xml?> counts as a tag, xml_escape leaves '>' and quotes, &#x..; stays)."""
    real = _build_real_boinc(PROGRAMS / "xml_app.cpp", tmp_path / "xml_real")
    expected = subprocess.run([str(real)], capture_output=True, timeout=30, check=True).stdout
    assert b"tags=13" in expected
    for link in ("dyn", "static"):
        exe = csdk.compile_program([PROGRAMS / "xml_app.cpp"], tmp_path / f"xml_{link}", cxx=True,
                                   static=link == "static")  # fmt: skip
        got = subprocess.run([str(exe)], capture_output=True, timeout=30, check=True).stdout
        assert got == expected, (link, got.decode(), expected.decode())


# as BOINC (and so the host bridge) gives it: the whole element
PREFS = (
    "<project_preferences>\n<iters>25</iters><scale>0.5</scale><fast/><color>deep &amp; blue</color>"
    "<unknown><x>1</x></unknown>\n</project_preferences>"
)
PREFS_LINE = "iters=25 scale=0.5 fast=1 verbose=0 color=deep & blue label=[] gpu_nvidia=0 ati=ATI svn=7.20.5"


@pytest.mark.parametrize("link", ["dyn", "static"])
def test_prefs_app_in_a_share(built: None, tmp_path: Path, link: str) -> None:
    exe = csdk.compile_program([PROGRAMS / "prefs_app.cpp"], tmp_path / "prefs_app", cxx=True,
                               static=link == "static")  # fmt: skip
    share = tmp_path / "share"
    share.mkdir()
    init = P.InitData(app_name="prefs", project_preferences=PREFS)
    P.write_atomic(share, P.CONTROL_FILE, P.encode_control(P.Control(init_data=init)))
    res = csdk.run([str(exe)], share)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    assert lines[0] == PREFS_LINE
    assert lines[1].startswith("app=prefs cpid=[] ncpus=") and " os=Linux mem_ok=1 files=0" in lines[1]
    st = P.decode_status((share / P.STATUS_FILE).read_bytes())
    assert st.events[-1] == P.Finish(id=1, status=0, message="", is_notice=False)


def test_prefs_app_same_preferences_as_with_boinc(built: None, tmp_path: Path) -> None:
    """BOINC's own build of prefs_app, standalone, reads init_data.xml from its folder: with the same
    preferences there it prints the same first line as the SDK build does from the share."""
    real = _build_real_boinc(PROGRAMS / "prefs_app.cpp", tmp_path / "prefs_real")
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "init_data.xml").write_text(
        f"<app_init_data>\n<app_name>prefs</app_name>\n{PREFS}\n</app_init_data>\n"
    )
    r = subprocess.run([str(real)], cwd=slot, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[0] == PREFS_LINE


def test_plain_static_link_lines_run(built: None, tmp_path: Path) -> None:
    """`gfortran app.f90 libboinc_guest.a -static` (and the C / C++ equivalents, no -lpthread): the
    programs call boinc_init, do file I/O after it and finish without a crash."""
    share = tmp_path / "share"
    share.mkdir()
    lib = str(csdk.LIB_A)
    cases = [
        (["gfortran", str(PROGRAMS / "fortran_app.f90"), lib, "-static"], [], 5, b"readback=24"),
        (["g++", f"-I{csdk.INCLUDE}", str(PROGRAMS / "prefs_app.cpp"), lib, "-static"], [], 0, b"iters=10"),
        (["gcc", f"-I{csdk.INCLUDE}", str(PROGRAMS / "probe.c"), lib, "-static"], ["helpers"], 0, b"size=4"),
    ]
    for i, (cmd, args, rc, out) in enumerate(cases):
        exe = tmp_path / f"p{i}"
        r = subprocess.run([*cmd, "-o", str(exe)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        res = csdk.run([str(exe), *args], share)
        assert res.returncode == rc, (cmd[0], res.returncode, res.stderr)
        assert out in res.stdout


@pytest.mark.parametrize("link", ["dyn", "static"])
def test_prefs_app_in_the_bridge(built: None, tmp_path: Path, link: str) -> None:
    """The same unmodified app as the BOINC app of a job: the client's init_data.xml (its project
    preferences) reaches it through the bridge (the real libboinc_api, SlotClient playing the client),
    it parses them with XML_PARSER, and its output file comes back through the share."""
    from tests.support.bridge import run_bridge
    from tests.support.client_shm import SlotClient

    slot = tmp_path / "slot"
    slot.mkdir()
    csdk.compile_program([PROGRAMS / "prefs_app.cpp"], slot / "prefs_app", cxx=True, static=link == "static")
    (slot / "job.xml").write_text(
        "<job_desc><task><application>prefs_app</application><copy_app_to_VM/>"
        "<stdout_filename>out</stdout_filename><copy_file_from_VM>out</copy_file_from_VM>"
        "</task></job_desc>"
    )
    client = SlotClient(slot, extra_init_data={"app_name": "prefs", "project_preferences": PREFS})
    client.start_heartbeats()
    try:
        rc, log = run_bridge(slot, timeout=60)
    finally:
        client.close()
    assert rc == 0, log
    lines = (slot / "out").read_text().splitlines()
    ctl = P.decode_control((slot / "shared" / P.CONTROL_FILE).read_bytes())
    assert lines[0] == PREFS_LINE, (ctl.init_data.project_preferences, log)
    assert lines[1].startswith("app=prefs cpid=[] ncpus=") and " os=Linux " in lines[1]
