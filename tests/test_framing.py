"""Framing, on its own: spans of whole lines, contiguous, deterministic from any
span boundary, and read back as the worker reads them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpevents.core.framing import KEEP_BYTES, Flag, Span, frames, line_start, read_chunk, stream_frames
from mpevents.core.spec import process_chunk

line_lengths = st.sampled_from([0, 1, 2, 5, 40, KEEP_BYTES - 1, KEEP_BYTES, KEEP_BYTES + 1, 100_000])
lines = st.lists(st.tuples(line_lengths, st.sampled_from([b"\n", b"\r\n"])), max_size=12)
chunk_sizes = st.sampled_from([1, 2, 3, 7, 64, 4096, 70_000, 1 << 20])


def build(spec: list[tuple[int, bytes]], cut_end: bool) -> bytes:
    data = b"".join(b"x" * length + end for length, end in spec)
    return data[:-1] if cut_end and data else data


def spans_of(content: bytes, size: int, start: int = 0, seq: int = 0, stop: int | None = None) -> list[Span]:
    return list(frames(io.BytesIO(content), 0, len(content), size, start, seq, stop))


@settings(max_examples=150, deadline=None)
@given(lines, st.booleans(), chunk_sizes, st.data())
def test_spans_cover_the_file_in_whole_lines_and_read_back_its_lines(
    tmp_path_factory: pytest.TempPathFactory,
    spec: list[tuple[int, bytes]],
    cut_end: bool,
    size: int,
    data: st.DataObject,
) -> None:
    content = build(spec, cut_end)
    path = tmp_path_factory.mktemp("frames") / "in.log"
    path.write_bytes(content)
    spans = spans_of(content, size)
    assert [span.seq for span in spans] == list(range(len(spans)))
    assert [bool(span.flags & Flag.LAST) for span in spans] == [k == len(spans) - 1 for k in range(len(spans))]
    position = 0
    for span in spans:
        assert span.start == position
        assert content[span.end - 1 : span.end] == b"\n" or span.end == len(content)
        position = span.end
    assert position == len(content)
    # Read back as a worker does: the same lines, except that over-long ones may be cut to KEEP_BYTES.
    read = [read_chunk(str(path), span) for span in spans]
    expected = content.split(b"\n")
    got = b"".join(read).split(b"\n")
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        assert have == want or (len(want) > KEEP_BYTES and have == want[:KEEP_BYTES])
    if spans[0].end > spans[0].start:
        # Restarting at any boundary cuts the same spans again.
        k = data.draw(st.integers(0, len(spans) - 1))
        assert spans_of(content, size, spans[k].start, k) == spans[k:]
        j = data.draw(st.integers(k, len(spans) - 1))
        assert spans_of(content, size, spans[k].start, k, spans[j].end) == spans[k : j + 1]


@settings(max_examples=150, deadline=None)
@given(lines, st.booleans(), chunk_sizes, st.data())
def test_a_stream_is_cut_into_the_spans_of_the_same_file_with_their_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    spec: list[tuple[int, bytes]],
    cut_end: bool,
    size: int,
    data: st.DataObject,
) -> None:
    content = build(spec, cut_end)
    path = tmp_path_factory.mktemp("stream") / "in.log"
    path.write_bytes(content)
    spans = spans_of(content, size)
    streamed = list(stream_frames(io.BytesIO(content), 0, size))
    assert [span for span, _ in streamed] == spans
    assert [chunk for _, chunk in streamed] == [read_chunk(str(path), span) for span in spans]
    # A stream read again up to any span boundary goes on with the same spans.
    k = data.draw(st.integers(0, len(spans) - 1))
    stream = io.BytesIO(content)
    stream.seek(spans[k].start)
    assert [span for span, _ in stream_frames(stream, 0, size, k, spans[k].start)] == spans[k:]


def test_an_overlong_line_is_kept_short_and_still_rejected(tmp_path: Path) -> None:
    content = b"1|a|b|c|1|1|1\n" + b"y" * 3_000_000 + b"\r\n" + b"2|a|b|c|1|1|1\n"
    path = tmp_path / "big.log"
    path.write_bytes(content)
    with open(path, "rb") as handle:
        spans = list(frames(handle, 0, len(content), 1024))
    long_span = next(span for span in spans if span.flags & Flag.TRUNCATED)
    assert long_span.end - long_span.start == 3_000_002
    kept = read_chunk(str(path), long_span)
    assert len(kept) == KEEP_BYTES + 1 and kept.endswith(b"\n")
    result = process_chunk(b"".join(read_chunk(str(path), span) for span in spans))
    assert [reject.reason for reject in result.rejects] == ["line_too_long"]
    assert result.valid == 2


def test_an_empty_file_or_a_file_resumed_at_its_end_is_one_empty_last_span() -> None:
    assert spans_of(b"", 10) == [Span(0, 0, 0, 0, Flag.LAST)]
    assert spans_of(b"ab\n", 10, 3, 4) == [Span(0, 4, 3, 3, Flag.LAST)]
    assert spans_of(b"ab\ncd\n", 10, 0, 0, stop=0) == []  # an empty range within a file: nothing


def test_line_start_finds_where_a_ranges_lines_begin() -> None:
    handle = io.BytesIO(b"ab\ncd\nef")
    assert [line_start(handle, position) for position in range(9)] == [0, 3, 3, 3, 6, 6, 6, 8, 8]  # 8: the end


def test_a_worker_refuses_a_chunk_whose_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "in.log"
    path.write_bytes(b"1|a|b|c|1|1|1\n" * 10)  # chunks of 5 lines: [0, 70), [70, 140)
    first, last = Span(0, 0, 0, 70), Span(0, 1, 70, 140, Flag.LAST)
    assert read_chunk(str(path), first).count(b"\n") == 5
    path.write_bytes(b"1|a|b|c|1|1|1\n" * 8)  # shorter: the last chunk is no longer all there
    with pytest.raises(OSError, match="changed while it was being read"):
        read_chunk(str(path), last)
    path.write_bytes(b"1|a|b|c|1|1|1 and more\n" * 10)  # no line end where the first chunk ends
    with pytest.raises(OSError, match="changed while it was being read"):
        read_chunk(str(path), first)


def test_a_worker_refuses_a_file_put_in_the_place_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"1|a|b|c|1|1|1\n" * 10)
    stat = path.stat()
    chunk, identity = Span(0, 0, 0, 70), (stat.st_dev, stat.st_ino)
    assert read_chunk(str(path), chunk, identity).count(b"\n") == 5
    rotated = tmp_path / "new.log"  # the same bytes, but another file: as after a log rotation
    rotated.write_bytes(path.read_bytes())
    rotated.replace(path)
    assert read_chunk(str(path), chunk) == b"1|a|b|c|1|1|1\n" * 5  # unchecked, it would pass
    with pytest.raises(OSError, match="replaced while it was being read"):
        read_chunk(str(path), chunk, identity)


def test_crlf_is_never_split_from_its_line() -> None:
    assert spans_of(b"ab\r\ncd\r\n", 3) == [Span(0, 0, 0, 4), Span(0, 1, 4, 8, Flag.LAST)]


def test_a_file_that_shrinks_while_it_is_framed_is_an_error() -> None:
    handle = io.BytesIO(b"1|a|b|c|1|1|1\n" * 100)
    spans = frames(handle, 0, 1400, 100)
    next(spans)
    handle.truncate(500)
    with pytest.raises(OSError, match="changed while it was being read"):
        list(spans)
