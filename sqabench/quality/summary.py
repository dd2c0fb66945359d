"""What a quality run found, over seeds: each variant's metric with its interval, and every verdict the run prints
judged as one family (``stats.judge``): the differences from the baseline, MQAR's counts, any second reference
asked for, and the paper's closeness claims against a stated margin. A reading of the rows, whichever version
wrote them. No torch here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sqabench.errors import ConfigError
from sqabench.quality.stats import (
    FEW_SEEDS,
    Comparison,
    Interval,
    closeness,
    count,
    difference,
    interval,
    judge,
    on_bound,
    verdict,
)  # fmt: skip
from sqabench.variants import heads_label

# The paper's quality claims: (variant, against, the claim, the test that can support it).
CLAIMS = (("sqa", "gqa", "SQA close to GQA", "equivalence"), ("ssqa", "gqa", "sSQA close to GQA", "equivalence"),
          ("xsqa", "mqa", "xSQA no worse than MQA", "non-inferiority"))  # fmt: skip


@dataclass(frozen=True)
class Metric:
    column: str
    higher_is_better: bool
    what: str  # its name in a verdict
    bounds: tuple[float, float] | None  # a value's
    robust: bool  # bounded and bimodal: the sign-flip test beside the t


# What a task's runs are judged on.
METRICS = {"mqar": Metric("val_accuracy", True, "accuracy", (0.0, 1.0), True),
           "text": Metric("val_loss", False, "val loss", None, False)}  # fmt: skip
EXTRAS = {"val_bpb": "bits/byte", "val_accuracy": "accuracy", "val_loss_padded": "padded loss",
          "val_accuracy_padded": "padded accuracy"}  # fmt: skip
# MQAR's counts: what a run reached, from its row (a mark, the column, how the column says it was reached).
MARKS = (("solved", "solved", lambda v: str(v) == "True"), ("50%", "steps_to_50", lambda v: str(v) not in ("", "None")),
         ("90%", "steps_to_90", lambda v: str(v) not in ("", "None")))  # fmt: skip
MQAR_MARGIN = 0.05  # an accuracy


def paper_gap() -> tuple[float, str]:
    """The paper's own MHA-GQA gap relative to MHA's loss (Table 1), the text task's default margin."""
    from sqabench.shipped import shipped_rows

    loss = {row["variant"]: float(row["val_loss"]) for row in shipped_rows("paper_quality.csv")
            if row["setting"] == "dense"}  # fmt: skip
    gap = (loss["gqa"] - loss["mha"]) / loss["mha"]
    return gap, f"the paper's MHA-GQA gap, Table 1: {loss['gqa']} vs {loss['mha']}"


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
    comparison: Comparison | None  # against the baseline, paired by seed, one of the run's family
    verdict: str
    extras: dict[str, Interval] = field(default_factory=dict)  # text: bits/byte, accuracy, the padded numbers
    steps: int = 0
    train_flops: float = 0.0
    reached: dict[str, int] = field(default_factory=dict)  # MQAR: runs that reached each mark
    on_bound: bool = False  # every seed on a bound of the metric: its interval says nothing

    @property
    def diff(self) -> Interval | None:
        return self.comparison.diff if self.comparison else None

    @property
    def mde(self) -> float | None:
        return self.comparison.mde if self.comparison else None


@dataclass(frozen=True)
class Analysis:
    """Everything a run prints, judged as one family."""

    metric: Metric
    baseline: str
    seeds: int
    summaries: list[Summary]
    counts: list[Comparison]  # MQAR: each variant's counts against the baseline
    also: dict[str, list[Comparison]]  # second references asked for: their differences
    claims: list[tuple[str, Comparison]]
    family: int  # the family's size (Tarone's)
    verdicts: int  # verdicts printed (tests made)
    left_out: list[str]  # seeds a pair could not use

    @property
    def exploratory(self) -> bool:
        return self.seeds < FEW_SEEDS

    @property
    def idle_counts(self) -> int:
        """Count tests left out of the family by Tarone's rule: too few discordant seeds to reach its level."""
        return sum(c.p is not None and not c.in_family for c in self.counts)


def metric_of(rows: list[dict]) -> Metric:
    tasks = {str(r.get("task") or "mqar") for r in rows}
    if len(tasks) != 1:
        raise ConfigError(f"rows of more than one task ({', '.join(sorted(tasks))}) cannot be compared")
    return METRICS[tasks.pop()]


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


def _marks(by_variant) -> dict[str, dict[str, dict[int, bool]]]:
    """MQAR: ``marks[mark][variant][seed]``, for the marks every row records (an older file may lack some)."""
    rows = [row for runs in by_variant.values() for row in runs.values()]
    return {mark: {v: {s: reached(row[column]) for s, row in runs.items()} for v, runs in by_variant.items()}
            for mark, column, reached in MARKS if all(column in row for row in rows)}  # fmt: skip


def parse_margin(text: str | None) -> float | None:
    """``--margin`` as typed: a share (text: of the reference's loss) or an accuracy (MQAR), 2% or 0.02; above 0
    and below 1."""
    from sqabench.units import parse_fraction

    if text is None:
        return None
    value = parse_fraction(text, "--margin")
    if not 0 < value < 1:
        raise ConfigError(f"--margin {text}: must lie above 0 and below 1 (a share of the loss, or an accuracy), e.g. "
                          "2% or 0.05")  # fmt: skip
    return value


def parse_also(text: str | None) -> tuple[str, ...]:
    """``--also-against``: variant names, comma-separated."""
    return tuple(name.strip().lower() for name in (text or "").split(",") if name.strip())


def check_also(also: tuple[str, ...], names: list[str], where: str) -> None:
    """``--also-against``'s references must be among the variants (``where``: which ones, in words)."""
    unknown = [name for name in also if name not in names]
    if unknown:
        raise ConfigError(f"--also-against {', '.join(unknown)}: not among the variants {where} ({', '.join(names)})")


def margin_for(metric: Metric, table, against: str, margin: float | None) -> tuple[float, str]:
    """A closeness claim's margin in the metric's units, and where it came from: MQAR, an accuracy (``--margin``,
    default 0.05); text, a share of the reference's mean val loss (``--margin``, default the paper's gap)."""
    if metric.column == "val_accuracy":
        return (MQAR_MARGIN, f"{MQAR_MARGIN} accuracy, the default") if margin is None else (
            margin, f"--margin {margin:g} accuracy")  # fmt: skip
    share, source = paper_gap() if margin is None else (margin, "--margin")
    loss = statistics.fmean(table[against].values())
    return share * loss, f"{share:.1%} of {against}'s mean val loss {loss:.4g} ({source})"


def analyse(rows: list[dict], baseline: str, also: tuple[str, ...] = (), margin: float | None = None) -> Analysis:
    """Per variant over seeds: the task's metric with its interval; then every verdict the run prints, one family
    (``stats.judge``): each variant against ``baseline`` (MQAR: its counts too), against each of ``also``, and the
    paper's claims this run can judge. Rows that did not finish (``oom``, ``error``, ``diverged``) are left out."""
    by_variant = finished_runs(rows)
    if not by_variant:
        raise ConfigError("no finished run (status ok): nothing to summarise")
    metric = metric_of([row for runs in by_variant.values() for row in runs.values()])
    table = seed_table(by_variant, metric.column)
    higher, robust = metric.higher_is_better, metric.robust
    others = [v for v in by_variant if v != baseline] if baseline in table else []
    tests = [difference(table, v, baseline, higher, robust) for v in others]
    marks = _marks(by_variant) if metric.column == "val_accuracy" else {}
    tests += [count(marks[mark], v, baseline, mark) for v in others for mark in marks]
    for reference in (r for r in also if r != baseline and r in table):
        tests += [difference(table, v, reference, higher, robust) for v in by_variant if v not in (reference, baseline)]
    judged_claims = [(v, a, text, kind) for v, a, text, kind in CLAIMS if {v, a} <= set(table)]
    for v, a, _, kind in judged_claims:
        tests.append(closeness(table, v, a, kind, *margin_for(metric, table, a, margin), higher, robust))
    judged = judge(tests, (-1.0, 1.0) if metric.bounds else None)
    first = len(others)
    by_baseline = dict(zip(others, judged[:first]))
    count_tests = judged[first:first + len(others) * len(marks)]  # fmt: skip
    rest = judged[first + len(count_tests) :]
    also_tables: dict[str, list[Comparison]] = {}
    for c in rest[: len(rest) - len(judged_claims)]:
        also_tables.setdefault(c.against, []).append(c)
    claims = [(text, c) for (_, _, text, _), c in zip(judged_claims, rest[len(rest) - len(judged_claims) :])]
    seeds = len({s for runs in by_variant.values() for s in runs})
    summaries = [_summary(by_variant[v], v, metric, table, by_baseline.get(v), baseline, marks) for v in by_variant]
    left = sorted({seed for c in judged for seed in c.left_out})
    return Analysis(metric, baseline, seeds, summaries, count_tests, also_tables, claims, judged[0].family if judged
                    else 0, sum(c.p is not None and c.in_family for c in judged), left)  # fmt: skip


def _summary(runs: dict[int, dict], variant: str, metric: Metric, table, comparison, baseline: str, marks) -> Summary:
    seeds = sorted(runs)
    first = runs[seeds[0]]
    said = "the baseline" if variant == baseline else "no baseline run to pair with"
    if comparison is not None:
        said = verdict(comparison, metric.what)
    steps = [int(runs[s]["steps_to_90"]) if str(runs[s].get("steps_to_90", "")) not in ("", "None") else None
             for s in seeds]  # fmt: skip
    extras = {name: interval([float(runs[s][column]) for s in seeds], (0.0, 1.0) if "accuracy" in column else None)
              for column, name in EXTRAS.items()
              if column != metric.column and all(str(runs[s].get(column, "")) not in ("", "None") for s in seeds)}  # fmt: skip
    values = [table[variant][s] for s in seeds]
    reached = {mark: sum(by_seed[variant].values()) for mark, by_seed in marks.items()}
    return Summary(variant, heads_label(first["n_q_heads"], first["n_kv_heads"], first["window"]), metric.column,
                   interval(values, metric.bounds), reached.get("solved"), len(seeds), steps,
                   statistics.median(float(runs[s]["step_ms"]) for s in seeds), comparison, said, extras,
                   int(first.get("steps") or 0), float(first.get("train_flops") or 0), reached,
                   on_bound(values, metric.bounds))  # fmt: skip


def summarise(rows: list[dict], baseline: str) -> list[Summary]:
    """Each variant's summary against ``baseline`` (the run's whole family judged: ``analyse``)."""
    return analyse(rows, baseline).summaries if finished_runs(rows) else []
