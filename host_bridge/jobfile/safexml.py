"""A safe, bounded XML reader for job files (job.xml, vbox_job.xml): a small tree with line numbers, no
DOCTYPE or entities, and the value helpers and hints both dialects use. Every error is a
``JobFileError`` naming the file, the line and the tag."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import stat
import xml.parsers.expat as expat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_JOB_FILE_BYTES = 4 * 1024 * 1024  # a real job file is a few KiB
MAX_XML_DEPTH = 16  # job_desc > task > tag is 3 deep


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
# safe XML -> small tree with line numbers (shared with host_bridge.jobfile.vbox)
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
# value helpers (shared with host_bridge.jobfile.vbox)
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
