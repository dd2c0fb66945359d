"""How close `sqabench run`'s estimate comes to the time the run takes, cold (a new inductor cache and no
cached ceilings: a fresh machine) and then warm (the same caches again), for the sweeps whose compile costs
the estimate models: the CPU default sweep, `--compile` and `--cp 2`.

    python benchmarks/estimate_accuracy.py [--case default|compile|cp|all] [--runs N]

A benchmark, not a test: it depends on the machine and its load. Run it on a quiet machine; the README
quotes its output. Each run is a separate `python -m sqabench run` process, timed from its start (for
`--cp`, from the launching command's start: the launcher's start is part of what the estimate must know).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "default": [],
    "compile": ["--variants", "mha,sqa", "--seq", "256,1k", "--compile"],
    "cp": ["--variants", "sqa,gqa", "--seq", "256,512", "--cp", "2"],
}


def one(env: dict, out: Path, extra: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    command = [sys.executable, "-m", "sqabench", "run", "--device", "cpu", *extra, "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    estimate = float(re.search(r"estimated duration: [^(]*\((\d+) s\)", done.stdout + done.stderr).group(1))
    return estimate, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--runs", type=int, default=1, help="warm runs after the cold one")
    args = parser.parse_args()
    for case in CASES if args.case == "all" else [args.case]:
        with tempfile.TemporaryDirectory() as scratch:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{scratch}/inductor",
                   "SQABENCH_CACHE_DIR": f"{scratch}/cache", "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
            for i in range(1 + args.runs):
                estimate, wall = one(env, Path(scratch) / f"run{i}.csv", CASES[case])
                kind = "cold" if i == 0 else "warm"
                print(f"{case} {kind}: estimated {estimate:.0f} s, took {wall:.0f} s: the estimate is "
                      f"{estimate / wall:.0%} of it", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
