"""benchmarks/quality_replication.py: a verdict counts as replicated only when both halves of the seeds reach it."""

import csv
import importlib.util
from pathlib import Path

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "quality-kjv-bytes-2seeds.csv"


def load_script():
    path = HERE.parent / "benchmarks" / "quality_replication.py"
    spec = importlib.util.spec_from_file_location("quality_replication", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(path: Path, losses: dict[str, list[float]]) -> None:
    """A quality CSV of the given val losses (variant -> one per seed), every other column the fixture's mha row."""
    with FIXTURE.open(newline="") as handle:
        reader = csv.DictReader(handle)
        template, columns = next(reader), reader.fieldnames
    heads = {"mha": (8, 8), "gqa": (8, 2), "xsqa": (2, 2)}
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for variant, values in losses.items():
            for seed, value in enumerate(values):
                q, kv = heads[variant]
                writer.writerow({**template, "variant": variant, "seed": seed, "n_q_heads": q, "n_kv_heads": kv,
                                 "val_loss": value, "run_id": f"{variant}{seed}"})  # fmt: skip


def test_a_verdict_one_half_does_not_share_is_not_replicated(tmp_path, capsys):
    jitter = [0.010, -0.020, 0.015, -0.010, 0.020, -0.015]  # the noise: small against the effects below
    seed = [0.0, 0.3, -0.2, 0.1, -0.1, 0.2]  # each seed's own effect, the same for every variant
    mha = [2.0 + s for s in seed]
    losses = {
        "mha": mha,
        "gqa": [m + 0.5 + j for m, j in zip(mha, jitter)],  # worse in both halves
        "xsqa": [m + (0.5 if i < 3 else 0.0) - j for i, (m, j) in enumerate(zip(mha, jitter))],
    }  # first half only
    write_run(tmp_path / "q.csv", losses)
    script = load_script()
    assert script.main([str(tmp_path / "q.csv")]) == 0
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "seeds 0-2:" in lines["gqa    vs mha"] and "seeds 3-5:" in lines["gqa    vs mha"]
    assert lines["gqa    vs mha"].endswith("-> replicated"), lines["gqa    vs mha"]
    xsqa = lines["xsqa   vs mha"]
    assert "seeds 0-2: +0.498" in xsqa and " worse | seeds 3-5: " in xsqa and xsqa.endswith("-> NOT replicated"), xsqa


def test_a_run_too_small_to_split_is_refused_in_one_line(capsys):
    assert load_script().main([str(FIXTURE)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: 2 seeds: each half needs at least 2 for a verdict (give a run of 4 or more)"
    )
