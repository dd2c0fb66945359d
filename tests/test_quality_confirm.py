"""A confirmatory run: fresh seeds after the first run's, its setting checked, and only its findings tested,
one-sided in the direction found, Holm over them (the p-values by hand from a t density integrated here)."""

import math

import pytest
from texts import QUICK
from typer.testing import CliRunner

from reference import t_cdf
from sqabench.cli import app

runner = CliRunner()


def _rows(losses: dict[str, list[float]], first_seed: int) -> list[dict]:
    return [{"task": "text", "variant": v, "seed": first_seed + i, "val_loss": y, "val_accuracy": 0.5, "step_ms": 1.0,
             "solved": "", "steps_to_50": "", "steps_to_90": "", "n_q_heads": 4, "n_kv_heads": 4, "window": "",
             "status": "ok"} for v, ys in losses.items() for i, y in enumerate(ys)]  # fmt: skip


WOBBLE = [0.01, -0.02, 0.015, -0.01, 0.02, -0.015]


def test_only_the_first_runs_findings_are_tested_one_sided_on_fresh_seeds_by_hand():
    from sqabench.quality.confirm import confirm

    first = _rows(
        {
            "mha": [2.0 + w for w in WOBBLE],
            "sqa": [2.5 + 1.3 * w for w in WOBBLE],
            "xsqa": [2.0 + 3 * w for w in WOBBLE],
        },
        0,
    )  # sqa worse (a finding), xsqa level (none)
    fresh_sqa = [2.1 + 2 * w + 0.01 * i for i, w in enumerate(WOBBLE)]
    fresh = _rows({"mha": [2.0 + w for w in WOBBLE], "sqa": fresh_sqa, "xsqa": [1.5] * 6}, 6)
    (found,) = confirm(first, first + fresh, "mha")  # the first run's seeds are left out of the test
    said, c = found
    assert said.startswith("sqa vs mha: worse")
    d = [fresh_sqa[i] - (2.0 + WOBBLE[i]) for i in range(6)]
    mean = sum(d) / 6
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 5)
    p = 1 - t_cdf(mean / (sd / math.sqrt(6)), 5)  # one-sided: the direction found (a higher loss)
    assert c.n == 6 and c.p == pytest.approx(p, rel=1e-4, abs=1e-9) and c.p_adjusted == pytest.approx(c.p)
    assert c.found
    against = _rows({"mha": [2.0 + w for w in WOBBLE], "sqa": [1.9 + 2 * w for w in WOBBLE], "xsqa": [1.5] * 6}, 6)
    ((_, reversed_),) = confirm(first, first + against, "mha")
    assert reversed_.p > 0.5 and not reversed_.found  # the fresh seeds point the other way: not confirmed


def test_a_confirmatory_run_trains_seeds_after_the_first_runs_with_its_setting(tmp_path):
    from sqabench.quality.options import QualityOptions
    from sqabench.quality.plan import resolve_quality

    first = tmp_path / "first.csv"
    result = runner.invoke(app, [*QUICK, "--seeds", "2", "--out", str(first)])
    assert result.exit_code == 0, result.output
    options = dict(device="cpu", steps=4, batch=4, eval_every=2, d_model=16, heads=4, layers=1, seq="32",
                   variants="mha,sqa", seeds=3, dry_run=True)  # fmt: skip
    plan, _ = resolve_quality(QualityOptions(**options, confirm=str(first)))
    assert plan.seeds == [2, 3, 4]
    longer = [*QUICK[: QUICK.index("--steps")], "--steps", "5", *QUICK[QUICK.index("--steps") + 2 :]]
    other = runner.invoke(app, [*longer, "--seeds", "2", "--confirm", str(first), "--dry-run"])
    assert other.exit_code == 2 and "mha was trained there with another setting (steps 4" in other.output
    missing = runner.invoke(app, [*QUICK, "--confirm", str(tmp_path / "nope.csv"), "--dry-run"])
    assert missing.exit_code == 2 and "no such file" in missing.output and "Traceback" not in missing.output
    second = tmp_path / "second.csv"
    result = runner.invoke(app, [*QUICK, "--seeds", "2", "--confirm", str(first), "--out", str(second)],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "nothing to confirm" in result.output or "tested on 2 fresh seeds" in result.output
    report = runner.invoke(app, ["report", str(second), "--confirm", str(first)], env={"COLUMNS": "200"})
    assert report.exit_code == 0, report.output
