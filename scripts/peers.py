"""The fast peers for the benchmark: the same job as a DuckDB, Polars or chDB one-liner.

    python scripts/peers.py duckdb|duckdb-zstd|polars|chdb INPUT_DIR OUTPUT_DIR [SCHEMA]

Each reads every ``*.log`` as pipe-separated columns (with SCHEMA, a schema
file, its delimiter and its fields, each of the same type as mpevents'; one
file per value of its group_by) (DuckDB also ``*.log.gz``
and ``*.log.zst``, decompressed by their suffix) and writes one NDJSON file
per group (``duckdb-zstd``: zstd-compressed, ``COMPRESSION zstd``). None
checks the spec line by line: told to ignore errors, as the
real-shaped corpus needs, DuckDB and chDB drop a line they cannot read (chDB
writes the lines it half read into groups of their own), and Polars sets what
it cannot read to null, where mpevents rejects a line with its reason.
Installed with ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

COLUMNS = {
    "id": "BIGINT",
    "log": "VARCHAR",
    "event": "VARCHAR",
    "user": "VARCHAR",
    "value": "BIGINT",
    "group_id": "BIGINT",
    "timestamp": "BIGINT",
}
"""v1's columns, as DuckDB's types."""
DELIMITER = "|"
GROUP_BY = "group_id"
TYPES = {"uint": "UBIGINT", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR"}
"""A schema's types as DuckDB's: what mpevents reads each as."""


def use_schema(path: Path) -> None:
    """Read the columns, the delimiter and the group field from a schema file."""
    import tomllib

    global DELIMITER, GROUP_BY
    schema = tomllib.loads(path.read_text())
    COLUMNS.clear()
    COLUMNS.update({field["name"]: TYPES[field["type"]] for field in schema["field"]})
    DELIMITER, GROUP_BY = schema.get("delimiter", "|"), schema["group_by"]


def run_duckdb(source: Path, target: Path, compression: str | None = None) -> None:
    import duckdb

    compress = f", COMPRESSION {compression}" if compression else ""
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    duckdb.connect().execute(
        f"COPY (SELECT * FROM read_csv('{source}/*.log*', delim='{DELIMITER}', header=false, quote='', escape='', "
        f"ignore_errors=true, columns={{{columns}}})) "
        f"TO '{target}' (FORMAT json, PARTITION_BY ({GROUP_BY}), OVERWRITE_OR_IGNORE{compress})"
    )


def run_polars(source: Path, target: Path) -> None:
    import polars as pl

    kinds = {
        "BIGINT": pl.Int64,
        "UBIGINT": pl.UInt64,
        "DOUBLE": pl.Float64,
        "BOOLEAN": pl.Boolean,
        "VARCHAR": pl.String,
    }
    schema = {name: kinds[kind] for name, kind in COLUMNS.items()}
    frame = pl.scan_csv(
        f"{source}/*.log",
        separator=DELIMITER,
        has_header=False,
        schema=schema,
        quote_char=None,
        ignore_errors=True,
        truncate_ragged_lines=True,
    ).collect()
    target.mkdir(parents=True, exist_ok=True)
    for (group,), part in frame.partition_by(GROUP_BY, as_dict=True).items():
        part.write_ndjson(target / f"group-{group}.jsonl")


def run_chdb(source: Path, target: Path) -> None:
    """ClickHouse's engine in-process: its ``file`` table function, read as
    CSV with '|' between fields and quotes taken as text."""
    import chdb

    query: Callable[[str], object] = chdb.query  # untyped in chdb
    kinds = {"BIGINT": "Int64", "UBIGINT": "UInt64", "DOUBLE": "Float64", "BOOLEAN": "Bool", "VARCHAR": "String"}
    structure = ", ".join(f"{name} {kinds[kind]}" for name, kind in COLUMNS.items())
    target.mkdir(parents=True, exist_ok=True)
    query(
        f"INSERT INTO TABLE FUNCTION file('{target}/group-{{_partition_id}}.jsonl', 'JSONEachRow', '{structure}') "
        f"PARTITION BY {GROUP_BY} SELECT * FROM file('{source}/*.log', 'CSV', '{structure}') "
        f"SETTINGS format_csv_delimiter='{DELIMITER}', format_csv_allow_double_quotes=0, "
        "format_csv_allow_single_quotes=0, "
        "input_format_allow_errors_ratio=1, input_format_allow_errors_num=1000000000, "
        "engine_file_truncate_on_insert=1"
    )


PEERS: dict[str, Callable[[Path, Path], None]] = {
    "duckdb": run_duckdb,
    "duckdb-zstd": partial(run_duckdb, compression="zstd"),
    "polars": run_polars,
    "chdb": run_chdb,
}

if __name__ == "__main__":
    if len(sys.argv) > 4:
        use_schema(Path(sys.argv[4]))
    PEERS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
