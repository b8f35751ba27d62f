"""Dashboard: what a person sees while a run moves, and the final summary.

Reads the scoreboard (shared memory) and the queue depths from the main
process; never receives a message from a child. Three faces:

* a rich ``Live`` dashboard when stdout is a terminal, redrawn at most
  10 times a second: per-file bars, an overall bar with rate and time left,
  the workers, the queues and the collector;
* one plain progress line on stderr every few seconds otherwise (pipes, CI);
* the final summary table, the same figures as ``summary.json``;
* for ``--follow``, one line (:func:`follow_line`: the lag, the rate, the last
  commit), redrawn on a terminal (:class:`FollowDashboard`), else printed per batch.

:func:`render` is a pure function of a :class:`View`, so tests can draw the
dashboard for known counters without running a pipeline.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mpevents._config import Config
from mpevents.observe.board import Board, CollectorField, FileField, FileState, ReaderField, WorkerField

if TYPE_CHECKING:
    from mpevents._engine import Engine
    from mpevents._summary import Summary

REFRESH_S: Final = 0.2
"""Five redraws a second: smooth to the eye, and well under the 10 a second
the dashboard may use, so drawing costs under 1% of one core."""
MAX_FILE_ROWS: Final = 10
"""Up to this many input files the dashboard shows a row for each; beyond,
a row for each file being read and a line of counts, so that thousands of
files never push the rest off the screen."""
SUMMARY_FILE_ROWS: Final = 20
"""Files the final summary lists by name, most rejects first, then most lines;
summary.json lists every file."""
PLAIN_EVERY_S: Final = 3.0
"""Without a terminal, one progress line this often: enough to see it move."""

_STATE_NAMES: Final = {
    FileState.WAITING: "waiting",
    FileState.READING: "reading",
    FileState.READ: "read",
    FileState.WRITTEN: "done",
}


@dataclass(frozen=True)
class FileView:
    name: str
    size: int
    read: int
    state: str
    written: int = 0  # bytes of this file whose lines the collector has written


@dataclass(frozen=True)
class WorkerView:
    number: int
    chunks: int
    lines: int
    busy_share: float
    restarts: int


@dataclass(frozen=True)
class View:
    """Everything the dashboard shows, read off the scoreboard at one moment."""

    elapsed_s: float
    files: list[FileView]
    workers: list[WorkerView]
    queues: list[tuple[str, float]]  # name, share of its size
    lines: int
    records: int
    rejected: int
    reasons: dict[str, int]
    top_groups: list[tuple[str, int]]
    groups: int
    note: str = ""  # a line from the engine (Dask: tasks and workers)
    file_counts: tuple[int, int, int] | None = None
    """With many files: (done, reading, waiting); ``files`` then holds only those being read."""
    byte_counts: tuple[int, int, int] | None = None
    """With many files: (total, read, written) input bytes, which ``files`` no longer sums."""
    output: tuple[int, int] | None = None
    """With --compress: the group files' bytes placed so far, decompressed, and as written."""
    placing: tuple[int, int, float] | None = None
    """Once every chunk is checked and the workers write the group files (the
    local engine): their work done since, as bytes (``Board.placed``), of
    the bytes of records that were left to place, and the seconds since."""

    @property
    def placed_fraction(self) -> float:
        if self.placing is None:
            return 0.0
        placed, total, _ = self.placing
        return 1.0 if total <= 0 else min(1.0, placed / total)

    @property
    def ratio(self) -> float:
        """How many times smaller the written output is than plain (0: none written yet)."""
        return self.output[0] / self.output[1] if self.output is not None and self.output[1] else 0.0

    @property
    def file_total(self) -> int:
        return len(self.files) if self.file_counts is None else sum(self.file_counts)

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files) if self.byte_counts is None else self.byte_counts[0]

    @property
    def read_bytes(self) -> int:
        return sum(file.read for file in self.files) if self.byte_counts is None else self.byte_counts[1]

    @property
    def written_bytes(self) -> int:
        return sum(file.written for file in self.files) if self.byte_counts is None else self.byte_counts[2]

    @property
    def fraction(self) -> float:
        """Done, as the share of input bytes whose lines are written."""
        total = self.total_bytes
        return 1.0 if total == 0 else min(1.0, self.written_bytes / total)

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.read_bytes / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.placing is not None:  # checking is over: what is left is writing the group files
            placed, total, since = self.placing
            placed = min(placed, total)
            if placed >= total:
                return 0.0
            return None if placed <= 0 or since <= 0 else (total - placed) / (placed / since)
        rate = self.written_bytes / self.elapsed_s if self.elapsed_s > 0 else 0.0
        if rate <= 0:
            return None
        return max(0.0, (self.total_bytes - self.written_bytes) / rate)


def view_of(pipeline: Engine, compress: bool = False) -> View:
    """Read the scoreboard of a running pipeline: in time independent of the
    number of files once there are more than MAX_FILE_ROWS. ``compress``:
    the run writes compressed output (its bytes and ratio are shown)."""
    board = pipeline.board
    elapsed = time.monotonic() - pipeline.started

    def file_view(index: int) -> FileView:
        info = pipeline.files[index]
        return FileView(
            info.name,
            info.size,
            board.file(index, FileField.BYTES_READ),
            _STATE_NAMES[FileState(board.file(index, FileField.STATE))],
            board.file(index, FileField.WRITTEN),
        )

    file_counts = byte_counts = None
    if len(pipeline.files) <= MAX_FILE_ROWS:
        files = [file_view(index) for index in range(len(pipeline.files))]
    else:
        being_read = sorted({board.reader(slot, ReaderField.FILE) - 1 for slot in range(board.n_readers)} - {-1})
        files = [file_view(index) for index in being_read]
        done = board.collector(CollectorField.HEAD)
        waiting = len(pipeline.files) - pipeline.files_taken()
        file_counts = (done, max(0, len(pipeline.files) - done - waiting), waiting)
        byte_counts = (pipeline.total_bytes, board.read_bytes(), board.collector(CollectorField.BYTES))
    workers = [
        WorkerView(
            slot + 1,
            board.worker(slot, WorkerField.CHUNKS),
            board.worker(slot, WorkerField.LINES),
            min(1.0, board.worker(slot, WorkerField.BUSY_NS) / 1e9 / elapsed) if elapsed > 0 else 0.0,
            board.worker(slot, WorkerField.RESTARTS),
        )
        for slot in range(board.n_workers)
    ]
    return View(
        elapsed_s=elapsed,
        files=files,
        workers=workers,
        queues=pipeline.queue_depths(),
        lines=board.collector(CollectorField.LINES),
        records=board.collector(CollectorField.RECORDS),
        rejected=board.collector(CollectorField.REJECTED),
        reasons=board.reasons(),
        top_groups=board.top_groups(),
        groups=board.collector(CollectorField.GROUPS),
        note=pipeline.note(),
        file_counts=file_counts,
        byte_counts=byte_counts,
        output=_output_bytes(board) if compress else None,
        placing=_placing(board),
    )


def _placing(board: Board) -> tuple[int, int, float] | None:
    total = board.collector(CollectorField.TO_PLACE)
    if total <= 0:
        return None
    since = (time.monotonic_ns() - board.collector(CollectorField.PLACE_START_NS)) / 1e9
    before = board.collector(CollectorField.PLACED_BEFORE)  # the epochs placed while the checks went on
    return max(0, board.placed() - before), total - before, max(0.0, since)


def _output_bytes(board: Board) -> tuple[int, int]:
    slots = range(board.n_workers)
    return (
        sum(board.worker(slot, WorkerField.OUT_PLAIN) for slot in slots),
        sum(board.worker(slot, WorkerField.OUT_WRITTEN) for slot in slots),
    )


# --- formatting ----------------------------------------------------------------


def _count(number: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= limit:
            return f"{number / limit:.1f}{suffix}"
    return f"{number:.0f}"


def _bytes(number: float) -> str:
    for limit, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if number >= limit:
            return f"{number / limit:.1f} {suffix}"
    return f"{number:.0f} B"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _bar(text: Text, fraction: float, width: int, style: str = "green") -> None:
    """Append a bar of ``width`` cells, filled to ``fraction``."""
    filled = int(max(0.0, min(1.0, fraction)) * width + 0.5)
    text.append("━" * filled, style=style)
    text.append("━" * (width - filled), style="grey23")


# --- the live dashboard ----------------------------------------------------------
#
# Drawn as plain styled text with fixed columns: rich's Table and Panel measure
# every cell on every frame, which cost about 30 ms a frame here, a third of a
# core at 10 frames a second. Text costs about a millisecond.

_NAME_WIDTH: Final = 28


def render(view: View) -> Text:
    """The whole dashboard for one view."""
    out = Text()
    out.append("mpevents", style="bold blue")
    engine = f"{len(view.workers)} workers" if view.workers else "dask engine"
    out.append(f"  {view.file_total:,} files, {engine}\n\n")
    for file in view.files:
        fraction = 1.0 if file.size == 0 else file.read / file.size
        name = file.name if len(file.name) <= _NAME_WIDTH else "…" + file.name[-_NAME_WIDTH + 1 :]
        out.append(f"{name:<{_NAME_WIDTH}} ")
        _bar(out, fraction, 30, "green" if file.state == "done" else "cyan")
        out.append(f" {_bytes(file.read):>10} / {_bytes(file.size):<10} {file.state}\n")
    if view.file_counts is not None:
        done, reading, waiting = view.file_counts
        out.append(f"{'':<{_NAME_WIDTH}} {done:,} done, {reading:,} reading, {waiting:,} waiting\n")
    out.append(f"\n{'all files':<{_NAME_WIDTH}} ", style="bold")
    _bar(out, view.fraction, 30, "magenta")
    out.append(f" {view.fraction:6.1%}", style="bold")
    out.append(
        f"  {_count(view.lines_per_s)} lines/s  {_bytes(view.bytes_per_s)}/s"
        f"  elapsed {_duration(view.elapsed_s)}  left {_duration(view.eta_s)}\n"
    )
    if view.placing is not None:
        out.append(f"{'group files':<{_NAME_WIDTH}} ", style="bold")
        _bar(out, view.placed_fraction, 30, "magenta")
        out.append(f" {view.placed_fraction:6.1%}", style="bold")
        out.append(f"  of {_bytes(view.placing[1])} of records, read from the part logs and written\n")
    out.append("\n")
    if view.note:
        out.append(view.note + "\n\n", style="bold")
    if view.workers:
        out.append("workers   chunks     lines   lines/s  busy  restarts\n", style="bold")
    for worker in view.workers:
        rate = worker.lines / view.elapsed_s if view.elapsed_s > 0 else 0.0
        out.append(
            f"{worker.number:>7} {worker.chunks:>8} {_count(worker.lines):>9} {_count(rate):>9}"
            f" {worker.busy_share:>5.0%} {worker.restarts:>9}\n"
        )
    out.append("\nqueues\n", style="bold")
    for name, fill in view.queues:
        out.append(f"{name:>10} ")
        _bar(out, fill, 16, "yellow")
        out.append(f" {fill:>4.0%}\n")
    out.append("\ncollector\n", style="bold")
    out.append(f"  records written {_count(view.records):>9}\n  lines rejected  {_count(view.rejected):>9}\n")
    for reason, count in view.reasons.items():
        if count:
            out.append(f"    {reason:<14}{_count(count):>9}\n", style="red")
    out.append(f"  groups          {view.groups:>9}\n")
    if view.output is not None:
        out.append(
            f"  output written  {_bytes(view.output[1]):>9} of {_bytes(view.output[0])}, ratio {view.ratio:.2f}\n"
        )
    for group, count in view.top_groups:
        out.append(f"    group {group:<8}{_count(count):>9}\n")
    return out


class LiveDashboard:
    """The rich Live dashboard for a terminal."""

    def __init__(self, console: Console | None = None, compress: bool = False) -> None:
        self.console = console or Console()
        self._compress = compress
        self._live: Live | None = None
        self._pipeline: Engine | None = None
        self._drawn = 0.0

    def start(self, pipeline: Engine) -> None:
        self._pipeline = pipeline
        if self._live is None:
            self._live = Live(console=self.console, auto_refresh=False, transient=False)
            self._live.start()
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if self._live is None or self._pipeline is None or now - self._drawn < REFRESH_S:
            return
        self._drawn = now
        self._live.update(render(view_of(self._pipeline, self._compress)), refresh=True)

    def stop(self) -> None:
        if self._live is not None:
            if self._pipeline is not None:
                self._drawn = 0.0
                self._live.update(render(view_of(self._pipeline, self._compress)), refresh=True)
            self._live.stop()
            self._live = None


class PlainProgress:
    """One line on stderr every few seconds: for pipes, files and CI logs.

    Once a run has put out a line, it puts out one more at once when every
    line is checked and the workers begin writing the group files, which
    can take a good part of the run's end: a log says when checking ended,
    not up to PLAIN_EVERY_S later. A run over sooner prints nothing."""

    def __init__(self, stream: Any = None, compress: bool = False) -> None:
        self.stream = stream or sys.stderr
        self._compress = compress
        self._pipeline: Engine | None = None
        self._written = 0.0
        self._said = False  # a line is out
        self._said_placing = False  # a line with the group files is out

    def start(self, pipeline: Engine) -> None:
        self._pipeline = pipeline
        self._written = time.monotonic()

    def tick(self) -> None:
        pipeline = self._pipeline
        if pipeline is None:
            return
        now = time.monotonic()
        due = now - self._written >= PLAIN_EVERY_S
        placing_began = self._said and not self._said_placing and pipeline.board.collector(CollectorField.TO_PLACE) > 0
        if not (due or placing_began):
            return
        self._written = now
        view = view_of(pipeline, self._compress)
        self._said = True
        self._said_placing = self._said_placing or view.placing is not None
        print(progress_line(view), file=self.stream, flush=True)

    def stop(self) -> None:
        self._pipeline = None


def progress_line(view: View) -> str:
    return (
        f"mpevents: {view.fraction:.0%} done, {_count(view.lines)} lines, "
        f"{_count(view.lines_per_s)} lines/s, {_bytes(view.bytes_per_s)}/s, "
        f"{_count(view.rejected)} rejected, left {_duration(view.eta_s)}"
        + (f", group files {view.placed_fraction:.0%} placed" if view.placing is not None else "")
        + (f", output {_bytes(view.output[1])} (ratio {view.ratio:.2f})" if view.output and view.output[1] else "")
    )


def make_observer(config: Config) -> LiveDashboard | PlainProgress | None:
    """The dashboard for this run: live on a terminal, lines otherwise, or none."""
    if config.progress != "auto":
        return None
    compress = config.compress is not None
    if sys.stdout.isatty():
        return LiveDashboard(compress=compress)
    return PlainProgress(compress=compress)


# --- --follow ------------------------------------------------------------------------


@dataclass(frozen=True)
class FollowView:
    """What a --follow run shows between and after its batches."""

    batches: int
    lines: int
    """The last batch's lines."""
    lines_per_s: float
    """The last batch's rate."""
    lag_bytes: int
    """Bytes of the input not read yet."""
    committed_at: float | None
    """When the last batch committed (time.time()); None: none yet."""
    total_lines: int
    """Every line the output holds."""


def follow_line(view: FollowView, now: float | None = None) -> str:
    """One line: the batches, the last one's lines and rate, the lag and the last commit."""
    if view.committed_at is None:
        commit = "no commit yet"
    else:
        ago = max(0.0, (time.time() if now is None else now) - view.committed_at)
        commit = f"committed {time.strftime('%H:%M:%S', time.localtime(view.committed_at))} ({_duration(ago)} ago)"
    return (
        f"mpevents: batch {view.batches}: {_count(view.lines)} lines, {_count(view.lines_per_s)} lines/s; "
        f"lag {_bytes(view.lag_bytes)}; {commit}; {_count(view.total_lines)} lines in all"
    )


class FollowDashboard:
    """--follow on a terminal: its line, redrawn at every look at the input."""

    def __init__(self, console: Console | None = None) -> None:
        self._live = Live(console=console or Console(), auto_refresh=False, transient=False)
        self._live.start()

    def show(self, view: FollowView) -> None:
        self._live.update(Text(follow_line(view)), refresh=True)

    def stop(self) -> None:
        self._live.stop()


# --- the final summary -------------------------------------------------------------


def summary_table(summary: Summary) -> RenderableType:
    """The end-of-run report: the same figures as summary.json."""
    files = Table(title="mpevents summary", title_justify="left")
    files.add_column("file")
    for column in _COUNT_FIELDS:
        files.add_column(column, justify="right")
    shown = summary.files
    if len(shown) > SUMMARY_FILE_ROWS:
        ranked = sorted(shown.items(), key=lambda item: (-item[1].rejected, -item[1].lines))
        shown = dict(ranked[:SUMMARY_FILE_ROWS])
    for name, counts in shown.items():
        files.add_row(name, *(f"{getattr(counts, key):,}" for key in _COUNT_FIELDS))
    if len(shown) < len(summary.files):
        more = len(summary.files) - len(shown)
        files.add_row(Text(f"… {more:,} more files, listed in summary.json", style="italic"), "", "", "", "")
    totals = summary.totals
    files.add_row(
        Text("total", style="bold"), *(Text(f"{getattr(totals, key):,}", style="bold") for key in _COUNT_FIELDS)
    )
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    elapsed = summary.elapsed_s
    facts.add_row("elapsed", f"{elapsed:.2f} s with {summary.workers} worker(s)")
    facts.add_row(
        "throughput",
        f"{_count(summary.lines_per_s)} lines/s, {_bytes(summary.bytes_read / elapsed if elapsed else 0)}/s",
    )
    reasons = {reason: count for reason, count in summary.rejected_by_reason.items() if count}
    facts.add_row("rejected", ", ".join(f"{reason} {count:,}" for reason, count in reasons.items()) or "none")
    groups = summary.groups
    largest = sorted(groups.items(), key=lambda item: item[1], reverse=True)[:5]
    shown_groups = ", ".join(f"{group}: {count:,}" for group, count in largest)
    facts.add_row("groups", f"{len(groups):,}" + (f" (largest {shown_groups})" if groups else ""))
    if summary.output:
        output = summary.output
        facts.add_row(
            "output",
            f"{output.compression} {output.level}: {_bytes(output.bytes_written)} written of "
            f"{_bytes(output.plain_bytes)}, ratio {output.ratio:.2f}",
        )
    restarts = msgspec.structs.asdict(summary.restarts)
    if any(restarts.values()):
        facts.add_row("restarts", ", ".join(f"{role} {count}" for role, count in restarts.items() if count))
    memory = summary.memory
    if memory:
        peaks = ", ".join(
            f"{name} {_bytes(facts_['peak_rss_kib'] * 1024)}" for name, facts_ in memory["processes"].items()
        )
        facts.add_row("peak RSS", peaks)
        for site in memory["top_sites"][:5]:
            facts.add_row("allocated", f"{_bytes(site['bytes'])} at {site['site']}")
    return Group(files, facts)


_COUNT_FIELDS: Final = ("lines", "valid", "rejected", "blank")


def print_summary(summary: Summary, config: Config, console: Console | None = None) -> None:
    (console or Console()).print(summary_table(summary))
