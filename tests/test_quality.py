"""sqabench quality, its first part: MQAR against its definition, training that repeats bit for bit, a task
that separates what it should, and the statistics checked against hand-computed examples."""

import csv
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sqabench.cli import app
from sqabench.errors import ConfigError
from sqabench.presets import Preset
from sqabench.quality.mqar import IGNORE, MQARSize, gap_weights, mqar
from sqabench.quality.tasks import MQARTask
from sqabench.quality.train import TrainConfig, train
from sqabench.variants import get_variant

runner = CliRunner()
SMALL = MQARTask(MQARSize(vocab=64, seq_len=32, pairs=4))


def test_every_example_is_what_the_definition_says():
    """Read back independently: pairs first (keys in the lower half, values in the upper, each unique), every
    key queried exactly once at an even offset after them, its value the label there, nothing else scored."""
    size = MQARSize(vocab=100, seq_len=40, pairs=5)
    inputs, labels = mqar(size, 300, seed=7)
    assert inputs.shape == labels.shape == (300, 40) and inputs.dtype == torch.int64
    for x, y in zip(inputs.tolist(), labels.tolist()):
        keys, values = x[0:10:2], x[1:10:2]
        assert all(1 <= k < 50 for k in keys) and len(set(keys)) == 5
        assert all(50 <= v < 100 for v in values) and len(set(values)) == 5
        scored = [t for t in range(40) if y[t] != IGNORE]
        assert len(scored) == 5 and all(t >= 10 and (t - 10) % 2 == 0 for t in scored)
        answer = dict(zip(keys, values))
        assert sorted(x[t] for t in scored) == sorted(keys)  # each key queried once
        assert all(y[t] == answer[x[t]] for t in scored)  # the label at a query is that key's value
        assert all(0 <= token < 100 for token in x)


def test_the_gaps_follow_the_power_law():
    """With one pair the query's gap is a single draw: its frequencies are the law's weights."""
    size = MQARSize(vocab=64, seq_len=22, pairs=1)  # 10 gaps
    _, labels = mqar(size, 40_000, seed=3)
    gaps = ((labels != IGNORE).int().argmax(1) - 2) // 2
    seen = np.bincount(gaps.numpy(), minlength=size.space) / len(gaps)
    expected = np.array([0.01 * (g + 1) ** (0.01 - 1) for g in range(10)])
    expected /= expected.sum()
    assert np.abs(seen - expected).max() < 0.01 and np.allclose(gap_weights(10, 0.01), expected)
    assert seen[0] > 5 * seen[-1]  # near the pairs far more often


def test_a_seed_is_the_same_data_and_another_seed_is_not():
    a, b, c = mqar(SMALL.size, 16, 5), mqar(SMALL.size, 16, 5), mqar(SMALL.size, 16, 6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


@pytest.mark.parametrize(
    "size, message",
    [(dict(seq_len=31), "must be even"), (dict(pairs=9), "--pairs 9 needs --seq of at least 36"),
     (dict(vocab=16), "--vocab 16 must exceed --seq 32"), (dict(pairs=0), "--pairs 0 must be >= 1")],
)  # fmt: skip
def test_an_impossible_size_is_named(size, message):
    with pytest.raises(ConfigError, match=message):
        MQARSize(**{"vocab": 64, "seq_len": 32, "pairs": 4, **size})


MQAR_MODEL = Preset("mqar-test", d_model=32, n_layers=2, n_heads=4, d_ff=64, vocab_size=64)


def test_a_tiny_run_repeats_bit_for_bit():
    cfg = TrainConfig(SMALL, MQAR_MODEL, steps=6, batch=8, eval_every=3)
    first, second = (train(cfg, get_variant("sqa", 4), seed=1) for _ in range(2))
    assert [row["train_loss"] for row in first.curve] == [row["train_loss"] for row in second.curve]
    assert first.val_loss == second.val_loss and first.val_accuracy == second.val_accuracy
    other = train(cfg, get_variant("sqa", 4), seed=2)
    assert other.curve[-1]["train_loss"] != first.curve[-1]["train_loss"]  # another seed, another run


def test_the_learning_rate_warms_up_then_decays_to_zero():
    cfg = TrainConfig(SMALL, MQAR_MODEL, steps=100, batch=8, lr=1e-3, warmup=0.1)
    assert cfg.lr_at(5) == pytest.approx(0.5e-3) and cfg.lr_at(10) == pytest.approx(1e-3)
    assert cfg.lr_at(55) == pytest.approx(0.5e-3) and cfg.lr_at(100) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_the_task_separates_full_attention_from_a_window_too_short_to_see_the_keys():
    """On a tiny MQAR (2 pairs, 16 tokens, 16 values), full attention learns the task in 200 steps, while a
    window of 2, which sees at most the last pair from the first query, sits at chance (1/16) after 50 steps,
    where full attention, or a window that reaches every key, is already at 0.39 to 0.45 (seed 0). A fixed
    number of steps: the same whatever the machine's speed."""
    task = MQARTask(MQARSize(vocab=32, seq_len=16, pairs=2))
    cfg = TrainConfig(task, Preset("mqar-test", d_model=64, n_layers=2, n_heads=8, d_ff=128, vocab_size=32),
                      steps=200, batch=64, eval_every=100)  # fmt: skip
    full = train(cfg, get_variant("mha", 8), seed=0)
    short = train(replace(cfg, steps=50, eval_every=50), get_variant("swa", 8, window=2), seed=0)
    assert full.val_accuracy >= 0.9, full.curve
    assert short.val_accuracy < 0.1, short.curve


QUICK = ["quality", "--device", "cpu", "--steps", "4", "--batch", "4", "--eval-every", "2", "--d-model", "16",
         "--heads", "4", "--layers", "1"]  # fmt: skip


def test_a_quality_run_writes_a_row_per_run_and_the_curves(tmp_path):
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*QUICK, "--variants", "mha,sqa", "--seeds", "2", "--out", str(out)],
                           env={"COLUMNS": "250"})  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["seed"]) for r in rows] == [("mha", "0"), ("sqa", "0"), ("mha", "1"), ("sqa", "1")]
    assert {r["status"] for r in rows} == {"ok"} and all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)
    curves = list(csv.DictReader((tmp_path / "q-curves.csv").open()))
    assert [int(c["step"]) for c in curves] == [2, 4] * 4
    text = " ".join(result.output.split())
    assert "diff vs mha" in text and "MDE" in text and "2 seeds" in text


@pytest.mark.parametrize(
    "args, message",
    [(["--seeds", "0"], "--seeds 0 must be >= 1"), (["--steps", "0"], "--steps 0 must be >= 1"),
     (["--task", "wiki"], "unknown task 'wiki'; choose one of: mqar, text"),
     (["--pairs", "20"], "--pairs 20 needs --seq"),
     (["--vocab", "8"], "--vocab 8 must exceed --seq 32"), (["--baseline", "nope"], "--baseline 'nope' is not among"),
     (["--lr", "nan"], "--lr nan must be in (0, 1)"), (["--variants", "zzz"], "unknown variant 'zzz'")],
)  # fmt: skip
def test_quality_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, message):
    out = tmp_path / "q.csv"
    given = [QUICK[i : i + 2] for i in range(1, len(QUICK), 2)]  # (option, value) pairs
    kept = [part for option, value in given if option not in args for part in (option, value)]
    result = runner.invoke(app, ["quality", *kept, *args, "--out", str(out)])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_no_held_out_example_reaches_training(monkeypatch):
    """The held-out set is its own data stream of each seed; no training step of a run draws from it."""
    import sqabench.quality.tasks as tasks

    streams = []
    real = tasks.mqar
    monkeypatch.setattr(tasks, "mqar", lambda size, n, seed: streams.append((n, seed)) or real(size, n, seed))
    cfg = TrainConfig(MQARTask(SMALL.size, eval_examples=16), MQAR_MODEL, steps=5, batch=8, eval_every=5)
    train(cfg, get_variant("mha", 4), seed=3)
    held_out = {seed for n, seed in streams if n == cfg.task.eval_examples}
    trained = [seed for n, seed in streams if n == cfg.batch]
    assert len(held_out) == 1 and len(trained) == cfg.steps and len(set(trained)) == cfg.steps
    assert not held_out & set(trained)
    with pytest.raises(ValueError):
        tasks.batch_seed(0, tasks.HELD_OUT_STREAM)


def test_an_existing_out_is_refused_and_resume_is_offered(tmp_path):
    out = tmp_path / "q.csv"
    out.write_text("something\n")
    result = runner.invoke(app, [*QUICK, "--out", str(out)])
    assert result.exit_code == 2 and "exists: continue that run with --resume" in " ".join(result.output.split())
    assert out.read_text() == "something\n"


def test_the_papers_quality_tables_are_shipped_and_consistent():
    """Tables 1 and 2 as transcribed: every perplexity is exp(loss) to the tables' rounding, the heads are the
    family's (checked against the registry), and the dense table has every variant once."""
    from sqabench.shipped import shipped_rows

    rows = shipped_rows("paper_quality.csv")
    assert [r["variant"] for r in rows if r["setting"] == "dense"] == ["mha", "gqa", "mqa", "sqa", "ssqa", "xsqa",
                                                                        "xsmqa"]  # fmt: skip
    assert [r["variant"] for r in rows if r["setting"] == "moe"] == ["gqa", "mqa", "sqa", "ssqa", "xsqa"]
    for row in rows:
        assert math.exp(float(row["val_loss"])) == pytest.approx(float(row["perplexity"]), rel=2e-3), row
        spec = get_variant(row["variant"], int(row["n_heads"]))
        assert (spec.n_q_heads, spec.n_kv_heads) == (int(row["n_q_heads"]), int(row["n_kv_heads"])), row
    mha = next(r for r in rows if r["variant"] == "mha")
    assert (mha["val_loss"], mha["accuracy_pct"], mha["minutes"]) == ("1.1976", "77.35", "269")


def test_the_summary_over_seeds_on_hand_made_rows():
    """Two seeds of mha and sqa: the median step time (of two: their mean), solved runs, the heads and the
    paired difference (0.10 and 0.30 below mha: mean -0.2, inside the noise at one degree of freedom)."""
    from sqabench.quality.summary import summarise

    def row(variant, seed, accuracy, ms, solved=False, steps=None):
        heads = {"mha": (8, 8), "sqa": (4, 2)}[variant]
        return {"variant": variant, "seed": seed, "val_accuracy": accuracy, "step_ms": ms, "solved": solved,
                "steps_to_90": steps, "n_q_heads": heads[0], "n_kv_heads": heads[1], "window": None}  # fmt: skip

    rows = [row("mha", 0, 0.9, 40.0, steps=300), row("mha", 1, 1.0, 60.0, True, 200), row("sqa", 0, 0.8, 30.0),
            row("sqa", 1, 0.7, 34.0)]  # fmt: skip
    mha, sqa = summarise(rows, "mha")
    assert mha.metric == "val_accuracy" and mha.value.mean == pytest.approx(0.95)
    assert (mha.step_ms, mha.solved, mha.steps_to_90, mha.heads, mha.verdict) == (50.0, 1, [300, 200], "8/8",
                                                                                   "the baseline")  # fmt: skip
    assert (sqa.step_ms, sqa.heads, sqa.steps_to_90) == (32.0, "4/2", [None, None])
    assert sqa.diff.mean == pytest.approx(-0.2) and sqa.verdict == "no detectable difference at this budget"
    # a third seed: sqa's step time is the median of 30, 34 and 90 (34, never their mean 51.3); a run that ran
    # out of memory is no seed of its variant (no metric, no step time) and leaves the pairing at two seeds
    oom = {**row("mha", 2, "", ""), "status": "oom"}
    mha, sqa = summarise([*rows, {**row("sqa", 2, 0.75, 90.0), "status": "ok"}, oom], "mha")
    assert (sqa.step_ms, sqa.seeds, mha.seeds, sqa.diff.n) == (34.0, 3, 2, 2)


def test_evaluation_scores_only_labelled_positions_per_example_for_mqar_and_pooled_for_text():
    """A fake model with fixed logits: example 0 has 2 scored positions (1 right), example 1 has 4 (all right).
    MQAR's accuracy is per example then the mean, (1/2 + 4/4) / 2 = 0.75; text's is pooled, 5/6. The loss is
    the mean cross-entropy over the six scored positions, computed here by hand."""
    import contextlib

    from sqabench.quality.tasks import HeldOut
    from sqabench.quality.train import evaluate

    vocab, seq = 5, 6
    logits = torch.randn(2, seq, vocab, generator=torch.Generator().manual_seed(0))
    labels = torch.full((2, seq), IGNORE)
    best = logits.argmax(-1)
    labels[0, 1], labels[0, 4] = best[0, 1], (best[0, 4] + 1) % vocab  # one right, one wrong
    labels[1, 0:4] = best[1, 0:4]  # four right

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, tokens):  # each row's first token says which example it is
            return logits[tokens[:, 0]]

    held = HeldOut(torch.arange(2).repeat_interleave(seq).view(2, seq), labels)
    by_hand = [-(logits[i, t, labels[i, t]] - torch.logsumexp(logits[i, t], 0)).item()
               for i in range(2) for t in range(seq) if labels[i, t] != IGNORE]  # fmt: skip

    class Task:
        per_example, byte_lengths = True, None

    mqar_like = evaluate(Fixed(), Task, held, contextlib.nullcontext, rows_per_pass=1)
    assert mqar_like["val_accuracy"] == pytest.approx(0.75)
    assert mqar_like["val_loss"] == pytest.approx(sum(by_hand) / 6)
    Task.per_example = False
    pooled = evaluate(Fixed(), Task, held, contextlib.nullcontext, rows_per_pass=2)
    assert pooled["val_accuracy"] == pytest.approx(5 / 6)


def test_on_a_gpu_the_default_is_ten_minutes_of_steps_and_on_a_cpu_400_steps():
    from sqabench.quality.options import DEFAULT_STEPS
    from sqabench.quality.plan import default_budget

    assert default_budget("cuda", steps_given=False, resume=False) == 600.0
    assert default_budget("cuda", steps_given=True, resume=False) is None  # --steps, --tokens or --budget decide
    assert default_budget("cuda", steps_given=False, resume=True) is None  # a resumed run keeps its steps
    assert default_budget("cpu", steps_given=False, resume=False) is None and DEFAULT_STEPS == 400


def test_every_value_of_the_upper_half_is_drawn_the_top_one_too():
    """Values come from V/2 .. V-1, each possible: over many examples every one appears, V-1 among them."""
    size = MQARSize(vocab=20, seq_len=16, pairs=3)
    inputs, _ = mqar(size, 2000, seed=1)
    values = set(inputs[:, 1:6:2].flatten().tolist())
    keys = set(inputs[:, 0:6:2].flatten().tolist())
    assert values == set(range(10, 20)) and keys == set(range(1, 10))
