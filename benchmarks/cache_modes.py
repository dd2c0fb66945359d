"""How much a warm cache flatters a short cell, measured on this machine: the same cells timed with
``--cache warm`` and ``--cache cold`` (the last-level cache evicted before every timed repeat, outside its
time), each in a fresh process, then the ratio of the medians cell by cell.

The default cells are small enough that a whole forward's working set fits a server CPU's last-level cache,
which is where a warm cache reads faster than memory can deliver.

    python benchmarks/cache_modes.py [--seq 256] [--variants mha,sqa,xsqa] [--repeats 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path


def sweep(out: Path, cache: str, args: argparse.Namespace) -> list[dict]:
    command = [sys.executable, "-m", "sqabench", "run", "--device", "cpu", "--seq", args.seq, "--variants",
               args.variants, "--batch", "1", "--warmup", "2", "--repeats", str(args.repeats), "--cache", cache,
               "--preset", args.preset, "--scope", args.scope, "--yes", "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with out.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["status"] == "ok"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", default="256", help="lengths, as sqabench run --seq (default 256)")
    parser.add_argument("--variants", default="mha,sqa,xsqa")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--scope", default="block", help="model, block or attention (default block: one layer)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="keep the CSVs here (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="sqabench-cache-"))
    folder.mkdir(parents=True, exist_ok=True)
    warm = {(r["variant"], r["seq_len"]): r for r in sweep(folder / "warm.csv", "warm", args)}
    cold = {(r["variant"], r["seq_len"]): r for r in sweep(folder / "cold.csv", "cold", args)}
    print(f"--preset {args.preset} --scope {args.scope}, {args.repeats} repeats; files in {folder}")
    print(f"{'cell':<16} {'warm ms':>9} {'spread':>7} {'cold ms':>9} {'spread':>7} {'cold / warm':>11}")
    for key in warm:
        if key not in cold:
            continue
        w, c = warm[key], cold[key]
        ratio = float(c["time_ms"]) / float(w["time_ms"])
        print(f"{key[0] + ' ' + key[1]:<16} {float(w['time_ms']):>9.4g} {float(w['spread']):>7.1%} "
              f"{float(c['time_ms']):>9.4g} {float(c['spread']):>7.1%} {ratio:>11.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
