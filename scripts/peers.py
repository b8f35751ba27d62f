"""The fast peers for the benchmark: the same job as a DuckDB or Polars one-liner.

    python scripts/peers.py duckdb|polars INPUT_DIR OUTPUT_DIR

Both read every ``*.log`` as pipe-separated columns (DuckDB also ``*.log.gz``
and ``*.log.zst``, decompressed by their suffix) and write one NDJSON file
per group. Neither checks the spec line by line: told to ignore errors, as the
real-shaped corpus needs, DuckDB drops a line it cannot read and Polars sets
what it cannot read to null, where mpevents rejects a line with its reason;
both hold the whole data set in memory.
Installed with ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import sys
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


def run_duckdb(source: Path, target: Path) -> None:
    import duckdb

    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    duckdb.connect().execute(
        f"COPY (SELECT * FROM read_csv('{source}/*.log*', delim='|', header=false, quote='', escape='', "
        f"ignore_errors=true, columns={{{columns}}})) "
        f"TO '{target}' (FORMAT json, PARTITION_BY (group_id), OVERWRITE_OR_IGNORE)"
    )


def run_polars(source: Path, target: Path) -> None:
    import polars as pl

    kinds = {"BIGINT": pl.Int64, "VARCHAR": pl.String}
    schema = {name: kinds[kind] for name, kind in COLUMNS.items()}
    frame = pl.scan_csv(
        f"{source}/*.log",
        separator="|",
        has_header=False,
        schema=schema,
        quote_char=None,
        ignore_errors=True,
        truncate_ragged_lines=True,
    ).collect()
    target.mkdir(parents=True, exist_ok=True)
    for (group,), part in frame.partition_by("group_id", as_dict=True).items():
        part.write_ndjson(target / f"group-{group}.jsonl")


PEERS = {"duckdb": run_duckdb, "polars": run_polars}

if __name__ == "__main__":
    PEERS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
