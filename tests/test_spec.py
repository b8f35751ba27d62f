"""The record spec, rule by rule, without processes."""

from __future__ import annotations

import json

import pytest
import sequential as reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpevents import REASONS, check_line, process_chunk
from mpevents.core.spec import _FLUSH_BYTES, encode_record, process_chunk_parts
from tests.conftest import real_traffic

VALID = b"17|log3|appsetup|tom|24123|2|1587583122"
VALID_JSON = (
    b'{"id":17,"log":"log3","event":"appsetup","user":"tom","value":24123,"group_id":2,"timestamp":1587583122}\n'
)


def reason(line: bytes) -> str | None:
    outcome = check_line(line)
    return outcome if isinstance(outcome, str) or outcome is None else "valid"


def with_field(index: int, value: bytes) -> bytes:
    fields = VALID.split(b"|")
    fields[index] = value
    return b"|".join(fields)


def test_the_example_line_encodes_exactly() -> None:
    result = process_chunk(VALID + b"\n")
    assert result.groups == {b"2": (1, VALID_JSON)}
    outcome = check_line(VALID)
    assert not isinstance(outcome, str) and outcome is not None
    assert encode_record(outcome) == VALID_JSON


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a" * 65_537, "line_too_long"),
        (b"\xff" * 70_000, "line_too_long"),  # length is checked first
        (b"", None),
        (b"\xff|log|e|u|1|1|1", "invalid_utf8"),
        (b"1|caf\xe9|e|u|1|1|1", "invalid_utf8"),
        (b"1|\xed\xa0\x80|e|u|1|1|1", "invalid_utf8"),  # an encoded surrogate
        (b"1|\xc0\xaf|e|u|1|1|1", "invalid_utf8"),  # an overlong encoding
        (b"1|a|b|c|1|1", "field_count"),
        (b"1|a|b|c|1|1|1|1", "field_count"),
        (b"no separators", "field_count"),
        (b"||||||", "bad_id"),
        (with_field(0, b"x1"), "bad_id"),
        (with_field(0, b"+1"), "bad_id"),
        (with_field(0, b"-1"), "bad_id"),
        (with_field(0, b" 1"), "bad_id"),
        (with_field(0, "١".encode()), "bad_id"),  # an Arabic-Indic digit is not ASCII
        (with_field(0, b"9223372036854775808"), "bad_id"),
        (with_field(0, b"00000000000000000001"), "bad_id"),  # 20 digits
        (with_field(1, b""), "empty_field"),
        (with_field(3, b""), "empty_field"),
        (with_field(2, b"a\tb"), "control_char"),
        (with_field(2, b"a\x7fb"), "control_char"),
        (with_field(2, b"\x00"), "control_char"),
        (with_field(1, b"\x01").replace(b"|appsetup|", b"||"), "control_char"),  # field 2 before field 3
        (with_field(4, b""), "bad_value"),
        (with_field(4, b"-"), "bad_value"),
        (with_field(4, b"+5"), "bad_value"),
        (with_field(4, b"1.5"), "bad_value"),
        (with_field(4, b"9223372036854775808"), "bad_value"),
        (with_field(4, b"-9223372036854775809"), "bad_value"),
        (with_field(5, b"0x2"), "bad_group_id"),
        (with_field(5, b"9223372036854775808"), "bad_group_id"),
        (with_field(5, b""), "bad_group_id"),
        (with_field(6, b"1587583122 "), "bad_timestamp"),
        (with_field(6, b"99999999999999999999"), "bad_timestamp"),
    ],
)
def test_each_rule_gives_its_reason(line: bytes, expected: str | None) -> None:
    assert reason(line) == expected
    if expected is not None:
        assert expected in REASONS


@pytest.mark.parametrize(
    "line",
    [
        with_field(0, b"9223372036854775807"),
        with_field(0, b"0000000000000000007"),  # 19 digits with leading zeros
        with_field(4, b"-9223372036854775808"),
        with_field(4, b"9223372036854775807"),
        with_field(5, b"9223372036854775807"),
        with_field(6, b"0"),
        b"1|" + b"a" * (65_536 - 12) + b"|b|c|1|1|1",  # exactly 65,536 bytes
    ],
)
def test_boundaries_that_are_valid(line: bytes) -> None:
    assert reason(line) == "valid"


def test_65536_bytes_is_the_last_valid_length() -> None:
    at_limit = b"1|" + b"a" * (65_536 - 12) + b"|b|c|1|1|1"
    assert len(at_limit) == 65_536
    over = at_limit.replace(b"|b|", b"|bb|")
    assert len(over) == 65_537
    assert process_chunk(at_limit + b"\n").valid == 1
    assert process_chunk(over + b"\n").rejects[0].reason == "line_too_long"


def test_numbers_are_canonical_in_the_output() -> None:
    line = b"007|a|b|c|-0|0002|0000000000000000010"
    ((_, data),) = process_chunk(line + b"\n").groups.values()
    assert json.loads(data) == {
        "id": 7,
        "log": "a",
        "event": "b",
        "user": "c",
        "value": 0,
        "group_id": 2,
        "timestamp": 10,
    }
    assert b'"value":0,' in data
    assert list(process_chunk(line + b"\n").groups) == [b"2"]


def test_strings_go_through_unchanged() -> None:
    line = b"1|" + b'say "hi"' + b"|back\\slash|" + "zoë ユーザー 😀 ".encode() + b"|1|1|1"
    ((_, data),) = process_chunk(line + b"\n").groups.values()
    assert json.loads(data)["log"] == 'say "hi"'
    assert json.loads(data)["event"] == "back\\slash"
    assert json.loads(data)["user"] == "zoë ユーザー 😀 "
    assert "zoë ユーザー 😀".encode() in data  # UTF-8 left unescaped


def test_crlf_bom_and_missing_final_newline() -> None:
    data = b"\xef\xbb\xbf" + VALID + b"\r\n" + VALID + b"\r\n\r\n" + VALID + b"\r"
    result = process_chunk(data, file_start=True)
    assert (result.lines, result.blank, result.valid, result.rejects) == (4, 1, 3, [])
    # A BOM is removed only at the start of a file.
    assert process_chunk(b"\xef\xbb\xbf" + VALID, file_start=False).rejects[0].reason == "bad_id"


def test_only_one_trailing_cr_is_removed() -> None:
    result = process_chunk(VALID + b"\r\r\n")
    assert result.rejects[0].reason == "bad_timestamp"
    assert result.rejects[0].raw == VALID.decode() + "\r"


def test_a_lone_cr_line_at_the_end_is_blank() -> None:
    result = process_chunk(VALID + b"\n\r")
    assert (result.lines, result.blank, result.valid) == (2, 1, 1)


def test_reject_raw_is_the_first_1024_bytes_escaped() -> None:
    line = b"\xff" + b"x" * 2000
    (reject,) = process_chunk(line + b"\n").rejects
    assert reject.raw == "\\xff" + "x" * 1023
    assert reject.line == 1


def test_line_numbers_count_blank_and_rejected_lines() -> None:
    data = b"\n".join([VALID, b"", b"bad", VALID, b"also|bad"]) + b"\n"
    result = process_chunk(data)
    assert [(r.line, r.reason) for r in result.rejects] == [(3, "field_count"), (5, "field_count")]
    assert (result.lines, result.blank, result.valid) == (5, 1, 2)


def test_many_groups_keep_line_order() -> None:
    lines = [b"%d|a|b|c|%d|%d|1" % (i, i, i % 7) for i in range(1, 200)]
    result = process_chunk(b"\n".join(lines) + b"\n")
    assert len(result.groups) == 7
    for group, (count, data) in result.groups.items():
        ids = [json.loads(row)["id"] for row in data.splitlines()]
        assert ids == sorted(ids) and len(ids) == count
        assert all(i % 7 == int(group) for i in ids)


def test_empty_chunk() -> None:
    assert process_chunk(b"") == (0, 0, {}, [])


# --- property: the worker's result equals the reference parser's ---------------

FIELD_VALUES = [
    b"", b"0", b"7", b"007", b"-0", b"-12", b"+1", b" 1", b"1 ", b"x",
    b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808", b"-9223372036854775809",
    b"18446744073709551615", b"99999999999999999999", b"000000000000000000001",
    b"log3", b"appsetup", b"tom", b'say "hi"', b"a\\b", b"\t", b"a\x7f", b"\x00", b"caf\xe9", b"\xed\xa0\x80",
    "zoë".encode(), "ユーザー".encode(), "😀".encode(), "\u2028".encode(), b"\x1f", b"\r", b" ",
]  # fmt: skip

field = st.one_of(
    st.sampled_from(FIELD_VALUES), st.binary(max_size=6).filter(lambda b: b"\n" not in b and b"|" not in b)
)
structured = st.lists(field, min_size=5, max_size=9).map(b"|".join)
plain_valid = st.tuples(
    st.integers(0, 2**63 - 1), st.integers(-(2**63), 2**63 - 1), st.integers(0, 2**63 - 1), st.integers(0, 9)
).map(lambda t: b"%d|log|ev|u s|%d|%d|%d" % (t[0], t[1], t[3], t[2]))
line = st.one_of(structured, plain_valid, st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")))
terminator = st.sampled_from([b"\n", b"\n", b"\r\n", b"\r\r\n"])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(line, terminator), max_size=25), st.booleans(), st.booleans(), st.booleans())
def test_worker_matches_reference_parser(
    lines: list[tuple[bytes, bytes]], drop_last: bool, bom: bool, start: bool
) -> None:
    data = b"".join(text + end for text, end in lines)
    if drop_last and data.endswith(b"\n"):
        data = data[:-1]
    if bom:
        data = b"\xef\xbb\xbf" + data
    result = process_chunk(data, file_start=start)
    expected = reference.parse(data, file_start=start)
    assert (result.lines, result.blank, result.groups, [tuple(r) for r in result.rejects]) == expected


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_match_reference_parser(data: bytes) -> None:
    result = process_chunk(data)
    assert (result.lines, result.blank, result.groups, [tuple(r) for r in result.rejects]) == reference.parse(data)


# The bulk path checks a whole window of lines column by column. These lines
# are all printable ASCII, so that only the per-field rules (field count,
# empty fields, canonical numbers, length) can tell a window is not all plain.
printable_field = st.one_of(
    st.sampled_from([b"", b"0", b"00", b"07", b"-", b"-0", b"-07", b"7-", b"1" * 18, b"1" * 19, b"9" * 20, b"a b"]),
    st.text(alphabet="0123456789-a ", max_size=20).map(str.encode),
)
printable_line = st.one_of(
    st.lists(printable_field, min_size=1, max_size=16).map(b"|".join),
    st.tuples(st.integers(0, 6), printable_field).map(lambda t: with_field(*t)),  # one field out of place
)
word = st.sampled_from([b"log", b"7", b"0"])  # digits too, so that no column gives a shifted line away
short_valid = st.tuples(st.integers(0, 10**18 - 1), word, st.integers(-(10**18) + 1, 10**18 - 1)).map(
    lambda t: b"%d|%b|ev|%b|%d|1|%d" % (t[0], t[1], t[1], t[2], t[0])
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(short_valid, max_size=8), printable_line, st.lists(short_valid, max_size=8))
def test_column_checks_match_reference_parser(before: list[bytes], odd: bytes, after: list[bytes]) -> None:
    # A window of plain lines with one odd line among them.
    data = b"".join(line + b"\n" for line in [*before, odd, *after])
    result = process_chunk(data)
    assert (result.lines, result.blank, result.groups, [tuple(r) for r in result.rejects]) == reference.parse(data)


ODD_FIELDS = [b"", b"00", b"07", b"-", b"-0", b"-07", b"7-", b"1" * 19, b"9" * 19, b"9" * 20, b"a b"]


@pytest.mark.parametrize("index", range(7))
@pytest.mark.parametrize("value", ODD_FIELDS)
def test_one_odd_field_among_plain_lines_matches_reference_parser(index: int, value: bytes) -> None:
    lines = [b"%d|log|ev|u|%d|1|%d" % (i, i - 3, i) for i in range(6)]
    lines[3] = with_field(index, value)
    data = b"\n".join(lines) + b"\n"
    result = process_chunk(data)
    assert (result.lines, result.blank, result.groups, [tuple(r) for r in result.rejects]) == reference.parse(data)


@pytest.mark.parametrize("fields", [(6, 8), (2, 12), (3, 11)])
def test_lines_whose_field_counts_make_up_for_each_other_are_rejected(fields: tuple[int, int]) -> None:
    # 6 + 8 fields make 14 = 2 x 7: a count of fields per window cannot see
    # it; with all-digit fields no column holds a byte out of place either.
    short, long = (b"|".join([b"1"] * count) for count in fields)
    data = short + b"\n1|2|3|4|5|6|7\n" + long + b"\n"
    result = process_chunk(data)
    assert [(r.line, r.reason) for r in result.rejects] == [(1, "field_count"), (3, "field_count")]
    record = b'{"id":1,"log":"2","event":"3","user":"4","value":5,"group_id":6,"timestamp":7}\n'
    assert result.groups == {b"6": (1, record)}


def test_a_line_of_fifteen_fields_is_not_two_records() -> None:
    # Its end falls where the end of a second 7-field line would.
    data = b"|".join([b"1"] * 15) + b"\n1|2|3|4|5|6|7\n"
    result = process_chunk(data)
    assert [(r.line, r.reason) for r in result.rejects] == [(1, "field_count")]
    assert result.valid == 1


def test_windows_of_plain_lines_match_the_line_by_line_encoding() -> None:
    # Many windows, several groups, one reject in the middle: the bulk and
    # exact paths together give the records in line order per group.
    lines = [b"%d|log%d|ev|u|%d|%d|%d" % (i, i % 9, i * 7 - 500, i % 5, 1587583122 + i) for i in range(20_000)]
    lines[12_345] = b"bad"
    result = process_chunk(b"\n".join(lines) + b"\n")
    assert result.lines == 20_000
    assert [(r.line, r.reason) for r in result.rejects] == [(12_346, "field_count")]
    expected: dict[bytes, list[bytes]] = {}
    for text in lines:
        record = check_line(text)
        if not isinstance(record, str) and record is not None:
            expected.setdefault(b"%d" % record.group_id, []).append(encode_record(record))
    assert result.groups == {group: (len(records), b"".join(records)) for group, records in expected.items()}


# --- real traffic: text of every UTF-8 length, escapes, many groups, broken lines ---
#
# The bulk path takes these lines too: text is checked as UTF-8 once per
# chunk, '"' and '\' are escaped for the whole window, and a broken line is
# taken out of its window's columns. Every case is held to the reference parser.

text_char = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),  # printable ASCII, '"' and '\' among them
    st.characters(min_codepoint=0x80, max_codepoint=0x7FF),  # two bytes in UTF-8
    st.characters(min_codepoint=0x800, max_codepoint=0xFFFF, exclude_categories=["Cs"]),  # three
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),  # four
    st.sampled_from(["\u2028", "\u2029", '"', "\\", "\x7f", "\t", "\x85", "é", "山"]),
)
text_field = st.text(text_char, min_size=0, max_size=8).map(str.encode)
number_field = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(lambda n: b"%d" % n),
    st.sampled_from([b"", b"007", b"-0", b"+1", b"1" * 19, b"9" * 19, b"9" * 20, b"1e3", b" 1", "١".encode()]),
)
real_line = st.tuples(
    st.integers(0, 10**18),
    text_field,
    text_field,
    text_field,
    st.integers(-(10**6), 10**6),
    st.integers(1, 300),  # many groups
    st.integers(1_500_000_000, 1_800_000_000),
).map(lambda t: b"%d|%b|%b|%b|%d|%d|%d" % t)
broken_line = st.one_of(
    st.tuples(st.integers(0, 6), number_field).map(lambda t: with_field(*t)),
    st.tuples(st.integers(1, 3), text_field).map(lambda t: with_field(*t)),
    st.lists(text_field, min_size=0, max_size=10).map(b"|".join),  # any number of fields, blank lines too
    st.sampled_from([b"1|\xff|e|u|1|1|1", b"1|caf\xe9|e|u|1|1|1", b"1|a|\xed\xa0\x80|u|1|1|1", b"\xc3"]),
)


def matches_reference(data: bytes) -> None:
    result = process_chunk(data)
    assert (result.lines, result.blank, result.groups, [tuple(r) for r in result.rejects]) == reference.parse(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(real_line, real_line, real_line, broken_line), max_size=30))
def test_real_traffic_matches_reference_parser(lines: list[bytes]) -> None:
    matches_reference(b"".join(line + b"\n" for line in lines))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(real_line, max_size=12), st.lists(broken_line, min_size=1, max_size=3), st.lists(real_line, max_size=12)
)
def test_broken_lines_between_plain_ones_match_reference_parser(
    before: list[bytes], broken: list[bytes], after: list[bytes]
) -> None:
    matches_reference(b"".join(line + b"\n" for line in [*before, *broken, *after]))


@pytest.mark.parametrize("seed", range(3))
def test_many_windows_of_real_traffic_match_reference_parser(seed: int) -> None:
    # 3,000 lines cross several windows, with broken lines where they fall.
    matches_reference(real_traffic(seed, 3_000))


def test_a_chunk_joins_its_records_in_parts() -> None:
    # Past _FLUSH_BYTES the records of a few groups are joined in a new part;
    # joined again, they are the records of the whole chunk, as the reference
    # has them. With hundreds of groups, each keeps one part.
    assert all(len(parts) == 1 for _, parts in process_chunk_parts(real_traffic(7, 12_000)).groups.values())
    data = real_traffic(7, 12_000, groups=5)
    assert len(data) > 2 * _FLUSH_BYTES
    parts = process_chunk_parts(data)
    assert max(len(group_parts) for _, group_parts in parts.groups.values()) > 2
    assert parts.size == sum(len(records) for _, records in process_chunk(data).groups.values())
    matches_reference(data)


def test_spec_bench_times_every_variant_against_the_template() -> None:
    """What ``scripts/bench.py`` reports for issue #11's target 2: every
    variant of the pytest-benchmark suite, each as a ratio to the template
    taken within its own rounds."""
    import spec_bench

    from tests.benchmarks.test_bench_spec import VARIANTS

    measured = spec_bench.measure(rounds=2)
    assert list(measured) == list(VARIANTS)
    assert measured["template"]["per_template"] == 1.0
    assert all(row["ns_per_line"] > 0 and row["per_template"] > 0 for row in measured.values())
