"""The dashboard, the plain progress lines and the final summary."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from mpevents.observe import dashboard
from mpevents.observe.board import Board, CollectorField, WorkerField
from mpevents.observe.dashboard import (
    PLAIN_EVERY_S,
    FileView,
    PlainProgress,
    View,
    WorkerView,
    _placing,
    progress_line,
    render,
    summary_table,
)
from tests.conftest import REPO, genlog, make_summary, run_cli

pytestmark = pytest.mark.usefixtures("clean_processes")


def known_view() -> View:
    return View(
        elapsed_s=10.0,
        files=[FileView("alpha.log", 1000, 1000, "done", 1000), FileView("beta.log", 3000, 1500, "reading", 1500)],
        workers=[WorkerView(1, 12, 300_000, 0.93, 0), WorkerView(2, 11, 250_000, 0.88, 1)],
        queues=[("work", 0.75), ("result", 0.25)],
        lines=550_000,
        records=540_000,
        rejected=10_000,
        reasons={"field_count": 7_000, "bad_id": 3_000, "bad_value": 0},
        top_groups=[("2", 200_000), ("1", 190_000)],
        groups=3,
    )


def draw(renderable: object) -> str:
    console = Console(file=StringIO(), force_terminal=True, width=120, color_system=None)
    console.print(renderable)
    return str(console.file.getvalue())  # type: ignore[attr-defined]


def test_dashboard_shows_files_rates_workers_queues_and_collector() -> None:
    screen = draw(render(known_view()))
    assert "alpha.log" in screen and "beta.log" in screen
    assert "done" in screen and "reading" in screen
    assert "62.5%" in screen  # 2,500 of 4,000 bytes written
    assert "55.0k lines/s" in screen
    assert "00:06" in screen  # 1,500 bytes left at 250 bytes/s
    assert "93%" in screen and "88%" in screen  # busy shares
    assert "30.0k" in screen  # worker 1: 300,000 lines in 10 s
    assert "75%" in screen and "25%" in screen  # queue fill
    assert "field_count" in screen and "bad_id" in screen
    assert "bad_value" not in screen  # reasons with no rejects are not listed
    assert "group 2" in screen and "200.0k" in screen


def test_progress_line_is_plain_text() -> None:
    line = progress_line(known_view())
    assert line.startswith("mpevents: 62% done")
    assert "\x1b[" not in line


def test_summary_table_shows_the_summary_figures() -> None:
    summary = make_summary(
        files={"a.log": {"lines": 10, "valid": 7, "rejected": 2, "blank": 1}},
        totals={"lines": 10, "valid": 7, "rejected": 2, "blank": 1},
        rejected_by_reason={"field_count": 2, "bad_id": 0},
        groups={"1": 4, "2": 3},
        workers=2,
        elapsed_s=0.5,
        lines_per_s=20,
        bytes_read=400,
        restarts={"workers": 1, "readers": 0, "pipeline": 0},
    )
    text = draw(summary_table(summary))
    for expected in ("a.log", "total", "field_count 2", "0.50 s with 2 worker(s)", "20 lines/s", "1: 4", "workers 1"):
        assert expected in text


def test_a_piped_run_has_no_escape_codes_and_a_summary(corpus: Path, tmp_path: Path) -> None:
    result = run_cli("--input", corpus, "--output", tmp_path / "out", "-n", "2")
    assert result.returncode == 0
    assert "\x1b[" not in result.stdout + result.stderr
    assert "mpevents summary" in result.stdout
    assert "total" in result.stdout


def test_a_slow_piped_run_prints_progress_lines(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "slow.log", 30_000)
    result = run_cli(
        "--input", inputs, "--output", tmp_path / "out", "--chunk-bytes", "16K",
        env={"MPEVENTS_FAILPOINTS": "collector_slow=0.05"},
    )  # fmt: skip
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("mpevents: ")]
    assert lines, result.stderr
    assert "% done" in lines[0] and "lines/s" in lines[0]
    assert "\x1b[" not in result.stderr


def test_while_the_workers_write_the_group_files_the_dashboard_says_how_far_and_how_long() -> None:
    mib = 1 << 20
    done = known_view()
    view = View(**{**done.__dict__, "files": [FileView("alpha.log", 1000, 1000, "done", 1000)]})
    writing = View(**{**view.__dict__, "placing": (50 * mib, 200 * mib, 5.0)})
    assert view.eta_s == 0.0  # every line checked: without the placing's line, nothing seems left
    assert writing.eta_s == pytest.approx(15.0)  # 150 MiB left at 10 MiB/s
    screen = draw(render(writing))
    assert "group files" in screen and "25.0%" in screen and "of 200.0 MiB of records" in screen
    assert "00:15" in screen
    assert "group files" not in draw(render(view))
    line = progress_line(writing)
    assert "group files 25% placed" in line and "left 00:15" in line
    assert View(**{**view.__dict__, "placing": (0, 200 * mib, 0.5)}).eta_s is None  # no rate yet


def test_the_placings_progress_is_half_reading_and_half_writing_and_a_redo_starts_over() -> None:
    board = Board(files=1, workers=2)
    board.set_collector(CollectorField.TO_PLACE, 1_000)
    board.set_worker(0, WorkerField.PLACE_READ, 600)  # placing 0 has read 600 bytes, written 200
    board.set_worker(0, WorkerField.OUT_PLAIN, 200)
    board.set_worker(1, WorkerField.PLACE_READ, 400)  # placing 1 has read all its bytes, written none
    placed, total, _ = _placing(board) or (0, 0, 0.0)
    assert (placed, total) == (600, 1_000)  # (600 + 400 read + 200 written) / 2
    board.set_worker(0, WorkerField.PLACE_READ, 100)  # placing 0 done again after a death: its cells set anew
    board.set_worker(0, WorkerField.OUT_PLAIN, 0)
    assert (_placing(board) or (0, 0, 0.0))[0] == 250
    assert _placing(Board(files=1, workers=2)) is None  # not placing yet


def test_the_group_files_progress_counts_from_when_every_line_was_checked() -> None:
    board = Board(files=1, workers=2)
    board.set_worker(0, WorkerField.PLACE_READ, 600)  # the epochs placed while lines were still checked
    board.set_worker(0, WorkerField.OUT_PLAIN, 600)
    board.set_collector(CollectorField.PLACED_BEFORE, board.placed())
    board.set_collector(CollectorField.TO_PLACE, 1_000)
    board.set_worker(1, WorkerField.PLACE_READ, 200)  # since: the epoch in flight and the last, 100 of 400
    assert (_placing(board) or (0, 0, 0.0))[:2] == (100, 400)


def test_once_a_line_is_out_the_start_of_the_group_files_gets_one_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(
        dashboard, "time", SimpleNamespace(monotonic=lambda: clock[0], monotonic_ns=lambda: int(clock[0] * 1e9))
    )
    board = Board(files=1, workers=1)
    engine = SimpleNamespace(
        board=board, started=clock[0], files=[SimpleNamespace(name="a.log", size=10)], queue_depths=lambda: [],
        note=lambda: "",
    )  # fmt: skip
    out = StringIO()
    progress = PlainProgress(out)
    progress.start(engine)
    board.set_collector(CollectorField.TO_PLACE, 1_000)  # writing the group files before any line: none yet
    progress.tick()
    assert out.getvalue() == ""
    board.set_collector(CollectorField.TO_PLACE, 0)
    clock[0] += PLAIN_EVERY_S
    progress.tick()
    assert out.getvalue().count("\n") == 1 and "group files" not in out.getvalue()
    clock[0] += 0.1
    progress.tick()  # not due, nothing new
    assert out.getvalue().count("\n") == 1
    board.set_collector(CollectorField.TO_PLACE, 1_000)
    progress.tick()  # not due, but the group files have begun
    assert out.getvalue().count("\n") == 2 and "group files 0% placed" in out.getvalue().splitlines()[-1]
    clock[0] += 0.1
    progress.tick()  # said once
    assert out.getvalue().count("\n") == 2


def test_a_piped_run_whose_group_files_take_long_says_so(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "slow.log", 30_000)
    result = run_cli(
        "--input", inputs, "--output", tmp_path / "out", "-n", "2", "--chunk-bytes", "16K",
        env={"MPEVENTS_FAILPOINTS": "placer_slow=0.1"},  # 2 placings of about 40 blocks each: 4 s
    )  # fmt: skip
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("mpevents: ")]
    assert any("group files" in line and "% placed" in line for line in lines), result.stderr


def test_quiet_prints_nothing_and_no_progress_still_summarises(corpus: Path, tmp_path: Path) -> None:
    quiet = run_cli("--input", corpus, "--output", tmp_path / "q", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    plain = run_cli("--input", corpus, "--output", tmp_path / "p", "--no-progress")
    assert plain.returncode == 0 and "mpevents summary" in plain.stdout and plain.stderr == ""


def test_the_live_dashboard_in_a_terminal(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "first.log", 20_000)
    genlog(inputs / "second.log", 20_000, seed=2)
    pid, fd = pty.fork()
    if pid == 0:  # the child: run the command on the terminal
        os.environ.update({"MPEVENTS_FAILPOINTS": "collector_slow=0.05", "COLUMNS": "120", "LINES": "50"})
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, "-m", "mpevents", "--input", str(inputs),
                                  "--output", str(tmp_path / "out"), "--chunk-bytes", "32K"])  # fmt: skip
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            screen += data
    _, status = os.waitpid(pid, 0)
    text = screen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    assert "\x1b[" in text  # a live terminal display
    assert "first.log" in text and "second.log" in text
    assert "%" in text and "lines/s" in text
    assert "workers" in text and "queues" in text and "collector" in text
    assert "mpevents summary" in text


def test_dashboard_for_the_dask_engine_shows_tasks_instead_of_workers() -> None:
    view = known_view()
    dask_view = View(**{**view.__dict__, "workers": [], "queues": [("in flight", 0.5)], "note": "dask: 3/8 tasks done"})
    screen = draw(render(dask_view))
    assert "dask engine" in screen and "dask: 3/8 tasks done" in screen and "in flight" in screen
    assert "restarts" not in screen


def test_the_board_carries_a_schema_s_reasons_and_its_groups_names() -> None:
    from mpevents.core.schema import Field, Schema
    from mpevents.observe.board import TOP_NAME_BYTES, Board

    schema = Schema((Field("host", "string", values=("a",)), Field("ms", "float")), group_by="host")
    board = Board(1, 1, reasons=schema.reasons())
    board.set_reason(schema.reasons().index("bad_ms"), 3)
    assert board.reasons() == dict.fromkeys(schema.reasons(), 0) | {"bad_ms": 3}
    long = "ホスト".encode() * 10  # 90 bytes: kept to TOP_NAME_BYTES, a character cut in two shown as such
    board.set_top_groups([("Zoë".encode(), 9), (long, 4)])
    assert board.top_groups() == [("Zoë", 9), (long[:TOP_NAME_BYTES].decode("utf-8", "replace"), 4)]
    board.set_top_groups([(b"7", 1)])  # fewer than before: the others are gone
    assert board.top_groups() == [("7", 1)]
