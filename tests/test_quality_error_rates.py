"""benchmarks/quality_error_rates.py: runs simulated from a file's own noise, through the real analysis."""

from pathlib import Path

import numpy as np
import pytest

from factories import load_benchmark

HERE = Path(__file__).parent
KJV = HERE.parent / "results" / "cpu-amd-epyc-quality-kjv-bytes.csv"


def load_script():
    return load_benchmark("quality_error_rates")


def test_the_draws_keep_each_variants_own_noise_and_the_null_sets_every_mean_equal():
    script = load_script()
    rng = np.random.default_rng(0)
    values = np.array([[1.0, 2.0, 3.5], [1.1, 2.6, 3.0], [0.9, 1.8, 3.1], [1.05, 2.4, 3.6]])  # seeds x variants
    normal = script.draw(values, "normal", True, 200_000, rng)
    assert normal.mean(axis=0) == pytest.approx([values.mean()] * 3, abs=0.01)
    assert np.cov(normal, rowvar=False) == pytest.approx(np.cov(values, rowvar=False), abs=0.003)  # unequal kept
    picked = script.draw(values, "resample", True, 50, rng)
    shifted = values - values.mean(axis=0) + values.mean()  # each variant moved onto the grand mean
    assert all(any(np.allclose(line, row) for row in shifted) for line in picked)
    assert script.draw(values, "resample", False, 3, rng).shape == (3, 3)


def test_a_small_run_of_the_benchmark_prints_the_family_rate_and_each_comparisons_power(capsys):
    assert load_script().main([str(KJV), "--seeds", "5", "--sims", "12", "--laws", "normal,resample"]) == 0
    out = capsys.readouterr().out
    assert "12 simulated runs per line" in out
    for law in ("normal", "resample"):
        assert f"{law:15}  5 seeds: family-wise false-verdict rate" in out
    assert "power at the file's means: gqa vs mha" in out and "SQA close to GQA" in out
