"""The ceiling report: how many workers the busiest thread outside them could serve.

    python scripts/ceiling.py DIR [--rounds 3]     (or bench.py --ceiling)

Runs ``mpevents -n 1`` on DIR and reads, every SAMPLE_S while it runs, the
CPU time (user + system, ``/proc/<pid>/task/<tid>/stat``) of every thread of
every process of the run: main, the fork server, the readers, the worker, the
collector, the resource tracker, and every thread of theirs (queue feeders,
the journal's syncer). With one worker, the worker's CPU is what one worker's
share of the input costs; a thread outside the workers that does work for
every worker (the collector's main thread, say) must do N times its share for
N workers. So it caps the run at

    ceiling = worker CPU / busiest other thread's CPU

workers, the busiest thread being the one with the most CPU among all
threads of all processes but the worker. Readers count one thread each: a
reader reads one file at a time, so a run of few big files leans on one.
The figure is a median over ``--rounds`` runs.

A thread's last SAMPLE_S before it exits is not seen: at 20 ms against the
seconds a worker works, under 2% of its CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLE_S = 0.02
"""How often the threads are read: each read is a few dozen small /proc
files, well under a millisecond, so sampling costs the run little."""
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Thread:
    process: str  # the process's title (setproctitle: "mpevents: worker 1")
    thread: str  # the thread's name (comm)
    cpu_s: float = 0.0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            found += [int(child) for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return found


def _tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += _children(pid)
    return pids


def _title(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    if not text:  # exiting: its title is gone
        return "?"
    return text.removeprefix("mpevents: ") if text.startswith("mpevents: ") else "main" if "mpevents" in text else text


def _sample(root: int, threads: dict[tuple[int, int], Thread]) -> None:
    for pid in _tree(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        title = _title(pid)  # read again each time: a child takes its title after it starts
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15 of stat
            key = (pid, int(tid))
            entry = threads.get(key)
            if entry is None:
                entry = threads[key] = Thread(title, name)
            if title != "?":
                entry.process, entry.thread = title, name
            entry.cpu_s = max(entry.cpu_s, cpu)


def run_once(directory: Path, output: Path, cwd: Path) -> list[Thread]:
    """One ``mpevents -n 1`` run; every thread of it, with its CPU seconds."""
    command = [sys.executable, "-m", "mpevents", "--input", str(directory), "--output", str(output), "-q", "-n", "1"]
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL)
    threads: dict[tuple[int, int], Thread] = {}
    while process.poll() is None:
        _sample(process.pid, threads)
        time.sleep(SAMPLE_S)
    if process.wait() != 0:
        raise SystemExit(f"ceiling: mpevents failed on {directory} with exit code {process.returncode}")
    return list(threads.values())


def is_worker(thread: Thread) -> bool:
    return thread.process.startswith("worker")


def measure(directory: Path, output: Path, cwd: Path, rounds: int) -> dict[str, Any]:
    """The ceiling on ``directory``: medians over ``rounds`` runs, and the threads of the median run."""
    runs = []
    for _ in range(rounds):
        threads = run_once(directory, output, cwd)
        worker = sum(thread.cpu_s for thread in threads if is_worker(thread))
        others = sorted((thread for thread in threads if not is_worker(thread)), key=lambda t: -t.cpu_s)
        busiest = others[0]
        runs.append((worker / busiest.cpu_s if busiest.cpu_s else float("inf"), worker, busiest, threads))
    runs.sort(key=lambda run: run[0])
    ceiling, worker, busiest, threads = runs[len(runs) // 2]
    return {
        "ceiling": round(ceiling, 1),
        "ceilings": [round(run[0], 1) for run in runs],
        "worker_cpu_s": round(worker, 3),
        "busiest": f"{busiest.process} / {busiest.thread}",
        "busiest_cpu_s": round(busiest.cpu_s, 3),
        "threads": [
            {"process": t.process, "thread": t.thread, "cpu_s": round(t.cpu_s, 3)}
            for t in sorted(threads, key=lambda t: -t.cpu_s)
            if t.cpu_s >= 0.01
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    result = measure(args.directory, repo / ".bench" / "out-ceiling", repo, args.rounds)
    for thread in result["threads"]:
        print(f"{thread['process']:<28} {thread['thread']:<16} {thread['cpu_s']:8.3f} s")
    print(f"ceiling: {result['ceiling']} workers (worker {result['worker_cpu_s']} s / {result['busiest']} "
          f"{result['busiest_cpu_s']} s; runs: {result['ceilings']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
