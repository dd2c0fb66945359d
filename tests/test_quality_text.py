"""sqabench quality on text: reading corpora, the held-out split, packing without padding, bits per byte, the
paper's padded pipeline beside the honest one, checkpoints and --resume, --equal flops and --budget.

Every reference here is computed on its own: the documents' bytes, the unigram entropy, the expected
windows, each from the generated text and not from sqabench's code."""

import contextlib
import csv
import json
import math
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sqabench.cli import app
from sqabench.quality.corpus import read_documents, split
from sqabench.errors import ConfigError
from sqabench.presets import Preset
from sqabench.quality.tasks import text_task
from sqabench.quality.train import Checkpoint, TrainConfig, train
from sqabench.variants import get_variant

runner = CliRunner()
NOUNS, VERBS, ADJ = "cat dog bird fish horse mouse".split(), "sees chases likes finds".split(), "big red old".split()


def documents(n: int = 120, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    def sentence() -> str:
        return f"the {rng.choice(ADJ)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)}."

    return [f"no. {i:04d}: " + " ".join(sentence() for _ in range(rng.randint(1, 4))) for i in range(n)]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(documents()) + "\n")
    return path


def test_every_format_reads_the_same_documents(tmp_path):
    pytest.importorskip("pyarrow")  # the test extra has it; a GPU machine's Python may not
    docs = documents(12)
    (tmp_path / "a.txt").write_text("\n\n \n".join(docs) + "\n")
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, doc in enumerate(docs):
        (folder / f"{i:03d}.txt").write_text(doc + "\n")
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    import pandas as pd

    pd.DataFrame({"text": docs}).to_parquet(tmp_path / "a.parquet")
    for path in ("a.txt", "docs", "a.jsonl", "a.parquet"):
        assert read_documents(tmp_path / path) == docs, path


def test_the_held_out_split_is_whole_documents_by_content_whatever_the_order():
    docs = documents(200)
    train, held = split(docs, 0.1)
    assert 20 <= len(held) <= 22 and len(train) + len(held) == len(docs)
    assert not set(train) & set(held)  # a text is on one side only (copies of it too)
    shuffled = docs[::-1]
    assert sorted(split(shuffled, 0.1)[1]) == sorted(held)


def _stream_of(task) -> bytes:
    return bytes(t for t in task.train_tokens.tolist() if t < 256)


def test_packing_leaves_no_padding_and_no_held_out_document_in_training(corpus):
    task = text_task(corpus, "bytes", None, 32, 0.1, False)
    tok = task.tokenizer
    train_docs, held_docs = split(read_documents(corpus), 0.1)
    # the training stream is exactly the training documents, each followed by one EOD
    expected = [b for d in train_docs for b in (*d.encode(), tok.eod)]
    assert task.train_tokens.tolist() == expected
    text = _stream_of(task).decode()
    assert not any(doc in text for doc in held_docs)  # each document is unique (its number)
    for step in range(1, 6):
        inputs, labels = task.batch(seed=0, step=step, n=8)
        assert not (inputs == tok.pad).any() and not (labels == tok.pad).any()
        assert (labels != -100).all()  # every training position is a real target
        assert torch.equal(inputs[:, 1:], labels[:, :-1])  # labels are the next tokens, not the same ones


def test_every_held_out_token_is_predicted_once_and_nothing_else_is_scored(corpus):
    """Scored whole (the set is smaller than the budget): the stream EOD, doc, EOD, doc, EOD...; every token of
    every document and each document's closing EOD predicted once, in order, from what comes before it."""
    task = text_task(corpus, "bytes", None, 32, 0.1, False)
    _, held_docs = split(read_documents(corpus), 0.1)
    eod = task.tokenizer.eod
    flat = [eod] + [b for d in held_docs for b in (*d.encode(), eod)]
    held = task.held_out(0)
    scored = held.labels[held.labels != -100].tolist()
    assert scored == flat[1:]  # each token after the leading EOD, once, in order
    rows, seq = held.inputs.tolist(), task.seq_len
    for i, row in enumerate(rows):  # a label at t is the input at t + 1 (or, at a window's end, the next window's)
        for t in range(seq):
            if held.labels[i, t] != -100:
                assert held.labels[i, t] == flat[i * seq + t + 1] and row[t] == flat[i * seq + t]
    assert held.padded_labels is None and task.eval_docs == len(held_docs)


def test_an_evaluation_scores_the_same_share_of_every_held_out_document(tmp_path):
    """60 held-out documents of different lengths, a budget of a tenth of their text: each document's scored
    piece is the middle tenth of its bytes (to the byte with bytes; to within a token at each end with a BPE:
    the same text), each read after the document's text before it (context, not scored)."""
    rng = random.Random(4)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa"]
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 400))) for _ in range(1200)]
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(docs))
    _, held_docs = split(read_documents(path), 0.05)
    assert len(held_docs) == 60
    total = sum(len(d.encode()) + 1 for d in held_docs)
    budget = total // 10
    task = text_task(path, "bytes", None, 64, 0.05, False, eval_tokens=budget)
    held = task.held_out(0)
    share = budget / total
    expected = []  # reference: the bytes i of each document with middle_start <= i and i + 1 <= middle_end
    for d in held_docs:
        data = d.encode()
        start = (len(data) - share * len(data)) / 2
        expected += [b for i, b in enumerate(data) if i >= start and i + 1 <= start + share * len(data)]
    scored = held.labels[held.labels != -100].tolist()
    assert task.tokenizer.eod not in scored and scored == expected
    assert task.eval_docs == 60 and task.describe()["eval_docs"] == 60 and task.scored == len(expected) <= budget
    for row_in, row_out in zip(held.inputs, held.labels):  # each scored byte is read after the bytes before it
        first = int((row_out != -100).nonzero()[0])
        assert first == 0 or (row_in[: first + 1] != task.tokenizer.pad).all()  # context, not padding
        assert all(row_in[j + 1] == row_out[j] for j in range(first, 63) if row_out[j + 1] != -100)
        # as much context as a window holds: it ends at its last scored byte, or starts at the document (EOD)
        last = int((row_out != -100).nonzero()[-1])
        assert last == 63 or row_in[0] == task.tokenizer.eod
    if pytest.importorskip("tokenizers"):
        bpe = text_task(path, "bpe", 300, 64, 0.05, False, eval_tokens=budget)
        pieces = bpe.held_out(0).labels
        text_bytes = sum(bpe.tokenizer.byte_lengths[t] for t in pieces[pieces != -100].tolist())
        assert len(expected) - 60 * 16 <= text_bytes <= len(expected)  # within a BPE token (here < 8 bytes) an end


def test_bits_per_byte_count_the_texts_bytes_whatever_the_tokenizer(corpus):
    """bytes: bits per byte is the loss over ln 2. bpe: the bytes counted are the held-out text's UTF-8 bytes
    plus one per closing EOD (the set is scored whole)."""
    from sqabench.quality.train import evaluate

    pytest.importorskip("tokenizers")
    _, held_docs = split(read_documents(corpus), 0.1)
    for name in ("bytes", "bpe"):
        task = text_task(corpus, name, 300 if name == "bpe" else None, 32, 0.1, False)
        held = task.held_out(0)
        model = _model(task.vocab)
        metrics = evaluate(model, task, held, contextlib.nullcontext, 16)
        total = sum(len(d.encode()) + 1 for d in held_docs)
        assert metrics["val_bpb"] == pytest.approx(metrics["val_loss"] * _scored(held) / math.log(2) / total)
        if name == "bytes":
            assert metrics["val_bpb"] == pytest.approx(metrics["val_loss"] / math.log(2))


def _scored(held) -> int:
    return int((held.labels != -100).sum())


def _model(vocab: int):
    from sqabench.encoder import build_encoder

    preset = Preset("t", d_model=32, n_layers=1, n_heads=4, d_ff=64, vocab_size=vocab)
    return build_encoder(get_variant("mha", 4), preset, "sdpa", True, torch.device("cpu"), torch.float32, seed=0)


TINY = Preset("text-test", d_model=64, n_layers=2, n_heads=4, d_ff=128, vocab_size=259)


def test_training_drives_the_loss_well_below_the_unigram_entropy(corpus):
    task = text_task(corpus, "bytes", None, 64, 0.1, False)
    held = task.held_out(0)
    targets = held.labels[held.labels != -100].tolist()
    counts = Counter(targets)
    unigram = -sum(c / len(targets) * math.log(c / len(targets)) for c in counts.values())  # nats a token
    result = train(TrainConfig(task, TINY, steps=150, batch=16, lr=3e-3, eval_every=150), get_variant("mha", 4), 0)
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
    result = train(TrainConfig(task, TINY, steps=60, batch=16, eval_every=60), get_variant("mha", 4), 0)
    m = result.metrics
    assert m["val_loss_padded"] < m["val_loss"] and m["val_accuracy_padded"] > m["val_accuracy"], m


def test_a_run_resumed_from_its_checkpoint_ends_bit_for_bit_as_one_that_never_stopped(corpus, tmp_path):
    task = text_task(corpus, "bytes", None, 32, 0.1, False)
    cfg = TrainConfig(task, TINY, steps=8, batch=4, eval_every=4)
    spec = get_variant("sqa", 4)
    whole = train(cfg, spec, 1)
    checkpoint = Checkpoint(tmp_path / "c.pt", cfg.key(spec, 1), every_s=0.0)

    def stop_at_5(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, spec, 1, on_step=stop_at_5, checkpoint=checkpoint)
    assert torch.load(checkpoint.path, weights_only=False)["step"] == 5
    resumed = train(cfg, spec, 1, checkpoint=checkpoint)
    assert [r["train_loss"] for r in resumed.curve] == [r["train_loss"] for r in whole.curve]
    assert resumed.metrics == whole.metrics
    other = Checkpoint(checkpoint.path, TrainConfig(task, TINY, steps=9, batch=4, eval_every=4).key(spec, 1))
    with pytest.raises(ConfigError, match="another configuration .*steps"):
        train(cfg, spec, 1, checkpoint=other)


QUICK = ["quality", "--device", "cpu", "--steps", "4", "--batch", "4", "--eval-every", "2", "--d-model", "16",
         "--heads", "4", "--layers", "1", "--seq", "32", "--variants", "mha,sqa"]  # fmt: skip


def quick(*args: str | None) -> list[str]:
    """QUICK with ``args`` (option, value, ...) in place of its own values; a value None drops the option."""
    pairs = dict(zip(QUICK[1::2], QUICK[2::2]))
    extra = []
    for option, value in zip(args[::2], args[1::2]):
        if option in pairs and value is None:
            del pairs[option]
        elif option in pairs:
            pairs[option] = value
        else:
            extra += [option] if value == "" else [option, value]
    return ["quality", *(part for item in pairs.items() for part in item), *extra]


def test_resume_keeps_finished_runs_and_refuses_other_options(corpus, tmp_path, monkeypatch):
    out = tmp_path / "q.csv"
    first = runner.invoke(app, [*QUICK, "--data", str(corpus), "--seeds", "1", "--out", str(out)])
    assert first.exit_code == 0, first.output
    import sqabench.quality.train as quality

    trained = []
    real = quality.train
    monkeypatch.setattr(quality, "train", lambda cfg, spec, seed, **kw: trained.append((spec.name, seed)) or
                        real(cfg, spec, seed, **kw))  # fmt: skip
    again = runner.invoke(app, [*QUICK, "--data", str(corpus), "--seeds", "2", "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    assert trained == [("mha", 1), ("sqa", 1)]  # seed 0's runs were kept, not trained again
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["seed"]) for r in rows] == [("mha", "0"), ("sqa", "0"), ("mha", "1"), ("sqa", "1")]
    curves = list(csv.DictReader(out.with_name("q-curves.csv").open()))
    assert len(curves) == 8 and len({c["run_id"] for c in curves}) == 1
    before = out.read_text()
    other = runner.invoke(app, [*quick("--steps", "6"), "--data", str(corpus), "--seeds", "2", "--out", str(out),
                                "--resume"])  # fmt: skip
    assert other.exit_code == 2 and "trained with other options" in " ".join(other.output.split())
    assert out.read_text() == before


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
    from sqabench.quality.mqar import MQARSize
    from sqabench.quality.budget import Probe, estimate_s, fit_budget
    from sqabench.quality.plan import Plan
    from sqabench.quality.tasks import MQARTask

    cfg = TrainConfig(MQARTask(MQARSize(64, 32, 4)), TINY, steps=1, batch=8, eval_every=10)
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
    assert not any(tmp_path.glob("q*"))


def test_a_plan_of_one_says_one_variant_one_seed_one_run(corpus, tmp_path):
    result = runner.invoke(app, [*quick("--variants", "mha"), "--seeds", "1", "--data", str(corpus), "--dry-run"],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 variant x 1 seed, 1 run to train" in " ".join(result.output.split())


def test_a_bpe_is_trained_once_and_cached(corpus, monkeypatch):
    pytest.importorskip("tokenizers")
    from sqabench.files import cache_dir
    from sqabench.quality import tokenizer

    first = tokenizer.get_tokenizer("bpe", documents(50), 300)
    assert first.vocab == 300 and sum(first.byte_lengths) > 256
    (cached,) = (cache_dir() / "tokenizers").glob("bpe2-*-300.json")
    stamp = cached.stat().st_mtime_ns
    again = tokenizer.get_tokenizer("bpe", documents(50), 300)
    assert cached.stat().st_mtime_ns == stamp and again.encode(["the cat"]) == first.encode(["the cat"])
    ids = first.encode(documents(3))
    assert all(sum(first.byte_lengths[i] for i in doc) == len(d.encode()) for doc, d in zip(ids, documents(3)))


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


def test_a_tokens_file_trains_on_exactly_the_tokens_and_split_it_was_made_with(corpus, tmp_path):
    """sqabench tokenize, then --data FILE.tokens: the same held-out documents and training stream as the corpus
    itself gives, without the tokenizer; options that would change them are refused."""
    pytest.importorskip("tokenizers")
    path = tmp_path / "c.tokens"
    made = runner.invoke(app, ["tokenize", str(corpus), "--vocab", "300", "--out", str(path)])
    assert made.exit_code == 0 and path.is_file(), made.output
    direct = text_task(corpus, "bpe", 300, 32, None, False)
    loaded = text_task(path, None, None, 32, None, False)
    assert torch.equal(direct.train_tokens, loaded.train_tokens)
    assert torch.equal(direct.held.inputs, loaded.held.inputs) and torch.equal(direct.held.labels, loaded.held.labels)
    assert loaded.tokenizer.byte_lengths == direct.tokenizer.byte_lengths and loaded.corpus == direct.corpus
    for args, message in ((["--vocab", "400"], "was tokenized with --vocab 300"),
                          (["--tokenizer", "bytes"], "was tokenized with --tokenizer bpe"),
                          (["--held-out", "0.2"], "was tokenized with --held-out 0.05")):  # fmt: skip
        result = runner.invoke(app, [*QUICK, "--data", str(path), *args, "--out", str(tmp_path / "q.csv")])
        assert result.exit_code == 2 and message in result.output, result.output
    (tmp_path / "junk.tokens").write_bytes(b"not a tokens file")
    result = runner.invoke(app, [*QUICK, "--data", str(tmp_path / "junk.tokens"), "--out", str(tmp_path / "q.csv")])
    assert result.exit_code == 2 and "is not a tokens file" in result.output
    assert not (tmp_path / "q.csv").exists()


def test_plot_tells_a_quality_csv_by_its_columns_and_draws_curves_and_trade(corpus, tmp_path):
    out = tmp_path / "q.csv"
    assert runner.invoke(app, [*QUICK, "--data", str(corpus), "--out", str(out)]).exit_code == 0
    for given in (out, tmp_path / "q-curves.csv"):  # the CSV, or its curves file
        folder = tmp_path / f"plots-{given.stem}"
        result = runner.invoke(app, ["plot", str(given), "--out", str(folder)])
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in folder.iterdir()) == ["quality-curves.png", "quality-curves.svg",
                                                              "quality-trade.png", "quality-trade.svg"]  # fmt: skip
    bad = runner.invoke(app, ["plot", str(out), "--baseline", "gqa", "--out", str(tmp_path / "p")])
    assert bad.exit_code == 2 and "gqa" in bad.output and not (tmp_path / "p").exists()


def test_the_trade_figure_rings_only_variants_no_other_beats_on_both_axes():
    from sqabench.quality.figures import _front

    # (step ms, loss): b is faster and better than c; a is slowest and best; d is fastest and worst
    points = [(10.0, 1.0), (5.0, 1.2), (6.0, 1.3), (2.0, 2.0)]
    assert _front(points, higher=False) == [True, True, False, True]
    assert _front([(1.0, 0.5), (2.0, 0.9)], higher=True) == [True, True]
    assert _front([(1.0, 0.9), (2.0, 0.5)], higher=True) == [True, False]


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


def test_ctrl_c_keeps_the_finished_runs_and_the_checkpoint_and_says_how_to_go_on(corpus, tmp_path, monkeypatch):
    import sqabench.quality.train as quality

    out = tmp_path / "q.csv"
    real, calls = quality.train, []

    def second_run_interrupted(cfg, spec, seed, on_step=lambda step: None, **kw):
        calls.append(spec.name)

        def stop(step):
            on_step(step)
            if len(calls) == 2 and step == 3:
                raise KeyboardInterrupt

        return real(cfg, spec, seed, on_step=stop, **kw)

    monkeypatch.setattr(quality, "train", second_run_interrupted)
    args = [*quick("--checkpoint-every", "0.000001"), "--data", str(corpus), "--seeds", "1", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    text = " ".join(result.output.split())
    assert "interrupted: 1 finished run kept" in text and f"--resume --out {out}" in text
    assert [r["variant"] for r in csv.DictReader(out.open())] == ["mha"]
    (checkpoint,) = (tmp_path / "q-checkpoints").iterdir()
    assert checkpoint.name == "sqa-seed0.pt" and torch.load(checkpoint, weights_only=False)["step"] == 3
    monkeypatch.setattr(quality, "train", real)
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [r["variant"] for r in csv.DictReader(out.open())] == ["mha", "sqa"]
    assert not (tmp_path / "q-checkpoints").exists()  # removed once the rows are written
    steps = [int(c["step"]) for c in csv.DictReader(out.with_name("q-curves.csv").open()) if c["variant"] == "sqa"]
    assert steps == [2, 4]  # the checkpoint's point once, then the rest: no point twice


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


def test_bf16_autocast_trains_and_differences_are_paired_against_gqa_too(tmp_path):
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,gqa,sqa"), "--dtype", "bf16", "--seeds", "2", "--out",
                                 str(out)], env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert {r["dtype"] for r in rows} == {"bf16"} and all(math.isfinite(float(r["val_loss"])) for r in rows)
    assert "diff vs mha" in result.output and "diff vs gqa" in result.output


def test_a_run_out_of_memory_is_a_row_of_its_own_and_the_next_goes_on(tmp_path, monkeypatch):
    import sqabench.quality.train as quality

    real = quality.train

    def short_of_memory(cfg, spec, seed, **kw):
        if spec.name == "mha":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(cfg, spec, seed, **kw)

    monkeypatch.setattr(quality, "train", short_of_memory)
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,sqa,gqa"), "--seeds", "2", "--out", str(out)],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["status"]) for r in rows] == [("mha", "oom"), ("sqa", "ok"), ("gqa", "ok")] * 2
    assert "out of memory" in rows[0]["error"] and rows[0]["val_loss"] == ""
    assert "mha seed 0: oom" in " ".join(result.output.split())
    assert "no baseline run to pair with" in result.output  # sqa has no mha run to be paired with
    # --resume: a dry run rewrites nothing, even where a real resume would (a curve point of a run that did
    # not finish, the oom rows), and a variant its probe cannot time is refused in one line; a resume that
    # would not train mha refuses its rows; a real one trains the oom runs again and leaves no failed row
    curves = out.with_name("q-curves.csv")
    with curves.open("a") as handle:
        handle.write(curves.read_text().splitlines()[1].replace(",sqa,0,", ",mha,0,") + "\n")
    before = (out.read_bytes(), curves.read_bytes())
    args = [*quick("--variants", "mha,sqa,gqa"), "--seeds", "2", "--out", str(out), "--resume"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 2 and (out.read_bytes(), curves.read_bytes()) == before, dry.output
    assert "the probe of mha failed (oom: CUDA out of memory" in " ".join(dry.output.split())
    assert isinstance(dry.exception, SystemExit) and "Traceback" not in dry.output  # one line, no traceback
    monkeypatch.setattr(quality, "train", lambda cfg, spec, seed, **kw: real(cfg, spec, seed, **kw))
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0 and (out.read_bytes(), curves.read_bytes()) == before, dry.output
    narrow = runner.invoke(app, [*quick("--variants", "sqa,gqa"), "--seeds", "2", "--baseline", "sqa", "--out",
                                 str(out), "--resume"])  # fmt: skip
    assert narrow.exit_code == 2 and "holds mha seed 0, which these options do not train" in narrow.output
    assert (out.read_bytes(), curves.read_bytes()) == before
    monkeypatch.setattr(quality, "train", real)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    rows = list(csv.DictReader(out.open()))
    assert sorted((r["variant"], r["seed"], r["status"]) for r in rows) == sorted(
        (v, s, "ok") for v in ("mha", "sqa", "gqa") for s in ("0", "1"))


def test_a_refused_resume_changes_no_file(corpus, tmp_path):
    """An unfinished run's curve points are dropped by --resume only once every row and checkpoint is accepted:
    a checkpoint of a run these options do not train refuses the resume and leaves the curves as they were."""
    out = tmp_path / "q.csv"
    assert runner.invoke(app, [*QUICK, "--data", str(corpus), "--seeds", "1", "--out", str(out)]).exit_code == 0
    curves = out.with_name("q-curves.csv")
    with curves.open("a") as handle:  # a point of a run that did not finish (seed 1's mha)
        handle.write(curves.read_text().splitlines()[1].replace(",mha,0,", ",mha,1,") + "\n")
    before = curves.read_text()
    (tmp_path / "q-checkpoints").mkdir()
    (tmp_path / "q-checkpoints" / "nope-seed0.pt").write_bytes(b"")
    result = runner.invoke(app, [*QUICK, "--data", str(corpus), "--seeds", "2", "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "do not train" in result.output, result.output
    assert curves.read_text() == before


def test_a_second_run_on_one_file_is_refused_before_it_touches_anything(tmp_path):
    """Two `quality --resume` on one --out: while the first holds the file's lock, the second exits 2, naming
    it, and no file changes (a resume would otherwise rewrite the curves)."""
    from sqabench.files import RunLock

    out = tmp_path / "q.csv"
    first = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "1", "--out", str(out)])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with RunLock(out):  # the first run, still writing
        second = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "2", "--out", str(out), "--resume"])
    assert second.exit_code == 2 and "is being written by another sqabench run" in second.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_sticky_cuda_error_stops_the_runs_and_says_how_to_continue(tmp_path, monkeypatch):
    import sqabench.quality.train as quality

    real, trained = quality.train, []

    def broken_gpu(cfg, spec, seed, **kw):
        trained.append((spec.name, seed))
        if spec.name == "sqa":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(cfg, spec, seed, **kw)

    monkeypatch.setattr(quality, "train", broken_gpu)
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,sqa,gqa"), "--seeds", "2", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert trained == [("mha", 0), ("sqa", 0)]  # gqa and seed 1 never start on a GPU left unusable
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["status"]) for r in rows] == [("mha", "ok"), ("sqa", "error")]
    text = " ".join(result.output.split())
    assert "a sticky CUDA error fails every later run" in text and f"--resume --out {out}" in text
    assert "Traceback" not in result.output and not (tmp_path / "q.csv.lock").exists()


def test_the_papers_rows_are_bos_text_eos_then_pads_of_seq_tokens_as_rxnns_tokenizer_makes_them():
    """RxNN: template [BOS] $A [EOS], max_length seq, truncation keeping both, padding to seq; the trainer
    scores logits[:, :-1] against the row's own tokens [:, 1:], pads included. Written out for seq 6."""
    from sqabench.quality.corpus import IGNORE, evaluation_rows, padded

    bos, eos, pad = 90, 91, 92
    rows = padded([[1, 2], [3, 4, 5, 6, 7, 8]], seq=6, bos=bos, eos=eos, pad=pad)
    assert rows.inputs.tolist() == [[bos, 1, 2, eos, pad, pad], [bos, 3, 4, 5, 6, eos]]  # EOS kept when cut
    assert rows.padded_labels.tolist() == [[1, 2, eos, pad, pad, IGNORE], [3, 4, 5, 6, eos, IGNORE]]
    assert rows.labels.tolist() == [[1, 2, eos, IGNORE, IGNORE, IGNORE], [3, 4, 5, 6, eos, IGNORE]]
    # the evaluation counts real tokens (3 and 5 here: 4 a row): a budget of 4 keeps one row, of 8 both
    kept, count = evaluation_rows(rows, 4)
    assert count == 1 and int((kept.labels != IGNORE).sum()) == 3
    assert evaluation_rows(rows, 8)[1] == 2
    # ten short documents, 2 real labels in a row of 8: 10 real tokens take five rows (counting the pads, two)
    short = padded([[7]] * 10, seq=8, bos=bos, eos=eos, pad=pad)
    kept, count = evaluation_rows(short, 10)
    assert count == 5 and int((kept.labels != IGNORE).sum()) == 10


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


def test_resume_on_a_missing_file_starts_it_as_run_does(tmp_path):
    """One rule for --resume on a file that does not exist yet, in `run` and `quality`: start it afresh, saying
    so (a CI loop that always passes --resume works from its first call)."""
    out = tmp_path / "q.csv"
    result = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "1", "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert f"--resume: {out} does not exist yet; starting it afresh" in " ".join(result.output.split())
    assert [r["variant"] for r in csv.DictReader(out.open())] == ["mha", "sqa"]


def test_resume_after_the_curves_were_deleted_says_which_runs_lost_them(corpus, tmp_path):
    out = tmp_path / "q.csv"
    first = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "1", "--out", str(out)])
    assert first.exit_code == 0, first.output
    (tmp_path / "q-curves.csv").unlink()
    again = runner.invoke(app, [*quick("--variants", "mha,sqa"), "--seeds", "2", "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    assert "holds no curve of mha seed 0, sqa seed 0" in " ".join(again.output.split())


def test_tokenize_refuses_to_overwrite_and_an_out_it_cannot_create(corpus, tmp_path):
    out = tmp_path / "c.tokens"
    made = runner.invoke(app, ["tokenize", str(corpus), "--tokenizer", "bytes", "--out", str(out)])
    assert made.exit_code == 0, made.output
    before = out.read_bytes()
    again = runner.invoke(app, ["tokenize", str(corpus), "--tokenizer", "bytes", "--out", str(out)])
    assert again.exit_code == 2 and "exists; remove it first" in again.output and out.read_bytes() == before
    proc = runner.invoke(app, ["tokenize", str(corpus), "--tokenizer", "bytes", "--out", "/proc/nope.tokens"])
    assert proc.exit_code == 2 and "/proc/nope.tokens" in proc.output and "Traceback" not in proc.output
    named = runner.invoke(app, ["tokenize", str(corpus), "--tokenizer", "BYTES"])
    assert named.exit_code == 0 and (corpus.parent / "corpus-bytes.tokens").is_file()  # never "-BYTES"


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
    print_tables(read_rows(out), "mha", 2, narrow)
    text = narrow.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80


def test_a_bpe_learns_only_from_the_training_documents(tmp_path, monkeypatch):
    """Every document repeats a word of its own; a BPE trained on the held-out documents too would learn their
    words as tokens. Every token of ours that spells more than a byte occurs in the training text."""
    pytest.importorskip("tokenizers")
    from sqabench.quality.tokens import tokenize

    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path / "cache"))
    docs = [" ".join([f"w{i:03d}qz"] * 40 + ["the cat sat on the mat"]) for i in range(100)]
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(docs))
    tokens = tokenize(path, "bpe", 600, 0.1)
    train_text = " ".join(
        doc for doc in docs if not any(doc.startswith(h.split()[0]) for h in _held_texts(path, 0.1)))  # fmt: skip
    bpe = tokens.tokenizer._bpe
    learned = [bpe.decode([i]) for i in range(bpe.get_vocab_size())]
    words = [t.strip() for t in learned if "\ufffd" not in t and len(t.strip().encode()) > 1]  # whole characters
    strangers = [w for w in words if w not in train_text]
    assert not strangers, strangers[:10]
    assert len(tokens.held) == 10 and any("qz" in t for t in learned)  # the training documents' words were learned


def _held_texts(path, share):
    from sqabench.quality.corpus import read_documents, split

    return split(read_documents(path), share)[1]


def test_reproduce_quality_on_a_cpu_takes_the_cpu_scaling_and_on_a_gpu_the_papers():
    from sqabench.quality.reproduce import quality_options

    cpu, gpu = quality_options(False, on_gpu=False, data="x"), quality_options(False, on_gpu=True, data="x")
    assert (cpu.seq, cpu.batch, cpu.budget) == (256, 8, "10m")  # what a CPU affords of Table 1's protocol
    assert (gpu.seq, gpu.batch, gpu.budget) == (1024, 128, "10m")  # Table 1's context and batch
    moe = quality_options(True, on_gpu=True, data="x")
    assert (moe.seq, moe.batch, moe.preset, moe.baseline) == (256, 256, "paper-moe", "gqa")
    assert quality_options(False, on_gpu=False, data="x", steps=5).budget is None  # --steps instead of a budget


def test_the_trade_figure_rings_the_variant_that_is_faster_and_better_never_the_one_beaten(tmp_path):
    """Hand-made text rows: b is faster and lower in loss than c; the figure rings b (and a, the slowest but
    best; and d, the fastest), never c, on the step-time panel."""
    import matplotlib

    matplotlib.use("Agg")
    from sqabench.quality.figures import quality_figures

    points = {"a": (10.0, 1.0), "b": (5.0, 1.2), "c": (6.0, 1.3), "d": (2.0, 2.0)}
    rows = [{"task": "text", "variant": v, "seed": s, "val_loss": loss + 0.01 * s, "val_accuracy": 0.5, "step_ms": ms,
             "solved": "", "steps_to_90": "", "n_q_heads": 4, "n_kv_heads": 4, "window": "", "status": "ok",
             "steps": 10, "train_flops": 1e9 * ms} for v, (ms, loss) in points.items() for s in range(3)]  # fmt: skip
    figures, _ = quality_figures(rows, [], "a")
    panel = figures["quality-trade"].axes[0]
    from matplotlib.collections import PathCollection

    ringed = {tuple(map(float, xy)) for c in panel.collections if isinstance(c, PathCollection)
              for xy in c.get_offsets()}  # the rings: the only scatter of the panel  # fmt: skip
    assert {round(x, 1) for x, _ in ringed} == {10.0, 5.0, 2.0}


def test_a_parquet_corpus_without_text_is_named_plainly(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    from sqabench.quality.corpus import read_documents

    pd.DataFrame({"text": [1, 2, 3]}).to_parquet(tmp_path / "int.parquet")
    pd.DataFrame({"body": ["a", "b"]}).to_parquet(tmp_path / "body.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    for name, said in (("int", "its 'text' column holds int64, not text"), ("body", "has no 'text' column (its "
                       "columns: body)"), ("junk", "is not a readable parquet file (ArrowInvalid)")):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            read_documents(tmp_path / f"{name}.parquet")
        assert said in str(caught.value) and "\n" not in str(caught.value)


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
    cfg = TrainConfig(MQARTask(MQARSize(64, 32, 4)), TINY, steps=100, batch=8, eval_every=10)
    plan = Plan(cfg, [get_variant("mha", 4), get_variant("sqa", 4)], [0], None, "mha")
    found = probe(plan)
    assert calls == [("mha", 1), ("mha", PROBE_STEPS), ("sqa", PROBE_STEPS)]
    assert found["sqa"].step_s == pytest.approx(0.010) and found["sqa"].spread == pytest.approx(0.4)


def test_the_quality_figures_titles_ticks_and_bars(tmp_path):
    """The curves' title names the measure once; one evaluation point gives whole step ticks; the trade figure has
    a title, the seeds' step-time range as x bars, and its FLOPs axis says its power of ten in the label."""
    import matplotlib

    matplotlib.use("Agg")
    from sqabench.quality.figures import quality_figures

    rows = [{"task": "mqar", "variant": v, "seed": s, "val_loss": 1.0, "val_accuracy": acc + 0.01 * s,
             "step_ms": ms * (1 + 0.5 * s), "solved": "", "steps_to_90": "", "n_q_heads": 4, "n_kv_heads": 4,
             "window": "", "status": "ok", "steps": 3, "train_flops": 3.1e11 * ms / 10}
            for v, acc, ms in (("mha", 0.5, 10.0), ("sqa", 0.4, 6.0)) for s in range(2)]  # fmt: skip
    curves = [{"variant": r["variant"], "seed": r["seed"], "step": "3", "val_accuracy": r["val_accuracy"],
               "val_loss": 1.0} for r in rows]  # fmt: skip
    figures, _ = quality_figures(rows, curves, "mha")
    ax = figures["quality-curves"].axes[0]
    assert ax.get_title().startswith("held-out accuracy: mean over 2 seeds")
    figures["quality-curves"].canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    trade = figures["quality-trade"]
    assert trade._suptitle.get_text().startswith("Quality against cost: held-out accuracy")
    steps_panel, flops_panel = trade.axes[:2]
    bars = [c for c in steps_panel.collections if c.__class__.__name__ == "LineCollection"]
    widths = sorted(round(float(abs(seg[1][0] - seg[0][0])), 3) for c in bars for seg in c.get_segments()
                    if abs(seg[1][1] - seg[0][1]) < 1e-12)  # horizontal segments: the x bars  # fmt: skip
    assert widths == [3.0, 5.0]  # sqa's seeds 6 and 9 ms, mha's 10 and 15 ms
    assert flops_panel.get_xlabel() == "training FLOPs (cost model), x 10^11"


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
    args = {"resume": [*quick("--variants", "mha,sqa"), "--seeds", "3", "--out", str(out), "--resume"],
            "plot": ["plot", str(out), "--out", str(tmp_path / "p")], "report": ["report", str(out)]}[command]
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
    """The planned MDE in units of the noise, and with --pilot in the metric's: the pilot's noise recomputed here
    from its rows as the residual of a variant + seed fit (sqrt 2 x a cell's residual sd: one paired difference)."""
    import numpy as np

    from sqabench.quality.stats import planned_mde

    pilot = Path(__file__).parent.parent / "results" / "cpu-amd-epyc-quality-kjv-bytes.csv"
    rows = [r for r in csv.DictReader(pilot.open()) if r["status"] == "ok"]
    variants, seeds = sorted({r["variant"] for r in rows}), sorted({int(r["seed"]) for r in rows})
    y = np.array([[next(float(r["val_loss"]) for r in rows if r["variant"] == v and int(r["seed"]) == s)
                   for s in seeds] for v in variants])  # fmt: skip
    residual = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    df = (len(variants) - 1) * (len(seeds) - 1)
    sd = math.sqrt(2 * (residual**2).sum() / df)
    result = runner.invoke(app, [*QUICK, "--data", str(corpus), "--dry-run", "--pilot", str(pilot)],
                           env={"COLUMNS": "400"})  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    factor = planned_mde(2, 3)
    assert 2.5 < factor < 4.5  # about (t_.975 + t_.80) at df 2 over sqrt 3, Dunnett over one comparison = t
    assert f"with 3 seeds x 2 variants (Dunnett, df 2): {factor:.2f} x the sd of one seed's paired difference" in text
    assert f"(sd {sd:.3g}, pooled over {len(variants)} variants x {len(seeds)} seeds, df {df}): " \
           f"{factor * sd:.3g} in val loss" in text  # fmt: skip
