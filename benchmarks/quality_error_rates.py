"""Does a quality run keep its promise? Runs simulated from a results file's own noise, through the real analysis.

    python benchmarks/quality_error_rates.py results/cpu-amd-epyc-quality-mqar.csv
    python benchmarks/quality_error_rates.py FILE --seeds 5,10 --sims 1000 --also-against gqa

The file's variants over its seeds give each variant's mean and the covariance of the variants over seeds (the
variances unequal as they are, the seeds' correlation kept). Two laws draw new runs of n seeds from it:

- normal: a multivariate normal with the file's covariance;
- resample: the file's seeds drawn with replacement (its real shape: a bimodal accuracy stays bimodal); a
  drawn seed often comes twice, which understates the noise a test sees (5 of 10 seeds: about 2 repeats a run),
  so this law's false-verdict rate runs above any test's own;
- subsample: as many distinct seeds of the file, drawn without replacement (no repeats; only for fewer seeds than
  the file has, and its centring makes it a little conservative);
- resample-normal: the calibration of ``resample``: as many seeds as the file has drawn from ``normal``, then
  resampled as ``resample`` does. Its data are normal, so what it shows past 5% is the resampling's own
  excess (repeated seeds), not the metric's shape.

Under the null every variant's mean is set to the grand mean (normal) or each variant's values are shifted by
its own mean's distance from it (resample); a verdict is false when it says better, worse, more or fewer, or
beyond a closeness margin (equivalence and non-inferiority are true there). The line printed is the family-wise
false-verdict rate of everything a run prints (the run's one family), with its Monte Carlo standard error. With
the file's own means, each comparison's power: how often its verdict is found. MQAR's counts are read from the
simulated accuracy (solved >= 0.99, reached 50% and 90%). Reads the file only: no torch, no training.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from sqabench.errors import ConfigError  # noqa: E402
from sqabench.quality.rows import read_any  # noqa: E402
from sqabench.quality.summary import analyse, finished_runs, metric_of, seed_table  # noqa: E402

MARKS = {"solved": 0.99, "steps_to_50": 0.5, "steps_to_90": 0.9}  # MQAR's counts, from a simulated accuracy


def design(rows: list[dict]):
    """(variants, the values as a seeds x variants array over the seeds every variant finished, a row of each
    variant to copy, the metric)."""
    by_variant = finished_runs(rows)
    metric = metric_of([row for runs in by_variant.values() for row in runs.values()])
    table = seed_table(by_variant, metric.column)
    variants = list(table)
    seeds = sorted(set.intersection(*(set(runs) for runs in table.values())))
    if len(seeds) < 3:
        raise ConfigError(f"{len(seeds)} seeds common to every variant: the noise needs 3 or more")
    values = np.array([[table[v][s] for v in variants] for s in seeds])
    templates = {v: by_variant[v][seeds[0]] for v in variants}
    return variants, values, templates, metric


def draw(values: np.ndarray, law: str, null: bool, seeds: int, rng: np.random.Generator) -> np.ndarray:
    """One simulated run: ``seeds`` x variants."""
    means = values.mean(axis=0)
    target = np.full_like(means, means.mean()) if null else means
    if law == "normal":
        return rng.multivariate_normal(target, np.cov(values, rowvar=False), size=seeds, method="svd")
    if law == "resample-normal":
        fresh = rng.multivariate_normal(means, np.cov(values, rowvar=False), size=len(values), method="svd")
        return draw(fresh, "resample", null, seeds, rng)
    if law == "subsample":
        picked = values[rng.choice(len(values), size=seeds, replace=False)]
        return picked - means + target
    picked = values[rng.integers(0, len(values), size=seeds)]
    return picked - means + target


def rows_of(sim: np.ndarray, variants: list[str], templates: dict, metric) -> list[dict]:
    out = []
    for seed, line in enumerate(sim):
        for variant, value in zip(variants, line):
            row = {**templates[variant], "seed": seed, metric.column: float(value), "status": "ok"}
            if metric.column == "val_accuracy":
                for column, mark in MARKS.items():
                    reached = value >= mark
                    row[column] = str(bool(reached)) if column == "solved" else ("1" if reached else "")
            out.append(row)
    return out


def verdicts(analysis):
    """Every judged test of a run: (its name, found, whether a found verdict is false under the null)."""
    out = []
    for s in analysis.summaries:
        if s.comparison is not None and s.comparison.p is not None:
            out.append((f"{s.variant} vs {analysis.baseline}", s.comparison, True))
    for c in analysis.counts:
        if c.p is not None and c.in_family:
            out.append((f"{c.variant} vs {analysis.baseline}, reached {c.mark}", c, True))
    for against, tests in analysis.also.items():
        out += [(f"{c.variant} vs {against}", c, True) for c in tests if c.p is not None]
    for text, c in analysis.claims:
        if c.p is not None:
            out.append((text, c, not c.found and bool(c.beyond)))
    return out


def false_verdict(name_test_false) -> bool:
    name, c, false = name_test_false
    if c.kind in ("equivalence", "non-inferiority"):
        return false  # a closeness verdict beyond its margin (its interval wholly outside): false when all equal
    return c.found


def simulate(rows: list[dict], seeds: int, sims: int, law: str, also: tuple[str, ...], seed: int = 0):
    """(the null's family-wise false-verdict rate, each comparison's power at the file's means)."""
    variants, values, templates, metric = design(rows)
    baseline = "mha" if "mha" in variants else variants[0]
    rng = np.random.default_rng(seed)
    false = 0
    found: dict[str, int] = {}
    for _ in range(sims):
        analysis = analyse(rows_of(draw(values, law, True, seeds, rng), variants, templates, metric), baseline, also)
        false += any(false_verdict(v) for v in verdicts(analysis))
        analysis = analyse(rows_of(draw(values, law, False, seeds, rng), variants, templates, metric), baseline, also)
        for name, c, _ in verdicts(analysis):
            if c.kind != "count":
                found[name] = found.get(name, 0) + c.found
    return false / sims, {name: hits / sims for name, hits in found.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--seeds", default="5,10", help="seeds a simulated run has, comma-separated")
    parser.add_argument("--sims", type=int, default=1000, help="simulated runs per law and seed count")
    parser.add_argument("--laws", default="normal,resample,resample-normal,subsample")
    parser.add_argument("--also-against", default="", help="second references, as sqabench quality takes them")
    args = parser.parse_args(argv)
    rows = [row for row in read_any(args.file)[0] if row["status"] == "ok"]
    also = tuple(name for name in args.also_against.split(",") if name)
    print(f"{args.file}: {args.sims} simulated runs per line, the family of everything a run prints"
          + (f" (also against {', '.join(also)})" if also else ""))  # fmt: skip
    for law in args.laws.split(","):
        for seeds in (int(n) for n in args.seeds.split(",")):
            if law == "subsample" and seeds >= len(design(rows)[1]):
                continue  # as many distinct seeds as the file has: the file itself, every time
            rate, power = simulate(rows, seeds, args.sims, law, also)
            se = math.sqrt(rate * (1 - rate) / args.sims)
            print(f"  {law:15} {seeds:2} seeds: family-wise false-verdict rate {rate:.1%} (+-{se:.1%}, null: all "
                  "means equal)")  # fmt: skip
            print("    power at the file's means: " + ", ".join(f"{name} {p:.0%}" for name, p in power.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
