"""sqabench quality on text, end to end: training, the paper's padding beside the honest numbers, --equal
flops, --budget, --dry-run, bad input, the tables and reproduce quality."""

import csv
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from texts import QUICK, TEXT_MODEL, quick, runner

from sqabench.cli import app
from sqabench.errors import ConfigError
from sqabench.presets import Preset
from sqabench.quality.tasks import text_task
from sqabench.quality.train import TrainConfig, train
from sqabench.variants import get_variant


def test_training_drives_the_loss_well_below_the_unigram_entropy(corpus):
    task = text_task(corpus, "bytes", None, 64, 0.1, False)
    held = task.held_out(0)
    targets = held.labels[held.labels != -100].tolist()
    counts = Counter(targets)
    unigram = -sum(c / len(targets) * math.log(c / len(targets)) for c in counts.values())  # nats a token
    result = train(
        TrainConfig(task, TEXT_MODEL, steps=150, batch=16, lr=3e-3, eval_every=150), get_variant("mha", 4), 0
    )
    assert result.val_loss < 0.6 * unigram, (result.val_loss, unigram)


def test_the_papers_padding_flatters_loss_and_accuracy(corpus):
    """Scoring the pads (the paper's pipeline) lowers the loss and raises the accuracy of the same model on the
    same held-out documents; the honest number scores real tokens only."""
    task = text_task(corpus, "bytes", None, 96, 0.1, True)
    tok = task.tokenizer
    inputs, labels = task.batch(0, 1, 16)
    assert (labels == tok.pad).any()  # the paper trains on its pads
    held = task.held_out(0)
    assert not (held.labels == tok.pad).any() and (held.padded_labels == tok.pad).any()
    result = train(TrainConfig(task, TEXT_MODEL, steps=60, batch=16, eval_every=60), get_variant("mha", 4), 0)
    m = result.metrics
    assert m["val_loss_padded"] < m["val_loss"] and m["val_accuracy_padded"] > m["val_accuracy"], m


def test_equal_flops_gives_cheaper_variants_more_steps_for_the_same_flops(corpus, tmp_path):
    out = tmp_path / "q.csv"
    args = [*quick("--variants", "mha,xsqa", "--steps", "6"), "--seeds", "1", "--equal", "flops", "--out", str(out)]
    result = runner.invoke(app, [*args, "--data", str(corpus)])
    assert result.exit_code == 0, result.output
    mha, xsqa = csv.DictReader(out.open())
    assert int(mha["steps"]) == 6 and int(xsqa["steps"]) > 6
    per_step = int(xsqa["train_flops"]) / int(xsqa["steps"])
    assert int(mha["train_flops"]) - per_step < int(xsqa["train_flops"]) <= int(mha["train_flops"])


def test_a_budget_sizes_the_steps_to_fit_from_the_probe():
    """Hand-made probes: the fitted steps fit the budget and one more baseline step would not."""
    from sqabench.quality.budget import Probe, estimate_s, fit_budget
    from sqabench.quality.mqar import MQARSize
    from sqabench.quality.plan import Plan
    from sqabench.quality.tasks import MQARTask

    cfg = TrainConfig(MQARTask(MQARSize(64, 32, 4)), TEXT_MODEL, steps=1, batch=8, eval_every=10)
    specs = [get_variant("mha", 4), get_variant("sqa", 4)]
    plan = Plan(cfg, specs, [0, 1], None, "mha", budget_s=100.0)
    probes = {"mha": Probe(1.0, 0.05, 0.2), "sqa": Probe(1.0, 0.03, 0.1)}
    fitted = fit_budget(plan, probes, spent_s=4.0)

    def by_hand(n: int) -> float:  # 4 runs built at 1 s; 2 seeds x n steps x (0.05 + 0.03) s; an evaluation
        return 4 * 1.0 + 2 * n * 0.08 + 2 * math.ceil(n / 10) * (0.2 + 0.1)  # every 10 steps and at the end

    best = max(n for n in range(1, 1000) if by_hand(n) <= 96.0)
    assert fitted.cfg.steps == best == 417 and fitted.steps_by_variant == {"mha": 417, "sqa": 417}
    assert estimate_s(fitted, probes) == pytest.approx(by_hand(417))
    with pytest.raises(ConfigError, match="--budget 5 s is too short"):
        fit_budget(Plan(cfg, specs, [0, 1], None, "mha", budget_s=5.0), probes, spent_s=4.0)


def test_a_dry_run_estimates_and_writes_nothing(corpus, tmp_path):
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*QUICK, "--data", str(corpus), "--dry-run", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "estimate:" in text and "dry run: nothing trained, nothing written" in text and "est. per seed" in text
    assert "6 steps and an evaluation each" in text and "the probe: about" in text and "a variant," in text
    assert not any(tmp_path.glob("q*"))


def test_a_plan_of_one_says_one_variant_one_seed_one_run(corpus, tmp_path):
    result = runner.invoke(app, [*quick("--variants", "mha"), "--seeds", "1", "--data", str(corpus), "--dry-run"],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 variant x 1 seed, 1 run to train" in " ".join(result.output.split())


def _no_tokenizers(monkeypatch):
    import builtins

    real = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "tokenizers" or name.startswith("tokenizers."):
            raise ImportError("no tokenizers")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)


@pytest.mark.parametrize(
    "case, args, message",
    [("missing", ["--data", "{tmp}/nope.txt"], "does not exist"),
     ("empty", ["--data", "{tmp}/empty.txt"], "is empty"),
     ("binary", ["--data", "{tmp}/binary.txt"], "looks binary"),
     ("latin1", ["--data", "{tmp}/latin1.txt"], "is not UTF-8 (byte 3"),
     ("one document", ["--data", "{tmp}/one.txt"], "too few for a held-out split"),
     ("short", ["--data", "{tmp}/short.txt", "--seq", "512"], "fewer than one training sequence"),
     ("bad jsonl", ["--data", "{tmp}/bad.jsonl"], "line 2 has no string 'text' field"),
     ("bytes vocab", ["--data", "{tmp}/corpus.txt", "--vocab", "1000"], "the bytes tokenizer has 259 tokens"),
     ("bpe vocab", ["--data", "{tmp}/corpus.txt", "--tokenizer", "bpe", "--vocab", "100"], "smaller than a byte-level"),
     ("no extra", ["--data", "{tmp}/corpus.txt", "--tokenizer", "bpe"], "pip install 'sqabench[bpe]'"),
     ("tokenizer", ["--data", "{tmp}/corpus.txt", "--tokenizer", "words"], "unknown tokenizer 'words'"),
     ("no data", ["--task", "text"], "--task text needs --data"),
     ("mqar pad", ["--pad-like-paper", ""], "--pad-like-paper is for --task text"),
     ("held out", ["--data", "{tmp}/corpus.txt", "--held-out", "1.5"], "--held-out 1.5 must be a fraction"),
     ("equal", ["--equal", "time"], "unknown --equal 'time'; choose one of: tokens, flops"),
     ("two budgets", ["--tokens", "1M"], "--steps and --tokens each set the steps"),
     ("tokens", ["--tokens", "lots", "--steps", None], "--tokens: 'lots' is not a count"),
     ("budget", ["--budget", "soon", "--steps", None], "--budget 'soon' is not a duration"),
     ("preset", ["--preset", "paper"], "--preset paper sets the model; leave out --d-model"),
     ("csv", ["--data", "{tmp}/small.csv"], "unsupported format '.csv'"),
     ("identical", ["--data", "{tmp}/same.txt"], "its 50 documents are all identical"),
     ("pairs", ["--data", "{tmp}/corpus.txt", "--pairs", "8"], "--pairs is for --task mqar"),
     ("window", ["--window", "8", "--variants", "mha,sqa"], "--window 8 applies to windowed variants"),
     ("whole tokens", ["--tokens", "1.5", "--steps", None], "--tokens: '1.5' is not a whole number"),
     ("seq", ["--seq", "1x"], "--seq: '1x' is not a length"),
     ("dtype", ["--dtype", "fp16"], "unknown --dtype 'fp16'; choose one of: fp32, bf16 (fp16")],
)  # fmt: skip
def test_text_bad_input_is_one_line_exit_2_and_nothing_written(corpus, tmp_path, monkeypatch, case, args, message):
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    (tmp_path / "binary.txt").write_bytes(b"abc\0def")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "one.txt").write_text("a single document with no blank line in it\n")
    (tmp_path / "short.txt").write_text("one\n\ntwo\n\nthree\n")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "no text"}\n')
    (tmp_path / "small.csv").write_text("text\none\ntwo\n")
    (tmp_path / "same.txt").write_text("\n\n".join(["the very same document"] * 50))
    if case == "no extra":
        _no_tokenizers(monkeypatch)
    out = tmp_path / "q.csv"
    given = [a if a is None else a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, [*quick(*given), "--out", str(out)])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists() and not list(tmp_path.glob("q-*"))


def test_reproduce_quality_prints_ours_beside_the_papers_table_and_what_differs(corpus, tmp_path):
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["reproduce", "quality", "--data", str(corpus), "--moe", "--steps", "2", "--seeds",
                                 "1", "--seq", "64", "--tokenizer", "bytes", "--device", "cpu", "--out", str(out)],
                           env={"COLUMNS": "250"})  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "ours beside the paper's Table 2 (moe)" in text and "paper val loss" in text
    assert "differs from the paper: padding: ours packed" in text and "theirs TinyStories" in text
    assert "warning: 2 steps (1,024 tokens) is too short to mean anything beside the paper's" in text  # 8 x 64 x 2
    rows = list(csv.DictReader(out.open()))
    assert [r["variant"] for r in rows] == ["gqa", "mqa", "sqa", "ssqa", "xsqa"]
    assert {r["preset"] for r in rows} == {"paper-moe"} and {r["lr"] for r in rows} == {"0.002"}
    assert (tmp_path / "r-plots" / "quality-trade.png").is_file()
    refused = runner.invoke(app, ["reproduce", "paper", "--data", str(corpus), "--dry-run"])
    assert refused.exit_code == 2 and "--data: for reproduce quality only" in refused.output
    missing = runner.invoke(app, ["reproduce", "quality", "--device", "cpu"])
    assert missing.exit_code == 2 and "reproduce quality needs --data" in missing.output


def test_on_text_the_extras_are_summarised():
    """Hand-made text rows: bits per byte and accuracy summarised beside the loss (the loss's own pairing and
    verdict: tests/test_quality_stats.py); MQAR's measures left out."""
    from sqabench.quality.summary import summarise

    def row(variant, seed, loss, bpb):
        return {"task": "text", "variant": variant, "seed": seed, "val_loss": loss, "val_bpb": bpb,
                "val_accuracy": 0.5, "step_ms": 10.0, "solved": "", "steps_to_90": "", "n_q_heads": 4,
                "n_kv_heads": 2, "window": "", "status": "ok", "steps": 100, "train_flops": 1e9}  # fmt: skip

    rows = [row("mha", 0, 2.0, 2.9), row("mha", 1, 2.1, 3.0), row("xsqa", 0, 1.80, 2.6), row("xsqa", 1, 1.89, 2.7)]
    mha, xsqa = summarise(rows, "mha")
    assert xsqa.metric == "val_loss" and xsqa.extras["bits/byte"].mean == pytest.approx(2.65)
    assert "accuracy" in xsqa.extras and xsqa.solved is None  # MQAR's measure only
    assert (xsqa.steps, xsqa.train_flops) == (100, 1e9)


def test_bf16_autocast_trains_and_differences_are_paired_against_gqa_on_request(tmp_path):
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,gqa,sqa"), "--dtype", "bf16", "--seeds", "2", "--out",
                                 str(out), "--also-against", "gqa"], env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert {r["dtype"] for r in rows} == {"bf16"} and all(math.isfinite(float(r["val_loss"])) for r in rows)
    assert "diff vs mha" in result.output and "diff vs gqa" in result.output


def test_equal_flops_charges_a_masked_window_the_full_square_it_computes(tmp_path):
    """Training runs sdpa, which takes a window as a mask and computes the whole square: swa (gqa's heads and a
    window) costs what gqa costs, so --equal flops gives both the same steps; the rows say what was counted."""
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "gqa,swa", "--steps", "6"), "--baseline", "gqa", "--seeds", "1",
                                 "--equal", "flops", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    gqa, swa = csv.DictReader(out.open())
    assert (gqa["steps"], swa["steps"]) == ("6", "6") and gqa["train_flops"] == swa["train_flops"]
    assert {gqa["flops_counted"], swa["flops_counted"]} == {"dense"}
    assert "the full square its masked kernel computes" in " ".join(result.output.split())


def test_a_window_that_flex_skips_is_charged_only_its_blocks():
    """Under flex (a GPU's training kernel) a window's outside is never computed: --equal flops then gives swa
    more steps than gqa, whose heads it shares; under sdpa (a mask on the full square) the same steps."""
    from sqabench.quality.mqar import MQARSize
    from sqabench.quality.plan import Plan
    from sqabench.quality.tasks import MQARTask

    preset = Preset("window-test", d_model=64, n_layers=1, n_heads=4, d_ff=128, vocab_size=600)
    cfg = TrainConfig(MQARTask(MQARSize(600, 512, 4)), preset, steps=100, batch=4)
    specs = [get_variant("gqa", 4), get_variant("swa", 4, window=64)]
    steps = {}
    for kernel in ("sdpa", "flex"):
        plan = Plan(replace(cfg, kernel=kernel), specs, [0], None, "gqa", "flops").with_steps(100)
        steps[kernel] = (plan.flops_counted, plan.steps_by_variant["gqa"], plan.steps_by_variant["swa"])
    assert steps["sdpa"] == ("dense", 100, 100)
    assert steps["flex"][:2] == ("window", 100) and steps["flex"][2] > 120  # about 64 keys a query, not 512 (135)


def test_tables_print_whole_off_a_terminal_and_fold_on_a_narrow_one(tmp_path):
    """Off a terminal (a file, | tee, a CI log: no COLUMNS) the tables take the width they need; on an
    80-column terminal every cell folds onto more lines, and nothing is ever cut to an ellipsis."""
    from rich.console import Console

    from sqabench.quality.report import print_tables
    from sqabench.quality.rows import read_rows

    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,sqa,swa"), "--seeds", "2", "--out", str(out)],
                           env={"COLUMNS": None})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "no detectable difference at this budget" in result.output
    assert "diff vs mha" in result.output and "verdict" in result.output
    narrow = Console(width=80, force_terminal=True, record=True)
    print_tables(read_rows(out), "mha", narrow)
    text = narrow.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80


def test_reproduce_quality_on_a_cpu_takes_the_cpu_scaling_and_on_a_gpu_the_papers():
    from sqabench.quality.reproduce import quality_options

    cpu, gpu = quality_options(False, on_gpu=False, data="x"), quality_options(False, on_gpu=True, data="x")
    assert (cpu.seq, cpu.batch, cpu.budget) == (256, 8, "10m")  # what a CPU affords of Table 1's protocol
    assert (gpu.seq, gpu.batch, gpu.budget) == (1024, 128, "10m")  # Table 1's context and batch
    moe = quality_options(True, on_gpu=True, data="x")
    assert (moe.seq, moe.batch, moe.preset, moe.baseline) == (256, 256, "paper-moe", "gqa")
    assert quality_options(False, on_gpu=False, data="x", steps=5).budget is None  # --steps instead of a budget


def test_a_directory_as_out_is_named_and_never_offered_a_resume(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    result = runner.invoke(app, [*quick(), "--out", str(folder)])
    assert result.exit_code == 2 and "is a directory; give a .csv file path" in result.output
    assert "--resume" not in result.output


def test_the_papers_layout_labels_its_training_loss_as_scoring_the_pads():
    from rich.console import Console

    from sqabench.quality.progress import QualityDisplay

    console = Console(record=True, width=200)
    display = QualityDisplay(console, 10, pads_scored=True)
    display.start("mha seed 0", 10)
    display.evaluated({"step": 5, "train_loss": 0.5, "val_loss": 2.0, "val_accuracy": 0.4})
    text = console.export_text()
    assert "train loss (pads scored) 0.5, held-out loss 2, accuracy 0.400 (real tokens)" in text
    assert "(10 steps)" in text


def test_the_probe_warms_the_process_up_and_leaves_each_variants_first_step_out(monkeypatch):
    """A scripted train: the warm-up call comes first (one step of the first variant), then each variant's
    probe, whose first step (300 ms) is left out of its median (10 ms) and whose spread is (12 - 8) / 10."""
    import sqabench.quality.train as training
    from sqabench.quality.budget import PROBE_STEPS, probe
    from sqabench.quality.mqar import MQARSize
    from sqabench.quality.plan import Plan
    from sqabench.quality.tasks import MQARTask
    from sqabench.quality.train import RunResult

    calls = []

    def scripted(cfg, spec, seed, **kw):
        calls.append((spec.name, cfg.steps))
        steps = [300.0, 8.0, 10.0, 12.0, 10.0, 10.0][: cfg.steps]
        return RunResult({"val_loss": 1.0, "val_accuracy": 0.5}, {}, 10.0, 1.0, 0.05, 1, [], steps)

    monkeypatch.setattr(training, "train", scripted)
    cfg = TrainConfig(MQARTask(MQARSize(64, 32, 4)), TEXT_MODEL, steps=100, batch=8, eval_every=10)
    plan = Plan(cfg, [get_variant("mha", 4), get_variant("sqa", 4)], [0], None, "mha")
    found = probe(plan)
    assert calls == [("mha", 1), ("mha", PROBE_STEPS), ("sqa", PROBE_STEPS)]
    assert found["sqa"].step_s == pytest.approx(0.010) and found["sqa"].spread == pytest.approx(0.4)


def _a_run(tmp_path, seeds="2") -> Path:
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", seeds, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _edit(path: Path, line: int, column: str, value: str) -> None:
    rows = list(csv.DictReader(path.open()))
    rows[line - 2][column] = value
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize(
    "command, file, line, column, value, says",
    [("resume", "q.csv", 3, "val_loss", "abc", "line 3: val_loss=abc is not a number"),
     ("resume", "q.csv", 2, "val_loss", "nan", "line 2: val_loss=nan in a finished run; it must be a finite number"),
     ("plot", "q.csv", 4, "val_accuracy", "nan", "line 4: val_accuracy=nan in a finished run"),
     ("plot", "q.csv", 2, "status", "bogus", "line 2: unknown status 'bogus'; expected one of ok, oom"),
     ("plot", "q-curves.csv", 3, "step", "three", "line 3: step=three is not a whole number"),
     ("report", "q.csv", 5, "seed", "x", "line 5: seed=x is not a whole number")],
)  # fmt: skip
def test_a_quality_file_no_run_writes_is_one_line_exit_2(tmp_path, command, file, line, column, value, says):
    out = _a_run(tmp_path)
    _edit(tmp_path / file, line, column, value)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    args = {
        "resume": [*quick("--variants", "mha,sqa"), "--seeds", "3", "--out", str(out), "--resume"],
        "plot": ["plot", str(out), "--out", str(tmp_path / "p")],
        "report": ["report", str(out)],
    }[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and says in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_cut_short_quality_file_names_its_line(tmp_path):
    out = _a_run(tmp_path)
    text = out.read_text()
    out.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # the last row cut in half
    result = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "3", "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "line 5 is cut short" in result.output and "Traceback" not in result.output


def test_a_plan_no_machine_would_finish_is_refused(tmp_path):
    result = runner.invoke(app, [*quick("--steps", "1000000000"), "--seeds", "1000", "--dry-run"])
    assert result.exit_code == 2 and "years here: no machine would finish it" in " ".join(result.output.split())


def test_a_ms_column_reads_whole_from_100_never_in_e_notation():
    from sqabench.quality.tables import _ms

    assert [_ms(ms) for ms in (7.481, 99.94, 111.2, 7450.4, 12_340)] == ["7.48", "99.9", "111", "7450", "12340"]


def test_a_dry_run_states_what_its_seeds_can_detect_and_in_the_pilots_units(corpus):
    """The planned MDE in units of the noise (5 seeds, a family of one difference: the t at 1 - 0.05/2 on 4 df),
    and with --pilot in the metric's: sqa's own paired differences from mha, their sd recomputed here by hand."""
    from sqabench.quality.stats import planned_mde

    pilot = Path(__file__).parent.parent / "results" / "cpu-amd-epyc-quality-kjv-bytes.csv"
    rows = [r for r in csv.DictReader(pilot.open()) if r["status"] == "ok"]
    loss = {(r["variant"], int(r["seed"])): float(r["val_loss"]) for r in rows}
    d = [loss[("sqa", s)] - loss[("mha", s)] for s in range(10)]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    result = runner.invoke(app, [*QUICK, "--data", str(corpus), "--dry-run", "--pilot", str(pilot)],
                           env={"COLUMNS": "400"})  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    factor = planned_mde(5, 1)
    assert 1.5 < factor < 2.5  # about (t_.975 + t_.80) at df 4 over sqrt 5 (4.0 / 2.24)
    assert (
        f"with 5 seeds, in a family of 1 verdict (each pair's own noise, paired t on 4 df, Holm): {factor:.2f} x"
        in text
    )
    assert f"from --pilot {pilot}, in val loss against mha: sqa {factor * sd:.3g}" in text
