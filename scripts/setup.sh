#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh Debian 12 machine of this kind: system packages, a .venv at
# the repository root with the project installed, and the C guest SDK built. Safe to re-run: it only
# installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

APT_PACKAGES=(
  libboinc-app7        # the real BOINC API library the bridge binds with cffi
  libboinc-app-dev     # BOINC 7.20.5 headers + libboinc: the C SDK tests compare with them (tests/sdk/test_c_sdk_headers.py)
  boinc-client         # a real BOINC client for the end-to-end tests
  qemu-system-x86      # real VMs (QEMU backend)
  qemu-utils           # qemu-img (overlays)
  lz4                  # compresses VM saves (QEMU backend: save on quit, periodic VM checkpoints)
  zstd                 # VM saves where lz4 is missing, and older ones
  busybox-static       # the test VM's userland
  cpio                 # initramfs
  xz-utils             # unpacking the kernel
  debootstrap          # Debian roots of VM images and <vm_python/> (host_bridge/images/debian.py)
  squashfs-tools       # mksquashfs: the read-only root disk of a VM image (host_bridge/images/build.py)
  gcc g++ gfortran make pkg-config   # the C SDK and the C / C++ / Fortran test programs
  libgmp-dev           # the C++ test app linked against Debian's libgmpxx (tests/images/test_images_vm.py)
  python3-venv
  libpython3.11        # the shared Python runtime PyInstaller puts in the single-file app version
  binutils             # objcopy / strings: PyInstaller, the bundle's API_VERSION_ section (packaging/api_version.py)
  podman crun runc conmon fuse-overlayfs slirp4netns uidmap catatonit   # the container backend (docs/containers.md)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# CRIU >= 4.1 for container checkpoints (docs/containers.md "CRIU"): Debian 12's criu 3.17 fails on
# kernels >= 6.13 ("vdso: Unexpected rt vDSO area bounds"). Where no working CRIU >= 4.1 is on PATH, the
# source of Debian 13's criu is fetched with `apt-get source` through a PRIVATE apt configuration (its
# own sources list naming a trixie deb-src line, its own lists and cache under build/criu/apt: the
# host's apt sources and lists are not touched), built with `make criu` (~75 s on 2 cores) and installed
# as /usr/local/sbin/criu (ahead of /usr/sbin on PATH: runc, which podman runs, finds it there).
# Idempotent and quick once done; SKIP_CRIU=1 skips it.
CRIU_MIN=4.1
CRIU_DEST=/usr/local/sbin/criu
CRIU_BUILD_DEPS=(libbsd-dev libcap-dev libnet1-dev libnl-3-dev libprotobuf-c-dev libprotobuf-dev
  protobuf-c-compiler protobuf-compiler pkgconf uuid-dev libnftables-dev libaio-dev)
criu_works() {  # $1: a criu binary; true when its version is >= CRIU_MIN and `criu check` passes
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/^Version: *\([0-9][0-9.]*\).*/\1/p')
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$CRIU_MIN" "$v" | sort -V | head -1)" = "$CRIU_MIN" ] \
    && $SUDO "$1" check >/dev/null 2>&1
}
build_criu() {
  local dir=$ROOT/build/criu src orig apt_opts
  mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial"
  src=$(ls -d "$dir"/criu-*/ 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$src" ] || [ ! -x "$src/criu/criu" ]; then
    local need=()
    for p in "${CRIU_BUILD_DEPS[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
      echo "setup: installing CRIU's build dependencies: ${need[*]}"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
      >"$dir/apt/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$dir/apt/sources.list" -o "Dir::Etc::SourceParts=$dir/apt/none"
      -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache" -o "APT::Sandbox::User=root")
    echo "setup: fetching CRIU's source (Debian trixie, private apt configuration in $dir/apt)"
    apt-get "${apt_opts[@]}" update -qq >"$dir/apt.log" 2>&1 || { cat "$dir/apt.log" >&2; return 1; }
    # `apt-get source` checks every file against the signed Sources index. A mirror snapshot may lack
    # the Debian packaging files (.dsc, .debian.tar.xz: 404); `make criu` needs only the upstream
    # tarball, so a verified orig tarball is enough.
    if ! (cd "$dir" && apt-get "${apt_opts[@]}" source -qq criu >>"$dir/apt.log" 2>&1); then
      orig=$(ls "$dir"/criu_*.orig.tar.* 2>/dev/null | sort -V | tail -1 || true)
      if [ -z "$orig" ]; then
        cat "$dir/apt.log" >&2
        echo "setup: cannot fetch CRIU's source (log above, also in $dir/apt.log)" >&2
        return 1
      fi
      echo "setup: the mirror has only CRIU's upstream tarball ($(basename "$orig")): unpacking it"
      tar -xf "$orig" -C "$dir"
    fi
    src=$(ls -d "$dir"/criu-*/ 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$src" ] || { echo "setup: no criu-* folder in $dir after unpacking" >&2; return 1; }
    echo "setup: building CRIU in $src (make criu)"
    make -C "$src" -j"$(nproc)" criu >"$dir/make.log" 2>&1 || {
      tail -30 "$dir/make.log" >&2
      echo "setup: building CRIU failed (log: $dir/make.log)" >&2
      return 1
    }
  fi
  if ! criu_works "$src/criu/criu"; then
    echo "setup: the CRIU built in $src does not pass \`criu check\` here: no container checkpoints" >&2
    return 1
  fi
  $SUDO install -m 0755 "$src/criu/criu" "$CRIU_DEST"
  echo "setup: installed $($CRIU_DEST --version | head -1 | tr -d '\n') as $CRIU_DEST"
}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ "${SKIP_CRIU:-0}" != 1 ]; then
  found=$(command -v criu || true)
  if [ -z "$found" ] || ! criu_works "$found"; then
    build_criu || echo "setup: WARNING: no working CRIU >= $CRIU_MIN: container tasks quit without a container checkpoint (docs/containers.md)" >&2
  fi
fi

# The venv is made from the system's Python 3 (Debian's /usr/bin/python3: the interpreter of the hosts
# the bridge ships to, built with PGO + LTO), not from whatever `python3` comes first on PATH: a source
# build such as pyenv's default made each bridge start ~45 ms slower (200 vs 157 ms to the task's start)
# and its CPU ~7 % higher (docs/benchmarks.md). PYTHON=/path/to/python3 overrides.
py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -x /usr/bin/python3 ] && py_ok /usr/bin/python3; then
  PY=/usr/bin/python3
else
  PY=python3
fi
if ! py_ok "$PY"; then
  echo "setup: $PY is not Python >= 3.11 (the project needs 3.11: Debian 12's python3); set PYTHON=/path/to/python3.11+" >&2
  exit 1
fi
ident='import sys; print(sys.base_prefix, sys.version)'
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c "$ident" 2>/dev/null)" != "$("$PY" -c "$ident")" ]; then
  echo "setup: .venv was made with another Python than $PY: re-creating it"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml setup.py guest_sdk/python/pyproject.toml scripts/setup.sh 2>/dev/null | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setup: installing the project into .venv"
  # "compat" editable mode: a plain path entry in a .pth file. The default mode installs an import hook
  # that every Python start in the venv loads (+13 ms and +2.2 MiB for each bridge process, which
  # would distort the bridge's start-up and memory figures; a regular `pip install .` has neither).
  # setuptools calls "compat" transitional: where a future setuptools no longer has it, fall back to a
  # plain editable install (correct, only slower to start) rather than failing the set-up.
  # pip's and setuptools' chatter (the "compat mode is transitional" notice) goes to a log, shown only
  # when something fails.
  log=.venv/setup-pip.log
  .venv/bin/python -m pip install -q --upgrade pip >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  if ! .venv/bin/python -m pip install -q -e ".[dev,bundle]" --config-settings editable_mode=compat >>"$log" 2>&1; then
    echo "setup: setuptools has no 'compat' editable mode: plain editable install (slower bridge start-up)"
    if ! .venv/bin/python -m pip install -q -e ".[dev,bundle]" >>"$log" 2>&1; then
      cat "$log" >&2
      echo "setup: installing the project into .venv failed (log above, also in $log)" >&2
      exit 1
    fi
  fi
  # compat mode maps the repository root only; the guest SDK's package lives in guest_sdk/python
  purelib=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$ROOT/guest_sdk/python" >"$purelib/boinc_guest_sdk_source.pth"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# The cffi shim for BOINC's C++-only calls is compiled by the editable install; rebuild it if its
# source changed since.
.venv/bin/python -m host_bridge.boinc._shim_build --inplace-if-stale >/dev/null

# Byte-compile the project as `pip install` does for a regular install: with PYTHONDONTWRITEBYTECODE set
# (as on this machine kind) every bridge start would otherwise compile its modules from source (~50 ms).
.venv/bin/python -m compileall -q -j 0 host_bridge guest_sdk/python/boinc_guest >/dev/null

echo "setup: building the C guest SDK"
make -s -C guest_sdk/c >/dev/null
echo "setup: done ($ROOT)"
