"""Names on disk: every file and directory name a run writes, in one place.

Owns the names of the output (``group-<value>.jsonl``, or ``records.jsonl``
for a schema without group_by; ``rejected.jsonl``, ``summary.json``; with
--compress ``.zst`` or ``.gz`` after all but the summary) and the pattern
that says a directory holds only those;
the names kept beside the output (a run's staging directory, a --resume
run's, an old output moved aside by a commit); and the names inside the
staging directory (the journal, the Dask tasks' part files, the unframed compressed rejects, a spool that
/dev/shm had no room for). A name that ends in a pid names the run that
made it, so that what a run killed outright left is known by the pid being
dead (``output.directory.remove_abandoned``).

Talks to: nothing; everyone who names a file imports the name from here
(``output.directory``, ``output.journal``, ``output.collector``, the local
collector and spool, the Dask tasks and client).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Final

SUMMARY_NAME: Final = "summary.json"
REJECTS_NAME: Final = "rejected.jsonl"
RECORDS_NAME: Final = "records.jsonl"
"""Every record, for a schema without group_by."""
_GROUP_PREFIX: Final = "group-"
_GROUP_SUFFIX: Final = ".jsonl"
_NAME_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
"""The bytes a group value keeps as they are in its file name; every other is %XX."""
_NAME_MAX: Final = 200
_NAME_KEPT: Final = 180
"""An encoded value longer than _NAME_MAX bytes keeps this many, then '~' and
16 hex digits of the SHA-256 of the value: a name stays under the 255 bytes of
a file name, and values alike in their first bytes still name different files."""
COMPRESSED_SUFFIXES: Final = {"zstd": ".zst", "gzip": ".gz"}
"""What ``--compress`` adds to the name of a group file and of the rejects."""
_COMPRESSED: Final = f"({'|'.join(map(re.escape, COMPRESSED_SUFFIXES.values()))})?"
OUTPUT_NAMES: Final = re.compile(
    f"({re.escape(_GROUP_PREFIX)}[A-Za-z0-9_%~-]+{re.escape(_GROUP_SUFFIX)}|{re.escape(RECORDS_NAME)}){_COMPRESSED}"
    f"|{re.escape(REJECTS_NAME)}{_COMPRESSED}|{re.escape(SUMMARY_NAME)}"
)
"""What may be in an output directory, and nothing else (``output.directory.is_ours``)."""

TEMP_PREFIX: Final = ".mpevents-tmp-"
"""A run's staging directory beside the output: ``.mpevents-tmp-<output>-<pid>``."""
RESUME_PREFIX: Final = ".mpevents-resume-"
"""A --resume run's staging directory: named by its output alone, so that the
next --resume run finds it."""
OLD_PREFIX: Final = ".mpevents-old-"
"""An old output moved aside by a commit without renameat2: ``.mpevents-old-<output>-<pid>``."""

JOURNAL_NAME: Final = ".journal"
"""A --resume run's journal, in its staging directory (``output.journal``)."""
REJECTS_TAIL_PREFIX: Final = ".rejected-tail-"
"""With --compress, the rejects not yet framed, in the staging directory
(``output.frames``): ``.rejected-tail-<frames before them>``."""
PARTS_DIR: Final = ".parts"
"""Where Dask tasks write their part files, inside the staging directory (removed before the commit)."""
SPOOL_PREFIX: Final = "mpevents-spool-"
"""A spool directory, in /dev/shm or the staging directory: ``mpevents-spool-<pid>-<letters>`` (``local.spool``)."""
SPOOL_NAMES: Final = re.compile(f"{re.escape(SPOOL_PREFIX)}([0-9]+)-.*")
"""A spool's name: the pid of the run that made it, then mkdtemp's letters."""


def group_file_name(group: bytes) -> str:
    """The output file of ``group``, the canonical text of its value (``b""``:
    no group_by). Every byte outside A-Z a-z 0-9 _ - is written %XX, so that no
    value names a path outside the output directory, nor two values one file."""
    if group.isdigit() and len(group) <= _NAME_MAX:  # v1's ids, and every uint's: as they are
        return f"{_GROUP_PREFIX}{group.decode('ascii')}{_GROUP_SUFFIX}"
    if not group:
        return RECORDS_NAME
    encoded = "".join(chr(byte) if byte in _NAME_SAFE else f"%{byte:02X}" for byte in group)
    if len(encoded) > _NAME_MAX:
        encoded = f"{encoded[:_NAME_KEPT]}~{hashlib.sha256(group).hexdigest()[:16]}"
    return f"{_GROUP_PREFIX}{encoded}{_GROUP_SUFFIX}"


def compressed_name(plain: str, kind: str) -> str:
    """Output file ``plain`` compressed with ``kind`` ("zstd" or "gzip")."""
    return plain + COMPRESSED_SUFFIXES[kind]


def rejects_tail_name(frames: int) -> str:
    return f"{REJECTS_TAIL_PREFIX}{frames}"


def staging_name(output: str, pid: int) -> str:
    return f"{TEMP_PREFIX}{output}-{pid}"


def resume_name(output: str) -> str:
    return f"{RESUME_PREFIX}{output}"


def old_name(output: str, pid: int) -> str:
    return f"{OLD_PREFIX}{output}-{pid}"


def staging_names(output: str) -> re.Pattern[str]:
    """The staging directories of runs on ``output``; the first group is the pid."""
    return re.compile(f"{re.escape(f'{TEMP_PREFIX}{output}-')}([0-9]+)")


def old_names(output: str) -> re.Pattern[str]:
    """Old outputs of ``output`` moved aside; the first group is the pid."""
    return re.compile(f"{re.escape(f'{OLD_PREFIX}{output}-')}([0-9]+)")


def part_file_name(file: int, seq: int) -> str:
    """A new part file of the Dask task on span ``seq`` of input ``file``: a name
    no other attempt of the same task has (one that failed leaves its own)."""
    return f"{file}-{seq}-{uuid.uuid4().hex}"
