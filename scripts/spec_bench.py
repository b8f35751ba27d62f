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
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mpevents import process_chunk  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"{'variant':28} {'ns per line':>12} {'/ template':>11}")
    for name, row in measure(args.rounds).items():
        print(f"{name:28} {row['ns_per_line']:12,.0f} {row['per_template']:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
