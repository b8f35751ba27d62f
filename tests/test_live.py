"""Files still being written (--settle): a last line without its line end waits until the file is quiet.

The decision on its own (pure functions), the listing, what a run reports
after the fact, and end to end on every engine: the line an application is
in the middle of writing never becomes a record, a file that grows during the
run is read as it was listed, and --settle 0 reads every last line as before.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import sequential as reference

from mpevents._config import Config, find_inputs
from mpevents.core.errors import RunError, UsageError
from mpevents.core.framing import lines_end
from mpevents.core.inputs import FileList, InputFile
from mpevents.core.live import GREW, UNFINISHED_LINE, WARNED_FILES, Unread, quiet, unread, unread_tail
from mpevents.output.journal import Header, as_listed, check_inputs, read, start
from mpevents.output.names import JOURNAL_NAME
from tests.conftest import RUN_TIMEOUT_S, genlog, run_cli, settled, start_cli, temp_dirs, tree

pytestmark = pytest.mark.usefixtures("clean_processes")

S = 1_000_000_000  # nanoseconds in a second
NOW = 1_700_000_000 * S
DASK_TIMEOUT_S = 240
"""A local Dask cluster starts slowly on a small machine; a hang still fails."""
WRITER_LIMIT_S = 60.0
"""The longest a writer thread writes, whatever happens to the run it writes under."""

LINES = b"493|live|ev|u|1|9|1587583121\n492|live|ev|v|2|8|1587583122\n"
PARTIAL = b"494|live|ev|u|123456|9|15875"
"""What an application has written of its next line so far; ``83122\\n`` comes a few milliseconds later."""
WHOLE = PARTIAL + b"83122"

try:
    import distributed  # noqa: F401

    HAS_DASK = True
except ImportError:
    HAS_DASK = False

ENGINES = [
    pytest.param(("-n", "1"), id="local-1"),
    pytest.param(("-n", "3"), id="local-3"),
    pytest.param(
        ("--engine", "dask", "-n", "2"),
        id="dask",
        marks=pytest.mark.skipif(not HAS_DASK, reason="the dask extra is not installed"),
    ),
]


def reads(data: bytes, calls: list[tuple[int, int]] | None = None) -> Callable[[int, int], bytes]:
    """``read(size, offset)`` over ``data``, noting each call in ``calls``."""

    def read(size: int, offset: int) -> bytes:
        if calls is not None:
            calls.append((size, offset))
        return data[offset : offset + size]

    return read


# --- the decision, on its own ---------------------------------------------------


def test_a_file_is_quiet_once_unchanged_for_settle_seconds() -> None:
    assert quiet(NOW - 2 * S, NOW, 2.0)
    assert not quiet(NOW - 2 * S + 1, NOW, 2.0)
    assert quiet(NOW - 300 * S, NOW, 0.5)
    assert not quiet(NOW + S, NOW, 2.0)  # modified "in the future" (another machine's clock): not quiet
    assert quiet(NOW + S, NOW, 0)  # --settle 0: every file is


def test_a_quiet_file_is_read_to_its_end_without_reading_its_tail() -> None:
    calls: list[tuple[int, int]] = []
    assert unread_tail(reads(LINES + PARTIAL, calls), len(LINES + PARTIAL), NOW - 3 * S, NOW, 2.0) == 0
    assert calls == []  # an old file costs nothing: 20,000 of them are listed as before


@pytest.mark.parametrize(
    ("data", "unread_bytes"),
    [
        (LINES + PARTIAL, len(PARTIAL)),
        (LINES, 0),  # ends with its line end: every line is whole
        (LINES + b"494|live|ev|u|1|9|1\r\n", 0),
        (LINES + b"494|live|ev|u|1|9|1\r", len(b"494|live|ev|u|1|9|1\r")),  # CRLF half written
        (PARTIAL, len(PARTIAL)),  # no line end at all yet
        (b"", 0),
        (b"\n", 0),
        (LINES + b"x" * 200_000, 200_000),  # a tail longer than one block read backwards
        (b"y" * 150_000 + b"\n" + b"x" * 70_000, 70_000),
    ],
)
def test_a_file_changed_within_settle_keeps_its_last_line_back_until_it_has_its_line_end(
    data: bytes, unread_bytes: int
) -> None:
    assert unread_tail(reads(data), len(data), NOW - S // 2, NOW, 2.0) == unread_bytes
    assert unread_tail(reads(data), len(data), NOW - S // 2, NOW, 0) == 0  # --settle 0: today's behaviour


def test_only_the_tail_is_read_to_find_the_last_line_end() -> None:
    data = b"z" * 1_000_000 + b"\n" + PARTIAL
    calls: list[tuple[int, int]] = []
    assert lines_end(reads(data, calls), len(data)) == 1_000_001
    assert calls == [(1 << 16, len(data) - (1 << 16))]


def test_a_file_cut_short_while_its_tail_is_read_is_an_error() -> None:
    with pytest.raises(OSError, match="changed while it was being read"):
        lines_end(lambda size, offset: b"x", 10)


# --- the listing, and where it travels ------------------------------------------


def live_directory(tmp_path: Path) -> Path:
    """``app.log`` with a line half written just now, and quiet ``old.log`` and ``app.log.gz``."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "old.log").write_bytes(LINES + b"1|a|b|c|1|1|1")
    (inputs / "app.log.gz").write_bytes(b"")  # compressed: read whole whatever its age
    settled(inputs)
    (inputs / "app.log").write_bytes(LINES + PARTIAL)
    return inputs


def test_the_listing_leaves_out_the_last_line_of_a_file_being_written(tmp_path: Path) -> None:
    inputs = live_directory(tmp_path)
    listed = {info.name: info for info in find_inputs(Config(input_dir=inputs))}
    assert (listed["app.log"].unread, listed["app.log"].end) == (len(PARTIAL), len(LINES))
    assert listed["old.log"].unread == 0 and listed["app.log.gz"].unread == 0
    assert all(info.unread == 0 for info in find_inputs(Config(input_dir=inputs, settle=0)))


def test_the_decision_travels_with_the_file_list_to_every_process(tmp_path: Path) -> None:
    files = find_inputs(Config(input_dir=live_directory(tmp_path)))
    assert isinstance(files, FileList)
    copy = pickle.loads(pickle.dumps(files))  # what each child and Dask task gets
    assert list(copy) == list(files)
    assert [info.end for info in copy] == [len(LINES), 0, len(LINES) + 13]


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_settle_must_be_a_number_of_seconds_at_least_0(value: float) -> None:
    with pytest.raises(UsageError, match="--settle must be a number of seconds, at least 0"):
        Config(settle=value)


@pytest.mark.parametrize(
    ("value", "message"),
    [("-1", "at least 0, got '-1'"), ("soon", "'soon' is not a number of seconds"), ("nan", "at least 0")],
)
def test_a_bad_settle_exits_2_with_one_line(tmp_path: Path, value: str, message: str) -> None:
    result = run_cli("--input", tmp_path, "--output", tmp_path / "out", "--settle", value)
    assert result.returncode == 2
    assert message in result.stderr and "--settle" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- after the run: growth, and a last line that may be cut -----------------------


def listed(path: Path, unread_bytes: int = 0) -> InputFile:
    stat = path.stat()
    return InputFile(0, path.name, str(path), stat.st_size, (stat.st_dev, stat.st_ino), None, unread_bytes)


def test_what_a_file_gained_during_the_run_is_reported_unread(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(LINES + PARTIAL)
    info = listed(path, len(PARTIAL))
    assert unread([info]) == {0: Unread(len(PARTIAL), [UNFINISHED_LINE])}
    appended = b"83122\n495|live|ev|u|1|9|1\n"
    with open(path, "ab") as handle:
        handle.write(appended)
    assert unread([info]) == {0: Unread(len(PARTIAL) + len(appended), [UNFINISHED_LINE, GREW])}


def test_a_file_that_ended_with_its_line_end_may_grow(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(LINES)
    info = listed(path)
    assert unread([info]) == {}
    with open(path, "ab") as handle:
        handle.write(PARTIAL)
    assert unread([info]) == {0: Unread(len(PARTIAL), [GREW])}


@pytest.mark.parametrize("appended", [b"\n495|live|ev|u|1|9|1\n", b"\r\n", b"\n"])
def test_a_last_line_read_whole_may_be_followed_by_its_line_end(tmp_path: Path, appended: bytes) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(LINES + PARTIAL)  # quiet when listed: its last line was read
    info = listed(path)
    with open(path, "ab") as handle:
        handle.write(appended)
    assert unread([info]) == {0: Unread(len(appended), [GREW])}


@pytest.mark.parametrize("appended", [b"83122\n", b"8", b"\r", b"\rx"])
def test_a_last_line_read_and_then_continued_fails_the_run(tmp_path: Path, appended: bytes) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(LINES + PARTIAL)
    info = listed(path)
    with open(path, "ab") as handle:
        handle.write(appended)
    with pytest.raises(RunError, match=r"app\.log grew during the run after its last line, which had no line end"):
        unread([info])


def test_a_file_replaced_or_removed_since_is_not_reported(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(LINES)
    info = listed(path)
    other = tmp_path / "app.log.new"
    other.write_bytes(LINES * 3 + PARTIAL)
    other.replace(path)  # another file (a rotation) in its place
    assert unread([info]) == {}
    path.unlink()
    assert unread([info]) == {}


def test_each_file_with_bytes_not_read_has_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    files = [InputFile(i, f"f{i:02d}.log", f"/nowhere/f{i:02d}.log", 100, None, None, 7) for i in range(25)]
    with caplog.at_level(logging.WARNING, logger="mpevents"):
        found = unread(files)
    assert len(found) == 25
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == WARNED_FILES + 1
    assert lines[0] == "f00.log: 7 bytes unread: last line unfinished"
    assert lines[-1] == "and 5 more files with bytes unread (summary.json lists them)"


# --- --resume: the interrupted run's decision stands --------------------------------


def test_a_resumed_run_reads_each_file_as_the_interrupted_run_listed_it(tmp_path: Path) -> None:
    inputs = live_directory(tmp_path)
    staging = tmp_path / "staging"
    staging.mkdir()
    start(staging, find_inputs(Config(input_dir=inputs)))
    header, _ = read(staging / JOURNAL_NAME)
    assert header is not None
    now = find_inputs(Config(input_dir=inputs, settle=0))  # later, with another --settle: the tail would count
    check_inputs(header, now)
    assert {info.name: info.unread for info in as_listed(header, now)} == {
        "app.log": len(PARTIAL), "app.log.gz": 0, "old.log": 0,
    }  # fmt: skip


def test_a_journal_without_unread_tails_still_reads() -> None:
    old = msgspec.msgpack.encode([1, [["a.log", 5, 1, 2, 3]]])  # a journal header from before --settle
    assert msgspec.msgpack.decode(old, type=Header).unread == {}


def test_a_file_that_grew_between_its_listing_and_the_journal_is_refused_on_resume(tmp_path: Path) -> None:
    inputs = live_directory(tmp_path)
    files = find_inputs(Config(input_dir=inputs))
    with open(inputs / "old.log", "ab") as handle:
        handle.write(b"\n")  # after the listing: that run reads old.log to its listed size
    staging = tmp_path / "staging"
    staging.mkdir()
    start(staging, files)
    header, _ = read(staging / JOURNAL_NAME)
    assert header is not None
    with pytest.raises(UsageError, match=r"old\.log changed since the interrupted run"):
        check_inputs(header, find_inputs(Config(input_dir=inputs)))


# --- end to end -----------------------------------------------------------------


def expected(contents: list[tuple[str, bytes]]) -> tuple[dict[str, bytes], dict[str, int]]:
    """The group files and totals the reference parser gives for these files' bytes, in input order."""
    groups: dict[str, list[bytes]] = {}
    totals = {"lines": 0, "valid": 0, "rejected": 0, "blank": 0}
    for _, data in sorted(contents, key=lambda item: os.fsencode(item[0])):
        for line in reference.split(data, file_start=True):
            totals["lines"] += 1
            outcome = reference.check(line)
            if outcome is None:
                totals["blank"] += 1
            elif isinstance(outcome, str):
                totals["rejected"] += 1
            else:
                totals["valid"] += 1
                groups.setdefault(f"group-{outcome['group_id']}.jsonl", []).append(reference.to_json(outcome))
    return {name: b"".join(rows) for name, rows in groups.items()}, totals


def group_files(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in out.glob("group-*.jsonl")}


def warnings_about(stderr: str, name: str) -> list[str]:
    """The warning lines that name ``name``: the whole of each, so a line folded in two would not pass."""
    return [line.rstrip() for line in stderr.splitlines() if name in line or "unread" in line]


def timeout_for(engine: tuple[str, ...]) -> float:
    return DASK_TIMEOUT_S if "dask" in engine else RUN_TIMEOUT_S


@pytest.mark.timeout(DASK_TIMEOUT_S + 30)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_line_still_being_written_never_becomes_a_record(tmp_path: Path, engine: tuple[str, ...]) -> None:
    """The issue's case: ``494|live|ev|u|123456|9|15875`` written, ``83122\\n`` still to come."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "a.log", 3_000, groups=9)
    settled(inputs)
    (inputs / "app.log").write_bytes(LINES + PARTIAL)
    out = tmp_path / "out"
    result = run_cli(
        "--input", inputs, "--output", out, *engine, "--chunk-bytes", "4K", "--no-progress",
        timeout=timeout_for(engine),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    groups, totals = expected([("a.log", (inputs / "a.log").read_bytes()), ("app.log", LINES)])
    assert group_files(out) == groups
    assert b'"timestamp":15875}' not in (out / "group-9.jsonl").read_bytes()
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["totals"] == totals
    assert summary["files"]["app.log"] == {
        "lines": 2, "valid": 2, "rejected": 0, "blank": 0, "bytes": len(LINES), "size_on_disk": len(LINES + PARTIAL),
        "compression": "none", "unread_bytes": len(PARTIAL), "unread_reasons": ["unfinished_line"],
    }  # fmt: skip
    assert "unread_bytes" not in summary["files"]["a.log"]
    assert summary["unread_bytes"] == len(PARTIAL)
    assert summary["bytes_read"] == (inputs / "a.log").stat().st_size + len(LINES)
    assert warnings_about(result.stderr, "app.log") == [
        f"mpevents: warning: app.log: {len(PARTIAL)} bytes unread: last line unfinished"
    ]
    assert temp_dirs(tmp_path) == []


@pytest.mark.timeout(DASK_TIMEOUT_S + 30)
@pytest.mark.parametrize("engine", ENGINES)
def test_settle_0_reads_every_last_line_as_before(tmp_path: Path, engine: tuple[str, ...]) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "app.log").write_bytes(LINES + PARTIAL)
    out = tmp_path / "out"
    result = run_cli("--input", inputs, "--output", out, *engine, "--settle", "0", "-q", timeout=timeout_for(engine))
    assert result.returncode == 0, result.stderr
    assert group_files(out) == expected([("app.log", LINES + PARTIAL)])[0]
    assert b'"timestamp":15875}' in (out / "group-9.jsonl").read_bytes()
    summary = json.loads((out / "summary.json").read_bytes())
    assert "unread_bytes" not in summary["files"]["app.log"] and summary["unread_bytes"] == 0


def test_a_quiet_file_has_its_last_line_read_without_a_line_end(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "app.log").write_bytes(LINES + PARTIAL)
    settled(inputs)
    out = tmp_path / "out"
    result = run_cli("--input", inputs, "--output", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert group_files(out) == expected([("app.log", LINES + PARTIAL)])[0]
    assert warnings_about(result.stderr, "app.log") == []


class Writer(threading.Thread):
    """An application logging into ``path``: each line in two writes, the
    second a few milliseconds after the first, so that the file mostly ends
    in the middle of a line. Starts appending once ``go()`` is true (the run
    has listed its input), stops when told or after WRITER_LIMIT_S."""

    def __init__(self, path: Path, mid_line: bool, go: Callable[[], bool]) -> None:
        super().__init__(daemon=True)
        self.path, self.mid_line, self.go = path, mid_line, go
        self.whole: list[bytes] = []  # every line written with its line end
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + WRITER_LIMIT_S
        while not self.go() and not self.stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.001)
        number = 1000
        line, written = (WHOLE, len(PARTIAL)) if self.mid_line else (None, 0)  # the file holds PARTIAL
        with open(self.path, "ab", buffering=0) as handle:
            while not self.stop.is_set() and time.monotonic() < deadline:
                if line is not None:  # the rest of the line begun last time
                    handle.write(line[written:] + b"\n")
                    self.whole.append(line)
                line, written = b"%d|live|ev|u|%d|9|1587583%03d" % (number, number, number % 1000), 15
                number += 1
                handle.write(line[:written])
                time.sleep(0.003)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)
        assert not self.is_alive()


@pytest.mark.timeout(DASK_TIMEOUT_S + 60)
@pytest.mark.parametrize(
    ("engine", "mid_line"),
    [
        *(
            pytest.param(*engine.values, True, id=f"listed-mid-line-{engine.id}", marks=engine.marks)
            for engine in ENGINES
        ),
        pytest.param(("-n", "1"), False, id="listed-at-a-line-end-local-1"),
    ],
)
def test_a_file_growing_during_the_run_is_read_as_it_was_listed(
    tmp_path: Path, engine: tuple[str, ...], mid_line: bool
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "a.log", 2_000, groups=9)
    settled(inputs)
    path = inputs / "app.log"
    prefill = LINES * 200 + (PARTIAL if mid_line else b"")
    path.write_bytes(prefill)
    out = tmp_path / "out"
    # The collector slowed down: the run lasts seconds after it has listed its input, while the writer writes.
    process = start_cli(
        "--input", inputs, "--output", out, *engine, "--chunk-bytes", "4K", "--no-progress",
        env={"MPEVENTS_FAILPOINTS": "collector_slow=0.1"},
    )  # fmt: skip
    writer = Writer(path, mid_line, lambda: bool(temp_dirs(tmp_path)) or process.poll() is not None)
    writer.start()
    try:
        _, stderr = process.communicate(timeout=timeout_for(engine))
    finally:
        process.kill()
        writer.finish()
    assert process.returncode == 0, stderr
    assert len(writer.whole) > 0  # it did write during the run
    listed_end = len(LINES * 200)
    groups, totals = expected([("a.log", (inputs / "a.log").read_bytes()), ("app.log", prefill[:listed_end])])
    assert group_files(out) == groups  # no record of a line the writer had not finished
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["totals"] == totals
    entry = summary["files"]["app.log"]
    assert entry["lines"] == entry["valid"] + entry["rejected"] + entry["blank"] == 400
    assert (entry["bytes"], entry["size_on_disk"]) == (listed_end, len(prefill))
    assert entry["unread_reasons"] == (["unfinished_line", "grew"] if mid_line else ["grew"])
    grown = entry["unread_bytes"] - (len(PARTIAL) if mid_line else 0)
    assert 0 < grown <= path.stat().st_size - len(prefill)
    assert summary["unread_bytes"] == entry["unread_bytes"]
    reasons = "last line unfinished, " if mid_line else ""
    count = entry["unread_bytes"]
    assert warnings_about(stderr, "app.log") == [
        f"mpevents: warning: app.log: {count:,} bytes unread: {reasons}grew by {grown:,}"
    ]


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_a_quiet_last_line_that_turns_out_unfinished_fails_the_run(tmp_path: Path) -> None:
    """Quiet for longer than --settle, then the writer goes on with the same line: the record read may be cut."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "a.log", 2_000, groups=9)
    (inputs / "app.log").write_bytes(LINES + PARTIAL)
    settled(inputs)
    out = tmp_path / "out"
    assert run_cli("--input", inputs, "--output", out, "-q", "--pattern", "a.log").returncode == 0
    before = tree(out)
    process = start_cli(
        "--input", inputs, "--output", out, "--chunk-bytes", "4K", "-q",
        env={"MPEVENTS_FAILPOINTS": "collector_slow=0.1"},
    )  # fmt: skip
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not temp_dirs(tmp_path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    with open(inputs / "app.log", "ab") as handle:
        handle.write(b"83122\n")
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 1, stderr
    assert "app.log grew during the run after its last line, which had no line end, was read" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert tree(out) == before and temp_dirs(tmp_path) == []


@pytest.mark.timeout(RUN_TIMEOUT_S * 3)
def test_an_interrupted_resume_run_keeps_its_decision_when_it_goes_on(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for seed in range(1, 3):
        genlog(inputs / f"part-{seed}.log", 15_000, groups=7, seed=seed)
    (inputs / "z-live.log").write_bytes(LINES + PARTIAL)
    settled(inputs)  # the same to every run below; --settle says which count it as being written
    args = ("-n", "2", "--no-progress", "--chunk-bytes", "16K")
    reference_out = tmp_path / "reference"
    assert run_cli("--input", inputs, "--output", reference_out, *args, "--settle", "1e6").returncode == 0
    out = tmp_path / "out"
    process = start_cli(
        "--input", inputs, "--output", out, *args, "--resume", "--settle", "1e6",
        env={"MPEVENTS_FAILPOINTS": "collector_slow=0.01,checkpoint_s=0.05"},
    )  # fmt: skip
    staging = tmp_path / f".mpevents-resume-{out.name}"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while read(staging / JOURNAL_NAME)[1].lines < 3_000:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.kill()  # main only: its children follow it
    process.communicate(timeout=30)
    result = run_cli("--input", inputs, "--output", out, *args, "--resume", "--settle", "0")
    assert result.returncode == 0, result.stderr
    assert tree(out) == tree(reference_out)
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["files"]["z-live.log"]["unread_reasons"] == ["unfinished_line"]


def test_the_journal_records_unread_tails(tmp_path: Path) -> None:
    files = find_inputs(Config(input_dir=live_directory(tmp_path)))
    staging = tmp_path / "staging"
    staging.mkdir()
    start(staging, files)
    header, _ = read(staging / JOURNAL_NAME)
    assert header is not None and header.unread == {0: len(PARTIAL)}  # app.log only


def test_a_dask_task_never_reads_past_where_the_listing_ended(tmp_path: Path) -> None:
    """A quiet file whose last line, cut by a task boundary, got its line end during the run."""
    from mpevents.core.framing import Flag, Span
    from mpevents.dask.tasks import process_range

    path = tmp_path / "app.log"
    path.write_bytes(LINES + PARTIAL)
    info = listed(path)
    with open(path, "ab") as handle:
        handle.write(b"83122\n495|live|ev|u|1|9|1\n")
    tasks = [Span(0, 0, 0, len(LINES) + 3), Span(0, 1, len(LINES) + 3, info.size, Flag.LAST)]
    (tmp_path / "parts").mkdir()  # the engine makes it before the first task
    outcomes = [process_range(info, task, 16, str(tmp_path / "parts")) for task in tasks]
    assert [(outcome.end, outcome.result.lines) for outcome in outcomes] == [(info.size, 3), (info.size, 0)]


def test_a_warning_in_a_pipe_is_one_line_however_long_the_file_name(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    name = "a-log-file-whose-name-is-much-longer-than-any-terminal-would-show-on-one-line-" * 2 + "x.log"
    (inputs / name).write_bytes(LINES + PARTIAL)  # just written: its last line is unfinished
    result = run_cli("--input", inputs, "--output", tmp_path / "out", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"mpevents: warning: {name}: {len(PARTIAL)} bytes unread: last line unfinished"
    ]
