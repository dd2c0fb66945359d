"""sqabench quality's text: reading corpora, the held-out split, packing without padding, what an evaluation
scores, bits per byte, tokenizers (bytes, BPE) and the .tokens file, the paper's padded rows.

Every reference here is computed on its own: the documents' bytes, the expected windows, each from the
generated text and not from sqabench's code."""

import contextlib
import json
import math
import random

import pytest
import torch
from texts import QUICK, documents, runner

from sqabench.cli import app
from sqabench.errors import ConfigError
from sqabench.presets import Preset
from sqabench.quality.corpus import read_documents, split
from sqabench.quality.tasks import text_task
from sqabench.variants import get_variant


def _stream_of(task) -> bytes:
    return bytes(t for t in task.train_tokens.tolist() if t < 256)


def _scored(held) -> int:
    return int((held.labels != -100).sum())


def _model(vocab: int):
    from sqabench.encoder import build_encoder

    preset = Preset("t", d_model=32, n_layers=1, n_heads=4, d_ff=64, vocab_size=vocab)
    return build_encoder(get_variant("mha", 4), preset, "sdpa", True, torch.device("cpu"), torch.float32, seed=0)


def _held_texts(path, share):

    return split(read_documents(path), share)[1]


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
    assert task.describe()["eval_tokens"] == len(expected) < budget  # what is scored, never the budget asked
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


def test_a_document_too_short_for_a_scored_token_is_not_counted_among_the_evaluations_documents():
    """Two documents of 100 one-byte tokens and one of a single token, a budget of 20 bytes of the 204 (each EOD
    a byte): the share is 20/204 of every document, the middle of it; the short one holds no whole token of its
    share, so 2 documents are scored, 8 tokens each (counted here by a loop of its own)."""
    from sqabench.quality.corpus import IGNORE, evaluation_windows

    docs = [list(range(100)), list(range(100, 200)), [7]]
    _, labels, documents = evaluation_windows(docs, 32, eod=250, pad=251, byte_lengths=(1,) * 259, budget=20)
    share = 20 / 204
    expected = 0
    for doc in docs:
        start, end = (len(doc) - share * len(doc)) / 2, (len(doc) + share * len(doc)) / 2
        expected += sum(1 for i in range(len(doc)) if i >= start and i + 1 <= end)
    assert documents == 2 and int((labels != IGNORE).sum()) == expected == 16


def test_the_padded_evaluation_takes_rows_spread_over_every_held_out_document_not_the_first_ones():
    """Ten documents, 2 real labels a row (the token and EOS): a budget of 8 real tokens keeps 4 rows, evenly
    spaced over the ten (0, 2, 5, 7: every gap 2 or 3, the last in the last third), never rows 0-3."""
    from sqabench.quality.corpus import evaluation_rows, padded

    rows = padded([[k] for k in range(10)], seq=4, bos=90, eos=91, pad=92)
    kept, count = evaluation_rows(rows, 8)
    picked = kept.inputs[:, 1].tolist()
    gaps = [b - a for a, b in zip(picked, picked[1:])]
    assert count == 4 and picked == [0, 2, 5, 7] and set(gaps) <= {2, 3} and picked[-1] >= 10 - 10 / 3


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
