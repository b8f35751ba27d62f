"""Summary: what ``summary.json`` holds, typed, and how it is built from a run.

Talks to: the run (``_run``), which builds it from the collector's
:class:`~mpevents.output.report.Report`, the engine and what each file left
unread (``core.live``); the dashboard, which prints it. Field order is the key order of the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from mpevents._config import Config
from mpevents._engine import Engine, Restarts
from mpevents.core.inputs import InputFile
from mpevents.core.live import Unread
from mpevents.core.schema import V1, Schema
from mpevents.observe.board import WorkerField
from mpevents.output.directory import TOOL
from mpevents.output.incremental import Progress
from mpevents.output.names import group_file_name
from mpevents.output.report import FileCounts, Report

LIMIT_SHARE: Final = 0.6
"""A stage busy for more than this share of the run is the one that limits it."""


class Stages(msgspec.Struct):
    """How busy each stage was, as shares of the run's wall time, and which one limited it."""

    workers_busy: float = 0.0
    collector_busy: float = 0.0
    limited_by: str = "reading or start-up"
    chunks_per_worker: list[int] = msgspec.field(default_factory=list)
    """Chunks each worker slot checked (local engine), replacements included."""


class FileSummary(msgspec.Struct):
    """One input file in summary.json: its lines by outcome, and its bytes."""

    lines: int
    valid: int
    rejected: int
    blank: int
    bytes: int = 0
    """The bytes of its lines: decompressed, for a compressed file."""
    size_on_disk: int = 0
    compression: str = "none"
    """"none", "gzip" or "zstd"."""
    unread_bytes: int | msgspec.UnsetType = msgspec.UNSET
    """Only for a file with bytes not read (``core.live``): its last line, which
    had no line end yet in a file modified within --settle, and what it
    gained during the run."""
    unread_reasons: list[str] | msgspec.UnsetType = msgspec.UNSET
    """Why, with unread_bytes: "unfinished_line", "grew", or both."""


class SchemaFacts(msgspec.Struct):
    """Which record format the run read: its name, and the SHA-256 of its TOML text (``Schema.digest``)."""

    name: str
    sha256: str

    @classmethod
    def of(cls, schema: Schema) -> SchemaFacts:
        return cls(schema.name, schema.digest())


class OutputFile(msgspec.Struct):
    """One output file in summary.json's ``output`` (with --compress)."""

    records: int
    bytes: int
    """Its size on disk, compressed."""


class OutputSummary(msgspec.Struct):
    """What --compress wrote: every output file's records and compressed
    size, the bytes written, and how much smaller than plain they are."""

    compression: str
    level: int
    files: dict[str, OutputFile]
    bytes_written: int
    plain_bytes: int
    """The same files' bytes decompressed: what the run writes without --compress."""
    ratio: float
    """plain_bytes / bytes_written."""


class ThisRun(msgspec.Struct):
    """An --incremental run's own counts, beside the totals across runs."""

    totals: FileCounts
    files: dict[str, FileSummary]
    """Each file it read, from where the run before left it."""
    rejected_by_reason: dict[str, int]
    groups: dict[str, int]


class Summary(msgspec.Struct, kw_only=True):
    """The whole of ``summary.json``."""

    tool: str
    schema: SchemaFacts = msgspec.field(default_factory=lambda: SchemaFacts.of(V1))
    totals: FileCounts
    files: dict[str, FileSummary]
    rejected_by_reason: dict[str, int]
    groups: dict[str, int]
    workers: int
    engine: str
    elapsed_s: float
    lines_per_s: int
    bytes_read: int
    stages: Stages
    restarts: Restarts
    unread_bytes: int = 0
    """The files' unread_bytes, together."""
    cpu_profile: str | msgspec.UnsetType | None = msgspec.UNSET
    """With --cpu-profile: the merged profile (None when no process wrote one)."""
    memory: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    """With --mem-profile: the peak memory of every process."""
    trace: str | msgspec.UnsetType = msgspec.UNSET
    """With --trace: where the timeline is."""
    resumed_lines: int | msgspec.UnsetType = msgspec.UNSET
    """With --resume: the lines an interrupted run had written, which this one took as they were."""
    output: OutputSummary | msgspec.UnsetType = msgspec.UNSET
    """With --compress: the compressed files and their sizes."""
    this_run: ThisRun | msgspec.UnsetType = msgspec.UNSET
    """With --incremental: this run's own counts (totals, files, groups and rejects above are across runs)."""
    incremental: Progress | msgspec.UnsetType = msgspec.UNSET
    """With --incremental: what the output has read of its input, and the committed size of each of its files."""


def build_summary(
    config: Config,
    files: Sequence[InputFile],
    report: Report,
    elapsed: float,
    engine: Engine,
    unread: dict[int, Unread] | None = None,
) -> Summary:
    """``unread``: the files with bytes not read, by index (``_live.unread``)."""
    unread = unread or {}
    totals = FileCounts()
    for counts in report.files:
        totals.lines += counts.lines
        totals.valid += counts.valid
        totals.rejected += counts.rejected
        totals.blank += counts.blank
    entries = {}
    for info, counts, end in zip(files, report.files, report.ends):
        entry = FileSummary(
            counts.lines, counts.valid, counts.rejected, counts.blank, end, info.size, info.compression or "none"
        )
        if info.index in unread:
            entry.unread_bytes, entry.unread_reasons = unread[info.index]
        entries[info.name] = entry
    return Summary(
        tool=TOOL,
        totals=totals,
        files=entries,
        schema=SchemaFacts.of(config.schema),
        rejected_by_reason=dict(zip(config.schema.reasons(), report.reasons)),
        groups=ordered_groups(report.groups, config.schema),
        workers=config.workers,
        engine=config.engine,
        elapsed_s=round(elapsed, 3),
        lines_per_s=round(totals.lines / elapsed) if elapsed > 0 else 0,
        bytes_read=sum(info.end for info in files),
        stages=stage_shares(*engine.busy(), elapsed, chunks_per_worker(engine)),
        restarts=engine.restarts,
        unread_bytes=sum(count for count, _ in unread.values()),
        output=output_summary(config, report),
    )


def output_summary(config: Config, report: Report) -> OutputSummary | msgspec.UnsetType:
    """With --compress, what it wrote (from the collector's report)."""
    if config.compress is None:
        return msgspec.UNSET
    written = sum(size for _, size in report.output_files.values())
    # The group files in the order of summary.json's groups, then the rejects.
    names = [
        config.compress.name(group_file_name(group.encode())) for group in ordered_groups(report.groups, config.schema)
    ]
    order = {name: position for position, name in enumerate(names)}
    files = sorted(report.output_files.items(), key=lambda item: order.get(item[0], len(order)))
    return OutputSummary(
        config.compress.kind,
        config.compress.level,
        {name: OutputFile(records, size) for name, (records, size) in files},
        written,
        report.output_plain,
        round(report.output_plain / written, 3) if written else 0.0,
    )


def across_runs(summary: Summary, previous: Summary | None, progress: Progress, schema: Schema) -> Summary:
    """An --incremental run's summary: ``summary``, this run's own, becomes
    ``this_run``; the totals, files, rejects and groups are the output's, across
    runs (``previous``: the last committed summary); ``progress`` the state."""
    this = ThisRun(summary.totals, summary.files, summary.rejected_by_reason, summary.groups)
    totals, reasons, groups = summary.totals, dict(summary.rejected_by_reason), dict(summary.groups)
    if previous is not None:
        totals = FileCounts(
            *(a + b for a, b in zip(msgspec.structs.astuple(totals), msgspec.structs.astuple(previous.totals)))
        )
        for reason, count in previous.rejected_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + count
        for group, count in previous.groups.items():
            groups[group] = groups.get(group, 0) + count
    files = {}
    for stream in progress.streams:
        counts = stream.counts
        entry = FileSummary(
            counts.lines, counts.valid, counts.rejected, counts.blank, stream.consumed, stream.size_on_disk,
            stream.compression,
        )  # fmt: skip
        now = summary.files.get(stream.name)
        if now is not None:
            entry.unread_bytes, entry.unread_reasons = now.unread_bytes, now.unread_reasons
        files[stream.name] = entry
    return msgspec.structs.replace(
        summary,
        totals=totals,
        files=files,
        rejected_by_reason=reasons,
        groups=ordered_groups(groups, schema),
        this_run=this,
        incremental=progress,
    )


def decode(data: bytes) -> Summary | None:
    """A summary.json's contents; None if it is not one this version reads."""
    try:
        return msgspec.json.decode(data, type=Summary)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def ordered_groups(groups: dict[str, int], schema: Schema) -> dict[str, int]:
    """summary.json's ``groups``: numerically for numbers, in byte order for strings and bools."""
    # Names sorted with a C-level key, then their counts looked up: a lambda
    # over the items cost a Python call each, at 100,000 groups a quarter of
    # main's serial work between the last placing and the commit.
    names = sorted(groups, key=int if schema.numeric_groups else str.encode)
    return dict(zip(names, map(groups.__getitem__, names)))


def chunks_per_worker(engine: Engine) -> list[int]:
    board = engine.board
    return [board.worker(slot, WorkerField.CHUNKS) for slot in range(board.n_workers)]


def stage_shares(worker_s: float, collector_s: float, elapsed: float, chunks: list[int] | None = None) -> Stages:
    """Which stage limited the run: the workers (checking and encoding), the
    collector (writing), or neither, when reading or start-up dominated.
    ``worker_s`` is the average worker's busy time."""
    if elapsed <= 0:
        return Stages(chunks_per_worker=chunks or [])
    worker_share, collector_share = worker_s / elapsed, collector_s / elapsed
    limit = "workers" if worker_share >= collector_share else "collector"
    if max(worker_share, collector_share) < LIMIT_SHARE:
        limit = "reading or start-up"
    return Stages(round(worker_share, 3), round(collector_share, 3), limit, chunks or [])


def encode(summary: Summary) -> bytes:
    """summary.json's bytes: indented JSON and a final newline."""
    return msgspec.json.format(msgspec.json.encode(summary), indent=2) + b"\n"
