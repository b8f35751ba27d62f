"""The schema on the command line, and the names of the files its groups go to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpevents.core.schema import V1, Schema, parse, to_toml
from mpevents.output.names import OUTPUT_NAMES, group_file_name
from tests import _reference
from tests.conftest import run_cli, tree
from tests.test_schema_spec import good_value, lines, schemas


def test_print_schema_prints_the_built_in_v1_or_the_file_given(tmp_path: Path) -> None:
    result = run_cli("--print-schema")
    assert result.returncode == 0, result.stderr
    assert parse(result.stdout) == V1
    schema = tmp_path / "s.toml"
    schema.write_text('delimiter = ";"\n[[field]]\nname = "a"\ntype = "bool"\n')
    printed = run_cli("--schema", schema, "--print-schema").stdout
    assert printed == 'name = "s"\ndelimiter = ";"\nmax_line_bytes = 65536\n\n[[field]]\nname = "a"\ntype = "bool"\n'


def test_infer_schema_prints_a_draft_that_reads_back(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"{i}\t{'GET' if i % 2 else 'PUT'}\t{i / 4}\t\n" for i in range(50)))
    result = run_cli("--infer-schema", log)
    assert result.returncode == 0, result.stderr
    schema = parse(result.stdout)
    assert schema.delimiter == "\t" and schema.name == "app"
    assert [(f.type, f.optional, f.values) for f in schema.fields] == [
        ("uint", False, None), ("string", False, ("GET", "PUT")), ("float", False, None), ("string", True, None),
    ]  # fmt: skip


def test_a_bad_schema_is_exit_2_in_one_line_naming_the_key(tmp_path: Path, corpus: Path) -> None:
    schema = tmp_path / "bad.toml"
    schema.write_text('group_by = "nothing"\n[[field]]\nname = "a"\ntype = "uint"\n')
    result = run_cli("--input", corpus, "--output", tmp_path / "out", "--schema", schema)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "group_by: 'nothing' names no field" in result.stderr
    assert not (tmp_path / "out").exists()
    missing = run_cli("--input", corpus, "--output", tmp_path / "out", "--schema", tmp_path / "none.toml")
    assert missing.returncode == 2 and "cannot read schema" in missing.stderr


def test_v1_given_as_a_file_gives_the_built_in_output(tmp_path: Path, corpus: Path) -> None:
    schema = tmp_path / "v1.toml"
    schema.write_text(to_toml(V1))
    built_in, given_file = tmp_path / "a", tmp_path / "b"
    assert run_cli("--input", corpus, "--output", built_in, "-n", "2", "--no-progress").returncode == 0
    assert run_cli("--input", corpus, "--output", given_file, "-n", "2", "--schema", schema, "-q").returncode == 0
    assert tree(built_in) == tree(given_file)
    assert b'"name": "events-v1"' in (given_file / "summary.json").read_bytes()


@given(st.integers(0, 2**63 - 1))
def test_v1_group_names_are_the_ids_as_they_were(group: int) -> None:
    assert group_file_name(b"%d" % group) == f"group-{group}.jsonl"


@given(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=120) | st.sampled_from(["..", "."]))
def test_a_group_name_is_the_issue_encoding_and_stays_in_the_output_directory(value: str) -> None:
    name = group_file_name(value.encode())
    assert name == _reference.group_file_name(value)
    assert "/" not in name and name not in (".", "..") and len(name.encode()) <= 255
    assert OUTPUT_NAMES.fullmatch(name)


def test_values_alike_in_their_first_bytes_name_different_files() -> None:
    first, second = ("é" * 100 + "a").encode(), ("é" * 100 + "b").encode()
    assert group_file_name(first) != group_file_name(second)
    assert len(group_file_name(first)) == len("group-") + 180 + 1 + 16 + len(".jsonl")
    assert group_file_name(b"") == "records.jsonl"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schemas(), st.data())
def test_a_drawn_schema_runs_end_to_end_to_the_reference_for_any_workers_and_chunks(
    tmp_path_factory: pytest.TempPathFactory, schema: Schema, data: st.DataObject
) -> None:
    # Two files of a few hundred lines, valid and broken, CRLF among them: at
    # 1 KiB chunks each is cut into many spans, so the ordering and the
    # placing are exercised as well as the spec.
    root = tmp_path_factory.mktemp("drawn")
    inputs = root / "in"
    inputs.mkdir()
    (root / "schema.toml").write_text(to_toml(schema))
    valid = st.lists(st.tuples(*(good_value(field) for field in schema.fields)), min_size=1, max_size=10)
    for name in ("a.log", "b.log"):
        body = [schema.delimiter.join(row).encode() for row in data.draw(valid)] * 30
        odd = data.draw(st.lists(st.tuples(lines(schema), st.sampled_from([b"", b"\r"])), max_size=8))
        for i, (line, end) in enumerate(odd):
            body.insert((i * 37) % len(body), line + end)
        (inputs / name).write_bytes(b"\n".join(body) + b"\n")
    expected = _reference.expected_schema_output(inputs, schema)
    for workers, chunk in (("1", "1K"), ("3", "1K"), ("2", "64K")):
        out = root / f"out-{workers}-{chunk}"
        result = run_cli(
            "--input", inputs, "--output", out, "-n", workers, "--chunk-bytes", chunk,
            "--schema", root / "schema.toml", "-q",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        written = tree(out)
        summary = json.loads(written.pop("summary.json"))
        assert written == {name: body for name, body in expected.items() if name not in ("groups", "reasons")}
        assert summary["groups"] == expected["groups"]
        assert summary["rejected_by_reason"] == expected["reasons"]
