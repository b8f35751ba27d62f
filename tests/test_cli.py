"""End to end through the real command, on temporary directories."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from mpevents import _cli
from mpevents._cli import ERROR_CHARS, main, one_line
from mpevents.core.errors import RunError
from tests._reference import expected_output
from tests.conftest import run_cli, temp_dirs, tree

pytestmark = pytest.mark.usefixtures("clean_processes")


def test_output_follows_the_spec(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("--input", corpus, "--output", out, "-n", "2", "--no-progress")
    assert result.returncode == 0, result.stderr
    expected = expected_output(corpus)
    groups, rejects, totals = expected.groups, expected.rejects, expected.totals
    names = sorted(path.name for path in out.iterdir())
    assert names == sorted([*(f"group-{g}.jsonl" for g in groups), "rejected.jsonl", "summary.json"])
    for group, rows in groups.items():
        assert (out / f"group-{group}.jsonl").read_bytes() == b"".join(rows)
    assert [json.loads(row) for row in (out / "rejected.jsonl").read_bytes().splitlines()] == rejects
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["totals"] == totals
    assert totals["lines"] == totals["valid"] + totals["rejected"] + totals["blank"]
    for counts in summary["files"].values():
        assert counts["lines"] == counts["valid"] + counts["rejected"] + counts["blank"]
    assert set(summary["files"]) == {"a.log", "b.log", "c.log", "d.log", "e.log"}
    assert summary["files"]["d.log"] == {
        "lines": 0, "valid": 0, "rejected": 0, "blank": 0, "bytes": 0, "size_on_disk": 0, "compression": "none",
    }  # fmt: skip
    assert sum(summary["rejected_by_reason"].values()) == totals["rejected"]
    assert summary["groups"] == {g: len(rows) for g, rows in sorted(groups.items(), key=lambda i: int(i[0]))}
    assert summary["workers"] == 2
    assert temp_dirs(tmp_path) == []


@pytest.mark.parametrize(
    "options",
    [
        ("-n", "2"),
        ("-n", "4", "--readers", "1"),
        ("-n", "3", "--chunk-bytes", "1"),
        ("-n", "2", "--chunk-bytes", "7", "--readers", "2"),
        ("-n", "1", "--chunk-bytes", "100"),
    ],
)
def test_output_is_byte_identical_whatever_the_shape(corpus: Path, tmp_path: Path, options: tuple[str, ...]) -> None:
    base = tmp_path / "base"
    assert run_cli("--input", corpus, "--output", base, "-n", "1", "-q").returncode == 0
    out = tmp_path / "out"
    result = run_cli("--input", corpus, "--output", out, "-q", *options)
    assert result.returncode == 0, result.stderr
    assert tree(out) == tree(base)


def test_rerun_replaces_our_previous_output(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("--input", corpus, "--output", out, "-q").returncode == 0
    first = tree(out)
    assert run_cli("--input", corpus, "--output", out, "-q", "-n", "2").returncode == 0
    assert tree(out) == first
    assert temp_dirs(tmp_path) == []


def test_foreign_output_directory_is_refused_untouched(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    result = run_cli("--input", corpus, "--output", out, "-q")
    assert result.returncode == 2
    assert "not written by mpevents" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert temp_dirs(tmp_path) == []


def test_a_lookalike_summary_is_not_enough(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"tool": "something-else"}')
    assert run_cli("--input", corpus, "--output", out, "-q").returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--input", "/nonexistent/dir"), "does not exist"),
        (("-n", "0"), "at least 1"),
        (("-n", "two"), "not a whole number"),
        (("--readers", "0"), "at least 1"),
        (("--chunk-bytes", "-5"), "'-5' is not a size"),
        (("--chunk-bytes", "1MB"), "'1MB' is not a size"),
        (("--chunk-bytes", "0K"), "at least 1"),
        (("--pattern", "*.nothing"), "no file matching"),
        (("--bogus",), "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_with_one_line(corpus: Path, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli("--input", corpus, "--output", tmp_path / "out", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_input_that_is_a_file_exits_2(corpus: Path, tmp_path: Path) -> None:
    result = run_cli("--input", corpus / "a.log", "--output", tmp_path / "out")
    assert result.returncode == 2
    assert "is a file" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file whatever its mode")
def test_unreadable_input_file_exits_2(corpus: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    shutil.copytree(corpus, inputs)
    (inputs / "b.log").chmod(0)
    result = run_cli("--input", inputs, "--output", tmp_path / "out", "-q")
    assert result.returncode == 2, result.stderr
    assert "cannot read input file" in result.stderr and "b.log" in result.stderr


def test_unreadable_input_file_exits_2_in_process(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same path as above, for root: the open itself is made to fail."""
    import mpevents._config

    real_open = open

    def deny(path: object, *args: object, **kwargs: object) -> object:
        if str(path).endswith("b.log"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(mpevents._config, "open", deny, raising=False)
    code = main(["--input", str(corpus), "--output", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot read input file" in err and "b.log" in err and "Permission denied" in err
    assert not (tmp_path / "out").exists()


def test_a_failure_during_the_run_exits_1_and_keeps_the_old_output(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("--input", corpus, "--output", out, "-q").returncode == 0
    before = tree(out)
    result = run_cli("--input", corpus, "--output", out, "-q", env={"MPEVENTS_FAILPOINTS": "collector_write_error=1"})
    assert result.returncode == 1
    assert "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree(out) == before
    assert temp_dirs(tmp_path) == []


def test_help_explains_every_option() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--input", "--output", "--worker-number", "--readers", "--chunk-bytes", "--pattern", "--quiet"):
        assert option in result.stdout


def test_sample_data_runs(tmp_path: Path) -> None:
    from tests.conftest import REPO

    out = tmp_path / "out"
    result = run_cli("--input", REPO / "data" / "input", "--output", out, "-n", "2", "--no-progress")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["totals"]["rejected"] > 0
    assert summary["totals"]["valid"] > 0
    assert "notes.txt" not in summary["files"]
    assert "mpevents summary" in result.stdout


def test_a_file_name_that_is_not_utf8_is_escaped(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    name = os.fsdecode(b"caf\xe9.log")
    (inputs / name).write_bytes(b"1|a|b|c|1|1|1\nbad\n")
    out = tmp_path / "out"
    result = run_cli("--input", inputs, "--output", out, "-q")
    assert result.returncode == 0, result.stderr
    (reject,) = [json.loads(line) for line in (out / "rejected.jsonl").read_bytes().splitlines()]
    assert reject["file"] == "caf\\xe9.log"
    assert list(json.loads((out / "summary.json").read_bytes())["files"]) == ["caf\\xe9.log"]


def test_a_quiet_run_that_goes_well_never_imports_rich(corpus: Path, tmp_path: Path) -> None:
    # Importing rich before the first child starts would delay every run by a
    # twentieth of a second; -X importtime lists every module the run imported.
    result = run_cli("--input", corpus, "--output", tmp_path / "out", "-q", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    assert "mpevents.local.supervisor" in result.stderr  # the listing is there...
    assert "rich" not in result.stderr  # ...and rich is not in it


def test_the_command_exits_cleanly_without_the_interpreters_teardown(corpus: Path, tmp_path: Path) -> None:
    """``main_exit`` ends the process after the exit hooks, skipping the
    teardown: what it printed still reaches a pipe, whole, and the hooks
    still unlink the queues' named semaphores (left behind, the resource
    tracker would warn on stderr as it removes them)."""
    result = run_cli(
        "--input", corpus, "--output", tmp_path / "out", "-n", "2", "--no-progress", env={"PYTHONUNBUFFERED": ""}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.rstrip().splitlines()[-1].startswith("groups ")  # the summary's last line
    failed = run_cli("--input", tmp_path / "missing", "--output", tmp_path / "out2")
    assert failed.returncode == 2
    assert failed.stderr.startswith("mpevents: error:")


def test_other_systems_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert main(["--version"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "Linux only" in err[0] and "darwin" in err[0]


def test_a_very_long_error_is_one_line_that_keeps_its_start_and_exit_code(tmp_path: Path) -> None:
    missing = tmp_path.joinpath(*["deep-" * 10] * 20, "logs")  # a real error, whose message holds a long path
    result = run_cli("--input", missing, "--output", tmp_path / "out")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert len(line) <= ERROR_CHARS
    assert line.startswith(f"mpevents: error: input directory '{tmp_path}/deep-deep-")
    assert line.endswith("… (--debug shows all)")


MANY_LINES = "it failed:\n" + "Traceback\n  line\n" * 5_000


@pytest.mark.parametrize(
    ("error", "code", "start", "end"),
    [
        (RunError(MANY_LINES), 1, "mpevents: error: it failed: Traceback line", "… (--debug shows all)"),
        (KeyError("x" * 100_000), 1, "mpevents: internal error: KeyError: 'xxx", "… (--debug shows where)"),
    ],
)
def test_every_error_is_one_line(
    error: Exception,
    code: int,
    start: str,
    end: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail(config: object) -> None:
        raise error

    monkeypatch.setattr(_cli, "check", fail)
    assert _cli.main(["--input", "anywhere"]) == code
    (line,) = capsys.readouterr().err.splitlines()
    assert len(line) <= ERROR_CHARS and line.startswith(start) and line.endswith(end)


def test_a_short_error_is_left_as_it_is() -> None:
    assert one_line("cannot read x.log: Permission denied") == "cannot read x.log: Permission denied"
    assert one_line("two\n  lines", " (hint)") == "two lines (hint)"


@pytest.mark.parametrize("which", ["input", "output"])
def test_a_path_the_system_refuses_is_bad_input(which: str, tmp_path: Path) -> None:
    too_long = tmp_path / ("x" * 300)  # one name over the 255 bytes a filesystem takes
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.log").write_text("1|a|b|c|5|2|9\n")
    paths = {"input": too_long, "output": tmp_path / "out"} | (
        {"input": inputs, "output": too_long} if which == "output" else {}
    )
    result = run_cli("--input", paths["input"], "--output", paths["output"], "-q")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"mpevents: error: File name too long: {which} '")  # the cause first, then the path


def test_a_many_lined_warning_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    _cli._setup_logging("WARNING")
    logging.getLogger("mpevents").warning("task failed (%s); trying it again", "KilledWorker:\n  Traceback\n    line")
    assert capsys.readouterr().err.splitlines() == [
        "mpevents: warning: task failed (KilledWorker: Traceback line); trying it again"
    ]


def test_max_open_files_is_accepted_with_one_warning_that_it_has_no_effect(corpus: Path, tmp_path: Path) -> None:
    plain, limited = tmp_path / "plain", tmp_path / "limited"
    assert run_cli("--input", corpus, "--output", plain, "-n", "2", "-q").returncode == 0
    result = run_cli("--input", corpus, "--output", limited, "-n", "2", "--no-progress", "--max-open-files", "1")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "--max-open-files" in line] == [
        "--max-open-files has no effect: no process keeps group files open (each opens one at a time)"
    ]
    assert tree(limited) == tree(plain)
