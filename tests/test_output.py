"""The output directory's commit, with and without --fsync."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mpevents import _output
from tests.conftest import REPO, run_cli, tree


def test_fsync_syncs_every_file_and_both_directories_around_the_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"tool": "mpevents"}')
    temp = _output.make_temp(out)
    for name in ("group-1.jsonl", "rejected.jsonl", "summary.json"):
        (temp / name).write_text(name)
    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    _output.commit(temp, out, fsync=True)
    names = [Path(path).name for path in synced]
    assert sorted(names[:3]) == ["group-1.jsonl", "rejected.jsonl", "summary.json"]  # the files first,
    assert names[3] == temp.name  # then the directory that holds them, before the swap,
    assert synced[4] == str(tmp_path)  # and after it the parent, which holds the swap
    assert (out / "group-1.jsonl").read_text() == "group-1.jsonl"


def test_without_fsync_nothing_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = _output.make_temp(tmp_path / "out")
    (temp / "summary.json").write_text("{}")
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("synced without --fsync"))
    _output.commit(temp, tmp_path / "out")
    assert (tmp_path / "out" / "summary.json").exists()


def test_a_run_with_fsync_gives_the_same_output(tmp_path: Path) -> None:
    plain, synced = tmp_path / "plain", tmp_path / "synced"
    assert run_cli("--input", REPO / "data" / "input", "--output", plain, "-q").returncode == 0
    assert run_cli("--input", REPO / "data" / "input", "--output", synced, "-q", "--fsync").returncode == 0
    assert tree(plain) == tree(synced)
