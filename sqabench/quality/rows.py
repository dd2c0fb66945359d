"""A quality CSV: its columns, one row per (variant, seed) run, the curves file beside it, and reading both
back. No torch here.

A run is one (variant, seed): a row of ``<out>`` with its final held-out metrics, parameters, training
FLOPs (the cost model's train step x steps), the median step time and tokens/s. Its evaluations go to
``<out stem>-curves.csv``. ``config`` hashes everything the run's result depends on, so that ``--resume``
never mixes runs of two configurations.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from sqabench.errors import ConfigError
from sqabench.files import header_of, read_csv

COLUMNS = (
    "run_id", "timestamp", "task", "variant", "n_heads", "n_q_heads", "n_kv_heads", "window", "preset", "d_model",
    "n_layers", "vocab", "seq_len", "pairs", "data", "tokenizer", "pad_like_paper", "eval_tokens", "eval_docs",
    "batch", "equal", "steps",
    "tokens", "lr", "warmup", "seed", "device", "dtype", "kernel", "val_loss", "perplexity", "val_accuracy",
    "val_bpb", "val_loss_padded", "val_accuracy_padded", "solved", "steps_to_50", "steps_to_90", "params",
    "train_flops", "flops_counted", "step_ms", "tokens_per_s", "wall_s", "eval_s", "config", "gpu_name",
    "torch_version", "sqabench_version", "git_sha", "cpu_model", "status", "error",
)  # fmt: skip
CURVE_COLUMNS = ("run_id", "variant", "seed", "step", "tokens", "train_loss", "val_loss", "val_accuracy", "val_bpb",
                 "val_loss_padded", "val_accuracy_padded", "lr")  # fmt: skip
MILESTONES = (0.5, 0.9)  # held-out accuracies whose first step is recorded: steps_to_50, steps_to_90


def curves_path(path: Path) -> Path:
    """The curves file beside a quality CSV: ``<stem>-curves.csv``."""
    return path.with_name(path.stem + "-curves.csv")


def config_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_row(plan, env, spec, seed: int, cfg, result, error: str = "", status: str = "ok") -> dict:
    """The row of one run of ``plan`` (``result`` None for a run that failed: ``status`` and ``error`` say how).
    A run whose held-out metrics are not finite (NaN, infinite) diverged: its own status, its metrics left
    empty, the error naming what was not finite; the summary leaves it out as it does a failed run."""
    described, m = cfg.task.describe(), (result.metrics if result else {})
    broken = [name for name, value in m.items() if isinstance(value, float) and not math.isfinite(value)]
    if broken and status == "ok":
        status, error = "diverged", f"the training diverged: {', '.join(f'{n}={m[n]}' for n in broken)}"
        m = {}

    def number(name: str) -> str:
        return f"{m[name]:.6g}" if name in m else ""

    cost = plan.step_cost(spec)
    return {
        "run_id": plan.run_id, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": described["task"], "variant": spec.name, "n_heads": spec.n_heads, "n_q_heads": spec.n_q_heads,
        "n_kv_heads": spec.n_kv_heads, "window": spec.window, "preset": cfg.preset.name,
        "d_model": cfg.preset.d_model, "n_layers": cfg.preset.n_layers, "vocab": described["vocab"],
        "seq_len": described["seq_len"], "pairs": described["pairs"], "data": described["data"],
        "tokenizer": described["tokenizer"], "pad_like_paper": described["pad_like_paper"],
        "eval_tokens": described["eval_tokens"], "batch": cfg.batch, "equal": plan.equal, "steps": cfg.steps,
        "tokens": cfg.steps * cfg.batch * cfg.task.seq_len, "lr": cfg.lr, "warmup": cfg.warmup, "seed": seed,
        "device": cfg.device, "dtype": cfg.dtype, "kernel": cfg.kernel, "val_loss": number("val_loss"),
        "perplexity": f"{math.exp(m['val_loss']):.6g}" if "val_loss" in m else "",
        "val_accuracy": number("val_accuracy"), "val_bpb": number("val_bpb"),
        "val_loss_padded": number("val_loss_padded"), "val_accuracy_padded": number("val_accuracy_padded"),
        "solved": result.solved if result and described["task"] == "mqar" else "",
        "steps_to_50": result.steps_to[MILESTONES[0]] if result else "",
        "steps_to_90": result.steps_to[MILESTONES[1]] if result else "",
        "params": result.params if result else "", "train_flops": cost.flops * cfg.steps,
        "flops_counted": plan.flops_counted, "eval_docs": described.get("eval_docs", ""),
        "step_ms": f"{result.step_ms:.6g}" if result else "",
        "tokens_per_s": f"{cfg.batch * cfg.task.seq_len / (result.step_ms / 1e3):.6g}" if result else "",
        "wall_s": f"{result.wall_s:.4g}" if result else "", "eval_s": f"{result.eval_s:.4g}" if result else "",
        "config": config_hash(cfg.key(spec, seed)), "gpu_name": env.gpu_name, "torch_version": env.torch_version,
        "sqabench_version": env.sqabench_version, "git_sha": env.git_sha, "cpu_model": env.cpu_model,
        "status": status, "error": error,
    }  # fmt: skip


# What any sqabench's quality CSV holds, enough to summarise it (an older file may lack the rest).
REQUIRED = ("run_id", "task", "variant", "n_heads", "n_q_heads", "n_kv_heads", "window", "seed", "steps",
            "val_loss", "val_accuracy", "step_ms", "train_flops", "status", "error")  # fmt: skip
STATUSES = ("ok", "oom", "error", "skipped", "diverged")
# Columns checked on every row: (column, kind) where kind is "count" (a whole number >= 0), or "number" (finite;
# required of an ok row, empty allowed otherwise).
CHECKED = (("seed", "count"), ("n_heads", "count"), ("n_q_heads", "count"), ("n_kv_heads", "count"),
           ("steps", "count"), ("val_loss", "number"), ("val_accuracy", "number"), ("step_ms", "number"))  # fmt: skip
CURVE_CHECKED = (("seed", "count"), ("step", "count"), ("val_loss", "number"), ("val_accuracy", "number"),
                 ("train_loss", "number"))  # fmt: skip


def read_rows(path: Path, columns: tuple[str, ...] = COLUMNS) -> list[dict]:
    """A quality CSV's rows (or its curves', with ``CURVE_COLUMNS``), each checked (``check_row``); a one-line
    ``ConfigError`` when it is not one, naming the line and the value."""
    curves = columns == CURVE_COLUMNS
    rows = read_csv(path, columns, "quality curves CSV" if curves else "quality CSV")
    for line, row in enumerate(rows, start=2):
        check_row(row, f"{path} line {line}", CURVE_CHECKED if curves else CHECKED, curves)
    return rows


def read_any(path: Path) -> tuple[list[dict], list[str]]:
    """A quality CSV of any sqabench version: (its rows, checked, and the columns of this version it lacks)."""
    rows = read_rows(path, REQUIRED)
    header = set(rows[0]) if rows else header_of(path)
    return rows, [column for column in COLUMNS if column not in header]


def check_row(row: dict, where: str, checked=CHECKED, curve: bool = False) -> None:
    """Refuse a row no run writes: an unknown status, a count that is not a whole number, a number that is
    not one, or that is missing, NaN or infinite in a finished run."""
    status = "ok" if curve else row.get("status", "")
    if status not in STATUSES:
        raise ConfigError(f"{where}: unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    for column, kind in checked:
        value = str(row.get(column, "") or "").strip()
        if kind == "count":
            if not value.isdigit():
                raise ConfigError(f"{where}: {column}={value or 'empty'} is not a whole number")
            continue
        if not value and status != "ok":
            continue
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{where}: {column}={value or 'empty'} is not a number") from None
        if not math.isfinite(number) and not curve:  # a diverged run's curve holds its NaN points, as trained
            raise ConfigError(f"{where}: {column}={value} in a finished run; it must be a finite number")


def is_quality_csv(path: Path) -> bool:
    """A quality CSV or its curves, told from a timing CSV by its columns."""
    header = header_of(path)
    return {"config", "val_loss", "seed"} <= header or set(CURVE_COLUMNS) <= header


def read_run(path: Path) -> tuple[list[dict], list[dict], Path]:
    """(rows, curve points, the rows' path) of a quality CSV of any version, given it or its curves file; the
    curve points are those of the rows' runs (a curve of a run the file does not hold is refused)."""
    if path.stem.endswith("-curves") and "config" not in header_of(path):
        path = path.with_name(path.stem.removesuffix("-curves") + path.suffix)
    rows, _ = read_any(path)
    curves = read_rows(curves_path(path), CURVE_COLUMNS) if curves_path(path).is_file() else []
    if not [r for r in rows if r["status"] == "ok"]:
        raise ConfigError(f"{path} has no finished run (status ok) to draw")
    runs = {(r["variant"], r["seed"]) for r in rows}
    stray = next((c for c in curves if (c["variant"], c["seed"]) not in runs), None)
    if stray is not None:
        raise ConfigError(f"{curves_path(path)} holds {stray['variant']} seed {stray['seed']}, a run {path} does "
                          "not hold: not the curves of this file")  # fmt: skip
    return rows, curves, path
