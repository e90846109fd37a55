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

import contextlib
import functools
import logging
import math
import os
import re
import stat
import xml.parsers.expat as expat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from host_bridge.slot import SlotNameError, check_logical_name, expand_macros

logger = logging.getLogger(__name__)

MAX_JOB_FILE_BYTES = 4 * 1024 * 1024  # a real job file is a few KiB
MAX_XML_DEPTH = 16  # job_desc > task > tag is 3 deep
MAX_ARGS = 255  # BOINC's wrapper builds argv in a char*[256]

TaskKind = Literal["task", "unzip", "vmmanage", "daemon"]
Backend = Literal["local", "vbox", "qemu"]


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


class JobFileError(ValueError):
    """A job file that cannot be used. ``str()`` is ``FILE:LINE: <TAG>: MESSAGE``."""

    def __init__(self, path: str, line: int | None, tag: str | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.tag = tag
        self.message = message
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.path if not self.line else f"{self.path}:{self.line}"
        if self.tag:
            return f"{where}: <{self.tag}>: {self.message}"
        return f"{where}: {self.message}"

    def __reduce__(self):  # keep pickling (multiprocessing, pytest-xdist) working
        return (type(self), (self.path, self.line, self.tag, self.message))


def _where(path: str, line: int | None, tag: str | None, message: str) -> str:
    return str(JobFileError(path, line, tag, message))


# --------------------------------------------------------------------------------------------
# safe XML -> small tree with line numbers (shared with host_bridge.vboxjob)
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class XmlNode:
    """One element of a parsed job file, with its line for messages."""

    tag: str
    line: int
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[XmlNode] = field(default_factory=list)
    texts: list[tuple[int, str]] = field(default_factory=list)  # (line, chunk) of direct text
    # check_no_stray_text's memo: (len(texts) when computed, first non-blank chunk or None)
    _stray: tuple[int, tuple[int, str] | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def text(self) -> str:
        return "".join(chunk for _, chunk in self.texts)


class _Abort(Exception):
    """Raised inside expat handlers; carries a finished JobFileError."""

    def __init__(self, err: JobFileError) -> None:
        super().__init__(str(err))
        self.err = err


_BARE_AMP = re.compile(r"&(?!(?:[A-Za-z_][\w.-]*|#[0-9]+|#x[0-9A-Fa-f]+);)")
_XML_DECL_ENCODING = re.compile(rb"^<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def read_bounded(path: Path, limit: int = MAX_JOB_FILE_BYTES, what: str = "job file") -> bytes:
    """Read a regular file (symbolic links followed: BOINC's clients link project files into the
    slot), refusing FIFOs/devices/directories and anything over ``limit`` bytes."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise JobFileError(name, None, None, f"no such {what}; check the path (or the soft link)") from None
    except OSError as e:
        raise JobFileError(name, None, None, f"cannot open the {what}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JobFileError(name, None, None, f"the {what} is not a regular file")
        if st.st_size > limit:
            raise JobFileError(
                name, None, None, f"the {what} is {st.st_size} bytes, over the {limit}-byte limit"
            )
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise JobFileError(name, None, None, f"the {what} is over the {limit}-byte limit")
        return b"".join(chunks)
    except OSError as e:
        raise JobFileError(name, None, None, f"cannot read the {what}: {e.strerror}") from None
    finally:
        os.close(fd)


_UTF8_BOM = b"\xef\xbb\xbf"
_BINARY_SNIFF = 8000  # bytes looked at for NUL bytes (as git does to call a file binary)


def _refuse_binary(data: bytes, path: str) -> None:
    """A file that is not text at all (an executable, an archive, UTF-16 without its byte-order
    mark) gets an error saying so, not one about its first byte that is not UTF-8."""
    if data.startswith(b"\x7fELF"):
        what = "an ELF executable"
    elif len(data) >= 4 and data[1] == data[3] == 0 and 0 < data[0] < 0x80 and 0 < data[2] < 0x80:
        what = ""  # ASCII, every other byte NUL: UTF-16 little-endian
    elif len(data) >= 4 and data[0] == data[2] == 0 and 0 < data[1] < 0x80 and 0 < data[3] < 0x80:
        what = ""  # UTF-16 big-endian
    elif b"\x00" in data[:_BINARY_SNIFF]:
        what = "it holds NUL bytes"
    else:
        return
    if not what:
        raise JobFileError(
            path, None, None, "the file is UTF-16 without a byte-order mark; save the file as UTF-8"
        )
    raise JobFileError(
        path,
        None,
        None,
        f"is a binary file ({what}), not an XML job file; give the path of the job file (XML "
        "text), not of a program or an archive",
    )


def decode_xml_bytes(data: bytes, path: str) -> str:
    """Bytes of an XML file to text: UTF-8 (BOM allowed), UTF-16 with a BOM, or a declared
    ISO-8859-1 / Latin-1 / US-ASCII encoding. Binary files are refused as such."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise JobFileError(path, None, None, "bad UTF-16 text; save the file as UTF-8") from None
    _refuse_binary(data, path)
    bom = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    m = _XML_DECL_ENCODING.match(memoryview(data)[bom:])
    enc = m.group(1).decode("ascii").lower() if m else "utf-8"
    if enc in ("iso-8859-1", "latin-1", "latin1", "iso8859-1"):
        return data.decode("latin-1")
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        pos = bom + e.start  # e.start counts from after the BOM
        line = data.count(b"\n", 0, pos) + 1
        line_start = max(data.rfind(b"\n", 0, pos) + 1, bom)
        col = len(data[line_start:pos].decode("utf-8")) + 1  # all valid: pos is the first bad byte
        raise JobFileError(
            path,
            line,
            None,
            f"byte 0x{data[pos]:02x} is not UTF-8 text (column {col}); save the file as UTF-8",
        ) from None


def parse_xml(text: str, path: str, warnings: list[str] | None = None) -> XmlNode:
    """Parse ``text`` into an XmlNode tree, safely (see module docstring). Returns the root."""
    if not isinstance(text, str):
        raise TypeError("parse_xml takes text (str)")
    if len(text) > MAX_JOB_FILE_BYTES:
        raise JobFileError(
            path, None, None, f"the file is {len(text)} characters, over the {MAX_JOB_FILE_BYTES} limit"
        )
    if not text.strip():
        raise JobFileError(path, None, None, "the file is empty; it must hold an XML document")
    original = text  # for the columns of messages: bare '&'s are rewritten below
    if "<![CDATA[" not in text and "&" in text:

        def fix(m: re.Match[str]) -> str:
            if warnings is not None and len(warnings) < 50:
                line = text.count("\n", 0, m.start()) + 1
                warnings.append(_where(path, line, None, "bare '&' taken literally; write &amp;"))
            return "&amp;"

        text = _BARE_AMP.sub(fix, text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        line = text.count("\n", 0, e.start) + 1
        raise JobFileError(path, line, None, "the text has an invalid character (lone surrogate)") from None

    parser = expat.ParserCreate()
    with contextlib.suppress(AttributeError):  # very old expat
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[XmlNode] = []
    roots: list[XmlNode] = []

    def refuse_doctype(*_args: object) -> None:
        raise _Abort(
            JobFileError(
                path,
                parser.CurrentLineNumber,
                None,
                "a DOCTYPE is not allowed in a job file (entities are never expanded); remove it",
            )
        )

    def refuse_entity(*_args: object) -> None:
        raise _Abort(
            JobFileError(path, parser.CurrentLineNumber, None, "entity declarations are not allowed")
        )

    def start(tag: str, attrs: dict[str, str]) -> None:
        line = parser.CurrentLineNumber
        if len(stack) >= MAX_XML_DEPTH:
            raise _Abort(JobFileError(path, line, tag, f"elements are nested deeper than {MAX_XML_DEPTH}"))
        node = XmlNode(tag=tag, line=line, attrs=dict(attrs))
        if stack:
            stack[-1].children.append(node)
        else:
            roots.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].texts.append((parser.CurrentLineNumber, data))

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = lambda *a: 0  # never load anything (returning 0 = error)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(text, True)
    except _Abort as a:
        raise a.err from None
    except expat.ExpatError as e:
        raise JobFileError(path, e.lineno, None, _explain_expat(e, stack, text, original)) from None
    if not roots:
        raise JobFileError(path, None, None, "no XML element found; the file is empty or not XML")
    return roots[0]


def _source_line(text: str, lineno: int) -> str:
    """Line ``lineno`` (1-based) of ``text``, lines ended as expat ends them (\\n, \\r\\n, \\r)."""
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


def _explain_expat(e: expat.ExpatError, stack: list[XmlNode], text: str, original: str | None = None) -> str:
    """The message for an expat error. ``text`` is what expat parsed; ``original`` the file's text
    before bare '&'s were rewritten as '&amp;' (columns are reported in the original)."""
    msg = expat.errors.messages.get(e.code, str(e))
    ln = _source_line(text, e.lineno)
    original_ln = _source_line(original, e.lineno) if original is not None and original is not text else ""

    def column(offset: int) -> int:
        """1-based column in the file of ``offset`` (0-based) in expat's line."""
        shift = 0  # each bare '&' before the offset became '&amp;': 4 characters more
        for m in _BARE_AMP.finditer(original_ln):
            if m.start() + shift >= offset:
                break
            shift += 4
        return offset - shift + 1

    col = column(e.offset)
    if e.code == expat.errors.codes[expat.errors.XML_ERROR_TAG_MISMATCH] and stack:
        top = stack[-1]
        found = ""
        if ln:
            start = ln.rfind("</", 0, e.offset + 1)
            m = re.match(r"</\s*([^\s>]{1,80})", ln[start:]) if start >= 0 else None
            if m:
                found = f" </{m.group(1)}>"
        return (
            f"malformed XML: mismatched closing tag{found} (column {col}): <{top.tag}> opened on "
            f"line {top.line} must be closed with </{top.tag}> first"
        )
    if (
        e.code
        in (
            expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS],
            expat.errors.codes[expat.errors.XML_ERROR_UNCLOSED_TOKEN],
        )
        and stack
    ):
        top = stack[-1]
        return (
            f"malformed XML: the file ends inside <{top.tag}> opened on line {top.line}; "
            f"close it with </{top.tag}>"
        )
    if e.code == expat.errors.codes[expat.errors.XML_ERROR_JUNK_AFTER_DOC_ELEMENT]:
        return f"malformed XML: text or a second element after the end of the root element (column {col})"
    if e.code == expat.errors.codes[expat.errors.XML_ERROR_INVALID_TOKEN]:
        # expat stops just after a '<' that cannot start a tag ("x < y", "x <5"), or at the '<'
        # of the next tag when an earlier '<' was taken for a start tag ("x<y</command_line>")
        if 0 < e.offset <= len(ln) and ln[e.offset - 1] == "<":
            return (
                f"malformed XML: {msg} (column {column(e.offset - 1)}): a '<' that does not start a "
                "tag; write &lt; for a '<' in a value"
            )
        if e.offset < len(ln) and ln[e.offset] == "<" and (k := ln.rfind("<", 0, e.offset)) >= 0:
            return (
                f"malformed XML: {msg} (column {col}): a '<' inside a tag; if the '<' at column "
                f"{column(k)} does not start a tag, write &lt; for it"
            )
    return f"malformed XML: {msg} (column {col}); fix the markup on this line"


# --------------------------------------------------------------------------------------------
# value helpers (shared with host_bridge.vboxjob)
# --------------------------------------------------------------------------------------------

_TEMPLATE_RE = re.compile(r"\{\{.*?\}\}|\{[A-Za-z_][\w.]*\}|\$\{[A-Za-z_]\w*\}|%\([A-Za-z_]\w*\)s")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(r"[+-]?\d+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def template_hint(value: str) -> str:
    m = _TEMPLATE_RE.search(value)
    if m is None:
        return ""
    return (
        f" ({m.group(0)} looks like an unrendered template placeholder: render the template, "
        "filling in the value, before using the file)"
    )


def node_text(node: XmlNode, path: str) -> str | None:
    """Trimmed text of a leaf element; None when empty ("unset"). Child elements are an error."""
    if node.children:
        child = node.children[0]
        raise JobFileError(
            path, child.line, node.tag, f"holds a <{child.tag}> element; it takes plain text only"
        )
    value = node.text.strip()
    return value or None


def parse_flag(value: str | None, path: str, node: XmlNode) -> bool | None:
    if value is None:
        return True  # <f/> (and its XML twin <f></f>) means yes
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise JobFileError(
        path,
        node.line,
        node.tag,
        f'"{value}" is not a flag value; write <{node.tag}/> or 1 for yes, 0 for no' + template_hint(value),
    )


def parse_number(
    value: str,
    path: str,
    node: XmlNode,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | int:
    if integer:
        if not _INT_RE.fullmatch(value):
            raise JobFileError(
                path,
                node.line,
                node.tag,
                f'"{value}" is not a whole number; write a number such as 1 or 600' + template_hint(value),
            )
        num: float | int = int(value)
    else:
        if not _FLOAT_RE.fullmatch(value):
            raise JobFileError(
                path,
                node.line,
                node.tag,
                f'"{value}" is not a number; write a number such as 1 or 2.5' + template_hint(value),
            )
        num = float(value)
        if not math.isfinite(num):
            raise JobFileError(path, node.line, node.tag, f'"{value}" is too large; write a finite number')
    if minimum is not None and num < minimum:
        raise JobFileError(
            path,
            node.line,
            node.tag,
            f"{value} is below the minimum {minimum:g}; write a number >= {minimum:g}",
        )
    if maximum is not None and num > maximum:
        raise JobFileError(
            path,
            node.line,
            node.tag,
            f"{value} is above the maximum {maximum:g}; write a number <= {maximum:g}",
        )
    return num


def _first_stray_text(node: XmlNode) -> tuple[int, str] | None:
    """The first non-blank chunk of ``node``'s direct text, as (line, stripped text); computed once
    per node (remembered while ``node.texts`` keeps its length)."""
    memo = node._stray
    if memo is not None and memo[0] == len(node.texts):
        return memo[1]
    first: tuple[int, str] | None = None
    for line, chunk in node.texts:
        stripped = chunk.strip()
        if stripped:
            first = (line, stripped)
            break
    node._stray = (len(node.texts), first)
    return first


def check_no_stray_text(node: XmlNode, path: str, before_line: int | None = None) -> None:
    """A container element must hold only elements (and whitespace/comments). With
    ``before_line``, only text starting before that line is checked (to report the first problem
    of a file first).

    Callers check a container once per child (``before_line=child.line``): the first stray chunk is
    remembered on the node, so that costs O(1) a call, not a rescan of all the text (which made
    parsing quadratic in the number of tasks). ``texts`` is in document order (lines never go
    down), so the first stray chunk is the only one that can come before ``before_line``."""
    first = _first_stray_text(node)
    if first is None:
        return
    line, stripped = first
    if before_line is None or line < before_line:
        shown = stripped if len(stripped) <= 40 else stripped[:37] + "..."
        raise JobFileError(
            path,
            line,
            node.tag,
            f'stray text "{shown}" between tags; remove it or put it inside the right tag'
            + template_hint(stripped),
        )


@functools.lru_cache(maxsize=512)
def _closest(tag: str, known: tuple[str, ...]) -> str | None:
    """The known tag closest to ``tag`` (difflib: ~2 ms a call, so cached per (tag, set of tags))."""
    lower = {k.lower(): k for k in known}
    import difflib  # only for a misspelt tag: not paid by every bridge start

    close = difflib.get_close_matches(tag.lower(), list(lower), n=1, cutoff=0.6)
    return lower[close[0]] if close else None


def case_hint(tag: str, want: str) -> str:
    """``"; tags are case-sensitive: write <want>"`` when ``tag`` is ``want`` in other letter case,
    else ``""``."""
    if tag != want and tag.lower() == want.lower():
        return f"; tags are case-sensitive: write <{want}>"
    return ""


def miscased_child_hint(node: XmlNode, want: str) -> str:
    """For "<node> has no <want>": a hint naming a child that is ``want`` in other letter case
    (``<Application>`` for ``<application>``) or misspelt (``<aplication>``), or ``""``."""
    for child in node.children:
        if case_hint(child.tag, want):
            return f"; <{child.tag}> on line {child.line} is not it: tags are case-sensitive; write <{want}>"
    for child in node.children:
        if len(child.tag) <= 64 and _closest(child.tag, (want,)) == want:
            return f"; <{child.tag}> on line {child.line} is not it: did you mean <{want}>?"
    return ""


def unknown_tag_warning(path: str, node: XmlNode, parent: str, known: Iterable[str]) -> str:
    # a hostile or broken file full of distinct unknown tags must not cost seconds: only tags of a
    # plausible length get a "did you mean" hint
    best = _closest(node.tag, tuple(known)) if len(node.tag) <= 64 else None
    hint = (case_hint(node.tag, best) or f"; did you mean <{best}>?") if best else ""
    return _where(path, node.line, node.tag, f"unknown tag in <{parent}>, ignored{hint}")


def attrs_warning(path: str, node: XmlNode) -> str | None:
    if not node.attrs:
        return None
    names = ", ".join(sorted(node.attrs))
    return _where(path, node.line, node.tag, f"attributes ({names}) are ignored")


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CmdArg:
    """One command-line word as written in the job file (macros not yet expanded).

    ``logical`` is set for a word that names a slot file to resolve: ``./NAME`` (VMwrapper's rule:
    every word starting with "./") or the whole word ``boinc_resolve(NAME)`` (BOINC wrapper)."""

    text: str
    logical: str | None = None


@dataclass(frozen=True)
class TaskDesc:
    """One ``<task>`` (or unzip / VMmanage / daemon task) of a job file, as written (macros not
    expanded)."""

    kind: TaskKind
    line: int  # line of the task's start tag, for messages
    application: str  # program: logical name, ./path in the slot, or $PROJECT_DIR/...
    command_line: str = ""  # raw, macros not expanded
    args: tuple[CmdArg, ...] = ()  # command_line split the way BOINC's wrapper splits it
    stdin_filename: str | None = None
    stdout_filename: str | None = None
    stderr_filename: str | None = None
    checkpoint_filename: str | None = None
    fraction_done_filename: str | None = None
    weight: float = 1.0
    setenv: tuple[tuple[str, str], ...] = ()  # NAME=VALUE pairs, values not macro-expanded
    exec_dir: str | None = None
    daemon: bool = False
    multi_process: bool = False
    append_cmdline_args: bool = False
    forward_slashes: bool = False
    time_limit: float = 0.0  # seconds of elapsed time; 0 = none
    priority: int | None = None  # BOINC 1 (lowest) .. 5 (highest); None = BOINC's default (lowest)
    # VMwrapper dialect
    virtualmachine: str | None = None
    image: str | None = None
    app_path_vm: str | None = None  # <app_pathVM>
    copy_app_to_vm: bool = False
    copy_stdin_to_vm: bool = False
    copy_files_to_vm: tuple[str, ...] = ()
    copy_files_from_vm: tuple[str, ...] = ()
    # QEMU backend
    vm_kernel: str | None = None
    vm_initrd: str | None = None
    vm_disk_image: str | None = None  # qcow2
    vm_memory_mb: int | None = None
    vm_network: bool = False
    vm_cmdline: str | None = None  # kernel command line (append)
    vm_python: bool = False  # run the app with the guest Python root (Debian python3 + the guest SDK)
    # QEMU backend settings (TaskSpec.extra keys of the same names); None = the backend's default
    vm_accel: str | None = None  # "auto" | "kvm" | "tcg"
    vm_boot_timeout: float | None = None  # s (> 0) until the guest agent reports the app started
    vm_poweroff_grace: float | None = None  # s (>= 0) between SIGTERM and SIGKILL of the app on poweroff
    vm_share_security: str | None = None  # "mapped-xattr" | "mapped-file" | "none"
    # field -> line of its tag, for messages about a value (describe's missing-file warnings)
    tag_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)

    def line_of(self, fname: str) -> int:
        """The line of the tag that set field ``fname`` (the task's line if unknown)."""
        return next((ln for f, ln in self.tag_lines if f == fname), self.line)

    @property
    def backend(self) -> Backend:
        """Where the task runs: "qemu" when a QEMU tag is set (or <virtualmachine>qemu),
        "vbox" for another <virtualmachine>, else "local"."""
        if self.vm_kernel or self.vm_disk_image or (self.virtualmachine or "").lower() == "qemu":
            return "qemu"
        if self.virtualmachine:
            return "vbox"
        return "local"


@dataclass(frozen=True)
class ZipOutput:
    """One ``<zip_output>``: the archive and the patterns of the files it takes."""

    zipfilename: str
    patterns: tuple[str, ...]  # regular expressions on file names created by the tasks
    line: int = 0


@dataclass(frozen=True)
class JobSpec:
    """A parsed job file: its tasks in run order and its job-wide settings."""

    path: str
    tasks: tuple[TaskDesc, ...]  # the main tasks, in order
    unzip_tasks: tuple[TaskDesc, ...] = ()
    vmmanage_tasks: tuple[TaskDesc, ...] = ()
    daemons: tuple[TaskDesc, ...] = ()
    unzip_input: tuple[str, ...] = ()
    zip_output: tuple[ZipOutput, ...] = ()
    warnings: tuple[str, ...] = ()
    enable_graphics_support: bool = False
    dialect: Literal["wrapper", "vmwrapper"] = "wrapper"
    # the folder of the file parse_job_file read (None for parse_job_text): describe looks there for
    # the files named by vm_kernel / vm_initrd / vm_disk_image
    job_dir: str | None = None

    @property
    def total_weight(self) -> float:
        return sum(t.weight for t in self.tasks)

    @property
    def run_order(self) -> tuple[TaskDesc, ...]:
        """The tasks run one after the other: unzip tasks, then the main tasks."""
        return self.unzip_tasks + self.tasks


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
}
# "choice" tags: the values allowed (any letter case; stored in lower case)
_CHOICES: dict[str, tuple[str, ...]] = {
    "vm_accel": ("auto", "kvm", "tcg"),
    "vm_share_security": ("mapped-xattr", "mapped-file", "none"),
}
# QEMU settings that only a task run in a VM uses
_QEMU_SETTINGS = ("vm_accel", "vm_boot_timeout", "vm_poweroff_grace", "vm_share_security")
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
    if task.vm_memory_mb is not None and task.vm_memory_mb < MIN_GUEST_MEMORY_MB:
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
            hint = " (this is a vboxwrapper vbox_job.xml; use host_bridge.vboxjob.parse_vbox_job)"
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
    if name.endswith(".toml"):
        raise JobFileError(
            name,
            None,
            None,
            "docker_wrapper job.toml is not supported: this bridge runs job.xml tasks locally, in "
            "QEMU or in VirtualBox, not Docker containers (host_bridge.jobfile.parse_docker_job "
            "reads it for inspection)",
        )
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


# --------------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------------


def _task_lines(t: TaskDesc, n: int, total_weight: float) -> list[str]:
    title = {
        "task": f"task {n}",
        "unzip": f"unzip task {n}",
        "daemon": f"daemon {n}",
        "vmmanage": f"VMmanage task {n}",
    }[t.kind]
    backend = "not run (obsolete)" if t.kind == "vmmanage" else t.backend
    if t.backend == "vbox" and t.kind != "vmmanage":
        backend = f"vbox (virtual machine {t.virtualmachine!r})"
    lines = [f"{title} (line {t.line}): backend {backend}"]
    lines.append(f"    program: {t.application or '(none)'}")
    if t.args:
        shown = " ".join(a.text if " " not in a.text else repr(a.text) for a in t.args)
        lines.append(f"    args: {shown}")
        logical = [a.logical for a in t.args if a.logical]
        if logical:
            lines.append(f"    args naming slot files: {', '.join(logical)}")
    if t.append_cmdline_args:
        lines.append("    + the bridge's own command-line arguments")
    files_in = [f for f in (t.stdin_filename,) if f]
    if t.stdin_filename:
        lines.append(f"    stdin  <- {t.stdin_filename}")
    if t.stdout_filename:
        lines.append(f"    stdout -> {t.stdout_filename}")
    if t.stderr_filename:
        lines.append(f"    stderr -> {t.stderr_filename}")
    files_in += list(t.copy_files_to_vm)
    if t.copy_app_to_vm:
        files_in.append(f"{t.application} (the program)")
    if t.copy_files_to_vm:
        lines.append(f"    files into the VM: {', '.join(t.copy_files_to_vm)}")
    if t.copy_files_from_vm:
        lines.append(f"    files out of the VM: {', '.join(t.copy_files_from_vm)}")
    settings = [
        f"{k}={v:g} s" if isinstance(v, float) else f"{k}={v}"
        for k in _QEMU_SETTINGS
        if (v := getattr(t, k)) is not None
    ]
    if t.backend == "qemu":
        parts = [
            f"{k}={getattr(t, k)}"
            for k in ("vm_kernel", "vm_initrd", "vm_disk_image", "vm_memory_mb", "vm_cmdline")
            if getattr(t, k) is not None
        ]
        parts.append(f"network={'on' if t.vm_network else 'off'}")
        if t.vm_python:
            parts.append("python=guest Python root")
        lines.append(f"    qemu: {', '.join(parts + settings)}")
    elif settings:
        lines.append(f"    QEMU settings (used if the task runs in QEMU): {', '.join(settings)}")
    for name, value in t.setenv:
        lines.append(f"    env {name}={value}")
    for label, value in (
        ("working dir", t.exec_dir),
        ("checkpoint file", t.checkpoint_filename),
        ("fraction-done file", t.fraction_done_filename),
    ):
        if value:
            lines.append(f"    {label}: {value}")
    if t.time_limit:
        lines.append(f"    time limit: {t.time_limit:g} s")
    if t.priority is not None:
        lines.append(f"    priority: {t.priority}")
    if t.multi_process:
        lines.append("    multi-process (suspend/resume the whole process tree)")
    if t.kind == "task":
        share = f" ({100 * t.weight / total_weight:.0f}% of the progress)" if total_weight > 0 else ""
        lines.append(f"    weight: {t.weight:g}{share}")
    return lines


def describe(job: JobSpec) -> str:
    """The human-readable plan printed by ``host-bridge check JOBFILE``."""
    total_weight = job.total_weight  # a sum over the tasks: once, not once per task
    out = [f"job file {job.path} ({'VMwrapper' if job.dialect == 'vmwrapper' else 'BOINC wrapper'} dialect)"]
    if job.unzip_input:
        out.append(f"unzip before running: {', '.join(job.unzip_input)}")
    groups: list[tuple[Sequence[TaskDesc], str]] = [
        (job.unzip_tasks, "unzip tasks (run first, in order)"),
        (job.daemons, "daemons (started before the tasks, killed at the end)"),
        (job.tasks, f"tasks (run in order; total weight {total_weight:g})"),
        (job.vmmanage_tasks, "VMmanage tasks (obsolete, not run)"),
    ]
    for group, heading in groups:
        if not group:
            continue
        out.append(f"{heading}:")
        for n, t in enumerate(group, 1):
            out.extend("  " + line for line in _task_lines(t, n, total_weight))
    for z in job.zip_output:
        out.append(
            f"zip at the end: {z.zipfilename} <- new files matching {', '.join(z.patterns) or '(nothing)'}"
        )
    if job.enable_graphics_support:
        out.append("graphics support: enabled")
    out.extend(warning_lines(job.warnings + tuple(_missing_file_warnings(job))))
    return "\n".join(out) + "\n"


def _missing_file_warnings(job: JobSpec) -> list[str]:
    """For a job file read from disk (``job.job_dir`` set): a warning for each vm_kernel / vm_initrd /
    vm_disk_image that is neither next to the job file nor an existing absolute path. Only a warning:
    the name may be a logical name the BOINC client puts in the slot when the job runs."""
    if job.job_dir is None:
        return []
    folder = Path(job.job_dir)
    found: dict[str, bool] = {}  # name -> exists (thousands of tasks usually name one kernel)
    out: list[str] = []
    for t in (*job.unzip_tasks, *job.daemons, *job.tasks):
        for fname in _QEMU_FILES:
            name = getattr(t, fname)
            if name is None:
                continue
            absolute = os.path.isabs(name)
            candidate = name if absolute else os.path.join(folder, name)
            if name not in found:
                found[name] = os.path.exists(candidate)  # False for a broken link, too
            if found[name]:
                continue
            if absolute:
                msg = f"{name} does not exist on this host; the task cannot start without it"
            else:
                msg = (
                    f'"{name}" is not next to the job file ({candidate} does not exist); the task '
                    "cannot start unless the BOINC client puts a file of that logical name in the slot"
                )
            out.append(_where(job.path, t.line_of(fname), fname, msg))
    return out


def warning_lines(warnings: Sequence[str]) -> list[str]:
    """The warnings part of a ``describe`` text (job.xml and vbox_job.xml)."""
    if not warnings:
        return ["no warnings"]
    return [f"warnings ({len(warnings)}):", *(f"  {w}" for w in warnings)]


# --------------------------------------------------------------------------------------------
# docker_wrapper job.toml (parsed for inspection; not run by this bridge)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerJob:
    """BOINC docker_wrapper's job.toml (samples/docker_wrapper/docker_wrapper.cpp)."""

    path: str
    workdir: str = "/app"
    project_dir_mount: str | None = None
    image_name: str | None = None
    build_args: str = ""
    create_args: str = ""
    verbose: int = 0
    use_gpu: bool = False
    web_graphics_guest_port: int = 0
    mounts: tuple[str, ...] = ()  # "mount" array: -v arguments
    portmaps: tuple[str, ...] = ()  # "portmap" array: -p arguments
    warnings: tuple[str, ...] = ()


_DOCKER_KEYS: dict[str, tuple[str, type]] = {
    "workdir": ("workdir", str),
    "project_dir_mount": ("project_dir_mount", str),
    "image_name": ("image_name", str),
    "build_args": ("build_args", str),
    "create_args": ("create_args", str),
    "verbose": ("verbose", int),
    "use_gpu": ("use_gpu", bool),
    "web_graphics_guest_port": ("web_graphics_guest_port", int),
    "mount": ("mounts", list),
    "portmap": ("portmaps", list),
}


def parse_docker_text(text: str, path_for_messages: str = "job.toml") -> DockerJob:
    path = path_for_messages
    if len(text) > MAX_JOB_FILE_BYTES:
        raise JobFileError(path, None, None, "the file is over the size limit")
    import difflib
    import tomllib  # only for the docker dialect

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise JobFileError(path, int(m.group(1)) if m else None, None, f"bad TOML: {e}") from None
    values: dict[str, object] = {}
    warnings: list[str] = []
    for key, value in data.items():
        if key not in _DOCKER_KEYS:
            close = difflib.get_close_matches(key, list(_DOCKER_KEYS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"{path}: {key}: unknown key, ignored{hint}")
            continue
        fname, typ = _DOCKER_KEYS[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if typ is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            value = tuple(value) if ok else value
        if not ok:
            want = {
                str: "a string",
                int: "a whole number",
                bool: "true or false",
                list: "an array of strings",
            }[typ]
            raise JobFileError(path, None, None, f"{key} = {value!r}: write {want}")
        values[fname] = value
    return DockerJob(path=path, warnings=tuple(warnings), **values)  # type: ignore[arg-type]


def parse_docker_job(path: Path) -> DockerJob:
    name = str(path)
    data = read_bounded(Path(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JobFileError(name, None, None, "not UTF-8 text (TOML must be UTF-8)") from None
    return parse_docker_text(text, name)
