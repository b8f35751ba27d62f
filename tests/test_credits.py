"""Readers' credits: counted in 64 KiB units, never held up by the file being written."""

from __future__ import annotations

import threading
import time

from mpevents._board import Board, CollectorField
from mpevents._child import context
from mpevents._messages import CREDIT_BYTES, FLAG_TRUNCATED, credit_budget, credit_units
from mpevents._reader import _take_credits


def test_a_chunk_takes_one_credit_per_64_kib() -> None:
    assert credit_units(0, 100, 0) == 1  # a small file
    assert credit_units(0, CREDIT_BYTES, 0) == 1
    assert credit_units(0, CREDIT_BYTES + 1, 0) == 2
    assert credit_units(5, 5, 0) == 1  # an empty last chunk
    assert credit_units(0, 10 * CREDIT_BYTES, FLAG_TRUNCATED) == 1  # only its start is read
    assert credit_budget(6, 1 << 20) == 96


def test_a_reader_whose_file_becomes_the_head_gives_back_what_it_holds() -> None:
    credits = context().Semaphore(2)
    board = Board(2, 1)
    board.set_collector(CollectorField.HEAD, 0)

    def head_moves_on() -> None:
        time.sleep(0.2)
        board.set_collector(CollectorField.HEAD, 1)

    mover = threading.Thread(target=head_moves_on)
    mover.start()
    started = time.monotonic()
    assert _take_credits(1, 3, board, credits) == 0  # wanted 3 of 2, then its file's turn came
    mover.join()
    assert time.monotonic() - started < 5
    assert credits.acquire(timeout=0.1) and credits.acquire(timeout=0.1)  # both given back
    assert _take_credits(1, 1, board, credits) == 0  # its file is the head: no credit needed


def test_a_reader_ahead_of_the_head_takes_its_credits() -> None:
    credits = context().Semaphore(4)
    board = Board(3, 1)
    assert _take_credits(2, 3, board, credits) == 3
    assert credits.acquire(timeout=0.1)
    assert not credits.acquire(timeout=0.05)
