"""Lines checked against any schema: the exact path, the bulk path and the reference parser agree."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpevents.core.compiled import compiled
from mpevents.core.schema import TYPES, V1, Field, Schema
from mpevents.core.spec import process_chunk
from tests._reference import schema_check, schema_parse
from tests.conftest import real_traffic

DELIMITERS = [chr(byte) for byte in range(0x80) if chr(byte) not in "\n\r"]
TRICKY = [
    "", "0", "00", "007", "-0", "-", "-07", "+1", " 1", "1 ", "1_0", "1.5", "1.50", "1.", ".5", "-.5", "1e5", "1E-3",
    "1e+2", "1.e5", "1e", "e5", "1e309", "-1e309", "1e-400", "-0.0", "nan", "inf", "true", "false", "TRUE", "2",
    '"', "\\", 'a"b', "a\\b", '\\"', "é", "ユーザー", "😀", "\u2028", "\x00", "\t", "\x7f", "\x1f", "a\rb",
    "9" * 18, "9" * 19, "9" * 20, "1" * 19, "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "x" * 30, "log", "a", "b",
]  # fmt: skip
WORDS = ["a", "b", "log", "é", "ユーザー", 'say "hi"', "a\\b", "x y", "0", "true"]


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    count = draw(st.integers(1, 20))
    fields = []
    for i in range(count):
        kind = draw(st.sampled_from(TYPES))
        values = max_bytes = None
        if kind == "string":
            values = draw(st.none() | st.lists(st.sampled_from(WORDS), min_size=1, max_size=4, unique=True).map(tuple))
            max_bytes = draw(st.none() | st.integers(1, 12))
        fields.append(Field(f"f{i}", kind, draw(st.booleans()), values, max_bytes))
    eligible = [field.name for field in fields if not field.optional and field.type != "float"]
    group_by = draw(st.none() | st.sampled_from(eligible)) if eligible else None
    delimiter = draw(st.sampled_from(["|", "\t", ",", ";"]) | st.sampled_from(DELIMITERS))
    max_line_bytes = draw(st.sampled_from([65_536, 65_536, 40, 200]))
    return Schema(tuple(fields), delimiter, group_by, max_line_bytes, "drawn")


def good_value(field: Field) -> st.SearchStrategy[str]:
    if field.type == "uint":
        return st.integers(0, 2**63 - 1).map(str) | st.integers(0, 999).map(str)
    if field.type == "int":
        return st.integers(-(2**63), 2**63 - 1).map(str) | st.integers(-999, 999).map(str)
    if field.type == "float":
        finite = st.floats(allow_nan=False, allow_infinity=False)
        return finite.map(repr) | finite.map(lambda x: f"{x:.3f}") | st.integers(-999, 999).map(str)
    if field.type == "bool":
        return st.sampled_from(["true", "false", "1", "0"])
    if field.values is not None:
        return st.sampled_from(field.values)
    return st.sampled_from(WORDS) | st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=8)


@st.composite
def lines(draw: st.DrawFn, schema: Schema) -> bytes:
    values = [draw(good_value(field) | st.sampled_from(TRICKY)) for field in schema.fields]
    shape = draw(st.sampled_from(["fields"] * 6 + ["fewer", "more", "bytes", "blank", "long"]))
    if shape == "fewer" and len(values) > 1:
        del values[draw(st.integers(0, len(values) - 1))]
    elif shape == "more":
        values.insert(draw(st.integers(0, len(values))), draw(st.sampled_from(TRICKY)))
    line = schema.delimiter.join(values).encode().replace(b"\n", b"")
    if shape == "bytes":
        return line + draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"]))
    if shape == "blank":
        return b""
    if shape == "long":
        return line * (schema.max_line_bytes // max(len(line), 1) + 1)
    return line


@st.composite
def chunks(draw: st.DrawFn) -> tuple[Schema, bytes]:
    schema = draw(schemas())
    body = draw(st.lists(st.tuples(lines(schema), st.sampled_from([b"\n", b"\n", b"\r\n"])), max_size=30))
    return schema, b"".join(line + end for line, end in body)


def outcome(schema: Schema, data: bytes) -> object:
    result = process_chunk(data, file_start=True, schema=schema)
    return result.lines, result.blank, result.groups, [tuple(reject) for reject in result.rejects]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunks())
def test_the_exact_path_matches_the_reference_line_by_line(drawn: tuple[Schema, bytes]) -> None:
    schema, data = drawn
    check = compiled(schema).check
    for line in data.replace(b"\r\n", b"\n").split(b"\n"):
        expected = schema_check(schema, line)
        found = check(line)
        if isinstance(expected, tuple):
            assert isinstance(found, tuple)
            assert (found[0], found[1] + b"\n") == (expected[0].encode(), expected[1])
        else:
            assert found == expected


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunks())
def test_process_chunk_matches_the_reference_for_any_schema(drawn: tuple[Schema, bytes]) -> None:
    schema, data = drawn
    assert outcome(schema, data) == schema_parse(schema, data, file_start=True)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schemas(), st.data())
def test_windows_of_many_lines_match_the_reference(schema: Schema, data: st.DataObject) -> None:
    # Hundreds of lines, mostly valid: several windows, each with a few odd lines.
    valid = st.lists(st.tuples(*(good_value(field) for field in schema.fields)), min_size=1, max_size=20)
    rows = data.draw(valid)
    odd = data.draw(st.lists(lines(schema), max_size=5))
    body = [schema.delimiter.join(row).encode() for row in rows] * 20
    for i, line in enumerate(odd):
        body.insert((i * 97) % len(body), line)
    text = b"\n".join(body) + b"\n"
    assert outcome(schema, text) == schema_parse(schema, text)


def test_v1_through_the_schema_machinery_gives_v1_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    data = real_traffic(5, 6_000)
    expected = process_chunk(data)
    monkeypatch.setattr(Schema, "same_format", lambda self, other: False)  # the generic path for v1 too
    assert process_chunk(data, schema=V1) == expected


def test_records_of_every_type_are_written_as_msgspec_writes_them() -> None:
    schema = Schema(
        (
            Field("n", "uint"), Field("i", "int"), Field("x", "float"), Field("b", "bool"),
            Field("s", "string", optional=True), Field("t", "string", values=("a", 'q"')),
        ),
        delimiter="\t",
        group_by="t",
    )  # fmt: skip
    data = b'007\t-0\t1E3\t1\t\tq"\n1\t2\t1.50\tfalse\tzo\xc3\xab\ta\n'
    result = process_chunk(data, schema=schema)
    assert result.groups == {
        b'q"': (1, b'{"n":7,"i":0,"x":1000.0,"b":true,"s":null,"t":"q\\""}\n'),
        b"a": (1, '{"n":1,"i":2,"x":1.5,"b":false,"s":"zoë","t":"a"}\n'.encode()),
    }


@pytest.mark.parametrize("delimiter", list('0159.-+eEtf"\\ ,'))
def test_a_delimiter_that_can_be_part_of_a_value_cuts_lines_as_the_reference_does(delimiter: str) -> None:
    # The bulk path's pattern of a plain line leaves the delimiter out of every
    # field's: a digit, a sign, a point or an exponent's letter too.
    fields = (
        Field("u", "uint"),
        Field("i", "int", optional=True),
        Field("f", "float"),
        Field("b", "bool", optional=True),
        Field("s", "string", values=("true", "e1", "a.b", "x")),
        Field("t", "string", optional=True, max_bytes=6),
    )
    schema = Schema(fields, delimiter, "u", 65_536, "odd delimiter")
    plain = ["7", "-1", "2.5", "0", "x", "ok"]
    candidates = ["0", "10", "901", "9" * 19, "-5", "-0", "1.5", "1e5", "1E-3", "true", "1", "e1", "a.b", "", "t+f"]
    lines = []  # each candidate in each column, the other columns plain
    for column in range(len(fields)):
        for value in candidates:
            line = plain.copy()
            line[column] = value
            lines += [delimiter.join(line)] * 3
    data = ("\n".join(lines) + "\n").encode()
    assert outcome(schema, data) == schema_parse(schema, data)


def test_a_max_bytes_beyond_any_line_is_checked_like_no_limit() -> None:
    # 10^15 is past what a regular expression can count: the bulk path must still take the lines.
    fields = (Field("a", "uint"), Field("b", "string", max_bytes=10**15), Field("c", "string", max_bytes=3))
    schema = Schema(fields, "|", "a", 65_536, "huge limit")
    data = b"".join(b"%d|%s|%s\n" % (i, b"x" * (i % 50 + 1), b"y" * (i % 5 + 1)) for i in range(2_000))
    assert outcome(schema, data) == schema_parse(schema, data)


def test_allowed_values_that_begin_one_another_are_told_apart() -> None:
    # The bulk path tests allowed values as a trie: a value that is the start of
    # others, values whose first UTF-8 bytes are the same, a near miss of each.
    allowed = ("a", "ab", "abc", "abd", "b", "é", "è", "ée", "x y", "a" * 300)
    fields = (Field("k", "uint"), Field("v", "string", values=allowed), Field("w", "string", optional=True))
    schema = Schema(fields, "|", "k", 65_536, "trie")
    misses = ["", "abcd", "ab ", "e", "ê", "éé", "x", "a" * 299, "a" * 301, "abx", "ba"]
    data = "".join(f"{i}|{value}|{i % 3 or ''}\n" for i, value in enumerate((*allowed, *misses) * 40)).encode()
    assert outcome(schema, data) == schema_parse(schema, data)


def test_a_chain_of_allowed_values_each_beginning_the_next_is_checked_all_the_same() -> None:
    allowed = tuple("z" * n for n in range(1, 400))  # too deep a trie: the plain alternation
    schema = Schema((Field("k", "uint"), Field("v", "string", values=allowed)), "|", "k", 65_536, "chain")
    data = b"".join(b"%d|%s\n" % (n, b"z" * n) for n in range(0, 420, 7))
    assert outcome(schema, data) == schema_parse(schema, data)


def test_a_field_that_matches_a_plain_pattern_only_in_part_is_refused() -> None:
    # "1." and "2.5e" begin a float's optional parts; "ab" begins allowed values.
    # (On Python 3.11.0 to 3.11.4 a possessive group that matched in part kept
    # what it had read: "1." was written as 1.0, "2.5e" crashed the worker.)
    fields = (Field("f", "float"), Field("v", "string", values=("a", "abc", "abd")), Field("o", "int", optional=True))
    schema = Schema(fields, "|", "v", 65_536, "partial")
    lines = ["1.|a|1", "2.5e|a|", "2.5e+|abc|3", "7|ab|4", "8|abcd|", "1.5|abd|-", "3e7|a|1"] * 30
    data = ("\n".join(lines) + "\n").encode()
    assert outcome(schema, data) == schema_parse(schema, data)
