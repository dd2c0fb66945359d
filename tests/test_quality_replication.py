"""benchmarks/quality_replication.py: the halves of a run's seeds disagree only when a consistency test says so."""

import csv
from pathlib import Path

from factories import load_benchmark

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "quality-kjv-bytes-2seeds.csv"


def load_script():
    return load_benchmark("quality_replication")


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


def test_halves_disagree_only_where_they_do(tmp_path, capsys):
    """gqa is 0.5 worse in both halves (consistent); xsqa 0.5 worse in the first half and level in the second
    (the halves disagree); a noisy pair with no effect in either half stays consistent."""
    jitter = [0.010, -0.020, 0.015, -0.010, 0.020, -0.015, 0.005, -0.005]  # the noise: small against the effects
    seed = [0.0, 0.3, -0.2, 0.1, -0.1, 0.2, 0.05, -0.05]  # each seed's own effect, the same for every variant
    mha = [2.0 + s for s in seed]
    losses = {
        "mha": mha,
        "gqa": [m + 0.5 + j for m, j in zip(mha, jitter)],  # worse in both halves
        "xsqa": [m + (0.5 if i < 4 else 0.0) - j for i, (m, j) in enumerate(zip(mha, jitter))],  # first half only
    }
    write_run(tmp_path / "q.csv", losses)
    assert load_script().main([str(tmp_path / "q.csv")]) == 0
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["gqa vs mha"].endswith("-> consistent"), lines["gqa vs mha"]
    xsqa = lines["xsqa vs mha"]
    assert "+0.501 (4 seeds) | -0.001 (4 seeds)" in xsqa and xsqa.endswith("-> the halves disagree"), xsqa


def test_a_run_too_small_to_split_is_refused_in_one_line(capsys):
    assert load_script().main([str(FIXTURE)]) == 2
    assert capsys.readouterr().err.strip() == "error: 2 seeds: each half needs at least 2 (give a run of 4 or more)"
