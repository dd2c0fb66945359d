"""``sqabench quality``'s plan: every option checked and turned into what will be trained, before any file is
touched. Every variant from scratch, the same seeds, for each seed the same data order and held-out set, the
same schedule and optimizer; the steps equal in tokens, or in training FLOPs with ``--equal flops``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from sqabench.environment import Environment, environment, host_label
from sqabench.errors import ConfigError
from sqabench.files import check_output
from sqabench.flops import step_cost
from sqabench.options import check_options
from sqabench.presets import Preset
from sqabench.quality.mqar import MQARSize
from sqabench.quality.options import (
    DEFAULT_PAIRS,
    DEFAULT_STEPS,
    EVAL_TOKENS,
    GPU_BUDGET_S,
    TASK_DEFAULTS,
    TINY,
    QualityOptions,
)  # fmt: skip
from sqabench.quality.rows import curves_path
from sqabench.quality.train import Checkpoint, TrainConfig
from sqabench.units import parse_duration, parse_length, parse_size
from sqabench.variants import VariantSpec, check_window, parse_variants, pick_baseline


@dataclass(frozen=True)
class Plan:
    cfg: TrainConfig  # the baseline's steps; each variant's own are in ``steps_by_variant``
    specs: list[VariantSpec]
    seeds: list[int]
    path: Path
    baseline: str
    equal: str = "tokens"
    steps_by_variant: dict[str, int] = field(default_factory=dict)
    checkpoint_every_s: float = 300.0
    kept: dict[tuple[str, int], dict] = field(default_factory=dict)  # (variant, seed) -> its row kept by --resume
    run_id: str = ""
    budget_s: float | None = None  # --budget: the steps are sized to it by a probe (``quality.budget``)
    margin: float | None = None  # --margin: the closeness claims' (None: the task's default)
    also: tuple[str, ...] = ()  # --also-against: second references, in the run's family
    confirm: Path | None = None  # --confirm: the first run's file, whose findings these fresh seeds test
    shard: tuple[int, int] | None = None  # --shard K/N: only the K-th of N shares of the runs (``share``)

    @property
    def curves_path(self) -> Path:
        return curves_path(self.path)

    @property
    def checkpoints(self) -> Path:
        return self.path.with_name(self.path.stem + "-checkpoints")

    def config(self, spec: VariantSpec) -> TrainConfig:
        return replace(self.cfg, steps=self.steps_by_variant.get(spec.name, self.cfg.steps))

    def checkpoint(self, spec: VariantSpec, seed: int) -> Checkpoint:
        return Checkpoint(self.checkpoints / f"{spec.name}-seed{seed}.pt", self.config(spec).key(spec, seed),
                          self.checkpoint_every_s)  # fmt: skip

    def runs(self) -> list[tuple[VariantSpec, int]]:
        """Every (variant, seed) still to train, seed-major (every variant of a seed, then the next seed); with
        ``shard``, only its share of them (``share``)."""
        every = [(spec, seed) for seed in self.seeds for spec in self.specs]
        if self.shard is not None:
            mine = {(spec.name, seed) for spec, seed in share(self, self.shard[1])[self.shard[0] - 1]}
            every = [(spec, seed) for spec, seed in every if (spec.name, seed) in mine]
        return [(spec, seed) for spec, seed in every if (spec.name, seed) not in self.kept]

    def run_cost(self, spec: VariantSpec) -> float:
        """A run's training FLOPs by the cost model: what the shares balance (the same on every machine)."""
        return self.step_cost(spec).flops * self.config(spec).steps

    @property
    def flops_counted(self) -> str:
        """What a windowed variant's step is charged: ``dense`` when the training kernel takes the window as a
        mask (sdpa: it computes the full square, then masks it), ``window`` when it skips what lies outside."""
        return "window" if self.cfg.kernel == "flex" else "dense"

    def step_cost(self, spec: VariantSpec):
        """A training step's cost by the cost model, as the kernel computes it (``flops_counted``)."""
        cfg = self.cfg
        counted = spec if self.flops_counted == "window" else replace(spec, window=None)
        return step_cost(counted, cfg.preset, cfg.batch, cfg.task.seq_len, True, "train", cfg.dtype)

    def with_steps(self, steps: int) -> "Plan":
        """This plan with the baseline's steps set to ``steps``, every variant's following from it."""
        cfg = replace(self.cfg, steps=steps)
        return replace(self, cfg=cfg, steps_by_variant=equal_steps(cfg, self.specs, self.baseline, self.equal,
                                                                   self.step_cost))  # fmt: skip


def share(plan: Plan, parts: int) -> list[list[tuple[VariantSpec, int]]]:
    """Every (variant, seed) of ``plan`` in ``parts`` shares of about equal cost: the costliest run first, each to
    the share with the least so far (longest-processing-time first), by the cost model's FLOPs, so that every
    machine computes the same shares whatever its speed; ties go by seed, then variant. The rule ``--shard``
    uses (and ranks will)."""
    runs = sorted(((spec, seed) for seed in plan.seeds for spec in plan.specs),
                  key=lambda run: (-plan.run_cost(run[0]), run[1], run[0].name))  # fmt: skip
    shares: list[list[tuple[VariantSpec, int]]] = [[] for _ in range(parts)]
    load = [0.0] * parts
    for spec, seed in runs:
        least = min(range(parts), key=lambda i: (load[i], i))
        shares[least].append((spec, seed))
        load[least] += plan.run_cost(spec)
    return shares


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``--shard K/N``: the K-th (1 to N) of N shares."""
    if text is None:
        return None
    k, _, n = str(text).partition("/")
    if not (k.strip().isdigit() and n.strip().isdigit()) or not 1 <= int(k) <= int(n):
        raise ConfigError(f"--shard {text}: give K/N, the K-th of N shares with 1 <= K <= N, e.g. 1/4")
    return int(k), int(n)


def equal_steps(cfg: TrainConfig, specs: list[VariantSpec], baseline: str, equal: str, cost) -> dict[str, int]:
    """Each variant's steps: the baseline's under ``tokens``; under ``flops`` as many as the baseline's training
    FLOPs buy at the variant's own cost per step (the cost model's), rounded down."""
    if equal == "tokens":
        return {spec.name: cfg.steps for spec in specs}
    (base,) = [spec for spec in specs if spec.name == baseline]
    budget = cost(base).flops * cfg.steps
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
    if d_model % heads or (d_model // heads) % 2:
        raise ConfigError(f"--d-model {d_model} must be a multiple of --heads {heads} with an even head size (RoPE "
                          "rotates pairs)")  # fmt: skip
    return Preset(f"tiny-d{d_model}", d_model=d_model, n_layers=layers, n_heads=heads, d_ff=2 * d_model,
                  vocab_size=vocab, source="sqabench quality")  # fmt: skip


def _task(options: QualityOptions, device_type: str):
    from sqabench.quality.tasks import MQARTask, text_task

    name = "text" if options.data is not None and options.task.lower() == "mqar" else options.task.lower()
    seq = parse_length(options.seq, "--seq") if options.seq is not None else TASK_DEFAULTS[name]["seq"]
    if seq < 2:
        raise ConfigError(f"--seq {seq} must be >= 2")
    if name == "mqar":
        for flag, used in (("--tokenizer", options.tokenizer is not None), ("--held-out", options.held_out is not None),
                           ("--pad-like-paper", options.pad_like_paper)):  # fmt: skip
            if used:
                raise ConfigError(f"{flag} is for --task text (with --data); MQAR has its own tokens")
        if options.eval_tokens is not None:
            raise ConfigError("--eval-tokens is for --task text; MQAR scores its 256 held-out examples")
        vocab = options.vocab if options.vocab is not None else TASK_DEFAULTS["mqar"]["vocab"]
        return MQARTask(MQARSize(vocab, seq, DEFAULT_PAIRS if options.pairs is None else options.pairs))
    if options.pairs is not None:
        raise ConfigError("--pairs is for --task mqar (its key-value pairs); a text corpus has none")
    if options.data is None:
        raise ConfigError("--task text needs --data PATH: a UTF-8 .txt, a folder of .txt, or .jsonl/.parquet")
    eval_tokens = (parse_size(options.eval_tokens, "--eval-tokens", "size", "8192, 8k, 256k")
                   if options.eval_tokens is not None else EVAL_TOKENS[device_type])  # fmt: skip
    return text_task(Path(options.data), options.tokenizer and options.tokenizer.lower(), options.vocab, seq,
                     options.held_out, options.pad_like_paper, eval_tokens)  # fmt: skip


def resolve_quality(options: QualityOptions) -> tuple[Plan, Environment]:
    """Check every option and build the plan; raises ``ConfigError`` on the first bad one, before any file.
    With ``--resume`` the flow then leaves out the runs the file holds (``quality.resume``), under its lock."""
    from sqabench.device import resolve_device

    check_options(options)
    asked = [flag for flag, value in (("--steps", options.steps), ("--tokens", options.tokens),
                                      ("--budget", options.budget)) if value is not None]  # fmt: skip
    if len(asked) > 1:
        raise ConfigError(f"{' and '.join(asked)} each set the steps; give one of them")
    budget_s = parse_duration(options.budget, "--budget") if options.budget is not None else None
    tokens = parse_size(options.tokens, "--tokens", "count", "2000000, 500k, 2M, 1.5G") if options.tokens else None
    device = resolve_device(options.device)
    budget_s = default_budget(device.type, bool(asked), options.resume) if budget_s is None else budget_s
    dtype = _dtype(options.dtype, device.type)
    env = environment(device)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(options.out) if options.out else Path("results") / f"quality-{host_label(env)}-{stamp}.csv"
    if options.resume and not options.out:
        raise ConfigError("--resume needs --out FILE: the quality CSV to continue")
    task = _task(options, device.type)
    preset = _model(options, task.vocab)
    window = options.window if options.window is not None else max(1, task.seq_len // 4)
    specs = parse_variants(options.variants, preset.n_heads, window)
    check_window(options.window, specs, options.variants)
    names = [spec.name for spec in specs]
    baseline = pick_baseline(options.baseline, names, "is not among the variants trained")
    if baseline is None:
        raise ConfigError(f"no baseline: pass --baseline, one of {', '.join(names)}")
    batch = options.batch if options.batch is not None else TASK_DEFAULTS[task.name]["batch"]
    eval_every = options.eval_every if options.eval_every is not None else TASK_DEFAULTS[task.name]["eval_every"]
    per_step = batch * task.seq_len
    steps = -(-tokens // per_step) if tokens is not None else options.steps or DEFAULT_STEPS
    cfg = TrainConfig(
        task,
        preset,
        steps,
        batch,
        options.lr,
        options.warmup,
        options.weight_decay,
        eval_every=eval_every,
        device=str(device),
        dtype=dtype,
    )
    plan = Plan(cfg, specs, list(range(options.seeds)), path, baseline, options.equal.lower(),
                checkpoint_every_s=60 * options.checkpoint_every).with_steps(steps)  # fmt: skip
    from sqabench.quality.summary import check_also, parse_also, parse_margin

    also = parse_also(options.also_against)
    check_also(also, names, "trained")
    plan = replace(plan, margin=parse_margin(options.margin), also=also, shard=parse_shard(options.shard))
    if plan.shard is not None and budget_s is not None:
        raise ConfigError(
            f"--shard {options.shard}: every share must train the same steps, but a budget would size "
            "each share's own; give --steps or --tokens (a --dry-run without --shard says what fits)"
        )
    if plan.shard is not None and not options.out:
        k, n = plan.shard
        plan = replace(plan, path=path.with_name(f"{path.stem}-shard{k}of{n}.csv"))
        path = plan.path
    if plan.shard is not None and not plan.runs():
        raise ConfigError(f"--shard {options.shard}: this share holds no run ({len(plan.seeds) * len(specs)} runs "
                          f"in {plan.shard[1]} shares); give fewer shares")  # fmt: skip
    if options.confirm is not None:
        from sqabench.quality.confirm import confirming

        plan = replace(confirming(plan, Path(options.confirm)), confirm=Path(options.confirm))
    if budget_s is not None:
        if options.resume:
            raise ConfigError("--resume continues with the steps its rows recorded: leave out --budget and pass "
                              "the --steps (or --tokens) of the run being continued")  # fmt: skip
        plan = replace(plan, budget_s=budget_s)
    if options.dry_run or options.resume:
        return plan, env
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory; give a .csv file path (its curves go beside it)")
    for existing in (plan.path, plan.curves_path, plan.checkpoints):
        if existing.exists():
            raise ConfigError(f"{existing} exists: continue that run with --resume --out {plan.path}, or choose "
                              "another --out")  # fmt: skip
    check_output(path, explicit=bool(options.out))
    return plan, env


def default_budget(device_type: str, steps_given: bool, resume: bool) -> float | None:
    """The budget when none of --steps, --tokens, --budget is given: a GPU's steps fit 10 minutes (a resumed run
    keeps the steps its rows record); a CPU's are ``DEFAULT_STEPS``."""
    return GPU_BUDGET_S if device_type == "cuda" and not steps_given and not resume else None


def _dtype(asked: str | None, device_type: str) -> str:
    if asked is None:
        return "bf16" if device_type == "cuda" else "fp32"
    return asked.lower()
