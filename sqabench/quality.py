"""``sqabench quality``: what each variant costs in model quality, trained on the same data with the noise
stated. This first part trains on MQAR (``sqabench.mqar``): every variant from scratch, the same seeds, for
each seed the same data order and held-out set, the same steps, schedule and optimizer.

A run is one (variant, seed): a row of ``<out>`` with its final held-out accuracy (per example, then the
mean), whether it solved the task (>= 0.99), the steps to 50% and 90%, the loss of the scored positions,
parameters, training FLOPs (the cost model's train step x steps), the median step time and tokens/s. The
evaluations go to ``<out stem>-curves.csv``. Across seeds: each variant's mean and its interval, its paired
difference from the baseline variant with a 95% interval, the minimum detectable effect, and a verdict
that says "no detectable difference at this budget" when the interval holds 0.
"""

from __future__ import annotations

import csv
import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqabench.environment import Environment, environment, host_label
from sqabench.errors import ConfigError
from sqabench.flops import step_cost
from sqabench.mqar import MQARSize
from sqabench.options import QualityOptions
from sqabench.presets import Preset
from sqabench.results import CsvWriter
from sqabench.stats import Interval, interval, minimum_detectable, paired, verdict
from sqabench.training import MILESTONES, TrainConfig, train
from sqabench.variants import VariantSpec, parse_variants

COLUMNS = (
    "run_id", "timestamp", "task", "variant", "n_heads", "n_q_heads", "n_kv_heads", "window", "preset", "d_model",
    "n_layers", "vocab", "seq_len", "pairs", "batch", "steps", "lr", "warmup", "seed", "device", "dtype", "kernel",
    "val_loss", "val_accuracy", "solved", "steps_to_50", "steps_to_90", "params", "train_flops", "step_ms",
    "tokens_per_s", "wall_s", "gpu_name", "torch_version", "sqabench_version", "git_sha", "cpu_model", "status",
    "error",
)  # fmt: skip
CURVE_COLUMNS = ("run_id", "variant", "seed", "step", "tokens", "train_loss", "val_loss", "val_accuracy", "lr")
# The paper's quality claims, as pairs (variant, against): judged on held-out accuracy here.
CLAIMS = (("sqa", "gqa", "SQA close to GQA"), ("ssqa", "gqa", "sSQA close to GQA"),
          ("xsqa", "mqa", "xSQA no worse than MQA"))  # fmt: skip


def paper_quality() -> list[dict[str, str]]:
    """The paper's Tables 1 (dense) and 2 (MoE), one row per (setting, variant), as shipped with their source."""
    from importlib import resources

    text = resources.files("sqabench").joinpath("data/paper_quality.csv").read_text()
    return list(csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#")))


@dataclass(frozen=True)
class Plan:
    cfg: TrainConfig
    specs: list[VariantSpec]
    seeds: list[int]
    path: Path
    baseline: str

    @property
    def curves_path(self) -> Path:
        return self.path.with_name(self.path.stem + "-curves.csv")


def resolve_quality(options: QualityOptions) -> tuple[Plan, Environment]:
    """Check every option and build the plan; raises ``ConfigError`` on the first bad one, before any file."""
    from sqabench.device import resolve_device
    from sqabench.request import prepare_output
    from sqabench.results import pick_baseline

    if options.task.lower() != "mqar":
        raise ConfigError(f"unknown task {options.task!r}; choose one of: mqar (text corpora are not built yet)")
    for name, value, lowest in (("--seeds", options.seeds, 1), ("--steps", options.steps, 1),
                                ("--batch", options.batch, 1), ("--eval-every", options.eval_every, 1),
                                ("--d-model", options.d_model, 2), ("--layers", options.layers, 1),
                                ("--heads", options.heads, 1)):  # fmt: skip
        if value < lowest:
            raise ConfigError(f"{name} {value} must be >= {lowest}")
    if not 0 < options.lr < 1:  # NaN too
        raise ConfigError(f"--lr {options.lr} must be in (0, 1)")
    if not 0 <= options.warmup < 1:
        raise ConfigError(f"--warmup {options.warmup} must be a fraction in [0, 1)")
    size = MQARSize(options.vocab, options.seq, options.pairs)
    if options.d_model % options.heads or (options.d_model // options.heads) % 2:
        raise ConfigError(f"--d-model {options.d_model} must be a multiple of --heads {options.heads} with an even "
                          "head size (RoPE rotates pairs)")  # fmt: skip
    device = resolve_device(options.device)
    preset = Preset(f"mqar-d{options.d_model}", d_model=options.d_model, n_layers=options.layers,
                    n_heads=options.heads, d_ff=2 * options.d_model, vocab_size=options.vocab,
                    source="sqabench quality")  # fmt: skip
    window = options.window if options.window is not None else max(1, options.seq // 4)
    specs = parse_variants(options.variants, options.heads, window)
    names = [spec.name for spec in specs]
    baseline = pick_baseline(options.baseline, names, "is not among the variants trained")
    if baseline is None:
        raise ConfigError(f"no baseline: pass --baseline, one of {', '.join(names)}")
    env = environment(device)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(options.out) if options.out else Path("results") / f"quality-{host_label(env)}-{stamp}.csv"
    if path.is_file() and path.stat().st_size > 0:
        raise ConfigError(f"--out {path} exists; choose another file (quality cannot --resume yet)")
    prepare_output(path, resume=False, explicit=bool(options.out))
    plan = Plan(TrainConfig(size, preset, options.steps, options.batch, options.lr, options.warmup,
                            eval_every=options.eval_every, device=str(device),
                            dtype="bf16" if device.type == "cuda" else "fp32"),
                specs, list(range(options.seeds)), path, baseline)  # fmt: skip
    if plan.curves_path.exists():
        raise ConfigError(f"{plan.curves_path} exists; choose another --out")
    return plan, env


def run_quality(plan: Plan, env: Environment, on_start: Callable[[str], None] = lambda label: None,
                on_eval: Callable[[str, dict], None] = lambda label, row: None,
                on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:  # fmt: skip
    """Train every (variant, seed) of the plan, seed-major (every variant of a seed, then the next seed), and
    write each row as it finishes."""
    cfg, run_id = plan.cfg, uuid.uuid4().hex[:12]
    rows_out, curves_out = CsvWriter(plan.path, COLUMNS), CsvWriter(plan.curves_path, CURVE_COLUMNS)
    rows = []
    for seed in plan.seeds:
        for spec in plan.specs:
            label = f"{spec.name} seed {seed}"
            on_start(label)

            def heard(point: dict, spec=spec, seed=seed, label=label) -> None:
                curves_out.write({"run_id": run_id, "variant": spec.name, "seed": seed, **point})
                on_eval(label, point)

            result = train(cfg, spec, seed, on_eval=heard)
            cost = step_cost(spec, cfg.preset, cfg.batch, cfg.task.seq_len, True, "train", cfg.dtype)
            row = {
                "run_id": run_id, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "task": "mqar", "variant": spec.name, "n_heads": spec.n_heads, "n_q_heads": spec.n_q_heads,
                "n_kv_heads": spec.n_kv_heads, "window": spec.window, "preset": cfg.preset.name,
                "d_model": cfg.preset.d_model, "n_layers": cfg.preset.n_layers, "vocab": cfg.task.vocab,
                "seq_len": cfg.task.seq_len, "pairs": cfg.task.pairs, "batch": cfg.batch, "steps": cfg.steps,
                "lr": cfg.lr, "warmup": cfg.warmup, "seed": seed, "device": cfg.device, "dtype": cfg.dtype,
                "kernel": cfg.kernel, "val_loss": f"{result.val_loss:.6g}",
                "val_accuracy": f"{result.val_accuracy:.6g}",
                "solved": result.solved, "steps_to_50": result.steps_to[MILESTONES[0]],
                "steps_to_90": result.steps_to[MILESTONES[1]], "params": result.params,
                "train_flops": cost.flops * cfg.steps, "step_ms": f"{result.step_ms:.6g}",
                "tokens_per_s": f"{cfg.batch * cfg.task.seq_len / (result.step_ms / 1e3):.6g}",
                "wall_s": f"{result.wall_s:.4g}", "gpu_name": env.gpu_name, "torch_version": env.torch_version,
                "sqabench_version": env.sqabench_version, "git_sha": env.git_sha, "cpu_model": env.cpu_model,
                "status": "ok", "error": "",
            }  # fmt: skip
            rows_out.write(row)
            rows.append(row)
            on_row(row)
    return rows


@dataclass(frozen=True)
class Summary:
    variant: str
    heads: str  # Hq/Hkv[@W]
    accuracy: Interval
    solved: int
    seeds: int
    steps_to_90: list[int | None]
    step_ms: float
    diff: Interval | None  # against the baseline, paired by seed
    mde: float | None
    verdict: str


def summarise(rows: list[dict], baseline: str) -> list[Summary]:
    """Per variant, over seeds: accuracy with its interval, and its paired difference from ``baseline``."""
    by_variant: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_variant.setdefault(str(row["variant"]), {})[int(row["seed"])] = row
    base = by_variant.get(baseline, {})
    out = []
    for variant, runs in by_variant.items():
        seeds = sorted(runs)
        accuracy = [float(runs[s]["val_accuracy"]) for s in seeds]
        diff = mde = None
        said = "the baseline" if variant == baseline else "no baseline run to pair with"
        common = [s for s in seeds if s in base]
        if variant != baseline and common:
            diff = paired([float(runs[s]["val_accuracy"]) for s in common],
                          [float(base[s]["val_accuracy"]) for s in common])  # fmt: skip
            mde = minimum_detectable(diff.sd, diff.n)
            said = verdict(diff, higher_is_better=True, what="accuracy")
        steps = [int(runs[s]["steps_to_90"]) if str(runs[s]["steps_to_90"]) not in ("", "None") else None
                 for s in seeds]  # fmt: skip
        first = runs[seeds[0]]
        heads = f"{first['n_q_heads']}/{first['n_kv_heads']}" + (f"@{first['window']}" if first["window"] else "")
        out.append(Summary(variant, heads, interval(accuracy), sum(str(runs[s]["solved"]) == "True" for s in seeds),
                           len(seeds), steps, statistics.median(float(runs[s]["step_ms"]) for s in seeds),
                           diff, mde, said))  # fmt: skip
    return out


def claims(rows: list[dict]) -> list[tuple[str, str]]:
    """Each of the paper's quality claims that this run can judge, with its verdict on paired accuracy."""
    summaries, present = {}, {str(r["variant"]) for r in rows}
    for variant, against, text in CLAIMS:
        if {variant, against} <= present:
            (s,) = [x for x in summarise(rows, against) if x.variant == variant]
            summaries[text] = s.verdict if s.diff is not None else "not paired"
    return list(summaries.items())
