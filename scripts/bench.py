"""Benchmark mpevents against its peers, side by side, in interleaved rounds.

    python scripts/bench.py [--rounds 3] [--corpora template-2M,real-2M,template-10M] [--workers 1,2] [--no-peers]
    python scripts/bench.py --corpora '' --spec-rounds 0 --dask-groups     # only the Dask engine on many groups

Builds the corpora once with scripts/genlog.sh (files of 500,000 lines in
``.bench/``), then runs every program on every corpus once per round, in
turn, so that a noisy machine slows them all alike. A corpus is named ``MIX-SIZE``: MIX is
``template`` (the seed's one template, 3 groups), ``real`` (what real logs
hold: text outside ASCII, quotes, 200 groups, 1 line in 200 broken; see
genlog.sh) or ``wide`` (the real mix in the 12 fields of every type of
WIDE_SCHEMA, grouped by a string in 200 groups: mpevents is given
``--schema``, the peers the same column types), SIZE the lines in millions (``2M``) or thousands (``322K``); a
``-GROUPSg`` part sets genlog's groups (``real-1M-10000g``; the peers skip a
corpus of more than PEERS_UP_TO_GROUPS, and so do ``--baseline`` and the
sequential script). For each it reports the median wall
time, lines per second and the peak memory of its whole process tree (summed
PSS read from /proc while it runs, plus the files of mpevents' spool in
/dev/shm), and the ratios that the targets name, each ratio of walls twice: as the
ratio of the medians and (``, paired``) as the median of each round's own ratio. Then it times
``process_chunk`` on one chunk per feature of real logs (issue #11's target
2, ``scripts/spec_bench.py``) in the same process. The results go to rich
tables and to ``bench-results.json``.

Every run starts with no output there: the previous run's is moved aside
and all of them are removed when the bench ends (scripts/aside.py: on this
machine's filesystem, files made within minutes of removing many others
take up to 18 times longer to make).

Time and memory are measured in separate runs: reading the memory of a
running program costs CPU that it would otherwise have (see SAMPLE_S), so
the timed rounds run undisturbed, and ``--memory-rounds`` more rounds
(one by default) read the memory every SAMPLE_S.

Peers: the sequential stdlib script (scripts/sequential.py), and DuckDB,
Polars and chDB when installed (``pip install -e '.[bench]'``).

``--compress-targets`` adds issue #29's targets for ``--compress zstd``: on
COMPRESS_CORPORA (200 and 1,000 groups), in interleaved rounds, mpevents N=2
plain and with ``--compress zstd``, and DuckDB writing zstd-compressed JSON;
the wall against both (at most COMPRESS_WALL_RATIO times the plain run's, and
at most DuckDB's), the size of the group files against what ``zstd -3`` makes
of each plain group file whole (at most COMPRESS_SIZE_RATIO times), the peak
memory (at most COMPRESS_PEAK_MIB) and that the output, decompressed, is the
plain run's.

``--incremental-targets`` adds issue #28's targets 1 and 2
(``scripts/incremental_bench.py``): an --incremental run after 1% more lines
against a full run of template-10M, and --follow's latency, idle CPU and memory.

``--dask-groups`` adds the Dask engine on many groups (issue #24): the
corpora of DASK_GROUPS, each run in interleaved rounds by the local engine
(N=2), by ``--engine dask`` with a LocalCluster of 2 workers (its start-up
timed too) and by ``--engine dask --scheduler`` on a scheduler and 2 workers
started once, outside the timing (``dask_bench.Cluster``). Every Dask output is
compared with the local engine's, byte for byte, and the client's peak
memory is its own ru_maxrss (with a LocalCluster that includes the
scheduler, which runs in the client). It reports the targets: identical
output, client peak at most DASK_CLIENT_MIB, the first corpus done with a
LocalCluster within DASK_LOCAL_CLUSTER_S, and on the second the external
cluster's wall at most DASK_WALL_RATIO times the local engine's.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ceiling
import incremental_bench
import spec_bench
from aside import clear_aside, set_aside, settle
from rich.console import Console
from rich.table import Table

from mpevents.local import spool as _spool
from mpevents.observe.profiling import tree_pss_kib
from mpevents.output.names import SPOOL_PREFIX

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".bench"
ASIDE = WORK / "aside"  # earlier runs' outputs, removed when the bench ends (scripts/aside.py)
WIDE_SCHEMA = REPO / "scripts" / "schemas" / "wide.toml"
"""The schema of the ``wide`` corpora (issue #27's target 2)."""
LINES_PER_FILE = 500_000
SAMPLE_S = 0.05
"""How often a memory round reads the memory of the running program. One
read of smaps_rollup walks each process's page tables: for mpevents' 10
processes it costs 12 ms of CPU (measured), a quarter of a core at this rate.
That is why no timed round reads memory at all."""


@dataclass
class Program:
    name: str
    command: list[str]
    cwd: Path | None = None  # where it runs: ``python -m mpevents`` takes the package found there
    walls: list[float] = field(default_factory=list)
    peaks_kib: list[int] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Corpus:
    """A benchmark input, named ``MIX-SIZE[-FILESf][-gz|-zst]``: ``mix`` as
    genlog.sh's --mix, ``lines`` in all, in files of 500,000 lines or in
    ``files`` files (``real-2M-2000f``: 2,000 files of 1,000 lines), each
    compressed with gzip or zstd when asked (``template-2M-gz``)."""

    name: str
    mix: str
    lines: int
    files: int
    suffix: str = ""  # "", ".gz" or ".zst"

    groups: int | None = None  # genlog's default where None

    @classmethod
    def parse(cls, name: str) -> Corpus:
        mix, size, *rest = name.split("-")
        suffix = f".{rest.pop()}" if rest and rest[-1] in ("gz", "zst") else ""
        groups = rest.pop()[:-1] if rest and rest[-1].endswith("g") else ""
        files = rest[0] if rest else ""
        lines = size_lines(size)
        valid = (
            mix in MIXES
            and lines > 0
            and len(rest) <= 1
            and (not rest or (files.endswith("f") and files[:-1].isdigit() and int(files[:-1]) > 0))
            and not (rest and suffix and int(files[:-1]) > max(1, lines // LINES_PER_FILE))
            and (groups == "" or (groups.isdigit() and int(groups) > 0))
        )
        if not valid:
            raise SystemExit(
                f"bench: a corpus is MIX-SIZE[-FILESf][-GROUPSg][-gz|-zst] with MIX one of {', '.join(MIXES)}, SIZE "
                "like 2M or 322K, FILES a count (with compression, no more than one file per 500,000 lines) and "
                f"GROUPS genlog's groups, not {name!r}"
            )
        files_count = int(files[:-1]) if rest else max(1, lines // LINES_PER_FILE)
        return cls(name, mix, lines, files_count, suffix, int(groups) if groups else None)

    def build(self) -> Path:
        """The corpus's directory, made once: genlog.sh files of 500,000 lines
        (or fewer, longer files where fewer are asked for), cut into ``files``
        files of equal line counts where more are asked for."""
        directory = WORK / f"corpus-{self.name}"
        marker = directory / ".complete"
        if not marker.exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            parts = min(self.files, max(1, self.lines // LINES_PER_FILE))
            for index in range(parts):
                env = {**os.environ, "GENLOG_SEED": str(index + 1)}
                path = directory / f"part-{index:03d}.log{self.suffix}"
                kind = ["--schema", str(WIDE_SCHEMA)] if self.mix == "wide" else ["--mix", self.mix]
                command = [str(REPO / "scripts" / "genlog.sh"), *kind, str(path), str(self.lines // parts)]
                if self.groups is not None:
                    command.append(str(self.groups))
                subprocess.run(command, check=True, env=env)
            if self.files != parts:
                for index in range(parts):
                    path = directory / f"part-{index:03d}.log"
                    prefix = str(directory / f"part-{index:03d}-")
                    per_file = self.lines // self.files
                    subprocess.run(["split", "-l", str(per_file), "-d", "-a", "6", "--additional-suffix=.log",
                                    str(path), prefix], check=True)  # fmt: skip
                    path.unlink()
            marker.touch()
        return directory


MIXES = ("template", "real", "wide")


def size_lines(size: str) -> int:
    """The lines a SIZE such as ``2M`` or ``322K`` names; 0 if it names none."""
    unit = {"K": 1_000, "M": 1_000_000}.get(size[-1:].upper(), 0)
    return int(size[:-1]) * unit if size[:-1].isdigit() else 0


def compile_bytecode(repo: Path = REPO) -> None:
    """Compile mpevents to bytecode, as an installed package is.

    An editable install has none, and where PYTHONDONTWRITEBYTECODE is set (it
    is on the machine the README's figures come from) every process start
    compiles the package's source again: 80 ms per run of mpevents, measured,
    that no installed copy pays.
    """
    compileall.compile_dir(repo / "mpevents", quiet=1)


def spool_kib(pid: int) -> int:
    """What a run of ``pid`` holds in its spool: compressed chunks and results
    waiting in files in /dev/shm (``mpevents.local.spool``), memory that no process maps."""
    total = 0
    for directory in Path(_spool.RAM_DIRECTORY).glob(f"{SPOOL_PREFIX}{pid}-*"):
        for folder, _, names in os.walk(directory):
            for name in names:
                try:
                    total += (Path(folder) / name).stat().st_size
                except FileNotFoundError:  # taken meanwhile
                    continue
    return total // 1024


def measure(program: Program, output: Path, *, memory: bool) -> None:
    """Run once, with no output there yet (the last run's is set aside,
    scripts/aside.py); record the wall time, or with ``memory`` the peak
    process-tree PSS."""
    set_aside(output, ASIDE)
    started = time.perf_counter()
    process = subprocess.Popen(program.command, stdout=subprocess.DEVNULL, cwd=program.cwd)
    peak = 0
    while memory and process.poll() is None:
        peak = max(peak, tree_pss_kib(process.pid) + spool_kib(process.pid))
        time.sleep(SAMPLE_S)
    code = process.wait()
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"bench: {program.name} failed with exit code {code}")
    if memory:
        program.peaks_kib.append(peak)
        return
    program.walls.append(wall)
    summary = output / "summary.json"
    if summary.exists():
        program.stages.append(json.loads(summary.read_bytes()).get("stages", {}))


def available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def programs_for(
    directory: Path,
    output: Path,
    workers: list[int],
    peers: bool,
    sequential: bool,
    baseline: Path | None = None,
    compressed: bool = False,
    trace: bool = False,
    schema: Path | None = None,
) -> list[Program]:
    """``schema``: the corpus's schema file, given to mpevents and the peers (the
    sequential script and a baseline, which read v1 only, are left out)."""
    python = sys.executable
    command = [python, "-m", "mpevents", "--input", str(directory), "--output", str(output), "--quiet"]
    if schema is not None:
        command += ["--schema", str(schema)]
        sequential, baseline = False, None
    progs = [Program(f"mpevents N={n}", [*command, "--worker-number", str(n)], REPO) for n in workers]
    if trace:  # what --trace costs, in the same rounds
        profiles = str(WORK / "trace-profiles")
        progs += [
            Program("mpevents N=2 --trace", [*command, "--worker-number", "2", "--trace", "--profile-dir", profiles])
        ]
    if baseline is not None:  # another checkout of mpevents (an earlier commit), in the same rounds
        progs += [Program(f"baseline N={n}", [*command, "--worker-number", str(n)], baseline) for n in workers]
    if sequential and not compressed:
        progs.append(
            Program("sequential", [python, str(REPO / "scripts" / "sequential.py"), str(directory), str(output)])
        )
    if peers:
        # Polars and chDB read plain files only here; chDB refuses a partition
        # value with a tab in it, which the wide schema's string groups have.
        names = (
            ("duckdb",) if compressed else ("duckdb", "polars") if schema is not None else ("duckdb", "polars", "chdb")
        )
        for peer in names:
            if available(peer):
                progs.append(
                    Program(
                        peer,
                        [python, str(REPO / "scripts" / "peers.py"), peer, str(directory), str(output)]
                        + ([str(schema)] if schema is not None else []),
                    )
                )
    return progs


def report_size(lines: int, programs: list[Program]) -> dict[str, Any]:
    rows = {}
    for program in programs:
        wall = statistics.median(program.walls)
        rows[program.name] = {
            "wall_s": round(wall, 3),
            "walls_s": [round(w, 3) for w in program.walls],
            "lines_per_s": round(lines / wall),
            "peak_pss_mib": round(statistics.median(program.peaks_kib) / 1024, 1),
            "stages": program.stages[-1] if program.stages else None,
        }
    return rows


def _wall_ratios(
    out: dict[str, float], label: str, top: dict[str, Any], bottom: dict[str, Any], digits: int = 2
) -> None:
    """Put ``label``: ``top``'s median wall / ``bottom``'s, and ``label, paired``:
    the median of the rounds' own ratios. Every program runs once in each
    round, minutes apart from the next round, and this machine's speed moves
    by a factor of two within an hour: a ratio of two runs of one round
    compares them at one speed, the ratio of the medians may compare a slow
    round's run with a fast one's."""
    out[label] = round(top["wall_s"] / bottom["wall_s"], digits)
    pairs = [a / b for a, b in zip(top["walls_s"], bottom["walls_s"], strict=True)]
    out[f"{label}, paired"] = round(statistics.median(pairs), digits)


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The ratios the targets name, where both sides were measured (walls: both
    readings of :func:`_wall_ratios`)."""
    out: dict[str, float] = {}
    for name, rows in results.items():
        two = rows.get("mpevents N=2")
        one = rows.get("mpevents N=1")
        if two is None:
            continue
        for peer in ("duckdb", "polars", "chdb", "sequential"):
            if peer in rows:
                _wall_ratios(out, f"{name}: wall N=2 / {peer}", two, rows[peer])
                out[f"{name}: memory N=2 / {peer}"] = round(two["peak_pss_mib"] / rows[peer]["peak_pss_mib"], 2)
        if one is not None:
            _wall_ratios(out, f"{name}: scaling wall N=1 / N=2", one, two)
        if "mpevents N=2 --trace" in rows:
            _wall_ratios(out, f"{name}: wall N=2 --trace / N=2", rows["mpevents N=2 --trace"], two, 3)
        if "baseline N=2" in rows:
            _wall_ratios(out, f"{name}: wall N=2 / baseline N=2", two, rows["baseline N=2"])
    for name, rows in results.items():  # many files against the same lines in files of 500,000
        base = results.get(name.rsplit("-", 1)[0], {}) if name.endswith("f") else {}
        if "mpevents N=2" in rows and "mpevents N=2" in base:
            _wall_ratios(out, f"{name}: wall N=2 / same lines in few files", rows["mpevents N=2"], base["mpevents N=2"])
            many, few = rows["mpevents N=2"]["wall_s"], base["mpevents N=2"]["wall_s"]
            files = int(name.rsplit("-", 1)[1][:-1])
            out[f"{name}: ms of wall per file beyond its lines"] = round((many - few) / files * 1000, 3)
    for name, rows in results.items():  # many groups against the same lines in genlog's 200
        base = results.get(name.rsplit("-", 1)[0], {}) if name.endswith("g") else {}
        if "mpevents N=2" in rows and "mpevents N=2" in base:
            label = f"{name}: wall N=2 / same lines in 200 groups"
            _wall_ratios(out, label, rows["mpevents N=2"], base["mpevents N=2"])
    for name, rows in results.items():  # compressed against the same lines plain
        plain = results.get(name.rsplit("-", 1)[0], {}) if name.endswith(("-gz", "-zst")) else {}
        if "mpevents N=2" in rows and "mpevents N=2" in plain:
            _wall_ratios(out, f"{name}: wall N=2 / plain N=2", rows["mpevents N=2"], plain["mpevents N=2"])
    for mix in MIXES:
        for suffix in ("", "-gz", "-zst"):
            big, small = results.get(f"{mix}-10M{suffix}", {}), results.get(f"{mix}-2M{suffix}", {})
            if "mpevents N=2" in big and "mpevents N=2" in small:
                ratio = big["mpevents N=2"]["peak_pss_mib"] / small["mpevents N=2"]["peak_pss_mib"]
                out[f"{mix}{suffix}: memory N=2, 10M / 2M"] = round(ratio, 2)
    return out


PEERS = ("duckdb", "polars", "chdb")
PEERS_UP_TO_GROUPS = 10_000
"""The peers and ``--baseline`` run on corpora of at most this many groups:
with 100,000 groups DuckDB takes six minutes, Polars most of one and the
code before the part logs over a minute (issue #25's figures)."""
DASK_GROUPS = ("real-322K-4922g", "real-1M-10000g")
"""Issue #24's corpora: the 322,000 lines in 4,922 groups that a Dask run once
failed on, and 1M lines in 10,000 groups."""
DASK_CLIENT_MIB = 300
DASK_LOCAL_CLUSTER_S = 10.0
DASK_WALL_RATIO = 2.0
CLIENT = (
    "import sys\n"
    "from mpevents._cli import main\n"
    "code = main(sys.argv[2:])\n"
    "peak = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    out.write(peak)\n"
    "sys.exit(code)\n"
)
"""mpevents, then its own peak resident memory (KiB) into the file named first: VmHWM,
the high-water mark of this program's own memory. Not getrusage's ru_maxrss, which
Linux carries over an exec from the forking parent: under bench.py (a few hundred
MiB by then) every client read as big as bench.py itself."""


def same_output(one: Path, other: Path) -> bool:
    """Whether two outputs hold the same files, byte for byte, summary.json
    compared on what does not depend on the run (its counts)."""
    names = sorted(path.name for path in one.iterdir())
    if names != sorted(path.name for path in other.iterdir()):
        return False
    for name in names:
        if name == "summary.json":
            first, second = (json.loads((path / name).read_bytes()) for path in (one, other))
            keys = ("totals", "files", "rejected_by_reason", "groups")
            if any(first.get(key) != second.get(key) for key in keys):
                return False
        elif (one / name).read_bytes() != (other / name).read_bytes():
            return False
    return True


def dask_groups(rounds: int, console: Console) -> dict[str, Any]:
    """The Dask engine on DASK_GROUPS beside the local engine; see the module docstring."""
    from dask_bench import Cluster

    python = sys.executable
    rss = WORK / "client-rss"
    cluster = Cluster(REPO)
    results: dict[str, Any] = {}
    try:
        for name in DASK_GROUPS:
            directory = Corpus.parse(name).build()
            outputs = {label: WORK / f"out-{label}" for label in ("local", "cluster", "scheduler")}
            dask = ["--input", str(directory), "--quiet", "--engine", "dask"]
            programs = {
                "local": Program("local engine, N=2", [python, "-m", "mpevents", "--input", str(directory), "--output",
                                 str(outputs["local"]), "--quiet", "-n", "2"], REPO),
                "cluster": Program("dask, LocalCluster of 2 (start-up included)", [python, "-c", CLIENT, str(rss),
                                   *dask, "--output", str(outputs["cluster"]), "-n", "2"], REPO),
                "scheduler": Program("dask, scheduler and 2 workers running", [python, "-c", CLIENT, str(rss),
                                     *dask, "--output", str(outputs["scheduler"]), "--scheduler", cluster.address],
                                     REPO),
            }  # fmt: skip
            clients: dict[str, list[int]] = {"cluster": [], "scheduler": []}
            identical = True
            for round_ in range(rounds):
                for label, program in programs.items():
                    measure(program, outputs[label], memory=False)
                    if label != "local":
                        clients[label].append(int(rss.read_text()))
                        identical = identical and same_output(outputs["local"], outputs[label])
                    console.log(f"{name} round {round_ + 1}: {program.name} {program.walls[-1]:.2f} s")
            rows = {
                program.name: {
                    "wall_s": round(statistics.median(program.walls), 3),
                    "walls_s": [round(wall, 3) for wall in program.walls],
                    **({"client_peak_mib": round(max(clients[label]) / 1024, 1)} if label in clients else {}),
                }
                for label, program in programs.items()
            }
            local = statistics.median(programs["local"].walls)
            results[name] = {
                "rows": rows,
                "identical": identical,
                "client_peak_mib": round(max(max(peaks) for peaks in clients.values()) / 1024, 1),
                "wall_cluster_s": round(statistics.median(programs["cluster"].walls), 3),
                "wall_ratio_scheduler_local": round(statistics.median(programs["scheduler"].walls) / local, 2),
            }
            for output in outputs.values():
                set_aside(output, ASIDE, console.log)
    finally:
        cluster.stop()
        rss.unlink(missing_ok=True)
    first, second = (results[name] for name in DASK_GROUPS)
    results["targets"] = {
        "identical to the local engine, both corpora": [first["identical"] and second["identical"], "true"],
        "client peak MiB, both corpora": [max(first["client_peak_mib"], second["client_peak_mib"]),
                                          f"<= {DASK_CLIENT_MIB}"],
        f"{DASK_GROUPS[0]}: wall with a LocalCluster (s)": [first["wall_cluster_s"], f"<= {DASK_LOCAL_CLUSTER_S:g}"],
        f"{DASK_GROUPS[1]}: wall, running cluster / local engine": [second["wall_ratio_scheduler_local"],
                                                                    f"<= {DASK_WALL_RATIO:g}"],
    }  # fmt: skip
    return results


def print_dask_groups(results: dict[str, Any], rounds: int, console: Console) -> None:
    for name in DASK_GROUPS:
        table = Table(title=f"{name}, median of {rounds} interleaved rounds")
        for column in ("program", "wall (s)", "client peak (MiB)"):
            table.add_column(column, justify="left" if column == "program" else "right")
        for label, row in results[name]["rows"].items():
            table.add_row(label, f"{row['wall_s']:.2f}", str(row.get("client_peak_mib", "")))
        console.print(table)
    targets = Table(title="Dask on many groups: issue #24's targets")
    for column in ("target", "measured", "wanted"):
        targets.add_column(column, justify="left" if column == "target" else "right")
    for label, (value, wanted) in results["targets"].items():
        targets.add_row(label, str(value).lower(), wanted)
    console.print(targets)


CEILING_CORPORA = ("template-2M", "real-2M", "real-2M-8f-1000g", "template-10M", "real-10M", "real-10M-8f-1000g")
"""The ceiling report's corpora: the seed's template (3 groups), real-shaped
logs in 200 groups, and in 1,000 groups (8 files), in 2M lines and in 10M:
main's start-up, paid once, weighs a fifth as much in the second, where the
whole-run ceiling shows what grows with the input."""


COMPRESS_CORPORA = ("real-2M", "real-2M-8f-1000g")
COMPRESS_WALL_RATIO = 1.15
COMPRESS_SIZE_RATIO = 1.2
COMPRESS_PEAK_MIB = 250


def compress_targets(rounds: int, memory_rounds: int, console: Console) -> dict[str, Any]:
    """Issue #29's targets for ``--compress zstd``; see the module docstring."""
    results: dict[str, Any] = {}
    python = sys.executable
    for name in COMPRESS_CORPORA:
        directory = Corpus.parse(name).build()
        outputs = {label: WORK / f"compress-{label}" for label in ("plain", "zstd", "duckdb-zstd")}
        base = [python, "-m", "mpevents", "--input", str(directory), "--quiet", "--worker-number", "2"]
        peer = [python, str(REPO / "scripts" / "peers.py"), "duckdb-zstd", str(directory)]
        programs = [
            (Program("mpevents N=2", [*base, "--output", str(outputs["plain"])], REPO), outputs["plain"]),
            (
                Program(
                    "mpevents N=2 --compress zstd", [*base, "--output", str(outputs["zstd"]), "--compress", "zstd"]
                ),
                outputs["zstd"],
            ),
        ]
        if available("duckdb"):
            programs.append((Program("duckdb zstd", [*peer, str(outputs["duckdb-zstd"])]), outputs["duckdb-zstd"]))
        for kind, count in (("memory", memory_rounds), ("timed", rounds)):
            for round_ in range(count):
                for program, output in programs:
                    measure(program, output, memory=kind == "memory")
                    console.log(f"{name} {kind} round {round_ + 1}: {program.name} done")
        # Both mpevents outputs are those of their last round: compare and size them.
        plain_files = sorted(outputs["plain"].glob("group-*.jsonl"))
        zstd_whole = sum(len(subprocess.run(["zstd", "-3", "-q", "-c", str(path)], check=True,
                                            capture_output=True).stdout) for path in plain_files)  # fmt: skip
        framed = sum(path.stat().st_size for path in outputs["zstd"].glob("group-*.jsonl.zst"))
        identical = all(
            subprocess.run(["zstd", "-dc", str(outputs["zstd"] / f"{path.name}.zst")], check=True,
                           capture_output=True).stdout == path.read_bytes()
            for path in [*plain_files, outputs["plain"] / "rejected.jsonl"]
        )  # fmt: skip
        rows = report_size(Corpus.parse(name).lines, [program for program, _ in programs])
        plain_wall, zstd_row = rows["mpevents N=2"]["wall_s"], rows["mpevents N=2 --compress zstd"]
        duck = rows.get("duckdb zstd")
        results[name] = {
            "rows": rows,
            "identical_decompressed": identical,
            "group_bytes": {"plain": sum(p.stat().st_size for p in plain_files), "zstd": framed, "zstd -3": zstd_whole},
            "targets": {
                "wall zstd / plain": round(zstd_row["wall_s"] / plain_wall, 3),
                "wall zstd / duckdb zstd": round(zstd_row["wall_s"] / duck["wall_s"], 3) if duck else None,
                "size / zstd -3 whole": round(framed / zstd_whole, 3),
                "peak PSS zstd (MiB)": zstd_row["peak_pss_mib"],
            },
        }
        for output in outputs.values():
            set_aside(output, ASIDE, console.log)
    return results


def print_compress_targets(results: dict[str, Any], rounds: int, console: Console) -> None:
    limits = {
        "wall zstd / plain": COMPRESS_WALL_RATIO,
        "wall zstd / duckdb zstd": 1.0,
        "size / zstd -3 whole": COMPRESS_SIZE_RATIO,
        "peak PSS zstd (MiB)": COMPRESS_PEAK_MIB,
    }
    table = Table(title=f"--compress zstd, issue #29's targets, medians of {rounds} interleaved rounds")
    for column in ("corpus", "program", "wall (s)", "peak PSS (MiB)"):
        table.add_column(column, justify="left" if column in ("corpus", "program") else "right")
    for name, result in results.items():
        for label, row in result["rows"].items():
            table.add_row(name, label, f"{row['wall_s']:.2f}", f"{row['peak_pss_mib']:.0f}")
    console.print(table)
    targets = Table(title="--compress zstd: targets")
    for column in ("corpus", "target", "value", "limit", "met"):
        targets.add_column(column, justify="left" if column in ("corpus", "target") else "right")
    for name, result in results.items():
        for target, value in result["targets"].items():
            met = "" if value is None else "yes" if value <= limits[target] else "NO"
            targets.add_row(name, target, "" if value is None else f"{value:.3f}", f"{limits[target]}", met)
        targets.add_row(name, "identical decompressed", "", "", "yes" if result["identical_decompressed"] else "NO")
    console.print(targets)


def ceilings(corpora: Sequence[Corpus], rounds: int, console: Console) -> dict[str, Any]:
    """The ceiling report (scripts/ceiling.py) on ``corpora`` (CEILING_CORPORA unless told)."""
    results = {}
    for corpus in corpora:
        results[corpus.name] = row = ceiling.measure(corpus.build(), WORK / "out-ceiling", REPO, rounds, ASIDE)
        console.log(
            f"{corpus.name} ceiling: {row['ceiling']} workers ({row['busiest']}), {row['ceiling_running']} once running"
        )
    return results


def print_ceilings(results: dict[str, Any], rounds: int, console: Console) -> None:
    table = Table(title=f"ceiling: workers the busiest thread outside them could serve, N=1, median of {rounds}")
    columns = ("corpus", "worker CPU (s)", "busiest other thread", "its CPU (s)", "of it before the worker (s)",
               "ceiling", "busiest once the worker runs", "its CPU then (s)", "ceiling then")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in (columns[0], columns[2], columns[6]) else "right")
    for name, row in results.items():
        table.add_row(
            name, f"{row['worker_cpu_s']:.2f}", row["busiest"], f"{row['busiest_cpu_s']:.2f}",
            f"{row['busiest_before_s']:.2f}", f"{row['ceiling']:.1f}",
            row["busiest_running"], f"{row['busiest_running_cpu_s']:.2f}", f"{row['ceiling_running']:.1f}",
        )  # fmt: skip
    console.print(table)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(), "system": platform.platform()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds")
    parser.add_argument("--memory-rounds", type=int, default=1, help="rounds that read memory (not timed)")
    parser.add_argument(
        "--corpora", default="template-2M,real-2M,template-10M", help="corpora, e.g. real-2M,template-10M"
    )
    parser.add_argument("--workers", default=None, help="worker counts for mpevents, e.g. 1,2,4 (default: 1 to cores)")
    parser.add_argument("--no-peers", action="store_true", help="skip DuckDB, Polars and chDB")
    parser.add_argument("--sequential-up-to", default="2M", help="run the slow sequential script up to this size")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results.json")
    parser.add_argument("--trace", action="store_true", help="also run mpevents N=2 with --trace")
    parser.add_argument(
        "--spec-rounds", type=int, default=21,
        help="rounds of process_chunk per feature of real logs (scripts/spec_bench.py); 0: none",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=Path, default=None, metavar="DIR",
        help="also run the mpevents of another checkout (git worktree add DIR COMMIT) in the same rounds",
    )  # fmt: skip
    parser.add_argument(
        "--dask-groups", action="store_true",
        help=f"also the Dask engine on many groups ({', '.join(DASK_GROUPS)}) and issue #24's targets",
    )  # fmt: skip
    parser.add_argument(
        "--compress-targets", action="store_true",
        help=f"also --compress zstd beside plain and DuckDB's zstd on {', '.join(COMPRESS_CORPORA)} (issue #29)",
    )  # fmt: skip
    parser.add_argument(
        "--incremental-targets", action="store_true",
        help="also issue #28's targets: --incremental against a full run on template-10M, --follow's latency, "
        "idle CPU and memory (scripts/incremental_bench.py)",
    )  # fmt: skip
    parser.add_argument("--follow-s", type=float, default=60.0, help="with --incremental-targets: seconds of writing")
    parser.add_argument(
        "--ceiling", nargs="?", const=",".join(CEILING_CORPORA), default="", metavar="CORPORA",
        help=f"also the ceiling report (scripts/ceiling.py) on CORPORA (default {','.join(CEILING_CORPORA)})",
    )  # fmt: skip
    args = parser.parse_args()
    if args.rounds < 1 or args.memory_rounds < 1:
        parser.error("--rounds and --memory-rounds must be at least 1")
    cores = os.cpu_count() or 1
    workers = [int(n) for n in args.workers.split(",")] if args.workers else list(range(1, cores + 1))
    corpora = [Corpus.parse(name) for name in args.corpora.split(",") if name]
    ceiling_corpora = [Corpus.parse(name) for name in args.ceiling.split(",") if name]
    sequential_limit = size_lines(args.sequential_up_to)
    if not sequential_limit and args.sequential_up_to.strip("0") not in ("K", "k", "M", "m"):
        parser.error(f"--sequential-up-to is a size like 2M or 322K (0M: never), not {args.sequential_up_to!r}")
    console = Console()
    clear_aside(ASIDE, console.log)  # left by a bench that was stopped
    settle(ASIDE, console.log)
    compile_bytecode()
    if args.baseline is not None:
        compile_bytecode(args.baseline)
    results: dict[str, dict[str, Any]] = {}
    output = WORK / "out"
    each: list[tuple[Corpus, list[Program]]] = []
    for corpus in corpora:
        directory = corpus.build()
        schema = WIDE_SCHEMA if corpus.mix == "wide" else None
        few_groups = (corpus.groups or 0) <= PEERS_UP_TO_GROUPS
        sequential = corpus.lines <= sequential_limit and few_groups  # it holds a file open per group
        baseline = args.baseline if few_groups else None
        programs = programs_for(
            directory, output, workers, not args.no_peers and few_groups, sequential, baseline, bool(corpus.suffix),
            args.trace, schema,
        )  # fmt: skip
        each.append((corpus, programs))
        for round_ in range(args.memory_rounds):
            for program in programs:
                measure(program, output, memory=True)
                peak = program.peaks_kib[-1] / 1024
                console.log(f"{corpus.name} memory round {round_ + 1}: {program.name} {peak:.0f} MiB")
    # Each timed round runs every corpus's programs: a ratio across corpora
    # (100,000 groups against 200) compares runs a minute apart, not the
    # minutes between one corpus's rounds and the next's, in which this
    # machine's speed can move by half.
    for round_ in range(args.rounds):
        for corpus, programs in each:
            for program in programs:
                measure(program, output, memory=False)
                console.log(f"{corpus.name} round {round_ + 1}: {program.name} {program.walls[-1]:.2f} s")
    for corpus, programs in each:
        results[corpus.name] = report_size(corpus.lines, programs)
    set_aside(output, ASIDE, console.log)
    spec = spec_bench.measure(args.spec_rounds) if args.spec_rounds > 0 else {}
    wide = spec_bench.measure_wide(args.spec_rounds) if args.spec_rounds > 0 else {}
    many_groups = dask_groups(args.rounds, console) if args.dask_groups else {}
    ceiling_report = ceilings(ceiling_corpora, args.rounds, console)
    compressed = compress_targets(args.rounds, args.memory_rounds, console) if args.compress_targets else {}
    growing = incremental_bench.measure(args.rounds, args.follow_s, log=console.log) if args.incremental_targets else {}
    document = {
        "machine": machine(),
        "rounds": args.rounds,
        "memory_rounds": args.memory_rounds,
        "results": results,
        "ratios": ratios(results),
        "spec_rounds": args.spec_rounds,
        "spec": spec,
        "spec_wide": wide,
        "dask_groups": many_groups,
        "ceiling": ceiling_report,
        "compress_targets": compressed,
        "incremental": growing,
    }
    clear_aside(ASIDE, console.log)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    for name, rows in results.items():
        table = Table(title=f"{name}, median of {args.rounds} interleaved rounds")
        for column in ("program", "wall (s)", "lines/s", "peak PSS (MiB)", "limited by"):
            table.add_column(column, justify="left" if column in ("program", "limited by") else "right")
        for label, row in rows.items():
            stages = row["stages"] or {}
            table.add_row(
                label, f"{row['wall_s']:.2f}", f"{row['lines_per_s']:,}", f"{row['peak_pss_mib']:.0f}",
                stages.get("limited_by", ""),
            )  # fmt: skip
        console.print(table)
    if spec:
        spec_table = Table(title=f"process_chunk, 1 MiB chunks, medians of {args.spec_rounds} rounds")
        for column in ("variant", "ns per line", "/ template"):
            spec_table.add_column(column, justify="left" if column == "variant" else "right")
        for name, row in spec.items():
            spec_table.add_row(name, f"{row['ns_per_line']:,.0f}", f"{row['per_template']:.2f}")
        console.print(spec_table)
    if wide:
        console.print(
            f"process_chunk per input byte, real mix, medians of {args.spec_rounds} rounds: v1 "
            f"{wide['v1_ns_per_byte']:.2f} ns, the 12-field schema {wide['wide_ns_per_byte']:.2f} ns, "
            f"ratio {wide['ratio']:.2f} (issue #27's target 2: at most 1.3)"
        )
    if many_groups:
        print_dask_groups(many_groups, args.rounds, console)
    if ceiling_report:
        print_ceilings(ceiling_report, args.rounds, console)
    if compressed:
        print_compress_targets(compressed, args.rounds, console)
    if growing:
        incremental_bench.report(growing, console.print)
    if document["ratios"]:
        ratio_table = Table(title="ratios")
        ratio_table.add_column("ratio")
        ratio_table.add_column("value", justify="right")
        for name, value in document["ratios"].items():
            ratio_table.add_row(name, f"{value:.2f}")
        console.print(ratio_table)
    console.print(f"machine: {document['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
