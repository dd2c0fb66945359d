"""Training one (variant, seed) from scratch for ``sqabench quality``, on the model ``sqabench run`` times.

The same seed gives every variant the same data order and the same held-out set (the model's own weights
differ only where its heads do). AdamW, a linear warm-up then cosine to zero, gradient clipping; fp32 on
a CPU (deterministic: a tiny run repeats bit for bit), bf16 autocast on a GPU. Each step is timed on its
own (CUDA events on a GPU), evaluation apart; the loss is the cross-entropy of the scored positions only
(MQAR's queries), never of anything else.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from sqabench.device import synchronize, time_repeats
from sqabench.encoder import build_encoder
from sqabench.mqar import IGNORE, MQARSize, mqar
from sqabench.presets import Preset
from sqabench.variants import VariantSpec

SOLVED = 0.99  # MQAR accuracy at which a run counts as having solved the task
MILESTONES = (0.5, 0.9)  # steps to these accuracies are reported
HELD_OUT = 0  # the held-out set's data stream under a seed: (seed, 0); training step t draws (seed, t), t >= 1


@dataclass(frozen=True)
class TrainConfig:
    task: MQARSize
    preset: Preset
    steps: int
    batch: int
    lr: float = 3e-3
    warmup: float = 0.1  # share of the steps warmed up linearly
    weight_decay: float = 0.1
    clip: float = 1.0
    eval_every: int = 100
    eval_examples: int = 256
    device: str = "cpu"
    dtype: str = "fp32"  # bf16: autocast (a GPU); the weights and the optimizer stay fp32
    kernel: str = "sdpa"  # flex has no backward on a CPU; sdpa takes a window as an explicit mask

    def lr_at(self, step: int) -> float:
        """The learning rate of ``step`` (1-based): linear warm-up, then cosine to zero."""
        warm = max(1, round(self.warmup * self.steps))
        if step <= warm:
            return self.lr * step / warm
        return self.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, self.steps - warm)))


@dataclass
class RunResult:
    val_loss: float
    val_accuracy: float
    steps_to: dict[float, int | None]
    step_ms: float
    wall_s: float
    params: int
    curve: list[dict] = field(default_factory=list)  # one row per evaluation

    @property
    def solved(self) -> bool:
        return self.val_accuracy >= SOLVED


def batch_seed(seed: int, step: int) -> tuple[int, int]:
    """The data stream of training step ``step`` (>= 1) under ``seed``: the same for every variant, and never the
    held-out set's (``(seed, HELD_OUT)``)."""
    if step == HELD_OUT:
        raise ValueError("training steps count from 1: step 0's stream is the held-out set")
    return (seed, step)


def held_out_set(cfg: TrainConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples every evaluation of a ``seed``'s runs scores, in full: the same for every variant."""
    return mqar(cfg.task, cfg.eval_examples, (seed, HELD_OUT))


def training_batch(cfg: TrainConfig, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of training step ``step`` under ``seed``: the same for every variant."""
    return mqar(cfg.task, cfg.batch, batch_seed(seed, step))


def evaluate(model, inputs: torch.Tensor, labels: torch.Tensor, autocast) -> tuple[float, float]:
    """(loss over the scored positions, accuracy per example then averaged) on the held-out set."""
    scored = labels != IGNORE
    with torch.no_grad(), autocast():
        logits = model(inputs).float()
    loss = F.cross_entropy(logits[scored], labels[scored]).item()
    right = (logits.argmax(-1) == labels) & scored
    accuracy = (right.sum(1).float() / scored.sum(1).float()).mean().item()
    return loss, accuracy


def train(
    cfg: TrainConfig, spec: VariantSpec, seed: int, on_eval: Callable[[dict], None] = lambda row: None
) -> RunResult:
    """Train ``spec`` from scratch at ``seed``; evaluate every ``eval_every`` steps and at the end."""
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

    eval_inputs, eval_labels = (t.to(device) for t in held_out_set(cfg, seed))
    steps_to: dict[float, int | None] = dict.fromkeys(MILESTONES)
    curve, step_ms = [], []
    started = time.perf_counter()
    loss = torch.zeros(())
    for step in range(1, cfg.steps + 1):
        inputs, labels = (t.to(device) for t in training_batch(cfg, seed, step))
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step)

        def one_step() -> None:
            nonlocal loss
            with autocast():
                logits = model(inputs)
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()

        step_ms.extend(time_repeats(one_step, device, 1))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val_loss, accuracy = evaluate(model, eval_inputs, eval_labels, autocast)
            for goal in MILESTONES:
                if steps_to[goal] is None and accuracy >= goal:
                    steps_to[goal] = step
            row = {"step": step, "tokens": step * cfg.batch * cfg.task.seq_len, "train_loss": loss.item(),
                   "val_loss": val_loss, "val_accuracy": accuracy, "lr": cfg.lr_at(step)}  # fmt: skip
            curve.append(row)
            on_eval(row)
    synchronize(device)
    last = curve[-1]
    return RunResult(last["val_loss"], last["val_accuracy"], steps_to, statistics.median(step_ms),
                     time.perf_counter() - started, params, curve)  # fmt: skip
