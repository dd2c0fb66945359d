"""What a quality run found, over seeds: each variant's metric with its interval, its paired difference from a
baseline variant, the minimum detectable effect, a verdict that never ranks inside the noise, and the paper's
quality claims judged the same way. No torch here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sqabench.errors import ConfigError
from sqabench.quality.stats import Comparison, Interval, compare, interval, verdict
from sqabench.variants import heads_label

# The paper's quality claims, as pairs (variant, against): judged on held-out accuracy (MQAR) or loss (text).
CLAIMS = (("sqa", "gqa", "SQA close to GQA"), ("ssqa", "gqa", "sSQA close to GQA"),
          ("xsqa", "mqa", "xSQA no worse than MQA"))  # fmt: skip


# What a task's runs are judged on: (column, higher is better, its name in a verdict).
METRICS = {"mqar": ("val_accuracy", True, "accuracy"), "text": ("val_loss", False, "val loss")}
EXTRAS = {"val_bpb": "bits/byte", "val_accuracy": "accuracy", "val_loss_padded": "padded loss",
          "val_accuracy_padded": "padded accuracy"}  # fmt: skip


@dataclass(frozen=True)
class Summary:
    variant: str
    heads: str  # Hq/Hkv[@W]
    metric: str  # the column judged: val_accuracy (MQAR) or val_loss (text)
    value: Interval  # over seeds: its own 95% t interval (a description of the variant, not a comparison)
    solved: int | None  # MQAR only
    seeds: int
    steps_to_90: list[int | None]
    step_ms: float
    comparison: Comparison | None  # against the reference, paired by seed, one of the table's family
    verdict: str
    extras: dict[str, Interval] = field(default_factory=dict)  # text: bits/byte, accuracy, the padded numbers
    steps: int = 0
    train_flops: float = 0.0

    @property
    def diff(self) -> Interval | None:
        return self.comparison.diff if self.comparison else None

    @property
    def mde(self) -> float | None:
        return self.comparison.mde if self.comparison else None


def metric_of(rows: list[dict]) -> tuple[str, bool, str]:
    tasks = {str(r.get("task") or "mqar") for r in rows}
    if len(tasks) != 1:
        raise ConfigError(f"rows of more than one task ({', '.join(sorted(tasks))}) cannot be compared")
    return METRICS[tasks.pop()]


def _bounds(metric: str) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """(a value's bounds, a difference's bounds): an accuracy lives in [0, 1]; a loss has no upper bound."""
    return ((0.0, 1.0), (-1.0, 1.0)) if "accuracy" in metric else (None, None)


def finished_runs(rows: list[dict]) -> dict[str, dict[int, dict]]:
    """The rows of finished runs (``ok``), by variant and seed."""
    by_variant: dict[str, dict[int, dict]] = {}
    for row in rows:
        if row.get("status", "ok") == "ok":
            runs = by_variant.setdefault(str(row["variant"]), {})
            seed = int(row["seed"])
            if seed in runs:
                ids = ", ".join(dict.fromkeys(str(r.get("run_id", "")) for r in (runs[seed], row)))
                raise ConfigError(f"{row['variant']} seed {seed} has two finished rows (runs {ids}): one (variant, "
                                  "seed) is one training; keep one of them")  # fmt: skip
            runs[seed] = row
    return by_variant


def seed_table(by_variant: dict[str, dict[int, dict]], metric: str) -> dict[str, dict[int, float]]:
    """``table[variant][seed]``: each finished run's ``metric``, the variant x seed design ``stats`` works on."""
    return {v: {s: float(row[metric]) for s, row in runs.items()} for v, runs in by_variant.items()}


def summarise(rows: list[dict], baseline: str) -> list[Summary]:
    """Per variant, over seeds: the task's metric with its interval, and its paired difference from ``baseline``
    (by seed), every comparison of the table one family (``stats.compare``). Rows that did not finish
    (``oom``, ``error``) are left out."""
    by_variant = finished_runs(rows)
    if not by_variant:
        return []
    metric, higher, what = metric_of([row for runs in by_variant.values() for row in runs.values()])
    value_bounds, diff_bounds = _bounds(metric)
    table = seed_table(by_variant, metric)
    compared = {c.variant: c for c in compare(table, baseline, diff_bounds)} if baseline in table else {}
    out = []
    for variant, runs in by_variant.items():
        seeds = sorted(runs)
        comparison = compared.get(variant)
        said = "the baseline" if variant == baseline else "no baseline run to pair with"
        if comparison is not None:
            said = verdict(comparison.diff, higher_is_better=higher, what=what)
        steps = [int(runs[s]["steps_to_90"]) if str(runs[s]["steps_to_90"]) not in ("", "None") else None
                 for s in seeds]  # fmt: skip
        first = runs[seeds[0]]
        extras = {name: interval([float(runs[s][column]) for s in seeds], _bounds(column)[0])
                  for column, name in EXTRAS.items()
                  if column != metric and all(str(runs[s].get(column, "")) not in ("", "None") for s in seeds)
                  and (column != "val_accuracy" or metric != "val_accuracy")}  # fmt: skip
        solved = sum(str(runs[s]["solved"]) == "True" for s in seeds) if metric == "val_accuracy" else None
        out.append(Summary(variant, heads_label(first["n_q_heads"], first["n_kv_heads"], first["window"]), metric,
                           interval([table[variant][s] for s in seeds], value_bounds), solved, len(seeds), steps,
                           statistics.median(float(runs[s]["step_ms"]) for s in seeds), comparison, said, extras,
                           int(first.get("steps") or 0), float(first.get("train_flops") or 0)))  # fmt: skip
    return out


def claims(rows: list[dict]) -> list[tuple[str, Comparison | None, str]]:
    """Each of the paper's quality claims this run can judge: (the claim, its comparison, the verdict). The
    claims are one family (Bonferroni over the claims judged), on the same pooled noise as the tables."""
    by_variant = finished_runs(rows)
    if not by_variant:
        return []
    metric, higher, what = metric_of([row for runs in by_variant.values() for row in runs.values()])
    table = seed_table(by_variant, metric)
    judged = [(variant, against, text) for variant, against, text in CLAIMS if {variant, against} <= set(table)]
    found = {(c.variant, c.against): c for c in compare(table, "", _bounds(metric)[1],
                                                          pairs=[(v, a) for v, a, _ in judged])}  # fmt: skip
    out = []
    for variant, against, text in judged:
        comparison = found.get((variant, against))
        said = "not paired" if comparison is None else verdict(comparison.diff, higher_is_better=higher, what=what)
        out.append((text, comparison, said))
    return out
