#!/usr/bin/env python3
"""Soak test of --follow (minutes; not in CI): every line written is in the output exactly once.

A writer appends lines (one in 50 broken) to two logs while it rotates them:
``app.log`` by rename (``app.log`` to ``app.log.1``, the ``.1`` compressed
into ``app.log-N.gz``), ``web.log`` by copytruncate (copied to ``web.log.1``,
then cut to nothing). Meanwhile ``mpevents --follow`` is SIGKILLed, its whole
process group, at random moments and started again. At the end one last
``--incremental`` run reads what is left, and the output is held to the
reference parser (``tests/_reference.py``) on everything the writer wrote,
stream by stream: the same records, each once, in each stream's order; the
same rejects with the same line numbers.

    python scripts/soak.py --kills 50 --rate 2000          # about 3 minutes
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests._reference import expected_output  # noqa: E402

PATTERNS = ("*.log", "*.log.1", "*.log-*.gz")
BROKEN = (b"", b"1|a|b", b"x|a|b|c|1|1|1", b"1|a||c|1|1|1")


class Writer(threading.Thread):
    """Appends ``rate`` lines a second over the logs and rotates them every ``rotate_s``;
    every line also goes to ``truth/<stream>.log``, one file per stream."""

    def __init__(self, inputs: Path, truth: Path, rate: int, rotate_s: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.inputs, self.truth, self.rate, self.rotate_s = inputs, truth, rate, rotate_s
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.lines = self.rotations = self.compressions = self.truncations = 0
        self.streams = {"app.log": 0, "web.log": 1}  # the stream each log is now
        self._next_stream = 2
        self._gz = 0

    def line(self, number: int) -> bytes:
        if self.rng.randrange(50) == 0:
            return self.rng.choice(BROKEN) + b"\n"
        group = self.rng.randint(1, 7)
        return b"%d|soak|ev|u%d|%d|%d|%d\n" % (number, self.rng.randrange(100), number * 7, group, 10**9 + number)

    def append(self, name: str, data: bytes) -> None:
        with open(self.inputs / name, "ab") as handle:
            handle.write(data)
        with open(self.truth / f"{self.streams[name]:04d}.log", "ab") as handle:
            handle.write(data)

    def run(self) -> None:
        rotate_at = time.monotonic() + self.rotate_s
        while not self.stop.is_set():
            started = time.monotonic()
            for name in self.streams:
                batch = b"".join(self.line(self.lines + i) for i in range(self.rate // 20))
                self.lines += self.rate // 20
                self.append(name, batch)
            if time.monotonic() >= rotate_at:
                self.rotate()
                rotate_at = time.monotonic() + self.rotate_s
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    def rotate(self) -> None:
        self.rotations += 1
        for name in self.streams:
            first = self.inputs / f"{name}.1"
            if first.exists():  # the rotation before: compressed, atomically, then the plain one removed
                self._gz += 1
                partial = self.inputs / "partial.tmp"
                with open(first, "rb") as source, gzip.open(partial, "wb") as target:
                    shutil.copyfileobj(source, target)
                os.rename(partial, self.inputs / f"{name}-{self._gz:04d}.gz")
                first.unlink()
                self.compressions += 1
            if name == "app.log":
                os.rename(self.inputs / name, first)
            else:  # copytruncate
                shutil.copyfile(self.inputs / name, first)
                os.truncate(self.inputs / name, 0)
                self.truncations += 1
            self.streams[name] = self._next_stream
            self._next_stream += 1
            (self.inputs / name).touch()


def mpevents(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mpevents", *map(str, args)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs of the follower (default: 50)")
    parser.add_argument("--rate", type=int, default=2000, help="lines a second, over the two logs (default: 2000)")
    parser.add_argument("--rotate-s", type=float, default=2.0, help="seconds between rotations (default: 2)")
    parser.add_argument(
        "--kill-after", type=float, nargs=2, default=(0.3, 4.0), metavar=("MIN", "MAX"),
        help="a kill comes this many seconds after the follower starts, at random (default: 0.3 4)",
    )  # fmt: skip
    parser.add_argument("--workers", "-n", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the directories")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mpevents-soak-"))
    inputs, truth, out = work / "in", work / "truth", work / "out"
    inputs.mkdir()
    truth.mkdir()
    rng = random.Random(args.seed)
    writer = Writer(inputs, truth, args.rate, args.rotate_s, args.seed)
    for name in writer.streams:
        (inputs / name).touch()
    writer.append("app.log", writer.line(0))
    writer.append("web.log", writer.line(1))
    writer.lines = 2
    options: list[str | Path] = [
        "--input",
        inputs,
        "--output",
        out,
        "--incremental",
        "-n",
        str(args.workers),
        "--settle",
        "0.5",
    ]
    for pattern in PATTERNS:
        options += ["--pattern", pattern]
    started = time.monotonic()
    writer.start()
    kills, exits = 0, collections.Counter[int]()
    while kills < args.kills:
        process = subprocess.Popen(
            mpevents(*options, "--follow", "--interval", "0.2", "--no-progress"),
            cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            process.wait(timeout=rng.uniform(*args.kill_after))
            exits[process.returncode] += 1  # it ended by itself: a failure
            print(f"follower exited {process.returncode}: {process.stderr.read().decode()[-300:]}")  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
        finally:
            if process.stderr is not None:
                process.stderr.close()
    writer.stop.set()
    writer.join()
    wrote_s = time.monotonic() - started
    final = subprocess.run(
        mpevents(*options, "--settle", "0", "-q"), check=False, cwd=REPO, capture_output=True, text=True
    )
    if final.returncode != 0:
        print(f"the last run failed ({final.returncode}): {final.stderr}")
        return 1
    failures = check(out, truth)
    summary = json.loads((out / "summary.json").read_bytes())
    state = summary["incremental"]
    print(
        f"soak: {writer.lines:,} lines written in {wrote_s:.0f} s ({args.rate:,}/s), {writer.rotations} rotations "
        f"({writer.compressions} compressed, {writer.truncations} copytruncated); follower SIGKILLed {kills} times, "
        f"exited by itself {sum(exits.values())} times; {state['runs']} commits; output {summary['totals']['lines']:,} "
        f"lines: {'every line exactly once' if not failures else 'FAILED: ' + '; '.join(failures)}"
    )
    if not args.keep:
        shutil.rmtree(work)
    else:
        print(f"kept {work}")
    return 1 if failures or exits else 0


def check(out: Path, truth: Path) -> list[str]:
    """What differs between the output and the reference parser's records of every stream."""
    failures = []
    expected = expected_output(truth)
    stream_of = {}  # a record's id: the stream it was written to
    for path in truth.iterdir():
        for line in path.read_bytes().splitlines():
            stream_of[line.split(b"|", 1)[0]] = path.name
    for group, records in expected.groups.items():
        path = out / f"group-{group}.jsonl"
        got = path.read_bytes().splitlines(keepends=True) if path.exists() else []
        if collections.Counter(got) != collections.Counter(records):
            missing = collections.Counter(records) - collections.Counter(got)
            extra = collections.Counter(got) - collections.Counter(records)
            failures.append(f"group {group}: {sum(missing.values())} missing, {sum(extra.values())} extra")
        else:  # each stream's records in its order: ids rise within a stream
            last: dict[str, int] = {}
            for record in got:
                number = json.loads(record)["id"]
                stream = stream_of[str(number).encode()]
                if number < last.get(stream, -1):
                    failures.append(f"group {group}: stream {stream} out of order at id {number}")
                    break
                last[stream] = number
    got_files = {path.name for path in out.glob("group-*.jsonl")}
    if got_files != {f"group-{group}.jsonl" for group in expected.groups}:
        failures.append(f"group files {sorted(got_files)}")
    rejects = [json.loads(line) for line in (out / "rejected.jsonl").read_bytes().splitlines()]
    key = lambda reject: (reject["line"], reject["reason"], reject["raw"])  # noqa: E731
    if collections.Counter(map(key, rejects)) != collections.Counter(map(key, expected.rejects)):
        failures.append(f"rejects: {len(rejects)} against {len(expected.rejects)}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
