"""The schema model: reading, refusing, writing back, drafting, hashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpevents import REASONS
from mpevents.core.errors import EXIT_USAGE, UsageError
from mpevents.core.schema import V1, Field, Schema, SchemaError, infer, load, parse, to_toml

GOOD = """
name = "app"
delimiter = "\\t"
group_by = "host"
max_line_bytes = 1000

[[field]]
name = "host"
type = "string"
values = ["a", "b"]

[[field]]
name = "latency"
type = "float"
optional = true

[[field]]
name = "note"
type = "string"
max_bytes = 20
optional = true
"""


def test_a_schema_file_is_read_with_every_key() -> None:
    schema = parse(GOOD)
    assert schema == Schema(
        (
            Field("host", "string", values=("a", "b")),
            Field("latency", "float", optional=True),
            Field("note", "string", optional=True, max_bytes=20),
        ),
        "\t",
        "host",
        1000,
        "app",
    )
    assert schema.reasons() == (
        "line_too_long", "invalid_utf8", "field_count", "empty_field", "control_char", "bad_host", "bad_latency",
        "bad_note",
    )  # fmt: skip


def test_v1_reasons_are_the_spec_reasons_in_check_order() -> None:
    assert V1.reasons() == REASONS


@pytest.mark.parametrize("schema", [V1, parse(GOOD)])
def test_to_toml_reads_back_as_the_same_schema(schema: Schema) -> None:
    assert parse(to_toml(schema)) == schema


def test_the_hash_is_of_the_format_not_of_how_its_file_is_written(tmp_path: Path) -> None:
    written = tmp_path / "v1.toml"
    written.write_text("# the same, written by hand\n" + to_toml(V1).replace("\n\n", "\n\n\n"))
    assert load(written) == V1
    assert load(written).digest() == V1.digest()
    assert parse(GOOD).digest() != V1.digest()


def test_a_file_without_name_is_named_by_its_stem(tmp_path: Path) -> None:
    path = tmp_path / "mylog.toml"
    path.write_text('[[field]]\nname = "a"\ntype = "uint"\n')
    assert load(path).name == "mylog"
    assert load(path).group_by is None and load(path).delimiter == "|"


FIELD = '[[field]]\nname = "a"\ntype = "uint"\n'


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[[field]]\nname = "a"\ntype = "date"\n', "field[0].type"),
        (FIELD + FIELD, "field[1].name"),
        ('group_by = "b"\n' + FIELD, "group_by"),
        ('group_by = "a"\n[[field]]\nname = "a"\ntype = "uint"\noptional = true\n', "group_by"),
        ('group_by = "a"\n[[field]]\nname = "a"\ntype = "float"\n', "group_by"),
        ('delimiter = "||"\n' + FIELD, "delimiter"),
        ('delimiter = "é"\n' + FIELD, "delimiter"),
        ('delimiter = "\\n"\n' + FIELD, "delimiter"),
        ('delimiter = ""\n' + FIELD, "delimiter"),
        ("max_line_bytes = 0\n" + FIELD, "max_line_bytes"),
        ("max_line_bytes = 65537\n" + FIELD, "max_line_bytes"),
        ("max_line_bytes = true\n" + FIELD, "max_line_bytes"),
        ('colour = "red"\n' + FIELD, "colour"),
        ("", "field"),
        ('[[field]]\nname = "1a"\ntype = "uint"\n', "field[0].name"),
        ('[[field]]\nname = "a-b"\ntype = "uint"\n', "field[0].name"),
        ('[[field]]\ntype = "uint"\n', "field[0]"),
        ('[[field]]\nname = "a"\ntype = "uint"\nvalues = ["1"]\n', "field[0].values"),
        ('[[field]]\nname = "a"\ntype = "string"\nvalues = []\n', "field[0].values"),
        ('[[field]]\nname = "a"\ntype = "string"\nvalues = [1]\n', "field[0].values"),
        ('[[field]]\nname = "a"\ntype = "string"\nmax_bytes = 0\n', "field[0].max_bytes"),
        ('[[field]]\nname = "a"\ntype = "string"\noptional = "yes"\n', "field[0].optional"),
        ('[[field]]\nname = "a"\ntype = "string"\nwidth = 3\n', "field[0].width"),
        ("not toml = = =", "not TOML"),
    ],
)
def test_a_bad_schema_is_one_line_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(SchemaError) as error:
        parse(text, "s.toml")
    message = str(error.value)
    assert message.startswith("schema 's.toml': ") and f" {key}" in message and "\n" not in message
    assert error.value.exit_code == EXIT_USAGE


def test_an_unreadable_schema_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read schema"):
        load(tmp_path / "missing.toml")


def test_infer_drafts_the_narrowest_type_of_each_column() -> None:
    lines = [
        b"%d;%d;-%d;%d.5;%s;word%d;;%s" % (i % 2, i, i, i, b"true" if i % 2 else b"0", i, b"x" * (i % 3))
        for i in range(30)
    ]
    schema = infer(b"\n".join(lines) + b"\n")
    assert schema.delimiter == ";"
    kinds = [(field.type, field.optional) for field in schema.fields]
    assert kinds == [
        ("bool", False), ("uint", False), ("int", False), ("float", False), ("bool", False),
        ("string", False), ("string", True), ("string", True),
    ]  # fmt: skip
    assert schema.fields[5].values is None  # 30 distinct words
    assert schema.fields[7].values == ("x", "xx")
    assert [field.name for field in schema.fields] == [f"field{i}" for i in range(1, 9)]


def test_infer_picks_the_delimiter_that_cuts_every_line_alike() -> None:
    # Commas inside a field, tabs between: only the tab cuts every line into the same count.
    assert infer(b"a,b\t1\nc\t2\n").delimiter == "\t"
    with pytest.raises(UsageError, match="no delimiter"):
        infer(b"a|b\nc|d|e\n")
    # One broken line in a hundred is left out of the draft.
    assert [field.type for field in infer(b"1|2\n" * 99 + b"x|y|z\n").fields] == ["bool", "uint"]


def test_infer_looks_at_the_first_ten_thousand_lines() -> None:
    data = b"1|a\n" * 10_000 + b"x|a|b\n"
    assert [field.type for field in infer(data).fields] == ["bool", "string"]
