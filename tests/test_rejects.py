"""output.rejects: what a worker encodes and the collector numbers are the lines of rejected.jsonl."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from mpevents.core.spec import REASONS, Reject, process_chunk
from mpevents.output.rejects import encode, jsonl

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # a file name, a raw line: any text


@given(
    name=texts,
    first_line=st.integers(0, 10**12),
    rejects=st.lists(st.tuples(st.integers(1, 10**6), st.sampled_from(REASONS), texts), max_size=20),
)
def test_the_lines_are_those_of_one_struct_encoded_whole(
    name: str, first_line: int, rejects: list[tuple[int, str, str]]
) -> None:
    encoded = encode([Reject(line, reason, raw) for line, reason, raw in rejects])
    expected = b"".join(
        msgspec.json.encode({"file": name, "line": first_line + line, "reason": reason, "raw": raw}) + b"\n"
        for line, reason, raw in rejects
    )
    assert jsonl(name, first_line, encoded) == expected
    assert encoded.total == len(rejects)
    assert sum(encoded.reasons.values()) == len(rejects)
    assert all(encoded.reasons[reason] == sum(1 for _, r, _ in rejects if r == reason) for _, reason, _ in rejects)


def test_a_chunk_s_rejects_are_numbered_from_where_the_file_stood() -> None:
    result = process_chunk(b'1|a|b|c|1|1|1\nbad "line"\n2|a|b|c|x|1|1\n')
    lines = jsonl('logs/a "b".log', 40, encode(result.rejects)).decode().splitlines()
    assert [msgspec.json.decode(line) for line in lines] == [
        {"file": 'logs/a "b".log', "line": 42, "reason": "field_count", "raw": 'bad "line"'},
        {"file": 'logs/a "b".log', "line": 43, "reason": "bad_value", "raw": "2|a|b|c|x|1|1"},
    ]
    assert encode([]).total == 0 and jsonl("a.log", 0, encode([])) == b""
