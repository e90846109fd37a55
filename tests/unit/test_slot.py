"""BOINC logical-name resolution (soft-link files) and wrapper macro expansion."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from host_bridge.slot import SOFT_LINK_MAX_READ, SlotNameError, expand_macros, read_soft_link, resolve_logical


@pytest.fixture()
def boinc_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A BOINC data dir: slots/0 and projects/example.org."""
    slot = tmp_path / "slots" / "0"
    project = tmp_path / "projects" / "example.org"
    slot.mkdir(parents=True)
    project.mkdir(parents=True)
    return slot, project


def test_soft_link_outside_slot_is_followed_relative_to_slot(boinc_tree: tuple[Path, Path]) -> None:
    slot, project = boinc_tree
    (project / "job_1.0.xml").write_text("<job_desc/>")
    (slot / "job.xml").write_text("<soft_link>../../projects/example.org/job_1.0.xml</soft_link>\n")
    got = resolve_logical(slot, "job.xml")
    assert got == slot / "../../projects/example.org/job_1.0.xml"
    assert got.read_text() == "<job_desc/>"


def test_soft_link_absolute_target_and_whitespace_and_entities(boinc_tree: tuple[Path, Path]) -> None:
    slot, project = boinc_tree
    target = project / "a&b"
    (slot / "in").write_text(f"<soft_link>  {str(target).replace('&', '&amp;')}  </soft_link>\n")
    assert resolve_logical(slot, "in") == target


def test_plain_file_and_missing_file_resolve_to_themselves(boinc_tree: tuple[Path, Path]) -> None:
    slot, _ = boinc_tree
    (slot / "data").write_text("just data, <soft_link> on the second line?\n<soft_link>x</soft_link>")
    assert resolve_logical(slot, "data") == slot / "data"  # only the first line counts (as in BOINC)
    assert resolve_logical(slot, "missing") == slot / "missing"
    assert resolve_logical(slot, "./data") == slot / "data"  # VMwrapper spelling


def test_real_symlink_is_not_read(boinc_tree: tuple[Path, Path]) -> None:
    """A symbolic link (6.12+ clients) is returned as-is: the OS follows it on open; we read nothing
    through it, even when its target looks like a soft-link file."""
    slot, project = boinc_tree
    (project / "f").write_text("<soft_link>/etc/passwd</soft_link>")
    os.symlink(project / "f", slot / "in")
    assert resolve_logical(slot, "in") == slot / "in"


def test_fifo_and_directory_are_not_read(boinc_tree: tuple[Path, Path]) -> None:
    slot, _ = boinc_tree
    os.mkfifo(slot / "pipe")
    (slot / "dir").mkdir()
    result: list[Path] = []
    t = threading.Thread(target=lambda: result.append(resolve_logical(slot, "pipe")), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "resolve_logical blocked on a FIFO"
    assert result == [slot / "pipe"]
    assert resolve_logical(slot, "dir") == slot / "dir"


def test_read_is_bounded(boinc_tree: tuple[Path, Path]) -> None:
    slot, _ = boinc_tree
    # a "soft link" whose closing tag lies beyond the bounded read is not a soft link
    (slot / "big").write_text("<soft_link>" + "a" * (SOFT_LINK_MAX_READ + 10) + "</soft_link>")
    assert read_soft_link(slot / "big") is None
    assert resolve_logical(slot, "big") == slot / "big"


def test_paths_with_slash_are_not_looked_up(boinc_tree: tuple[Path, Path]) -> None:
    slot, _ = boinc_tree
    (slot / "sub").mkdir()
    (slot / "sub" / "f").write_text("<soft_link>/etc/passwd</soft_link>")
    assert resolve_logical(slot, "./sub/f") == slot / "sub" / "f"


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x", "a\0b", "./"])
def test_bad_names_are_refused(boinc_tree: tuple[Path, Path], bad: str) -> None:
    slot, _ = boinc_tree
    with pytest.raises(SlotNameError):
        resolve_logical(slot, bad)


def test_expand_macros_like_boinc_wrapper() -> None:
    text = "$PROJECT_DIR/bin --n $NTHREADS --gpu $GPU_DEVICE_NUM --cwd $PWD $NTHREADS"
    got = expand_macros(text, project_dir="/p", nthreads=4, pwd="/slots/0")
    assert got == "/p/bin --n 4 --gpu $GPU_DEVICE_NUM --cwd /slots/0 4"
    got = expand_macros(text, project_dir="", nthreads=1, pwd="/s", gpu_device_num=2)
    assert got == "./bin --n 1 --gpu 2 --cwd /s 1"
    assert expand_macros("no macros", project_dir=None, nthreads=1, pwd=".") == "no macros"
    # sequential, like BOINC: a project dir containing $NTHREADS is substituted again
    assert expand_macros("$PROJECT_DIR", project_dir="/x$NTHREADS", nthreads=3, pwd=".") == "/x3"
