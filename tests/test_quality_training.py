"""One training run, held to what it promises step by step: each seed its own initialisation and data order,
the same data for every variant, the learning rate, clipping and weight decay the optimizer actually receives,
the first crossing of each milestone (kept across a resume), and the row's FLOPs and perplexity. Every expected
value here is derived by hand or counted independently, never read back from the code under test."""

import math
from dataclasses import replace

import pytest
import torch

import sqabench.quality.train as training
from sqabench.presets import Preset
from sqabench.quality.mqar import MQARSize
from sqabench.quality.tasks import MQARTask
from sqabench.quality.train import Checkpoint, TrainConfig, train
from sqabench.variants import get_variant

TASK = MQARTask(MQARSize(vocab=32, seq_len=16, pairs=2), eval_examples=16)
PRESET = Preset("t", d_model=32, n_layers=1, n_heads=4, d_ff=64, vocab_size=32)
CFG = TrainConfig(TASK, PRESET, steps=10, batch=4, lr=1e-2, warmup=0.2, weight_decay=0.1, eval_every=5)


class Spy:
    """What a run hands its task and its optimizer, recorded: the batches drawn, and at each optimizer step the
    learning rate and weight decay of each parameter group and the gradients' global norm."""

    def __init__(self, monkeypatch):
        self.batches, self.groups, self.norms, self.first_weights, self.betas = [], [], [], [], set()
        real_batch, real_step = MQARTask.batch, torch.optim.AdamW.step
        real_build = training.build_encoder

        def batch(task, seed, step, n):
            inputs, labels = real_batch(task, seed, step, n)
            self.batches.append(((seed, step), inputs.clone()))
            return inputs, labels

        def step(opt, *args, **kwargs):
            self.groups.append([(g["lr"], g["weight_decay"], [p.dim() for p in g["params"]]) for g in opt.param_groups])
            self.betas.update(tuple(g["betas"]) for g in opt.param_groups)
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            norms = torch.stack([torch.linalg.vector_norm(g) for g in grads])
            self.norms.append(float(torch.linalg.vector_norm(norms)))
            return real_step(opt, *args, **kwargs)

        def build(*args, **kwargs):
            model = real_build(*args, **kwargs)
            self.first_weights.append(next(model.parameters()).detach().clone())
            return model

        monkeypatch.setattr(MQARTask, "batch", batch)
        monkeypatch.setattr(torch.optim.AdamW, "step", step)
        monkeypatch.setattr(training, "build_encoder", build)


def lr_by_hand(step: int, steps: int = 10, peak: float = 1e-2, warm: int = 2) -> float:
    """Linear warm-up over the first 20% (2 of 10 steps), then cosine from the peak to zero at the last step."""
    if step <= warm:
        return peak * step / warm
    return peak * (1 + math.cos(math.pi * (step - warm) / (steps - warm))) / 2


def test_the_optimizer_receives_each_steps_own_learning_rate_and_decay_on_matrices_only(monkeypatch):
    spy = Spy(monkeypatch)
    train(CFG, get_variant("sqa", 4), seed=0)
    assert len(spy.groups) == 10
    for step, groups in enumerate(spy.groups, start=1):
        (decayed_lr, decay, dims), (rest_lr, no_decay, rest_dims) = groups
        assert decayed_lr == pytest.approx(lr_by_hand(step)) and rest_lr == pytest.approx(lr_by_hand(step)), step
        assert decay == 0.1 and no_decay == 0.0
        assert set(dims) == {2} and set(rest_dims) == {1}  # matrices decay; norms' gains do not
    assert spy.betas == {(0.9, 0.98)}  # docs/quality.md: AdamW, betas 0.9/0.98


def test_gradients_are_clipped_to_the_configured_norm(monkeypatch):
    spy = Spy(monkeypatch)
    train(replace(CFG, clip=1e-3), get_variant("mha", 4), seed=0)
    assert max(spy.norms) <= 1e-3 * (1 + 1e-4)  # every step's gradients, before AdamW sees them
    unclipped = Spy(monkeypatch)
    train(replace(CFG, clip=1e9), get_variant("mha", 4), seed=0)
    assert min(unclipped.norms) > 1e-2  # the clip above had work to do


def test_each_seed_is_its_own_initialisation_and_data_and_every_variant_sees_the_same_data(monkeypatch):
    spy = Spy(monkeypatch)
    for variant, seed in (("mha", 0), ("xsqa", 0), ("mha", 1)):
        train(CFG, get_variant(variant, 4), seed=seed)
    runs = [spy.batches[i * 10 : (i + 1) * 10] for i in range(3)]
    assert [key for key, _ in runs[0]] == [(0, step) for step in range(1, 11)]  # seed 0's stream, steps 1..10
    assert [key for key, _ in runs[2]] == [(1, step) for step in range(1, 11)]  # seed 1's own
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(runs[0], runs[1]))  # the variant changes nothing
    assert not torch.equal(runs[0][0][1], runs[2][0][1])  # another seed, other data
    mha0, _, mha1 = spy.first_weights
    assert not torch.equal(mha0, mha1)  # another seed, another initialisation
    again = Spy(monkeypatch)
    train(CFG, get_variant("mha", 4), seed=1)
    assert torch.equal(again.first_weights[0], mha1)  # the same seed, the same initialisation


def scripted(monkeypatch, accuracies: list[float]):
    """evaluate() replaced by a script: the k-th evaluation reports accuracies[k]."""
    calls = iter(accuracies)

    def evaluate(model, task, held, autocast, rows):
        return {"val_loss": 1.0, "val_accuracy": next(calls)}

    monkeypatch.setattr(training, "evaluate", evaluate)


def test_the_steps_to_a_milestone_are_its_first_crossing(monkeypatch):
    scripted(monkeypatch, [0.3, 0.6, 0.4, 0.95, 0.92])  # evaluations at steps 2, 4, 6, 8, 10
    result = train(replace(CFG, eval_every=2), get_variant("mha", 4), seed=0)
    assert result.steps_to == {0.5: 4, 0.9: 8}
    scripted(monkeypatch, [0.3, 0.5, 0.4, 0.9, 0.92])  # "at or past": exactly 50% and 90% count
    assert train(replace(CFG, eval_every=2), get_variant("mha", 4), seed=0).steps_to == {0.5: 4, 0.9: 8}


def test_the_milestones_survive_a_resume(monkeypatch, tmp_path):
    cfg = replace(CFG, eval_every=2)
    spec = get_variant("mha", 4)
    checkpoint = Checkpoint(tmp_path / "c.pt", cfg.key(spec, 0), every_s=0.0)
    scripted(monkeypatch, [0.3, 0.6, 0.4])  # crosses 50% at step 4; interrupted after step 6

    def stop_at_6(step):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, spec, 0, on_step=stop_at_6, checkpoint=checkpoint)
    scripted(monkeypatch, [0.95, 0.97])  # steps 8 and 10, after the resume
    resumed = train(cfg, spec, 0, checkpoint=checkpoint)
    assert resumed.steps_to == {0.5: 4, 0.9: 8}


def test_a_rows_training_flops_and_perplexity(tmp_path):
    """train_flops: the FLOPs of a whole training step (forward and backward) times the steps. torch's
    FlopCounterMode on a real step of the same model counts its matmuls (not the CPU's SDPA): the step costs at
    least those, and at most those plus the attention's full square (4 B Hq N^2 d_head) forward and a 2.5x
    backward. A count of the forward alone would be a third of it. Perplexity: e to the loss."""
    import csv

    from torch.utils.flop_counter import FlopCounterMode
    from typer.testing import CliRunner

    from sqabench.cli import app
    from sqabench.encoder import build_encoder

    out = tmp_path / "q.csv"
    args = ["quality", "--device", "cpu", "--variants", "mha,sqa", "--seeds", "1", "--steps", "3", "--batch", "4",
            "--eval-every", "3", "--d-model", "32", "--heads", "4", "--layers", "1", "--out", str(out)]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    rows = list(csv.DictReader(out.open()))
    for row in rows:
        spec = get_variant(row["variant"], 4)
        model = build_encoder(spec, Preset("m", d_model=32, n_layers=1, n_heads=4, d_ff=64, vocab_size=64), "sdpa",
                              True, torch.device("cpu"), torch.float32)  # fmt: skip
        tokens = torch.randint(0, 64, (4, 32))
        with FlopCounterMode(display=False) as counter:
            model(tokens).float().sum().backward()
        matmuls = counter.get_total_flops()
        square = 4 * 4 * spec.n_q_heads * 32**2 * 8  # batch 4, 32 tokens, heads of 8
        assert matmuls < float(row["train_flops"]) / 3 <= matmuls + 3.5 * square, row["variant"]
        assert float(row["perplexity"]) == pytest.approx(math.exp(float(row["val_loss"])), rel=1e-5)
