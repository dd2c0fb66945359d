"""Statistics over seeds for ``sqabench quality``, from ``scipy.stats``: each variant's mean with its interval,
paired differences against a reference variant with intervals that hold for the whole table at once, the
minimum detectable effect, and verdicts that never rank inside the noise. No torch.

The design decides the analysis. Seeds are the unit of replication: each seed fixes a model's
initialisation and its data order and is the same for every variant, so the runs of one seed form a block.
The metric of variant v at seed s is modelled as mu + a_v + b_s + e (a randomized block design): the
seed's effect b_s cancels in every paired difference, and the noise e is estimated once from every variant
that finished every seed, as the residual of that two-way table, with (V - 1)(n - 1) degrees of freedom for
V variants and n seeds (``pooled_noise``). A variant that misses a seed (an out-of-memory run) cannot join
that table: its comparison uses its own paired differences, with n - 1 degrees of freedom.

One table's comparisons are one family. Against one reference with the pooled noise (equal seeds: the
comparisons correlate by 1/2) the intervals are Dunnett's many-to-one, from the multivariate t; when any
comparison has its own noise, every interval of the table is Bonferroni's (conservative, still
family-wise). Either way the chance that any interval of the table misses its true difference is at most
5%. The minimum detectable effect is the true difference that the same test finds with 80% probability,
solved on the noncentral t (exact, not the sum of two quantiles).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

ALPHA = 0.05  # family-wise
POWER = 0.80
NO_NOISE = 1e-12  # a paired difference's sd at or below this (relative to its mean) is no noise at all
FEW_SEEDS = 3  # fewer seeds than this: the noise rests on too little, and the tables say so


@dataclass(frozen=True)
class Interval:
    """A mean over n values with its two-sided interval (None for one value: no uncertainty can be stated)."""

    mean: float
    n: int
    low: float | None = None
    high: float | None = None
    sd: float | None = None

    @property
    def spans_zero(self) -> bool:
        return self.low is None or self.low <= 0 <= self.high

    @property
    def no_noise(self) -> bool:
        """Identical values over the seeds: no noise was measured, so no interval and no verdict can be stated
        (a zero-width interval would read as certainty, and a rounding residue as a difference)."""
        return self.low is None and self.sd == 0.0

    def text(self, digits: int = 3) -> str:
        if self.no_noise:
            return f"{self.mean:+.{digits}f} (no noise measured over {self.n} seeds)"
        if self.low is None:
            return f"{self.mean:+.{digits}f} (1 seed: no interval)"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def _clip(value: float, bounds: tuple[float, float] | None) -> float:
    return value if bounds is None else min(max(value, bounds[0]), bounds[1])


def interval(values: Sequence[float], bounds: tuple[float, float] | None = None, level: float = 0.95) -> Interval:
    """The mean of ``values`` with its Student t interval (its own sd, n - 1 degrees of freedom), kept within
    ``bounds`` (an accuracy's [0, 1]): a description of one variant, not a comparison."""
    from scipy import stats

    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, n)
    sd = statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, n, _clip(mean - half, bounds), _clip(mean + half, bounds), sd)


@dataclass(frozen=True)
class Noise:
    """The noise of one seed's paired difference between two variants: its sd and degrees of freedom."""

    sd: float
    df: int
    variants: int  # how many variants it was pooled over (2: a pair's own differences)
    seeds: int

    @property
    def source(self) -> str:
        if self.variants > 2:
            return f"pooled over {self.variants} variants x {self.seeds} seeds"
        return f"from this pair's own {self.seeds} seeds"


def pooled_noise(table: Mapping[str, Mapping[int, float]]) -> Noise | None:
    """The residual noise of the variant x seed table, over the variants that have every seed any variant has
    (the complete blocks); None when fewer than two such variants or seeds. ``table[variant][seed]``."""
    seeds = sorted({s for runs in table.values() for s in runs})
    complete = [v for v, runs in table.items() if all(s in runs for s in seeds)]
    if len(complete) < 2 or len(seeds) < 2:
        return None
    y = [[float(table[v][s]) for s in seeds] for v in complete]
    grand = statistics.fmean(x for row in y for x in row)
    by_variant = [statistics.fmean(row) for row in y]
    by_seed = [statistics.fmean(row[j] for row in y) for j in range(len(seeds))]
    sse = sum((y[i][j] - by_variant[i] - by_seed[j] + grand) ** 2 for i in range(len(y)) for j in range(len(seeds)))
    df = (len(complete) - 1) * (len(seeds) - 1)
    return Noise(math.sqrt(2 * sse / df), df, len(complete), len(seeds))


def own_noise(differences: Sequence[float]) -> Noise | None:
    """The noise of one pair from its own paired differences (n - 1 degrees of freedom); None for one seed."""
    if len(differences) < 2:
        return None
    return Noise(statistics.stdev(differences), len(differences) - 1, 2, len(differences))


@lru_cache(maxsize=256)
def dunnett_critical(comparisons: int, df: int, alpha: float = ALPHA) -> float:
    """Dunnett's two-sided many-to-one critical value: P(max |T_i| <= c) = 1 - alpha for ``comparisons`` t
    statistics on ``df`` degrees of freedom, correlated by 1/2 (equal seeds against one reference)."""
    import numpy as np
    from scipy import optimize, stats

    if comparisons == 1:
        return float(stats.t.ppf(1 - alpha / 2, df))
    shape = np.full((comparisons, comparisons), 0.5)
    np.fill_diagonal(shape, 1.0)
    law = stats.multivariate_t(loc=np.zeros(comparisons), shape=shape, df=df)

    def covered(c: float) -> float:
        box = np.full(comparisons, c)
        return float(law.cdf(box, lower_limit=-box, random_state=20251001)) - (1 - alpha)

    single = float(stats.t.ppf(1 - alpha / 2, df))
    bonferroni = float(stats.t.ppf(1 - alpha / (2 * comparisons), df))
    return float(optimize.brentq(covered, single, bonferroni + 1.0, xtol=1e-4))


def bonferroni_critical(comparisons: int, df: int, alpha: float = ALPHA) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - alpha / (2 * comparisons), df))


@lru_cache(maxsize=4096)
def detectable(se: float, df: int, critical: float, power: float = POWER) -> float:
    """The smallest true difference that a test rejecting when |mean / se| > ``critical`` (t on ``df`` degrees
    of freedom) finds with probability ``power``: solved on the noncentral t."""
    from scipy import optimize, stats

    if se <= 0:  # no noise at all in the table (identical differences): any difference is found
        return 0.0

    def found(delta: float) -> float:  # P(|T'| > critical) - power, T' noncentral t (its lower tail as an sf)
        shift = delta / se
        return float(stats.nct.sf(critical, df, shift) + stats.nct.sf(critical, df, -shift)) - power

    high = se * (critical + 10.0)
    while found(high) < 0:
        high *= 2
    return float(optimize.brentq(found, 0.0, high, xtol=se * 1e-6))


@dataclass(frozen=True)
class Comparison:
    """A variant against a reference, paired by seed: the mean difference with its family-wise interval."""

    variant: str
    against: str
    diff: Interval  # low/high: the family's simultaneous interval
    noise: Noise | None  # None: one seed, no interval
    method: str  # "Dunnett" or "Bonferroni"
    family: int  # comparisons in the family
    critical: float | None = None  # the family's critical t: the interval is the mean +- critical x se

    @property
    def df(self) -> int | None:
        return self.noise.df if self.noise else None

    @property
    def se(self) -> float | None:
        return self.noise.sd / math.sqrt(self.diff.n) if self.noise else None

    @property
    def mde(self) -> float | None:
        """The true difference this comparison's test finds with 80% probability (``detectable``)."""
        return detectable(self.se, self.noise.df, self.critical) if self.noise else None


def compare(table: Mapping[str, Mapping[int, float]], against: str, bounds: tuple[float, float] | None = None,
            pairs: Sequence[tuple[str, str]] | None = None) -> list[Comparison]:  # fmt: skip
    """Every variant of ``table`` against ``against`` (or the given ``pairs`` of (variant, reference)), paired
    by seed: one family, at a family-wise 5%. The pooled noise serves every pair whose two variants have every
    seed; a pair with a variant that misses one uses its own differences, and then the family's intervals are
    Bonferroni's. ``bounds``: the range of a difference (an accuracy's: [-1, 1])."""
    pairs = list(pairs) if pairs is not None else [(v, against) for v in table if v != against]
    pooled = pooled_noise(table)
    complete = {v for v, runs in table.items() if pooled and len(runs) == pooled.seeds}
    found = []
    for variant, reference in pairs:
        if variant not in table or reference not in table:
            continue
        common = sorted(set(table[variant]) & set(table[reference]))
        if not common:
            continue
        differences = [float(table[variant][s]) - float(table[reference][s]) for s in common]
        noise = pooled if pooled and {variant, reference} <= complete else own_noise(differences)
        found.append((variant, reference, differences, noise))
    family = len(found)
    one_reference = len({reference for _, reference, _, _ in found}) == 1
    dunnett = pooled is not None and one_reference and all(noise is pooled for *_, noise in found)
    method = "Dunnett" if dunnett else "Bonferroni"
    out = []
    for variant, reference, differences, noise in found:
        mean = statistics.fmean(differences)
        if noise is None:
            out.append(Comparison(variant, reference, Interval(mean, len(differences)), None, method, family))
            continue
        if noise.sd <= NO_NOISE * max(1.0, abs(mean)):  # identical differences: nothing to judge them by
            out.append(Comparison(variant, reference, Interval(mean, len(differences), sd=0.0), None, method, family))
            continue
        se = noise.sd / math.sqrt(len(differences))
        critical = dunnett_critical(family, noise.df) if dunnett else bonferroni_critical(family, noise.df)
        low, high = _clip(mean - critical * se, bounds), _clip(mean + critical * se, bounds)
        out.append(Comparison(variant, reference, Interval(mean, len(differences), low, high, noise.sd), noise,
                              method, family, critical))  # fmt: skip
    return out


def verdict(diff: Interval, higher_is_better: bool, what: str) -> str:
    """What a difference says, in words: worse, better, or no detectable difference; never a rank in the noise."""
    if diff.no_noise:
        return f"no noise measured: identical over {diff.n} seeds, no verdict ({what} {diff.mean:+.3g})"
    if diff.low is None:
        return f"one seed: no uncertainty can be stated ({what} {diff.mean:+.3g})"
    if diff.spans_zero:
        return "no detectable difference at this budget"
    better = (diff.mean > 0) == higher_is_better
    return f"{'better' if better else 'worse'}: {what} {diff.text()}"


def planned_mde(variants: int, seeds: int, sd: float = 1.0) -> float | None:
    """The minimum detectable effect a planned run can reach against one reference: ``variants`` trained on
    ``seeds`` seeds, Dunnett over the variants - 1 comparisons, the pooled noise of a paired difference ``sd``
    (1: the answer in units of it)."""
    if variants < 2 or seeds < 2:
        return None
    df = (variants - 1) * (seeds - 1)
    critical = dunnett_critical(variants - 1, df)
    return detectable(sd / math.sqrt(seeds), df, critical)
