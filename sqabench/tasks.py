"""What ``sqabench quality`` trains on: MQAR (``sqabench.mqar``) or a text corpus (``sqabench.corpus``).

A task gives every variant the same data: ``batch(seed, step, n)`` is training step ``step``'s batch under
``seed`` (drawn from the stream ``(seed, step)``, steps from 1), and ``held_out(seed)`` the set every
evaluation scores in full (MQAR: the stream ``(seed, 0)``; text: the held-out documents, whatever the seed).
Labels are already shifted (``labels[i, t]`` is the target after reading ``inputs[i, : t + 1]``) and
IGNORE (-100) wherever nothing is scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sqabench.corpus import padded, read_documents, split, stream, windows
from sqabench.errors import ConfigError
from sqabench.mqar import MQARSize, mqar
from sqabench.tokenizer import Tokenizer, check_tokenizer, corpus_hash, get_tokenizer

LARGE = 20 << 20  # bytes of text past which reading it is announced
HELD_OUT_STREAM = 0  # MQAR's held-out set under a seed is the stream (seed, 0); training step t draws (seed, t)


@dataclass(frozen=True)
class HeldOut:
    inputs: torch.Tensor
    labels: torch.Tensor  # real targets only
    padded_labels: torch.Tensor | None = None  # --pad-like-paper: the pads scored as well


def batch_seed(seed: int, step: int) -> tuple[int, int]:
    """The data stream of training step ``step`` (>= 1) under ``seed``: never the held-out set's."""
    if step == HELD_OUT_STREAM:
        raise ValueError("training steps count from 1: step 0's stream is the held-out set")
    return (seed, step)


@dataclass(frozen=True, eq=False)
class MQARTask:
    size: MQARSize
    eval_examples: int = 256
    name = "mqar"
    per_example = True  # accuracy per example, then the mean (Zoology's)
    byte_lengths = None

    @property
    def vocab(self) -> int:
        return self.size.vocab

    @property
    def seq_len(self) -> int:
        return self.size.seq_len

    def batch(self, seed: int, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return mqar(self.size, n, batch_seed(seed, step))

    def held_out(self, seed: int) -> HeldOut:
        return HeldOut(*mqar(self.size, self.eval_examples, (seed, HELD_OUT_STREAM)))

    def describe(self) -> dict:
        return {"task": "mqar", "vocab": self.vocab, "seq_len": self.seq_len, "pairs": self.size.pairs,
                "data": "", "tokenizer": "", "pad_like_paper": False, "eval_tokens": ""}  # fmt: skip

    def title(self) -> str:
        return f"MQAR (vocab {self.vocab}, length {self.seq_len}, {self.size.pairs} pairs)"


@dataclass(frozen=True, eq=False)
class TextTask:
    data: Path
    tokenizer: Tokenizer
    seq_len: int
    pad_like_paper: bool
    train_docs: int
    held_docs: int
    corpus: str  # the hash of the training documents: a checkpoint's or a cache's key
    train_tokens: torch.Tensor = field(repr=False)  # packed stream, or (docs, seq + 1) rows when padded
    held: HeldOut = field(repr=False)
    train_padded: object = field(default=None, repr=False)
    eval_tokens: int | None = None
    name = "text"
    per_example = False  # next-token accuracy pooled over every scored position

    @property
    def vocab(self) -> int:
        return self.tokenizer.vocab

    @property
    def byte_lengths(self) -> torch.Tensor:
        return torch.tensor(self.tokenizer.byte_lengths, dtype=torch.int64)

    def batch(self, seed: int, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(batch_seed(seed, step))
        if self.pad_like_paper:
            rows = torch.from_numpy(rng.integers(0, len(self.train_padded.inputs), size=n))
            return self.train_padded.inputs[rows], self.train_padded.padded_labels[rows]  # the pads scored
        starts = rng.integers(0, len(self.train_tokens) - self.seq_len, size=n)
        pieces = torch.stack([self.train_tokens[s : s + self.seq_len + 1] for s in starts.tolist()])
        return pieces[:, :-1].clone(), pieces[:, 1:].clone()

    def held_out(self, seed: int) -> HeldOut:
        return self.held

    def describe(self) -> dict:
        return {"task": "text", "vocab": self.vocab, "seq_len": self.seq_len, "pairs": "", "data": str(self.data),
                "tokenizer": self.tokenizer.name, "pad_like_paper": self.pad_like_paper,
                "corpus": self.corpus, "eval_tokens": self.scored}  # fmt: skip

    @property
    def scored(self) -> int:
        """Held-out positions each evaluation scores (real tokens)."""
        return int((self.held.labels != -100).sum())

    def title(self) -> str:
        layout = "padded like the paper, pads scored" if self.pad_like_paper else "packed, no padding"
        return (f"text {self.data} ({self.train_docs} training and {self.held_docs} held-out documents, "
                f"{self.tokenizer.name} tokens, vocab {self.vocab}, length {self.seq_len}, {layout}; "
                f"{self.scored:,} held-out tokens scored at each evaluation)")  # fmt: skip


TOKENS_FORMAT = "sqabench-tokens/1"
TOKENS_SUFFIX = ".tokens"


@dataclass(frozen=True)
class Tokenized:
    """A corpus split and tokenized: what ``sqabench tokenize`` saves, so that a machine without the
    tokenizer (a GPU machine) trains on exactly the tokens this one made."""

    source: str
    tokenizer: Tokenizer
    held_out: float
    corpus: str  # the training documents' hash
    train: list[list[int]]
    held: list[list[int]]


DEFAULT_TOKENIZER, DEFAULT_HELD_OUT = "bytes", 0.05


def tokenize(data: Path, tokenizer: str | None, vocab: int | None, held_out: float | None,
             say=lambda text: None) -> Tokenized:  # fmt: skip
    """Read ``data``, split it into whole training and held-out documents (``held_out`` of them; None: 5%), and
    tokenize both (``tokenizer`` None: bytes; a BPE is trained on the training documents only); a ``.tokens``
    file of ``sqabench tokenize`` is loaded instead. One-line ``ConfigError`` for a corpus that cannot be used."""
    if data.suffix == TOKENS_SUFFIX:
        return load_tokens(data, tokenizer, vocab, held_out)
    tokenizer = tokenizer or DEFAULT_TOKENIZER
    held_out = DEFAULT_HELD_OUT if held_out is None else held_out
    check_tokenizer(tokenizer, vocab)
    if data.is_dir() or data.is_file() and data.stat().st_size > LARGE:
        say(f"reading {data} ...")
    train_docs, held_docs = split(read_documents(data), held_out)
    tok = get_tokenizer(tokenizer, train_docs, vocab, say)
    return Tokenized(str(data), tok, held_out, corpus_hash(train_docs), tok.encode(train_docs), tok.encode(held_docs))


def _flat(docs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([t for d in docs for t in d], dtype=torch.int32),
            torch.tensor([len(d) for d in docs], dtype=torch.int64))  # fmt: skip


def save_tokens(tokens: Tokenized, path: Path) -> None:
    """``tokens`` as one file (tensors and plain values only: ``torch.load(weights_only=True)`` reads it)."""
    train, train_lengths = _flat(tokens.train)
    held, held_lengths = _flat(tokens.held)
    tok = tokens.tokenizer
    state = {"format": TOKENS_FORMAT, "source": tokens.source, "tokenizer": tok.name, "vocab": tok.vocab,
             "eod": tok.eod, "pad": tok.pad, "byte_lengths": list(tok.byte_lengths), "held_out": tokens.held_out,
             "corpus": tokens.corpus, "train": train, "train_lengths": train_lengths, "held": held,
             "held_lengths": held_lengths}  # fmt: skip
    scratch = path.with_name(path.name + ".tmp")
    torch.save(state, scratch)
    scratch.replace(path)


def load_tokens(path: Path, tokenizer: str | None, vocab: int | None, held_out: float | None) -> Tokenized:
    if not path.is_file():
        raise ConfigError(f"--data {path} does not exist; make it with sqabench tokenize")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(f"--data {path} is not a tokens file of sqabench tokenize ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != TOKENS_FORMAT:
        raise ConfigError(f"--data {path} is not a {TOKENS_FORMAT} file; make it with sqabench tokenize")
    for option, asked, stored in (("--tokenizer", tokenizer, state["tokenizer"]), ("--vocab", vocab, state["vocab"]),
                                  ("--held-out", held_out, state["held_out"])):  # fmt: skip
        if asked is not None and asked != stored:
            raise ConfigError(f"{option} {asked}: {path} was tokenized with {option} {stored}; leave it out or "
                              "tokenize again")  # fmt: skip

    def docs(flat: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        return [piece.tolist() for piece in torch.split(flat, lengths.tolist())]

    tok = Tokenizer(state["tokenizer"], state["vocab"], state["eod"], state["pad"], tuple(state["byte_lengths"]))
    return Tokenized(state["source"], tok, state["held_out"], state["corpus"],
                     docs(state["train"], state["train_lengths"]), docs(state["held"], state["held_lengths"]))


def text_task(data: Path, tokenizer: str | None, vocab: int | None, seq: int, held_out: float | None,
              pad_like_paper: bool, eval_tokens: int | None = None,
              say=lambda text: None) -> TextTask:  # fmt: skip
    """Read, split, tokenize and pack ``data`` (or load a ``.tokens`` file of ``sqabench tokenize``); one-line
    ``ConfigError`` for a corpus that cannot be used. ``eval_tokens``: every evaluation scores the first this many
    held-out positions (whole windows, the same ones each time); None: all of them."""
    tokens = tokenize(data, tokenizer, vocab, held_out, say)
    tok, train_ids, held_ids = tokens.tokenizer, tokens.train, tokens.held
    if pad_like_paper:
        rows, held_rows = padded(train_ids, seq, tok.eod, tok.pad), padded(held_ids, seq, tok.eod, tok.pad)
        train, held = rows.inputs, HeldOut(held_rows.inputs, held_rows.labels, held_rows.padded_labels)
    else:
        rows, train = None, stream(train_ids, tok.eod)
        if len(train) < seq + 1:
            raise ConfigError(f"--data {data}: its training documents hold {len(train)} tokens, fewer than one "
                              f"training sequence (--seq {seq} + 1); give more text or a shorter --seq")  # fmt: skip
        held = HeldOut(*windows(stream(held_ids, tok.eod), seq, tok.pad))
    if eval_tokens is not None:
        keep = max(1, -(-eval_tokens // seq))
        held = HeldOut(held.inputs[:keep], held.labels[:keep],
                       None if held.padded_labels is None else held.padded_labels[:keep])  # fmt: skip
    return TextTask(data, tok, seq, pad_like_paper, len(train_ids), len(held_ids), tokens.corpus, train, held, rows,
                    eval_tokens)
