"""The Dask engine against an external scheduler and workers (issue #16).

    python scripts/dask_bench.py [--corpus template-10M] [--small template-2M] [--rounds 3] [--baseline DIR]

Starts ``dask scheduler`` and ``dask worker --nworkers 2 --nthreads 1`` on
this machine (outside the timing), then runs ``mpevents --engine dask
--scheduler ...`` on a small and a big corpus and measures the client's CPU
(user + system, from getrusage of the waited-for process). The CPU per GB of
output is the slope between the two, (big - small) / (GB big - GB small), so
that the client's fixed start-up (importing and connecting, most of a second)
is left out. The wall time of the big corpus is shown beside the local
engine's with two workers. With ``--baseline DIR`` (another
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
            walls: list[float] = []
            cpus: list[float] = []
            gbs: list[float] = []
            small_cpus: list[float] = []
            small_gbs: list[float] = []
            for round_ in range(args.rounds):
                for inputs, cpu_list, gb_list in ((small, small_cpus, small_gbs), (corpus, cpus, gbs)):
                    command = [sys.executable, "-m", "mpevents", "--input", str(inputs), "--output", str(out),
                               "-q", "--engine", "dask", "--scheduler", cluster.address]  # fmt: skip
                    wall, cpu = measured(command, repo)
                    cpu_list.append(cpu)
                    gb_list.append(output_gb(out))
                    console.log(f"{label} {inputs.name} round {round_ + 1}: {wall:.2f} s, client {cpu:.2f} s CPU")
                walls.append(wall)
        finally:
            cluster.stop()
        cpu, small_cpu = statistics.median(cpus), statistics.median(small_cpus)
        gb, small_gb = statistics.median(gbs), statistics.median(small_gbs)
        rows[f"{label}: dask, 2 external workers"] = {
            "wall_s": round(statistics.median(walls), 3),
            "client_cpu_s": round(cpu, 3),
            "client_cpu_s_small": round(small_cpu, 3),
            "client_cpu_s_per_gb": round((cpu - small_cpu) / (gb - small_gb), 3),
            "output_gb": round(gb, 3),
        }
    local = [
        measured(
            [sys.executable, "-m", "mpevents", "--input", str(corpus), "--output", str(out), "-q", "-n", "2"], REPO
        )
        for _ in range(args.rounds)
    ]
    rows["current: local engine, N=2"] = {"wall_s": round(statistics.median(wall for wall, _ in local), 3)}
    shutil.rmtree(out, ignore_errors=True)
    current = rows["current: dask, 2 external workers"]
    ratios = {"dask wall / local wall": round(current["wall_s"] / rows["current: local engine, N=2"]["wall_s"], 2)}
    if "baseline: dask, 2 external workers" in rows:
        base = rows["baseline: dask, 2 external workers"]
        ratios["client CPU per GB, current / baseline"] = round(
            current["client_cpu_s_per_gb"] / base["client_cpu_s_per_gb"], 3
        )
    document = {"corpus": args.corpus, "rounds": args.rounds, "rows": rows, "ratios": ratios}
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    table = Table(title=f"{args.corpus}, medians of {args.rounds}")
    for column in ("run", "wall (s)", "client CPU (s)", "client CPU per GB (s)", "output (GB)"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, row in rows.items():
        table.add_row(
            name, f"{row['wall_s']:.2f}", str(row.get("client_cpu_s", "")), str(row.get("client_cpu_s_per_gb", "")),
            str(row.get("output_gb", "")),
        )  # fmt: skip
    console.print(table)
    console.print(ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
