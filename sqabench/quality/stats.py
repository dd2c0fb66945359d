"""Statistics over seeds for ``sqabench quality``, from ``scipy.stats``: each variant's mean with its interval, and
the tests behind every verdict a run prints, judged as one family. No torch.

Seeds are the unit of replication: each fixes a model's initialisation and its data order, the same for every
variant, so two variants' runs of one seed form a pair. Every comparison rests on its own paired differences
(variant minus reference, over the seeds both finished): their sd, n - 1 degrees of freedom. Nothing is pooled
across variants: the variants' noise is not equal (on MQAR it differs 16x between variants), and a pair of two
noisy variants must not borrow the quiet ones' variance.

- a difference: the paired t, two-sided; for a bounded, bimodal metric (MQAR's accuracy) also the exact
  sign-flip test of the same mean, and the larger of the two p-values decides, where the seeds let the sign-flip
  test reject at all at the family's level (it cannot below 6 seeds even alone: then the t decides, and the
  tables say so);
- closeness: equivalence within a margin (two one-sided tests, TOST) for "close to", non-inferiority (one-sided)
  for "no worse than";
- counts (MQAR: runs solved, reached 50%, reached 90%): the exact McNemar test on the seeds where the two runs
  disagree (a binomial on the discordant pairs).

Every verdict a run prints is one family: Holm's step-down at a family-wise 5% decides them, so the chance that
any printed verdict is false is at most 5%. A count test whose smallest possible p-value cannot reach its level is
left out of the family's size (Tarone's rule) and says so. The intervals shown are the matching simultaneous ones
(Bonferroni's, t on each pair's own df), each row gives its Holm-adjusted p-value, and the minimum detectable
effect is each pair's own, estimated from the same seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

ALPHA = 0.05  # family-wise
POWER = 0.80
NO_NOISE = 1e-12  # a paired difference's sd at or below this (relative to its mean) is no noise at all
FEW_SEEDS = 5  # fewer seeds than this: the verdicts are exploratory, and the tables say so
EXACT_FLIPS = 16  # up to 2^16 sign patterns the sign-flip test enumerates them all; past that it draws as many


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
            return f"{self.mean:+.{digits}f} (1 seed: no interval)" if self.n < 2 else f"{self.mean:+.{digits}f}"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def _clip(value: float, bounds: tuple[float, float] | None) -> float:
    return value if bounds is None else min(max(value, bounds[0]), bounds[1])


def interval(values: Sequence[float], bounds: tuple[float, float] | None = None, level: float = 0.95) -> Interval:
    """The mean of ``values`` with its Student t interval (its own sd, n - 1 degrees of freedom), kept within
    ``bounds`` (an accuracy's [0, 1]): a description of one variant, not a comparison. Identical values have no
    interval (``no_noise``), never a zero-width one."""
    from scipy import stats

    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, n)
    sd = statistics.stdev(values)
    if sd <= NO_NOISE * max(1.0, abs(mean)):
        return Interval(mean, n, sd=0.0)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, n, _clip(mean - half, bounds), _clip(mean + half, bounds), sd)


def on_bound(values: Sequence[float], bounds: tuple[float, float] | None) -> bool:
    """Whether every value sits on one of ``bounds`` (an accuracy of 0 or 1 on every seed): a t interval says
    nothing there."""
    return bool(bounds) and bool(values) and all(v in bounds for v in values)


# The tests: each returns a raw p-value; ``judge`` turns a family of them into verdicts.


def t_p(differences: Sequence[float], shift: float = 0.0, alternative: str = "two-sided") -> float:
    """The paired t test's p-value that the differences' mean is ``shift`` (``alternative`` as scipy's
    ``ttest_1samp``: two-sided, greater, less), from scipy's t law (``special.stdtr``, its CDF: fast enough to
    run through thousands of simulated runs)."""
    from scipy import special

    n = len(differences)
    t = (statistics.fmean(differences) - shift) / (statistics.stdev(differences) / math.sqrt(n))
    if alternative == "greater":
        return float(special.stdtr(n - 1, -t))
    if alternative == "less":
        return float(special.stdtr(n - 1, t))
    return float(2 * special.stdtr(n - 1, -abs(t)))


def flip_p(differences: Sequence[float], shift: float = 0.0, alternative: str = "two-sided") -> float:
    """The sign-flip permutation test's p-value that the differences minus ``shift`` are symmetric about 0 (the
    mean as the statistic): exact over every sign pattern up to ``EXACT_FLIPS`` seeds, drawn past that."""
    import numpy as np
    from scipy import stats

    shifted = np.asarray(differences, dtype=float) - shift
    resamples = np.inf if len(shifted) <= EXACT_FLIPS else 2**EXACT_FLIPS
    return float(stats.permutation_test((shifted,), np.mean, permutation_type="samples", n_resamples=resamples,
                                        alternative=alternative, random_state=20251001).pvalue)  # fmt: skip


def smallest_flip_p(n: int, sides: int = 2) -> float:
    """The smallest p-value a sign-flip test over ``n`` seeds can give: one sign pattern of 2^n (each side)."""
    return min(1.0, sides * 0.5**n)


def count_p(more: int, fewer: int) -> float:
    """The exact McNemar test: ``more`` seeds where only the variant's run reached the mark, ``fewer`` where
    only the reference's did; two-sided binomial on the discordant seeds."""
    from scipy import stats

    return float(stats.binomtest(more, more + fewer, 0.5).pvalue) if more + fewer else 1.0


def holm(p_values: Sequence[float], size: int | None = None) -> list[float]:
    """Holm's step-down adjusted p-values (in the order given) over a family of ``size`` (default: as many as
    given; Tarone's rule may count fewer than all the tests a run holds, never fewer than those adjusted here)."""
    size = len(p_values) if size is None else size
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (size - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def tarone_size(continuous: int, smallest: Sequence[float], alpha: float = ALPHA) -> int:
    """Tarone's family size: the smallest K such that the tests that could reach alpha / K (every continuous one,
    and each discrete one whose smallest possible p-value is at most alpha / K) are no more than K."""
    k = max(1, continuous)
    while continuous + sum(s <= alpha / k for s in smallest) > k:
        k += 1
    return k


@dataclass(frozen=True)
class Comparison:
    """One verdict's test: ``variant`` against ``against``, paired by seed. ``kind``: ``difference``,
    ``equivalence`` (close to), ``non-inferiority`` (no worse than) or ``count`` (of runs reaching ``mark``).
    ``diff`` is the mean paired difference with the family's simultaneous interval once judged."""

    variant: str
    against: str
    kind: str
    diff: Interval
    p: float | None = None  # the raw p-value; None: no test (``untested`` says why)
    method: str = ""
    untested: str = ""
    margin: float | None = None  # closeness: the margin, in the metric's units
    margin_from: str = ""  # where the margin came from
    mark: str = ""  # count: what the runs reached ("solved", "50%", "90%")
    counts: tuple[int, int] | None = None  # count: (seeds only the variant reached, only the reference reached)
    smallest: float = 0.0  # the smallest p-value the test can give (discrete tests)
    robust: bool = False  # a bounded metric: the sign-flip test too, where the seeds allow
    left_out: tuple[str, ...] = ()  # seeds one of the two finished and the other did not
    family: int = 0  # judged: the family's size (Tarone's)
    p_adjusted: float | None = None  # judged: Holm's
    critical: float | None = None  # judged: the interval's critical t (Bonferroni over the family)
    in_family: bool = True  # a count test that cannot reach its level is left out of the family's size
    differences: tuple[float, ...] = ()  # the paired differences the test rests on
    higher_is_better: bool = True  # the metric's direction (closeness: which side is worse)

    @property
    def n(self) -> int:
        return self.diff.n

    @property
    def df(self) -> int | None:
        return self.n - 1 if self.diff.sd else None

    @property
    def se(self) -> float | None:
        return self.diff.sd / math.sqrt(self.n) if self.diff.sd else None

    @property
    def found(self) -> bool:
        """Holm rejected this test's null hypothesis at the family-wise level."""
        return self.p_adjusted is not None and self.p_adjusted <= ALPHA

    @property
    def beyond(self) -> str:
        """A closeness claim's simultaneous interval wholly past its margin: "worse" or "better" (the metric's
        direction), else ""."""
        if self.margin is None or self.diff.low is None:
            return ""
        above, below = self.diff.low > self.margin, self.diff.high < -self.margin
        worse, better = (above, below) if not self.higher_is_better else (below, above)
        return "worse" if worse else "better" if better else ""

    @property
    def mde(self) -> float | None:
        """The true difference this pair's test finds with 80% probability, from the same seeds' noise."""
        if self.kind != "difference" or self.critical is None or not self.se:
            return None
        return detectable(self.se, self.df, self.critical)


def paired(table, variant: str, against: str) -> tuple[list[float], tuple[str, ...]]:
    """The per-seed differences ``variant - against`` over the seeds both finished, and what was left out."""
    mine, theirs = table.get(variant, {}), table.get(against, {})
    common = sorted(set(mine) & set(theirs))
    left = tuple(f"{name} seed {s}" for name, runs, other in ((variant, mine, theirs), (against, theirs, mine))
                 for s in sorted(set(runs) - set(other)))  # fmt: skip
    return [float(mine[s]) - float(theirs[s]) for s in common], left


def _described(differences: Sequence[float]) -> tuple[Interval, str]:
    """The differences as an interval to be judged, or why no test can be made (one seed; no noise)."""
    n = len(differences)
    mean = statistics.fmean(differences) if differences else float("nan")
    if n < 2:
        return Interval(mean, n), "one seed: no uncertainty can be stated"
    sd = statistics.stdev(differences)
    if sd <= NO_NOISE * max(1.0, abs(mean)):
        return Interval(mean, n, sd=0.0), f"no noise measured: identical over {n} seeds, no verdict"
    return Interval(mean, n, sd=sd), ""


def difference(table, variant: str, against: str, higher_is_better: bool = True, robust: bool = False) -> Comparison:
    """``variant`` against ``against``: the paired t's two-sided p-value (``robust``: a sign-flip test too)."""
    differences, left = paired(table, variant, against)
    diff, untested = _described(differences)
    p = None if untested else t_p(differences)
    return Comparison(variant, against, "difference", diff, p, "paired t", untested, robust=robust, left_out=left,
                      smallest=smallest_flip_p(diff.n) if robust else 0.0, differences=tuple(differences),
                      higher_is_better=higher_is_better)  # fmt: skip


def closeness(table, variant: str, against: str, kind: str, margin: float, margin_from: str,
              higher_is_better: bool, robust: bool = False) -> Comparison:  # fmt: skip
    """A closeness claim against ``margin`` (> 0, in the metric's units): ``equivalence`` (TOST: the difference
    lies within +-margin) or ``non-inferiority`` (the variant is worse by less than the margin)."""
    differences, left = paired(table, variant, against)
    diff, untested = _described(differences)
    p = None if untested else _closeness_p(differences, kind, margin, higher_is_better, t_p)
    return Comparison(variant, against, kind, diff, p, "two one-sided t" if kind == "equivalence" else "one-sided t",
                      untested, margin, margin_from, robust=robust, left_out=left,
                      smallest=smallest_flip_p(diff.n, 1) if robust else 0.0, differences=tuple(differences),
                      higher_is_better=higher_is_better)  # fmt: skip


def _p_of(t: Comparison, test) -> float:
    """``t``'s p-value by ``test`` (``t_p`` or ``flip_p``): two-sided for a difference, one-sided for a direction
    (a confirmation), the closeness p-value for a claim."""
    if t.kind == "difference":
        return test(t.differences)
    if t.kind.startswith("direction "):
        return test(t.differences, 0.0, t.kind.removeprefix("direction "))
    return _closeness_p(t.differences, t.kind, t.margin, t.higher_is_better, test)


def _closeness_p(differences, kind: str, margin: float, higher_is_better: bool, test) -> float:
    if kind == "equivalence":
        return max(test(differences, -margin, "greater"), test(differences, margin, "less"))
    if higher_is_better:  # worse is below: the null is a difference at or below -margin
        return test(differences, -margin, "greater")
    return test(differences, margin, "less")


def count(runs: dict, variant: str, against: str, mark: str) -> Comparison:
    """The runs of ``variant`` and ``against`` that reached ``mark`` (``runs[variant][seed]``: True or False),
    paired by seed: the exact McNemar test."""
    mine, theirs = runs.get(variant, {}), runs.get(against, {})
    common = sorted(set(mine) & set(theirs))
    more = sum(mine[s] and not theirs[s] for s in common)
    fewer = sum(theirs[s] and not mine[s] for s in common)
    share = (sum(map(bool, (mine[s] for s in common))) - sum(map(bool, (theirs[s] for s in common)))) / max(
        1, len(common)
    )
    untested = "" if more + fewer else "no seed where only one of the two reached it"
    return Comparison(variant, against, "count", Interval(share, len(common)), None if untested else count_p(more, fewer),
                      "exact McNemar", untested, mark=mark, counts=(more, fewer),
                      smallest=min(1.0, 2 * 0.5 ** (more + fewer)) if more + fewer else 1.0)  # fmt: skip


def judge(tests: Sequence[Comparison], bounds: tuple[float, float] | None = None,
          alpha: float = ALPHA) -> list[Comparison]:  # fmt: skip
    """Every verdict of a run as one family: Tarone's family size over the count tests (the others always
    count), then each robust test's p-value (the larger of the t's and the sign-flip's where the seeds let the
    sign-flip test reach alpha / K), Holm's adjusted p-values, and each difference's simultaneous Bonferroni
    interval (clipped to ``bounds``: an accuracy difference's [-1, 1])."""
    from scipy import stats

    tested = [t for t in tests if t.p is not None]
    counts = [t for t in tested if t.kind == "count"]
    size = tarone_size(len(tested) - len(counts), [t.smallest for t in counts], alpha)
    ready = []
    for t in tests:
        if t.p is None:
            ready.append(replace(t, family=size))
            continue
        if t.kind == "count":
            ready.append(replace(t, in_family=t.smallest <= alpha / size, family=size))
            continue
        p, method = t.p, t.method
        if t.robust and t.smallest <= alpha / size:
            flipped = _p_of(t, flip_p)
            p, method = max(p, flipped), method + " and sign-flip (the larger p)"
        elif t.robust:
            method += f" (a sign-flip test cannot reach {alpha / size:.2g} with {t.n} seeds)"
        critical = float(stats.t.ppf(1 - alpha / (2 * size), t.n - 1))
        half = critical * t.se
        diff = Interval(t.diff.mean, t.n, _clip(t.diff.mean - half, bounds), _clip(t.diff.mean + half, bounds),
                        t.diff.sd)  # fmt: skip
        ready.append(replace(t, p=p, method=method, family=size, critical=critical, diff=diff))
    family = [i for i, t in enumerate(ready) if t.p is not None and t.in_family]
    for i, adjusted in zip(family, holm([ready[i].p for i in family], size)):
        ready[i] = replace(ready[i], p_adjusted=adjusted)
    return ready


def verdict(c: Comparison, what: str) -> str:
    """What a judged test says, in words; never a rank inside the noise. A difference: better or worse, or "no
    detectable difference"; closeness: "equivalent within the margin", "non-inferior within the margin", "worse
    than the margin", or "not shown ..."; a count: more or fewer runs reached the mark."""
    if c.p is None:
        return f"{c.untested} ({what} {c.diff.mean:+.3g})"
    if c.kind == "count":
        if not c.in_family:
            return (f"cannot be judged: {c.counts[0] + c.counts[1]} discordant seeds cannot reach the family's "
                    "level (left out of it)")  # fmt: skip
        if not c.found:
            return "no detectable difference in the count"
        return f"{'more' if c.counts[0] > c.counts[1] else 'fewer'} runs reached {c.mark}"
    if c.kind == "difference":
        if not c.found:
            return "no detectable difference at this budget"
        better = (c.diff.mean > 0) == c.higher_is_better
        return f"{'better' if better else 'worse'}: {what} {c.diff.text()}"
    margin = f"{c.margin:.3g}"
    if c.found:
        return (f"equivalent within the margin (+-{margin})" if c.kind == "equivalence"
                else f"non-inferior within the margin ({margin})")  # fmt: skip
    if c.beyond == "worse":
        return f"worse than the margin ({margin})"
    if c.beyond == "better" and c.kind == "equivalence":
        return f"better by more than the margin ({margin})"
    return "not shown equivalent" if c.kind == "equivalence" else "not shown non-inferior"


@lru_cache(maxsize=4096)
def detectable(se: float, df: int, critical: float, power: float = POWER) -> float:
    """The smallest true difference that a test rejecting when |mean / se| > ``critical`` (t on ``df`` degrees
    of freedom) finds with probability ``power``: solved on the noncentral t."""
    from scipy import optimize, stats

    def found(delta: float) -> float:  # P(|T'| > critical) - power, T' noncentral t (its lower tail as an sf)
        shift = delta / se
        return float(stats.nct.sf(critical, df, shift) + stats.nct.sf(critical, df, -shift)) - power

    high = se * (critical + 10.0)
    while found(high) < 0:
        high *= 2
    return float(optimize.brentq(found, 0.0, high, xtol=se * 1e-9))


def bonferroni_critical(family: int, df: int, alpha: float = ALPHA) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - alpha / (2 * family), df))


def planned_mde(seeds: int, family: int, sd: float = 1.0) -> float | None:
    """The minimum detectable effect a planned comparison can reach: ``seeds`` paired differences of sd ``sd``
    (1: the answer in units of it), Holm's first step over a family of ``family`` (Bonferroni's level)."""
    if seeds < 2 or family < 1:
        return None
    return detectable(sd / math.sqrt(seeds), seeds - 1, bonferroni_critical(family, seeds - 1))


def equivalence_power(seeds: int, sd: float, margin: float, family: int, alpha: float = ALPHA) -> float:
    """The probability that TOST at alpha / ``family`` shows two variants of equal means equivalent within
    ``margin``, with ``seeds`` paired differences of sd ``sd``: exact over the sample sd (the t statistics' joint
    law), by integrating over the chi-square law of the sd."""
    from scipy import integrate, stats

    df = seeds - 1
    critical = float(stats.t.ppf(1 - alpha / family, df))
    se = sd / math.sqrt(seeds)

    def given(scale: float) -> float:  # the sample sd is sd * scale: shown equivalent when |mean| < m - c * s/sqrt n
        room = margin - critical * se * scale
        return 0.0 if room <= 0 else float(2 * stats.norm.cdf(room / se) - 1)

    law = stats.chi2(df)
    return float(integrate.quad(lambda q: given(math.sqrt(q / df)) * law.pdf(q), 0, law.ppf(1 - 1e-12), limit=200)[0])


def seeds_for_margin(sd: float, margin: float, family: int, power: float = POWER, most: int = 1000) -> int | None:
    """The fewest seeds with which equivalence within ``margin`` is shown with probability ``power`` when the two
    variants are equal (paired differences of sd ``sd``); None past ``most``."""
    for seeds in range(2, most + 1):
        if equivalence_power(seeds, sd, margin, family) >= power:
            return seeds
    return None


def halves_disagree(first: Sequence[float], second: Sequence[float]) -> float | None:
    """A consistency test between two halves' paired differences of one comparison: the two-sided p-value of
    (d1 - d2) / sqrt(se1^2 + se2^2), on Welch-Satterthwaite's degrees of freedom; None when a half has under two
    seeds or no noise."""
    from scipy import stats

    if len(first) < 2 or len(second) < 2:
        return None
    v1, v2 = statistics.variance(first) / len(first), statistics.variance(second) / len(second)
    if v1 + v2 <= 0:
        return None
    z = (statistics.fmean(first) - statistics.fmean(second)) / math.sqrt(v1 + v2)
    df = (
        (v1 + v2) ** 2 / (v1**2 / (len(first) - 1) + v2**2 / (len(second) - 1))
        if v1 and v2
        else len(first) + len(second) - 2
    )
    return float(2 * stats.t.sf(abs(z), df))


def confirmation(c: Comparison, table, counts=None) -> Comparison:
    """The fresh seeds' test of a finding ``c`` of a first run, one-sided in the direction it found: a
    difference's sign, a closeness claim again (TOST or non-inferiority are directional already), a count's
    direction. Unjudged: ``judge`` takes every finding of the first run as one family."""
    if c.kind == "count":
        if counts is None:  # the fresh rows do not record this mark (an older sqabench wrote them)
            return replace(c, diff=Interval(float("nan"), 0), p=None, untested=f"the fresh runs do not record {c.mark}",
                           p_adjusted=None, family=0)  # fmt: skip
        fresh = count(counts, c.variant, c.against, c.mark)
        more, fewer = fresh.counts
        if not more + fewer:
            return replace(fresh, kind="count")
        up = c.counts[0] > c.counts[1]
        from scipy import stats

        p = float(stats.binomtest(more if up else fewer, more + fewer, 0.5, alternative="greater").pvalue)
        return replace(fresh, p=p, smallest=0.5 ** (more + fewer), method="exact McNemar, one-sided")
    if c.kind == "difference":
        fresh = difference(table, c.variant, c.against, c.higher_is_better, c.robust)
        if fresh.p is None:
            return fresh
        side = "greater" if c.diff.mean > 0 else "less"
        return replace(fresh, p=t_p(fresh.differences, 0.0, side), method="paired t, one-sided",
                       smallest=smallest_flip_p(fresh.n, 1) if c.robust else 0.0, higher_is_better=c.higher_is_better,
                       kind="direction " + side)  # fmt: skip
    return closeness(table, c.variant, c.against, c.kind, c.margin, c.margin_from, c.higher_is_better, c.robust)
