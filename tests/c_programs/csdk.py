"""Helpers for the C guest SDK tests: build the library with its Makefile, load it through cffi (ABI
mode), compile small programs against it, turn decoded C structs back into protocol "meanings"."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import cffi

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "guest_sdk" / "c"
BUILD = SDK / "build"
INCLUDE = SDK / "include"
PROGRAMS = Path(__file__).resolve().parent
LIB_SO = BUILD / "libboinc_guest.so"
LIB_A = BUILD / "libboinc_guest.a"
STRICT = ["-Wall", "-Wextra", "-Werror"]

CDEF = """
typedef struct { const char* ptr; size_t len; } boinc_guest_str;
typedef struct {
    uint64_t id; int type; int is_notice; int32_t status; double delay;
    boinc_guest_str s1; boinc_guest_str s2;
} boinc_guest_event;
typedef struct {
    int64_t v; uint64_t seq; uint64_t hb; double fraction_done; double cpu_time; double elapsed_time;
    double checkpoint_cpu_time; uint64_t checkpoint_count; double fpops_per_cpu_sec;
    double fpops_cumulative; double intops_per_cpu_sec; double intops_cumulative;
    int critical_section; int want_network; uint64_t td_ack; size_t n_events;
    const boinc_guest_event* events;
} boinc_guest_status;
typedef struct {
    boinc_guest_str app_name, wu_name, result_name, project_preferences, user_name, team_name,
        master_url;
    int64_t userid, teamid, hostid, app_version;
    double checkpoint_period;
    uint64_t nthreads;
    double fraction_done_start, fraction_done_end, wu_cpu_time, starting_elapsed_time,
        rsc_fpops_est, rsc_fpops_bound, rsc_memory_bound, rsc_disk_bound, computation_deadline;
} boinc_guest_init_data;
typedef struct { uint64_t id; boinc_guest_str text; } boinc_guest_trickle_down;
typedef struct { boinc_guest_str name; int64_t status; } boinc_guest_upload_result;
typedef struct {
    int64_t v; uint64_t seq; int suspended, quit, abort, network_suspended; uint64_t ack;
    boinc_guest_init_data init_data;
    size_t n_trickle_down; boinc_guest_trickle_down* trickle_down;
    size_t n_uploads; boinc_guest_upload_result* uploads;
} boinc_guest_control;

int boinc_guest_encode_status(const boinc_guest_status* st, unsigned char* out, size_t cap,
    size_t* out_len);
int boinc_guest_decode_status(const unsigned char* buf, size_t len, boinc_guest_status* out,
    char* err, size_t errcap);
void boinc_guest_status_free(boinc_guest_status* st);
int boinc_guest_decode_control(const unsigned char* buf, size_t len, boinc_guest_control* out,
    char* err, size_t errcap);
void boinc_guest_control_free(boinc_guest_control* c);
size_t boinc_guest_utf8_repair(const char* in, size_t len, char* out, size_t cap);
size_t boinc_guest_utf8_truncate(const char* s, size_t len, size_t max);

int boinc_guest_test_mode(int on);
void boinc_guest_set_times(double cpu, double elapsed);
int boinc_guest_flush(void);
int boinc_guest_heartbeat(void);
int boinc_guest_reload_control(void);
void boinc_guest_reset(void);
const char* boinc_guest_share_dir(void);
int boinc_guest_temporary_exit(double delay, const char* reason, int is_notice);

int boinc_init(void);
int boinc_fraction_done(double);
double boinc_get_fraction_done(void);
void boinc_ops_per_cpu_sec(double, double);
void boinc_ops_cumulative(double, double);
int boinc_checkpoint_completed(void);
int boinc_time_to_checkpoint(void);
void boinc_begin_critical_section(void);
void boinc_end_critical_section(void);
void boinc_need_network(void);
void boinc_network_done(void);
int boinc_send_trickle_up(char* variety, char* text);
int boinc_receive_trickle_down(char* buf, int len);
int boinc_upload_file(const char* name);
int boinc_upload_status(const char* name);
int boinc_finish_message(int status, const char* message, _Bool is_notice);
int boinc_temporary_exit(int delay, const char* reason, _Bool is_notice);
int boinc_is_standalone(void);
int boinc_resolve_filename(const char*, char*, int);
"""

EV_TYPES = {1: "trickle_up", 2: "upload", 3: "finish", 4: "temporary_exit"}
EV_CODES = {v: k for k, v in EV_TYPES.items()}


def build(timeout: float = 120.0) -> None:
    """``make -C guest_sdk/c`` (fast when up to date); raises with make's output on failure."""
    proc = subprocess.run(
        ["make", "-s", "-C", str(SDK)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"make -C {SDK} failed:\n{proc.stdout}\n{proc.stderr}")


_lib: Any = None
ffi = cffi.FFI()
ffi.cdef(CDEF)


def load() -> Any:
    """The built libboinc_guest.so, loaded once per process."""
    global _lib
    if _lib is None:
        _lib = ffi.dlopen(str(LIB_SO))
    return _lib


def s(bs: Any) -> str:
    """A boinc_guest_str as Python text (strict UTF-8)."""
    return bytes(ffi.buffer(bs.ptr, bs.len)).decode("utf-8") if bs.len else ""


def status_meaning(st: Any) -> dict[str, Any]:
    events = []
    for i in range(st.n_events):
        e = st.events[i]
        t = EV_TYPES[e.type]
        ev: dict[str, Any] = {"id": e.id, "type": t}
        if t == "trickle_up":
            ev.update(variety=s(e.s1), text=s(e.s2))
        elif t == "upload":
            ev.update(name=s(e.s1))
        elif t == "finish":
            ev.update(status=e.status, message=s(e.s1), is_notice=bool(e.is_notice))
        else:
            ev.update(delay=e.delay, reason=s(e.s1), is_notice=bool(e.is_notice))
        events.append(ev)
    return {
        "v": st.v,
        "seq": st.seq,
        "hb": st.hb,
        "fraction_done": st.fraction_done,
        "cpu_time": st.cpu_time,
        "elapsed_time": st.elapsed_time,
        "checkpoint_cpu_time": st.checkpoint_cpu_time,
        "checkpoint_count": st.checkpoint_count,
        "fpops_per_cpu_sec": st.fpops_per_cpu_sec,
        "fpops_cumulative": st.fpops_cumulative,
        "intops_per_cpu_sec": st.intops_per_cpu_sec,
        "intops_cumulative": st.intops_cumulative,
        "critical_section": bool(st.critical_section),
        "want_network": bool(st.want_network),
        "td_ack": st.td_ack,
        "events": events,
    }


INIT_STR = (
    "app_name", "wu_name", "result_name", "project_preferences", "user_name", "team_name", "master_url",
)  # fmt: skip
INIT_NUM = (
    "userid", "teamid", "hostid", "app_version", "checkpoint_period", "nthreads", "fraction_done_start",
    "fraction_done_end", "wu_cpu_time", "starting_elapsed_time", "rsc_fpops_est", "rsc_fpops_bound",
    "rsc_memory_bound", "rsc_disk_bound", "computation_deadline",
)  # fmt: skip


def control_meaning(c: Any) -> dict[str, Any]:
    d = c.init_data
    init: dict[str, Any] = {k: s(getattr(d, k)) for k in INIT_STR}
    init.update({k: getattr(d, k) for k in INIT_NUM})
    return {
        "v": c.v,
        "seq": c.seq,
        "suspended": bool(c.suspended),
        "quit": bool(c.quit),
        "abort": bool(c.abort),
        "network_suspended": bool(c.network_suspended),
        "ack": c.ack,
        "init_data": init,
        "trickle_down": [
            {"id": c.trickle_down[i].id, "text": s(c.trickle_down[i].text)} for i in range(c.n_trickle_down)
        ],
        "uploads": [
            {"name": s(c.uploads[i].name), "status": c.uploads[i].status} for i in range(c.n_uploads)
        ],
    }


def encode_status_meaning(m: dict[str, Any]) -> bytes:
    """Encode a status meaning with the C encoder."""
    lib = load()
    keep: list[Any] = []

    def cstr(text: str) -> Any:
        b = text.encode("utf-8")
        buf = ffi.new("char[]", b)
        keep.append(buf)
        return {"ptr": buf, "len": len(b)}

    evs = ffi.new("boinc_guest_event[]", max(1, len(m["events"])))
    for i, e in enumerate(m["events"]):
        ev = evs[i]
        ev.id = e["id"]
        ev.type = EV_CODES[e["type"]]
        if e["type"] == "trickle_up":
            ev.s1, ev.s2 = cstr(e["variety"]), cstr(e["text"])
        elif e["type"] == "upload":
            ev.s1 = cstr(e["name"])
        elif e["type"] == "finish":
            ev.status, ev.s1, ev.is_notice = e["status"], cstr(e["message"]), e["is_notice"]
        else:
            ev.delay, ev.s1, ev.is_notice = e["delay"], cstr(e["reason"]), e["is_notice"]
    st = ffi.new("boinc_guest_status*")
    for k, v in m.items():
        if k == "events":
            continue
        setattr(st, k, v)
    st.n_events = len(m["events"])
    st.events = evs
    cap = 2 * 1048576
    out = ffi.new("unsigned char[]", cap)
    n = ffi.new("size_t*")
    rc = lib.boinc_guest_encode_status(st, out, cap, n)
    if rc:
        raise ValueError(f"boinc_guest_encode_status: {rc}")
    return bytes(ffi.buffer(out, n[0]))


def decode(kind: str, data: bytes) -> tuple[int, dict[str, Any] | None, str]:
    """Decode with the C decoder: (rc, meaning or None, error text)."""
    lib = load()
    err = ffi.new("char[]", 512)
    if kind == "status":
        out = ffi.new("boinc_guest_status*")
        rc = lib.boinc_guest_decode_status(data, len(data), out, err, 512)
        meaning = status_meaning(out) if rc == 0 else None
        lib.boinc_guest_status_free(out)
    else:
        out = ffi.new("boinc_guest_control*")
        rc = lib.boinc_guest_decode_control(data, len(data), out, err, 512)
        meaning = control_meaning(out) if rc == 0 else None
        lib.boinc_guest_control_free(out)
    return rc, meaning, ffi.string(err).decode("utf-8", "replace")


def compile_program(
    sources: list[Path], out: Path, *, cxx: bool = False, fortran: bool = False, static: bool = False,
    extra: list[str] | None = None, timeout: float = 120.0,
) -> Path:  # fmt: skip
    """Compile sources against the SDK headers with -Wall -Wextra -Werror and link them with the SDK
    (statically with -static, else against libboinc_guest.so with an rpath)."""
    compiler = "gfortran" if fortran else "g++" if cxx else "gcc"
    cmd = [compiler, *STRICT, "-O2", f"-I{INCLUDE}", *[str(x) for x in sources], "-o", str(out)]
    cmd += extra or []
    if static:
        cmd += ["-static", f"-L{BUILD}", "-lboinc_guest", "-lpthread"]
    else:
        cmd += [f"-L{BUILD}", f"-Wl,-rpath,{BUILD}", "-lboinc_guest", "-lpthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"compile failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return out


def run(
    cmd: list[str],
    share: Path,
    *,
    cwd: Path | None = None,
    timeout: float = 30.0,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program with BOINC_GUEST_DIR=share, bounded by a timeout (killed on expiry)."""
    e = dict(os.environ)
    e["BOINC_GUEST_DIR"] = str(share)
    e.update(env or {})
    return subprocess.run(
        cmd, cwd=cwd or share, env=e, input=stdin, capture_output=True, timeout=timeout, check=False
    )
