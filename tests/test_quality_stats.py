"""The statistics over seeds: every number against a reference of its own (a t density integrated by hand, sign
patterns enumerated by hand, binomial sums by hand, Holm's rule stepped through by hand, the definitions
simulated), and the promise the tables make (any printed verdict false at most 5% of the time, variants' noise
unequal) checked by simulating many runs through the real analysis."""

import itertools
import math

import numpy as np
import pytest

from reference import t_cdf
from sqabench.quality.stats import (
    Interval,
    count_p,
    detectable,
    flip_p,
    halves_disagree,
    holm,
    interval,
    planned_mde,
    tarone_size,
)  # fmt: skip
from sqabench.quality.summary import analyse, summarise


def _t_quantile(p: float, df: int) -> float:
    low, high = 0.0, 1000.0
    for _ in range(60):  # bisection on the hand-integrated CDF
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df, 4000) < p else (low, mid)
    return (low + high) / 2


def _mean_sd(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _rows(table: dict[str, dict[int, float]], task: str = "text", marks: dict | None = None) -> list[dict]:
    metric = "val_loss" if task == "text" else "val_accuracy"
    rows = []
    for v, runs in table.items():
        for s, y in runs.items():
            reached = (marks or {}).get(v, {}).get(s, {})
            rows.append({"task": task, "variant": v, "seed": s, "val_accuracy": 0.5, "val_loss": 2.0, metric: y,
                         "step_ms": 10.0, "solved": str(reached.get("solved", False)),
                         "steps_to_50": "10" if reached.get("50%") else "", "steps_to_90": "",
                         "n_q_heads": 4, "n_kv_heads": 4, "window": "", "status": "ok"})  # fmt: skip
    return rows


def test_a_variants_interval_is_its_t_interval_and_an_accuracy_stays_within_0_and_1():
    # 0.60 .. 0.63: mean 0.61, sd 0.0158114 (n 5), t(0.975, 4) = 2.776 (tables)
    i = interval([0.60, 0.62, 0.61, 0.63, 0.59])
    assert i.mean == pytest.approx(0.61) and i.sd == pytest.approx(0.0158114, rel=1e-5)
    half = (i.high - i.low) / 2
    assert half == pytest.approx(2.776 * 0.0158114 / math.sqrt(5), rel=1e-3)
    assert t_cdf(half * math.sqrt(5) / i.sd, 4) == pytest.approx(0.975, abs=2e-4)
    near_one = interval([0.99, 1.0, 0.97], bounds=(0.0, 1.0))
    assert near_one.high == 1.0 and near_one.low < 0.99  # unbounded, the interval would pass 1
    assert interval([0.3]).low is None
    assert interval([1.0, 1.0, 1.0], bounds=(0.0, 1.0)).no_noise  # solved on every seed: no zero-width interval


# Four variants against mha at 5 seeds (losses), each pair with noise of its own: a quiet one, a noisy one.
PAIRED = {"mha": {0: 2.00, 1: 2.10, 2: 1.95, 3: 2.05, 4: 2.02},
          "quiet": {0: 2.05, 1: 2.16, 2: 1.99, 3: 2.11, 4: 2.06},
          "noisy": {0: 2.30, 1: 1.90, 2: 2.20, 3: 1.95, 4: 2.40},
          "same": {0: 2.01, 1: 2.08, 2: 1.97, 3: 2.04, 4: 2.03}}  # fmt: skip


def test_each_pair_is_judged_on_its_own_differences_with_holm_over_the_family_by_hand():
    """The paired t by hand (mean and sd of the pair's own differences, n - 1 df, the p-value from the hand-
    integrated t density), Holm by hand (sorted p-values times 3, 2, 1, running maximum), the interval
    Bonferroni's (t at 1 - 0.05 / (2 x 3)): none of it pooled across variants."""
    by = {s.variant: s.comparison for s in summarise(_rows(PAIRED), "mha")}
    raw = {}
    for variant in ("quiet", "noisy", "same"):
        d = [PAIRED[variant][s] - PAIRED["mha"][s] for s in range(5)]
        mean, sd = _mean_sd(d)
        t = abs(mean) / (sd / math.sqrt(5))
        raw[variant] = 2 * (1 - t_cdf(t, 4))
        c = by[variant]
        assert c.diff.mean == pytest.approx(mean) and c.diff.sd == pytest.approx(sd) and c.df == 4
        assert c.p == pytest.approx(raw[variant], rel=1e-4, abs=1e-7)
        critical = _t_quantile(1 - 0.05 / 6, 4)
        assert (c.diff.low, c.diff.high) == pytest.approx((mean - critical * sd / math.sqrt(5),
                                                           mean + critical * sd / math.sqrt(5)), rel=1e-6)  # fmt: skip
    order = sorted(raw, key=raw.get)
    running, adjusted = 0.0, {}
    for rank, variant in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[variant]))
        adjusted[variant] = running
    for variant, value in adjusted.items():
        assert by[variant].p_adjusted == pytest.approx(value, rel=1e-4, abs=1e-7)
        assert by[variant].family == 3
    assert by["quiet"].found and not by["noisy"].found  # the noisy pair borrows nobody's quiet variance


def test_holm_and_tarone_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.01], size=4) == pytest.approx([1.0, 0.04])
    # 2 continuous tests; counts whose smallest p are 0.0625 (never below 0.05 / K) and 0.001: K = 3
    assert tarone_size(2, [0.0625, 0.001]) == 3
    assert tarone_size(0, [1.0, 1.0]) == 1


def test_the_sign_flip_test_is_every_sign_pattern_counted_by_hand():
    d = [0.1, 0.2, -0.05, 0.3, 0.15, 0.25]
    observed = abs(sum(d))
    patterns = list(itertools.product((1, -1), repeat=len(d)))
    extreme = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-12 for signs in patterns)
    assert flip_p(d) == pytest.approx(extreme / len(patterns))
    greater = sum(sum(s * (x - 0.05) for s, x in zip(signs, d)) >= sum(x - 0.05 for x in d) - 1e-12
                  for signs in patterns)  # fmt: skip
    assert flip_p(d, 0.05, "greater") == pytest.approx(greater / len(patterns))
    assert flip_p([0.1] * 5) == pytest.approx(2 / 32)  # 5 seeds: it cannot reject at 5% even alone


def test_the_exact_count_test_is_a_binomial_sum_by_hand():
    # 5 discordant seeds all one way: 2 x 0.5^5; 6 against 1: 2 x (C(7,0) + C(7,1)) / 2^7
    assert count_p(5, 0) == pytest.approx(2 / 32)
    assert count_p(6, 1) == pytest.approx(2 * (1 + 7) / 128)
    assert count_p(0, 0) == 1.0


def test_mqar_counts_are_judged_on_discordant_seeds_and_left_out_when_they_cannot_reach():
    """10 seeds: mha takes off on every seed, sqa on none (10 discordant: 2 x 0.5^10, small enough); gqa on 8
    of mha's 10 (2 discordant: it can never reach 5%, left out of the family by Tarone's rule)."""
    seeds = range(10)
    accuracy = {"mha": {s: 0.8 + 0.01 * s for s in seeds}, "sqa": {s: 0.3 + 0.011 * s for s in seeds},
                "gqa": {s: 0.7 + 0.012 * s for s in seeds}}  # fmt: skip
    marks = {"mha": {s: {"50%": True} for s in seeds}, "sqa": {s: {"50%": False} for s in seeds},
             "gqa": {s: {"50%": s >= 2} for s in seeds}}  # fmt: skip
    analysis = analyse(_rows(accuracy, "mqar", marks), "mha")
    by = {(c.variant, c.mark): c for c in analysis.counts}
    sqa, gqa = by[("sqa", "50%")], by[("gqa", "50%")]
    assert sqa.counts == (0, 10) and sqa.p == pytest.approx(2 * 0.5**10) and sqa.in_family and sqa.found
    assert gqa.counts == (0, 2) and not gqa.in_family and not gqa.found
    assert by[("sqa", "solved")].p is None  # no seed where only one solved it


def _tost_by_hand(d, margin):
    mean, sd = _mean_sd(d)
    se = sd / math.sqrt(len(d))
    lower = 1 - t_cdf((mean + margin) / se, len(d) - 1)  # H0: diff <= -margin
    upper = t_cdf((mean - margin) / se, len(d) - 1)  # H0: diff >= margin
    return max(lower, upper)


def test_closeness_claims_are_equivalence_and_non_inferiority_tests_by_hand():
    """sqa close to gqa within 3% of gqa's loss (TOST: the larger of the two one-sided p-values); xsqa no worse
    than mqa (one-sided: worse is a higher loss). Holm over the 3 differences and 3 claims by hand."""
    seeds = range(6)
    wobble = [0.01, -0.02, 0.015, -0.005, 0.02, -0.01]
    base = {"mha": 2.0, "gqa": 2.02, "sqa": 2.025, "ssqa": 2.15, "xsqa": 2.06, "mqa": 2.05}
    table = {v: {s: b + wobble[s] * (1 + 0.3 * i) for s in seeds} for i, (v, b) in enumerate(base.items())}
    analysis = analyse(_rows(table), "mha", margin=0.03)
    claims = dict(analysis.claims)
    gqa_loss = sum(table["gqa"].values()) / 6
    sqa = claims["SQA close to GQA"]
    d = [table["sqa"][s] - table["gqa"][s] for s in seeds]
    assert sqa.margin == pytest.approx(0.03 * gqa_loss) and sqa.kind == "equivalence"
    assert sqa.p == pytest.approx(_tost_by_hand(d, 0.03 * gqa_loss), rel=1e-4)
    xsqa = claims["xSQA no worse than MQA"]
    d = [table["xsqa"][s] - table["mqa"][s] for s in seeds]
    mean, sd = _mean_sd(d)
    margin = 0.03 * sum(table["mqa"].values()) / 6
    assert xsqa.p == pytest.approx(t_cdf((mean - margin) / (sd / math.sqrt(6)), 5), rel=1e-4)
    assert analysis.family == len(base) - 1 + 3
    assert "margin" in claims["sSQA close to GQA"].margin_from or claims["sSQA close to GQA"].margin_from


def test_a_closeness_verdict_says_equivalent_worse_than_the_margin_or_not_shown():
    from sqabench.quality.stats import verdict

    close = {
        "gqa": {s: 2.0 + 0.01 * s for s in range(8)},
        "sqa": {s: 2.001 + 0.01 * s + 0.0005 * (-1) ** s for s in range(8)},  # fmt: skip
        "ssqa": {s: 2.5 + 0.01 * s + 0.0005 * (-1) ** s for s in range(8)},
    }
    claims = dict(analyse(_rows(close), "gqa", margin=0.02).claims)
    assert verdict(claims["SQA close to GQA"], "val loss").startswith("equivalent within the margin")
    assert verdict(claims["sSQA close to GQA"], "val loss").startswith("worse than the margin")


def test_the_default_text_margin_is_the_papers_own_mha_gqa_gap_read_from_its_table():
    from sqabench.quality.summary import paper_gap

    gap, source = paper_gap()
    assert gap == pytest.approx((1.2177 - 1.1976) / 1.1976) and "1.2177" in source


def test_an_accuracys_difference_interval_stays_within_minus_one_and_one_and_a_loss_reads_worse():
    """An accuracy that drops: its difference is negative, so clipping it to a value's [0, 1] would read "no
    detectable difference"; it must stay within [-1, 1] and read worse."""
    table = {"mha": {s: 0.95 - 0.01 * (s % 3) for s in range(8)}, "sqa": {s: 0.25 + 0.02 * (s % 4) for s in range(8)}}
    (sqa,) = [s for s in summarise(_rows(table, "mqar"), "mha") if s.variant == "sqa"]
    d = [table["sqa"][s] - table["mha"][s] for s in range(8)]
    assert sqa.diff.mean == pytest.approx(sum(d) / 8) and sqa.diff.high < 0 and sqa.diff.low >= -1.0
    assert sqa.verdict.startswith("worse: accuracy")
    wide = {"mha": {0: 0.02, 1: 0.9, 2: 0.5}, "sqa": {0: 0.98, 1: 0.1, 2: 0.99}}
    (w,) = [s for s in summarise(_rows(wide, "mqar"), "mha") if s.variant == "sqa"]
    assert w.diff.low == -1.0 and w.diff.high == 1.0


def test_the_papers_claims_on_mqar_are_judged_on_accuracy_not_loss():
    """Accuracy and loss tell opposite stories here; the claim's difference is the accuracy's, by hand."""
    seeds = range(6)
    table = {"gqa": {s: 0.5 + 0.01 * s for s in seeds}, "sqa": {s: 0.7 + 0.012 * s for s in seeds}}
    rows = _rows(table, "mqar")
    for row in rows:
        row["val_loss"] = 1.0 if row["variant"] == "sqa" else 0.1  # sqa's loss worse, its accuracy better
    (claim,) = [c for text, c in analyse(rows, "gqa").claims]
    d = [table["sqa"][s] - table["gqa"][s] for s in seeds]
    assert claim.diff.mean == pytest.approx(sum(d) / 6) and claim.diff.mean > 0 and claim.margin == 0.05


def test_a_second_reference_is_paired_against_itself_not_the_baseline():
    seeds = range(5)
    table = {"mha": {s: 2.0 + 0.01 * s for s in seeds}, "gqa": {s: 2.1 + 0.013 * s for s in seeds},
             "xsqa": {s: 2.3 + 0.02 * (s % 2) for s in seeds}}  # fmt: skip
    analysis = analyse(_rows(table), "mha", also=("gqa",))
    (xsqa,) = analysis.also["gqa"]
    assert xsqa.against == "gqa" and xsqa.diff.mean == pytest.approx(sum(table["xsqa"][s] - table["gqa"][s]
                                                                          for s in seeds) / 5)  # fmt: skip
    assert analysis.family == 3  # gqa and xsqa against mha, xsqa against gqa: one family


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
    one = {"mha": {0: 2.0}, "sqa": {0: 2.5}}
    (sqa,) = [s for s in summarise(_rows(one), "mha") if s.variant == "sqa"]
    assert sqa.verdict.startswith("one seed: no uncertainty can be stated")


def _unequal_runs(rng, seeds: int, sds: dict[str, float], shift: dict[str, float] | None = None) -> list[dict]:
    """One run: a seed effect shared by every variant (the block), each variant's own noise, its own sd."""
    block = rng.normal(0, 0.05, seeds)
    shift = shift or {}
    table = {v: {s: 2.0 + shift.get(v, 0.0) + block[s] + rng.normal(0, sd) for s in range(seeds)}
             for v, sd in sds.items()}  # fmt: skip
    return _rows(table)


SDS = {"mha": 0.005, "gqa": 0.01, "mqa": 0.08, "sqa": 0.08, "ssqa": 0.02, "xsqa": 0.06}  # unequal: 16x


@pytest.mark.parametrize("seeds", [3, 5])
def test_any_printed_verdict_is_false_at_most_5_percent_of_the_time_with_unequal_noise(seeds):
    """All means equal, the variants' noise unequal as real runs have it: the share of simulated runs in which any
    printed verdict (the differences against mha, the claims beyond their margin) is false stays at most 5%
    (within 3 standard errors of simulation), through the real analysis."""
    rng = np.random.default_rng(7)
    runs, false = 800, 0
    for _ in range(runs):
        analysis = analyse(_unequal_runs(rng, seeds, SDS), "mha", margin=0.001)
        wrong = [s for s in analysis.summaries if s.comparison is not None and s.comparison.found]
        beyond = [c for _, c in analysis.claims if c.p is not None and not c.found and
                  (c.diff.low > c.margin or c.diff.high < -c.margin)]  # fmt: skip
        false += bool(wrong or beyond)
    assert false / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)


def test_the_stated_mde_is_detected_with_the_stated_power():
    """A true difference equal to the MDE the plan states (for the pair's true noise, in a family of 5) is found
    in 80% of simulated runs, through the real analysis (Holm's first step is Bonferroni's; Holm finds more)."""
    rng = np.random.default_rng(9)
    seeds, runs = 6, 800
    sds = {"mha": 0.02, "v1": 0.02, "v2": 0.02, "v3": 0.02, "v4": 0.02, "v5": 0.02}
    mde = planned_mde(seeds, 5, sd=0.02 * math.sqrt(2))  # one seed's paired difference: sqrt(2) x
    found = 0
    for _ in range(runs):
        by = {s.variant: s for s in summarise(_unequal_runs(rng, seeds, sds, {"v1": mde}), "mha")}
        found += by["v1"].verdict.startswith("worse")
    assert found / runs >= 0.80 - 3 * math.sqrt(0.8 * 0.2 / runs)
    assert found / runs <= 0.90  # not far past it: Holm's later steps are only a little more lenient


def test_identical_values_are_no_noise_measured_never_a_verdict():
    """Zero estimated noise once printed a zero-width interval and "MDE 0", and a 1e-16 rounding residue read
    "worse". Identical differences over the seeds state no interval, no MDE and no verdict."""
    table = {"mha": {0: 0.5, 1: 0.5, 2: 0.5}, "sqa": {0: 0.5 - 1e-16, 1: 0.5 - 1e-16, 2: 0.5 - 1e-16}}
    (sqa,) = [s for s in summarise(_rows(table, "mqar"), "mha") if s.variant == "sqa"]
    assert sqa.diff.no_noise and sqa.diff.low is None and sqa.mde is None and sqa.comparison.p is None
    assert (
        sqa.verdict.startswith("no noise measured: identical over 3 seeds, no verdict") and "worse" not in sqa.verdict
    )
    assert "no noise measured over 3 seeds" in sqa.diff.text()


def test_a_seed_only_one_variant_has_is_left_out_of_its_pairs_and_said():
    """xsqa has a seed 5 nobody else has: every pair uses only common seeds, the others' analysis is unchanged,
    and the analysis names what was left out."""
    seeds = range(5)
    table = {v: {s: PAIRED[v][s] for s in seeds} for v in ("mha", "quiet", "noisy")}
    before = {s.variant: s.comparison for s in summarise(_rows(table), "mha")}
    table["xsqa"] = {**{s: 2.1 + 0.01 * s for s in seeds}, 5: 9.0}
    analysis = analyse(_rows(table), "mha")
    after = {s.variant: s.comparison for s in analysis.summaries}
    assert after["quiet"].diff.mean == before["quiet"].diff.mean and after["quiet"].diff.sd == before["quiet"].diff.sd
    assert after["xsqa"].n == 5 and analysis.left_out == ["xsqa seed 5"]


def test_the_halves_consistency_test_by_hand():
    """(d1 - d2) / sqrt(se1^2 + se2^2) on Welch-Satterthwaite's df, its two-sided p from the hand-integrated t."""
    for first, second in (([0.10, 0.12, 0.09, 0.11], [0.30, 0.33, 0.29, 0.31]),
                          ([0.1, 0.2, 0.15], [0.12, 0.18, 0.16, 0.2])):  # fmt: skip
        m1, s1 = _mean_sd(first)
        m2, s2 = _mean_sd(second)
        v1, v2 = s1**2 / len(first), s2**2 / len(second)
        df = (v1 + v2) ** 2 / (v1**2 / (len(first) - 1) + v2**2 / (len(second) - 1))
        z = abs(m1 - m2) / math.sqrt(v1 + v2)
        assert halves_disagree(first, second) == pytest.approx(2 * (1 - t_cdf(z, df)), rel=1e-4, abs=1e-8)
    assert halves_disagree([0.1], [0.2, 0.3]) is None


def test_a_bounded_metric_takes_the_larger_of_the_t_and_the_sign_flip_p_where_the_seeds_allow():
    """MQAR at 10 seeds: nine seeds 0.5 worse and one 0.1 better gives a t p-value near 1e-6, but only 4 of the
    1,024 sign patterns (counted here) reach the observed |sum|: the sign-flip's 4/1024 decides. At 5 seeds no
    sign pattern can reach the family's level: the t decides, and the method says why."""
    wobble = [0.01 * ((3 * s) % 7) for s in range(10)]
    mha = {s: 0.9 - wobble[s] for s in range(10)}
    sqa = {s: mha[s] - 0.5 - 0.001 * s if s else mha[s] + 0.1 for s in range(10)}
    (c,) = [s.comparison for s in summarise(_rows({"mha": mha, "sqa": sqa}, "mqar"), "mha") if s.variant == "sqa"]
    d = [sqa[s] - mha[s] for s in range(10)]
    extreme = sum(abs(sum(sign * x for sign, x in zip(signs, d))) >= abs(sum(d)) - 1e-12
                  for signs in itertools.product((1, -1), repeat=10))  # fmt: skip
    assert extreme == 4 and c.p == pytest.approx(extreme / 1024) and "sign-flip" in c.method
    few = {v: {s: runs[s] for s in range(5)} for v, runs in (("mha", mha), ("sqa", sqa))}
    (c,) = [s.comparison for s in summarise(_rows(few, "mqar"), "mha") if s.variant == "sqa"]
    mean, sd = _mean_sd(d[:5])
    assert "a sign-flip test cannot reach" in c.method
    assert c.p == pytest.approx(2 * (1 - t_cdf(abs(mean) / (sd / math.sqrt(5)), 4)), rel=1e-4)
