"""``sqabench quality --resume``: the plan less the runs its file already holds, each checked against this
configuration, and the checkpoints of the runs that were cut short. A refused resume changes no file.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import replace

from sqabench.errors import ConfigError
from sqabench.files import check_output, write_csv
from sqabench.quality.rows import COLUMNS, CURVE_COLUMNS, config_hash, read_rows


def resume(plan, rewrite: bool = True, say=lambda text: None):
    """``plan`` (a ``quality.plan.Plan``) less the runs ``plan.path`` already holds as ok; the curves file keeps
    only those runs' points (a checkpointed run writes its own again), and failed rows are dropped to be trained
    again. Files are rewritten (``rewrite``; a dry run does not) only once every row and checkpoint is
    accepted."""
    for path in (plan.path, plan.curves_path):
        if path.exists() and not (path.is_file() and os.access(path, os.W_OK)):
            raise ConfigError(f"--resume: {path} is not a writable file")
    rows = read_rows(plan.path) if plan.path.exists() and plan.path.stat().st_size else []
    if not rows and not plan.checkpoints.exists() and not plan.curves_path.exists():
        check_output(plan.path, explicit=True)  # as a new run's: before any work
        said = "does not exist yet" if not plan.path.exists() else "is empty"
        say(f"--resume: {plan.path} {said}; starting it afresh")  # as `run --resume` does
        return replace(plan, run_id=uuid.uuid4().hex[:12])
    by_name = {spec.name: spec for spec in plan.specs}
    kept = {}
    for row in rows:
        spec, seed = by_name.get(row["variant"]), int(row["seed"])
        if spec is None or seed not in plan.seeds:
            raise ConfigError(f"--resume: {plan.path} holds {row['variant']} seed {seed}, which these options do "
                              "not train; rerun with its --variants and --seeds")  # fmt: skip
        if row["config"] != config_hash(plan.config(spec).key(spec, seed)):
            steps = plan.config(spec).steps
            said = f" (its steps {row['steps']}, these {steps})" if row["steps"] != str(steps) else ""
            raise ConfigError(f"--resume: {plan.path}'s {row['variant']} seed {seed} was trained with other options"
                              f"{said}: task, data, model, steps or schedule; rerun with its options, or another "
                              "--out")  # fmt: skip
        if row["status"] == "ok":
            kept[(row["variant"], seed)] = row
    curves = read_rows(plan.curves_path, CURVE_COLUMNS) if plan.curves_path.exists() else []
    lost = sorted({f"{v} seed {s}" for v, s in kept} - {f"{c['variant']} seed {int(c['seed'])}" for c in curves})
    if lost:
        say(
            f"note: {plan.curves_path} holds no curve of {', '.join(lost[:6])}{' ...' if len(lost) > 6 else ''}: "
            "their rows are kept, but their curves are gone (the curves figure will lack them)"
        )
    kept_points = [c for c in curves if (c["variant"], int(c["seed"])) in kept]
    run_id = (rows or curves or [{"run_id": uuid.uuid4().hex[:12]}])[0]["run_id"]
    if plan.checkpoints.is_dir():
        for file in sorted(plan.checkpoints.glob("*.pt")):
            match = re.fullmatch(r"(.+)-seed([0-9]+)\.pt", file.name)
            spec = by_name.get(match.group(1)) if match else None
            if spec is None or int(match.group(2)) not in plan.seeds:
                raise ConfigError(f"--resume: checkpoint {file} is of a run these options do not train; rerun with "
                                  "its --variants and --seeds")  # fmt: skip
            plan.checkpoint(spec, int(match.group(2))).load()  # refuses one of another configuration
    # Only once every row and checkpoint is accepted are the files touched: a refused --resume changes nothing.
    if rewrite and len(kept_points) != len(curves):
        write_csv(plan.curves_path, CURVE_COLUMNS, kept_points)
    if rewrite and any(row["status"] != "ok" for row in rows):  # failed rows are trained again: ok ones are kept
        write_csv(plan.path, COLUMNS, [row for row in rows if row["status"] == "ok"])
    return replace(plan, kept=kept, run_id=run_id)
