"""scripts/aside.py: earlier runs' outputs moved aside, and removed between corpora."""

from __future__ import annotations

import time
from pathlib import Path

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


def test_many_files_removed_are_followed_by_a_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    monkeypatch.setattr(aside, "RECENT_FILES", 3)
    kept = tmp_path / "aside"
    for count in (2, 3):
        (kept / "out").mkdir(parents=True)
        for index in range(count):
            (kept / "out" / f"group-{index}.jsonl").touch()
        aside.clear_aside(kept, log=lambda _: None)
    assert waits == [aside.RECENT_S]  # after 3 files, not after 2
