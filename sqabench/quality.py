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
import hashlib
import json
import math
import os
import re
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from sqabench.training import MILESTONES, Checkpoint, TrainConfig, train
from sqabench.variants import VariantSpec, parse_variants

COLUMNS = (
    "run_id", "timestamp", "task", "variant", "n_heads", "n_q_heads", "n_kv_heads", "window", "preset", "d_model",
    "n_layers", "vocab", "seq_len", "pairs", "data", "tokenizer", "pad_like_paper", "eval_tokens", "batch", "equal",
    "steps",
    "tokens", "lr", "warmup", "seed", "device", "dtype", "kernel", "val_loss", "perplexity", "val_accuracy",
    "val_bpb", "val_loss_padded", "val_accuracy_padded", "solved", "steps_to_50", "steps_to_90", "params",
    "train_flops", "step_ms", "tokens_per_s", "wall_s", "eval_s", "config", "gpu_name", "torch_version",
    "sqabench_version", "git_sha", "cpu_model", "status", "error",
)  # fmt: skip
CURVE_COLUMNS = ("run_id", "variant", "seed", "step", "tokens", "train_loss", "val_loss", "val_accuracy", "val_bpb",
                 "val_loss_padded", "val_accuracy_padded", "lr")  # fmt: skip
# The paper's quality claims, as pairs (variant, against): judged on held-out accuracy (MQAR) or loss (text).
CLAIMS = (("sqa", "gqa", "SQA close to GQA"), ("ssqa", "gqa", "sSQA close to GQA"),
          ("xsqa", "mqa", "xSQA no worse than MQA"))  # fmt: skip
EQUAL = ("tokens", "flops")
DTYPES = ("fp32", "bf16")
TASKS = ("mqar", "text")
DEFAULTS = {"mqar": {"seq": 32, "vocab": 64, "batch": 64, "eval_every": 50},
            "text": {"seq": 128, "vocab": None, "batch": 8, "eval_every": 100}}  # fmt: skip
EVAL_TOKENS = {"cpu": 8_192, "cuda": 262_144}  # text: held-out tokens each evaluation scores, by default
GPU_BUDGET_S = 600.0  # on a GPU with no --steps, --tokens or --budget: the steps that fit 10 minutes
TINY = {"d_model": 64, "layers": 2, "heads": 8}
DEFAULT_STEPS = 400


def paper_quality() -> list[dict[str, str]]:
    """The paper's Tables 1 (dense) and 2 (MoE), one row per (setting, variant), as shipped with their source."""
    from importlib import resources

    text = resources.files("sqabench").joinpath("data/paper_quality.csv").read_text()
    return list(csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#")))


@dataclass(frozen=True)
class Plan:
    cfg: TrainConfig  # the baseline's steps; each variant's own are in ``steps``
    specs: list[VariantSpec]
    seeds: list[int]
    path: Path
    baseline: str
    equal: str = "tokens"
    steps: dict[str, int] = field(default_factory=dict)  # per variant
    checkpoint_every_s: float = 300.0
    done: dict[tuple[str, int], dict] = field(default_factory=dict)  # finished rows kept by --resume
    run_id: str = ""
    budget_s: float | None = None  # --budget: the steps are sized to it by a probe (``fit_budget``)

    @property
    def curves_path(self) -> Path:
        return self.path.with_name(self.path.stem + "-curves.csv")

    @property
    def checkpoints(self) -> Path:
        return self.path.with_name(self.path.stem + "-checkpoints")

    def config(self, spec: VariantSpec) -> TrainConfig:
        return replace(self.cfg, steps=self.steps.get(spec.name, self.cfg.steps))

    def checkpoint(self, spec: VariantSpec, seed: int) -> Checkpoint:
        return Checkpoint(self.checkpoints / f"{spec.name}-seed{seed}.pt", self.config(spec).key(spec, seed),
                          self.checkpoint_every_s)  # fmt: skip

    def runs(self) -> list[tuple[VariantSpec, int]]:
        """Every (variant, seed) still to train, seed-major (every variant of a seed, then the next seed)."""
        return [(spec, seed) for seed in self.seeds for spec in self.specs if (spec.name, seed) not in self.done]

    def step_cost(self, spec: VariantSpec):
        cfg = self.cfg
        return step_cost(spec, cfg.preset, cfg.batch, cfg.task.seq_len, True, "train", cfg.dtype)


def config_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _count(text: str, option: str) -> int:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmg]?)\s*", text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{option} {text!r} is not a positive count; use e.g. 2000000, 500k, 2M, 1.5G")
    return round(float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)])


def equal_steps(plan_cfg: TrainConfig, specs: list[VariantSpec], baseline: str, equal: str, cost) -> dict[str, int]:
    """Each variant's steps: the baseline's under ``tokens``; under ``flops`` as many as the baseline's training
    FLOPs buy at the variant's own cost per step (the cost model's), rounded down."""
    if equal == "tokens":
        return {spec.name: plan_cfg.steps for spec in specs}
    (base,) = [spec for spec in specs if spec.name == baseline]
    budget = cost(base).flops * plan_cfg.steps
    return {spec.name: max(1, int(budget // cost(spec).flops)) for spec in specs}


def _model(options: QualityOptions, vocab: int) -> Preset:
    from sqabench.presets import get_preset

    given = [f"--{name.replace('_', '-')}" for name in TINY if getattr(options, name) is not None]
    if options.preset is not None:
        if given:
            raise ConfigError(f"--preset {options.preset} sets the model; leave out {', '.join(given)}")
        return replace(get_preset(options.preset), vocab_size=vocab)
    d_model, layers, heads = (getattr(options, name) if getattr(options, name) is not None else TINY[name]
                              for name in TINY)  # fmt: skip
    for name, value, lowest in (("--d-model", d_model, 2), ("--layers", layers, 1), ("--heads", heads, 1)):
        if value < lowest:
            raise ConfigError(f"{name} {value} must be >= {lowest}")
    if d_model % heads or (d_model // heads) % 2:
        raise ConfigError(f"--d-model {d_model} must be a multiple of --heads {heads} with an even head size (RoPE "
                          "rotates pairs)")  # fmt: skip
    return Preset(f"tiny-d{d_model}", d_model=d_model, n_layers=layers, n_heads=heads, d_ff=2 * d_model,
                  vocab_size=vocab, source="sqabench quality")  # fmt: skip


def _task(options: QualityOptions, device_type: str, say):
    from sqabench.tasks import MQARTask, text_task

    name = "text" if options.data is not None and options.task.lower() == "mqar" else options.task.lower()
    if name not in TASKS:
        raise ConfigError(f"unknown task {options.task!r}; choose one of: {', '.join(TASKS)}")
    seq = options.seq if options.seq is not None else DEFAULTS[name]["seq"]
    if seq < 2:
        raise ConfigError(f"--seq {seq} must be >= 2")
    if name == "mqar":
        for flag, used in (("--tokenizer", options.tokenizer is not None), ("--held-out", options.held_out is not None),
                           ("--pad-like-paper", options.pad_like_paper)):  # fmt: skip
            if used:
                raise ConfigError(f"{flag} is for --task text (with --data); MQAR has its own tokens")
        if options.eval_tokens is not None:
            raise ConfigError("--eval-tokens is for --task text; MQAR scores its 256 held-out examples")
        vocab = options.vocab if options.vocab is not None else DEFAULTS["mqar"]["vocab"]
        return MQARTask(MQARSize(vocab, seq, options.pairs))
    if options.data is None:
        raise ConfigError("--task text needs --data PATH: a UTF-8 .txt, a folder of .txt, or .jsonl/.parquet")
    if options.held_out is not None and not 0 < options.held_out < 1:
        raise ConfigError(f"--held-out {options.held_out} must be a fraction in (0, 1)")
    eval_tokens = options.eval_tokens if options.eval_tokens is not None else EVAL_TOKENS.get(device_type, 8_192)
    if eval_tokens < 1:
        raise ConfigError(f"--eval-tokens {eval_tokens} must be >= 1")
    return text_task(Path(options.data), options.tokenizer and options.tokenizer.lower(), options.vocab, seq,
                     options.held_out, options.pad_like_paper, eval_tokens, say)  # fmt: skip


def resolve_quality(options: QualityOptions, say=lambda text: None) -> tuple[Plan, Environment]:
    """Check every option and build the plan; raises ``ConfigError`` on the first bad one, before any file."""
    from sqabench.device import resolve_device
    from sqabench.request import parse_duration, prepare_output
    from sqabench.results import pick_baseline

    for name, value, lowest in (("--seeds", options.seeds, 1), ("--steps", options.steps, 1),
                                ("--batch", options.batch, 1), ("--eval-every", options.eval_every, 1)):  # fmt: skip
        if value is not None and value < lowest:
            raise ConfigError(f"{name} {value} must be >= {lowest}")
    if not 0 < options.lr < 1:  # NaN too
        raise ConfigError(f"--lr {options.lr} must be in (0, 1)")
    if not 0 <= options.warmup < 1:
        raise ConfigError(f"--warmup {options.warmup} must be a fraction in [0, 1)")
    if not 0 <= options.weight_decay < 1:
        raise ConfigError(f"--weight-decay {options.weight_decay} must be in [0, 1)")
    if options.equal.lower() not in EQUAL:
        raise ConfigError(f"--equal {options.equal!r}: choose one of: {', '.join(EQUAL)}")
    if not options.checkpoint_every > 0:
        raise ConfigError(f"--checkpoint-every {options.checkpoint_every} must be > 0 minutes")
    asked = [flag for flag, value in (("--steps", options.steps), ("--tokens", options.tokens),
                                      ("--budget", options.budget)) if value is not None]  # fmt: skip
    if len(asked) > 1:
        raise ConfigError(f"{' and '.join(asked)} each set the steps; give one of them")
    budget_s = parse_duration(options.budget, "--budget") if options.budget is not None else None
    tokens = _count(options.tokens, "--tokens") if options.tokens is not None else None
    device = resolve_device(options.device)
    budget_s = default_budget(device.type, bool(asked), options.resume) if budget_s is None else budget_s
    dtype = _dtype(options.dtype, device.type)
    env = environment(device)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(options.out) if options.out else Path("results") / f"quality-{host_label(env)}-{stamp}.csv"
    if options.resume and not options.out:
        raise ConfigError("--resume needs --out FILE: the quality CSV to continue")
    task = _task(options, device.type, say)
    preset = _model(options, task.vocab)
    window = options.window if options.window is not None else max(1, task.seq_len // 4)
    specs = parse_variants(options.variants, preset.n_heads, window)
    names = [spec.name for spec in specs]
    baseline = pick_baseline(options.baseline, names, "is not among the variants trained")
    if baseline is None:
        raise ConfigError(f"no baseline: pass --baseline, one of {', '.join(names)}")
    batch = options.batch if options.batch is not None else DEFAULTS[task.name]["batch"]
    eval_every = options.eval_every if options.eval_every is not None else DEFAULTS[task.name]["eval_every"]
    per_step = batch * task.seq_len
    steps = -(-tokens // per_step) if tokens is not None else options.steps or DEFAULT_STEPS
    cfg = TrainConfig(task, preset, steps, batch, options.lr, options.warmup, options.weight_decay,
                      eval_every=eval_every, device=str(device), dtype=dtype)
    plan = Plan(cfg, specs, list(range(options.seeds)), path, baseline, options.equal.lower(),
                checkpoint_every_s=60 * options.checkpoint_every)  # fmt: skip
    plan = replace(plan, steps=equal_steps(cfg, specs, baseline, plan.equal, plan.step_cost))
    if budget_s is not None:
        if options.resume:
            raise ConfigError("--resume continues with the steps its rows recorded: leave out --budget and pass "
                              "the --steps (or --tokens) of the run being continued")  # fmt: skip
        plan = replace(plan, budget_s=budget_s)
    if options.dry_run:
        return plan, env
    if options.resume:
        return _resume(plan), env
    for existing in (plan.path, plan.curves_path, plan.checkpoints):
        if existing.exists():
            raise ConfigError(f"{existing} exists: continue that run with --resume --out {plan.path}, or choose "
                              "another --out")  # fmt: skip
    prepare_output(path, resume=False, explicit=bool(options.out))
    return plan, env


def default_budget(device_type: str, steps_given: bool, resume: bool) -> float | None:
    """The budget when none of --steps, --tokens, --budget is given: a GPU's steps fit 10 minutes (a resumed run
    keeps the steps its rows record); a CPU's are ``DEFAULT_STEPS``."""
    return GPU_BUDGET_S if device_type == "cuda" and not steps_given and not resume else None


def _dtype(asked: str | None, device_type: str) -> str:
    if asked is None:
        return "bf16" if device_type == "cuda" else "fp32"
    if asked.lower() not in DTYPES:
        raise ConfigError(f"--dtype {asked!r}: choose one of: {', '.join(DTYPES)} (fp16 training would need loss "
                          "scaling, which sqabench quality does not do)")  # fmt: skip
    return asked.lower()


def _resume(plan: Plan) -> Plan:
    """The plan less the runs ``plan.path`` already holds (each checked against this configuration); the
    curves file keeps only the finished runs' points (a checkpointed run writes its own again)."""
    for path in (plan.path, plan.curves_path):
        if path.exists() and not (path.is_file() and os.access(path, os.W_OK)):
            raise ConfigError(f"--resume: {path} is not a writable file")
    rows = read_quality(plan.path) if plan.path.exists() else []
    if not rows and not plan.checkpoints.exists():
        raise ConfigError(f"--resume: nothing to continue at {plan.path} (no rows, no checkpoints); leave out "
                          "--resume to start it")  # fmt: skip
    by_name = {spec.name: spec for spec in plan.specs}
    done = {}
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
            done[(row["variant"], seed)] = row
    curves = read_quality(plan.curves_path, CURVE_COLUMNS) if plan.curves_path.exists() else []
    kept = [c for c in curves if (c["variant"], int(c["seed"])) in done]
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
    if len(kept) != len(curves):
        _rewrite(plan.curves_path, CURVE_COLUMNS, kept)
    # failed rows are trained again: the file keeps only what is ok
    if any(row["status"] != "ok" for row in rows):
        _rewrite(plan.path, COLUMNS, [row for row in rows if row["status"] == "ok"])
    return replace(plan, done=done, run_id=run_id)


def _rewrite(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    scratch = path.with_name(path.name + ".tmp")
    with scratch.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(scratch, path)


def read_quality(path: Path, columns: tuple[str, ...] = COLUMNS) -> list[dict]:
    """A quality CSV's rows; one-line ``ConfigError`` when it is not one."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path} cannot be read as a quality CSV ({error})") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(f"{path} is not a quality CSV of this version (missing: {', '.join(missing[:4])}"
                          f"{' ...' if len(missing) > 4 else ''})")  # fmt: skip
    return rows


def _row(plan: Plan, env: Environment, spec: VariantSpec, seed: int, cfg: TrainConfig, result, error: str = "",
         status: str = "ok") -> dict:  # fmt: skip
    task, m = cfg.task.describe(), (result.metrics if result else {})

    def number(name: str) -> str:
        return f"{m[name]:.6g}" if name in m else ""

    cost = plan.step_cost(spec)
    return {
        "run_id": plan.run_id, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": task["task"], "variant": spec.name, "n_heads": spec.n_heads, "n_q_heads": spec.n_q_heads,
        "n_kv_heads": spec.n_kv_heads, "window": spec.window, "preset": cfg.preset.name,
        "d_model": cfg.preset.d_model, "n_layers": cfg.preset.n_layers, "vocab": task["vocab"],
        "seq_len": task["seq_len"], "pairs": task["pairs"], "data": task["data"], "tokenizer": task["tokenizer"],
        "pad_like_paper": task["pad_like_paper"], "eval_tokens": task["eval_tokens"], "batch": cfg.batch,
        "equal": plan.equal, "steps": cfg.steps,
        "tokens": cfg.steps * cfg.batch * cfg.task.seq_len, "lr": cfg.lr, "warmup": cfg.warmup, "seed": seed,
        "device": cfg.device, "dtype": cfg.dtype, "kernel": cfg.kernel, "val_loss": number("val_loss"),
        "perplexity": f"{math.exp(m['val_loss']):.6g}" if "val_loss" in m else "",
        "val_accuracy": number("val_accuracy"), "val_bpb": number("val_bpb"),
        "val_loss_padded": number("val_loss_padded"), "val_accuracy_padded": number("val_accuracy_padded"),
        "solved": result.solved if result and task["task"] == "mqar" else "",
        "steps_to_50": result.steps_to[MILESTONES[0]] if result else "",
        "steps_to_90": result.steps_to[MILESTONES[1]] if result else "",
        "params": result.params if result else "", "train_flops": cost.flops * cfg.steps,
        "step_ms": f"{result.step_ms:.6g}" if result else "",
        "tokens_per_s": f"{cfg.batch * cfg.task.seq_len / (result.step_ms / 1e3):.6g}" if result else "",
        "wall_s": f"{result.wall_s:.4g}" if result else "", "eval_s": f"{result.eval_s:.4g}" if result else "",
        "config": config_hash(cfg.key(spec, seed)), "gpu_name": env.gpu_name, "torch_version": env.torch_version,
        "sqabench_version": env.sqabench_version, "git_sha": env.git_sha, "cpu_model": env.cpu_model,
        "status": status, "error": error,
    }  # fmt: skip


@dataclass(frozen=True)
class Probe:
    """One variant's costs, measured on a short run of its real model and data: seconds."""

    build_s: float  # the model, the held-out set, the first step's warm-up beyond a steady one
    step_s: float
    eval_s: float


PROBE_STEPS = 3


def probe(plan: Plan, on_variant: Callable[[str], None] = lambda name: None) -> dict[str, Probe]:
    """Each variant's build, step and evaluation times, from ``PROBE_STEPS`` steps and one evaluation at seed 0."""
    found = {}
    for spec in plan.specs:
        on_variant(spec.name)
        cfg = replace(plan.cfg, steps=PROBE_STEPS, eval_every=PROBE_STEPS)
        started = time.perf_counter()
        result = train(cfg, spec, 0)
        wall = time.perf_counter() - started
        step = result.step_ms / 1e3
        found[spec.name] = Probe(max(0.0, wall - PROBE_STEPS * step - result.eval_s), step, result.eval_s)
    return found


def estimate_s(plan: Plan, probes: dict[str, Probe]) -> float:
    """Seconds the plan's runs still to train will take at the probed costs."""
    total = 0.0
    for spec, _seed in plan.runs():
        p, steps = probes[spec.name], plan.config(spec).steps
        total += p.build_s + steps * p.step_s + -(-steps // plan.cfg.eval_every) * p.eval_s
    return total


def fit_budget(plan: Plan, probes: dict[str, Probe], spent_s: float) -> Plan:
    """The plan with the baseline's steps set so that every run fits ``plan.budget_s`` less ``spent_s``; the
    variants' steps follow from it as ``--equal`` says."""
    left = plan.budget_s - spent_s
    one = _with_steps(plan, 1000)
    fixed = sum(probes[spec.name].build_s for spec, _ in plan.runs())
    per_base_step = sum(one.steps[spec.name] / 1000 * (probes[spec.name].step_s + probes[spec.name].eval_s
                                                       / plan.cfg.eval_every) for spec, _ in plan.runs())  # fmt: skip
    steps = int((left - fixed) // per_base_step) if per_base_step > 0 else 0
    while steps >= 1 and estimate_s(_with_steps(plan, steps), probes) > left:  # evaluations come whole
        steps -= 1
    if steps < 1:
        need = fixed + per_base_step + spent_s
        raise ConfigError(f"--budget {plan.budget_s:.0f} s is too short: one step of every run needs about "
                          f"{need:.0f} s here; give a longer --budget or fewer --variants or --seeds")  # fmt: skip
    return _with_steps(plan, steps)


def _with_steps(plan: Plan, steps: int) -> Plan:
    cfg = replace(plan.cfg, steps=steps)
    return replace(plan, cfg=cfg, steps=equal_steps(cfg, plan.specs, plan.baseline, plan.equal, plan.step_cost))


def run_quality(plan: Plan, env: Environment, on_start: Callable[[str, int], None] = lambda label, steps: None,
                on_eval: Callable[[str, dict], None] = lambda label, row: None,
                on_row: Callable[[dict], None] = lambda row: None,
                on_step: Callable[[int], None] = lambda step: None) -> list[dict]:  # fmt: skip
    """Train every (variant, seed) still to train, seed-major, and write each row as it finishes; an out-of-memory
    or failed run is a row of its own (``oom`` / ``error``) and the next goes on. Returns every row, kept ones too."""
    from sqabench.failures import MEASURE_ERRORS, classify

    plan = plan if plan.run_id else replace(plan, run_id=uuid.uuid4().hex[:12])
    rows_out, curves_out = CsvWriter(plan.path, COLUMNS), CsvWriter(plan.curves_path, CURVE_COLUMNS)
    rows = list(plan.done.values())
    for spec, seed in plan.runs():
        label, cfg = f"{spec.name} seed {seed}", plan.config(spec)
        on_start(label, cfg.steps)

        def heard(point: dict, spec=spec, seed=seed, label=label) -> None:
            curves_out.write({"run_id": plan.run_id, "variant": spec.name, "seed": seed, **point})
            on_eval(label, point)

        checkpoint = plan.checkpoint(spec, seed)
        try:
            result = train(cfg, spec, seed, on_eval=heard, on_step=on_step, checkpoint=checkpoint)
            row = _row(plan, env, spec, seed, cfg, result)
        except MEASURE_ERRORS as error:
            outcome = classify(error)
            row = _row(plan, env, spec, seed, cfg, None, outcome.error, outcome.status)
        rows_out.write(row)
        checkpoint.path.unlink(missing_ok=True)
        rows.append(row)
        on_row(row)
    if plan.checkpoints.is_dir() and not any(plan.checkpoints.iterdir()):
        plan.checkpoints.rmdir()
    return rows


# What a task's runs are judged on: (column, higher is better, its name in a verdict).
METRICS = {"mqar": ("val_accuracy", True, "accuracy"), "text": ("val_loss", False, "val loss")}
EXTRAS = {"val_bpb": "bits/byte", "val_accuracy": "accuracy", "val_loss_padded": "padded loss",
          "val_accuracy_padded": "padded accuracy"}  # fmt: skip


@dataclass(frozen=True)
class Summary:
    variant: str
    heads: str  # Hq/Hkv[@W]
    metric: str  # the column judged: val_accuracy (MQAR) or val_loss (text)
    value: Interval
    solved: int | None  # MQAR only
    seeds: int
    steps_to_90: list[int | None]
    step_ms: float
    diff: Interval | None  # against the baseline, paired by seed
    mde: float | None
    verdict: str
    extras: dict[str, Interval] = field(default_factory=dict)  # text: bits/byte, accuracy, the padded numbers
    steps: int = 0
    train_flops: float = 0.0


def metric_of(rows: list[dict]) -> tuple[str, bool, str]:
    tasks = {str(r.get("task") or "mqar") for r in rows}
    if len(tasks) != 1:
        raise ConfigError(f"rows of more than one task ({', '.join(sorted(tasks))}) cannot be compared")
    return METRICS[tasks.pop()]


def summarise(rows: list[dict], baseline: str) -> list[Summary]:
    """Per variant, over seeds: the task's metric with its interval, and its paired difference from ``baseline``
    (by seed). Rows that did not finish (``oom``, ``error``) are left out."""
    rows = [row for row in rows if row.get("status", "ok") == "ok"]
    if not rows:
        return []
    metric, higher, what = metric_of(rows)
    by_variant: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_variant.setdefault(str(row["variant"]), {})[int(row["seed"])] = row
    base = by_variant.get(baseline, {})
    out = []
    for variant, runs in by_variant.items():
        seeds = sorted(runs)
        diff = mde = None
        said = "the baseline" if variant == baseline else "no baseline run to pair with"
        common = [s for s in seeds if s in base]
        if variant != baseline and common:
            diff = paired([float(runs[s][metric]) for s in common], [float(base[s][metric]) for s in common])
            mde = minimum_detectable(diff.sd, diff.n)
            said = verdict(diff, higher_is_better=higher, what=what)
        steps = [int(runs[s]["steps_to_90"]) if str(runs[s]["steps_to_90"]) not in ("", "None") else None
                 for s in seeds]  # fmt: skip
        first = runs[seeds[0]]
        heads = f"{first['n_q_heads']}/{first['n_kv_heads']}" + (f"@{first['window']}" if first["window"] else "")
        extras = {name: interval([float(runs[s][column]) for s in seeds]) for column, name in EXTRAS.items()
                  if column != metric and all(str(runs[s].get(column, "")) not in ("", "None") for s in seeds)
                  and (column != "val_accuracy" or metric != "val_accuracy")}  # fmt: skip
        solved = sum(str(runs[s]["solved"]) == "True" for s in seeds) if metric == "val_accuracy" else None
        out.append(Summary(variant, heads, metric, interval([float(runs[s][metric]) for s in seeds]), solved,
                           len(seeds), steps, statistics.median(float(runs[s]["step_ms"]) for s in seeds),
                           diff, mde, said, extras, int(first.get("steps") or 0), float(first.get("train_flops") or 0)))
    return out


def claims(rows: list[dict]) -> list[tuple[str, str]]:
    """Each of the paper's quality claims that this run can judge, with its verdict on the paired metric."""
    summaries, present = {}, {str(r["variant"]) for r in rows if r.get("status", "ok") == "ok"}
    for variant, against, text in CLAIMS:
        if {variant, against} <= present:
            (s,) = [x for x in summarise(rows, against) if x.variant == variant]
            summaries[text] = s.verdict if s.diff is not None else "not paired"
    return list(summaries.items())
