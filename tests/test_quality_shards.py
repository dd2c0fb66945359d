"""--shard K/N: the runs in N shares by the cost model (the same on every machine), each share's file, and
`sqabench report` reading the shards' files as one run, refusing files of two configurations or one run twice."""

import csv

import pytest
from texts import QUICK, runner

from sqabench.cli import app


def _plan(**given):
    from sqabench.quality.options import QualityOptions
    from sqabench.quality.plan import resolve_quality

    options = dict(device="cpu", steps=4, batch=4, eval_every=2, d_model=16, heads=4, layers=1, seq="32",
                   dry_run=True)  # fmt: skip
    return resolve_quality(QualityOptions(**{**options, **given}))[0]


@pytest.mark.parametrize("parts", [1, 3, 4, 7])
def test_the_shares_cover_every_run_once_and_balance_the_cost_model(parts):
    from sqabench.quality.plan import share

    plan = _plan(variants="mha,gqa,xsqa,xsmqa,sqa", seeds=3)
    shares = share(plan, parts)
    runs = [(spec.name, seed) for part in shares for spec, seed in part]
    assert sorted(runs) == sorted((spec.name, seed) for spec in plan.specs for seed in plan.seeds)  # each once
    loads = [sum(plan.run_cost(spec) for spec, _ in part) for part in shares]
    biggest = max(plan.run_cost(spec) for spec in plan.specs)
    assert max(loads) - min(loads) <= biggest  # greedy on the costliest first: within one run of each other
    assert [[(s.name, seed) for s, seed in part] for part in share(plan, parts)] == \
        [[(s.name, seed) for s, seed in part] for part in shares]  # fmt: skip
    first = _plan(variants="mha,gqa,xsqa,xsmqa,sqa", seeds=3, shard=f"1/{parts}")
    assert [(s.name, seed) for s, seed in first.runs()] == sorted(
        ((s.name, seed) for s, seed in shares[0]), key=lambda r: (r[1], [x.name for x in plan.specs].index(r[0]))
    )


@pytest.mark.parametrize("shard, said", [("0/2", "1 <= K <= N"), ("3/2", "1 <= K <= N"), ("a/b", "give K/N"),
                                         ("2", "give K/N")])  # fmt: skip
def test_a_bad_shard_is_one_line(shard, said):
    result = runner.invoke(app, [*QUICK, "--shard", shard, "--dry-run"])
    assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output


def test_a_shard_sizes_no_budget_of_its_own():
    steps = QUICK.index("--steps")
    result = runner.invoke(app, [*QUICK[:steps], *QUICK[steps + 2 :], "--budget", "5m", "--shard", "1/2", "--dry-run"])
    assert result.exit_code == 2 and "every share must train the same steps" in " ".join(result.output.split())


def test_two_shards_are_the_one_process_run_and_report_reads_them_as_one(tmp_path):
    whole, first, second = tmp_path / "whole.csv", tmp_path / "s1.csv", tmp_path / "s2.csv"
    for out, extra in ((whole, []), (first, ["--shard", "1/2"]), (second, ["--shard", "2/2"])):
        result = runner.invoke(app, [*QUICK, "--seeds", "2", *extra, "--out", str(out)], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
    assert "shard 2/2: these tables are this share's runs only" in " ".join(result.output.split())
    value = {(r["variant"], r["seed"]): r["val_loss"] for r in csv.DictReader(whole.open())}
    sharded = [r for path in (first, second) for r in csv.DictReader(path.open())]
    assert {(r["variant"], r["seed"]): r["val_loss"] for r in sharded} == value  # bit for bit, every run once
    assert len(sharded) == len(value) == 4 and 0 < len(list(csv.DictReader(first.open()))) < 4
    merged = runner.invoke(app, ["report", str(first), str(second)], env={"COLUMNS": "250"})
    alone = runner.invoke(app, ["report", str(whole)], env={"COLUMNS": "250"})
    assert merged.exit_code == 0, merged.output
    assert "2 quality files as one run" in merged.output

    def sqa_row(output: str) -> list[str]:  # every cell but the step time (the clock's, not the run's)
        (line,) = [line for line in output.splitlines() if line.startswith("│ sqa")]
        cells = line.split("│")
        return cells[:9] + cells[10:]

    assert sqa_row(alone.output) == sqa_row(merged.output)
    twice = runner.invoke(app, ["report", str(first), str(first)])
    assert twice.exit_code == 2 and "is in both" in twice.output
    other = tmp_path / "other.csv"
    steps = QUICK.index("--steps")
    runner.invoke(app, [*QUICK[: steps + 1], "5", *QUICK[steps + 2 :], "--seeds", "2", "--shard", "2/2", "--out",
                        str(other)])  # fmt: skip
    mixed = runner.invoke(app, ["report", str(first), str(other)])
    assert mixed.exit_code == 2 and "are not shards of one run" in mixed.output and "steps" in mixed.output
    half = runner.invoke(app, ["report", str(first), str(tmp_path / "whole.csv")])
    assert half.exit_code == 2  # whole holds the first shard's runs too
    drawn = runner.invoke(app, ["plot", str(first), str(second), "--out", str(tmp_path / "figures")])
    assert drawn.exit_code == 0, drawn.output
    assert any(path.suffix == ".png" for path in (tmp_path / "figures").iterdir())


def test_a_dry_run_plans_the_wall_time_on_n_gpus():
    result = runner.invoke(app, [*QUICK, "--dry-run", "--gpus", "2"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "on 2 machines like this one: 10 runs" in text and "the longest of 2 shares" in text
    assert runner.invoke(app, [*QUICK, "--gpus", "2"]).exit_code == 2
