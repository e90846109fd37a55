"""Files between the slot and a task's share: the one owner of what moves in and out.

Inputs go into the share before a task's first start (``copy_inputs``, vboxwrapper's
``<copy_to_shared>``); outputs come back when it ended well (``copy_outputs``), whole or not at all
(``Share.copy_out``); a guest's upload request is copied only to a destination the job allows
(``upload_dest``); ``<unzip_input>`` / ``<zip_output>`` work on the slot. Failures are returned as the
run's outcome (``core.ExitBridge``) or raised as ``PrepareError`` (the task cannot be prepared).
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from .. import core
from ..exitcodes import ERR_XML_PARSE, ExitCode
from ..jobfile import JobSpec
from ..osutil import atomic_file
from ..share import GuestFileRefused, Share, safe_name
from ..slot import read_soft_link, resolve_logical
from .plan import TaskPlan

if TYPE_CHECKING:
    from ..jobfile.vbox import VboxJob
    from ..policy import Policy

log = logging.getLogger(__name__)


class PrepareError(Exception):
    """A task's files cannot be put in place (a missing input, a bad name): the job cannot run."""


def max_output(rsc_disk_bound: float, policy: Policy) -> int:
    """The largest output file accepted from a guest: the result's disk bound, if the client gave one."""
    if rsc_disk_bound and math.isfinite(rsc_disk_bound) and rsc_disk_bound > 0:
        return int(rsc_disk_bound)
    return policy.default_output_max


def copy_inputs(plan: TaskPlan, share: Share, job_path: str) -> None:
    """The task's inputs (and its program, with copy_app_to_VM) into the share."""
    for f in plan.inputs:
        if not f.src.exists():
            raise PrepareError(
                f"job file {job_path}: {f.tag} names {f.logical!r}, but {f.src} does not exist; add it to "
                "the workunit or the app version"
            )
        share.copy_in(f.src, f.name)
        if f.executable or os.access(f.src, os.X_OK):
            # the program must be executable in the guest (BOINC's copies of app files may not be)
            os.chmod(plan.share_dir / f.name, 0o755)


def copy_to_shared(
    vbox_job: VboxJob, plan: TaskPlan, share: Share, slot: Path, extra_args: tuple[str, ...]
) -> None:
    """vbox_job.xml <copy_to_shared>: slot files (logical names) copied into the share at the start;
    <copy_cmdline_to_shared/>: the command line in the share's ``cmdline`` (vboxwrapper's format)."""
    if vbox_job.copy_cmdline_to_shared:
        share.write_atomic("cmdline", "".join(f"{a} " for a in extra_args).encode())
    if plan.in_slot:
        return
    for name in vbox_job.copy_to_shared:
        try:
            dest = safe_name(name[2:] if name.startswith("./") else name)
        except GuestFileRefused:
            raise PrepareError(
                f"{vbox_job.path}: <copy_to_shared>{name}</copy_to_shared> must be a plain file name in the "
                "slot (no '/')"
            ) from None
        src = resolve_logical(slot, dest)
        if not src.is_file():
            raise PrepareError(
                f"{vbox_job.path}: <copy_to_shared>{name}</copy_to_shared> names {src}, which does not "
                "exist; add it to the workunit or the app version"
            )
        share.copy_in(src, dest)


def copy_outputs(plan: TaskPlan, share: Share, limit: int, policy: Policy) -> core.ExitBridge | None:
    """The task's outputs back into the slot; None when all were copied."""
    for f in plan.outputs:
        try:
            share.copy_out(f.name, f.dest, limit)
        except GuestFileRefused as e:
            return core.fail(
                ExitCode.EXIT_CHILD_FAILED, f"output file {f.logical!r} was refused ({e.reason}): {e}"
            )
        except FileNotFoundError:
            return core.fail(
                ExitCode.EXIT_CHILD_FAILED,
                f"the task did not produce its output file {f.logical!r} (copy_file_from_VM)",
            )
        except OSError as e:
            return core.retry_later(
                f"cannot copy the output file {f.logical!r} back ({e.strerror})", policy.disk_delay
            )
    return None


def upload_dest(plan: TaskPlan, slot: Path, name: str, uploaded: dict[str, int]) -> Path | None:
    """Where the guest's upload request for ``name`` may be copied, or None (refused).

    The guest names the file, so the name alone must not let it overwrite anything on the host: an
    output declared by the (trusted) job file goes to its physical path; any other name only if the
    slot holds a BOINC soft-link file for it (a logical file of the job) whose target does not exist
    yet, or that an earlier upload of this job created. Inputs, app-version files (the bridge
    itself, VM images) and the job file exist before the task runs; the slot's plain files
    (init_data.xml, the bridge's state, stderr.txt...) are not soft links.
    """
    for f in plan.outputs:
        if f.name == name:
            return f.dest
    if read_soft_link(slot / name) is None:
        return None
    dest = resolve_logical(slot, name)
    if name in uploaded or not os.path.lexists(dest):
        return dest
    return None


def unzip_inputs(job: JobSpec, slot: Path) -> core.ExitBridge | None:
    """<unzip_input>: unpack the named zip files into the slot before the first task."""
    import zipfile

    root = slot.resolve()
    for name in job.unzip_input:
        path = resolve_logical(slot, name)
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    target = (root / info.filename).resolve()
                    if not target.is_relative_to(root) or target == root:
                        return core.fail(
                            ExitCode.EXIT_INIT_FAILURE,
                            f"<unzip_input> {name}: member {info.filename!r} would land outside the slot",
                        )
                zf.extractall(root)
        except (OSError, zipfile.BadZipFile) as e:
            return core.fail(
                ExitCode.EXIT_INIT_FAILURE,
                f"<unzip_input> {name} ({path}): cannot unzip it ({e}); check the workunit's input files",
            )
        log.info("unzipped %s into the slot", name)
    return None


def zip_outputs(job: JobSpec, slot: Path, policy: Policy) -> core.ExitBridge | None:
    """<zip_output>: zip the slot files whose names match the patterns into the named output."""
    import zipfile

    for z in job.zip_output:
        try:
            regexes = [re.compile(p) for p in z.patterns]
        except re.error as e:
            return core.fail(ERR_XML_PARSE, f"<zip_output> {z.zipfilename}: bad pattern ({e})")
        dest = resolve_logical(slot, z.zipfilename)
        names = sorted(
            e.name
            for e in os.scandir(slot)
            if e.is_file(follow_symlinks=False) and any(r.fullmatch(e.name) for r in regexes)
        )
        try:
            with atomic_file(dest) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
                for n in names:
                    zf.write(slot / n, n)
        except OSError as e:
            return core.retry_later(
                f"<zip_output> {z.zipfilename}: cannot write {dest} ({e})", policy.disk_delay
            )
        log.info("zipped %d file(s) into %s", len(names), z.zipfilename)
    return None


def folder_bytes(folder: Path, limit: int = 100_000) -> int:
    """Bytes of the regular files under ``folder`` (links not followed; at most ``limit`` entries)."""
    total = 0
    seen = 0
    for root, dirs, files in os.walk(folder):
        for name in files:
            seen += 1
            if seen > limit:
                return total
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return total
