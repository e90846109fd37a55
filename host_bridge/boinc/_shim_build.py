"""cffi (API mode) build of the small C++ shim for BOINC's C++-only API calls.

The shim needs neither BOINC's headers nor libboinc at build time: it ``dlopen()``s
``libboinc_api.so.7`` at run time and calls the exported, mangled C++ symbols through correctly
typed function pointers (``int (*)(std::string&)`` called with a real ``std::string``), so it
compiles with just g++, and the bridge still imports (and runs standalone) where the library is
missing. The mangled names were checked with ``nm -D`` against Debian's 7.20.5 build, which uses
the C++11 ``std::string`` ABI (``std::__cxx11::basic_string``); the shim pins that ABI.

Built by ``pip install`` (setup.py: ``cffi_modules=["host_bridge/boinc/_shim_build.py:ffibuilder"]``)
or in place: ``python -m host_bridge.boinc._shim_build [--inplace-if-stale | --inplace]``, which
puts ``_shim.<abi>.so`` next to this file when it is missing or older than this file.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import shutil
import sys
import tempfile
from pathlib import Path

import cffi

MODULE_NAME = "host_bridge.boinc._shim"

CDEF = """
int shim_open(const char* libname, char* err, int errlen);
int shim_is_open(void);
int shim_temporary_exit(int delay, const char* reason, int is_notice);
int shim_finish_message(int status, const char* message, int is_notice);
int shim_upload_file(const char* name);
int shim_upload_status(const char* name);
int shim_wu_cpu_time(double* cpu_time);
double shim_elapsed_time(void);
"""

SOURCE = r"""
#define _GLIBCXX_USE_CXX11_ABI 1
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <string>
#include <new>

#define SHIM_ERR_NOT_OPEN (-1000)
#define SHIM_ERR_EXCEPTION (-1001)

typedef int (*fn_exit_t)(int, const char*, bool);
typedef int (*fn_string_t)(std::string&);
typedef int (*fn_double_ref_t)(double&);
typedef double (*fn_void_double_t)(void);

static void* lib_handle = 0;
static fn_exit_t p_temporary_exit = 0;
static fn_exit_t p_finish_message = 0;
static fn_string_t p_upload_file = 0;
static fn_string_t p_upload_status = 0;
static fn_double_ref_t p_wu_cpu_time = 0;
static fn_void_double_t p_elapsed_time = 0;

static void* sym(const char* name, char* err, int errlen, int* missing) {
    void* p = dlsym(lib_handle, name);
    if (!p) {
        if (!*missing && err && errlen > 0) {
            snprintf(err, (size_t)errlen, "symbol %s not found in the BOINC API library", name);
        }
        *missing = 1;
    }
    return p;
}

extern "C" int shim_open(const char* libname, char* err, int errlen) {
    if (lib_handle) return 0;
    /* RTLD_LOCAL: the symbols are looked up on this handle only. RTLD_GLOBAL would make libboinc_api's
     * boinc_* symbols (and its boinc_status) interpose on any other library of the process that
     * defines the same names, such as the C guest SDK loaded by the tests: that crashed. */
    void* h = dlopen(libname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        if (err && errlen > 0) {
            const char* e = dlerror();
            snprintf(err, (size_t)errlen, "%s", e ? e : "dlopen failed");
        }
        return -1;
    }
    lib_handle = h;
    int missing = 0;
    p_temporary_exit = (fn_exit_t)sym("_Z20boinc_temporary_exitiPKcb", err, errlen, &missing);
    p_finish_message = (fn_exit_t)sym("_Z20boinc_finish_messageiPKcb", err, errlen, &missing);
    p_upload_file = (fn_string_t)sym(
        "_Z17boinc_upload_fileRNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE",
        err, errlen, &missing);
    p_upload_status = (fn_string_t)sym(
        "_Z19boinc_upload_statusRNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE",
        err, errlen, &missing);
    p_wu_cpu_time = (fn_double_ref_t)sym("_Z17boinc_wu_cpu_timeRd", err, errlen, &missing);
    p_elapsed_time = (fn_void_double_t)sym("_Z18boinc_elapsed_timev", err, errlen, &missing);
    return missing ? -2 : 0;
}

extern "C" int shim_is_open(void) { return lib_handle != 0; }

extern "C" int shim_temporary_exit(int delay, const char* reason, int is_notice) {
    if (!p_temporary_exit) return SHIM_ERR_NOT_OPEN;
    return p_temporary_exit(delay, reason, is_notice != 0);
}

extern "C" int shim_finish_message(int status, const char* message, int is_notice) {
    if (!p_finish_message) return SHIM_ERR_NOT_OPEN;
    return p_finish_message(status, message, is_notice != 0);
}

static int call_with_string(fn_string_t f, const char* name) {
    if (!f) return SHIM_ERR_NOT_OPEN;
    try {
        std::string s(name);
        return f(s);
    } catch (...) {
        return SHIM_ERR_EXCEPTION;
    }
}

extern "C" int shim_upload_file(const char* name) { return call_with_string(p_upload_file, name); }

extern "C" int shim_upload_status(const char* name) {
    return call_with_string(p_upload_status, name);
}

extern "C" int shim_wu_cpu_time(double* cpu_time) {
    if (!p_wu_cpu_time) return SHIM_ERR_NOT_OPEN;
    return p_wu_cpu_time(*cpu_time);
}

extern "C" double shim_elapsed_time(void) {
    if (!p_elapsed_time) return -1.0;
    return p_elapsed_time();
}
"""

#: Error codes the shim returns on its own (the library's own codes are BOINC's ERR_*).
SHIM_ERR_NOT_OPEN = -1000
SHIM_ERR_EXCEPTION = -1001

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    MODULE_NAME,
    SOURCE,
    source_extension=".cpp",
    libraries=["dl"],
    extra_compile_args=["-O2", "-std=c++11"],
)

HERE = Path(__file__).resolve().parent


def built_module_path() -> Path:
    """Where the in-place build puts the compiled shim (``_shim.<abi tag>.so`` next to this file)."""
    return HERE / ("_shim" + importlib.machinery.EXTENSION_SUFFIXES[0])


def existing_builds() -> list[Path]:
    candidates = [HERE / ("_shim" + s) for s in importlib.machinery.EXTENSION_SUFFIXES]
    return [p for p in candidates if p.exists()]


def is_stale() -> bool:
    """True when no compiled shim exists next to this file or it is older than this file."""
    builds = existing_builds()
    if not builds:
        return True
    # the one the import system picks: the first suffix in EXTENSION_SUFFIXES order
    return builds[0].stat().st_mtime < Path(__file__).stat().st_mtime


def build_inplace() -> Path:
    """Compile in a temporary directory (no generated files in the tree), then move the
    extension next to this file atomically."""
    target = built_module_path()
    with tempfile.TemporaryDirectory(prefix="boinc-shim-") as tmp:
        out = Path(ffibuilder.compile(tmpdir=tmp, verbose=False))
        staged = target.with_name(target.name + ".tmp")
        shutil.copyfile(out, staged)
        staged.replace(target)
    return target


ABI_PATH = HERE / "_abi.py"


def abi_is_stale() -> bool:
    """The pre-parsed declarations (``_abi.py``) are missing or older than ``_ffi.py``."""
    src = HERE / "_ffi.py"
    return not ABI_PATH.exists() or ABI_PATH.stat().st_mtime < src.stat().st_mtime


def build_abi_inplace() -> Path:
    """Write ``_abi.py``: cffi's out-of-line ABI module for the declarations in ``_ffi.CDEF``. The
    bridge then loads its types without parsing C at start-up (no pycparser: faster, smaller)."""
    from host_bridge.boinc._ffi import CDEF

    abi = cffi.FFI()
    abi.set_source("host_bridge.boinc._abi", None)
    abi.cdef(CDEF)
    staged = ABI_PATH.with_name(ABI_PATH.name + ".tmp")
    abi.emit_python_code(str(staged))
    staged.replace(ABI_PATH)
    return ABI_PATH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--inplace-if-stale",
        action="store_true",
        help="build next to the module only if missing or older than this file (default)",
    )
    group.add_argument("--inplace", action="store_true", help="always rebuild in place")
    args = parser.parse_args(argv)
    if args.inplace or abi_is_stale():
        print(f"built {build_abi_inplace()}")
    if not args.inplace and not is_stale():
        print(f"shim up to date: {existing_builds()[0]}")
        return 0
    try:
        path = build_inplace()
    except Exception as exc:  # compiler missing, etc.: say what to do
        print(
            f"error: building the BOINC C++ shim ({Path(__file__).name}) failed: {exc}\n"
            "Install g++ (apt-get install g++) and re-run; without the shim the bridge falls back "
            "to the mangled symbols for temporary_exit/finish messages, and upload_file/"
            "upload_status are unavailable.",
            file=sys.stderr,
        )
        return 1
    print(f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
