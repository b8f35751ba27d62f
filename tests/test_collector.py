"""The collector's ordering, counts and credits, and the placing of the group files, without processes."""

from __future__ import annotations

import itertools
import json
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path

import pytest

from mpevents.core.framing import Flag, Span
from mpevents.core.inputs import InputFile
from mpevents.core.spec import REASONS, process_chunk, process_chunk_parts
from mpevents.local.collector import LocalSink
from mpevents.local.ledger import Ledger, LedgerFlag
from mpevents.local.messages import PartResult
from mpevents.observe.board import Board, CollectorField
from mpevents.output import parts
from mpevents.output.collector import Collector
from mpevents.output.names import PARTS_DIR, group_file_name
from mpevents.output.parts import FEW_GROUPS, PartLog, PartRef, Placing, place, plan, write_order
from mpevents.output.rejects import encode
from mpevents.output.report import FileCounts
from tests.conftest import Checked, checked


def make_results(file: int, chunks: list[bytes], log: PartLog) -> list[tuple[Span, PartResult]]:
    """What a worker sends for each chunk of ``file``, its records appended to ``log``."""
    results = []
    offset = 0
    for seq, data in enumerate(chunks):
        flags = Flag.LAST if seq == len(chunks) - 1 else Flag.NONE
        parts = process_chunk_parts(data)
        result = PartResult(parts.lines, parts.blank, encode(parts.rejects), log.append(parts))
        results.append((Span(file, seq, offset, offset + len(data), flags), result))
        offset += len(data)
    return results


def place_all(collector: Collector[PartResult], sink: LocalSink, out: Path, shards: int) -> None:
    """What the collector and the workers do once every span is in."""
    write_order(sink.parts, sink.refs)
    for placing in plan(sink.refs, shards):
        collector.placed(place(sink.parts, out, placing))


@pytest.fixture
def files(tmp_path: Path) -> list[InputFile]:
    return [InputFile(0, "a.log", str(tmp_path / "a.log"), 0), InputFile(1, "b.log", str(tmp_path / "b.log"), 0)]


def test_results_in_any_order_are_written_in_input_order(tmp_path: Path, files: list[InputFile]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    logs = [PartLog(out / PARTS_DIR, "worker-a"), PartLog(out / PARTS_DIR, "worker-b")]
    a = make_results(0, [b"1|a|b|c|1|1|1\nbad\n", b"2|a|b|c|1|1|1\n", b"3|a|b|c|1|2|1\n\nbad2\n"], logs[0])
    b = make_results(1, [b"4|a|b|c|1|1|1\n", b"bad3\n"], logs[1])
    board = Board(2, 1)
    ledger = Ledger(2, 1)
    sink = LocalSink(out / PARTS_DIR, ledger)
    collector = Collector(files, out, sink, board)
    for span, result in [b[1], a[2], b[0], a[2], a[1], a[0], b[1]]:  # shuffled, with duplicates
        collector.add(span, result)
    assert collector.done
    assert not list(out.glob("group-*"))  # nothing is placed before every span is in
    place_all(collector, sink, out, 3)
    collector.close()
    ids = [json.loads(row)["id"] for row in (out / "group-1.jsonl").read_text().splitlines()]
    assert ids == [1, 2, 4]
    rejects = [json.loads(row) for row in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in rejects] == [("a.log", 2), ("a.log", 6), ("b.log", 2)]
    report = collector.report()
    assert report.files == [FileCounts(6, 3, 2, 1), FileCounts(2, 1, 1, 0)]
    assert dict(zip(REASONS, report.reasons))["field_count"] == 3 and sum(report.reasons) == 3
    assert board.collector(CollectorField.HEAD) == 2
    assert ledger.head() == 2 and ledger.resume_point(1) == (2, b[1][0].end)


def test_credits_come_back_when_written_and_when_dropped(tmp_path: Path, files: list[InputFile]) -> None:
    credits = threading.Semaphore(0)
    ledger = Ledger(1, 1, credits)
    collector = Collector(files[:1], tmp_path, LocalSink(tmp_path / PARTS_DIR, ledger), Board(1, 1))
    span, result = make_results(0, [b"1|a|b|c|1|1|1\n"], PartLog(tmp_path / PARTS_DIR, "worker"))[0]
    credited = span._replace(flags=span.flags | LedgerFlag.CREDIT)
    collector.add(credited, result)
    assert credits.acquire(blocking=False)
    assert not credits.acquire(blocking=False)
    collector.add(credited, result)  # a repeat from a restarted reader
    collector.close()
    assert credits.acquire(blocking=False)


class RecordingSink:
    """A sink that only notes what it is given."""

    def __init__(self) -> None:
        self.written: list[tuple[int, int]] = []
        self.dropped: list[tuple[int, int]] = []
        self.closed = False

    def write(self, span: Span, payload: Checked) -> None:
        self.written.append((span.file, span.seq))

    def drop(self, span: Span, payload: Checked) -> None:
        self.dropped.append((span.file, span.seq))

    def flush(self, groups: Iterable[bytes]) -> dict[bytes, int]:
        return dict.fromkeys(groups, 0)

    def durable(self) -> tuple[list[str], list[PartRef]]:
        return [], []

    def close(self) -> None:
        self.closed = True


def test_the_core_hands_its_sink_each_result_in_input_order_and_each_repeat_to_drop(
    tmp_path: Path, files: list[InputFile]
) -> None:
    a = chunk_results(0, [b"1|a|b|c|1|1|1\n", b"bad\n"])
    b = chunk_results(1, [b"2|a|b|c|1|3|1\n"])
    sink = RecordingSink()
    collector: Collector[Checked] = Collector(files, tmp_path, sink, Board(2, 1))
    for span, result in [b[0], a[1], b[0], a[0], a[1]]:
        collector.add(span, result)
    collector.close()
    assert sink.written == [(0, 0), (0, 1), (1, 0)]
    assert sink.dropped == [(1, 0), (0, 1)]
    assert sink.closed and collector.done
    assert not list(tmp_path.glob("group-*"))  # the records are the sink's to write
    rejects = [json.loads(row) for row in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"], r["raw"]) for r in rejects] == [("a.log", 2, "bad")]
    assert collector.report().groups == {"1": 1, "3": 1}


def chunk_results(file: int, chunks: list[bytes]) -> list[tuple[Span, Checked]]:
    """Results that hold their records, as the Dask engine's say their sizes."""
    results, offset = [], 0
    for seq, data in enumerate(chunks):
        flags = Flag.LAST if seq == len(chunks) - 1 else Flag.NONE
        results.append((Span(file, seq, offset, offset + len(data), flags), checked(process_chunk(data))))
        offset += len(data)
    return results


GROUPED = b"".join(b"%d|log|ev\xc3\xa9nt|u|%d|%d|1\n" % (i, i * 7, (i * 7919) % 97) for i in range(3_000))
"""3,000 records in 97 groups, with text outside ASCII."""
FEW = b"".join(b"%d|log|event|u|%d|%d|1\n" % (i, i * 7, i % 2) for i in range(6_000))
"""6,000 records in 2 groups: a chunk's piece of a group is big enough to be copied in the kernel."""
MIXED = b"".join(
    b"%d|log|event|u|%d|%d|1\n" % (i, i * 7, 0 if i >= 4_000 and i % 2 else (i * 7919) % 97) for i in range(8_000)
)
"""8,000 records in 97 groups, but half of the last 4,000 in group 0: its piece of the first chunk is
small, of the next ones 32 KiB or more. Read with the small pieces where a round takes all 97 groups
(small pieces on average), copied in the kernel in the rounds of a small budget, which take a few."""


@pytest.mark.parametrize("shards", [1, 2, 7])
@pytest.mark.parametrize("budget", [1 << 30, 4_000])
@pytest.mark.parametrize(
    ("data", "chunk"), [(GROUPED, 9_000), (FEW, 100_000), (MIXED, 100_000)], ids=["97-groups", "2-groups", "mixed"]
)
@pytest.mark.parametrize("split", ["planned", "by-hash"])
@pytest.mark.parametrize("index_cache", ["kept", "none"])
def test_any_placings_and_any_budget_place_the_same_bytes_as_the_reference(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shards: int,
    budget: int,
    data: bytes,
    chunk: int,
    split: str,
    index_cache: str,
) -> None:
    if index_cache == "none":  # every index read again in each round
        monkeypatch.setattr(parts, "INDEX_CACHE_BYTES", 0)
    out = tmp_path / "out"
    out.mkdir()
    log = PartLog(out / PARTS_DIR, "worker")
    chunks = _chunked(data, chunk)
    refs = [ref for chunk in chunks if (ref := log.append(process_chunk_parts(chunk))) is not None]
    write_order(out / PARTS_DIR, refs)
    counts: dict[bytes, int] = {}
    placings = plan(refs, shards) if split == "planned" else [Placing(k, shards, 0, len(refs)) for k in range(shards)]
    for placing in placings:
        for group, (count, _) in place(out / PARTS_DIR, out, placing, budget=budget).items():
            counts[group] = counts.get(group, 0) + count
    whole = process_chunk(data)
    pieces = [len(records) for piece in chunks for _, records in process_chunk(piece).groups.values()]
    assert max(pieces) >= (32_768 if chunk > 9_000 else 0)
    assert counts == {group: count for group, (count, _) in whole.groups.items()}
    for group, (_, records) in whole.groups.items():
        assert (out / group_file_name(group)).read_bytes() == records


def test_a_placing_done_again_over_its_own_output_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = PartLog(out / PARTS_DIR, "worker")
    refs = [log.append(process_chunk_parts(GROUPED))]
    log.append(process_chunk_parts(b"9|a|b|c|1|1|1\n"))  # a block no ref names: a dead worker's last
    write_order(out / PARTS_DIR, refs)
    first = place(out / PARTS_DIR, out, Placing(0, 2, 0, 1))
    before = {path.name: path.read_bytes() for path in out.glob("group-*")}
    assert place(out / PARTS_DIR, out, Placing(0, 2, 0, 1), budget=1_000) == first  # its worker died after it
    assert {path.name: path.read_bytes() for path in out.glob("group-*")} == before
    place(out / PARTS_DIR, out, Placing(1, 2, 0, 1))
    whole = process_chunk(GROUPED)
    assert sorted(path.name for path in out.glob("group-*")) == sorted(group_file_name(g) for g in whole.groups)


def test_a_placing_by_hashes_done_again_after_dying_midway_leaves_the_same_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = PartLog(out / PARTS_DIR, "worker")
    cut = GROUPED.index(b"\n", 40_000) + 1  # two blocks of whole lines
    refs = [ref for data in (GROUPED[:cut], GROUPED[cut:]) if (ref := log.append(process_chunk_parts(data)))]
    write_order(out / PARTS_DIR, refs)
    for placing in (Placing(0, 2, 0, len(refs)), Placing(1, 2, 0, len(refs))):
        place(out / PARTS_DIR, out, placing)
    whole = process_chunk(GROUPED)
    expected = {group_file_name(group): records for group, (_, records) in whole.groups.items()}
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == expected
    # Placing 0 killed midway: of its files, some whole, one torn in its
    # middle (a killed writer never truncates), the rest never made.
    mine = sorted(group_file_name(group) for group in whole.groups if zlib.crc32(group) < Placing(0, 2, 0, 0).hashes[1])
    torn = mine[len(mine) // 3]
    with open(out / torn, "r+b") as file:
        file.seek(len(expected[torn]) // 2)
        file.write(b"torn")
    for name in mine[len(mine) // 3 + 1 :]:
        (out / name).unlink()
    place(out / PARTS_DIR, out, Placing(0, 2, 0, len(refs)))  # done again by its worker's replacement
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == expected


def test_a_few_groups_are_placed_by_ranges_of_blocks_and_many_by_ranges_of_hashes(tmp_path: Path) -> None:
    few = [PartRef("log", 0, size, 0, 3) for size in (10, 10, 10, 30, 10, 10, 20)]
    placings = plan(few, 3)
    assert placings == [Placing(0, 1, 0, 3), Placing(1, 1, 3, 5), Placing(2, 1, 5, 7)]  # 30, 40, 30 bytes
    many = [*few, PartRef("log", 0, 10, 0, FEW_GROUPS + 1)]
    assert plan(many, 3) == [Placing(k, 3, 0, len(many)) for k in range(3)]
    assert plan([], 3) == []


def _chunked(data: bytes, chunk: int) -> list[bytes]:
    """``data`` in chunks of whole lines, as a reader cuts it."""
    chunks, at = [], 0
    while at < len(data):
        end = data.rfind(b"\n", at, at + chunk) + 1
        chunks.append(data[at:end])
        at = end
    return chunks


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("data", [GROUPED, FEW, MIXED], ids=["97-groups", "2-groups", "mixed"])
def test_epochs_placed_one_after_another_write_the_files_that_one_placing_writes(
    tmp_path: Path, data: bytes, shards: int
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = PartLog(out / PARTS_DIR, "worker", segment_bytes=20_000)
    refs = [ref for chunk in _chunked(data, 6_000) if (ref := log.append(process_chunk_parts(chunk))) is not None]
    assert len({ref.log for ref in refs}) > 2  # the part log is cut into files
    counts: dict[bytes, int] = {}
    sizes: dict[bytes, int] = {}  # what the collector keeps between epochs
    cuts = [0, 1, len(refs) // 2, len(refs)]
    for first, last in itertools.pairwise(cuts):
        write_order(out / PARTS_DIR, refs[first:last], first, sizes, final=last == len(refs))
        for placing in plan(refs[first:last], shards, base=first):
            for group, (count, size) in place(out / PARTS_DIR, out, placing).items():
                counts[group] = counts.get(group, 0) + count
                sizes[group] = max(sizes.get(group, 0), size)
    whole = process_chunk(data)
    assert counts == {group: count for group, (count, _) in whole.groups.items()}
    expected = {group_file_name(group): records for group, (_, records) in whole.groups.items()}
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == expected
    assert sizes == {group: len(records) for group, (_, records) in whole.groups.items()}


def test_a_placing_of_an_epoch_already_placed_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = PartLog(out / PARTS_DIR, "worker", segment_bytes=1)  # a file per block
    chunks = _chunked(GROUPED, 9_000)
    refs = [ref for chunk in chunks if (ref := log.append(process_chunk_parts(chunk))) is not None]
    half = len(refs) // 2
    write_order(out / PARTS_DIR, refs[:half], 0, {}, final=False)
    sizes = {group: size for group, (_, size) in place(out / PARTS_DIR, out, Placing(0, 1, 0, half)).items()}
    before = {path.name: path.read_bytes() for path in out.glob("group-*")}
    for ref in refs[:half]:  # the epoch is placed: its part log files go
        (out / PARTS_DIR / ref.log).unlink()
    (out / PARTS_DIR / parts.ORDER_NAME).unlink()
    # Its worker died after sending the result: a copy, done again between epochs, and in the next.
    assert place(out / PARTS_DIR, out, Placing(0, 1, 0, half)) == {}
    write_order(out / PARTS_DIR, refs[half:], half, sizes, final=True)
    assert place(out / PARTS_DIR, out, Placing(0, 1, 0, half)) == {}
    assert {path.name: path.read_bytes() for path in out.glob("group-*")} == before
    place(out / PARTS_DIR, out, Placing(0, 1, half, len(refs)))
    whole = process_chunk(b"".join(chunks))
    assert {path.name: path.read_bytes() for path in out.glob("group-*")} == {
        group_file_name(group): records for group, (_, records) in whole.groups.items()
    }


def test_a_placing_whose_part_log_file_is_gone_in_its_own_epoch_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = PartLog(out / PARTS_DIR, "worker", segment_bytes=1)
    refs = [ref for chunk in _chunked(GROUPED, 9_000) if (ref := log.append(process_chunk_parts(chunk))) is not None]
    for final in (False, True):
        write_order(out / PARTS_DIR, refs, 0, {}, final=final)
        (out / PARTS_DIR / refs[-1].log).unlink(missing_ok=True)
        with pytest.raises(FileNotFoundError):  # never taken for a copy of a placed epoch's placing
            place(out / PARTS_DIR, out, Placing(0, 1, 0, len(refs)))


def test_a_part_log_file_goes_once_whole_seen_and_placed(tmp_path: Path) -> None:
    parts_dir = tmp_path / PARTS_DIR
    log = PartLog(parts_dir, "worker", segment_bytes=50_000)  # blocks of 32 KiB or so
    sink = LocalSink(parts_dir, Ledger(1, 1), segment_bytes=50_000)
    chunks = _chunked(GROUPED, 9_000)
    results = make_results(0, chunks, log)
    names = [result.ref.log for _, result in results if result.ref is not None]
    assert names[0] == names[1] != names[2]  # two blocks fill the first file
    for span, result in results[:1]:
        sink.write(span, result)
    sink.remove_placed(len(sink.refs))
    sink.close()  # the removals are on a thread of their own: waits for them
    assert (parts_dir / names[0]).exists()  # its second block is not seen yet
    sink.drop(*results[1])  # seen as a repeat: never placed
    for span, result in results[2:]:
        sink.write(span, result)
    sink.remove_placed(1)
    sink.close()
    assert not (parts_dir / names[0]).exists()
    assert (parts_dir / names[2]).exists()  # its blocks are not placed
    sink.remove_placed(len(sink.refs))
    sink.close()
    assert (parts_dir / names[-1]).exists()  # the last file is not whole: more blocks may come
    assert [path.name for path in parts_dir.iterdir()] == [names[-1]]


def test_a_part_log_file_that_cannot_be_removed_fails_the_collector(tmp_path: Path) -> None:
    # Removed on a thread of its own, its error is raised on the collector's all the same.
    parts_dir = tmp_path / PARTS_DIR
    log = PartLog(parts_dir, "worker", segment_bytes=50_000)
    sink = LocalSink(parts_dir, Ledger(1, 1), segment_bytes=50_000)
    results = make_results(0, _chunked(GROUPED, 9_000), log)
    for span, result in results:
        sink.write(span, result)
    first = results[0][1].ref
    assert first is not None
    (parts_dir / first.log).unlink()
    (parts_dir / first.log).mkdir()  # unlink() of a directory fails: EISDIR
    (parts_dir / first.log / "keep").write_bytes(b"")
    sink.remove_placed(len(sink.refs))
    with pytest.raises(IsADirectoryError):
        sink.close()


def test_a_late_copy_of_a_placing_by_hashes_never_moves_a_file_over_what_the_next_epoch_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = PartLog(out / PARTS_DIR, "worker")
    refs = [ref for chunk in _chunked(GROUPED, 9_000) if (ref := log.append(process_chunk_parts(chunk))) is not None]
    half = len(refs) // 2
    sizes: dict[bytes, int] = {}
    for first, last in ((0, half), (half, len(refs))):
        write_order(out / PARTS_DIR, refs[first:last], first, sizes, final=last == len(refs))
        for placing in plan(refs[first:last], 2, by_hash=True, base=first):
            for group, (_, size) in place(out / PARTS_DIR, out, placing).items():
                sizes[group] = size
    after = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    # A copy of epoch 0's first placing that read its order before the epoch was placed.
    write_order(out / PARTS_DIR, refs[:half], 0, {}, final=False)
    place(out / PARTS_DIR, out, Placing(0, 2, 0, half))
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == after
    whole = process_chunk(GROUPED)
    assert after == {group_file_name(group): records for group, (_, records) in whole.groups.items()}
