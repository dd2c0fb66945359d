"""Training one (variant, seed) from scratch for ``sqabench quality``, on the model ``sqabench run`` times.

The same seed gives every variant the same data order and the same held-out set (the model's own weights
differ only where its heads do). AdamW, a linear warm-up then cosine to zero, gradient clipping; fp32 on
a CPU (deterministic: a tiny run repeats bit for bit), bf16 autocast on a GPU. Each step is timed on its
own (CUDA events on a GPU), evaluation apart; the loss is the cross-entropy of the scored positions only
(MQAR's queries, a text's real tokens, or with ``--pad-like-paper`` the pads as well, as the paper scored
them), plus the routers' load-balancing loss for a mixture of experts (reported apart: never in a loss).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from sqabench.device import synchronize, time_repeats
from sqabench.encoder import build_encoder
from sqabench.errors import ConfigError
from sqabench.files import replacing
from sqabench.presets import Preset
from sqabench.quality.mqar import IGNORE
from sqabench.quality.rows import MILESTONES
from sqabench.variants import VariantSpec

SOLVED = 0.99  # MQAR accuracy at which a run counts as having solved the task
LN2 = math.log(2)


@dataclass(frozen=True)
class TrainConfig:
    task: object  # a task of sqabench.quality.tasks: MQARTask or TextTask
    preset: Preset
    steps: int
    batch: int
    lr: float = 3e-3
    warmup: float = 0.1  # share of the steps warmed up linearly
    weight_decay: float = 0.1
    clip: float = 1.0
    eval_every: int = 100
    device: str = "cpu"
    dtype: str = "fp32"  # bf16: autocast (a GPU); the weights and the optimizer stay fp32
    kernel: str = "sdpa"  # flex has no backward on a CPU; sdpa takes a window as an explicit mask

    def lr_at(self, step: int) -> float:
        """The learning rate of ``step`` (1-based): linear warm-up, then cosine to zero."""
        warm = max(1, round(self.warmup * self.steps))
        if step <= warm:
            return self.lr * step / warm
        return self.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, self.steps - warm)))

    def key(self, spec: VariantSpec, seed: int) -> dict:
        """Everything a run's result depends on: what a checkpoint and a resumed row must agree with."""
        fields = {k: getattr(self, k) for k in ("steps", "batch", "lr", "warmup", "weight_decay", "clip",
                                                "eval_every", "dtype", "kernel")}  # fmt: skip
        preset = {k: getattr(self.preset, k) for k in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size",
                                                       "head_dim", "n_experts", "top_k", "router_aux")}  # fmt: skip
        return {**fields, **preset, **self.task.describe(), "device": torch.device(self.device).type,
                "variant": spec.name, "heads": [spec.n_heads, spec.n_q_heads, spec.n_kv_heads, spec.window],
                "seed": seed}  # fmt: skip


@dataclass
class RunResult:
    metrics: dict  # the last evaluation: val_loss, val_accuracy, and val_bpb, val_loss_padded ... for text
    steps_to: dict[float, int | None]
    step_ms: float
    wall_s: float
    eval_s: float  # of wall_s, the time spent evaluating and reporting
    params: int
    curve: list[dict] = field(default_factory=list)  # one row per evaluation
    steps_ms: list[float] = field(default_factory=list)  # every timed step, in order

    @property
    def val_loss(self) -> float:
        return self.metrics["val_loss"]

    @property
    def val_accuracy(self) -> float:
        return self.metrics["val_accuracy"]

    @property
    def solved(self) -> bool:
        return self.val_accuracy >= SOLVED


def evaluate(model, task, held, autocast, rows_per_pass: int) -> dict:
    """The held-out set in full, ``rows_per_pass`` sequences a pass: the loss over scored positions only (nats a
    token), accuracy (MQAR: per example, then the mean; text: pooled over tokens), bits per byte when the task
    knows its tokens' bytes, and with ``--pad-like-paper`` the same loss and accuracy with the pads scored."""
    lengths = task.byte_lengths
    sums = {"nats": 0.0, "scored": 0, "right": 0, "bytes": 0, "pad_nats": 0.0, "pad_scored": 0, "pad_right": 0}
    per_example = []
    device = next(model.parameters()).device
    for start in range(0, len(held.inputs), rows_per_pass):
        inputs = held.inputs[start : start + rows_per_pass].to(device)
        with torch.no_grad(), autocast():
            logits = model(inputs).float()
        guess = logits.argmax(-1)
        for prefix, labels in (("", held.labels), ("pad_", held.padded_labels)):
            if labels is None:
                continue
            labels = labels[start : start + rows_per_pass].to(device)
            scored = labels != IGNORE
            nats = F.cross_entropy(logits[scored], labels[scored], reduction="sum").item()
            right = (guess == labels) & scored
            sums[prefix + "nats"] += nats
            sums[prefix + "scored"] += int(scored.sum())
            sums[prefix + "right"] += int(right.sum())
            if not prefix:
                if task.per_example:
                    per_example.extend((right.sum(1).float() / scored.sum(1).clamp(min=1).float()).tolist())
                if lengths is not None:
                    sums["bytes"] += int(lengths.to(device)[labels[scored]].sum())
    metrics = {"val_loss": sums["nats"] / sums["scored"],
               "val_accuracy": sum(per_example) / len(per_example) if task.per_example
               else sums["right"] / sums["scored"]}  # fmt: skip
    if lengths is not None:
        metrics["val_bpb"] = sums["nats"] / LN2 / sums["bytes"]
    if held.padded_labels is not None:
        metrics["val_loss_padded"] = sums["pad_nats"] / sums["pad_scored"]
        metrics["val_accuracy_padded"] = sums["pad_right"] / sums["pad_scored"]
    return metrics


CHECKPOINT_KEYS = ("model", "optimizer", "step", "steps_to", "curve", "step_ms", "eval_s", "wall_s", "key")


@dataclass(frozen=True)
class Checkpoint:
    """Where a run keeps its state, and what it must agree with to be resumed from there."""

    path: Path
    key: dict
    every_s: float = 300.0

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as error:  # a torn or foreign file: never resumed from
            raise ConfigError(f"checkpoint {self.path} cannot be read ({type(error).__name__}); delete it to start "
                              "that run over") from None  # fmt: skip
        if not isinstance(state, dict):
            raise ConfigError(f"checkpoint {self.path} is not a checkpoint of sqabench quality; delete it to start "
                              "that run over")  # fmt: skip
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
        if missing:
            raise ConfigError(f"checkpoint {self.path} is damaged (it lacks {', '.join(missing)}); delete it to start "
                              "that run over")  # fmt: skip
        if state.get("key") != self.key:
            theirs = state.get("key") or {}
            differ = sorted(k for k in set(theirs) | set(self.key) if theirs.get(k) != self.key.get(k))
            raise ConfigError(f"checkpoint {self.path} is from another configuration (differs in: "
                              f"{', '.join(differ)}); rerun with its options, or choose another --out")  # fmt: skip
        return state

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(self.path) as scratch:
            torch.save({**state, "key": self.key}, scratch)


def train(
    cfg: TrainConfig, spec: VariantSpec, seed: int, on_eval: Callable[[dict], None] = lambda row: None,
    on_step: Callable[[int], None] = lambda step: None, checkpoint: Checkpoint | None = None,
) -> RunResult:  # fmt: skip
    """Train ``spec`` from scratch at ``seed`` (or from ``checkpoint`` when it holds this run's state); evaluate
    every ``eval_every`` steps and at the end; save ``checkpoint`` every ``every_s`` seconds at a step's end."""
    device = torch.device(cfg.device)
    model = build_encoder(spec, cfg.preset, cfg.kernel, True, device, torch.float32, seed=seed)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))
    bf16 = cfg.dtype == "bf16"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    held = cfg.task.held_out(seed)
    steps_to: dict[float, int | None] = dict.fromkeys(MILESTONES)
    curve, step_ms, first, spent, eval_s = [], [], 1, 0.0, 0.0
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        steps_to, curve, step_ms = state["steps_to"], state["curve"], state["step_ms"]
        first, spent, eval_s = state["step"] + 1, state["wall_s"], state["eval_s"]
        for row in curve:  # told again: a resumed run's curve file holds only what its checkpoint holds
            on_eval(row)
    started = saved = time.perf_counter()
    loss = torch.zeros(())
    for step in range(first, cfg.steps + 1):
        inputs, labels = (t.to(device) for t in cfg.task.batch(seed, step, cfg.batch))
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step)

        def one_step() -> None:
            nonlocal loss
            with autocast():
                logits = model(inputs)
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
            total = loss + cfg.preset.router_aux * model.aux_loss() if cfg.preset.n_experts else loss
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()

        step_ms.extend(time_repeats(one_step, device, 1))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluating = time.perf_counter()
            metrics = evaluate(model, cfg.task, held, autocast, cfg.batch)
            for goal in MILESTONES:
                if steps_to[goal] is None and metrics["val_accuracy"] >= goal:
                    steps_to[goal] = step
            row = {"step": step, "tokens": step * cfg.batch * cfg.task.seq_len, "train_loss": loss.item(),
                   **metrics, "lr": cfg.lr_at(step)}  # fmt: skip
            curve.append(row)
            on_eval(row)
            eval_s += time.perf_counter() - evaluating
        if checkpoint and step < cfg.steps and time.perf_counter() - saved >= checkpoint.every_s:
            checkpoint.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                             "steps_to": steps_to, "curve": curve, "step_ms": step_ms, "eval_s": eval_s,
                             "wall_s": spent + time.perf_counter() - started})  # fmt: skip
            saved = time.perf_counter()
        on_step(step)
    synchronize(device)
    metrics = {k: v for k, v in curve[-1].items() if k.startswith("val_")}
    return RunResult(metrics, steps_to, statistics.median(step_ms), spent + time.perf_counter() - started, eval_s,
                     params, curve, list(step_ms))  # fmt: skip
