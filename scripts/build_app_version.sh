#!/usr/bin/env bash
# Build the bridge as ONE executable a BOINC project ships as its app version's main program: Python,
# the bridge, its libraries, the guest SDK and the real BOINC API library (libboinc_api.so.7 +
# libboinc.so.7) in a single file (PyInstaller onefile). A volunteer's host needs nothing installed.
#
#   scripts/build_app_version.sh [OUTPUT_DIR]      (default: dist/)
#
# Prints the path of the executable, named as BOINC names app version files:
# host_bridge_<version>_<BOINC platform>, e.g. host_bridge_0.1.0_x86_64-pc-linux-gnu.
# Build on the OLDEST Linux the app version must run on: the executable needs that glibc or newer (this
# machine: Debian 12, glibc 2.36). See docs/shipping.md.
# The executable carries the API_VERSION_x.y.z string of its libboinc_api.so.7 where `strings` (BOINC's
# update_versions) finds it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$(realpath -m "${1:-dist}")
bash scripts/setup.sh >&2

PY=.venv/bin/python
VERSION=$($PY -c 'import host_bridge; print(host_bridge.__version__)')
ARCH=$(uname -m)
case "$ARCH" in  # BOINC's platform names
  x86_64|i686) PLATFORM="$ARCH-pc-linux-gnu" ;;
  aarch64) PLATFORM="aarch64-unknown-linux-gnu" ;;
  armv7l) PLATFORM="arm-unknown-linux-gnueabihf" ;;
  *) PLATFORM="$ARCH-unknown-linux-gnu" ;;
esac
NAME="host_bridge_${VERSION}_${PLATFORM}"
LIBDIR=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("MULTIARCH") or "")')
LIBDIR=/usr/lib/${LIBDIR:-$ARCH-linux-gnu}
for lib in libboinc_api.so.7 libboinc.so.7; do
  if [ ! -e "$LIBDIR/$lib" ]; then
    echo "build_app_version: $LIBDIR/$lib not found: install libboinc-app7 (apt-get install libboinc-app7)" >&2
    exit 1
  fi
done

# Build-time code stays out: the shim's builder (cffi + setuptools) would bring PyInstaller's setuptools
# and pkg_resources run-time hooks, which import both at every start (+14 MiB RSS, measured).
# A task's Python program run by the bundle (python mode, host_bridge/_frozen.py) has the whole standard
# library, as a Python install has, except what a headless volunteer's host cannot use (GUI, test
# suites, the interactive tools).
mapfile -t STDLIB < <($PY - <<'EOF'
import importlib.util
import pkgutil
import sys

skip = {"antigravity", "idlelib", "lib2to3", "pydoc_data", "test", "tkinter", "turtle", "turtledemo",
        "ensurepip", "venv", "this", "__phello__", "msilib", "winreg", "winsound", "_winapi", "nt",
        "_msi", "_overlapped", "msvcrt", "_tkinter", "_scproxy", "_osx_support", "distutils",
        # terminal UIs and host databases: each brings system libraries the bundle would unpack at
        # every start (readline, ncurses, Berkeley DB / GDBM, NIS / Kerberos); dbm itself stays, with
        # its pure-Python dbm.dumb (shelve works)
        "readline", "curses", "_curses", "_curses_panel", "_dbm", "_gdbm", "nis", "spwd",
        "ossaudiodev"}


def wanted(name: str) -> bool:
    parts = name.split(".")
    return parts[0] not in skip and not any(p in ("test", "tests", "idle_test") for p in parts[1:])


names = set()
for name in sorted(sys.stdlib_module_names):
    if not wanted(name) or name.startswith("_test"):
        continue
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        continue
    names.add(name)
    if spec.submodule_search_locations:  # a package: its submodules too (json.tool, email.mime, ...)
        for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=name + ".",
                                          onerror=lambda _name: None):
            if wanted(info.name) and not info.name.endswith("__main__"):
                names.add(info.name)
for name in sorted(names):
    print(f"--hidden-import={name}")
EOF
)

WORK=$ROOT/build/pyinstaller
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"
log=$WORK/build.log
if ! $PY -m PyInstaller \
    --onefile \
    --noconfirm \
    --name "$NAME" \
    --distpath "$OUT" \
    --workpath "$WORK" \
    --specpath "$WORK" \
    --paths "$ROOT" --paths "$ROOT/guest_sdk/python" \
    --collect-submodules host_bridge \
    --collect-submodules boinc_guest \
    "${STDLIB[@]}" \
    --exclude-module tkinter --exclude-module test --exclude-module idlelib --exclude-module readline \
    --exclude-module curses --exclude-module _dbm --exclude-module _gdbm --exclude-module nis \
    --exclude-module host_bridge.boinc._shim_build --exclude-module setuptools \
    --exclude-module pkg_resources --exclude-module distutils --exclude-module pip \
    --add-binary "$LIBDIR/libboinc_api.so.7:." \
    --add-binary "$LIBDIR/libboinc.so.7:." \
    --add-data "$ROOT/guest_sdk/python/boinc_guest:guest_python/boinc_guest" \
    --add-data "$ROOT/examples/worker.py:examples" \
    "$ROOT/packaging/bundle_entry.py" >"$log" 2>&1; then
  tail -40 "$log" >&2
  echo "build_app_version: PyInstaller failed (log above; whole log in $log)" >&2
  exit 1
fi
# BOINC's update_versions takes the app version's <api_version> from `strings MAIN_PROGRAM`; inside the
# bundle the library's API_VERSION_x.y.z is compressed: put the carried library's own string where
# `strings` finds it, once (packaging/api_version.py)
if ! API_VERSION=$($PY packaging/api_version.py "$LIBDIR/libboinc_api.so.7" "$OUT/$NAME"); then
  echo "build_app_version: could not give $OUT/$NAME its API version string (message above)" >&2
  exit 1
fi
echo "build_app_version: $NAME carries API_VERSION_$API_VERSION (libboinc_api.so.7's)" >&2
echo "$OUT/$NAME"
