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
threads of all processes but the worker. It is also given counting only the
CPU each thread spent from when the worker started (``ceiling_running``):
main's start-up (the interpreter, the imports, the fork server) is paid
once, whatever the input and the workers, and caps no number of workers. Readers count one thread each: a
reader reads one file at a time, so a run of few big files leans on one.
The figure is a median over ``--rounds`` runs, each with no output there
yet: the one before it is set aside (scripts/aside.py), so that no run
replaces (and removes) an earlier one's output.

A thread's last SAMPLE_S before it exits is not seen: at 20 ms against the
seconds a worker works, under 2% of its CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aside import clear_aside, set_aside, settle

SAMPLE_S = 0.02
"""How often the threads are read: each read is a few dozen small /proc
files, well under a millisecond, so sampling costs the run little."""
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Thread:
    process: str  # the process's title (setproctitle: "mpevents: worker 1")
    thread: str  # the thread's name (comm)
    cpu_s: float = 0.0
    before_s: float = 0.0  # its CPU when the first worker was seen: start-up, paid once

    @property
    def running_s(self) -> float:
        """Its CPU while the workers ran (and after): what grows with the input."""
        return self.cpu_s - self.before_s


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


def run_once(directory: Path, output: Path, cwd: Path, aside: Path) -> list[Thread]:
    """One ``mpevents -n 1`` run into ``output``, an earlier one's set aside
    into ``aside``; every thread of it, with its CPU seconds."""
    set_aside(output, aside)
    command = [sys.executable, "-m", "mpevents", "--input", str(directory), "--output", str(output), "-q", "-n", "1"]
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL)
    threads: dict[tuple[int, int], Thread] = {}
    started = False
    while process.poll() is None:
        _sample(process.pid, threads)
        if not started and any(is_worker(thread) for thread in threads.values()):
            started = True
            for thread in threads.values():
                thread.before_s = thread.cpu_s
        time.sleep(SAMPLE_S)
    if process.wait() != 0:
        raise SystemExit(f"ceiling: mpevents failed on {directory} with exit code {process.returncode}")
    return list(threads.values())


def is_worker(thread: Thread) -> bool:
    return thread.process.startswith("worker")


def _ceiling(threads: list[Thread], cpu: Callable[[Thread], float]) -> tuple[float, float, Thread]:
    """Worker CPU / the busiest other thread's, each thread's CPU read by ``cpu``."""
    worker = sum(thread.cpu_s for thread in threads if is_worker(thread))
    busiest = max((thread for thread in threads if not is_worker(thread)), key=cpu)
    return (worker / cpu(busiest) if cpu(busiest) else float("inf")), worker, busiest


def measure(directory: Path, output: Path, cwd: Path, rounds: int, aside: Path) -> dict[str, Any]:
    """The ceiling on ``directory``: medians over ``rounds`` runs, and the threads of the median run.

    Two figures: ``ceiling`` counts every thread's whole CPU; ``ceiling_running``
    leaves out what each had spent when the first worker started (main's
    start-up: the interpreter, the imports, the listing, the fork server),
    which it pays once however many workers there are and however big the
    input, so that it caps no number of workers.
    """
    runs = []
    for _ in range(rounds):
        threads = run_once(directory, output, cwd, aside)
        whole, worker, busiest = _ceiling(threads, lambda thread: thread.cpu_s)
        running, _, busiest_running = _ceiling(threads, lambda thread: thread.running_s)
        runs.append((whole, worker, busiest, threads, running, busiest_running))
    set_aside(output, aside)
    runs.sort(key=lambda run: run[0])
    ceiling, worker, busiest, threads, running, busiest_running = runs[len(runs) // 2]
    return {
        "ceiling": round(ceiling, 1),
        "ceilings": [round(run[0], 1) for run in runs],
        "ceiling_running": round(sorted(run[4] for run in runs)[len(runs) // 2], 1),
        "worker_cpu_s": round(worker, 3),
        "busiest": f"{busiest.process} / {busiest.thread}",
        "busiest_cpu_s": round(busiest.cpu_s, 3),
        "busiest_before_s": round(busiest.before_s, 3),
        "busiest_running": f"{busiest_running.process} / {busiest_running.thread}",
        "busiest_running_cpu_s": round(busiest_running.running_s, 3),
        "threads": [
            {"process": t.process, "thread": t.thread, "cpu_s": round(t.cpu_s, 3), "running_s": round(t.running_s, 3)}
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
    aside = repo / ".bench" / "aside"
    clear_aside(aside)
    settle(aside)
    result = measure(args.directory, repo / ".bench" / "out-ceiling", repo, args.rounds, aside)
    clear_aside(aside)
    for thread in result["threads"]:
        print(f"{thread['process']:<28} {thread['thread']:<16} {thread['cpu_s']:8.3f} s  {thread['running_s']:8.3f} s")
    print(f"ceiling: {result['ceiling']} workers (worker {result['worker_cpu_s']} s / {result['busiest']} "
          f"{result['busiest_cpu_s']} s, {result['busiest_before_s']} s of it before the worker started; "
          f"runs: {result['ceilings']})")  # fmt: skip
    print(f"ceiling while the worker runs: {result['ceiling_running']} workers "
          f"(/ {result['busiest_running']} {result['busiest_running_cpu_s']} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
