"""CPU and memory profiles, one file per process, like the Go original's pprof.

``--cpu-profile``: each process runs under cProfile and writes
``cpu-<role>-<index>.prof`` (index from 1, as in ``mpevents: worker 1``); main merges them into ``cpu-all.prof``.
``--mem-profile``: each process traces allocations with tracemalloc and writes
``mem-<role>-<index>.snapshot`` and ``mem-<role>-<index>.json`` (its peak RSS
and traced peak), which main gathers for the summary.
"""

from __future__ import annotations

import contextlib
import cProfile
import resource
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec


class ProfileOptions(Protocol):
    """What profiling reads of the run's options (``_config.Config`` has it):
    a shape, not an import, so that this layer stays below the config's."""

    @property
    def profiling(self) -> bool: ...
    @property
    def profile_dir(self) -> Path: ...
    @property
    def cpu_profile(self) -> bool: ...
    @property
    def mem_profile(self) -> bool: ...


TOP_SITES = 10


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


@contextlib.contextmanager
def profiled(config: ProfileOptions, role: str, index: int) -> Iterator[None]:
    """Run the body under the profilers the configuration asks for."""
    if not config.profiling:
        yield
        return
    directory = config.profile_dir
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{role}-{index}"
    profiler = cProfile.Profile() if config.cpu_profile else None
    if config.mem_profile:
        tracemalloc.start(10)
    if profiler is not None:
        profiler.enable()
    try:
        yield
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(directory / f"cpu-{stem}.prof")
        if config.mem_profile:
            snapshot = tracemalloc.take_snapshot()
            _, traced_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            snapshot.dump(str(directory / f"mem-{stem}.snapshot"))
            facts = {"role": role, "index": index, "peak_rss_kib": peak_rss_kib(), "traced_peak_bytes": traced_peak}
            (directory / f"mem-{stem}.json").write_bytes(msgspec.json.encode(facts))


def merge_cpu_profiles(directory: Path) -> Path | None:
    """Merge every ``cpu-*.prof`` into ``cpu-all.prof`` with pstats."""
    target = directory / "cpu-all.prof"
    files = sorted(path for path in directory.glob("cpu-*.prof") if path != target)
    if not files:
        return None
    import pstats  # here: every process imports this module, only this function needs pstats (4 ms)

    stats = pstats.Stats(str(files[0]))
    for path in files[1:]:
        stats.add(str(path))
    stats.dump_stats(target)
    return target


def memory_report(directory: Path) -> dict[str, Any]:
    """Per-process peaks and the top allocation sites over all snapshots."""
    processes = {}
    for path in sorted(directory.glob("mem-*.json")):
        facts = msgspec.json.decode(path.read_bytes())
        processes[f"{facts['role']}-{facts['index']}"] = {
            "peak_rss_kib": facts["peak_rss_kib"],
            "traced_peak_bytes": facts["traced_peak_bytes"],
        }
    sites: dict[str, int] = {}
    for path in sorted(directory.glob("mem-*.snapshot")):
        snapshot = tracemalloc.Snapshot.load(str(path))
        for stat in snapshot.statistics("lineno"):
            frame = stat.traceback[0]
            key = f"{frame.filename}:{frame.lineno}"
            sites[key] = sites.get(key, 0) + stat.size
    top = sorted(sites.items(), key=lambda item: item[1], reverse=True)[:TOP_SITES]
    return {"processes": processes, "top_sites": [{"site": site, "bytes": size} for site, size in top]}


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_pss_kib(root: int) -> int:
    """Summed proportional set size of a process tree, in KiB: shared pages
    are split between the processes that share them, so the sum is what the
    tree really costs."""
    total = 0
    for pid in process_tree(root):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                break
    return total
