"""Give the single-file app version the API version string of the libboinc_api it carries, where BOINC's
``update_versions`` finds it (scripts/build_app_version.sh runs this after PyInstaller; docs/shipping.md).

``update_versions`` runs ``strings`` on an app version's main program and takes the first line matching
``API_VERSION_[0-9]+.[0-9]+.[0-9]+$`` (BOINC's api/boinc_api.cpp defines ``"API_VERSION_" PACKAGE_VERSION``
for it). In the PyInstaller onefile bundle the library is zlib-compressed, so the string is not there and
the app version gets no ``<api_version>``: the client then treats the app as pre-6.0 and talks to it
through System V shared memory instead of the ``boinc_mmap_file`` this project is tested with.

This reads the version from the library itself (never a hard-coded number) and adds it to the bundle as a
non-loaded ELF section, NUL-delimited so that ``strings`` prints it as a line of its own. PyInstaller's
bootloader finds its archive by scanning the file for the archive's cookie, so a section added after it
changes nothing at run time. The result is checked with ``strings``, as ``update_versions`` reads it.

    python packaging/api_version.py LIBBOINC_API BUNDLE     (prints the version, e.g. 7.20.5)
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger("api_version")

SECTION = ".boinc_api_version"
TOOL_TIMEOUT = 120.0
# the C string in the library: not preceded by another printable byte, NUL-terminated
_IN_LIBRARY = re.compile(rb"(?<![\x20-\x7e])API_VERSION_([0-9]+\.[0-9]+\.[0-9]+)\x00")
# update_versions: strings FILE | grep -E --max-count=1 'API_VERSION_[0-9]+\.[0-9]+\.[0-9]+$'
_UPDATE_VERSIONS_LINE = re.compile(r"API_VERSION_[0-9]+\.[0-9]+\.[0-9]+$")


class ApiVersionError(Exception):
    """The version could not be read or embedded; the message names the file and what to do."""


def library_api_version(lib: Path) -> str:
    """The x.y.z of the library's own ``API_VERSION_x.y.z`` string."""
    try:
        data = lib.read_bytes()
    except OSError as e:
        raise ApiVersionError(f"{lib}: cannot read it ({e}): install libboinc-app7") from e
    found = sorted({m.group(1).decode() for m in _IN_LIBRARY.finditer(data)})
    if not found:
        raise ApiVersionError(
            f"{lib}: no API_VERSION_x.y.z string in it: is it BOINC's libboinc_api? "
            "(apt-get install libboinc-app7)"
        )
    if len(found) > 1:
        raise ApiVersionError(
            f"{lib}: several API versions in it ({', '.join(found)}): which one it is is unclear"
        )
    return found[0]


def version_lines(path: Path) -> list[str]:
    """The lines of ``strings PATH`` that update_versions would take as the API version."""
    try:
        r = subprocess.run(
            ["strings", str(path)], capture_output=True, text=True, errors="replace", timeout=TOOL_TIMEOUT
        )
    except FileNotFoundError as e:
        raise ApiVersionError("strings not found: install binutils (apt-get install binutils)") from e
    if r.returncode != 0:
        raise ApiVersionError(f"strings {path} failed: {r.stderr.strip()}")
    return [line for line in r.stdout.splitlines() if _UPDATE_VERSIONS_LINE.search(line)]


def embed(bundle: Path, version: str) -> None:
    """Add ``API_VERSION_<version>`` to the bundle as the section SECTION (objcopy, as PyInstaller itself
    adds its archive on Linux)."""
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version):
        raise ApiVersionError(f"API version {version!r} is not x.y.z")
    already = version_lines(bundle)
    if already:
        raise ApiVersionError(
            f"{bundle}: already carries {already}: build it afresh (scripts/build_app_version.sh)"
        )
    with tempfile.NamedTemporaryFile(prefix="api_version_", suffix=".bin") as f:
        f.write(b"\0API_VERSION_" + version.encode() + b"\0")
        f.flush()
        try:
            r = subprocess.run(
                ["objcopy", "--add-section", f"{SECTION}={f.name}", str(bundle)],
                capture_output=True,
                text=True,
                timeout=TOOL_TIMEOUT,
            )
        except FileNotFoundError as e:
            raise ApiVersionError("objcopy not found: install binutils (apt-get install binutils)") from e
    if r.returncode != 0:
        raise ApiVersionError(f"objcopy --add-section {SECTION} {bundle} failed: {r.stderr.strip()}")
    got = version_lines(bundle)
    if got != [f"API_VERSION_{version}"]:
        raise ApiVersionError(
            f"{bundle}: strings finds {got} after adding {SECTION}, not API_VERSION_{version}"
        )
    logger.info("%s: %s carries API_VERSION_%s", bundle.name, SECTION, version)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="api_version: %(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("library", type=Path, help="the libboinc_api.so.7 the bundle carries")
    ap.add_argument("bundle", type=Path, help="the single-file app version PyInstaller built")
    ns = ap.parse_args(argv)
    try:
        version = library_api_version(ns.library)
        embed(ns.bundle, version)
    except ApiVersionError as e:
        print(f"api_version: {e}", file=sys.stderr)
        return 1
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
