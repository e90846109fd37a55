"""Job-file parser: BOINC's wrapper ``job.xml`` and the seed's VMwrapper dialect, in one model.

A job file (the file BOINC's wrapper opens as the logical name ``job.xml``; the caller resolves
that name through ``host_bridge.slot.resolve_logical``) describes the programs to run::

    <job_desc>
        <unzip_task> ... </unzip_task>       VMwrapper: run first, in order
        <VMmanage_task> ... </VMmanage_task> VMwrapper (obsolete): accepted with a warning, not run
        <task> ... </task>                   the main tasks, in order (<daemon/> inside: a daemon)
        <unzip_input><zipfilename>..</zipfilename></unzip_input>
        <zip_output><zipfilename>..</zipfilename><filename>regex</filename></zip_output>
        <enable_graphics_support/>
    </job_desc>

Tags inside a task: BOINC wrapper's (samples/wrapper/wrapper.cpp ``TASK::parse``), VMwrapper's
(samples/vm_wrapper/VMwrapper.py) and this project's QEMU tags (``vm_*``); see docs/job_files.md.

Lenient where BOINC is: unknown tags are warnings (naming the closest known tag), flags may be
written ``<f/>``, ``<f>1</f>``, ``<f>true</f>``, surrounding whitespace is trimmed, empty elements
mean "unset", a repeated single-valued tag keeps the last value (with a warning), a bare ``&`` is
taken literally. Strict where it matters: malformed XML (with its line), a value that is not a
number, a task without ``<application>``, no task at all, a negative weight, stray text between
tags (usually an unrendered template), a DOCTYPE (entities are never expanded), files over
4 MiB, elements nested deeper than 16, binary files. Parsing and ``describe`` take time linear in
the file's size (a 4 MiB file of 50,000 tasks: ~2 s).

Every error is a ``JobFileError`` whose text names the file, the line and the tag::

    job.xml:12: <weight>: "abc" is not a number; write a number such as 1 or 2.5
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from host_bridge.slot import SlotNameError, check_logical_name, expand_macros

from .model import CmdArg, JobSpec, TaskDesc, TaskKind, ZipOutput
from .safexml import (
    JobFileError,
    XmlNode,
    _where,
    attrs_warning,
    case_hint,
    check_no_stray_text,
    decode_xml_bytes,
    miscased_child_hint,
    node_text,
    parse_flag,
    parse_number,
    parse_xml,
    read_bounded,
    template_hint,
    unknown_tag_warning,
)

logger = logging.getLogger(__name__)

MAX_ARGS = 255  # BOINC's wrapper builds argv in a char*[256]


# --------------------------------------------------------------------------------------------
# task tags (table-driven: add a tag here and to docs/job_files.md)
# --------------------------------------------------------------------------------------------

# tag -> (field, kind); kinds: str, raw (untrimmed-inner text kept trimmed), flag, float+ (>= 0),
# float>0, int+ (>= 1), priority (0-5), choice (one of _CHOICES[tag]), list (of slot file names), env,
# name (a slot file name: relative, no "..")
_TASK_TAGS: dict[str, tuple[str, str]] = {
    # BOINC wrapper
    "application": ("application", "str"),
    "command_line": ("command_line", "str"),
    "stdin_filename": ("stdin_filename", "name"),
    "stdout_filename": ("stdout_filename", "name"),
    "stderr_filename": ("stderr_filename", "name"),
    "checkpoint_filename": ("checkpoint_filename", "name"),
    "fraction_done_filename": ("fraction_done_filename", "name"),
    "weight": ("weight", "float+"),
    "setenv": ("setenv", "env"),
    "exec_dir": ("exec_dir", "str"),
    "daemon": ("daemon", "flag"),
    "multi_process": ("multi_process", "flag"),
    "append_cmdline_args": ("append_cmdline_args", "flag"),
    "forward_slashes": ("forward_slashes", "flag"),
    "time_limit": ("time_limit", "float+"),
    "priority": ("priority", "priority"),
    # VMwrapper
    "virtualmachine": ("virtualmachine", "str"),
    "image": ("image", "str"),
    "app_pathVM": ("app_path_vm", "str"),
    "copy_app_to_VM": ("copy_app_to_vm", "flag"),
    "copy_stdin_to_VM": ("copy_stdin_to_vm", "flag"),
    "copy_file_to_VM": ("copy_files_to_vm", "list"),
    "copy_file_from_VM": ("copy_files_from_vm", "list"),
    # QEMU
    "vm_kernel": ("vm_kernel", "str"),
    "vm_initrd": ("vm_initrd", "str"),
    "vm_disk_image": ("vm_disk_image", "str"),
    "vm_memory_mb": ("vm_memory_mb", "int+"),
    "vm_network": ("vm_network", "flag"),
    "vm_cmdline": ("vm_cmdline", "str"),
    "vm_python": ("vm_python", "flag"),
    "vm_accel": ("vm_accel", "choice"),
    "vm_boot_timeout": ("vm_boot_timeout", "float>0"),
    "vm_poweroff_grace": ("vm_poweroff_grace", "float+"),
    "vm_share_security": ("vm_share_security", "choice"),
    "vm_release_after": ("vm_release_after", "float+"),
    # container backend
    "container_image": ("container_image", "str"),
    "container_workdir": ("container_workdir", "str"),
    "container_args": ("container_args", "str"),
}
# "choice" tags: the values allowed (any letter case; stored in lower case)
_CHOICES: dict[str, tuple[str, ...]] = {
    "vm_accel": ("auto", "kvm", "tcg"),
    "vm_share_security": ("mapped-xattr", "mapped-file", "none"),
}
# QEMU settings that only a task run in a VM uses
_QEMU_SETTINGS = (
    "vm_accel",
    "vm_boot_timeout",
    "vm_poweroff_grace",
    "vm_share_security",
    "vm_release_after",
)
# files the QEMU backend boots; describe warns when one is not next to the job file
_QEMU_FILES = ("vm_kernel", "vm_initrd", "vm_disk_image")
MIN_GUEST_MEMORY_MB = 128  # below this a Linux guest hangs at boot, silently
_VMWRAPPER_FIELDS = {
    "virtualmachine",
    "image",
    "app_path_vm",
    "copy_app_to_vm",
    "copy_stdin_to_vm",
    "copy_files_to_vm",
    "copy_files_from_vm",
}
_TOP_TAGS = (
    "task",
    "unzip_task",
    "VMmanage_task",
    "unzip_input",
    "zip_output",
    "enable_graphics_support",
)
_TASK_CONTAINERS: dict[str, TaskKind] = {"task": "task", "unzip_task": "unzip", "VMmanage_task": "vmmanage"}
_SETENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_command_line(line: str) -> list[str]:
    """Split a command line the way BOINC's parse_command_line (lib/str_util.cpp) does: words are
    separated by whitespace; a word that *starts* with ' or " runs to the matching quote (quotes
    elsewhere are literal); no backslash escapes."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace():
            i += 1
            continue
        if c in "'\"":
            j = line.find(c, i + 1)
            if j < 0:
                out.append(line[i + 1 :])
                break
            out.append(line[i + 1 : j])
            i = j + 1
            continue
        j = i
        while j < n and not line[j].isspace():
            j += 1
        out.append(line[i:j])
        i = j
    return out


_RESOLVE_WORD = re.compile(r"boinc_resolve\(([^()]*)\)")


def _mark(word: str) -> CmdArg:
    if word.startswith("./") and len(word) > 2:
        return CmdArg(word, word[2:])
    m = _RESOLVE_WORD.fullmatch(word)
    if m and m.group(1).strip():
        return CmdArg(word, m.group(1).strip())
    return CmdArg(word)


def _slot_name(text: str, path: str, node: XmlNode) -> str:
    """A file named by the job (stdio, checkpoint, fraction, copied files): a logical name in the slot
    or the shared folder, never an absolute path or one leaving it (``..``)."""
    try:
        check_logical_name(text)
    except SlotNameError as e:
        raise JobFileError(
            path, node.line, node.tag, f"{e}; name a file in the slot (its logical name), e.g. out.txt"
        ) from None
    return text


def _parse_task(node: XmlNode, kind: TaskKind, path: str, warnings: list[str]) -> TaskDesc:
    if (w := attrs_warning(path, node)) is not None:
        warnings.append(w)
    values: dict[str, object] = {}
    seen: dict[str, int] = {}
    lists: dict[str, list[str]] = {"copy_files_to_vm": [], "copy_files_from_vm": []}
    env: list[tuple[str, str]] = []
    for child in node.children:
        check_no_stray_text(node, path, before_line=child.line)
        spec = _TASK_TAGS.get(child.tag)
        if spec is None:
            warnings.append(unknown_tag_warning(path, child, node.tag, _TASK_TAGS))
            continue
        if (w := attrs_warning(path, child)) is not None:
            warnings.append(w)
        fname, vkind = spec
        text = node_text(child, path)
        if vkind == "list":
            if text is not None:
                lists[fname].append(_slot_name(text, path, child))
            continue
        if vkind == "env":
            if text is None:
                continue
            name, sep, value = text.partition("=")
            if not sep or not _SETENV_NAME.fullmatch(name):
                raise JobFileError(
                    path,
                    child.line,
                    child.tag,
                    f'"{text}" is not NAME=VALUE; write e.g. OMP_NUM_THREADS=$NTHREADS',
                )
            env.append((name, value))
            continue
        if fname in seen:
            warnings.append(
                _where(
                    path,
                    child.line,
                    child.tag,
                    f"given twice in this task (first on line {seen[fname]}); the last one is used",
                )
            )
        seen[fname] = child.line
        if vkind == "flag":
            flag = parse_flag(text, path, child)
            if flag is None:
                values.pop(fname, None)
            else:
                values[fname] = flag
            continue
        if text is None:
            values.pop(fname, None)  # empty element: unset
            continue
        if vkind == "str":
            values[fname] = text
        elif vkind == "name":
            values[fname] = _slot_name(text, path, child)
        elif vkind == "float+":
            values[fname] = float(parse_number(text, path, child, minimum=0.0))
        elif vkind == "float>0":
            num = float(parse_number(text, path, child))
            if num <= 0:
                raise JobFileError(
                    path,
                    child.line,
                    child.tag,
                    f"{text} is not above 0; write a number of seconds > 0, such as 300",
                )
            values[fname] = num
        elif vkind == "choice":
            allowed = _CHOICES[child.tag]
            if text.lower() not in allowed:
                raise JobFileError(
                    path,
                    child.line,
                    child.tag,
                    f'"{text}" is not a valid value; write {", ".join(allowed[:-1])} or {allowed[-1]}'
                    + template_hint(text),
                )
            values[fname] = text.lower()
        elif vkind == "int+":
            values[fname] = int(parse_number(text, path, child, integer=True, minimum=1))
        elif vkind == "priority":
            values[fname] = int(parse_number(text, path, child, integer=True, minimum=0, maximum=5))
        else:  # pragma: no cover - table error
            raise AssertionError(vkind)

    check_no_stray_text(node, path)
    if values.get("daemon") and kind == "task":
        kind = "daemon"
    application = values.pop("application", None)
    if application is None and kind != "vmmanage":
        raise JobFileError(
            path,
            node.line,
            node.tag,
            "has no <application>"
            + (
                miscased_child_hint(node, "application")
                or "; name the program to run, e.g. <application>worker</application>"
            ),
        )
    command_line = str(values.get("command_line", ""))
    words = split_command_line(command_line)
    if len(words) > MAX_ARGS:
        raise JobFileError(
            path,
            node.line,
            "command_line",
            f"has {len(words)} arguments; BOINC's wrapper passes at most {MAX_ARGS}",
        )
    task = TaskDesc(
        kind=kind,
        line=node.line,
        application=str(application or ""),
        args=tuple(_mark(w) for w in words),
        setenv=tuple(env),
        copy_files_to_vm=tuple(lists["copy_files_to_vm"]),
        copy_files_from_vm=tuple(lists["copy_files_from_vm"]),
        tag_lines=tuple(seen.items()),
        **values,  # type: ignore[arg-type]
    )
    qemu_set = [t for t in ("vm_initrd", "vm_cmdline") if getattr(task, t)]
    if qemu_set and not (task.vm_kernel or task.vm_disk_image):
        warnings.append(
            _where(
                path,
                node.line,
                node.tag,
                f"<{qemu_set[0]}> without <vm_kernel> or <vm_disk_image> has no effect",
            )
        )
    if not (task.vm_kernel or task.vm_disk_image or task.virtualmachine):
        for fname in _QEMU_SETTINGS:
            if getattr(task, fname) is not None:
                warnings.append(
                    _where(
                        path,
                        seen[fname],
                        fname,
                        "has no effect: the task runs as a local process (it has no <vm_kernel>, "
                        "<vm_disk_image> or <virtualmachine>)",
                    )
                )
    if task.vm_memory_mb is not None and task.vm_memory_mb < MIN_GUEST_MEMORY_MB and not task.container_image:
        warnings.append(
            _where(
                path,
                seen["vm_memory_mb"],
                "vm_memory_mb",
                f"{task.vm_memory_mb} MiB is very little: a Linux guest usually needs at least "
                f"{MIN_GUEST_MEMORY_MB} MiB; with too little memory the VM hangs at boot without a message",
            )
        )
    return task


def parse_job_text(text: str, path_for_messages: str = "job.xml") -> JobSpec:
    """Parse the text of a job file (see the module docstring). Raises JobFileError."""
    path = path_for_messages
    warnings: list[str] = []
    root = parse_xml(text, path, warnings)
    if root.tag != "job_desc":
        hint = case_hint(root.tag, "job_desc")
        if hint:
            hint += f", not <{root.tag}>"
        elif root.tag == "vbox_job":
            hint = " (this is a vboxwrapper vbox_job.xml; use host_bridge.jobfile.vbox.parse_vbox_job)"
        raise JobFileError(path, root.line, root.tag, f"a job file's root element must be <job_desc>{hint}")
    tasks: list[TaskDesc] = []
    unzip_tasks: list[TaskDesc] = []
    vmmanage: list[TaskDesc] = []
    daemons: list[TaskDesc] = []
    unzip_input: list[str] = []
    zip_output: list[ZipOutput] = []
    graphics = False
    for child in root.children:
        check_no_stray_text(root, path, before_line=child.line)
        if child.tag in _TASK_CONTAINERS:
            t = _parse_task(child, _TASK_CONTAINERS[child.tag], path, warnings)
            if t.kind == "vmmanage":
                warnings.append(
                    _where(
                        path,
                        child.line,
                        child.tag,
                        "obsolete VMwrapper task (it managed the VM broker); accepted but not run",
                    )
                )
                vmmanage.append(t)
            elif t.kind == "unzip":
                unzip_tasks.append(t)
            elif t.kind == "daemon":
                daemons.append(t)
            else:
                tasks.append(t)
        elif child.tag == "unzip_input":
            check_no_stray_text(child, path)
            for z in child.children:
                if z.tag == "zipfilename":
                    value = node_text(z, path)
                    if value:
                        unzip_input.append(value)
                else:
                    warnings.append(unknown_tag_warning(path, z, child.tag, ["zipfilename"]))
        elif child.tag == "zip_output":
            zip_output.append(_parse_zip_output(child, path, warnings))
        elif child.tag == "enable_graphics_support":
            graphics = bool(parse_flag(node_text(child, path), path, child))
        else:
            w = unknown_tag_warning(path, child, root.tag, _TOP_TAGS)
            if child.tag == "daemon":
                w = _where(
                    path,
                    child.line,
                    child.tag,
                    "unknown tag in <job_desc>, ignored; a daemon is a <task> with <daemon/> inside",
                )
            warnings.append(w)
    check_no_stray_text(root, path)
    if not tasks:
        raise JobFileError(
            path,
            root.line,
            root.tag,
            "has no <task> to run"
            + (
                miscased_child_hint(root, "task")
                or "; add one, e.g. <task><application>worker</application></task>"
            ),
        )
    if sum(t.weight for t in tasks) <= 0:
        warnings.append(
            _where(path, root.line, root.tag, "all task weights are 0: the fraction done will stay at 0")
        )
    vm_fields = any(getattr(t, f) for t in tasks + unzip_tasks + daemons for f in _VMWRAPPER_FIELDS)
    dialect: Literal["wrapper", "vmwrapper"] = (
        "vmwrapper" if (unzip_tasks or vmmanage or vm_fields) else "wrapper"
    )
    for w in warnings:
        logger.debug("%s", w)
    return JobSpec(
        path=path,
        tasks=tuple(tasks),
        unzip_tasks=tuple(unzip_tasks),
        vmmanage_tasks=tuple(vmmanage),
        daemons=tuple(daemons),
        unzip_input=tuple(unzip_input),
        zip_output=tuple(zip_output),
        warnings=tuple(warnings),
        enable_graphics_support=graphics,
        dialect=dialect,
    )


def _parse_zip_output(node: XmlNode, path: str, warnings: list[str]) -> ZipOutput:
    check_no_stray_text(node, path)
    zipname: str | None = None
    patterns: list[str] = []
    for z in node.children:
        if z.tag == "zipfilename":
            zipname = node_text(z, path) or zipname
        elif z.tag == "filename":
            pat = node_text(z, path)
            if pat is None:
                continue
            try:
                re.compile(pat)
            except re.error as e:
                raise JobFileError(
                    path, z.line, z.tag, f'"{pat}" is not a valid regular expression: {e}'
                ) from None
            patterns.append(pat)
        else:
            warnings.append(unknown_tag_warning(path, z, node.tag, ["zipfilename", "filename"]))
    if not zipname:
        raise JobFileError(path, node.line, node.tag, "has no <zipfilename>; name the zip file to create")
    if not patterns:
        warnings.append(_where(path, node.line, node.tag, "has no <filename> pattern: the zip will be empty"))
    return ZipOutput(zipfilename=zipname, patterns=tuple(patterns), line=node.line)


def parse_job_file(path: Path) -> JobSpec:
    """Read (bounded, regular files only) and parse a job file. Raises JobFileError."""
    name = str(path)
    if name.endswith(".toml"):  # docker_wrapper's job.toml: one container task (docs/containers.md)
        from .docker import docker_job_spec, parse_docker_job

        return docker_job_spec(parse_docker_job(Path(path)), job_dir=str(Path(path).parent))
    data = read_bounded(Path(path))
    job = parse_job_text(decode_xml_bytes(data, name), name)
    return replace(job, job_dir=str(Path(path).parent))


# --------------------------------------------------------------------------------------------
# command lines at run time
# --------------------------------------------------------------------------------------------


def expand_args(
    task: TaskDesc,
    *,
    project_dir: str | os.PathLike[str] | None,
    nthreads: int,
    pwd: str | os.PathLike[str],
    resolve: Callable[[str], str] | None = None,
    gpu_device_num: int | None = None,
    extra_args: Sequence[str] = (),
    path_for_messages: str = "job.xml",
) -> list[str]:
    """The task's arguments as BOINC's wrapper would pass them (program not included).

    Macros are expanded first, then (if ``append_cmdline_args``) ``extra_args`` are appended,
    then ``boinc_resolve(NAME)`` phrases are replaced by ``resolve(NAME)``, the line is split
    (``split_command_line``) and, VMwrapper's rule, every word starting with ``./`` is replaced
    by ``resolve(word without ./)``. With ``resolve=None`` (e.g. for a task inside a VM, where
    host paths mean nothing) nothing is resolved.
    """
    line = expand_macros(
        task.command_line, project_dir=project_dir, nthreads=nthreads, pwd=pwd, gpu_device_num=gpu_device_num
    )
    if task.append_cmdline_args and extra_args:
        line = " ".join([line, *extra_args]) if line else " ".join(extra_args)
    if resolve is not None:
        pieces: list[str] = []
        rest = line
        while (i := rest.find("boinc_resolve(")) >= 0:
            j = rest.find(")", i)
            if j < 0:
                raise JobFileError(
                    path_for_messages, task.line, "command_line", "missing ')' after 'boinc_resolve('"
                )
            pieces.append(rest[:i])
            pieces.append(resolve(rest[i + len("boinc_resolve(") : j].strip()))
            rest = rest[j + 1 :]
        line = "".join(pieces) + rest
    words = split_command_line(line)
    if resolve is not None:
        words = [resolve(w[2:]) if w.startswith("./") and len(w) > 2 else w for w in words]
    return words


def expand_env(
    task: TaskDesc,
    *,
    project_dir: str | os.PathLike[str] | None,
    nthreads: int,
    pwd: str | os.PathLike[str],
    gpu_device_num: int | None = None,
) -> list[tuple[str, str]]:
    """The task's <setenv> pairs with macros expanded in the values (BOINC expands the whole
    NAME=VALUE string; names cannot hold macros here). Note that BOINC's wrapper *replaces* the
    environment with these when any is given."""
    return [
        (
            name,
            expand_macros(
                value, project_dir=project_dir, nthreads=nthreads, pwd=pwd, gpu_device_num=gpu_device_num
            ),
        )
        for name, value in task.setenv
    ]
