"""The Dask engine against an external scheduler and workers (issue #16).

    python scripts/dask_bench.py [--corpus template-10M] [--small template-2M] [--rounds 3] [--baseline DIR]

Starts ``dask scheduler`` and ``dask worker --nworkers 2 --nthreads 1`` on
this machine (outside the timing), then runs ``mpevents --engine dask
--scheduler ...`` on a small and a big corpus and measures its wall time and the client's CPU
(user + system, from getrusage of the waited-for process). The CPU per GB of
output is the slope between the two, (big - small) / (GB big - GB small), so
that the client's fixed start-up (importing and connecting, most of a second)
is left out. The wall times are shown beside the local
engine's with two workers on the same corpora. With ``--baseline DIR`` (another
checkout, e.g. ``git worktree add DIR COMMIT``) the same is measured for that
version, with its own workers, in the same run.

Prints a table and writes ``dask-results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import REPO, WORK, Corpus, compile_bytecode
from rich.console import Console
from rich.table import Table


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """A scheduler and two single-threaded worker processes that import mpevents from ``repo``."""

    def __init__(self, repo: Path) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        env = {**os.environ, "PYTHONPATH": str(repo)}
        dask = str(Path(sys.executable).with_name("dask"))
        port = self.address.rsplit(":", 1)[1]
        self.processes = [
            subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]  # fmt: skip
        time.sleep(2)
        self.processes.append(
            subprocess.Popen([dask, "worker", self.address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=repo)
        )  # fmt: skip
        from distributed import Client

        with Client(self.address, timeout="30s") as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(2, timeout=60)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(timeout=30)


def measured(args: list[str], cwd: Path) -> tuple[float, float]:
    """Run to the end; its wall time and CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(args, check=True, cwd=cwd)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def output_gb(out: Path) -> float:
    return sum(path.stat().st_size for path in out.iterdir()) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="template-10M")
    parser.add_argument("--small", default="template-2M")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "dask-results.json")
    args = parser.parse_args()
    console = Console()
    compile_bytecode()
    corpus = Corpus.parse(args.corpus).build()
    small = Corpus.parse(args.small).build()
    out = WORK / "dask-out"
    versions = {"current": REPO} | ({"baseline": args.baseline} if args.baseline else {})
    rows: dict[str, Any] = {}
    for label, repo in versions.items():
        compile_bytecode(repo)
        cluster = Cluster(repo)
        try:
            runs: dict[str, list[tuple[float, float, float]]] = {"small": [], "big": []}  # wall, CPU, GB
            for round_ in range(args.rounds):
                for size, inputs in (("small", small), ("big", corpus)):
                    command = [sys.executable, "-m", "mpevents", "--input", str(inputs), "--output", str(out),
                               "-q", "--engine", "dask", "--scheduler", cluster.address]  # fmt: skip
                    wall, cpu = measured(command, repo)
                    runs[size].append((wall, cpu, output_gb(out)))
                    console.log(f"{label} {inputs.name} round {round_ + 1}: {wall:.2f} s, client {cpu:.2f} s CPU")
        finally:
            cluster.stop()
        (wall_small, cpu_small, gb_small), (wall, cpu, gb) = (
            tuple(statistics.median(column) for column in zip(*runs[size], strict=True)) for size in ("small", "big")
        )
        rows[f"{label}: dask, 2 external workers"] = {
            "wall_s": round(wall, 3),
            "wall_s_small": round(wall_small, 3),
            "client_cpu_s": round(cpu, 3),
            "client_cpu_s_small": round(cpu_small, 3),
            "client_cpu_s_per_gb": round((cpu - cpu_small) / (gb - gb_small), 3),
            "output_gb": round(gb, 3),
        }
    local: dict[str, list[float]] = {"small": [], "big": []}
    for _ in range(args.rounds):
        for size, inputs in (("small", small), ("big", corpus)):
            command = [sys.executable, "-m", "mpevents", "--input", str(inputs), "--output", str(out), "-q", "-n", "2"]
            local[size].append(measured(command, REPO)[0])
    rows["current: local engine, N=2"] = {
        "wall_s": round(statistics.median(local["big"]), 3),
        "wall_s_small": round(statistics.median(local["small"]), 3),
    }
    shutil.rmtree(out, ignore_errors=True)
    current, here = rows["current: dask, 2 external workers"], rows["current: local engine, N=2"]
    ratios = {
        f"dask wall / local wall, {args.small}": round(current["wall_s_small"] / here["wall_s_small"], 2),
        f"dask wall / local wall, {args.corpus}": round(current["wall_s"] / here["wall_s"], 2),
    }
    if "baseline: dask, 2 external workers" in rows:
        base = rows["baseline: dask, 2 external workers"]
        ratios["client CPU per GB, current / baseline"] = round(
            current["client_cpu_s_per_gb"] / base["client_cpu_s_per_gb"], 3
        )
    document = {"corpus": args.corpus, "rounds": args.rounds, "rows": rows, "ratios": ratios}
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    table = Table(title=f"medians of {args.rounds} rounds")
    columns = (f"wall {args.small} (s)", f"wall {args.corpus} (s)", "client CPU (s)", "client CPU per GB (s)")
    table.add_column("run")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in rows.items():
        cells = (row["wall_s_small"], row["wall_s"], row.get("client_cpu_s", ""), row.get("client_cpu_s_per_gb", ""))
        table.add_row(name, *(str(cell) for cell in cells))
    console.print(table)
    console.print(ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
