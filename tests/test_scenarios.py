"""The scenario matrix: every engine over every shape of input real logs
bring, each run held to the reference parser (tests/_reference.py).

Engines: the local engine with one worker (1 MiB chunks), with three
(4 KiB chunks, so that chunk ends fall everywhere, mid-line among them), with
two writing zstd (``--compress``: compared decompressed) and
the Dask engine on a ``LocalCluster`` started once for the module and given
with ``--scheduler`` (4 KiB chunks, so that a file is several tasks). Shapes
(tests/_scenarios.py): one group, 5,000 groups, 3,000 tiny files, CRLF and
byte-order marks, ``.gz`` and ``.zst`` beside plain files, lines of exactly
65,535 to 65,537 bytes with and without CRs, an empty directory, and a file
still being written while the run reads it.

A cell compares the group files and ``rejected.jsonl`` byte for byte, and
summary.json's totals, groups, reasons and files, with what the reference
parser gives for the same input. Cells that fail today because of a known
bug, fixed on another branch, are strict xfails: the fix makes them pass and
so forces their marker off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mpevents.core.schema import Field, Schema, to_toml
from tests._reference import REASONS, Expected, decompressed, expected_output, expected_schema_output
from tests._scenarios import LIMIT, LONG_ENDS, PARTIAL, REST, Shape, Writer, write
from tests.conftest import run_cli, settled

pytestmark = pytest.mark.usefixtures("clean_processes")

SHAPES = (
    Shape("one-group", seed=1, files=2, lines=(3_000, 2_000), groups=1, line_ends=("lf", "mixed")),
    Shape("5000-groups", seed=2, files=2, lines=(2_000,), groups=5_000, roll_call=True),
    Shape(
        "3000-tiny-files", seed=3, files=3_000, lines=(0, 1, 2, 3, 4, 5, 6), groups=40,
        stems=("host", "hôte", "узел", "ホスト"), last=("end", "end", "none"),
    ),
    Shape(
        "crlf-bom", seed=4, files=5, lines=(300, 250, 0, 1, 120), line_ends=("crlf", "mixed", "crlf", "crlf", "lf"),
        last=("none", "cr", "end", "none", "end"), bom=(True, True, True, True, False),
    ),
    Shape(
        "gz-zst-beside-plain", seed=5, files=8, lines=(800, 600, 500, 0, 0, 400, 1, 300),
        compression=("none", "gzip", "zstd"), members=(1, 2, 3), bom=(False, True), line_ends=("lf", "crlf", "mixed"),
        last=("end", "none", "cr"), decoys=True,
    ),
    Shape(
        "64KiB-lines", seed=6, files=3, lines=(30,), long_lines=(LIMIT - 1, LIMIT, LIMIT + 1),
        line_ends=("lf", "crlf", "mixed"), last=("none", "cr", "end"),
    ),
    Shape("empty-directory", seed=7, files=0),
    Shape("growing-file", seed=8, files=2, lines=(2_000,), last=("none", "end"), growing=True),
)  # fmt: skip
ENGINES = {
    "local-n1": ("-n", "1"),
    "local-n3": ("-n", "3", "--chunk-bytes", "4K"),
    "local-n2-zstd": ("-n", "2", "--chunk-bytes", "4K", "--compress", "zstd"),
    "dask": ("-n", "2", "--chunk-bytes", "4K", "--engine", "dask"),
}
LOCAL_TIMEOUT_S = 60
DASK_TIMEOUT_S = 240
"""A cell's hard limit: a hang fails the cell, not CI. The command gets a few
seconds less, so that it is killed (and its processes with it) before the cell
is. The slowest cells take a tenth and a fifth of theirs here (local 5,000
groups, 4 s; Dask 3,000 tiny files, 25 to 45 s: a task per file, about 10 ms
of the client's time each)."""

BOM = b"\xef\xbb\xbf"
GZIP_MEMBER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
"""A gzip member's header as gzip.compress(mtime=0) writes it."""
ZSTD_FRAME = b"\x28\xb5\x2f\xfd"

KNOWN: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """One Dask LocalCluster for the whole module: starting one takes seconds."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Expected | None]]:
    """Every quiet shape written once, with its reference output (None: nothing to read)."""
    written = {}
    for shape in SHAPES:
        if shape.growing:
            continue  # written afresh by its cell: it must be fresh when the run lists it
        directory = write(shape, tmp_path_factory.mktemp(shape.name) / "in")
        written[shape.name] = (directory, expected_output(directory) if shape.files else None)
    return written


def cells() -> Iterator[Any]:
    for shape in SHAPES:
        for engine in ENGINES:
            marks = [pytest.mark.timeout(DASK_TIMEOUT_S if engine == "dask" else LOCAL_TIMEOUT_S)]
            reason = KNOWN.get((shape.name, engine))
            if reason is not None:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            yield pytest.param(shape, engine, id=f"{shape.name}-{engine}", marks=marks)


@pytest.mark.parametrize(("shape", "engine"), list(cells()))
def test_cell_matches_the_reference_parser(
    shape: Shape,
    engine: str,
    inputs: dict[str, tuple[Path, Expected | None]],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    options = list(ENGINES[engine])
    timeout = DASK_TIMEOUT_S if engine == "dask" else LOCAL_TIMEOUT_S
    if engine == "dask":
        options += ["--scheduler", request.getfixturevalue("scheduler")]
    out = tmp_path / "beside" / "out"  # a parent of its own: nothing else may be left there
    writer: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if shape.growing:
        directory = write(shape, tmp_path / "in")
        expected: Expected | None = expected_output(directory, complete_lines_only={shape.growing_name or ""})
        writer = Writer(directory / (shape.growing_name or ""))
    else:
        directory, expected = inputs[shape.name]
    with writer:
        result = run_cli("--input", directory, "--output", out, "--no-progress", *options, timeout=timeout - 10)
    if expected is None:
        assert_refused(result, out)
    else:
        assert_matches(result, out, expected, shape.growing_name, ".zst" if "--compress" in options else "")


def assert_refused(result: subprocess.CompletedProcess[str], out: Path) -> None:
    """A directory with nothing to read is bad input: exit 2, one line, nothing written."""
    assert result.returncode == 2, result.stderr
    assert "no file matching" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def assert_matches(
    result: subprocess.CompletedProcess[str], out: Path, expected: Expected, growing: str | None, suffix: str = ""
) -> None:
    """``suffix``: the output's compression's, with --compress (files compared decompressed)."""
    assert result.returncode == 0, result.stderr
    names = sorted(path.name for path in out.iterdir())
    wanted = [*(f"group-{group}.jsonl{suffix}" for group in expected.groups), f"rejected.jsonl{suffix}"]
    assert names == sorted([*wanted, "summary.json"])
    for group, records in expected.groups.items():
        assert decompressed(out / f"group-{group}.jsonl{suffix}") == b"".join(records), group
    assert decompressed(out / f"rejected.jsonl{suffix}") == expected.rejected_jsonl()
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["totals"] == expected.totals
    assert list(summary["groups"].items()) == list(expected.group_counts().items())
    assert list(summary["rejected_by_reason"].items()) == list(expected.reasons.items())
    assert list(summary["files"]) == list(expected.files)
    for name, entry in expected.files.items():
        got = summary["files"][name]
        if name == growing:
            # Its unterminated last line is not read, and said so: the bytes
            # the run listed beyond the last line end, at least PARTIAL and at
            # most all the writer had written by the end of the run.
            counts = ("lines", "valid", "rejected", "blank")
            assert {key: got[key] for key in counts} == {key: entry[key] for key in counts}
            assert len(PARTIAL) <= got.get("unread_bytes", 0) <= len(PARTIAL) + len(REST)
        else:
            assert {key: got[key] for key in entry} == entry, name
            assert got.get("unread_bytes", 0) == 0, name  # a quiet file is read to its end
    warnings = result.stderr.splitlines()
    if growing is None:
        assert warnings == [], result.stderr  # quiet files: nothing to warn of
    else:
        assert len(warnings) == 1 and growing in warnings[0], result.stderr  # one line names the file
    assert [path.name for path in out.parent.iterdir()] == ["out"]  # no lock, no staging, no spool beside it


# --- the shapes hold the edges they are named for ------------------------------


def line_ends(data: bytes) -> set[tuple[int, bytes]]:
    """(length, line end) of every line of ``data``; the last line's end may be b"" or CRs only."""
    found = set()
    segments = data.split(b"\n")
    for index, segment in enumerate(segments):
        line = segment.rstrip(b"\r")
        end = segment[len(line) :] + (b"\n" if index < len(segments) - 1 else b"")
        if line or end:
            found.add((len(line), end))
    return found


def test_the_shapes_hold_their_edges(inputs: dict[str, tuple[Path, Expected | None]]) -> None:
    expected = {name: found for name, (_, found) in inputs.items() if found is not None}
    data = {
        name: {p.name: decompressed(p) for p in directory.iterdir() if p.is_file()}
        for name, (directory, _) in inputs.items()
    }
    assert list(expected["one-group"].groups) == ["1"]
    assert len(expected["5000-groups"].groups) == 5_000
    tiny = expected["3000-tiny-files"].files
    assert len(tiny) == 3_000 and any(f["lines"] == 0 for f in tiny.values()) and not all(n.isascii() for n in tiny)
    crlf = data["crlf-bom"]
    assert sum(content.startswith(BOM) for content in crlf.values()) == 4 and BOM in crlf.values()
    assert {b"\n", b"\r\n", b"\r\r\n", b"\r", b""} <= {end for c in crlf.values() for _, end in line_ends(c)}
    compressed = inputs["gz-zst-beside-plain"][0]
    kinds = [entry["compression"] for entry in expected["gz-zst-beside-plain"].files.values()]
    assert set(kinds) == {"none", "gzip", "zstd"} and "old.log.1.gz" in data["gz-zst-beside-plain"]
    assert any(p.read_bytes().count(GZIP_MEMBER) > 1 for p in compressed.glob("*.gz"))
    assert any(p.read_bytes().count(ZSTD_FRAME) > 1 for p in compressed.glob("*.zst"))
    long = set().union(*map(line_ends, data["64KiB-lines"].values()))
    assert {(size, end) for size in (LIMIT - 1, LIMIT, LIMIT + 1) for end in LONG_ENDS} <= long
    assert {(LIMIT - 1, b""), (LIMIT, b"\r"), (LIMIT + 1, b"\n")} <= long  # a long last line, ended three ways
    assert not any(inputs["empty-directory"][0].iterdir())
    # The content is a mix: every reason, and text outside ASCII, in the matrix's input.
    assert all(sum(found.reasons[reason] for found in expected.values()) for reason in REASONS)
    assert any(max(record) > 0x7F for found in expected.values() for rows in found.groups.values() for record in rows)


def test_a_shape_is_data_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    shape = next(shape for shape in SHAPES if shape.name == "gz-zst-beside-plain")
    first, second = write(shape, tmp_path / "first"), write(shape, tmp_path / "second")
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()} == {
        p.name: p.read_bytes() for p in second.iterdir() if p.is_file()
    }
    other = write(replace(shape, seed=shape.seed + 1), tmp_path / "other")
    assert (other / shape.file_name(0)).read_bytes() != (first / shape.file_name(0)).read_bytes()


# --- a schema other than v1 ------------------------------------------------------

HOSTS = ["web-01", "Zoë", "a/../b", "..", "x" * 230, "ホスト", 'say "hi"', "back\\slash", "%41", "ab~c"]
SCHEMAS = {
    "by-string": Schema(
        (
            Field("id", "uint"), Field("host", "string"), Field("level", "string", values=("INFO", "WARN")),
            Field("latency", "float"), Field("ok", "bool"), Field("delta", "int"),
            Field("note", "string", optional=True, max_bytes=12), Field("n", "uint", optional=True),
        ),
        delimiter="\t", group_by="host", name="scenario",
    ),
    "by-int": Schema((Field("g", "int"), Field("x", "float"), Field("s", "string")), ";", "g", name="by-int"),
    "no-group-by": Schema((Field("a", "bool"), Field("b", "string", optional=True)), ",", None, name="flat"),
}  # fmt: skip


def schema_lines(schema: Schema, seed: int, count: int) -> bytes:
    """``count`` lines for ``schema``, about one in twenty broken one way or another."""
    rng = random.Random(seed)
    pools = {
        "uint": lambda: str(rng.choice([rng.randint(0, 10**6), rng.randint(0, 2**63 - 1), 7])),
        "int": lambda: str(rng.randint(-50, 50)),
        "float": lambda: rng.choice([f"{rng.uniform(-1e3, 1e3):.3f}", "1E3", "007.5", "2"]),
        "bool": lambda: rng.choice(["true", "false", "1", "0"]),
    }
    broken = ["", "x", "007", "-0", "+1", "1e999", "a\x01b", "TRUE", "é" * 7, "INFO\tWARN"]
    lines = []
    for _ in range(count):
        values = []
        for spec in schema.fields:
            if spec.type in pools:
                values.append(pools[spec.type]())
            elif spec.values is not None:
                values.append(rng.choice(spec.values))
            else:
                values.append(rng.choice(HOSTS) if spec.name == "host" else rng.choice(["", "ok", "José", 'q"']))
        if rng.random() < 0.05:
            values[rng.randrange(len(values))] = rng.choice(broken)
        lines.append(schema.delimiter.join(values))
    return "\n".join(lines).encode() + b"\n"


@pytest.mark.timeout(DASK_TIMEOUT_S)
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_a_schema_run_is_the_reference_for_every_engine(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    schema = SCHEMAS[name]
    directory = tmp_path / "in"
    directory.mkdir()
    for index, count in enumerate((1_500, 900, 0, 3)):
        (directory / f"f{index}.log").write_bytes(schema_lines(schema, index, count))
    settled(directory)
    schema_file = tmp_path / "schema.toml"
    schema_file.write_text(to_toml(schema))
    expected = expected_schema_output(directory, schema)
    outputs = []
    for engine, options in ENGINES.items():
        extra = ["--scheduler", request.getfixturevalue("scheduler")] if engine == "dask" else []
        out = tmp_path / engine / "out"
        result = run_cli(
            "--input", directory, "--output", out, "--no-progress", "--schema", schema_file, *options, *extra,
            timeout=DASK_TIMEOUT_S / 4,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        files = {  # a compressed run's files by their plain names, decompressed
            path.name.removesuffix(".zst"): decompressed(path) for path in out.iterdir() if path.name != "summary.json"
        }
        summary = json.loads((out / "summary.json").read_bytes())
        assert files == {key: value for key, value in expected.items() if key not in ("groups", "reasons")}, engine
        assert summary["schema"] == {"name": schema.name, "sha256": schema.digest()}
        assert summary["engine"] == ("dask" if engine == "dask" else "local")
        assert list(summary["groups"].items()) == list(expected["groups"].items())
        assert list(summary["rejected_by_reason"].items()) == list(expected["reasons"].items())
        outputs.append(files)
    assert outputs[0] == outputs[1] == outputs[2]
