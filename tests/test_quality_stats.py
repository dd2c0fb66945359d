"""The statistics over seeds: every number against a reference of its own (a least-squares fit, a t density
integrated by hand, the definition simulated), and the promises the tables make (family-wise 5%, 80% power)
checked by simulating many runs through the real summary."""

import math

import numpy as np
import pytest

from sqabench.quality.stats import (
    Interval,
    compare,
    detectable,
    dunnett_critical,
    interval,
    own_noise,
    planned_mde,
    pooled_noise,
    verdict,
)  # fmt: skip
from sqabench.quality.summary import claims, summarise


def _t_cdf(x: float, df: int, steps: int = 20_000) -> float:
    """Student's t CDF by Simpson's rule on its density: a reference that shares nothing with scipy."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    h = x / steps
    total = sum((1 if i in (0, steps) else 4 if i % 2 else 2) * c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2)
                for i in range(steps + 1))  # fmt: skip
    return 0.5 + total * h / 3


def test_a_variants_interval_is_its_t_interval_and_an_accuracy_stays_within_0_and_1():
    # 0.60 .. 0.63: mean 0.61, sd 0.0158114 (n 5), t(0.975, 4) = 2.776 (tables)
    i = interval([0.60, 0.62, 0.61, 0.63, 0.59])
    assert i.mean == pytest.approx(0.61) and i.sd == pytest.approx(0.0158114, rel=1e-5)
    half = (i.high - i.low) / 2
    assert half == pytest.approx(2.776 * 0.0158114 / math.sqrt(5), rel=1e-3)
    assert _t_cdf(half * math.sqrt(5) / i.sd, 4) == pytest.approx(0.975, abs=2e-4)
    near_one = interval([0.99, 1.0, 0.97], bounds=(0.0, 1.0))
    assert near_one.high == 1.0 and near_one.low < 0.99  # unbounded, the interval would pass 1
    assert interval([0.3]).low is None


def test_the_pooled_noise_is_the_residual_of_a_least_squares_fit_of_variant_and_seed():
    rng = np.random.default_rng(3)
    table = {v: {s: float(rng.normal(v, 1) + 0.5 * s) for s in range(4)} for v in range(5)}
    noise = pooled_noise({str(v): runs for v, runs in table.items()})
    # reference: y = variant + seed effects, fitted by least squares on a 0/1 design matrix
    rows = [(v, s, table[v][s]) for v in table for s in table[v]]
    design = np.array([[1.0] + [v == j for j in range(1, 5)] + [s == j for j in range(1, 4)] for v, s, _ in rows])
    y = np.array([y for *_, y in rows])
    residual = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    df = len(y) - design.shape[1]
    assert (noise.df, noise.variants, noise.seeds) == (df, 5, 4) == (12, 5, 4)
    assert noise.sd == pytest.approx(math.sqrt(2 * (residual**2).sum() / df), rel=1e-9)  # sd of a difference


def test_a_variant_that_missed_a_seed_uses_its_own_differences_and_the_family_turns_bonferroni():
    table = {"mha": {0: 1.0, 1: 1.1, 2: 0.9}, "sqa": {0: 1.2, 1: 1.25, 2: 1.05}, "xsqa": {0: 1.0, 2: 0.95}}
    assert pooled_noise(table).variants == 2  # xsqa left out: it lacks seed 1
    by = {c.variant: c for c in compare(table, "mha")}
    assert by["sqa"].noise.variants == 2 and by["sqa"].df == 2  # mha and sqa: the complete blocks
    own = own_noise([0.0, 0.05])  # xsqa - mha at seeds 0 and 2
    assert by["xsqa"].noise.sd == pytest.approx(own.sd) and by["xsqa"].df == 1 == own.df
    assert own.sd == pytest.approx(0.05 / math.sqrt(2))  # the sample sd (n - 1) of 0 and 0.05, by hand
    assert {c.method for c in by.values()} == {"Bonferroni"} and by["xsqa"].critical == pytest.approx(
        _t_quantile(1 - 0.05 / 4, 1), rel=1e-3
    )


def _t_quantile(p: float, df: int) -> float:
    low, high = 0.0, 1000.0
    for _ in range(60):  # bisection on the hand-integrated CDF
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf(mid, df, 4000) < p else (low, mid)
    return (low + high) / 2


@pytest.mark.parametrize("comparisons, df", [(1, 10), (2, 5), (7, 7), (7, 28)])
def test_dunnetts_critical_value_is_what_the_definition_simulates(comparisons, df):
    """P(max_i |T_i| <= c) = 95%, T_i = (Z_i - Z_0) / sqrt(2) / sqrt(chi2_df / df): simulated from scratch."""
    rng = np.random.default_rng(11)
    z = rng.standard_normal((400_000, comparisons + 1))
    scale = np.sqrt(rng.chisquare(df, size=400_000) / df)
    biggest = np.abs((z[:, 1:] - z[:, :1]) / math.sqrt(2)).max(axis=1) / scale
    assert dunnett_critical(comparisons, df) == pytest.approx(np.quantile(biggest, 0.95), rel=0.012)


@pytest.mark.parametrize("df, critical", [(1, 12.706), (4, 3.31), (28, 2.784)])
def test_the_minimum_detectable_effect_is_found_four_times_in_five(df, critical):
    """The definition simulated: a true difference of the MDE gives |mean / se| > critical in 80% of draws."""
    rng = np.random.default_rng(5)
    se = 0.01
    mde = detectable(se, df, critical)
    t = (mde / se + rng.standard_normal(400_000)) / np.sqrt(rng.chisquare(df, size=400_000) / df)
    assert (np.abs(t) > critical).mean() == pytest.approx(0.80, abs=0.005)


def test_an_interval_touching_zero_holds_it_and_verdicts_never_rank_inside_the_noise():
    assert Interval(0.1, 3, 0.0, 0.2).spans_zero and Interval(-0.1, 3, -0.2, 0.0).spans_zero
    assert not Interval(0.1, 3, 1e-12, 0.2).spans_zero
    assert verdict(Interval(0.1, 3, 0.0, 0.2), True, "accuracy") == "no detectable difference at this budget"
    assert verdict(Interval(0.1, 3, 0.05, 0.15), True, "accuracy").startswith("better: accuracy +0.100")
    assert verdict(Interval(0.1, 3, 0.05, 0.15), False, "val loss").startswith("worse: val loss +0.100")
    assert verdict(Interval(0.1, 1), True, "accuracy").startswith("one seed: no uncertainty can be stated")


def _rows(table: dict[str, dict[int, float]], task: str = "text") -> list[dict]:
    metric = "val_loss" if task == "text" else "val_accuracy"
    return [{"task": task, "variant": v, "seed": s, "val_accuracy": 0.5, metric: y, "step_ms": 10.0, "solved": "",
             "steps_to_90": "", "n_q_heads": 4, "n_kv_heads": 4, "window": "", "status": "ok"}
            for v, runs in table.items() for s, y in runs.items()]  # fmt: skip


def test_the_summarys_difference_interval_and_mde_by_hand():
    """mha, sqa, xsqa at 2 seeds (losses): the residual of the 3 x 2 table, by hand, is e = +-0.005 in every
    cell (sqa's differences 0.10, 0.12; xsqa's -0.20, -0.21; the seed effects cancel), so
    SSE = 6 x 0.005^2 ... computed here from the cells; df (3-1)(2-1) = 2; Dunnett for 2 comparisons at 2 df."""
    table = {"mha": {0: 2.0, 1: 2.1}, "sqa": {0: 2.10, 1: 2.22}, "xsqa": {0: 1.80, 1: 1.89}}
    grand = sum(y for runs in table.values() for y in runs.values()) / 6
    by_v = {v: sum(runs.values()) / 2 for v, runs in table.items()}
    by_s = {s: sum(table[v][s] for v in table) / 3 for s in (0, 1)}
    sse = sum((table[v][s] - by_v[v] - by_s[s] + grand) ** 2 for v in table for s in (0, 1))
    sd = math.sqrt(2 * sse / 2)  # one seed's paired difference
    mha, sqa, xsqa = summarise(_rows(table), "mha")
    c = dunnett_critical(2, 2)
    assert sqa.comparison.method == "Dunnett" and sqa.comparison.df == 2 and sqa.comparison.family == 2
    assert sqa.diff.mean == pytest.approx(0.11)
    assert (sqa.diff.low, sqa.diff.high) == pytest.approx((0.11 - c * sd / math.sqrt(2), 0.11 + c * sd / math.sqrt(2)))
    assert sqa.mde == pytest.approx(detectable(sd / math.sqrt(2), 2, c))
    own_sd = math.sqrt(((0.10 - 0.11) ** 2 + (0.12 - 0.11) ** 2) / 1)  # sqa's own, which the summary must not use
    assert sqa.mde != pytest.approx(detectable(own_sd / math.sqrt(2), 1, c), rel=1e-3)
    assert xsqa.verdict.startswith("better: val loss -0.205")  # a lower loss is better


def test_an_accuracys_difference_stays_within_minus_one_and_one():
    table = {"mha": {0: 0.02, 1: 0.9, 2: 0.5}, "sqa": {0: 0.98, 1: 0.1, 2: 0.99}}
    (sqa,) = [s for s in summarise(_rows(table, "mqar"), "mha") if s.variant == "sqa"]
    assert -1.0 <= sqa.diff.low and sqa.diff.high <= 1.0 and sqa.diff.high == 1.0
    assert 0.0 <= sqa.value.low and sqa.value.high <= 1.0


def test_the_papers_claims_are_judged_with_their_pairs_in_the_claims_order_as_one_family():
    """sqa 0.2 below gqa (lower loss: better), ssqa and xsqa level; mqa 0.3 below xsqa: "xSQA no worse than
    MQA" reads xsqa - mqa = +0.3 (worse), never mqa - xsqa."""
    seeds = range(4)
    noise = {0: 0.01, 1: -0.01, 2: 0.02, 3: -0.02}
    base = {"gqa": 2.0, "sqa": 1.8, "ssqa": 2.0, "xsqa": 2.0, "mqa": 1.7}
    table = {v: {s: b + noise[s] + (0.001 * s if v == "sqa" else 0) for s in seeds} for v, b in base.items()}
    judged = {text: (c, said) for text, c, said in claims(_rows(table))}
    sqa, _ = judged["SQA close to GQA"]
    xsqa, said = judged["xSQA no worse than MQA"]
    assert sqa.variant == "sqa" and sqa.against == "gqa" and sqa.diff.mean == pytest.approx(-0.1985)
    assert xsqa.diff.mean == pytest.approx(0.3) and said.startswith("worse")
    assert {c.family for c, _ in judged.values()} == {3} and {c.method for c, _ in judged.values()} == {"Bonferroni"}


def _simulated_runs(rng, variants: int, seeds: int, true: dict[int, float], sd: float) -> list[dict]:
    """One run of the design: a seed effect shared by every variant (the block), each cell's own noise."""
    block = rng.normal(0, 1.0, seeds)
    table = {f"v{v}": {s: 2.0 + true.get(v, 0.0) + block[s] + rng.normal(0, sd) for s in range(seeds)}
             for v in range(variants)}  # fmt: skip
    return _rows(table)


@pytest.mark.parametrize("variants, seeds", [(8, 3), (4, 5)])
def test_the_family_wise_false_positive_rate_is_at_most_5_percent(variants, seeds):
    """No true difference: the share of simulated runs in which any comparison of the table reads better or
    worse is at most 5% (within 3 standard errors of simulation)."""
    rng = np.random.default_rng(7)
    runs = 2000
    false = sum(any(not s.verdict.startswith(("no detectable", "the baseline")) for s in
                    summarise(_simulated_runs(rng, variants, seeds, {}, 0.05), "v0")) for _ in range(runs))  # fmt: skip
    assert false / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
    assert false / runs >= 0.05 - 4 * math.sqrt(0.05 * 0.95 / runs)  # Dunnett is exact, not merely conservative


def test_the_stated_mde_is_detected_with_the_stated_power():
    """A true difference equal to the MDE the design states (for the true noise) is found in 80% of simulated
    runs, through the real summary and its family-wise intervals."""
    rng = np.random.default_rng(9)
    variants, seeds, cell_sd, runs = 6, 4, 0.05, 2000
    mde = planned_mde(variants, seeds, sd=cell_sd * math.sqrt(2))  # one seed's paired difference: sqrt(2) x
    found = 0
    for _ in range(runs):
        (v1,) = [s for s in summarise(_simulated_runs(rng, variants, seeds, {1: mde}, cell_sd), "v0")
                 if s.variant == "v1"]  # fmt: skip
        found += v1.verdict.startswith("worse")
    assert found / runs == pytest.approx(0.80, abs=3 * math.sqrt(0.8 * 0.2 / runs))


def test_identical_values_are_no_noise_measured_never_a_verdict():
    """Zero estimated noise once printed a zero-width interval and "MDE 0", and a 1e-16 rounding residue read
    "worse". Identical differences over the seeds state no interval, no MDE and no verdict."""
    from sqabench.quality.stats import compare, verdict

    table = {"mha": {0: 0.5, 1: 0.5, 2: 0.5}, "sqa": {0: 0.5 - 1e-16, 1: 0.5 - 1e-16, 2: 0.5 - 1e-16}}
    (comparison,) = compare(table, "mha")
    assert comparison.diff.no_noise and comparison.diff.low is None and comparison.mde is None
    said = verdict(comparison.diff, higher_is_better=True, what="accuracy")
    assert said.startswith("no noise measured: identical over 3 seeds, no verdict") and "worse" not in said
    assert "no noise measured over 3 seeds" in comparison.diff.text()
