"""What --resume costs and what it saves, on a corpus of the benchmark (issue #15).

    python scripts/resume_bench.py [--corpus template-10M] [--rounds 3] [--workers 2]

1. The journal's cost: full runs with and without --resume, interleaved,
   medians of ``--rounds``.
2. What an interruption costs: a --resume run is killed with SIGKILL on its
   whole process group at 25%, 50% and 75% of a full run's time, then run
   again with --resume. The output must be byte-identical to an undisturbed
   run's (summary.json apart from its run-dependent keys), and the target is
   that the resumed run takes at most the remaining share of a full run plus
   10% of a full run.

Prints a table and writes ``resume-results.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import REPO, WORK, Corpus, compile_bytecode
from rich.console import Console
from rich.table import Table

RUN_DEPENDENT = ("elapsed_s", "lines_per_s", "stages", "restarts", "resumed_lines")


def command(corpus: Path, out: Path, workers: int, resume: bool) -> list[str]:
    args = [sys.executable, "-m", "mpevents", "--input", str(corpus), "--output", str(out), "-n", str(workers), "-q"]
    return [*args, "--resume"] if resume else args


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, cwd=REPO)
    return time.perf_counter() - started


def output_of(out: Path) -> dict[str, Any]:
    files: dict[str, Any] = {}
    for path in sorted(out.iterdir()):
        if path.name == "summary.json":
            summary = json.loads(path.read_bytes())
            files[path.name] = {key: value for key, value in summary.items() if key not in RUN_DEPENDENT}
        else:
            digest = hashlib.blake2b()
            with open(path, "rb") as handle:
                while block := handle.read(1 << 24):
                    digest.update(block)
            files[path.name] = digest.hexdigest()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="template-10M")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "resume-results.json")
    args = parser.parse_args()
    console = Console()
    compile_bytecode()
    corpus = Corpus.parse(args.corpus).build()
    out = WORK / "resume-out"
    plain, journaled = [], []
    for round_ in range(args.rounds):
        plain.append(timed(command(corpus, out, args.workers, False)))
        journaled.append(timed(command(corpus, out, args.workers, True)))
        console.log(f"round {round_ + 1}: {plain[-1]:.2f} s plain, {journaled[-1]:.2f} s with --resume")
    full, with_journal = statistics.median(plain), statistics.median(journaled)
    reference = output_of(out)
    kills = []
    for share in (0.25, 0.5, 0.75):
        shutil.rmtree(out, ignore_errors=True)
        victim = subprocess.Popen(command(corpus, out, args.workers, True), cwd=REPO, start_new_session=True)
        time.sleep(share * with_journal)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        time.sleep(0.2)  # the children see main gone and exit
        resumed = timed(command(corpus, out, args.workers, True))
        summary = json.loads((out / "summary.json").read_bytes())
        allowed = (1 - share) * full + 0.1 * full
        kills.append({
            "killed_at_share": share,
            "resumed_s": round(resumed, 3),
            "allowed_s": round(allowed, 3),
            "resumed_lines": summary["resumed_lines"],
            "lines": summary["totals"]["lines"],
            "identical": output_of(out) == reference,
        })  # fmt: skip
        console.log(f"killed at {share:.0%}: resumed in {resumed:.2f} s (allowed {allowed:.2f} s), {kills[-1]}")
    document = {
        "corpus": args.corpus,
        "workers": args.workers,
        "full_s": round(full, 3),
        "full_with_resume_s": round(with_journal, 3),
        "journal_cost": round(with_journal / full - 1, 4),
        "kills": kills,
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    table = Table(title=f"--resume on {args.corpus}, N={args.workers}")
    for column in ("killed at", "lines already written", "resumed run", "target", "identical"):
        table.add_column(column, justify="right")
    for kill in kills:
        table.add_row(
            f"{kill['killed_at_share']:.0%}", f"{kill['resumed_lines']:,} of {kill['lines']:,}",
            f"{kill['resumed_s']:.2f} s", f"≤ {kill['allowed_s']:.2f} s", str(kill["identical"]),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"full run {full:.2f} s, with --resume {with_journal:.2f} s: the journal costs {document['journal_cost']:.1%}"
    )
    shutil.rmtree(out, ignore_errors=True)
    return 0 if all(kill["identical"] for kill in kills) else 1


if __name__ == "__main__":
    sys.exit(main())
