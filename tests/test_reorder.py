"""The reorderer and the tally, on their own: no files, no processes."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mpevents.core.framing import Flag, Span
from mpevents.core.spec import REASONS, ChunkResult, Reject
from mpevents.output.journal import State
from mpevents.output.reorder import Reorderer
from mpevents.output.report import FileCounts
from mpevents.output.tally import Tally
from tests.conftest import checked


def spans_of(lengths: list[int]) -> list[Span]:
    """Every span of files with ``lengths`` spans each, in input order."""
    return [
        Span(file, seq, seq, seq + 1, Flag.LAST if seq == count - 1 else Flag.NONE)
        for file, count in enumerate(lengths)
        for seq in range(count)
    ]


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 5), min_size=1, max_size=5),
    repeats=st.lists(st.integers(0, 100), max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_arrival_order_and_any_repeats_give_input_order_exactly_once(
    lengths: list[int], repeats: list[int], seed: int
) -> None:
    spans = spans_of(lengths)
    arrivals = [*spans, *(spans[index % len(spans)] for index in repeats)]
    random.Random(seed).shuffle(arrivals)
    order: Reorderer[int] = Reorderer(len(lengths))
    taken: list[Span] = []
    dropped: list[Span] = []
    for number, span in enumerate(arrivals):
        if order.add(span, number) is not None:
            dropped.append(span)
        taken.extend(ready for ready, _ in order.ready())
    assert taken == spans
    assert sorted(dropped) == sorted(spans[index % len(spans)] for index in repeats)
    assert order.done


def test_a_repeat_is_given_back_whether_held_or_already_handed_back() -> None:
    first, second, last = spans_of([3])
    order: Reorderer[str] = Reorderer(1)
    assert order.add(second, "held") is None
    assert order.add(second, "again") == "again"  # held: the later copy is refused
    assert list(order.ready()) == []  # the first one is not there yet
    assert order.add(first, "first") is None
    assert list(order.ready()) == [(first, "first"), (second, "held")]
    assert order.add(first, "late") == "late"  # handed back already
    assert (order.head, order.next_seq(0)) == (0, 2)
    assert order.add(last, "last") is None
    assert [item for _, item in order.ready()] == ["last"]
    assert order.done and order.head == 1


def test_a_resumed_reorderer_starts_where_the_journal_left_off() -> None:
    spans = spans_of([2, 3])
    order: Reorderer[int] = Reorderer(2, head=1, next_seq=1)
    assert order.add(spans[0], 0) == 0  # a whole file before the head
    assert order.add(spans[2], 2) == 2  # written before the interruption
    assert order.add(spans[4], 4) is None
    assert order.add(spans[3], 3) is None
    assert [item for _, item in order.ready()] == [3, 4]
    assert order.done


def test_empty_input_is_done_at_once() -> None:
    assert Reorderer(0).done


def test_the_tally_counts_per_file_per_reason_and_per_group() -> None:
    tally = Tally(2)
    reject = Reject(2, "field_count", "bad")
    tally.add(Span(0, 0, 0, 10), checked(ChunkResult(3, 1, {b"1": (1, b"x\n")}, [reject])))
    tally.add(Span(0, 1, 10, 25, Flag.LAST), checked(ChunkResult(2, 0, {b"1": (1, b"y\n"), b"7": (1, b"z\n")}, [])))
    assert tally.lines(0) == 5 and tally.end(0) == 25 and tally.lines(1) == 0
    report = tally.report()
    assert report.files == [FileCounts(5, 3, 1, 1), FileCounts()]
    assert report.ends == [25, 0]
    assert report.groups == {"1": 2, "7": 1}
    assert report.reasons == [1 if reason == "field_count" else 0 for reason in REASONS]


def test_a_resumed_tally_goes_on_from_the_journal() -> None:
    reasons = [0] * len(REASONS)
    reasons[0] = 4
    state = State(
        head=1,
        next_seq=1,
        next_start=40,
        counts={0: FileCounts(10, 6, 4, 0), 1: FileCounts(3, 3, 0, 0)},
        ends={0: 100, 1: 40},
        groups={"5": (60, 9)},
        reasons=reasons,
    )
    tally = Tally.resumed(2, state)
    tally.add(Span(1, 1, 40, 50, Flag.LAST), checked(ChunkResult(1, 0, {b"5": (1, b"r\n")}, [])))
    report = tally.report()
    assert report.files == [FileCounts(10, 6, 4, 0), FileCounts(4, 4, 0, 0)]
    assert report.ends == [100, 50]
    assert report.groups == {"5": 10}
    assert report.reasons == reasons
