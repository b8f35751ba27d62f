"""Thousands of small input files: long-lived readers, a readable screen."""

from __future__ import annotations

import json
import pickle
import random
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from mpevents.core.inputs import FileList, InputFile
from mpevents.observe.board import Board, CollectorField, FileField, FileState, ReaderField
from mpevents.observe.dashboard import MAX_FILE_ROWS, render, summary_table, view_of
from tests._reference import expected_output
from tests.conftest import make_summary, run_cli, tree

FILES = 3_000


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 tiny files of real-looking lines, a few broken, some empty."""
    directory = tmp_path_factory.mktemp("many")
    rng = random.Random(13)
    names = ["tom", "José", "山田太郎", 'O"Brien', "Иван"]
    for index in range(FILES):
        lines = [
            f"{index * 10 + i}|log{i}|page view|{rng.choice(names)}|{rng.randint(-99, 99)}|{rng.randint(1, 40)}|{i}"
            for i in range(rng.randint(0, 6))
        ]
        if rng.random() < 0.05:
            lines.append("broken|line")
        (directory / f"host-{index:05d}.log").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return directory


def test_thousands_of_tiny_files_match_the_reference_parser(many: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("--input", many, "--output", out, "-n", "2", "--no-progress")
    assert result.returncode == 0, result.stderr
    expected = expected_output(many)
    groups, rejects, totals = expected.groups, expected.rejects, expected.totals
    for group, rows in groups.items():
        assert (out / f"group-{group}.jsonl").read_bytes() == b"".join(rows)
    assert [json.loads(row) for row in (out / "rejected.jsonl").read_bytes().splitlines()] == rejects
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["totals"] == totals
    assert len(summary["files"]) == FILES  # summary.json keeps every file
    # The terminal summary lists 20 files and says how many more there are, in at most 40 lines.
    assert "2,980 more files" in result.stdout
    assert len(result.stdout.splitlines()) <= 40


def test_a_killed_reader_with_many_files_queued_changes_nothing(many: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert run_cli("--input", many, "--output", reference, "-n", "2", "-q").returncode == 0
    out = tmp_path / "out"
    # The reader that takes file 1,200 dies on its first chunk; files after it are still waiting.
    result = run_cli(
        "--input", many, "--output", out, "-n", "2", "-q", env={"MPEVENTS_FAILPOINTS": "reader_kill=1200:0"}
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "summary.json").read_bytes())["restarts"]["readers"] == 1
    assert tree(out) == tree(reference)


def fake_pipeline(files: int, reading: list[int], done: int) -> SimpleNamespace:
    """A pipeline as view_of sees it: files, a scoreboard, counts."""
    infos = [InputFile(i, f"host-{i:05d}.log", f"host-{i:05d}.log", 1_000) for i in range(files)]
    board = Board(files, 2, 4)
    for slot, file in enumerate(reading):
        board.set_reader(slot, ReaderField.FILE, file + 1)
        board.set_file(file, FileField.STATE, FileState.READING)
    board.set_collector(CollectorField.HEAD, done)
    return SimpleNamespace(
        board=board,
        files=infos,
        started=0.0,
        total_bytes=1_000 * files,
        files_taken=lambda: max(reading) + 1,
        queue_depths=lambda: [("work", 0.5), ("result", 0.25)],
        note=lambda: "",
    )


def draw(renderable: object) -> str:
    console = Console(file=StringIO(), force_terminal=True, width=120, color_system=None)
    console.print(renderable)
    return str(console.file.getvalue())  # type: ignore[attr-defined]


def test_the_dashboard_with_thousands_of_files_shows_the_ones_being_read() -> None:
    pipeline = fake_pipeline(FILES, reading=[1_500, 1_501, 1_502, 1_503], done=1_500)
    screen = draw(render(view_of(pipeline)))
    assert "3,000 files" in screen
    assert all(f"host-{i:05d}.log" in screen for i in range(1_500, 1_504))
    assert "host-01499.log" not in screen  # no wall of finished files
    assert "1,500 done, 4 reading, 1,496 waiting" in screen
    assert len(screen.splitlines()) < 40


def test_the_dashboard_with_a_few_files_shows_every_one() -> None:
    pipeline = fake_pipeline(MAX_FILE_ROWS, reading=[3], done=3)
    screen = draw(render(view_of(pipeline)))
    assert all(f"host-{i:05d}.log" in screen for i in range(MAX_FILE_ROWS))
    assert "waiting\n" in screen and " done, " not in screen


def test_the_summary_lists_the_files_with_most_rejects_first() -> None:
    files = {f"f{i}.log": {"lines": 10 + i, "valid": 10 + i, "rejected": 0, "blank": 0} for i in range(100)}
    files["f7.log"]["rejected"] = 3
    summary = make_summary(
        files=files,
        totals={"lines": 1, "valid": 1, "rejected": 3, "blank": 0},
        rejected_by_reason={"field_count": 3},
        groups={"1": 1},
        workers=2,
        elapsed_s=1.0,
        lines_per_s=1,
        bytes_read=1,
    )
    rows = [line for line in draw(summary_table(summary)).splitlines() if ".log" in line]
    assert rows[0].split()[1] == "f7.log"  # most rejects
    assert rows[1].split()[1] == "f99.log"  # then most lines
    assert len(rows) == 20
    assert "80 more files" in draw(summary_table(summary))


def test_the_file_list_travels_as_columns_and_comes_back_whole() -> None:
    infos = [
        InputFile(0, "a.log", "/logs/a.log", 5, (1, 2)),
        InputFile(1, "b\\xff.log", "/logs/b\udcff.log", 0),  # a name that is not UTF-8, no identity
        InputFile(2, "c.log", "/elsewhere/c.log", 7, (3, 4)),
    ]
    files = FileList.of(infos)
    again = pickle.loads(pickle.dumps(files))
    assert list(again) == infos
    assert again[-1] == infos[-1] and again[1:] == infos[1:]
    assert (
        len(pickle.dumps(FileList.of(InputFile(i, f"{i}.log", f"/l/{i}.log", i, (1, i)) for i in range(1000)))) < 40_000
    )
