"""How noisy is sqabench's timer, within a run and between runs? The same cells timed in several fresh
processes, each cell's coefficient of variation (sd / mean) within each run's repeats (their median over the
runs) beside the coefficient of variation of its median between the runs: the figure a gate's limits should be
set from (docs/ci.md), and what --repeats auto's target (--target-noise) can expect on this machine.

    python benchmarks/timer_noise.py [--runs 5] [--seq 256,1k] [--variants mha,sqa,xsqa] [--repeats 20]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(out: Path, args: argparse.Namespace) -> list[dict]:
    command = [sys.executable, "-m", "sqabench", "run", "--device", args.device, "--seq", args.seq, "--variants",
               args.variants, "--batch", "1", "--warmup", "2", "--repeats", str(args.repeats), "--preset",
               args.preset, "--scope", args.scope, "--yes", "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with out.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["status"] == "ok"]


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes (default 5)")
    parser.add_argument("--seq", default="256,1k")
    parser.add_argument("--variants", default="mha,sqa,xsqa")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--scope", default="block", help="model, block or attention (default block: one layer)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="sqabench-timer-"))
    runs = [one_run(folder / f"run{i}.csv", args) for i in range(args.runs)]
    print(f"{args.runs} fresh processes x {args.repeats} repeats, {args.preset} {args.scope} on {args.device}")
    print(f"{'cell':24} {'median ms':>10} {'within-run CV':>14} {'between-run CV':>15}")
    for key in dict.fromkeys((row["variant"], row["seq_len"]) for row in runs[0]):
        rows = [row for run in runs for row in run if (row["variant"], row["seq_len"]) == key]
        within = statistics.median(cv([float(x) for x in row["samples_ms"].split(";")]) for row in rows)
        medians = [float(row["time_ms"]) for row in rows]
        print(f"{key[0] + ' n=' + key[1]:24} {statistics.median(medians):10.4g} {within:14.1%} {cv(medians):15.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
