"""Issue #28's targets 1 and 2: an --incremental run against a full one, and --follow's latency.

    python scripts/bench.py --corpora '' --spec-rounds 0 --incremental-targets
    python scripts/incremental_bench.py [--rounds 3] [--follow-s 600]       # the same, on its own

Target 1: the template corpus of 10M lines (``template-10M``, 20 files) is
copied, read by a first ``--incremental`` run (a full one, timed), then 1%
more lines are appended to its files and one new file of 0.5% is added, and
the second ``--incremental`` run is timed, interpreter start-up included.
Its output must be the full run's group files followed by those of a run on
the new lines alone (the documented order), byte for byte. Target: the
incremental run's wall at most a tenth of the full run's.

Target 2: ``mpevents --follow`` (interval 1 s) while a writer appends
10,000 lines a second to three files, each line carrying the millisecond it
was written (its ``value``). Every 20 ms summary.json is read; what it
newly commits of each group file is read up to the committed size, and each
record's latency is the time its commit was seen less the time it was
written. Then the writer stops, and the follower's CPU (its whole process
tree) is read over IDLE_S of no data. Its memory (summed PSS) is sampled
every MEMORY_EVERY_S throughout. Targets: latency median at most 2 s and
99th percentile at most 3 s; idle CPU at most 2% of a core; memory flat.

Talks to: bench.py (``--incremental-targets``), genlog.sh, the mpevents command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mpevents.observe.profiling import process_tree, tree_pss_kib

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".bench"
CORPUS = "template-10M"
APPENDED = 0.01
NEW_FILE = 0.005
WRITER_RATE = 10_000
WRITER_FILES = 3
IDLE_S = 10.0
MEMORY_EVERY_S = 5.0
POLL_S = 0.02


def mpevents(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mpevents", *map(str, args)]


def genlog(path: Path, lines: int, seed: int) -> None:
    subprocess.run(
        [str(REPO / "scripts" / "genlog.sh"), str(path), str(lines)],
        check=True, env={**os.environ, "GENLOG_SEED": str(seed)},
    )  # fmt: skip


def settle(directory: Path) -> None:
    then = time.time() - 60
    for path in directory.iterdir():
        os.utime(path, (then, then))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def group_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.suffix == ".jsonl"}


def incremental_round(corpus: Path, workers: int, lines: int) -> dict[str, Any]:
    """One round of target 1 on a fresh copy of ``corpus``."""
    work = WORK / "incremental"
    shutil.rmtree(work, ignore_errors=True)
    inputs, new_only, out, reference = work / "in", work / "new", work / "out", work / "reference"
    inputs.mkdir(parents=True)
    new_only.mkdir()
    for path in sorted(corpus.glob("*.log")):
        shutil.copyfile(path, inputs / path.name)
    settle(inputs)
    options = ["-n", str(workers), "-q", "--settle", "0"]
    full_s = timed(mpevents("--input", inputs, "--output", out, "--incremental", *options))
    files = sorted(inputs.glob("*.log"))
    per_file = int(lines * APPENDED) // len(files)
    for index, path in enumerate(files):
        genlog(new_only / path.name, per_file, 1000 + index)
        with open(path, "ab") as handle:
            handle.write((new_only / path.name).read_bytes())
    genlog(inputs / "zz-new.log", int(lines * NEW_FILE), 999)
    shutil.copyfile(inputs / "zz-new.log", new_only / "zz-new.log")
    settle(inputs)
    settle(new_only)
    before = group_files(out)
    incremental_s = timed(mpevents("--input", inputs, "--output", out, "--incremental", *options))
    timed(mpevents("--input", new_only, "--output", reference, *options))
    added = group_files(reference)
    expected = {name: before.get(name, b"") + added.get(name, b"") for name in {*before, *added}}
    identical = group_files(out) == expected
    shutil.rmtree(work, ignore_errors=True)
    return {"full_s": round(full_s, 3), "incremental_s": round(incremental_s, 3), "identical": identical}


class Writer(threading.Thread):
    """WRITER_RATE lines a second over WRITER_FILES files, each line's value the ms it was written."""

    def __init__(self, inputs: Path, started: float) -> None:
        super().__init__(daemon=True)
        self.inputs, self.started = inputs, started
        self.stop = threading.Event()
        self.lines = 0

    def run(self) -> None:
        step = 0.05
        per_file = round(WRITER_RATE * step / WRITER_FILES)
        handles = [open(self.inputs / f"app-{n}.log", "ab") for n in range(WRITER_FILES)]  # noqa: SIM115
        try:
            while not self.stop.is_set():
                tick = time.monotonic()
                ms = round((time.time() - self.started) * 1000)
                for number, handle in enumerate(handles):
                    handle.write(
                        b"".join(
                            b"%d|app|ev|u|%d|%d|1587583122\n" % (self.lines + i, ms, number + 1)
                            for i in range(per_file)
                        )
                    )
                    handle.flush()
                    self.lines += per_file
                time.sleep(max(0.0, step - (time.monotonic() - tick)))
        finally:
            for handle in handles:
                handle.close()


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user and system) of a process tree's live processes."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def follow_round(seconds: float, workers: int) -> dict[str, Any]:
    """Target 2: latency while a writer appends, then CPU while idle; memory throughout."""
    work = WORK / "follow"
    shutil.rmtree(work, ignore_errors=True)
    inputs, out = work / "in", work / "out"
    inputs.mkdir(parents=True)
    started = time.time()
    writer = Writer(inputs, started)
    writer.start()
    time.sleep(0.5)
    process = subprocess.Popen(
        mpevents("--input", inputs, "--output", out, "--follow", "--no-progress", "-n", str(workers)),
        cwd=REPO, stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    latencies: list[float] = []
    memory: list[tuple[float, int]] = []
    read_to: dict[str, int] = {}
    last_summary = b""
    memory_at = 0.0
    deadline = time.monotonic() + seconds
    idle_cpu = 0.0
    try:
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            if time.monotonic() >= memory_at:
                memory.append((round(time.time() - started, 1), tree_pss_kib(process.pid)))
                memory_at = time.monotonic() + MEMORY_EVERY_S
            try:
                data = (out / "summary.json").read_bytes()
            except OSError:
                continue
            if data == last_summary:
                continue
            seen = time.time()
            last_summary = data
            sizes = json.loads(data)["incremental"]["sizes"]
            for name, size in sizes.items():
                if not name.startswith("group-"):
                    continue
                with open(out / name, "rb") as handle:
                    handle.seek(read_to.get(name, 0))
                    chunk = handle.read(size - read_to.get(name, 0))
                read_to[name] = size
                for line in chunk.splitlines():
                    written = json.loads(line)["value"] / 1000
                    latencies.append(seen - started - written)
        writer.stop.set()
        writer.join()
        time.sleep(3.0)  # the last batch, and the one after settle
        cpu_before, idle_from = tree_cpu_s(process.pid), time.monotonic()
        time.sleep(IDLE_S)
        idle_cpu = (tree_cpu_s(process.pid) - cpu_before) / (time.monotonic() - idle_from)
        memory.append((round(time.time() - started, 1), tree_pss_kib(process.pid)))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=30)
    latencies.sort()
    shutil.rmtree(work, ignore_errors=True)
    return {
        "seconds": seconds,
        "lines_written": writer.lines,
        "lines_seen": len(latencies),
        "latency_median_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p99_s": round(latencies[int(len(latencies) * 0.99)], 3) if latencies else None,
        "idle_cpu_share": round(idle_cpu, 4),
        "memory_kib": memory,
        "sigterm_exit": code,
    }


def _thirds(samples: list[tuple[float, int]]) -> tuple[float, float]:
    """The peak memory (MiB) of the first and of the last third of a run's
    samples: flat means the one is not above the other. Peaks, not single
    samples: the first sample is taken as the interpreter starts, before
    anything is imported, and batches come and go."""
    third = max(1, len(samples) // 3)
    return max(kib for _, kib in samples[:third]) / 1024, max(kib for _, kib in samples[-third:]) / 1024


def measure(rounds: int, follow_s: float, workers: int = 2, log: Any = print) -> dict[str, Any]:
    """Both targets: ``rounds`` rounds of target 1, one of target 2 lasting ``follow_s`` seconds."""
    sys.path.insert(0, str(REPO / "scripts"))
    from bench import Corpus

    corpus = Corpus.parse(CORPUS)
    directory = corpus.build()
    runs = []
    for round_ in range(rounds):
        runs.append(incremental_round(directory, workers, corpus.lines))
        log(f"incremental round {round_ + 1}: {runs[-1]}")
    full = statistics.median(run["full_s"] for run in runs)
    incremental = statistics.median(run["incremental_s"] for run in runs)
    follow = follow_round(follow_s, workers)
    log(f"follow: {follow}")
    first_mib, last_mib = _thirds(follow["memory_kib"])
    return {
        "corpus": CORPUS,
        "workers": workers,
        "rounds": runs,
        "full_s": full,
        "incremental_s": incremental,
        "ratio": round(incremental / full, 3),
        "identical": all(run["identical"] for run in runs),
        "follow": follow,
        "targets": {
            "1: incremental at most 0.1 of full": incremental / full <= 0.1,
            "2: latency median at most 2 s": (follow["latency_median_s"] or 99) <= 2,
            "2: latency p99 at most 3 s": (follow["latency_p99_s"] or 99) <= 3,
            "2: idle CPU at most 2% of a core": follow["idle_cpu_share"] <= 0.02,
            "2: memory flat (peak of the last third within 10% of the first third's)": last_mib <= first_mib * 1.1,
        },
    }


def report(results: dict[str, Any], log: Any = print) -> None:
    follow = results["follow"]
    log(
        f"target 1 ({results['corpus']}, N={results['workers']}, median of {len(results['rounds'])}): full "
        f"{results['full_s']:.2f} s, incremental {results['incremental_s']:.2f} s, ratio {results['ratio']:.3f}, "
        f"output {'identical' if results['identical'] else 'DIFFERENT'}"
    )
    log(
        f"target 2 ({follow['seconds']:.0f} s at {WRITER_RATE:,} lines/s over {WRITER_FILES} files): latency median "
        f"{follow['latency_median_s']} s, p99 {follow['latency_p99_s']} s, {follow['lines_seen']:,} of "
        f"{follow['lines_written']:,} lines seen; idle CPU {follow['idle_cpu_share']:.2%} of a core; memory "
        f"{follow['memory_kib'][0][1] / 1024:.0f} MiB to {follow['memory_kib'][-1][1] / 1024:.0f} MiB "
        f"(max {max(kib for _, kib in follow['memory_kib']) / 1024:.0f}); SIGTERM exit {follow['sigterm_exit']}"
    )
    for name, met in results["targets"].items():
        log(f"  {'met' if met else 'MISSED'}: {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--follow-s", type=float, default=60.0, help="seconds of writing for target 2 (issue: 600)")
    parser.add_argument("--workers", "-n", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "incremental-results.json")
    args = parser.parse_args()
    results = measure(args.rounds, args.follow_s, args.workers)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
