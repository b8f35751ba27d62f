"""process_chunk per line, one feature of real logs at a time, in interleaved rounds (issue #11, target 2).

    python scripts/spec_bench.py [--rounds 15]

The same variants as the pytest-benchmark suite (``tests/benchmarks/
test_bench_spec.py``: the seed's template, then 45% non-ASCII names, 200
groups, 1 broken line in 200, 1% of strings with '"' or '\\', then all of
them together), each a 1 MiB chunk. pytest-benchmark runs one variant after
another, so on a shared machine whose speed drifts by a third within minutes
its ratios drift too (the same code gave 1.29 to 1.84 for "all together");
here every round times every variant once, in turn, and the ratios are
medians of each round's own ratios to the template.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mpevents import process_chunk  # noqa: E402
from mpevents.core.schema import load  # noqa: E402
from tests.benchmarks.test_bench_spec import VARIANTS, seed_chunk  # noqa: E402


def measure(rounds: int) -> dict[str, dict[str, float]]:
    """Each variant's median ns per line and median ratio to the template,
    over ``rounds`` rounds that time every variant once, in turn."""
    chunks = {name: seed_chunk(**options) for name, options in VARIANTS.items()}
    lines = {name: chunk.count(b"\n") for name, chunk in chunks.items()}
    per_line: dict[str, list[float]] = {name: [] for name in chunks}
    for _ in range(rounds):
        for name, chunk in chunks.items():
            started = time.perf_counter_ns()
            process_chunk(chunk)
            per_line[name].append((time.perf_counter_ns() - started) / lines[name])
    template = per_line["template"]
    return {
        name: {
            "ns_per_line": statistics.median(times),
            "per_template": statistics.median(value / base for value, base in zip(times, template, strict=True)),
        }
        for name, times in per_line.items()
    }


def genlog_chunk(*options: str, chunk_bytes: int = 1 << 20) -> bytes:
    """The first ``chunk_bytes`` of whole lines that ``scripts/genlog.sh OPTIONS`` writes."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "chunk.log"
        command = [str(REPO / "scripts" / "genlog.sh"), *options, str(path), "40000"]
        subprocess.run(command, check=True, env={**os.environ, "GENLOG_SEED": "1"})
        data = path.read_bytes()
    return data[: data.rfind(b"\n", 0, chunk_bytes) + 1]


def measure_wide(rounds: int) -> dict[str, float]:
    """process_chunk's cost per input byte on a 1 MiB chunk of the real mix, v1
    against the 12-field schema of scripts/schemas/wide.toml, in interleaved
    rounds (issue #27's target 2): medians, and the median of each round's ratio."""
    wide_schema = REPO / "scripts" / "schemas" / "wide.toml"
    v1 = genlog_chunk("--mix", "real")
    wide = genlog_chunk("--schema", str(wide_schema))
    schema = load(wide_schema)
    times: dict[str, list[float]] = {"v1": [], "wide": []}
    for _ in range(rounds):
        started = time.perf_counter_ns()
        process_chunk(v1)
        times["v1"].append((time.perf_counter_ns() - started) / len(v1))
        started = time.perf_counter_ns()
        process_chunk(wide, schema=schema)
        times["wide"].append((time.perf_counter_ns() - started) / len(wide))
    return {
        "v1_ns_per_byte": statistics.median(times["v1"]),
        "wide_ns_per_byte": statistics.median(times["wide"]),
        "ratio": statistics.median(w / v for v, w in zip(times["v1"], times["wide"], strict=True)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"{'variant':28} {'ns per line':>12} {'/ template':>11}")
    for name, row in measure(args.rounds).items():
        print(f"{name:28} {row['ns_per_line']:12,.0f} {row['per_template']:11.2f}")
    wide = measure_wide(args.rounds)
    print(
        f"per input byte, real mix: v1 {wide['v1_ns_per_byte']:.2f} ns, 12-field schema "
        f"{wide['wide_ns_per_byte']:.2f} ns, ratio {wide['ratio']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
