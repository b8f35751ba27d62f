"""The ledger: credits in 64 KiB units, the spans a dead worker held, and no
credit lost however often a reader is restarted."""

from __future__ import annotations

import functools
import json
import operator
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

from mpevents.core.framing import Flag, Span
from mpevents.local.child import context
from mpevents.local.ledger import CREDIT_BYTES, Ledger, LedgerFlag, credit_budget, credit_units
from tests.conftest import REPO, RUN_TIMEOUT_S, genlog


def test_a_span_takes_one_credit_per_64_kib() -> None:
    assert credit_units(Span(0, 0, 0, 100)) == 1  # a small file
    assert credit_units(Span(0, 0, 0, CREDIT_BYTES)) == 1
    assert credit_units(Span(0, 0, 0, CREDIT_BYTES + 1)) == 2
    assert credit_units(Span(0, 0, 5, 5, Flag.LAST)) == 1  # an empty last span
    assert credit_units(Span(0, 0, 0, 10 * CREDIT_BYTES, Flag.TRUNCATED)) == 1  # only its start is read
    assert credit_budget(6, 1 << 20) == 96


def test_a_reader_whose_file_becomes_the_head_gives_back_what_it_holds() -> None:
    ledger = Ledger.make(context(), 2, 1, 2)
    wanted = Span(1, 0, 0, 3 * CREDIT_BYTES)  # 3 credits of the 2 there are

    def head_moves_on() -> None:
        while ledger.credits_free():  # until the reader holds both
            time.sleep(0.01)
        ledger.written(Span(0, 0, 0, 10, Flag.LAST))

    mover = threading.Thread(target=head_moves_on)
    mover.start()
    assert ledger.take_credits(wanted) == wanted  # not flagged: its file's turn came
    mover.join(timeout=10)
    assert ledger.credits_free() == 2  # both given back
    assert ledger.take_credits(Span(1, 1, 0, 10)).flags == Flag.NONE  # the head needs no credit


def test_a_reader_ahead_of_the_head_takes_its_credits_and_the_collector_returns_them() -> None:
    ledger = Ledger.make(context(), 3, 1, 4)
    span = ledger.take_credits(Span(2, 0, 0, 3 * CREDIT_BYTES))
    assert span.flags & LedgerFlag.CREDIT and ledger.credits_free() == 1
    ledger.dropped(span)  # a repeat, sent by a restarted reader: its credits come back too
    assert ledger.credits_free() == 4
    span = ledger.take_credits(Span(2, 0, 0, 3 * CREDIT_BYTES))
    ledger.dropped(span._replace(flags=span.flags | LedgerFlag.REDO))  # a worker's redo: they came back with the first
    assert ledger.credits_free() == 1
    ledger.written(span._replace(flags=span.flags | LedgerFlag.REDO))  # ... unless the redo is the first to arrive
    assert ledger.credits_free() == 4


def test_a_dead_workers_spans_are_handed_on_flagged_redo() -> None:
    ledger = Ledger(1, 2)
    assert ledger.held(0) == ([], None)
    first, second = Span(0, 0, 0, 10), Span(0, 1, 10, 20, Flag.LAST | LedgerFlag.CREDIT)
    redo = first._replace(flags=first.flags | LedgerFlag.REDO)
    ledger.hold(0, first)
    assert ledger.held(0) == ([redo], redo)
    ledger.sent(0)
    assert ledger.held(0) == ([redo], None)  # its result may sit in the feeder
    ledger.hold(0, second)
    spans, busy = ledger.held(0)
    assert spans == [redo, second._replace(flags=second.flags | LedgerFlag.REDO)]
    assert spans[1].flags == Flag.LAST | LedgerFlag.CREDIT | LedgerFlag.REDO  # framing's flag kept beside the ledger's
    assert busy == spans[1]
    assert ledger.held(1) == ([], None)


def test_the_ledgers_flags_leave_framings_alone() -> None:
    framing = functools.reduce(operator.or_, Flag)
    assert not framing & functools.reduce(operator.or_, LedgerFlag)
    assert pickle.loads(pickle.dumps(Span(0, 0, 0, 1, Flag.LAST | LedgerFlag.REDO))).flags & LedgerFlag.REDO


def test_files_resume_at_their_first_unwritten_span() -> None:
    ledger = Ledger(3, 1)
    for file in range(3):
        ledger.took(file, file % 2)
    ledger.written(Span(0, 0, 0, 10, Flag.LAST))
    ledger.written(Span(2, 0, 0, 7))
    assert ledger.unwritten_files_of(0) == [2]  # file 0 is written
    assert ledger.unwritten_files_of(1) == [1]
    assert ledger.resume_point(2) == (1, 7)
    assert ledger.resume_point(1) == (0, 0)


_ENGINE_SCRIPT = """
import json, sys
from pathlib import Path
from mpevents._config import Config, check
from mpevents._engine import RetryBudget
from mpevents.output.directory import claim, remove
from mpevents._run import drive
from mpevents.local.supervisor import LocalEngine

config = Config(input_dir=Path(sys.argv[1]), output_dir=Path(sys.argv[2]), workers=2, readers=2,
                chunk_bytes=4096, max_retries=4)
files = check(config)
held = claim(config.output_dir)
staging = held.staging
engine = LocalEngine(config, files, staging, RetryBudget(config.max_retries))
try:
    report = drive(engine, None)
finally:
    engine.stop()
    remove(staging)
    held.release()
ledger = engine.attempt.ledger
print(json.dumps({"free": ledger.credits_free(), "budget": ledger.budget,
                  "readers": engine.restarts.readers, "lines": sum(c.lines for c in report.files)}))
"""


def test_no_credit_is_lost_when_the_reader_of_a_later_file_dies_again_and_again(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "0.log", 4000, seed=1)  # written slowly, about 40 spans of 20 ms
    genlog(inputs / "1.log", 2000, seed=2)
    # The reader of the second file dies before its span 2, three times over:
    # each replacement sends spans 0 and 1 again, with credits, while the first
    # file is still being written; the collector already holds them and drops
    # the repeats, and must give their credits back.
    env = {**os.environ, "MPEVENTS_FAILPOINTS": "reader_kill=1:2:3,collector_slow=0.02"}
    done = subprocess.run(
        [sys.executable, "-c", _ENGINE_SCRIPT, str(inputs), str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["readers"] == 3
    assert outcome["lines"] == 6000
    assert outcome["free"] == outcome["budget"]
