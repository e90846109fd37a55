"""The bridge's own checkpoint files: the state (atomic replace) and the fraction-done floor (one
fixed-size record rewritten in place)."""

from __future__ import annotations

import os

from host_bridge.state import (
    FLOOR_RECORD,
    FRACTION_FILE,
    STATE_FILE,
    BridgeState,
    FractionFloor,
    load_fraction_floor,
    load_state,
    save_state,
)


def test_floor_round_trip_rises_in_place(tmp_path):
    floor = FractionFloor(tmp_path, "abc123")
    floor.save(0.25)
    ino = os.stat(tmp_path / FRACTION_FILE).st_ino
    assert load_fraction_floor(tmp_path, "abc123") == 0.25
    floor.save(0.5 + 1e-12)
    assert load_fraction_floor(tmp_path, "abc123") == 0.5 + 1e-12  # repr: no precision lost
    assert os.stat(tmp_path / FRACTION_FILE).st_ino == ino  # rewritten in place, not replaced
    assert os.path.getsize(tmp_path / FRACTION_FILE) == FLOOR_RECORD
    floor.close()
    assert load_fraction_floor(tmp_path, "abc123") == 0.5 + 1e-12


def test_floor_of_another_job_or_torn_or_garbage_is_ignored(tmp_path):
    floor = FractionFloor(tmp_path, "job-a")
    floor.save(0.75)
    floor.close()
    assert load_fraction_floor(tmp_path, "job-b") == 0.0
    data = (tmp_path / FRACTION_FILE).read_bytes()
    (tmp_path / FRACTION_FILE).write_bytes(data[:20])  # torn (power cut)
    assert load_fraction_floor(tmp_path, "job-a") == 0.0
    (tmp_path / FRACTION_FILE).write_bytes(b"job-a 7.5".ljust(FLOOR_RECORD - 1) + b"\n")  # out of range
    assert load_fraction_floor(tmp_path, "job-a") == 0.0
    (tmp_path / FRACTION_FILE).write_bytes(b"job-a nan?".ljust(FLOOR_RECORD - 1) + b"\n")
    assert load_fraction_floor(tmp_path, "job-a") == 0.0


def test_floor_rewrites_a_file_of_another_size(tmp_path):
    # an older bridge's record (temp + rename, no padding), longer than a record
    (tmp_path / FRACTION_FILE).write_bytes(b"job-a 0.9\n" + b"x" * 200)
    floor = FractionFloor(tmp_path, "job-a")
    floor.save(0.125)
    floor.close()
    assert os.path.getsize(tmp_path / FRACTION_FILE) == FLOOR_RECORD
    assert load_fraction_floor(tmp_path, "job-a") == 0.125


def test_floor_does_not_follow_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.symlink(target, tmp_path / FRACTION_FILE)
    floor = FractionFloor(tmp_path, "job-a")
    try:
        floor.save(0.5)
    except OSError:
        pass
    else:
        raise AssertionError("the floor followed a symlink")
    assert target.read_text() == "keep"


def test_state_max_fraction_takes_the_floor(tmp_path):
    save_state(tmp_path, BridgeState(job_digest="d", max_fraction=0.25, runs=2))
    floor = FractionFloor(tmp_path, "d")
    floor.save(0.375)
    floor.close()
    st = load_state(tmp_path, "d")
    assert (st.max_fraction, st.runs) == (0.375, 2)
    (tmp_path / STATE_FILE).write_text("{not json")
    assert load_state(tmp_path, "d").runs == 0  # unreadable state: the job starts over (logged)
