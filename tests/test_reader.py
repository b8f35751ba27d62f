"""Chunking: whole lines, contiguous, deterministic from any chunk boundary."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpevents._messages import FLAG_LAST, FLAG_TRUNCATED, Chunk
from mpevents._reader import KEEP_BYTES, Piece, iter_chunks, read_chunk
from mpevents._spec import process_chunk

line_lengths = st.sampled_from([0, 1, 2, 5, 40, KEEP_BYTES - 1, KEEP_BYTES, KEEP_BYTES + 1, 100_000])
lines = st.lists(st.tuples(line_lengths, st.sampled_from([b"\n", b"\r\n"])), max_size=12)
chunk_sizes = st.sampled_from([1, 2, 3, 7, 64, 4096, 70_000, 1 << 20])


def build(spec: list[tuple[int, bytes]], cut_end: bool) -> bytes:
    data = b"".join(b"x" * length + end for length, end in spec)
    return data[:-1] if cut_end and data else data


@settings(max_examples=150, deadline=None)
@given(lines, st.booleans(), chunk_sizes, st.data())
def test_chunks_cover_the_file_in_whole_lines(
    spec: list[tuple[int, bytes]], cut_end: bool, size: int, data: st.DataObject
) -> None:
    content = build(spec, cut_end)
    pieces = list(iter_chunks(io.BytesIO(content), size))
    position = 0
    for piece in pieces:
        assert piece.offset == position
        assert piece.data.endswith(b"\n") or piece.end == len(content)
        position = piece.end
    assert position == len(content)
    # Same lines, except that over-long ones may be cut to KEEP_BYTES.
    expected = content.split(b"\n")
    got = b"".join(piece.data for piece in pieces).split(b"\n")
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        assert have == want or (len(want) > KEEP_BYTES and have == want[:KEEP_BYTES])
    if pieces:
        # Restarting at any boundary cuts the same chunks again.
        k = data.draw(st.integers(0, len(pieces) - 1))
        assert list(iter_chunks(io.BytesIO(content), size, pieces[k].offset)) == pieces[k:]
        j = data.draw(st.integers(k, len(pieces) - 1))
        assert list(iter_chunks(io.BytesIO(content), size, pieces[k].offset, pieces[j].end)) == pieces[k : j + 1]


def test_an_overlong_line_is_kept_short_and_still_rejected(tmp_path: Path) -> None:
    content = b"1|a|b|c|1|1|1\n" + b"y" * 3_000_000 + b"\r\n" + b"2|a|b|c|1|1|1\n"
    path = tmp_path / "big.log"
    path.write_bytes(content)
    with open(path, "rb") as handle:
        pieces = list(iter_chunks(handle, 1024))
    long_piece = next(piece for piece in pieces if piece.truncated)
    assert len(long_piece.data) == KEEP_BYTES + 1
    assert long_piece.end - long_piece.offset == 3_000_002
    result = process_chunk(b"".join(piece.data for piece in pieces))
    assert [reject.reason for reject in result.rejects] == ["line_too_long"]
    assert result.valid == 2
    # A worker reads the same bytes from the chunk's place in the file.
    chunk = Chunk(0, 1, long_piece.offset, long_piece.end, FLAG_TRUNCATED)
    assert read_chunk(str(path), chunk) == long_piece.data
    normal = pieces[0]
    assert read_chunk(str(path), Chunk(0, 0, normal.offset, normal.end, 0)) == normal.data


@settings(max_examples=100, deadline=None)
@given(lines, st.booleans(), chunk_sizes)
def test_a_reader_frames_the_chunks_that_workers_read(
    tmp_path_factory: pytest.TempPathFactory, spec: list[tuple[int, bytes]], cut_end: bool, size: int
) -> None:
    content = build(spec, cut_end)
    path = tmp_path_factory.mktemp("frames") / "in.log"
    path.write_bytes(content)
    with_data = list(iter_chunks(io.BytesIO(content), size))
    framed = list(iter_chunks(io.BytesIO(content), size, with_data=False))
    assert [(p.offset, p.end, p.truncated) for p in framed] == [(p.offset, p.end, p.truncated) for p in with_data]
    for seq, piece in enumerate(framed):
        assert piece.data == b""
        flags = (FLAG_TRUNCATED if piece.truncated else 0) | (FLAG_LAST if seq == len(framed) - 1 else 0)
        assert read_chunk(str(path), Chunk(0, seq, piece.offset, piece.end, flags)) == with_data[seq].data


def test_a_worker_refuses_a_chunk_whose_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "in.log"
    path.write_bytes(b"1|a|b|c|1|1|1\n" * 10)  # chunks of 5 lines: [0, 70), [70, 140)
    first, last = Chunk(0, 0, 0, 70, 0), Chunk(0, 1, 70, 140, FLAG_LAST)
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
    chunk, identity = Chunk(0, 0, 0, 70, 0), (stat.st_dev, stat.st_ino)
    assert read_chunk(str(path), chunk, identity).count(b"\n") == 5
    rotated = tmp_path / "new.log"  # the same bytes, but another file: as after a log rotation
    rotated.write_bytes(path.read_bytes())
    rotated.replace(path)
    assert read_chunk(str(path), chunk) == b"1|a|b|c|1|1|1\n" * 5  # unchecked, it would pass
    with pytest.raises(OSError, match="replaced while it was being read"):
        read_chunk(str(path), chunk, identity)


def test_empty_input_gives_no_chunk() -> None:
    assert list(iter_chunks(io.BytesIO(b""), 10)) == []


def test_crlf_is_never_split_from_its_line() -> None:
    content = b"ab\r\ncd\r\n"
    pieces = list(iter_chunks(io.BytesIO(content), 3))
    assert pieces == [Piece(0, 4, b"ab\r\n", False), Piece(4, 8, b"cd\r\n", False)]


def test_a_file_that_shrinks_while_it_is_read_is_an_error() -> None:
    handle = io.BytesIO(b"1|a|b|c|1|1|1\n" * 100)
    pieces = iter_chunks(handle, 100)
    next(pieces)
    handle.truncate(500)
    with pytest.raises(OSError, match="changed while it was being read"):
        list(pieces)
