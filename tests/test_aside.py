"""scripts/aside.py: earlier runs' outputs moved aside, removed at the end, and the wait after."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import NamedTuple

import aside
import pytest


def test_an_output_is_moved_aside_whole_and_removed_later(tmp_path: Path) -> None:
    output, kept = tmp_path / "out", tmp_path / "aside"
    aside.set_aside(output, kept)  # none yet: nothing to do
    assert not kept.exists()
    for run in range(2):
        output.mkdir()
        (output / "group-1.jsonl").write_text(f"run {run}\n")
        aside.set_aside(output, kept)
        assert not output.exists()
    assert sorted(path.read_text() for path in kept.glob("*/group-1.jsonl")) == ["run 0\n", "run 1\n"]
    aside.clear_aside(kept)
    assert not kept.exists()


def _fill(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    for index in range(count):
        (directory / f"group-{index}.jsonl").touch()


def test_after_many_files_removed_nothing_runs_until_the_inodes_are_handed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "sleep", waits.append)
    monkeypatch.setattr(time, "time", lambda: clock[0])
    monkeypatch.setattr(aside, "RECENT_FILES", 3)
    kept = tmp_path / "aside"
    _fill(kept / "out", 2)
    aside.clear_aside(kept, log=lambda _: None)
    aside.settle(kept, log=lambda _: None)
    assert waits == []  # 2 files: no wait
    _fill(kept / "out", 3)
    aside.clear_aside(kept, log=lambda _: None)
    clock[0] += 100  # another bench, 100 s later
    aside.settle(kept, log=lambda _: None)
    assert waits == [pytest.approx(aside.RECENT_S - 100)]
    clock[0] += aside.RECENT_S
    aside.settle(kept, log=lambda _: None)
    assert len(waits) == 1  # long enough ago


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_short_of_space_what_is_aside_is_removed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _: _Usage(1 << 40, 1 << 40, aside.KEEP_FREE_BYTES - 1))
    monkeypatch.setattr(time, "sleep", lambda _: None)
    output, kept = tmp_path / "out", tmp_path / "aside"
    _fill(output, 1)
    aside.set_aside(output, kept, log=lambda _: None)
    assert not output.exists() and not kept.exists()
