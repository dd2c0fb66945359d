"""A confirmatory run: ``sqabench quality --confirm FIRST.csv`` trains fresh seeds (after the first run's last one)
with the first run's setting, and tests only the first run's findings on them, each one-sided in the direction
the first run found, Holm over the findings tested: "confirmed" or "not confirmed". No torch here.

The setting must be the first run's: every variant both runs train must hash to the first run's ``config`` (the
same task, data, model, steps and schedule), so that the fresh seeds are a new sample of the same experiment.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqabench.errors import ConfigError


def first_rows(path: Path) -> list[dict]:
    """The finished rows of the first run, read and checked; a one-line error when there are none."""
    from sqabench.quality.rows import read_any

    if not path.is_file():
        raise ConfigError(f"--confirm {path}: no such file (the first run's quality CSV)")
    rows = [row for row in read_any(path)[0] if row["status"] == "ok"]
    if not rows:
        raise ConfigError(f"--confirm {path}: it holds no finished run, so there is nothing to confirm")
    return rows


def confirming(plan, path: Path):
    """``plan`` with fresh seeds, as many as it had, after the first run's last seed; ``ConfigError`` when a
    variant's setting differs from the first run's (its config hash) or the two runs share no variant."""
    from sqabench.quality.rows import config_hash

    if path.resolve() == plan.path.resolve():
        raise ConfigError(f"--confirm {path} is the file this run writes: give the first run's file, and another --out")
    rows = first_rows(path)
    seeds = sorted({int(row["seed"]) for row in rows})
    by_variant = {str(row["variant"]): row for row in rows}
    shared = [spec for spec in plan.specs if spec.name in by_variant]
    if not shared:
        raise ConfigError(f"--confirm {path}: it trained {', '.join(sorted(by_variant))}, none of the variants "
                          "asked for here")  # fmt: skip
    for spec in shared:
        row = by_variant[spec.name]
        if config_hash(plan.config(spec).key(spec, int(row["seed"]))) != row["config"]:
            raise ConfigError(f"--confirm {path}: {spec.name} was trained there with another setting (steps "
                              f"{row['steps']}, batch {row['batch']}, lr {row['lr']}, task {row['task']}, "
                              f"{row['preset']}); give the first run's options, only --seeds and --out may "
                              "differ")  # fmt: skip
    start = seeds[-1] + 1
    return replace(plan, seeds=list(range(start, start + len(plan.seeds))))
