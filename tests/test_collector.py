"""The local collector's ordering, counts, credits and group files, without processes."""

from __future__ import annotations

import json
import os
import resource
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from mpevents.core.framing import Flag, Span
from mpevents.core.inputs import InputFile
from mpevents.core.spec import REASONS, process_chunk
from mpevents.local.collector import GroupFiles, local_collector
from mpevents.local.ledger import Ledger, LedgerFlag
from mpevents.local.messages import LocalPayload, Result
from mpevents.observe.board import Board, CollectorField
from mpevents.output.collector import Collector
from mpevents.output.report import FileCounts


def make_results(file: int, chunks: list[bytes]) -> list[Result]:
    results = []
    offset = 0
    for seq, data in enumerate(chunks):
        flags = Flag.LAST if seq == len(chunks) - 1 else Flag.NONE
        results.append(Result(Span(file, seq, offset, offset + len(data), flags), process_chunk(data)))
        offset += len(data)
    return results


@pytest.fixture
def files(tmp_path: Path) -> list[InputFile]:
    return [InputFile(0, "a.log", str(tmp_path / "a.log"), 0), InputFile(1, "b.log", str(tmp_path / "b.log"), 0)]


def test_results_in_any_order_are_written_in_input_order(tmp_path: Path, files: list[InputFile]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    a = make_results(0, [b"1|a|b|c|1|1|1\nbad\n", b"2|a|b|c|1|1|1\n", b"3|a|b|c|1|2|1\n\nbad2\n"])
    b = make_results(1, [b"4|a|b|c|1|1|1\n", b"bad3\n"])
    board = Board(2, 1)
    ledger = Ledger(2, 1)
    collector = local_collector(files, out, 16, board, ledger)
    for result in [b[1], a[2], b[0], a[2], a[1], a[0], b[1]]:  # shuffled, with duplicates
        collector.add(result.span, result.result)
    assert collector.done
    collector.close()
    ids = [json.loads(row)["id"] for row in (out / "group-1.jsonl").read_text().splitlines()]
    assert ids == [1, 2, 4]
    rejects = [json.loads(row) for row in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in rejects] == [("a.log", 2), ("a.log", 6), ("b.log", 2)]
    report = collector.report()
    assert report.files == [FileCounts(6, 3, 2, 1), FileCounts(2, 1, 1, 0)]
    assert dict(zip(REASONS, report.reasons))["field_count"] == 3 and sum(report.reasons) == 3
    assert board.collector(CollectorField.HEAD) == 2
    assert ledger.head() == 2 and ledger.resume_point(1) == (2, b[1].span.end)


def test_credits_come_back_when_written_and_when_dropped(tmp_path: Path, files: list[InputFile]) -> None:
    credits = threading.Semaphore(0)
    collector = local_collector(files[:1], tmp_path, 16, Board(1, 1), Ledger(1, 1, credits))
    result = make_results(0, [b"1|a|b|c|1|1|1\n"])[0]
    credited = result._replace(span=result.span._replace(flags=result.span.flags | LedgerFlag.CREDIT))
    collector.add(credited.span, credited.result)
    assert credits.acquire(blocking=False)
    assert not credits.acquire(blocking=False)
    collector.add(credited.span, credited.result)  # a repeat from a restarted reader
    collector.close()
    assert credits.acquire(blocking=False)


def test_group_files_stay_under_their_limit_and_append(tmp_path: Path) -> None:
    files = GroupFiles(tmp_path, 3)
    for round_ in range(3):
        for group in range(10):
            files.write(b"%d" % group, b"%d\n" % round_)
            assert len(files._open) <= 3
    files.close()
    for group in range(10):
        assert (tmp_path / f"group-{group}.jsonl").read_bytes() == b"0\n1\n2\n"


class RecordingSink:
    """A sink that only notes what it is given."""

    def __init__(self) -> None:
        self.written: list[tuple[int, int]] = []
        self.dropped: list[tuple[int, int]] = []
        self.closed = False

    def write(self, span: Span, payload: LocalPayload) -> None:
        self.written.append((span.file, span.seq))

    def drop(self, span: Span, payload: LocalPayload) -> None:
        self.dropped.append((span.file, span.seq))

    def flush(self, groups: Iterable[bytes]) -> dict[bytes, int]:
        return dict.fromkeys(groups, 0)

    def close(self) -> None:
        self.closed = True


def test_the_core_hands_its_sink_each_result_in_input_order_and_each_repeat_to_drop(
    tmp_path: Path, files: list[InputFile]
) -> None:
    a = make_results(0, [b"1|a|b|c|1|1|1\n", b"bad\n"])
    b = make_results(1, [b"2|a|b|c|1|3|1\n"])
    sink = RecordingSink()
    collector = Collector(files, tmp_path, sink, Board(2, 1))
    for result in [b[0], a[1], b[0], a[0], a[1]]:
        collector.add(result.span, result.result)
    collector.close()
    assert sink.written == [(0, 0), (0, 1), (1, 0)]
    assert sink.dropped == [(1, 0), (0, 1)]
    assert sink.closed and collector.done
    assert not list(tmp_path.glob("group-*"))  # the records are the sink's to write
    rejects = [json.loads(row) for row in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"], r["raw"]) for r in rejects] == [("a.log", 2, "bad")]
    assert collector.report().groups == {"1": 1, "3": 1}


def test_group_files_raise_the_soft_descriptor_limit_they_need(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 600:
        pytest.skip("the hard limit leaves no room to raise the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))  # the kind of soft limit that capped the open files
    try:
        files = GroupFiles(tmp_path, 500)
        assert files.limit == 500
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 500
        for group in range(500):  # every group file open at once: none closed to make room
            files.write(str(group).encode(), b"{}\n")
        assert len(os.listdir(f"/proc/{os.getpid()}/fd")) > 500
        files.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
