"""How much of a ``sqabench quality`` run goes to evaluation and logging, and how much to training steps.

    python benchmarks/quality_overhead.py                  # the CPU default: MQAR, 8 variants x 2 seeds
    python benchmarks/quality_overhead.py -- --data corpus.txt --variants mha,sqa --steps 200

Runs ``sqabench quality`` (the arguments after ``--``) into a scratch folder, then reads its rows: each
run's ``eval_s`` (the held-out evaluations, the curve rows written and the progress lines) against its
``wall_s``, and the command's whole wall time against the training steps' own (steps x median step).
A benchmark, not a test: the shares depend on the machine. The goal is evaluation and logging under 5%.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "q.csv"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sqabench", "quality", "--device", "cpu", *extra, "--out",
                               str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        whole = time.perf_counter() - started
        if done.returncode != 0:
            print(f"sqabench quality exited {done.returncode}")
            return done.returncode
        rows = [r for r in csv.DictReader(out.open()) if r["status"] == "ok"]
    wall = sum(float(r["wall_s"]) for r in rows)
    evaluation = sum(float(r["eval_s"]) for r in rows)
    steps = sum(int(r["steps"]) * float(r["step_ms"]) / 1e3 for r in rows)
    print(
        f"{len(rows)} runs, command {whole:.1f} s; in the runs {wall:.1f} s, of which training steps "
        f"{steps:.1f} s (steps x median step)"
    )
    print(f"evaluation and logging: {evaluation:.2f} s = {evaluation / wall:.1%} of the runs' time (goal: < 5%)")
    print(
        f"outside the runs (start, imports, models built, the table): {whole - wall:.1f} s = "
        f"{(whole - wall) / whole:.1%} of the command"
    )
    return 0 if evaluation / wall < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
