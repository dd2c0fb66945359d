"""What a quality run found, over seeds: each variant's metric with its interval, its paired difference from a
baseline variant, the minimum detectable effect, a verdict that never ranks inside the noise, and the paper's
quality claims judged the same way. No torch here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sqabench.errors import ConfigError
from sqabench.quality.stats import Interval, interval, minimum_detectable, paired, verdict
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
    value: Interval
    solved: int | None  # MQAR only
    seeds: int
    steps_to_90: list[int | None]
    step_ms: float
    diff: Interval | None  # against the baseline, paired by seed
    mde: float | None
    verdict: str
    extras: dict[str, Interval] = field(default_factory=dict)  # text: bits/byte, accuracy, the padded numbers
    steps: int = 0
    train_flops: float = 0.0


def metric_of(rows: list[dict]) -> tuple[str, bool, str]:
    tasks = {str(r.get("task") or "mqar") for r in rows}
    if len(tasks) != 1:
        raise ConfigError(f"rows of more than one task ({', '.join(sorted(tasks))}) cannot be compared")
    return METRICS[tasks.pop()]


def summarise(rows: list[dict], baseline: str) -> list[Summary]:
    """Per variant, over seeds: the task's metric with its interval, and its paired difference from ``baseline``
    (by seed). Rows that did not finish (``oom``, ``error``) are left out."""
    rows = [row for row in rows if row.get("status", "ok") == "ok"]
    if not rows:
        return []
    metric, higher, what = metric_of(rows)
    by_variant: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_variant.setdefault(str(row["variant"]), {})[int(row["seed"])] = row
    base = by_variant.get(baseline, {})
    out = []
    for variant, runs in by_variant.items():
        seeds = sorted(runs)
        diff = mde = None
        said = "the baseline" if variant == baseline else "no baseline run to pair with"
        common = [s for s in seeds if s in base]
        if variant != baseline and common:
            diff = paired([float(runs[s][metric]) for s in common], [float(base[s][metric]) for s in common])
            mde = minimum_detectable(diff.sd, diff.n)
            said = verdict(diff, higher_is_better=higher, what=what)
        steps = [int(runs[s]["steps_to_90"]) if str(runs[s]["steps_to_90"]) not in ("", "None") else None
                 for s in seeds]  # fmt: skip
        first = runs[seeds[0]]
        heads = heads_label(first["n_q_heads"], first["n_kv_heads"], first["window"])
        extras = {name: interval([float(runs[s][column]) for s in seeds]) for column, name in EXTRAS.items()
                  if column != metric and all(str(runs[s].get(column, "")) not in ("", "None") for s in seeds)
                  and (column != "val_accuracy" or metric != "val_accuracy")}  # fmt: skip
        solved = sum(str(runs[s]["solved"]) == "True" for s in seeds) if metric == "val_accuracy" else None
        out.append(Summary(variant, heads, metric, interval([float(runs[s][metric]) for s in seeds]), solved,
                           len(seeds), steps, statistics.median(float(runs[s]["step_ms"]) for s in seeds),
                           diff, mde, said, extras, int(first.get("steps") or 0), float(first.get("train_flops") or 0)))
    return out


def claims(rows: list[dict]) -> list[tuple[str, str]]:
    """Each of the paper's quality claims that this run can judge, with its verdict on the paired metric."""
    summaries, present = {}, {str(r["variant"]) for r in rows if r.get("status", "ok") == "ok"}
    for variant, against, text in CLAIMS:
        if {variant, against} <= present:
            (s,) = [x for x in summarise(rows, against) if x.variant == variant]
            summaries[text] = s.verdict if s.diff is not None else "not paired"
    return list(summaries.items())
